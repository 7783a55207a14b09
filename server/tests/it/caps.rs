//! Connection caps (`--max-connections`, `--max-connections-per-source`):
//! a refused connection gets its protocol's "not allowed" answer, then a
//! clean close, without a handshake.

use std::time::Duration;

use sixpath_server::config::Settings;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::{Harness, read_to_eof};

/// SOCKS5 greeting offering no authentication, then a CONNECT request.
const SOCKS5_NO_AUTH_CONNECT: [u8; 13] = [5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 1, 0, 80];
/// Method selection "no authentication", then REP 0x02 (connection not
/// allowed by ruleset).
const SOCKS5_NOT_ALLOWED: [u8; 12] = [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0];
/// SOCKS4 CONNECT to 192.0.2.1:80 with an empty user id.
const SOCKS4_CONNECT: [u8; 9] = [4, 1, 0, 80, 192, 0, 2, 1, 0];
/// SOCKS4 "request rejected or failed".
const SOCKS4_REJECTED: [u8; 8] = [0, 0x5b, 0, 0, 0, 0, 0, 0];
/// SOCKS6 CONNECT to 192.0.2.1:80.
const SOCKS6_CONNECT: [u8; 12] = [6, 1, 0, 0, 0, 80, 0, 1, 192, 0, 2, 1];
/// SOCKS6 Authentication Reply (success, no options), then Operation Reply
/// 0x02 (connection not allowed by ruleset).
const SOCKS6_NOT_ALLOWED: [u8; 16] = [6, 0, 0, 0, 6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
/// Convert Connect to 192.0.2.1:80.
const CONVERT_CONNECT: [u8; 24] = [
    0x01, 0x06, 0x22, 0x63, 0x0a, 0x05, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192,
    0, 2, 1,
];
/// Convert Error TLV Resource Exceeded (64), retry after 1 s.
const CONVERT_RESOURCE_EXCEEDED: [u8; 8] = [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x40, 0x01];

async fn exchange(h: &Harness, bytes: &[u8]) -> Vec<u8> {
    let mut c = h.connect().await;
    c.write_all(bytes).await.unwrap();
    read_to_eof(&mut c).await
}

/// Every protocol's refusal on a server whose cap is taken by one idle
/// connection.
async fn refusals_are_answered(adjust: impl FnOnce(&mut Settings)) {
    let h = Harness::start_custom(None, adjust).await;
    let _held = h.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        exchange(&h, &SOCKS5_NO_AUTH_CONNECT).await,
        SOCKS5_NOT_ALLOWED
    );
    // Only username/password offered: a method cannot be selected without
    // checking the password, so no acceptable method.
    assert_eq!(exchange(&h, &[5, 1, 2]).await, [5, 0xff]);
    assert_eq!(exchange(&h, &SOCKS4_CONNECT).await, SOCKS4_REJECTED);
    assert_eq!(exchange(&h, &SOCKS6_CONNECT).await, SOCKS6_NOT_ALLOWED);
    assert_eq!(
        exchange(&h, &CONVERT_CONNECT).await,
        CONVERT_RESOURCE_EXCEEDED
    );
}

#[tokio::test]
async fn per_source_cap_refusal_is_answered_not_allowed_in_each_protocol() {
    refusals_are_answered(|s| s.max_connections_per_source = 1).await;
}

#[tokio::test]
async fn total_cap_refusal_is_answered_not_allowed_in_each_protocol() {
    refusals_are_answered(|s| s.max_connections = 1).await;
}

#[tokio::test]
async fn a_refused_client_that_sends_nothing_is_closed_within_seconds() {
    let h = Harness::start_custom(None, |s| s.max_connections_per_source = 1).await;
    let _held = h.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut silent: TcpStream = h.connect().await;
    let started = std::time::Instant::now();
    assert_eq!(read_to_eof(&mut silent).await, Vec::<u8>::new());
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "closed well before the 10 s handshake deadline: {waited:?}"
    );
}
