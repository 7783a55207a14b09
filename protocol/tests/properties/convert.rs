//! Property tests for convert (RFC 8803): round trips of arbitrary messages,
//! requests and replies; every decoder fed arbitrary and mutated bytes whole
//! and as every prefix; the echo of any received bytes fits 1020 bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;
use sixpath_protocol::Decoded;
use sixpath_protocol::convert::{
    Connect, Cookie, DecodeOptions, Error, ErrorCode, ErrorTlv, ExtendedTcpHeader, MAX_MESSAGE_LEN,
    Message, Reply, Request, SupportedTcpExtensions, TcpOption, TcpOptionKind, Tlv, TlvType,
    UnknownTlv,
};

use crate::assert_incremental;

/// Option kinds the converter of these tests supports.
const SUPPORTED: &[TcpOptionKind] = &[
    TcpOptionKind::SACK_PERMITTED,
    TcpOptionKind::TIMESTAMPS,
    TcpOptionKind::MPTCP,
    TcpOptionKind::FAST_OPEN,
];

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn tcp_option_with(kind: impl Strategy<Value = u8>) -> impl Strategy<Value = TcpOption> {
    (kind, vec(any::<u8>(), 0..12))
        .prop_map(|(k, v)| TcpOption::new(TcpOptionKind(k), v).expect("kind >= 2, short value"))
}

fn addr() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_ipv6_mapped()),
    ]
}

fn connect() -> impl Strategy<Value = Connect> {
    (any::<u16>(), addr(), vec(tcp_option_with(2u8..=255), 0..6)).prop_map(
        |(port, addr, tcp_options)| Connect {
            port,
            addr,
            tcp_options,
        },
    )
}

fn cookie() -> impl Strategy<Value = Cookie> {
    vec(any::<u8>(), 0..40).prop_map(Cookie::new)
}

fn extended_tcp_header() -> impl Strategy<Value = ExtendedTcpHeader> {
    vec(any::<u8>(), 0..40).prop_map(ExtendedTcpHeader::new)
}

fn supported_tcp_extensions() -> impl Strategy<Value = SupportedTcpExtensions> {
    let kind = any::<u8>()
        .prop_map(TcpOptionKind)
        .prop_filter("announceable", |k| k.may_be_announced());
    vec(kind, 0..10).prop_map(|k| SupportedTcpExtensions::new(&k).expect("announceable kinds"))
}

fn error_tlv() -> impl Strategy<Value = ErrorTlv> {
    prop_oneof![
        (any::<u8>(), vec(any::<u8>(), 0..40))
            .prop_map(|(c, v)| ErrorTlv::new(ErrorCode(c), &v).expect("short value")),
        vec(any::<u8>(), 0..60).prop_map(|r| ErrorTlv::malformed_message(&r)),
        vec(any::<u8>(), 0..60).prop_map(|r| ErrorTlv::unsupported_message(&r)),
        cookie().prop_map(|c| ErrorTlv::missing_cookie(&c).expect("short cookie")),
        any::<u8>().prop_map(ErrorTlv::destination_unreachable),
        any::<u8>().prop_map(ErrorTlv::resource_exceeded),
        Just(ErrorTlv::connection_reset()),
        Just(ErrorTlv::not_authorized()),
    ]
}

fn unknown_tlv() -> impl Strategy<Value = UnknownTlv> {
    let t = any::<u8>()
        .prop_map(TlvType)
        .prop_filter("unassigned", |t| !t.is_assigned());
    (t, vec(any::<u8>(), 0..30)).prop_map(|(t, v)| UnknownTlv::new(t, v).expect("unassigned"))
}

fn tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        Just(Tlv::Info),
        connect().prop_map(Tlv::Connect),
        extended_tcp_header().prop_map(Tlv::ExtendedTcpHeader),
        supported_tcp_extensions().prop_map(Tlv::SupportedTcpExtensions),
        cookie().prop_map(Tlv::Cookie),
        error_tlv().prop_map(Tlv::Error),
        unknown_tlv().prop_map(Tlv::Unknown),
    ]
}

/// A valid message: distinct TLV types, at most 1020 bytes.
fn message() -> impl Strategy<Value = Message> {
    vec(tlv(), 0..8).prop_filter_map("too long", |tlvs| {
        let mut distinct: Vec<Tlv> = Vec::new();
        for t in tlvs {
            if !distinct.iter().any(|d| d.tlv_type() == t.tlv_type()) {
                distinct.push(t);
            }
        }
        Message::new(distinct).ok()
    })
}

/// A request a converter supporting [`SUPPORTED`] accepts.
fn request() -> impl Strategy<Value = Request> {
    let kind = prop_oneof![
        Just(2u8),
        Just(3),
        Just(5),
        proptest::sample::select(SUPPORTED.iter().map(|k| k.0).collect::<Vec<_>>()),
    ];
    let connect = (any::<u16>(), addr(), vec(tcp_option_with(kind), 0..5))
        .prop_map(|(port, addr, tcp_options)| Connect {
            port,
            addr,
            tcp_options,
        })
        .prop_filter("allowed destination", |c| !c.has_forbidden_destination());
    (
        any::<bool>(),
        proptest::option::of(connect),
        proptest::option::of(cookie()),
    )
        .prop_map(|(info, connect, cookie)| Request {
            info,
            connect,
            cookie,
        })
        .prop_filter("encodable", |r| r.to_message().is_ok())
}

fn reply() -> impl Strategy<Value = Reply> {
    (
        proptest::option::of(extended_tcp_header()),
        proptest::option::of(supported_tcp_extensions()),
        proptest::option::of(cookie()),
    )
        .prop_map(
            |(extended_tcp_header, supported_tcp_extensions, cookie)| Reply {
                extended_tcp_header,
                supported_tcp_extensions,
                cookie,
            },
        )
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 0..16).prop_map(Mutation::Extend),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x = *b;
                }
            }
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
            Mutation::Remove(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % n);
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Extend(more) => bytes.extend_from_slice(more),
        }
    }
    bytes
}

/// Bytes that reach the interesting paths: valid encodings of messages,
/// requests and replies, mutated; a valid header followed by random TLVs;
/// and fully random bytes.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        message().prop_map(|m| m.to_bytes()),
        request().prop_map(|r| r.to_message().expect("encodable").to_bytes()),
        reply().prop_map(|r| r.to_message().map(|m| m.to_bytes()).unwrap_or_default()),
    ];
    let header_then_random = (any::<u8>(), vec(any::<u8>(), 0..600)).prop_map(|(tl, rest)| {
        let mut b = vec![1, tl, 0x22, 0x63];
        b.extend_from_slice(&rest);
        b
    });
    // The TLVs of two messages under one header: often duplicates.
    let spliced = (message(), message()).prop_map(|(a, b)| {
        let (a, b) = (a.to_bytes(), b.to_bytes());
        let len = (a.len() + b.len() - 4).min(MAX_MESSAGE_LEN);
        let mut bytes = a;
        bytes[1] = (len / 4) as u8;
        bytes.extend_from_slice(&b[4..]);
        bytes
    });
    prop_oneof![
        3 => (valid, vec(mutation(), 0..4)).prop_map(|(b, m)| apply(b, &m)),
        1 => spliced,
        1 => header_then_random,
        1 => vec(any::<u8>(), 0..600),
    ]
}

/// Checks every decoder on `bytes`, whole and as every prefix.
fn check_decoders(bytes: &[u8]) {
    let strict = assert_incremental(Message::decode, bytes);
    let draft = assert_incremental(
        |b| Message::decode_with(b, DecodeOptions::DRAFT_COMPATIBLE),
        bytes,
    );
    if strict.is_ok() {
        assert_eq!(draft, strict, "the knob only adds the draft magic");
    }
    let request = assert_incremental(|b| Request::decode(b, SUPPORTED), bytes);
    let reply = assert_incremental(Reply::decode, bytes);
    // The validating decoders agree with the structural one on lengths and
    // structural errors.
    for (name, len) in [
        ("request", request.as_ref().ok().and_then(complete_len)),
        ("reply", reply.as_ref().ok().and_then(complete_len)),
    ] {
        if let Some(len) = len {
            assert_eq!(
                strict.as_ref().ok().and_then(complete_len),
                Some(len),
                "{name}"
            );
        }
    }
    if let Err(e) = &strict {
        assert_eq!(request.as_ref().err(), Some(e));
        assert_eq!(reply.as_ref().err(), Some(e));
    }
    // Whatever the converter answers is a valid reply of at most 1020 bytes.
    if let Err(e) = &request {
        check_reply(e, bytes);
    }
    // A complete message re-encodes to something that decodes the same.
    if let Ok(Decoded::Complete { msg, len }) = &strict {
        let again = msg.to_bytes();
        assert!(again.len() <= *len);
        assert_eq!(
            Message::decode(&again),
            Ok(Decoded::Complete {
                msg: msg.clone(),
                len: again.len()
            })
        );
    }
}

fn complete_len<T>(d: &Decoded<T>) -> Option<usize> {
    match d {
        Decoded::Complete { len, .. } => Some(*len),
        Decoded::NeedMore(_) => None,
    }
}

/// Checks the converter's answer to `error` for `received`: none for Total
/// Length 0, else a whole valid reply of at most 1020 bytes whose echo (for
/// codes 1 and 2) is the start of the received message, zero-padded.
fn check_reply(error: &Error, received: &[u8]) {
    let Some(reply) = error.reply_bytes(received) else {
        assert_eq!(error, &Error::ZeroTotalLength);
        return;
    };
    assert!(reply.len() <= MAX_MESSAGE_LEN, "{} bytes", reply.len());
    assert_eq!(reply.len() % 4, 0);
    let Ok(Decoded::Complete { msg, len }) = Message::decode(&reply) else {
        panic!("reply {reply:02x?} does not decode");
    };
    assert_eq!(len, reply.len());
    let [Tlv::Error(e)] = msg.tlvs() else {
        panic!("reply {msg:?} is not one Error TLV");
    };
    if let Some(echo) = e.echo() {
        let limit = match received.get(1) {
            Some(&tl) if tl > 0 => usize::from(tl) * 4,
            _ => received.len(),
        };
        let n = received.len().min(limit).min(MAX_MESSAGE_LEN - 8);
        assert_eq!(&echo[..n], &received[..n]);
        assert!(echo.len() - n < 4 && echo[n..].iter().all(|&b| b == 0));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn message_round_trips(msg in message()) {
        let bytes = msg.to_bytes();
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(
            assert_incremental(Message::decode, &bytes),
            Ok(Decoded::Complete { msg: msg.clone(), len: bytes.len() })
        );
        prop_assert_eq!(
            Message::decode_with(&bytes, DecodeOptions::DRAFT_COMPATIBLE),
            Ok(Decoded::Complete { msg, len: bytes.len() })
        );
    }

    #[test]
    fn every_tlv_round_trips_alone(tlv in tlv()) {
        let msg = Message::new(vec![tlv.clone()]).expect("one short TLV");
        let bytes = msg.to_bytes();
        prop_assert_eq!(bytes.len(), 4 + tlv.encoded_len());
        prop_assert_eq!(tlv.encoded_len() % 4, 0);
        let (back, len) = Message::decode(&bytes).unwrap().complete().unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(back.tlvs(), &[tlv][..]);
    }

    #[test]
    fn message_leaves_application_data(msg in message(), data in vec(any::<u8>(), 0..64)) {
        let mut bytes = msg.to_bytes();
        let len = bytes.len();
        bytes.extend_from_slice(&data);
        prop_assert_eq!(Message::decode(&bytes), Ok(Decoded::Complete { msg, len }));
    }

    #[test]
    fn request_round_trips(request in request()) {
        let mut bytes = Vec::new();
        request.encode(&mut bytes).expect("encodable");
        prop_assert_eq!(bytes.len(), request.encoded_len());
        prop_assert_eq!(
            assert_incremental(|b| Request::decode(b, SUPPORTED), &bytes),
            Ok(Decoded::Complete { msg: request, len: bytes.len() })
        );
    }

    #[test]
    fn reply_round_trips(reply in reply()) {
        let mut bytes = Vec::new();
        reply.encode(&mut bytes).expect("short TLVs fit");
        prop_assert_eq!(bytes.len(), reply.encoded_len());
        prop_assert_eq!(
            assert_incremental(Reply::decode, &bytes),
            Ok(Decoded::Complete { msg: reply, len: bytes.len() })
        );
    }

    #[test]
    fn error_replies_round_trip(e in error_tlv()) {
        let bytes = e.reply_bytes();
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(
            assert_incremental(Reply::decode, &bytes),
            Err(Error::Refused(e))
        );
    }

    #[test]
    fn decoders_handle_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
        check_decoders(&bytes);
    }

    #[test]
    fn decoders_handle_mutated_messages(bytes in interesting_bytes()) {
        check_decoders(&bytes);
    }

    #[test]
    fn echo_never_exceeds_1020_bytes(
        received in prop_oneof![
            vec(any::<u8>(), 0..1400),
            (any::<u8>(), vec(any::<u8>(), 0..1400)).prop_map(|(tl, rest)| {
                let mut b = vec![1, tl, 0x22, 0x63];
                b.extend_from_slice(&rest);
                b
            }),
        ]
    ) {
        let errors = [
            Error::BadMagic(0),
            Error::UnsupportedVersion(2),
            Error::ZeroTlvLength(TlvType::CONNECT),
            Error::DuplicateTlv(TlvType::CONNECT),
            Error::ReservedTlvType,
            Error::UnsupportedTlv(TlvType(42)),
            Error::MissingConnect,
            Error::ForbiddenDestination("127.0.0.1".parse().unwrap()),
            Error::UnsupportedTcpOptions(vec![TcpOptionKind::TCP_AO]),
        ];
        for e in &errors {
            check_reply(e, &received);
        }
        let malformed = ErrorTlv::malformed_message(&received).reply_bytes();
        prop_assert!(malformed.len() <= MAX_MESSAGE_LEN);
    }

    #[test]
    fn connect_maps_and_unmaps_socket_addresses(ip in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(), port in any::<u16>()) {
        let v4 = SocketAddr::from((Ipv4Addr::from(ip), port));
        prop_assert_eq!(Connect::new(v4).socket_addr(), v4);
        let v6 = Ipv6Addr::from(ip6);
        let c = Connect::new(SocketAddr::from((v6, port)));
        prop_assert_eq!(c.addr, v6);
        prop_assert_eq!(c.ip(), v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4));
    }
}
