//! Property tests for SOCKS5 (RFC 1928), RFC 1929 and SOCKS4/4A: every
//! message type round trips, and every decoder gives consistent answers on
//! arbitrary and mutated input, whole and as every prefix.

use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sixpath_protocol::socks5::{
    Command, Error, Method, MethodRequest, MethodSelection, Reply, ReplyCode, Request,
    Socks4Command, Socks4Reply, Socks4ReplyCode, Socks4Request, UdpHeader, UserPassReply,
    UserPassRequest, UserPassStatus,
};
use sixpath_protocol::{Address, Decoded, DomainName, Endpoint};

use crate::assert_incremental;

/// The decode / encode / `encoded_len` triple every message has.
trait Wire: Sized + PartialEq + Debug {
    fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error>;
    fn encode(&self, buf: &mut Vec<u8>);
    fn encoded_len(&self) -> usize;
}

macro_rules! wire {
    ($($t:ty),* $(,)?) => {$(
        impl Wire for $t {
            fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
                <$t>::decode(buf)
            }
            fn encode(&self, buf: &mut Vec<u8>) {
                <$t>::encode(self, buf);
            }
            fn encoded_len(&self) -> usize {
                <$t>::encoded_len(self)
            }
        }
    )*};
}

wire!(
    MethodRequest,
    MethodSelection,
    UserPassRequest,
    UserPassReply,
    Request,
    Reply,
    Socks4Request,
    Socks4Reply,
);

/// Encodes `msg`, checks the length, and decodes it back (as every prefix,
/// and with trailing bytes that must be left alone).
fn assert_round_trip<T: Wire>(msg: &T, trailing: &[u8]) {
    let mut bytes = Vec::new();
    msg.encode(&mut bytes);
    assert_eq!(bytes.len(), msg.encoded_len(), "encoded_len of {msg:?}");
    let len = bytes.len();
    match assert_incremental(T::decode, &bytes) {
        Ok(Decoded::Complete {
            msg: back,
            len: used,
        }) => {
            assert_eq!(&back, msg);
            assert_eq!(used, len);
        }
        other => panic!("{msg:?} encoded as {bytes:02x?} decodes as {other:?}"),
    }
    bytes.extend_from_slice(trailing);
    match T::decode(&bytes) {
        Ok(Decoded::Complete {
            msg: back,
            len: used,
        }) => {
            assert_eq!(&back, msg, "trailing bytes changed the message");
            assert_eq!(used, len, "trailing bytes were consumed");
        }
        other => panic!("{msg:?} with trailing bytes decodes as {other:?}"),
    }
}

/// Encodes `msg` for the mutation strategies.
fn encoded<T: Wire>(msg: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    msg.encode(&mut bytes);
    bytes
}

fn domain() -> impl Strategy<Value = DomainName> {
    prop_oneof![
        // Any ASCII but NUL, up to the 255-byte limit.
        vec(1u8..=0x7f, 1..=255).prop_map(|b| String::from_utf8(b).unwrap()),
        // Some non-ASCII UTF-8.
        "[^\u{0}]{1,60}",
    ]
    .prop_map(|s| DomainName::new(s).unwrap())
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Address::Ipv4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| Address::Ipv6(Ipv6Addr::from(o))),
        domain().prop_map(Address::Domain),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (address(), any::<u16>()).prop_map(|(addr, port)| Endpoint { addr, port })
}

fn method_request() -> impl Strategy<Value = MethodRequest> {
    vec(any::<u8>().prop_map(Method), 1..=255).prop_map(|m| MethodRequest::new(m).unwrap())
}

fn method_selection() -> impl Strategy<Value = MethodSelection> {
    any::<u8>().prop_map(|m| MethodSelection::new(Method(m)))
}

fn userpass_request() -> impl Strategy<Value = UserPassRequest> {
    (vec(any::<u8>(), 1..=255), vec(any::<u8>(), 1..=255))
        .prop_map(|(u, p)| UserPassRequest::new(u, p).unwrap())
}

fn userpass_reply() -> impl Strategy<Value = UserPassReply> {
    any::<u8>().prop_map(|s| UserPassReply {
        status: UserPassStatus(s),
    })
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![
            Just(Command::CONNECT),
            Just(Command::BIND),
            Just(Command::UDP_ASSOCIATE)
        ],
        endpoint(),
    )
        .prop_map(|(command, endpoint)| Request { command, endpoint })
}

fn reply() -> impl Strategy<Value = Reply> {
    (any::<u8>(), endpoint()).prop_map(|(code, bind)| Reply {
        code: ReplyCode(code),
        bind,
    })
}

fn udp_header() -> impl Strategy<Value = UdpHeader> {
    endpoint().prop_map(UdpHeader::new)
}

fn socks4_request() -> impl Strategy<Value = Socks4Request> {
    let addr = prop_oneof![
        any::<[u8; 4]>()
            .prop_filter(
                "0.0.0.x marks SOCKS4A",
                |o| !matches!(o, [0, 0, 0, x] if *x != 0)
            )
            .prop_map(|o| Address::Ipv4(Ipv4Addr::from(o))),
        domain().prop_map(Address::Domain),
    ];
    (
        prop_oneof![Just(Socks4Command::CONNECT), Just(Socks4Command::BIND)],
        addr,
        any::<u16>(),
        vec(1u8..=255, 0..=255),
    )
        .prop_map(|(command, addr, port, user_id)| {
            Socks4Request::new(command, Endpoint { addr, port }, user_id).unwrap()
        })
}

fn socks4_reply() -> impl Strategy<Value = Socks4Reply> {
    (any::<u8>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(code, ip, port)| {
        Socks4Reply::new(
            Socks4ReplyCode(code),
            SocketAddrV4::new(Ipv4Addr::from(ip), port),
        )
    })
}

/// A valid encoding with a few bytes overwritten, then cut short or
/// extended, so decoders meet bad lengths, bad code points and truncation
/// deep inside otherwise plausible messages.
fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        valid,
        vec((any::<Index>(), any::<u8>()), 0..4),
        any::<Index>(),
        vec(any::<u8>(), 0..300),
        0u8..3,
    )
        .prop_map(|(mut bytes, flips, cut, tail, mode)| {
            if !bytes.is_empty() {
                for (i, b) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
            }
            match mode {
                0 => bytes.truncate(cut.index(bytes.len() + 1)),
                1 => bytes.extend_from_slice(&tail),
                _ => {}
            }
            bytes
        })
}

/// A SOCKS4 or SOCKS4A request head followed by many non-NUL bytes, to
/// reach the USERID and host name limits.
fn socks4_unterminated() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        vec(1u8..=255, 0..=255),
        vec(1u8..=255, 200..320),
    )
        .prop_map(|(socks4a, user_id, filler)| {
            let mut bytes = vec![4, 1, 0, 80];
            bytes.extend_from_slice(if socks4a {
                &[0, 0, 0, 1]
            } else {
                &[192, 0, 2, 1]
            });
            if socks4a {
                bytes.extend_from_slice(&user_id);
                bytes.push(0);
            }
            bytes.extend_from_slice(&filler);
            bytes
        })
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..600)
}

/// Decodes a datagram and checks what a success implies: the header
/// re-encodes to the same length and decodes to itself, and cutting the
/// datagram inside the header gives `TruncatedDatagram`.
fn check_datagram(datagram: &[u8]) {
    let Ok((header, offset)) = UdpHeader::decode_datagram(datagram) else {
        return;
    };
    assert_eq!(header.frag, 0);
    assert_eq!(offset, header.encoded_len());
    assert!(offset <= datagram.len());
    let mut again = Vec::new();
    header.encode(&mut again);
    again.extend_from_slice(&datagram[offset..]);
    assert_eq!(UdpHeader::decode_datagram(&again), Ok((header, offset)));
    for k in 0..offset {
        assert_eq!(
            UdpHeader::decode_datagram(&datagram[..k]),
            Err(Error::TruncatedDatagram)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn method_request_round_trips(msg in method_request(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn method_selection_round_trips(msg in method_selection(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn userpass_request_round_trips(msg in userpass_request(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn userpass_reply_round_trips(msg in userpass_reply(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn request_round_trips(msg in request(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn reply_round_trips(msg in reply(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn socks4_request_round_trips(msg in socks4_request(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn socks4_reply_round_trips(msg in socks4_reply(), tail in vec(any::<u8>(), 0..8)) {
        assert_round_trip(&msg, &tail);
    }

    #[test]
    fn udp_header_round_trips(header in udp_header(), payload in vec(any::<u8>(), 0..64)) {
        let mut datagram = Vec::new();
        header.encode(&mut datagram);
        prop_assert_eq!(datagram.len(), header.encoded_len());
        datagram.extend_from_slice(&payload);
        let (back, offset) = UdpHeader::decode_datagram(&datagram).unwrap();
        prop_assert_eq!(&back, &header);
        prop_assert_eq!(&datagram[offset..], &payload[..]);
        check_datagram(&datagram);
    }

    #[test]
    fn method_request_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(MethodRequest::decode, &bytes).ok();
    }

    #[test]
    fn method_selection_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(MethodSelection::decode, &bytes).ok();
    }

    #[test]
    fn userpass_request_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(UserPassRequest::decode, &bytes).ok();
    }

    #[test]
    fn userpass_reply_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(UserPassReply::decode, &bytes).ok();
    }

    #[test]
    fn request_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(Request::decode, &bytes).ok();
    }

    #[test]
    fn reply_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(Reply::decode, &bytes).ok();
    }

    #[test]
    fn socks4_request_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(Socks4Request::decode, &bytes).ok();
    }

    #[test]
    fn socks4_reply_decodes_arbitrary_bytes_consistently(bytes in arbitrary_bytes()) {
        assert_incremental(Socks4Reply::decode, &bytes).ok();
    }

    #[test]
    fn udp_datagram_decoder_survives_arbitrary_bytes(bytes in arbitrary_bytes()) {
        check_datagram(&bytes);
    }

    #[test]
    fn method_request_decodes_mutated_bytes_consistently(
        bytes in mutated(method_request().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(MethodRequest::decode, &bytes).ok();
    }

    #[test]
    fn method_selection_decodes_mutated_bytes_consistently(
        bytes in mutated(method_selection().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(MethodSelection::decode, &bytes).ok();
    }

    #[test]
    fn userpass_request_decodes_mutated_bytes_consistently(
        bytes in mutated(userpass_request().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(UserPassRequest::decode, &bytes).ok();
    }

    #[test]
    fn userpass_reply_decodes_mutated_bytes_consistently(
        bytes in mutated(userpass_reply().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(UserPassReply::decode, &bytes).ok();
    }

    #[test]
    fn request_decodes_mutated_bytes_consistently(
        bytes in mutated(request().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(Request::decode, &bytes).ok();
    }

    #[test]
    fn reply_decodes_mutated_bytes_consistently(
        bytes in mutated(reply().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(Reply::decode, &bytes).ok();
    }

    #[test]
    fn socks4_request_decodes_mutated_bytes_consistently(
        bytes in prop_oneof![
            mutated(socks4_request().prop_map(|m| encoded(&m))),
            mutated(socks4_unterminated()),
        ]
    ) {
        assert_incremental(Socks4Request::decode, &bytes).ok();
    }

    #[test]
    fn socks4_reply_decodes_mutated_bytes_consistently(
        bytes in mutated(socks4_reply().prop_map(|m| encoded(&m)))
    ) {
        assert_incremental(Socks4Reply::decode, &bytes).ok();
    }

    #[test]
    fn udp_datagram_decoder_survives_mutated_datagrams(
        bytes in mutated((udp_header(), vec(any::<u8>(), 0..32)).prop_map(|(h, p)| {
            let mut d = Vec::new();
            h.encode(&mut d);
            d.extend_from_slice(&p);
            d
        }))
    ) {
        check_datagram(&bytes);
    }
}

/// A SOCKS4 request that never sends its USERID terminator is refused once
/// the limit is passed, whatever arrives later.
#[test]
fn socks4_unterminated_user_id_is_refused_at_the_limit() {
    let mut bytes = vec![4, 1, 0, 80, 192, 0, 2, 1];
    bytes.extend_from_slice(&[b'x'; 600]);
    assert_eq!(
        assert_incremental(Socks4Request::decode, &bytes),
        Err(Error::Socks4UserIdTooLong)
    );
}
