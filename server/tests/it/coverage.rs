//! The error paths of every protocol the other modules leave out: truncated
//! and stalled handshakes, oversized SOCKS6 fields, version mismatch for
//! every unknown first byte, SOCKS5 method and RFC 1929 failures, SOCKS4
//! rejections, Convert's refused and ICMP answers, and Session IDs in SOCKS6
//! BIND and UDP ASSOCIATE replies. Exact reply bytes throughout
//! (`docs/server-tests.md` maps each path to its test).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::udp::UdpMessage;
use sixpath_protocol::socks6::{AuthReplyType, Command, ReplyCode, SocksOption};
use sixpath_protocol::{Decoded, socks6};
use sixpath_server::config::Protocol;
use sixpath_server::policy::{EgressRule, RuleAction};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::netns::in_netns;
use crate::sessions::{Router, auth_reply, bytes, op_reply, read_msg, request};
use crate::{Harness, read_to_eof};

const USERS: &[(&str, &str)] = &[("alice", "secret")];

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sends `bytes`, half-closes, and returns everything until the server's
/// close.
async fn send_then_eof(h: &Harness, bytes: &[u8]) -> Vec<u8> {
    let mut c = h.connect().await;
    c.write_all(bytes).await.unwrap();
    c.shutdown().await.unwrap();
    read_to_eof(&mut c).await
}

/// Sends `bytes`, then stays silent; returns everything until the server's
/// close.
async fn send_then_wait(h: &Harness, bytes: &[u8]) -> Vec<u8> {
    let mut c = h.connect().await;
    c.write_all(bytes).await.unwrap();
    read_to_eof(&mut c).await
}

/// A valid prefix of each protocol's handshake and what the server has
/// answered by then.
const TRUNCATED: &[(&str, &[u8], &[u8])] = &[
    ("socks6 header", &[6, 1, 0, 0, 0, 80], &[]),
    ("socks6 address", &[6, 1, 0, 0, 0, 80, 0, 1, 127, 0], &[]),
    (
        // Declares 10 bytes of initial data, sends 3.
        "socks6 initial data",
        &[
            6, 1, 0, 8, 0, 80, 0, 1, 127, 0, 0, 1, 0, 2, 0, 8, 0, 10, 0, 0, b'a', b'b', b'c',
        ],
        &[],
    ),
    ("socks5 method request", &[5, 2, 0], &[]),
    ("socks5 request", &[5, 1, 0, 5, 1, 0, 1, 127], &[5, 0]),
    (
        "socks5 domain",
        &[5, 1, 0, 5, 1, 0, 3, 9, b'e', b'x'],
        &[5, 0],
    ),
    ("socks4 request", &[4, 1, 0, 80, 127, 0], &[]),
    (
        "socks4 user id",
        &[4, 1, 0, 80, 127, 0, 0, 1, b'u', b's'],
        &[],
    ),
    (
        "socks4a host name",
        &[4, 1, 0, 80, 0, 0, 0, 1, 0, b'e', b'x', b'a'],
        &[],
    ),
    ("convert header", &[1, 6, 0x22], &[]),
    (
        "convert tlv",
        &[1, 6, 0x22, 0x63, 0x0a, 5, 0, 80, 0, 0],
        &[],
    ),
];

#[tokio::test]
async fn truncated_handshakes_then_eof_are_closed_with_exactly_the_replies_so_far() {
    let h = Harness::start(None).await;
    for (what, prefix, answer) in TRUNCATED {
        assert_eq!(send_then_eof(&h, prefix).await, *answer, "{what}");
    }
}

#[tokio::test]
async fn truncated_handshakes_then_silence_are_closed_at_the_handshake_deadline() {
    let h = Harness::start_custom(None, |s| s.handshake_timeout = Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for (what, prefix, answer) in TRUNCATED {
        let server = h.server;
        all.spawn(async move {
            let mut c = TcpStream::connect(server).await.unwrap();
            c.write_all(prefix).await.unwrap();
            assert_eq!(read_to_eof(&mut c).await, *answer, "{what}");
        });
    }
    while let Some(done) = all.join_next().await {
        done.unwrap();
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "closed after {waited:?}");
}

#[tokio::test]
async fn socks5_password_stage_truncated_then_eof_or_silence_is_closed_after_05_02() {
    let h = Harness::start_custom(Some(USERS), |s| {
        s.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let half = [5, 1, 2, 1, 5, b'a', b'l'];
    assert_eq!(send_then_eof(&h, &half).await, [5, 2]);
    assert_eq!(send_then_wait(&h, &half).await, [5, 2]);
}

#[tokio::test]
async fn every_unknown_first_byte_gets_the_socks6_version_mismatch_byte() {
    let h = Harness::start(None).await;
    for first in (0u8..=255).filter(|b| ![1, 4, 5, 6].contains(b)) {
        assert_eq!(
            send_then_wait(&h, &[first, 1, 0, 0]).await,
            [6],
            "first byte 0x{first:02x}"
        );
    }
}

#[tokio::test]
async fn protocols_a_listener_does_not_serve_get_version_mismatch() {
    let h = Harness::start_with(None, Some(vec![Protocol::Socks5])).await;
    // SOCKS6, Convert and SOCKS4 first bytes on a SOCKS5-only listener.
    for first in [6u8, 1, 4] {
        assert_eq!(
            send_then_wait(&h, &[first, 1, 0, 0]).await,
            [6],
            "0x{first:02x}"
        );
    }
    let h = Harness::start_with(None, Some(vec![Protocol::Socks6])).await;
    assert_eq!(send_then_wait(&h, &[5, 1, 0]).await, [6]);
}

// SOCKS6 -----------------------------------------------------------------

#[tokio::test]
async fn socks6_options_length_over_16384_is_closed_without_reply() {
    let h = Harness::start(None).await;
    // Options Length 0x4001: "MUST NOT exceed 16384"; no code is defined
    // (digest §13), so the server closes.
    let mut req = vec![6, 1, 0x40, 0x01, 0, 80, 0, 1, 127, 0, 0, 1];
    req.extend([0u8; 64]);
    assert_eq!(send_then_wait(&h, &req).await, b"");
    // 0xffff: also refused before any option is read.
    assert_eq!(
        send_then_wait(&h, &[6, 1, 0xff, 0xff, 0, 80, 0, 1, 127, 0, 0, 1]).await,
        b""
    );
}

#[tokio::test]
async fn socks6_initial_data_length_over_16384_is_closed_without_reply() {
    let h = Harness::start(None).await;
    // Authentication Method Advertisement with Initial Data Length 0x4001.
    let req = [
        6, 1, 0, 8, 0, 80, 0, 1, 127, 0, 0, 1, 0, 2, 0, 8, 0x40, 0x01, 0, 0,
    ];
    assert_eq!(send_then_wait(&h, &req).await, b"");
}

#[tokio::test]
async fn socks6_options_of_exactly_16384_bytes_are_accepted() {
    let h = Harness::start(None).await;
    // A NOOP whose options area is one 16384-byte unknown option: at the
    // limit, so the request is served.
    let mut req = vec![6, 0, 0x40, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];
    req.extend([0xfe, 0xed, 0x40, 0x00]);
    req.extend(vec![0u8; 16384 - 4]);
    assert_eq!(
        send_then_wait(&h, &req).await,
        [6, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

/// An Authentication Data option (method 2) for `user`/`pass` (5 and 6
/// bytes: 20 bytes padded).
fn userpass_option(user: [u8; 5], pass: [u8; 6]) -> Vec<u8> {
    let mut o = vec![0, 4, 0, 20, 2, 1, 5];
    o.extend(user);
    o.push(6);
    o.extend(pass);
    o.push(0);
    o
}

#[tokio::test]
async fn socks6_duplicate_auth_data_is_read_first_wins() {
    let h = Harness::start(Some(USERS)).await;
    let right = userpass_option(*b"alice", *b"secret");
    let wrong = userpass_option(*b"alice", *b"wrong!");
    let noop = |first: &[u8], second: &[u8]| {
        let mut req = vec![6, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0];
        req.extend(first);
        req.extend(second);
        req
    };
    // Duplicates are tolerated (digest §3.1 robust parsing); the first
    // Authentication Data of a method is the one checked.
    assert_eq!(
        send_then_wait(&h, &noop(&right, &wrong)).await,
        [
            6, 0, 0, 8, 0, 4, 0, 8, 2, 1, 0, 0, // success, status 0
            6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, // NOOP done
        ]
    );
    assert_eq!(
        send_then_wait(&h, &noop(&wrong, &right)).await,
        [6, 1, 0, 8, 0, 4, 0, 8, 2, 1, 1, 0]
    );
}

#[tokio::test]
async fn socks6_without_credentials_on_a_password_server_gets_method_2_selected_in_a_failure() {
    let h = Harness::start(Some(USERS)).await;
    // Authentication Reply Type 1 with Authentication Method Selection 2.
    assert_eq!(
        send_then_wait(&h, &[6, 1, 0, 0, 0, 80, 0, 1, 127, 0, 0, 1]).await,
        [6, 1, 0, 8, 0, 3, 0, 8, 2, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks6_malformed_credentials_get_authentication_failure() {
    let h = Harness::start(Some(USERS)).await;
    // Authentication Data for method 2 whose RFC 1929 version is 2.
    let req = [
        6, 1, 0, 12, 0, 80, 0, 1, 127, 0, 0, 1, 0, 4, 0, 12, 2, 2, 1, b'a', 1, b'b', 0, 0,
    ];
    assert_eq!(
        send_then_wait(&h, &req).await,
        [6, 1, 0, 8, 0, 4, 0, 8, 2, 1, 1, 0]
    );
}

/// Opens a BIND or UDP ASSOCIATE with a Session Request and checks that
/// the new Session ID is in the Authentication Reply and the successful
/// Operation Reply; returns the connection and the Operation Reply bytes.
async fn session_in_replies(h: &Harness, command: Command) -> (TcpStream, Vec<u8>) {
    let mut c = h.connect().await;
    let req = request(
        command,
        Endpoint::new(Ipv4Addr::UNSPECIFIED, 0),
        vec![SocksOption::SessionRequest],
    );
    c.write_all(&bytes(&req)).await.unwrap();
    let (auth, auth_wire) = auth_reply(&mut c).await;
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    let id = auth.options.session_id().expect("Session ID").clone();
    // 06 00 00 28 | 00 06 00 28 <36-byte ID>
    assert_eq!(auth_wire[..8], [6, 0, 0, 0x28, 0, 6, 0, 0x28]);
    let (op, op_wire) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);
    assert_eq!(op.options.session_id(), Some(&id));
    // 06 00 00 28 | port | 00 01 127.0.0.1 | 00 06 00 28 <the same ID>
    assert_eq!(op_wire[..4], [6, 0, 0, 0x28]);
    assert_eq!(op_wire[6..12], [0, 1, 127, 0, 0, 1]);
    assert_eq!(op_wire[12..16], [0, 6, 0, 0x28]);
    assert_eq!(op_wire[16..], auth_wire[8..]);
    (c, op_wire)
}

#[tokio::test]
async fn socks6_bind_with_session_request_carries_the_session_id_in_the_operation_reply() {
    let h = Harness::start(None).await;
    let (mut c, op) = session_in_replies(&h, Command::BIND).await;
    let port = u16::from_be_bytes([op[4], op[5]]);
    // The listener really is there: a peer connects and the second reply
    // names it, without a Session ID.
    let peer = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let (second, wire) = op_reply(&mut c).await;
    assert_eq!(second.code, ReplyCode::SUCCESS);
    assert_eq!(second.options.session_id(), None);
    let from = peer.local_addr().unwrap().port().to_be_bytes();
    assert_eq!(wire, [6, 0, 0, 0, from[0], from[1], 0, 1, 127, 0, 0, 1]);
}

#[tokio::test]
async fn socks6_udp_associate_with_session_request_carries_the_session_id_in_the_operation_reply() {
    let h = Harness::start(None).await;
    let (mut c, _) = session_in_replies(&h, Command::UDP_ASSOCIATE).await;
    // The Association Init follows the Operation Reply.
    let (init, wire) = read_msg(&mut c, UdpMessage::decode).await;
    assert!(matches!(init, UdpMessage::AssociationInit { .. }));
    assert_eq!(wire[..4], [6, 1, 0, 12]);
}

#[tokio::test]
async fn socks6_requests_inside_a_session_get_session_ok_and_no_new_id() {
    let h = Harness::start(None).await;
    let (_c, op) = session_in_replies(&h, Command::BIND).await;
    let id = socks6::SessionId::new(&op[16..]).unwrap();
    let mut c = h.connect().await;
    let req = request(
        Command::BIND,
        Endpoint::new(Ipv4Addr::UNSPECIFIED, 0),
        vec![SocksOption::SessionId(id)],
    );
    c.write_all(&bytes(&req)).await.unwrap();
    let (_, auth) = auth_reply(&mut c).await;
    // Session OK (kind 8), no new ID.
    assert_eq!(auth, [6, 0, 0, 4, 0, 8, 0, 4]);
    let (_, op) = op_reply(&mut c).await;
    assert_eq!(
        op[..4],
        [6, 0, 0, 0],
        "no Session ID in the Operation Reply"
    );
}

// SOCKS5 -----------------------------------------------------------------

#[tokio::test]
async fn socks5_method_failures_get_05_ff() {
    let h = Harness::start(None).await;
    // NMETHODS 0, and only methods this server does not use.
    assert_eq!(send_then_wait(&h, &[5, 0]).await, [5, 0xff]);
    assert_eq!(send_then_wait(&h, &[5, 2, 2, 3]).await, [5, 0xff]);
    let h = Harness::start(Some(USERS)).await;
    assert_eq!(send_then_wait(&h, &[5, 1, 0]).await, [5, 0xff]);
}

#[tokio::test]
async fn socks5_password_failures_get_status_01() {
    let h = Harness::start(Some(USERS)).await;
    let login = |ver: u8, user: &[u8], pass: &[u8]| {
        let mut m = vec![5, 1, 2, ver, user.len() as u8];
        m.extend(user);
        m.push(pass.len() as u8);
        m.extend(pass);
        m
    };
    // Wrong password, unknown user, RFC 1929 version 2, empty username.
    for (what, msg) in [
        ("wrong password", login(1, b"alice", b"wrong")),
        ("unknown user", login(1, b"mallory", b"secret")),
        ("version 2", login(2, b"alice", b"secret")),
        ("empty username", login(1, b"", b"secret")),
    ] {
        assert_eq!(send_then_wait(&h, &msg).await, [5, 2, 1, 1], "{what}");
    }
}

#[tokio::test]
async fn socks5_request_errors_get_07_and_01_or_a_plain_close() {
    let h = Harness::start(None).await;
    // Command 9: command not supported (0x07).
    assert_eq!(
        send_then_wait(&h, &[5, 1, 0, 5, 9, 0, 1, 127, 0, 0, 1, 0, 80]).await,
        [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    // A domain name with a NUL inside: general failure (0x01).
    assert_eq!(
        send_then_wait(&h, &[5, 1, 0, 5, 1, 0, 3, 3, b'a', 0, b'b', 0, 80]).await,
        [5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    // A request whose VER is 4: no reply defined, closed after 05 00.
    assert_eq!(
        send_then_wait(&h, &[5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80]).await,
        [5, 0]
    );
}

// SOCKS4 / SOCKS4a --------------------------------------------------------

const SOCKS4_REJECTED: [u8; 8] = [0, 91, 0, 0, 0, 0, 0, 0];

fn socks4_connect(cmd: u8, port: u16, ip: [u8; 4], user: &[u8]) -> Vec<u8> {
    let mut m = vec![4, cmd];
    m.extend(port.to_be_bytes());
    m.extend(ip);
    m.extend(user);
    m.push(0);
    m
}

#[tokio::test]
async fn socks4_failures_get_91() {
    let h = Harness::start(None).await;
    let local = [127, 0, 0, 1];
    let refused = closed_port();
    let mut long_user = vec![b'u'; 256];
    long_user.push(0);
    let mut unresolvable = socks4_connect(1, 80, [0, 0, 0, 1], b"");
    unresolvable.extend(b"no-such-host.invalid\0");
    let mut long_name = socks4_connect(1, 80, [0, 0, 0, 1], b"");
    long_name.extend(vec![b'a'; 300]);
    long_name.push(0);
    for (what, msg) in [
        ("refused", socks4_connect(1, refused, local, b"")),
        ("denied by policy", socks4_connect(1, 9, local, b"")),
        ("denied private", socks4_connect(1, 80, [10, 0, 0, 1], b"")),
        ("unknown command", socks4_connect(3, 80, local, b"")),
        ("user id over 255", socks4_connect(1, 80, local, &long_user)),
        ("name does not resolve", unresolvable),
        ("name over 255", long_name),
    ] {
        assert_eq!(send_then_wait(&h, &msg).await, SOCKS4_REJECTED, "{what}");
    }
}

#[tokio::test]
async fn socks4_is_rejected_with_91_where_passwords_are_required() {
    let h = Harness::start(Some(USERS)).await;
    let msg = socks4_connect(1, h.echo.port(), [127, 0, 0, 1], b"alice");
    assert_eq!(send_then_wait(&h, &msg).await, SOCKS4_REJECTED);
    let msg = socks4_connect(2, 0, [127, 0, 0, 1], b"alice");
    assert_eq!(send_then_wait(&h, &msg).await, SOCKS4_REJECTED, "BIND");
}

// Convert ----------------------------------------------------------------

fn convert_connect(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut m = vec![0x01, 0x06, 0x22, 0x63, 0x0a, 0x05];
    m.extend(port.to_be_bytes());
    m.extend([0; 10]);
    m.extend([0xff, 0xff]);
    m.extend(ip.octets());
    m
}

/// Header (Total Length 2 words) and an Error TLV with `code`, `value`.
fn convert_error(code: u8, value: u8) -> [u8; 8] {
    [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, code, value]
}

#[test]
fn convert_refused_destination_gets_connection_reset_96() {
    const TEST: &str = "convert_refused_destination_gets_connection_reset_96";
    in_netns(TEST, &["addr add 198.18.0.1/32 dev lo"], || async {
        let h = Harness::start_custom(None, |s| {
            s.egress_rules
                .push(EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap());
        })
        .await;
        let msg = convert_connect(Ipv4Addr::new(198, 18, 0, 1), closed_port());
        assert_eq!(send_then_wait(&h, &msg).await, convert_error(96, 0));
    });
}

#[tokio::test]
async fn icmp_unreachable_from_a_router_gets_convert_97_with_the_code_socks5_03_04_and_socks4_91() {
    const TEST: &str =
        "icmp_unreachable_from_a_router_gets_convert_97_with_the_code_socks5_03_04_and_socks4_91";
    let router = match Router::create() {
        Ok(r) => r,
        Err(why) => {
            println!("SKIP {TEST}: needs root and ip netns ({why})");
            return;
        }
    };
    let h = Harness::start_custom(None, |s| {
        s.connect_timeout = Duration::from_secs(5);
        s.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap()];
    })
    .await;
    // .70: an `unreachable` route, ICMP host unreachable (code 1); .130:
    // no route, ICMP network unreachable (code 0).
    let host = router.ip(70);
    let net = router.ip(130);
    assert_eq!(
        send_then_wait(&h, &convert_connect(host, 80)).await,
        convert_error(97, 1)
    );
    assert_eq!(
        send_then_wait(&h, &convert_connect(net, 80)).await,
        convert_error(97, 0)
    );
    let socks5 = |ip: Ipv4Addr| {
        let mut m = vec![5, 1, 0, 5, 1, 0, 1];
        m.extend(ip.octets());
        m.extend(80u16.to_be_bytes());
        m
    };
    assert_eq!(
        send_then_wait(&h, &socks5(host)).await,
        [5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        send_then_wait(&h, &socks5(net)).await,
        [5, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        send_then_wait(&h, &socks4_connect(1, 80, host.octets(), b"")).await,
        SOCKS4_REJECTED
    );
}

#[test]
fn decoders_used_here_agree_with_the_wire() {
    // The helpers above build bytes by hand; the protocol crate decodes
    // them as the requests they claim to be.
    let m = convert_connect(Ipv4Addr::new(198, 18, 0, 1), 80);
    assert!(matches!(
        sixpath_protocol::convert::Request::decode(&m, &[]),
        Ok(Decoded::Complete { len: 24, .. })
    ));
}

/// A new anonymous session (NOOP with a Session Request): its ID.
async fn new_session(h: &Harness) -> socks6::SessionId {
    let mut c = h.connect().await;
    c.write_all(&bytes(&request(
        Command::NOOP,
        Endpoint::unspecified(),
        vec![SocksOption::SessionRequest],
    )))
    .await
    .unwrap();
    let (auth, _) = auth_reply(&mut c).await;
    auth.options.session_id().unwrap().clone()
}

/// A SOCKS6 request in session `id`, read up to its Operation Reply.
async fn in_session(
    h: &Harness,
    command: Command,
    target: Endpoint,
    id: &socks6::SessionId,
    extra: Vec<SocksOption>,
) -> (TcpStream, Vec<u8>) {
    let mut c = h.connect().await;
    let mut opts = vec![SocksOption::SessionId(id.clone())];
    opts.extend(extra);
    c.write_all(&bytes(&request(command, target, opts)))
        .await
        .unwrap();
    let (_, auth) = auth_reply(&mut c).await;
    assert_eq!(auth, [6, 0, 0, 4, 0, 8, 0, 4], "Session OK");
    let (_, op) = op_reply(&mut c).await;
    (c, op)
}

#[tokio::test]
async fn socks6_bind_with_listen_backlog_in_a_session_serves_queued_peers_to_further_binds() {
    use tokio::io::AsyncReadExt;
    let h = Harness::start(None).await;
    let id = new_session(&h).await;
    // The initial BIND asks for a backlog of 3 on the proxy-remote leg.
    let backlog = crate::sessions::stack(
        socks6::Leg::PROXY_REMOTE,
        socks6::StackValue::ListenBacklog(3),
    );
    let any = Endpoint::new(Ipv4Addr::UNSPECIFIED, 0);
    let (mut initial, op) = in_session(&h, Command::BIND, any, &id, vec![backlog]).await;
    let port = [op[4], op[5]];
    // 06 00 00 08 | port | 00 01 127.0.0.1 | Stack: leg 2, level 4, code 3, 3
    assert_eq!(
        op,
        [
            6, 0, 0, 8, port[0], port[1], 0, 1, 127, 0, 0, 1, 0, 1, 0, 8, 0x84, 3, 0, 3
        ]
    );
    let listen = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, u16::from_be_bytes(port)));
    // Two peers queue before anyone accepts them.
    let mut first_peer = TcpStream::connect(listen).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second_peer = TcpStream::connect(listen).await.unwrap();
    for (n, peer) in [(1u8, &mut first_peer), (2, &mut second_peer)] {
        let (mut b, op) = in_session(&h, Command::BIND, Endpoint::from(listen), &id, vec![]).await;
        assert_eq!(op, [6, 0, 0, 0, port[0], port[1], 0, 1, 127, 0, 0, 1]);
        let from = peer.local_addr().unwrap().port().to_be_bytes();
        let (_, second) = op_reply(&mut b).await;
        assert_eq!(
            second,
            [6, 0, 0, 0, from[0], from[1], 0, 1, 127, 0, 0, 1],
            "further BIND {n} gets the peer that queued {n}th"
        );
        peer.write_all(&[n; 3]).await.unwrap();
        let mut got = [0u8; 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [n; 3]);
        b.write_all(b"back").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"back");
    }
    // The initial connection carries no data: nothing comes back on it.
    initial.write_all(b"ignored").await.unwrap();
    let mut buf = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), initial.read(&mut buf))
            .await
            .is_err()
    );
    // Closing it closes the listener.
    drop(initial);
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(listen).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "listener closed with the initial connection");
}

#[tokio::test]
async fn socks6_further_bind_from_another_session_does_not_reach_the_backlog() {
    let h = Harness::start(None).await;
    let (a, b) = (new_session(&h).await, new_session(&h).await);
    let backlog = crate::sessions::stack(
        socks6::Leg::PROXY_REMOTE,
        socks6::StackValue::ListenBacklog(2),
    );
    let any = Endpoint::new(Ipv4Addr::LOCALHOST, 0);
    let (_initial, op) = in_session(&h, Command::BIND, any, &a, vec![backlog]).await;
    let listen =
        std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, u16::from_be_bytes([op[4], op[5]])));
    // Session b asks for the same address: an ordinary BIND there, which
    // cannot listen on a port in use: general failure.
    let (_, op) = in_session(&h, Command::BIND, Endpoint::from(listen), &b, vec![]).await;
    assert_eq!(op, [6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
}

#[tokio::test]
async fn socks4_connect_by_address_gets_90_and_relays() {
    use tokio::io::AsyncReadExt;
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    let mut msg = socks4_connect(1, h.echo.port(), [127, 0, 0, 1], b"bob");
    msg.extend(b"early");
    c.write_all(&msg).await.unwrap();
    let mut reply = [0u8; 8];
    c.read_exact(&mut reply).await.unwrap();
    // VN 0, CD 90, the outbound connection's local port and address.
    assert_eq!(reply[..2], [0, 90]);
    assert_eq!(reply[4..], [127, 0, 0, 1]);
    c.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, b"early");
}

#[test]
fn socks4_connect_timeout_gets_91() {
    const TEST: &str = "socks4_connect_timeout_gets_91";
    // 198.18.1.0/24 routed to `lo`, where nothing answers the SYN.
    in_netns(TEST, &["route add 198.18.1.0/24 dev lo"], || async {
        let h = Harness::start_custom(None, |s| {
            s.connect_timeout = Duration::from_secs(1);
            s.egress_rules
                .push(EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap());
        })
        .await;
        let started = Instant::now();
        let msg = socks4_connect(1, 80, [198, 18, 1, 2], b"");
        assert_eq!(send_then_wait(&h, &msg).await, SOCKS4_REJECTED);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
    });
}

#[test]
fn convert_connect_and_extended_connect_relay_the_first_data_after_their_reply() {
    const TEST: &str =
        "convert_connect_and_extended_connect_relay_the_first_data_after_their_reply";
    in_netns(TEST, &["addr add 198.18.0.1/32 dev lo"], || async {
        use sixpath_protocol::convert::Reply;
        use tokio::io::AsyncReadExt;
        let h = Harness::start_custom(None, |s| {
            s.egress_rules
                .push(EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap());
        })
        .await;
        let port = crate::echo_on("198.18.0.1:0").await.port();
        let target = Ipv4Addr::new(198, 18, 0, 1);
        // Base Connect: the reply is the bare header, then the target's
        // bytes (the echo of the data that followed the Convert message).
        let mut c = h.connect().await;
        let mut msg = convert_connect(target, port);
        msg.extend(b"hello");
        c.write_all(&msg).await.unwrap();
        let mut reply = [0u8; 4];
        c.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [0x01, 0x01, 0x22, 0x63]);
        c.shutdown().await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, b"hello");
        // Extended Connect asking for TFO (34) and MPTCP (30): the reply
        // carries an Extended TCP Header with the SYN+ACK's options.
        let mut c = h.connect().await;
        let mut msg = vec![0x01, 0x07, 0x22, 0x63, 0x0a, 0x06];
        msg.extend(port.to_be_bytes());
        msg.extend([0; 10]);
        msg.extend([0xff, 0xff]);
        msg.extend(target.octets());
        msg.extend([34, 2, 30, 2]);
        msg.extend(b"world");
        c.write_all(&msg).await.unwrap();
        let (reply, wire) = read_msg(&mut c, Reply::decode).await;
        assert_eq!(wire[..6], [0x01, wire[1], 0x22, 0x63, 0x14, wire[5]]);
        let header = reply.extended_tcp_header.expect("Extended TCP Header TLV");
        let opts = header.as_bytes();
        // MSS first (kind 2, length 4); SACK-permitted and timestamps are
        // on by default in a fresh namespace.
        assert_eq!(opts[..2], [2, 4]);
        assert!(opts.windows(2).any(|w| w == [4, 2]), "SACK in {opts:02x?}");
        assert!(opts.windows(2).any(|w| w == [8, 10]), "TS in {opts:02x?}");
        c.shutdown().await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, b"world");
    });
}

#[tokio::test]
async fn socks6_listen_backlog_ends_with_its_session() {
    let h = Harness::start_custom(None, |s| {
        s.sessions.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let backlog = || {
        crate::sessions::stack(
            socks6::Leg::PROXY_REMOTE,
            socks6::StackValue::ListenBacklog(1),
        )
    };
    let any = Endpoint::new(Ipv4Addr::LOCALHOST, 0);
    // Teardown: the server closes the initial connection, with nothing
    // more on it, and the listener.
    let id = new_session(&h).await;
    let (mut initial, op) = in_session(&h, Command::BIND, any.clone(), &id, vec![backlog()]).await;
    let listen =
        std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, u16::from_be_bytes([op[4], op[5]])));
    let mut c = h.connect().await;
    c.write_all(&bytes(&request(
        Command::NOOP,
        Endpoint::unspecified(),
        vec![SocksOption::SessionId(id), SocksOption::SessionTeardown],
    )))
    .await
    .unwrap();
    assert_eq!(read_to_eof(&mut initial).await, b"");
    assert!(TcpStream::connect(listen).await.is_err(), "listener closed");
    // Idle timeout: the same, once the session has been idle for 2 s.
    let id = new_session(&h).await;
    let started = Instant::now();
    let (mut initial, _) = in_session(&h, Command::BIND, any, &id, vec![backlog()]).await;
    assert_eq!(read_to_eof(&mut initial).await, b"");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "closed after {waited:?}");
}
