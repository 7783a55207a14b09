//! Helpers the end-to-end tests share: a patience bound, temporary
//! directories, a self-signed certificate, deterministic bodies and a
//! minimal HTTP/1.1 origin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sixpath_net::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous bound for anything on loopback, even on a loaded machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate (for `localhost`) and key in a fresh
/// directory, and the certificate's SHA-256 fingerprint.
pub(crate) fn certificate(tag: &str) -> (TempDir, PathBuf, PathBuf, [u8; 32]) {
    let dir = std::env::temp_dir().join(format!("sixpath-interop-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, fp) = tls::generate_self_signed(&["localhost".to_owned()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (TempDir(dir), c, k, fp)
}

/// A deterministic body of `len` bytes.
pub(crate) fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A minimal HTTP/1.1 origin on loopback that answers any request with
/// `body`, then closes.
pub(crate) async fn http_origin(body: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let hdr = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(hdr.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Runs `f` on a thread moved into a new network namespace with `lo` up
/// and `net.ipv4.tcp_fastopen=3` (client and server TFO), on a tokio
/// runtime whose threads inherit the namespace. The namespace disappears
/// with the thread and its sockets. `None` when namespaces are not
/// available (not root).
pub(crate) fn in_netns<F, Fut>(f: F) -> Option<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let joined = std::thread::spawn(move || {
        #[allow(unsafe_code)]
        // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only this
        // thread into a fresh network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            ));
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .map_err(|e| format!("ip: {e}"))?;
        if !up.success() {
            return Err("ip link set lo up failed".into());
        }
        std::fs::write("/proc/sys/net/ipv4/tcp_fastopen", "3")
            .map_err(|e| format!("sysctl tcp_fastopen: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f());
        Ok(())
    })
    .join();
    match joined {
        Ok(Ok(())) => Some(()),
        Ok(Err(why)) => {
            println!("SKIP: network namespace unavailable: {why}");
            None
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Reads from `s` into `buf` until `decode` finds a whole message there;
/// returns it, leaving what follows in `buf`. Panics when the peer closes
/// first or nothing arrives within [`PATIENCE`].
pub(crate) async fn read_msg<T, E: std::fmt::Debug>(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<sixpath_protocol::Decoded<T>, E>,
) -> T {
    loop {
        if let sixpath_protocol::Decoded::Complete { msg, len } = decode(buf).unwrap() {
            buf.drain(..len);
            return msg;
        }
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut b))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "closed before the message was complete: {buf:02x?}");
        buf.extend_from_slice(&b[..n]);
    }
}
