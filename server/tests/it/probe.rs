//! Path probes on the listener's UDP port (`docs/probe.md`): answered for
//! a live session, silent for everything else, rate limited, and a flood
//! of them does not slow relayed traffic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sixpath_protocol::probe::{self, Probe, ProbeKind};
use sixpath_protocol::socks6::{SessionId, SocksOption};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::Harness;
use crate::sessions::{noop, open_session};

/// A server with its admin endpoint, for the probe counters.
async fn harness() -> Harness {
    Harness::start_custom(None, |s| s.admin = Some("127.0.0.1:0".parse().unwrap())).await
}

async fn metrics(h: &Harness) -> String {
    let mut c = tokio::net::TcpStream::connect(h.admin.expect("admin endpoint"))
        .await
        .unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).await.unwrap();
    body
}

async fn session(h: &Harness) -> SessionId {
    let auth = open_session(h, vec![]).await;
    auth.options.session_id().expect("a session ID").clone()
}

fn request(seq: u32, token: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    Probe::request(3, seq, 0x1122_3344_5566_7788, token.to_vec()).encode(&mut v);
    // Padding, as the client sends it.
    v.resize(v.len() + probe::REPLY_LEN, 0);
    v
}

async fn socket(server: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(server).await.unwrap();
    s
}

/// The next datagram within `wait`, if any.
async fn recv(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(wait, s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf[..n].to_vec())
}

#[tokio::test]
async fn a_probe_with_a_live_session_id_gets_the_22_byte_reply_echoing_it() {
    let h = Harness::start(None).await;
    let id = session(&h).await;
    let s = socket(h.server).await;
    s.send(&request(7, id.as_bytes())).await.unwrap();
    let reply = recv(&s, Duration::from_secs(5)).await.expect("a reply");
    assert_eq!(reply.len(), probe::REPLY_LEN);
    let p = probe::decode(&reply).unwrap();
    assert_eq!(p.kind, ProbeKind::Reply);
    assert_eq!((p.path, p.seq, p.sent), (3, 7, 0x1122_3344_5566_7788));
    assert!(p.token.is_empty());
}

#[tokio::test]
async fn probes_without_a_live_session_or_malformed_get_nothing_back() {
    let h = harness().await;
    let id = session(&h).await;
    let s = socket(h.server).await;
    // A made-up ID, a modified one, a malformed probe, a Reply, garbage.
    let mut forged = id.as_bytes().to_vec();
    forged[0] ^= 1;
    let mut reply = Vec::new();
    Probe::request(3, 1, 0, vec![1; 16])
        .reply()
        .encode(&mut reply);
    let mut bad_version = request(4, id.as_bytes());
    bad_version[4] = 9;
    for d in [
        request(1, &[0xab; 16]),
        request(2, &forged),
        request(3, &id.as_bytes()[..id.as_bytes().len() - 1]),
        bad_version,
        reply,
        b"SXPP".to_vec(),
    ] {
        s.send(&d).await.unwrap();
    }
    assert_eq!(recv(&s, Duration::from_millis(300)).await, None);
    // A torn-down session's ID gets nothing either.
    let mut c = h.connect().await;
    c.write_all(&noop(vec![
        SocksOption::SessionId(id.clone()),
        SocksOption::SessionTeardown,
    ]))
    .await
    .unwrap();
    let mut sink = Vec::new();
    c.read_to_end(&mut sink).await.unwrap();
    s.send(&request(9, id.as_bytes())).await.unwrap();
    assert_eq!(recv(&s, Duration::from_millis(300)).await, None);
    let metrics = metrics(&h).await;
    assert!(
        metrics.contains("sixpath_server_probes_total{result=\"no_session\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sixpath_server_probes_total{result=\"malformed\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_burst_of_100_probes_from_one_source_gets_about_20_answers() {
    let h = Harness::start(None).await;
    let id = session(&h).await;
    let s = socket(h.server).await;
    for seq in 0..100 {
        s.send(&request(seq, id.as_bytes())).await.unwrap();
    }
    let mut answers = 0;
    while recv(&s, Duration::from_millis(300)).await.is_some() {
        answers += 1;
    }
    assert!((15..=25).contains(&answers), "{answers} answers");
}

/// Echoes `size` bytes through the server with SOCKS5 CONNECT; how long.
async fn relay_through(h: &Harness, size: usize) -> Duration {
    let start = Instant::now();
    let mut c = h.connect().await;
    let port = h.echo.port().to_be_bytes();
    c.write_all(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port[0], port[1]])
        .await
        .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(head[..4], [5, 0, 5, 0]);
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5a; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        wr
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < size {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[..n].iter().all(|&b| b == 0x5a), "bytes changed");
        got += n;
    }
    drop(writer.await.unwrap());
    start.elapsed()
}

#[tokio::test]
async fn a_probe_flood_does_not_slow_relayed_traffic_and_well_behaved_probes_still_get_answers() {
    let h = harness().await;
    let id = session(&h).await;
    let size = 64 << 20;
    let quiet = relay_through(&h, size).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let s = socket(h.server).await;
        let d = request(1, id.as_bytes());
        let stop = std::sync::Arc::clone(&stop);
        flooders.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while sent < 10_000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = s.send(&d).await;
                sent += 1;
                if sent.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            sent
        }));
    }
    let flooded = relay_through(&h, size).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for f in flooders {
        sent += f.await.unwrap();
    }
    println!(
        "64 MiB echoed through the server: {:.0} ms quiet, {:.0} ms during a flood of {sent} probes",
        quiet.as_secs_f64() * 1e3,
        flooded.as_secs_f64() * 1e3
    );
    assert!(
        flooded <= quiet * 3 + Duration::from_millis(500),
        "the flood slowed the relay from {quiet:?} to {flooded:?}"
    );
    let metrics = metrics(&h).await;
    assert!(
        !metrics.contains("sixpath_server_probes_total{result=\"rate_limited\"} 0\n"),
        "the flood was rate limited: {metrics}"
    );
    // Once the source's bucket refills, a well-behaved probe is answered.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = socket(h.server).await;
    s.send(&request(42, id.as_bytes())).await.unwrap();
    let reply = recv(&s, Duration::from_secs(5))
        .await
        .expect("answered after the flood");
    assert_eq!(probe::decode(&reply).unwrap().seq, 42);
}

#[tokio::test]
async fn probes_without_a_session_do_not_use_up_the_sources_answers() {
    // Someone forging this client's address but holding no session sends
    // a burst first; the client's own probes are still answered.
    let h = Harness::start(None).await;
    let id = session(&h).await;
    let s = socket(h.server).await;
    for seq in 0..100 {
        s.send(&request(seq, &[0xab; 16])).await.unwrap();
    }
    assert_eq!(recv(&s, Duration::from_millis(200)).await, None);
    s.send(&request(500, id.as_bytes())).await.unwrap();
    let reply = recv(&s, Duration::from_secs(5)).await.expect("answered");
    assert_eq!(probe::decode(&reply).unwrap().seq, 500);
}
