//! Property tests for socks6: round trips of arbitrary Requests, replies,
//! options and username/password data; every decoder fed arbitrary and
//! mutated bytes, whole and as every prefix.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sixpath_protocol::addr::{Address, DomainName, Endpoint};
use sixpath_protocol::codec::Decoded;
use sixpath_protocol::socks6::{
    AuthMethodAdvertisement, AuthReplyType, AuthenticationReply, Availability, Command,
    DomainStyle, Leg, Level, MAX_INITIAL_DATA_LEN, Method, OperationReply, OptionKind, Options,
    Parity, ReplyCode, Request, SessionId, SocksOption, StackOption, StackValue, UsernamePassword,
    UsernamePasswordReply, Window, idempotence::MAX_WINDOW_SIZE,
};

use crate::assert_incremental;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let addr = prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Address::Ipv4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| Address::Ipv6(Ipv6Addr::from(a))),
        "[a-z0-9.-]{1,255}"
            .prop_map(|s| Address::Domain(DomainName::new(s).expect("no NUL, 1 to 255 bytes"))),
    ];
    (addr, any::<u16>()).prop_map(|(addr, port)| Endpoint { addr, port })
}

fn availability() -> impl Strategy<Value = Availability> {
    any::<u8>().prop_map(Availability)
}

/// (level, code) pairs the draft defines a typed value for.
fn is_typed(level: u8, code: u8) -> bool {
    matches!((level, code), (1, 1..=4) | (4, 1..=3) | (5, 1..=2))
}

fn stack_option() -> impl Strategy<Value = StackOption> {
    use StackValue as V;
    let value = prop_oneof![
        any::<u8>().prop_map(V::Tos),
        availability().prop_map(V::HappyEyeballs),
        any::<u8>().prop_map(V::Ttl),
        availability().prop_map(V::NoFragmentation),
        any::<u16>().prop_map(V::Tfo),
        availability().prop_map(V::Mptcp),
        any::<u16>().prop_map(V::ListenBacklog),
        availability().prop_map(V::UdpError),
        (any::<u8>(), any::<bool>()).prop_map(|(p, reserve)| V::PortParity {
            parity: Parity(p),
            reserve
        }),
        (0u8..64, any::<u8>(), any::<[u8; 2]>())
            .prop_filter("typed (level, code)", |(l, c, _)| !is_typed(*l, *c))
            .prop_map(|(l, code, data)| V::Other {
                level: Level(l),
                code,
                data
            }),
    ];
    (1u8..=3, value).prop_map(|(leg, value)| StackOption::new(Leg(leg), value))
}

/// Kinds this crate keeps raw whatever their body.
fn raw_kind() -> impl Strategy<Value = OptionKind> {
    prop_oneof![
        Just(0u16),
        Just(7),
        16u16..=18,
        19u16..0xfc00,
        0xfc00u16..=0xffff
    ]
    .prop_map(OptionKind)
}

fn socks_option() -> impl Strategy<Value = SocksOption> {
    use SocksOption as O;
    let small = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        stack_option().prop_map(O::Stack),
        (
            0..=MAX_INITIAL_DATA_LEN as u16,
            proptest::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(idl, m)| O::AuthMethodAdvertisement(
                AuthMethodAdvertisement::new(idl, m.into_iter().map(Method)).expect("IDL bounded")
            )),
        any::<u8>().prop_map(|m| O::AuthMethodSelection(Method(m))),
        (any::<u8>(), small()).prop_map(|(m, data)| O::AuthData {
            method: Method(m),
            data
        }),
        Just(O::SessionRequest),
        (1usize..=8)
            .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 4))
            .prop_map(|id| O::SessionId(SessionId::new(id).expect("aligned"))),
        Just(O::SessionOk),
        Just(O::SessionInvalid),
        Just(O::SessionTeardown),
        any::<u32>().prop_map(O::IdempotenceRequest),
        (any::<u32>(), 1..=MAX_WINDOW_SIZE)
            .prop_map(|(b, s)| O::IdempotenceWindow(Window::new(b, s).expect("size bounded"))),
        any::<u32>().prop_map(O::IdempotenceExpenditure),
        Just(O::IdempotenceAccepted),
        Just(O::IdempotenceRejected),
        (raw_kind(), small()).prop_map(|(kind, data)| O::Raw { kind, data }),
    ]
}

/// Options built through `push`, skipping the ones it refuses (duplicates).
fn options() -> impl Strategy<Value = Options> {
    proptest::collection::vec(socks_option(), 0..8).prop_map(|list| {
        let mut opts = Options::new();
        for o in list {
            let _ = opts.push(o);
        }
        opts
    })
}

fn request() -> impl Strategy<Value = Request> {
    (0u8..=3, endpoint(), options()).prop_map(|(c, endpoint, options)| Request {
        command: Command(c),
        endpoint,
        options,
    })
}

fn auth_reply() -> impl Strategy<Value = AuthenticationReply> {
    (any::<u8>(), options()).prop_map(|(t, options)| AuthenticationReply {
        reply_type: AuthReplyType(t),
        options,
    })
}

fn operation_reply() -> impl Strategy<Value = OperationReply> {
    (any::<u8>(), endpoint(), options()).prop_map(|(c, bind, options)| OperationReply {
        code: ReplyCode(c),
        bind,
        options,
    })
}

fn username_password() -> impl Strategy<Value = UsernamePassword> {
    (
        proptest::collection::vec(any::<u8>(), 1..=255),
        proptest::collection::vec(any::<u8>(), 1..=255),
    )
        .prop_map(|(u, p)| UsernamePassword::new(u, p).expect("1 to 255 bytes"))
}

/// A valid encoding with some bytes overwritten, then truncated or
/// extended, so decoders get past the first bytes.
fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        valid,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(mut bytes, edits, cut, tail)| {
            if !bytes.is_empty() {
                for (at, b) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend(tail);
            bytes
        })
}

fn encoded<T>(encode: impl Fn(&T, &mut Vec<u8>)) -> impl Fn(T) -> Vec<u8> {
    move |m| {
        let mut buf = Vec::new();
        encode(&m, &mut buf);
        buf
    }
}

/// Round trip: encode, check the length, decode the encoding followed by
/// unrelated bytes, compare.
fn round_trip<T, E>(
    msg: &T,
    encode: impl Fn(&T, &mut Vec<u8>),
    encoded_len: usize,
    decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
) where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    let mut buf = Vec::new();
    encode(msg, &mut buf);
    assert_eq!(buf.len(), encoded_len);
    let n = buf.len();
    buf.extend_from_slice(b"\x06\x01app");
    match decode(&buf) {
        Ok(Decoded::Complete { msg: got, len }) => {
            assert_eq!(&got, msg);
            assert_eq!(len, n);
        }
        other => panic!("{other:?} for {msg:?}"),
    }
}

/// A complete decode re-encodes to bytes that decode to the same message
/// (what the fuzz targets check).
fn re_encodes<T, E>(
    result: Result<Decoded<T>, E>,
    encode: impl Fn(&T, &mut Vec<u8>),
    decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
) where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    if let Ok(Decoded::Complete { msg, .. }) = result {
        let mut buf = Vec::new();
        encode(&msg, &mut buf);
        assert_eq!(
            decode(&buf),
            Ok(Decoded::Complete {
                msg,
                len: buf.len()
            })
        );
    }
}

fn req_encode(m: &Request, b: &mut Vec<u8>) {
    m.encode(b);
}
fn auth_encode(m: &AuthenticationReply, b: &mut Vec<u8>) {
    m.encode(b);
}
fn op_encode(m: &OperationReply, b: &mut Vec<u8>) {
    m.encode(b);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_round_trips(req in request()) {
        round_trip(&req, req_encode, req.encoded_len(), Request::decode);
        let libsocks = |m: &Request, b: &mut Vec<u8>| m.encode_with_style(DomainStyle::Libsocks6msg, b);
        round_trip(&req, libsocks, req.encoded_len(), Request::decode);
    }

    #[test]
    fn authentication_reply_round_trips(reply in auth_reply()) {
        round_trip(&reply, auth_encode, reply.encoded_len(), AuthenticationReply::decode);
    }

    #[test]
    fn operation_reply_round_trips(reply in operation_reply()) {
        round_trip(&reply, op_encode, reply.encoded_len(), OperationReply::decode);
        let libsocks =
            |m: &OperationReply, b: &mut Vec<u8>| m.encode_with_style(DomainStyle::Libsocks6msg, b);
        round_trip(&reply, libsocks, reply.encoded_len(), OperationReply::decode);
    }

    #[test]
    fn options_round_trip(opts in options()) {
        let mut buf = Vec::new();
        opts.encode(&mut buf);
        prop_assert_eq!(buf.len(), opts.encoded_len());
        prop_assert_eq!(buf.len() % 4, 0);
        prop_assert_eq!(Options::decode(&buf), Ok(opts));
    }

    #[test]
    fn stack_option_round_trips(s in stack_option()) {
        let opts = Options::new().with(SocksOption::Stack(s)).expect("one stack option fits");
        let mut buf = Vec::new();
        opts.encode(&mut buf);
        prop_assert_eq!(buf.len(), 8);
        let decoded = Options::decode(&buf).expect("valid");
        prop_assert_eq!(decoded.stack().copied().collect::<Vec<_>>(), vec![s]);
    }

    #[test]
    fn username_password_round_trips(up in username_password()) {
        let encode = |m: &UsernamePassword, b: &mut Vec<u8>| m.encode(b);
        round_trip(&up, encode, up.encoded_len(), UsernamePassword::decode);
        let SocksOption::AuthData { data, .. } = up.to_option() else {
            panic!("authentication data");
        };
        prop_assert_eq!(UsernamePassword::from_auth_data(&data), Ok(up));
    }

    #[test]
    fn username_password_reply_round_trips(status in any::<u8>()) {
        let reply = UsernamePasswordReply { status };
        let encode = |m: &UsernamePasswordReply, b: &mut Vec<u8>| m.encode(b);
        round_trip(&reply, encode, reply.encoded_len(), UsernamePasswordReply::decode);
    }

    #[test]
    fn request_decodes_incrementally(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            mutated(request().prop_map(encoded(req_encode))),
        ]
    ) {
        let whole = assert_incremental(Request::decode, &bytes);
        re_encodes(whole, req_encode, Request::decode);
    }

    #[test]
    fn authentication_reply_decodes_incrementally(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            mutated(auth_reply().prop_map(encoded(auth_encode))),
        ]
    ) {
        let whole = assert_incremental(AuthenticationReply::decode, &bytes);
        re_encodes(whole, auth_encode, AuthenticationReply::decode);
    }

    #[test]
    fn operation_reply_decodes_incrementally(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            mutated(operation_reply().prop_map(encoded(op_encode))),
        ]
    ) {
        let whole = assert_incremental(OperationReply::decode, &bytes);
        re_encodes(whole, op_encode, OperationReply::decode);
    }

    #[test]
    fn username_password_decodes_incrementally(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            mutated(username_password().prop_map(encoded(|m: &UsernamePassword, b| m.encode(b)))),
        ]
    ) {
        let _ = assert_incremental(UsernamePassword::decode, &bytes);
        let _ = assert_incremental(UsernamePasswordReply::decode, &bytes);
    }

    /// The options area has its length from the enclosing header, so it is
    /// decoded whole; it must never panic and must re-encode to a fixpoint.
    #[test]
    fn options_area_decodes_to_a_fixpoint(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            mutated(options().prop_map(encoded(|m: &Options, b| m.encode(b)))),
        ]
    ) {
        if let Ok(opts) = Options::decode(&bytes) {
            let mut buf = Vec::new();
            opts.encode(&mut buf);
            prop_assert_eq!(buf.len(), opts.encoded_len());
            prop_assert_eq!(Options::decode(&buf), Ok(opts));
        }
    }
}

/// Every fuzz seed (the spec's vectors) decodes completely, and the options
/// seeds to at least one typed option.
#[test]
fn fuzz_seeds_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let seeds = |target: &str| {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(target))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {target}");
        files
    };
    for s in seeds("socks6_request") {
        let (req, len) = Request::decode(&s).unwrap().complete().unwrap();
        assert_eq!(len + req.initial_data_len(), s.len(), "{s:02x?}");
    }
    for s in seeds("socks6_auth_reply") {
        let (_, len) = AuthenticationReply::decode(&s).unwrap().complete().unwrap();
        assert_eq!(len, s.len());
    }
    for s in seeds("socks6_operation_reply") {
        let (_, len) = OperationReply::decode(&s).unwrap().complete().unwrap();
        assert_eq!(len, s.len());
    }
    for s in seeds("socks6_options") {
        let opts = Options::decode(&s).unwrap();
        assert!(
            opts.iter().any(|o| !matches!(o, SocksOption::Raw { .. })),
            "{s:02x?}"
        );
    }
}
