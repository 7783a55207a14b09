//! A private network namespace for one test. The test body runs on a
//! thread that has unshared its network namespace, with `lo` up and the
//! test addresses (198.18.0.0/15) on it, in a single-threaded runtime, so
//! the server, its targets and the clients all live in that namespace.
//! Nothing outlives the thread: the namespace goes away with its last
//! socket. Without root the test prints `SKIP <test>: <reason>` and
//! returns.

use std::future::Future;
use std::process::Command;

/// Runs `ip ARGS` (in the calling thread's namespace).
pub(crate) fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `body` in a fresh network namespace after `ip` commands `setup`
/// (e.g. `addr add 198.18.0.1/32 dev lo`). Returns false (after printing
/// the SKIP line) when the namespace cannot be created.
pub(crate) fn in_netns<F, Fut>(test: &str, setup: &[&str], body: F) -> bool
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let setup: Vec<String> = setup.iter().map(ToString::to_string).collect();
    let test = test.to_owned();
    std::thread::spawn(move || {
        // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only
        // this thread (and the processes it spawns) to a new namespace.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            println!("SKIP {test}: cannot create a network namespace ({e}); needs root");
            return false;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            println!("SKIP {test}: the ip command (iproute2) is missing");
            return false;
        }
        ip("link set lo up");
        for cmd in &setup {
            ip(cmd);
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
        true
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}
