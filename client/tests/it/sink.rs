//! A Multipath TCP server that accepts connections and reads them to the
//! end, run inside a namespace.

use std::io::Read;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sixpath_net::sys;
use socket2::Socket;

use crate::netns::Netns;

/// The running server; stops on drop.
pub(crate) struct Sink {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Bytes received over every connection.
    pub(crate) received: Arc<AtomicU64>,
    listener: Arc<Socket>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Listens on `ip:0` inside `ns`.
    pub(crate) fn start(ns: &Netns, ip: &str) -> Self {
        let bind: SocketAddr = format!("{ip}:0").parse().expect("addr");
        let listener = ns.run(|| {
            let (s, is_mptcp) = sys::stream_socket(&bind, true).expect("socket");
            assert!(is_mptcp, "MPTCP listener");
            s.set_reuse_address(true).expect("reuse");
            s.bind(&bind.into()).expect("bind");
            s.listen(16).expect("listen");
            s
        });
        let addr = listener
            .local_addr()
            .expect("local")
            .as_socket()
            .expect("inet");
        let listener = Arc::new(listener);
        let received = Arc::new(AtomicU64::new(0));
        let (l, r) = (listener.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            while let Ok((conn, _)) = l.accept() {
                let r = r.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut conn = std::net::TcpStream::from(conn);
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        r.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Self {
            addr,
            received,
            listener,
            thread: Some(thread),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Wakes the blocked accept() with an error.
        let _ = self.listener.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
