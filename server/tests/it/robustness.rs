//! Hostile and careless clients: they get deadlines and caps, and other
//! clients keep being served.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Harness, read_n, read_to_eof};

async fn socks5_connect_works(h: &Harness, from: &str) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(h.server).await.unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    req.extend(h.echo.port().to_be_bytes());
    c.write_all(&req).await.unwrap();
    assert_eq!(read_n(&mut c, 4).await, [5, 0, 5, 0]);
}

#[tokio::test]
async fn silent_client_is_closed_at_the_handshake_deadline() {
    let h = Harness::start_custom(None, |s| s.handshake_timeout = Duration::from_secs(1)).await;
    let mut silent = h.connect().await;
    let mut half = h.connect().await;
    half.write_all(&[6, 1, 0]).await.unwrap(); // a third of a SOCKS6 header
    let started = std::time::Instant::now();
    assert_eq!(read_to_eof(&mut silent).await, Vec::<u8>::new());
    assert_eq!(read_to_eof(&mut half).await, Vec::<u8>::new());
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[tokio::test]
async fn per_source_cap_refuses_extra_connections_and_spares_others() {
    let h = Harness::start_custom(None, |s| s.max_connections_per_source = 20).await;
    // 20 idle connections from 127.0.0.1 fill its quota.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(h.connect().await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 21st from the same address is closed at once.
    let mut extra = h.connect().await;
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "extra connection should be closed, got {n:?}"
    );
    // Another source address is still served.
    socks5_connect_works(&h, "127.0.0.2").await;
    // Closing idle connections frees the quota.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    socks5_connect_works(&h, "127.0.0.1").await;
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_service() {
    // The server runs in this process: every idle connection costs two file
    // descriptors here. Stay well inside the soft limit.
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| {
                    x.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<usize>().ok())
                })
        })
        .unwrap_or(1024);
    let target = 2000.min(soft.saturating_sub(256) / 2);
    let h = Harness::start(None).await;
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..target {
        match TcpStream::connect(h.server).await {
            Ok(c) => idle.push(c),
            Err(_) => break, // file descriptor limit of the test process
        }
    }
    assert!(
        idle.len() >= target.min(300),
        "only {} connections opened",
        idle.len()
    );
    println!("{} idle connections held open", idle.len());
    tokio::time::timeout(
        Duration::from_secs(10),
        socks5_connect_works(&h, "127.0.0.3"),
    )
    .await
    .expect("a well-behaved client is served while idle connections are held");
}

/// The `sixpath-server` binary on 127.0.0.1, killed on drop. It runs in
/// its own process so its file descriptors and memory are its own.
struct ServerProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl ServerProcess {
    /// Starts the binary with `args` after the listener and loopback egress
    /// flags, and waits for its "listening" line.
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sixpath-server"))
            .args(["--listen", "127.0.0.1:0", "--allow-egress", "127.0.0.0/8"])
            .args(args)
            .env("RUST_LOG", "info,sixpath_server::conn=warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut limit = None;
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if line.contains("open-file limit") {
                limit = Some(line.clone());
            }
            if line.contains("listening")
                && let Some(rest) = line.split("addr=").nth(1)
            {
                let a = rest.split_whitespace().next().unwrap();
                break a.parse().unwrap();
            }
        };
        println!("{}", limit.expect("the server logs its open-file limit"));
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Self { child, addr }
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SOCKS5 CONNECT to a fresh echo target through `server`, answered and
/// relayed within 10 s, from `from`.
async fn served_promptly(server: std::net::SocketAddr, from: &str) {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    let target = tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
    });
    let check = async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut c = sock.connect(server).await.unwrap();
        let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
        req.extend(port.to_be_bytes());
        req.extend(b"ping");
        c.write_all(&req).await.unwrap();
        let reply = read_n(&mut c, 12).await;
        assert_eq!(reply[..6], [5, 0, 5, 0, 0, 1], "SOCKS5 success");
        assert_eq!(read_n(&mut c, 4).await, b"ping");
    };
    tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .expect("a well-behaved client is served within 10 s");
    target.await.unwrap();
}

/// Generous bound on the server's resident memory while it holds 10,000
/// idle connections and has seen the hostile clients below (measured: see
/// docs/server-tests.md).
const RSS_BOUND_KIB: u64 = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_keep_the_server_serving_in_bounded_memory() {
    const IDLE: usize = 10_000;
    // This process holds the client ends: one descriptor each.
    let (soft, _) = sixpath_server::sys::raise_nofile_limit().unwrap();
    if soft < (IDLE + 512) as u64 {
        println!(
            "SKIP ten_thousand_idle_connections_keep_the_server_serving_in_bounded_memory: \
             the open-file hard limit is {soft}, below {IDLE} + 512"
        );
        return;
    }
    let mut server = ServerProcess::start(&[
        "--handshake-timeout",
        "300",
        "--max-connections",
        "20000",
        "--max-connections-per-source",
        "20000",
    ]);
    let before = server.rss_kib();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the server accept the whole queue.
    tokio::time::sleep(Duration::from_secs(2)).await;
    served_promptly(server.addr, "127.0.0.3").await;
    let held = server.rss_kib();
    println!(
        "server RSS: {before} KiB at start, {held} KiB with {} idle connections ({} bytes each)",
        idle.len(),
        (held.saturating_sub(before) * 1024) / IDLE as u64
    );
    assert!(held < RSS_BOUND_KIB, "RSS {held} KiB");
    assert!(server.alive());
    drop(idle);
    tokio::time::sleep(Duration::from_secs(1)).await;
    served_promptly(server.addr, "127.0.0.1").await;
}

/// A deterministic xorshift64* generator: the same bytes on every run.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_and_half_messages_neither_crash_nor_stop_the_server() {
    let mut server = ServerProcess::start(&[
        "--handshake-timeout",
        "2",
        "--bind-timeout",
        "2",
        "--udp-idle-timeout",
        "2",
        "--max-connections-per-source",
        "5000",
    ]);
    let before = server.rss_kib();
    let mut rng = Prng(0x5eed_6b1a_5e5f_0001);
    // Valid starts of each protocol, to be cut short.
    let socks6 = [6u8, 1, 0, 0, 0, 80, 0, 1, 127, 0, 0, 1];
    let socks5 = [5u8, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
    let socks4 = [4u8, 1, 0, 80, 127, 0, 0, 1, b'u', 0];
    let convert = [
        1u8, 6, 0x22, 0x63, 0x0a, 5, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 1, 2,
    ];
    let starts: [&[u8]; 4] = [&socks6, &socks5, &socks4, &convert];
    let mut held = Vec::new();
    for round in 0..2000u64 {
        let Ok(mut c) = TcpStream::connect(server.addr).await else {
            panic!("connection {round} refused: the server stopped accepting");
        };
        let start = starts[(round % 4) as usize];
        let mut bytes = match rng.below(3) {
            // The protocol's first byte, then garbage.
            0 => {
                let mut b = vec![start[0]];
                let n = rng.below(600) as usize;
                b.extend(rng.bytes(n));
                b
            }
            // Half a message.
            1 => start[..=(rng.below(start.len() as u64 - 1) as usize)].to_vec(),
            // Pure garbage of any first byte.
            _ => {
                let n = 1 + rng.below(2000) as usize;
                rng.bytes(n)
            }
        };
        if rng.below(8) == 0 {
            // Some claim a large message and send a fraction of it.
            bytes.extend(rng.bytes(20_000));
        }
        let _ = c.write_all(&bytes).await;
        match rng.below(3) {
            0 => drop(c), // reset or close at once
            1 => {
                let _ = c.shutdown().await; // EOF after the bytes
                held.push((bytes[..bytes.len().min(16)].to_vec(), c));
            }
            // Silence: the handshake deadline ends it.
            _ => held.push((bytes[..bytes.len().min(16)].to_vec(), c)),
        }
        if round % 250 == 0 {
            served_promptly(server.addr, "127.0.0.3").await;
        }
    }
    served_promptly(server.addr, "127.0.0.3").await;
    // Every hostile connection is closed by the server: at the handshake
    // deadline, or at the BIND / UDP deadline for the rare garbage that
    // happens to be a valid SOCKS4 BIND or similar.
    let closed = async {
        let mut open = Vec::new();
        for (first, mut c) in held.drain(..) {
            let mut sink = [0u8; 4096];
            let drained = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(n) = c.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            if drained.is_err() {
                open.push(first);
            }
        }
        open
    };
    let open = tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .expect("the server closes hostile connections");
    assert!(
        open.is_empty(),
        "still open after their deadline: {open:02x?}"
    );
    let after = server.rss_kib();
    println!("server RSS: {before} KiB at start, {after} KiB after 2000 hostile clients");
    assert!(after < RSS_BOUND_KIB, "RSS {after} KiB");
    assert!(server.alive(), "the server survived");
    served_promptly(server.addr, "127.0.0.1").await;
}
