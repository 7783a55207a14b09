//! BIND over SOCKS5, SOCKS4 and SOCKS6: the first reply names a
//! connectable listener, the second the peer that connected, then bytes
//! flow both ways; timeouts and unexpected peers get exact failure replies.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Harness, read_n, read_to_eof};

/// Exchanges data both ways between the client (after its second reply)
/// and the peer, then checks that EOF travels both ways.
async fn check_relay(client: &mut TcpStream, peer: &mut TcpStream) {
    client.write_all(b"from the client").await.unwrap();
    assert_eq!(read_n(peer, 15).await, b"from the client");
    peer.write_all(b"from the peer").await.unwrap();
    assert_eq!(read_n(client, 13).await, b"from the peer");
    peer.shutdown().await.unwrap();
    assert_eq!(read_to_eof(client).await, b"");
    client.write_all(b"after half-close").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_to_eof(peer).await, b"after half-close");
}

fn port_of(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

async fn harness_with_bind_timeout(secs: u64) -> Harness {
    Harness::start_custom(None, |s| s.bind_timeout = Duration::from_secs(secs)).await
}

#[tokio::test]
async fn socks5_bind_reports_listener_then_peer_and_relays_both_ways() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0]).await.unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    // BIND, expected peer 127.0.0.1 (port 0: any).
    c.write_all(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 0])
        .await
        .unwrap();
    let first = read_n(&mut c, 10).await;
    assert_eq!(first[..8], [5, 0, 0, 1, 127, 0, 0, 1], "first reply");
    let port = port_of(&first[8..]);
    assert_ne!(port, 0);
    let mut peer = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let from = peer.local_addr().unwrap().port().to_be_bytes();
    let second = read_n(&mut c, 10).await;
    assert_eq!(
        second,
        [5, 0, 0, 1, 127, 0, 0, 1, from[0], from[1]],
        "second reply names the peer"
    );
    check_relay(&mut c, &mut peer).await;
}

#[tokio::test]
async fn socks5_bind_forwards_bytes_sent_before_the_peer_came() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    let first = read_n(&mut c, 10).await;
    assert_eq!(first[..8], [5, 0, 0, 1, 127, 0, 0, 1]);
    c.write_all(b"early").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut peer = TcpStream::connect(("127.0.0.1", port_of(&first[8..])))
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 10).await[..2], [5, 0]);
    assert_eq!(read_n(&mut peer, 5).await, b"early");
}

#[tokio::test]
async fn socks5_bind_timeout_gets_reply_04() {
    let h = harness_with_bind_timeout(1).await;
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 0])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    assert_eq!(read_n(&mut c, 8).await, [5, 0, 0, 1, 127, 0, 0, 1]);
    let _port = read_n(&mut c, 2).await;
    assert_eq!(
        read_to_eof(&mut c).await,
        [5, 4, 0, 1, 0, 0, 0, 0, 0, 0],
        "host unreachable: SOCKS5 has no timeout code"
    );
}

#[tokio::test]
async fn socks5_bind_refuses_unexpected_peer_with_reply_02() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // Expects 127.0.0.2; the peer comes from 127.0.0.1.
    c.write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 2, 0, 21])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    let first = read_n(&mut c, 10).await;
    assert_eq!(first[..4], [5, 0, 0, 1]);
    let listener: SocketAddr = (
        [first[4], first[5], first[6], first[7]],
        port_of(&first[8..]),
    )
        .into();
    let peer = tokio::net::TcpSocket::new_v4().unwrap();
    peer.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let _peer = peer.connect(listener).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn socks5_bind_to_denied_peer_gets_reply_02() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // 10.0.0.1 is denied by default.
    c.write_all(&[5, 1, 0, 5, 2, 0, 1, 10, 0, 0, 1, 0, 21])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    assert_eq!(read_to_eof(&mut c).await, [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn socks4_bind_reports_listener_then_peer_and_relays_both_ways() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[4, 2, 0, 21, 127, 0, 0, 1, b'u', 0])
        .await
        .unwrap();
    let first = read_n(&mut c, 8).await;
    assert_eq!(first[..2], [0, 90], "granted");
    assert_eq!(first[4..], [127, 0, 0, 1]);
    let port = port_of(&first[2..4]);
    let mut peer = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let from = peer.local_addr().unwrap().port().to_be_bytes();
    assert_eq!(
        read_n(&mut c, 8).await,
        [0, 90, from[0], from[1], 127, 0, 0, 1],
        "second reply names the peer"
    );
    check_relay(&mut c, &mut peer).await;
}

#[tokio::test]
async fn socks4_bind_timeout_gets_reply_91() {
    let h = harness_with_bind_timeout(1).await;
    let mut c = h.connect().await;
    c.write_all(&[4, 2, 0, 21, 127, 0, 0, 1, 0]).await.unwrap();
    assert_eq!(read_n(&mut c, 2).await, [0, 90]);
    let _ = read_n(&mut c, 6).await;
    assert_eq!(read_to_eof(&mut c).await, [0, 91, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn socks6_bind_reports_listener_then_peer_and_relays_both_ways() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // Digest V6: BIND 0.0.0.0:0.
    c.write_all(&[6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        read_n(&mut c, 4).await,
        [6, 0, 0, 0],
        "authentication reply"
    );
    let first = read_n(&mut c, 12).await;
    assert_eq!(first[..4], [6, 0, 0, 0], "success, no options");
    assert_eq!(first[6..], [0, 1, 127, 0, 0, 1]);
    let port = port_of(&first[4..6]);
    let mut peer = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let from = peer.local_addr().unwrap().port().to_be_bytes();
    assert_eq!(
        read_n(&mut c, 12).await,
        [6, 0, 0, 0, from[0], from[1], 0, 1, 127, 0, 0, 1],
        "second operation reply names the peer"
    );
    check_relay(&mut c, &mut peer).await;
}

#[tokio::test]
async fn socks6_bind_answers_listen_backlog_with_zero() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // BIND 127.0.0.1:0 with Listen Backlog 10 (digest V17).
    c.write_all(&[
        6, 2, 0, 8, 0, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 8, 0x84, 3, 0, 10,
    ])
    .await
    .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    let first = read_n(&mut c, 20).await;
    assert_eq!(first[..4], [6, 0, 0, 8]);
    assert_eq!(first[6..12], [0, 1, 127, 0, 0, 1]);
    assert_eq!(first[12..], [0, 1, 0, 8, 0x84, 3, 0, 0], "no backlog kept");
}

#[tokio::test]
async fn socks6_bind_timeout_gets_reply_09() {
    let h = harness_with_bind_timeout(1).await;
    let mut c = h.connect().await;
    c.write_all(&[6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    let _ = read_n(&mut c, 8).await;
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks6_bind_to_privileged_port_gets_reply_02() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[6, 2, 0, 0, 0, 80, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, [6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
}

#[tokio::test]
async fn socks4_bind_refuses_unexpected_peer_with_reply_91() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // Expects 127.0.0.2; the peer comes from 127.0.0.1.
    c.write_all(&[4, 2, 0, 21, 127, 0, 0, 2, 0]).await.unwrap();
    let first = read_n(&mut c, 8).await;
    assert_eq!(first[..2], [0, 90]);
    let listener: SocketAddr = (
        [first[4], first[5], first[6], first[7]],
        port_of(&first[2..4]),
    )
        .into();
    let peer = tokio::net::TcpSocket::new_v4().unwrap();
    peer.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let _peer = peer.connect(listener).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, [0, 91, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn socks6_bind_reports_mptcp_for_listener_and_peer() {
    let mptcp_on =
        std::fs::read_to_string("/proc/sys/net/mptcp/enabled").is_ok_and(|v| v.trim() == "1");
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // BIND 127.0.0.1:0 with "MPTCP desired" (digest V17).
    c.write_all(&[
        6, 2, 0, 8, 0, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 8, 0x84, 2, 2, 0,
    ])
    .await
    .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    let first = read_n(&mut c, 20).await;
    assert_eq!(first[..4], [6, 0, 0, 8]);
    let accepts = if mptcp_on { 2 } else { 1 };
    assert_eq!(
        first[12..],
        [0, 1, 0, 8, 0x84, 2, accepts, 0],
        "first reply: whether an MPTCP connection will be accepted"
    );
    // A plain TCP peer: the second reply says MPTCP is not in use.
    let mut peer = TcpStream::connect(("127.0.0.1", port_of(&first[4..6])))
        .await
        .unwrap();
    let from = peer.local_addr().unwrap().port().to_be_bytes();
    assert_eq!(
        read_n(&mut c, 20).await,
        [
            6, 0, 0, 8, from[0], from[1], 0, 1, 127, 0, 0, 1, 0, 1, 0, 8, 0x84, 2, 1, 0
        ]
    );
    check_relay(&mut c, &mut peer).await;
}
