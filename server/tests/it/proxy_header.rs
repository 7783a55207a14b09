//! Listeners marked `proxy`: the PROXY protocol v2 header names the client,
//! and its address is the one limits and logs use; a connection without a
//! valid header is closed cleanly and counted; a listener not marked
//! answers a header as the protocol's malformed first message.

use std::net::SocketAddr;
use std::time::Duration;

use sixpath_protocol::proxy::{Header, SIGNATURE};
use sixpath_server::config::Protocol;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::admin::raw_get;
use crate::{Harness, read_n, read_to_eof};

/// A server whose listener is marked `proxy`, with an admin endpoint.
async fn proxied(adjust: impl FnOnce(&mut sixpath_server::config::Settings)) -> Harness {
    Harness::start_custom(None, |s| {
        s.listen[0].proxy = true;
        s.admin = Some("127.0.0.1:0".parse().unwrap());
        adjust(s);
    })
    .await
}

/// A connection that starts with a PROXY header naming `client`.
async fn connect_as(h: &Harness, client: &str) -> TcpStream {
    let mut c = h.connect().await;
    let header = Header::proxy(client.parse().unwrap(), h.server);
    c.write_all(&header.to_bytes()).await.unwrap();
    c
}

/// SOCKS5 CONNECT to `target` without authentication: the method
/// selection, then the reply's first four bytes (VER REP RSV ATYP).
async fn socks5_connect(c: &mut TcpStream, target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 echo")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    c.write_all(&req).await.unwrap();
    read_n(c, 6).await
}

fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("sixpath_server_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {page}"))
}

#[tokio::test]
async fn the_per_source_cap_counts_the_client_the_proxy_header_names() {
    let h = proxied(|s| s.max_connections_per_source = 1).await;
    // Every connection comes from 127.0.0.1; the header names the client.
    let mut held = connect_as(&h, "192.0.2.10:40000").await;
    assert_eq!(socks5_connect(&mut held, h.echo).await, [5, 0, 5, 0, 0, 1]);
    let mut same = connect_as(&h, "192.0.2.10:40001").await;
    assert_eq!(socks5_connect(&mut same, h.echo).await, [5, 0, 5, 2, 0, 1]);
    let mut other = connect_as(&h, "[2001:db8::11]:40002").await;
    assert_eq!(socks5_connect(&mut other, h.echo).await, [5, 0, 5, 0, 0, 1]);
    let page = raw_get(h.admin.unwrap(), "/metrics").await;
    assert_eq!(
        metric(&page, "connections_refused_total{cap=\"per_source\"}"),
        1
    );
    assert_eq!(metric(&page, "proxy_headers_refused_total"), 0);
}

#[tokio::test]
async fn a_local_header_keeps_the_connections_own_address() {
    let h = proxied(|_| {}).await;
    let mut c = h.connect().await;
    c.write_all(&Header::local().to_bytes()).await.unwrap();
    assert_eq!(socks5_connect(&mut c, h.echo).await, [5, 0, 5, 0, 0, 1]);
}

/// Sends `bytes` on a `proxy` listener: the server closes cleanly (no
/// reset, no answer) and counts it.
async fn closed_without_answer(h: &Harness, bytes: &[u8], counted: u64) {
    let mut c = h.connect().await;
    c.write_all(bytes).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, Vec::<u8>::new());
    let page = raw_get(h.admin.unwrap(), "/metrics").await;
    assert_eq!(metric(&page, "proxy_headers_refused_total"), counted);
}

#[tokio::test]
async fn a_connection_without_a_proxy_header_is_closed_cleanly_and_counted() {
    let h = proxied(|_| {}).await;
    // A SOCKS5 greeting straight from a client that bypassed the balancer.
    closed_without_answer(&h, &[5, 1, 0], 1).await;
    // A version 1 (text) header.
    closed_without_answer(&h, b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n\x05\x01\x00", 2).await;
}

#[tokio::test]
async fn a_garbage_proxy_header_is_closed_cleanly_and_counted() {
    let h = proxied(|_| {}).await;
    let mut bad_version = Header::proxy("192.0.2.1:1".parse().unwrap(), h.server).to_bytes();
    bad_version[12] = 0x31;
    closed_without_answer(&h, &bad_version, 1).await;
    // A length running past what the balancer could send: TLVs that
    // overrun it.
    let mut bad_tlv = Header::proxy("192.0.2.1:1".parse().unwrap(), h.server).to_bytes();
    bad_tlv[15] += 3;
    bad_tlv.extend_from_slice(&[0x04, 0x00, 0x09]);
    closed_without_answer(&h, &bad_tlv, 2).await;
    // PROXY without addresses (family UNSPEC) names no client.
    let mut unspec = SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    closed_without_answer(&h, &unspec, 3).await;
}

#[tokio::test]
async fn a_proxy_header_that_never_ends_is_closed_at_the_handshake_deadline() {
    let h = proxied(|s| s.handshake_timeout = Duration::from_millis(300)).await;
    closed_without_answer(&h, &SIGNATURE[..10], 1).await;
}

#[tokio::test]
async fn a_proxy_header_on_an_unmarked_listener_gets_the_version_mismatch_reply() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    let mut bytes = Header::proxy("192.0.2.1:1".parse().unwrap(), h.server).to_bytes();
    bytes.extend_from_slice(&[5, 1, 0]);
    c.write_all(&bytes).await.unwrap();
    // SOCKS6 Version Mismatch Reply (draft -11 §5), then a clean close.
    assert_eq!(read_to_eof(&mut c).await, [0x06]);
}

#[tokio::test]
async fn a_proxy_header_on_an_unmarked_convert_listener_gets_malformed_message() {
    let h = Harness::start_with(None, Some(vec![Protocol::Convert])).await;
    let mut c = h.connect().await;
    let bytes = Header::proxy("192.0.2.1:1".parse().unwrap(), h.server).to_bytes();
    c.write_all(&bytes).await.unwrap();
    // RFC 8803 Error TLV "Malformed Message" (code 1, the magic is
    // wrong) echoing the message received, then a clean close.
    let mut expected = vec![0x01, 0x09, 0x22, 0x63, 0x1e, 0x08, 0x01, 0x00];
    expected.extend_from_slice(&bytes);
    assert_eq!(read_to_eof(&mut c).await, expected);
}
