//! Bulk transfers for the testbed: a "blast" server that sends as many
//! bytes as asked (an MPTCP listener, in any namespace), and a downloader
//! in the phone that asks for them directly or through a SOCKS5 proxy,
//! hashing both ends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sixpath_net::sys::{self, Transport};

use crate::netns;

/// SHA-256 digest.
pub type Sha = [u8; 32];

/// The byte stream every sender sends: chunk `k` (64 KiB) is a window into
/// one fixed block, shifted by `k`, so a misplaced chunk changes the hash;
/// nothing is computed per byte (the tests run unoptimised).
pub struct Pattern {
    block: Vec<u8>,
}

/// Size of one chunk of [`Pattern`].
pub const CHUNK: usize = 64 * 1024;
const SHIFTS: usize = 251;

impl Pattern {
    /// The block (computed once per test).
    pub fn new() -> Self {
        let mut x: u32 = 0x9e37_79b9;
        let block = (0..CHUNK + SHIFTS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect();
        Self { block }
    }

    /// Chunk `k`, cut to `len` bytes.
    pub fn chunk(&self, k: u64, len: usize) -> &[u8] {
        let shift = (k.wrapping_mul(37) % SHIFTS as u64) as usize;
        &self.block[shift..shift + len.min(CHUNK)]
    }

    /// Calls `f` with each chunk of the first `len` bytes.
    pub fn for_each(&self, len: u64, mut f: impl FnMut(&[u8]) -> bool) {
        let mut off = 0u64;
        let mut k = 0;
        while off < len {
            let n = (len - off).min(CHUNK as u64) as usize;
            if !f(self.chunk(k, n)) {
                return;
            }
            off += n as u64;
            k += 1;
        }
    }

    /// SHA-256 of the first `len` bytes.
    pub fn sha(&self, len: u64) -> Sha {
        let mut h = Sha256::new();
        self.for_each(len, |c| {
            h.update(c);
            true
        });
        h.finalize().into()
    }
}

/// Hex for messages.
pub fn hex(sha: &Sha) -> String {
    use std::fmt::Write;
    sha.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A blast server: each connection sends an 8-byte big-endian length, gets
/// that many pattern bytes, then EOF. With [`UPLOAD`] set in the length the
/// client sends the bytes instead, then half-closes; the server answers
/// with the 8-byte count it received. The SHA-256 of what the server sent
/// (or received) goes to `sent`.
pub struct Blast {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Digest and transport of each finished connection, in order.
    pub sent: mpsc::Receiver<(Sha, Transport)>,
}

impl Blast {
    /// Listens (MPTCP, accepting TCP too) on `ip` and a port the kernel
    /// picks, inside namespace `ns`.
    pub fn start(ns: &str, ip: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, sent) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let addr: SocketAddr = format!("{ip}:0").parse().expect("an IP address");
        let thread = netns::spawn_in(ns, {
            let stop = Arc::clone(&stop);
            move || {
                let (sock, mptcp) = sys::stream_socket(&addr, true).expect("socket");
                assert!(mptcp, "the kernel refused an MPTCP socket");
                sock.bind(&addr.into()).expect("bind blast server");
                sock.listen(16).expect("listen");
                let l: TcpListener = sock.into();
                l.set_nonblocking(true).expect("nonblocking");
                ready_tx
                    .send(l.local_addr().expect("local_addr"))
                    .expect("ready");
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let tx = tx.clone();
                            std::thread::spawn(move || {
                                if let Some(r) = serve(s) {
                                    let _ = tx.send(r);
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        });
        let addr = ready
            .recv_timeout(Duration::from_secs(10))
            .expect("blast server did not start");
        Self {
            stop,
            thread: Some(thread),
            addr,
            sent,
        }
    }
}

impl Drop for Blast {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Length flag of a blast request: the client uploads.
pub const UPLOAD: u64 = 1 << 63;

fn serve(mut s: TcpStream) -> Option<(Sha, Transport)> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut len = [0u8; 8];
    s.read_exact(&mut len).ok()?;
    let len = u64::from_be_bytes(len);
    if len & UPLOAD != 0 {
        return sink(s);
    }
    let mut hash = Sha256::new();
    let mut ok = true;
    Pattern::new().for_each(len, |c| {
        ok = s.write_all(c).is_ok();
        hash.update(c);
        ok
    });
    if !ok {
        return None;
    }
    let transport = sys::transport(&s);
    s.shutdown(Shutdown::Write).ok()?;
    // Wait for the peer's close so every byte is delivered before we drop.
    let _ = s.read(&mut [0u8; 1]);
    Some((hash.finalize().into(), transport))
}

/// The upload side of [`serve`]: hash until EOF, answer the count.
fn sink(mut s: TcpStream) -> Option<(Sha, Transport)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n as u64;
    }
    let transport = sys::transport(&s);
    s.write_all(&got.to_be_bytes()).ok()?;
    s.shutdown(Shutdown::Write).ok()?;
    Some((hash.finalize().into(), transport))
}

/// How the phone reaches the blast server.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// Straight to the blast server.
    Direct(SocketAddr),
    /// Through a SOCKS5 proxy (no authentication) to the blast server.
    Socks5 {
        /// The proxy.
        proxy: SocketAddr,
        /// The blast server, as the proxy should reach it.
        target: SocketAddr,
    },
}

/// What the downloader saw.
#[derive(Debug)]
pub struct Download {
    /// Bytes received.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha: Sha,
    /// From connect to EOF.
    pub elapsed: Duration,
    /// Longest wait between two reads after `mark` bytes.
    pub longest_stall: Duration,
    /// Transport of the phone's socket (read just before EOF handling).
    pub transport: Transport,
}

/// Downloads `size` bytes over `route` from inside namespace `ns` on an
/// MPTCP socket (`mptcp`) or TCP; sends one message on `progress` when
/// `mark` bytes have arrived.
pub fn download(
    ns: &str,
    route: Route,
    mptcp: bool,
    size: u64,
    mark: u64,
    progress: mpsc::Sender<u64>,
) -> JoinHandle<Download> {
    netns::spawn_in(ns, move || {
        let first = match route {
            Route::Direct(a) | Route::Socks5 { proxy: a, .. } => a,
        };
        let start = Instant::now();
        let (sock, _) = sys::stream_socket(&first, mptcp).expect("socket");
        sock.connect_timeout(&first.into(), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("connect {first}: {e}"));
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        if let Route::Socks5 { target, .. } = route {
            socks5_connect(&mut s, target);
        }
        s.write_all(&size.to_be_bytes()).unwrap();
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        let mut last = Instant::now();
        let mut stall = Duration::ZERO;
        let mut transport = sys::transport(&s);
        let mut marked = false;
        loop {
            let n = s.read(&mut buf).expect("read (60 s without data?)");
            let now = Instant::now();
            if got >= mark {
                stall = stall.max(now - last);
            }
            last = now;
            if n == 0 {
                break;
            }
            if got < size / 2 && got + n as u64 >= size / 2 {
                transport = sys::transport(&s);
            }
            hash.update(&buf[..n]);
            got += n as u64;
            if !marked && got >= mark {
                marked = true;
                let _ = progress.send(got);
            }
        }
        Download {
            bytes: got,
            sha: hash.finalize().into(),
            elapsed: start.elapsed(),
            longest_stall: stall,
            transport,
        }
    })
}

/// Uploads `size` pattern bytes over `route` from inside namespace `ns` on
/// an MPTCP socket (`mptcp`) or TCP; the result's `bytes` is the count the
/// server confirmed, `sha` the digest of what was sent, `elapsed` runs from
/// connect to the server's confirmation.
pub fn upload(ns: &str, route: Route, mptcp: bool, size: u64) -> JoinHandle<Download> {
    netns::spawn_in(ns, move || {
        let first = match route {
            Route::Direct(a) | Route::Socks5 { proxy: a, .. } => a,
        };
        let start = Instant::now();
        let (sock, _) = sys::stream_socket(&first, mptcp).expect("socket");
        sock.connect_timeout(&first.into(), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("connect {first}: {e}"));
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        if let Route::Socks5 { target, .. } = route {
            socks5_connect(&mut s, target);
        }
        s.write_all(&(size | UPLOAD).to_be_bytes()).unwrap();
        let mut hash = Sha256::new();
        let mut transport = sys::transport(&s);
        let mut sent = 0u64;
        Pattern::new().for_each(size, |c| {
            s.write_all(c).expect("upload write");
            hash.update(c);
            sent += c.len() as u64;
            if sent == size / 2 {
                transport = sys::transport(&s);
            }
            true
        });
        s.shutdown(Shutdown::Write).unwrap();
        let mut count = [0u8; 8];
        s.read_exact(&mut count).expect("the server's byte count");
        Download {
            bytes: u64::from_be_bytes(count),
            sha: hash.finalize().into(),
            elapsed: start.elapsed(),
            longest_stall: Duration::ZERO,
            transport,
        }
    })
}

/// SOCKS5 greeting (no authentication) and CONNECT to an IPv4 `target`;
/// asserts the success reply.
pub fn socks5_connect(s: &mut TcpStream, target: SocketAddr) {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 targets only")
    };
    s.write_all(&[5, 1, 0]).unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, [5, 0], "SOCKS5 method selection");
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(&rep[..4], &[5, 0, 0, 1], "SOCKS5 CONNECT reply");
}

/// Megabits per second of `bytes` in `d`.
pub fn mbit_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64() / 1e6
}
