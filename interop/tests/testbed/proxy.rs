//! curl in the phone through a SOCKS5 entry point to an HTTP origin in the
//! internet namespace. Today the entry point is `sixpath-server` itself
//! (one hop, TCP from curl); the same function serves the sixpath client's
//! entry point once the client exists.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::bed::{self, Ns, Testbed};
use crate::flows::{self, Pattern, Sha};
use crate::netns;

/// A tiny HTTP/1.1 origin: `GET /bytes/N` answers N pattern bytes.
pub struct Origin {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Where it serves.
    pub addr: SocketAddr,
}

impl Origin {
    /// Serves on `ip` and a port the kernel picks, inside namespace `ns`.
    pub fn start(ns: &str, ip: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let addr = format!("{ip}:0");
        let thread = netns::spawn_in(ns, {
            let stop = Arc::clone(&stop);
            move || {
                let l = TcpListener::bind(addr).expect("bind origin");
                l.set_nonblocking(true).unwrap();
                ready_tx.send(l.local_addr().unwrap()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            std::thread::spawn(move || serve(s));
                        }
                        // 1 ms: the accept delay stays small beside the RTTs the
                        // 0-RTT test compares.
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }
        });
        let addr = ready.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            stop,
            thread: Some(thread),
            addr,
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let len: Option<u64> = line
        .strip_prefix("GET /bytes/")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok());
    let Some(len) = len else {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let hdr = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    if s.write_all(hdr.as_bytes()).is_err() {
        return;
    }
    Pattern::new().for_each(len, |c| s.write_all(c).is_ok());
}

/// Runs curl in the phone with `PROXY_FLAG ENTRY` (`--socks5-hostname
/// 127.0.0.1:PORT`, `--proxy http://127.0.0.1:PORT`) for `url`; returns
/// the body.
pub fn curl_via(tb: &Testbed, proxy_flag: &str, entry: &str, url: &str) -> Vec<u8> {
    let out = tb
        .command(Ns::Phone, "curl")
        .args(["-sS", "--fail", "--max-time", "120", proxy_flag, entry, url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl via {entry} {url}: {}\nserver log:\n{}\nclient log (if any):\n{}",
        String::from_utf8_lossy(&out.stderr),
        tb.log("server"),
        tb.log("client")
    );
    out.stdout
}

/// Fetches 1 KiB and 64 MiB from `origin` through the proxy `entry`
/// (given to curl with `proxy_flag`, see [`curl_via`]) and compares sizes
/// and SHA-256 with what the origin sent.
pub fn assert_curl_bodies_identical(
    tb: &Testbed,
    origin: &Origin,
    label: &str,
    proxy_flag: &str,
    entry: &str,
) {
    for len in [1024u64, 64 << 20] {
        let url = format!("http://{}/bytes/{len}", origin.addr);
        let t = std::time::Instant::now();
        let body = curl_via(tb, proxy_flag, entry, &url);
        let took = t.elapsed();
        let got: Sha = Sha256::digest(&body).into();
        let want = Pattern::new().sha(len);
        println!(
            "{label}: {len} bytes via {entry} in {:.2} s ({:.1} Mbit/s): got {} bytes sha256 {}, origin sent sha256 {}",
            took.as_secs_f64(),
            flows::mbit_s(body.len() as u64, took),
            body.len(),
            flows::hex(&got),
            flows::hex(&want)
        );
        assert_eq!(body.len() as u64, len, "{label}: body length");
        assert_eq!(flows::hex(&got), flows::hex(&want), "{label}: SHA-256");
    }
}

#[test]
fn curl_socks5h_through_server_gets_identical_1k_and_64m_bodies() {
    if !bed::can_run("curl_socks5h_through_server_gets_identical_1k_and_64m_bodies") {
        return;
    }
    assert!(
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok(),
        "curl is missing: apt-get install curl (scripts/test installs it)"
    );
    // Fast links: this test is about the bytes, not the rate (64 MiB at
    // 20 Mbit/s would take half a minute).
    let tb = Testbed::up(&["--wlan-rate", "200mbit", "--lte-rate", "100mbit"]);
    let origin = Origin::start(&tb.ns(Ns::Internet), bed::ORIGIN);
    let entry = tb.server().to_string();
    assert_curl_bodies_identical(
        &tb,
        &origin,
        "curl -> sixpath-server -> origin",
        "--socks5-hostname",
        &entry,
    );
}
