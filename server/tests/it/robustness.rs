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
