//! RFC 8803 Convert on loopback: exact replies for every answer that does
//! not need a reachable non-loopback origin (Convert forbids loopback
//! destinations; successful connects are tested on the namespace testbed).

use tokio::io::AsyncWriteExt;

use crate::{Harness, read_to_eof};

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
async fn zero_total_length_is_closed_without_reply() {
    let h = Harness::start(None).await;
    assert_eq!(
        exchange(&h, &[0x01, 0x00, 0x22, 0x63]).await,
        Vec::<u8>::new()
    );
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
