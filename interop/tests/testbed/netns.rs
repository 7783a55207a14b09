//! Running code inside a testbed namespace: a thread that has joined the
//! namespace with `setns(CLONE_NEWNET)` creates its sockets there.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

/// Runs `f` on a new thread inside network namespace `ns` (a name under
/// `/run/netns`). Joining a network namespace affects only the calling
/// thread, so the test's other threads stay where they are.
pub fn spawn_in<T, F>(ns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a descriptor we own for the duration of the
        // call; it changes only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        drop(file);
        f()
    })
}

/// A TCP port free on `ip` inside namespace `ns`, for a program that must
/// be told its port before it starts (iperf3, redis-server, chromedriver,
/// the Python origins): the kernel picks it (a bind to port 0), the
/// listener closes, the port is handed on. Nothing else could take it in
/// between: the namespaces are the test's own and only the test binds
/// ports in them.
pub fn free_port(ns: &str, ip: &str) -> u16 {
    let addr = format!("{ip}:0");
    spawn_in(ns, move || {
        let l = std::net::TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.local_addr().expect("local_addr").port()
    })
    .join()
    .expect("free_port thread")
}
