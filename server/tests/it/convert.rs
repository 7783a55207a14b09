//! RFC 8803 Convert on loopback: exact replies for every answer that does
//! not need a reachable non-loopback origin (Convert forbids loopback
//! destinations; successful connects are tested on the namespace testbed).

use std::net::SocketAddr;
use std::time::SystemTime;

use sixpath_server::config::Settings;
use sixpath_server::handshake::convert::{cookie_bucket, cookie_for};
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::secret::Secret;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};

use crate::netns::in_netns;
use crate::{Harness, read_n, read_to_eof};

const CONNECT_LOOPBACK: [u8; 24] = [
    0x01, 0x06, 0x22, 0x63, 0x0a, 0x05, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127,
    0, 0, 1,
];

async fn exchange(h: &Harness, bytes: &[u8]) -> Vec<u8> {
    let mut c = h.connect().await;
    c.write_all(bytes).await.unwrap();
    read_to_eof(&mut c).await
}

#[tokio::test]
async fn info_gets_supported_tcp_extensions_then_close() {
    let h = Harness::start(None).await;
    let reply = exchange(&h, &[0x01, 0x02, 0x22, 0x63, 0x01, 0x01, 0x00, 0x00]).await;
    // SACK-permitted 4, timestamps 8, MPTCP 30, TFO 34.
    assert_eq!(
        reply,
        [0x01, 0x03, 0x22, 0x63, 0x15, 0x02, 0x00, 0x00, 4, 8, 30, 34]
    );
}

#[tokio::test]
async fn loopback_destination_gets_malformed_with_echo() {
    let h = Harness::start(None).await;
    let reply = exchange(&h, &CONNECT_LOOPBACK).await;
    let mut expected = vec![0x01, 0x08, 0x22, 0x63, 0x1e, 0x07, 0x01, 0x00];
    expected.extend(CONNECT_LOOPBACK);
    assert_eq!(reply, expected);
}

#[tokio::test]
async fn header_without_connect_gets_malformed_with_echo() {
    let h = Harness::start(None).await;
    let reply = exchange(&h, &[0x01, 0x01, 0x22, 0x63]).await;
    assert_eq!(
        reply,
        [
            0x01, 0x03, 0x22, 0x63, 0x1e, 0x02, 0x01, 0x00, 0x01, 0x01, 0x22, 0x63
        ]
    );
}

#[tokio::test]
async fn zero_total_length_is_reset_without_reply() {
    // "If the Total Length is set to zero ... the connection MUST be
    // reset" (RFC 8803 §5.1): a reset, not a FIN.
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[0x01, 0x00, 0x22, 0x63]).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut c, &mut buf),
    )
    .await
    .expect("the server ends the connection");
    match read {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, got {n} bytes and a FIN: {:?}", &buf[..n]),
    }
}

#[tokio::test]
async fn denied_destination_gets_not_authorized() {
    let h = Harness::start(None).await;
    // 10.1.1.1:8080 (vector T1): private, denied by the default egress
    // policy before any packet is sent.
    let t1 = [
        0x01, 0x06, 0x22, 0x63, 0x0a, 0x05, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
        10, 1, 1, 1,
    ];
    assert_eq!(
        exchange(&h, &t1).await,
        [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x20, 0x00]
    );
}

#[tokio::test]
async fn unknown_tlv_gets_unsupported_message_with_echo() {
    let h = Harness::start(None).await;
    let msg = [0x01, 0x02, 0x22, 0x63, 0x2a, 0x01, 0x00, 0x00];
    let mut expected = vec![0x01, 0x04, 0x22, 0x63, 0x1e, 0x03, 0x02, 0x00];
    expected.extend(msg);
    assert_eq!(exchange(&h, &msg).await, expected);
}

#[tokio::test]
async fn convert_only_listener_answers_version_2_with_unsupported_version() {
    let h = Harness::start_with(None, Some(vec![sixpath_server::config::Protocol::Convert])).await;
    let reply = exchange(&h, &[0x02, 0x01, 0x22, 0x63]).await;
    assert_eq!(reply, [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x00, 0x01]);
}

#[tokio::test]
async fn convert_is_refused_where_authentication_is_required() {
    let h = Harness::start(Some(&[("u", "p")])).await;
    let t4 = [
        0x01, 0x06, 0x22, 0x63, 0x0a, 0x05, 0x1f, 0x90, 0x20, 0x01, 0x48, 0x60, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0x88, 0x88,
    ];
    assert_eq!(
        exchange(&h, &t4).await,
        [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x20, 0x00]
    );
}

// ---- Cookies (--convert-cookies) ----

/// The server key of the cookie tests; cookies are computed here from it.
const KEY: [u8; 32] = [0x5a; 32];
/// T1: Base Connect to 10.1.1.1:8080.
const CONNECT_T1: [u8; 24] = [
    0x01, 0x06, 0x22, 0x63, 0x0a, 0x05, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10,
    1, 1, 1,
];
/// Not Authorized, header included.
const NOT_AUTHORIZED: [u8; 8] = [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x20, 0x00];

fn key() -> Secret {
    Secret::from_bytes(&KEY).unwrap()
}

fn cookie_mode(s: &mut Settings) {
    s.secret = key();
    s.convert_cookies = true;
    s.egress_rules
        .push(EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap());
}

fn bucket_now() -> u64 {
    cookie_bucket(SystemTime::now())
}

/// `01 06 22 63 | 1e 05 03 00 <16-byte cookie>`: Missing Cookie with the
/// cookie of `client` in `bucket`.
fn missing_cookie_reply(client: &str, bucket: u64) -> Vec<u8> {
    let mut v = vec![0x01, 0x06, 0x22, 0x63, 0x1e, 0x05, 0x03, 0x00];
    v.extend(cookie_for(&key(), client.parse().unwrap(), bucket).as_bytes());
    v
}

/// A Base Connect to `target` followed by a Cookie TLV carrying `cookie`
/// (16 bytes) and then `data`.
fn connect_with_cookie(target: SocketAddr, cookie: &[u8], data: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 target expected")
    };
    assert_eq!(cookie.len(), 16);
    let mut v = vec![0x01, 0x0b, 0x22, 0x63, 0x0a, 0x05];
    v.extend(t.port().to_be_bytes());
    v.extend([0; 10]);
    v.extend([0xff, 0xff]);
    v.extend(t.ip().octets());
    v.extend([0x16, 0x05, 0x00, 0x00]);
    v.extend(cookie);
    v.extend(data);
    v
}

/// Sends `bytes` from address `from`, half-closes, reads to the end.
async fn exchange_from(h: &Harness, from: &str, bytes: &[u8]) -> Vec<u8> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(h.server).await.unwrap();
    c.write_all(bytes).await.unwrap();
    c.shutdown().await.unwrap();
    read_to_eof(&mut c).await
}

/// An echo server on 198.18.0.1 (inside the test's namespace).
async fn echo_on_test_net() -> SocketAddr {
    let l = TcpListener::bind("198.18.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn cookie_mode_answers_connect_without_cookie_with_missing_cookie_for_the_address() {
    let h = Harness::start_custom(None, cookie_mode).await;
    let before = bucket_now();
    let reply = exchange(&h, &CONNECT_T1).await;
    let after = bucket_now();
    assert!(
        reply == missing_cookie_reply("127.0.0.1", before)
            || reply == missing_cookie_reply("127.0.0.1", after),
        "{reply:02x?}"
    );
    // Bound to the address: another client address gets another cookie.
    let other = exchange_from(&h, "127.0.0.2", &CONNECT_T1).await;
    assert_eq!(other.len(), 24);
    assert_ne!(other, reply);
}

#[tokio::test]
async fn cookie_mode_answers_info_without_cookie_with_missing_cookie() {
    let h = Harness::start_custom(None, cookie_mode).await;
    let before = bucket_now();
    let reply = exchange(&h, &[0x01, 0x02, 0x22, 0x63, 0x01, 0x01, 0x00, 0x00]).await;
    assert!(
        reply == missing_cookie_reply("127.0.0.1", before)
            || reply == missing_cookie_reply("127.0.0.1", bucket_now()),
        "{reply:02x?}"
    );
}

#[tokio::test]
async fn cookie_mode_off_by_default_ignores_cookie_tlvs() {
    let h = Harness::start(None).await;
    // T1 without a cookie reaches the egress policy (denied: 32), not the
    // cookie check.
    assert_eq!(exchange(&h, &CONNECT_T1).await, NOT_AUTHORIZED);
}

#[test]
fn cookie_mode_relays_with_the_issued_cookie() {
    const TEST: &str = "cookie_mode_relays_with_the_issued_cookie";
    in_netns(TEST, &["addr add 198.18.0.1/32 dev lo"], || async {
        let h = Harness::start_custom(None, cookie_mode).await;
        let echo = echo_on_test_net().await;
        // Step 1-2 (digest §3.6): no cookie, Missing Cookie with one.
        let mut first = connect_with_cookie(echo, &[0; 16], b"");
        first.truncate(24);
        first[1] = 0x06;
        let reply = exchange(&h, &first).await;
        assert_eq!(reply.len(), 24, "{reply:02x?}");
        assert_eq!(reply[..8], [0x01, 0x06, 0x22, 0x63, 0x1e, 0x05, 0x03, 0x00]);
        let cookie = reply[8..].to_vec();
        assert!(
            cookie == cookie_for(&key(), "127.0.0.1".parse().unwrap(), bucket_now()).as_bytes()
                || cookie
                    == cookie_for(&key(), "127.0.0.1".parse().unwrap(), bucket_now() - 1)
                        .as_bytes()
        );
        // Step 4-5: with the cookie the request proceeds; the bytes after
        // the Convert message reach the target first.
        let mut c = h.connect().await;
        c.write_all(&connect_with_cookie(echo, &cookie, b"ping"))
            .await
            .unwrap();
        assert_eq!(read_n(&mut c, 4).await, [0x01, 0x01, 0x22, 0x63]);
        c.shutdown().await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, b"ping");
    });
}

#[test]
fn cookie_mode_refuses_a_cookie_from_another_address_with_not_authorized() {
    const TEST: &str = "cookie_mode_refuses_a_cookie_from_another_address_with_not_authorized";
    in_netns(TEST, &["addr add 198.18.0.1/32 dev lo"], || async {
        let h = Harness::start_custom(None, cookie_mode).await;
        let echo = echo_on_test_net().await;
        let for_1 = cookie_for(&key(), "127.0.0.1".parse().unwrap(), bucket_now());
        let for_2 = cookie_for(&key(), "127.0.0.2".parse().unwrap(), bucket_now());
        // 127.0.0.1's cookie, sent from 127.0.0.2.
        let stolen = connect_with_cookie(echo, for_1.as_bytes(), b"");
        assert_eq!(
            exchange_from(&h, "127.0.0.2", &stolen).await,
            NOT_AUTHORIZED
        );
        // 127.0.0.2's own cookie is accepted from 127.0.0.2.
        let own = connect_with_cookie(echo, for_2.as_bytes(), b"");
        assert_eq!(
            exchange_from(&h, "127.0.0.2", &own).await,
            [0x01, 0x01, 0x22, 0x63]
        );
    });
}

#[test]
fn cookie_mode_accepts_the_previous_bucket_and_refuses_older_cookies() {
    const TEST: &str = "cookie_mode_accepts_the_previous_bucket_and_refuses_older_cookies";
    in_netns(TEST, &["addr add 198.18.0.1/32 dev lo"], || async {
        let h = Harness::start_custom(None, cookie_mode).await;
        let echo = echo_on_test_net().await;
        let ip = "127.0.0.1".parse().unwrap();
        let expired = cookie_for(&key(), ip, bucket_now() - 2);
        let msg = connect_with_cookie(echo, expired.as_bytes(), b"");
        assert_eq!(exchange_from(&h, "127.0.0.1", &msg).await, NOT_AUTHORIZED);
        // Forged: right length, wrong MAC.
        let msg = connect_with_cookie(echo, &[0xab; 16], b"");
        assert_eq!(exchange_from(&h, "127.0.0.1", &msg).await, NOT_AUTHORIZED);
        // The previous bucket is still valid.
        let previous = cookie_for(&key(), ip, bucket_now() - 1);
        let msg = connect_with_cookie(echo, previous.as_bytes(), b"");
        assert_eq!(
            exchange_from(&h, "127.0.0.1", &msg).await,
            [0x01, 0x01, 0x22, 0x63]
        );
    });
}
