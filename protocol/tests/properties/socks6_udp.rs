//! Property tests for SOCKS6 UDP association messages.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use sixpath_protocol::socks6::udp::{
    Datagram, Error, UdpErrorCode, UdpErrorMessage, UdpMessage, UdpMessageType,
};
use sixpath_protocol::{Address, Decoded, DomainName, Endpoint};

use crate::assert_incremental;

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(Address::Ipv4),
        any::<std::net::Ipv6Addr>().prop_map(Address::Ipv6),
        "[^\u{0}]{1,80}"
            .prop_filter("at most 255 bytes", |s| s.len() <= 255)
            .prop_map(|s| Address::Domain(DomainName::new(s).expect("no NUL, not empty"))),
    ]
}

fn message() -> impl Strategy<Value = UdpMessage> {
    prop_oneof![
        any::<u64>().prop_map(|id| UdpMessage::AssociationInit { id }),
        any::<u64>().prop_map(|id| UdpMessage::AssociationConfirmation { id }),
        (
            any::<u64>(),
            address(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, addr, port, payload)| UdpMessage::Datagram(Datagram {
                id,
                endpoint: Endpoint { addr, port },
                payload,
            })),
        (
            any::<u64>(),
            any::<IpAddr>(),
            any::<u16>(),
            any::<u8>(),
            any::<IpAddr>()
        )
            .prop_map(|(id, ip, port, code, reporter)| UdpMessage::Error(
                UdpErrorMessage {
                    id,
                    // The wire has no IPv6 flow label or scope id.
                    destination: SocketAddr::new(ip, port),
                    code: UdpErrorCode(code),
                    reporter,
                }
            )),
        (
            any::<u8>().prop_filter("unknown type", |t| !(1..=4).contains(t)),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(t, id, body)| UdpMessage::Unknown {
                message_type: UdpMessageType(t),
                id,
                body,
            }),
    ]
}

fn encode(msg: &UdpMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut buf).expect("fits in a u16 length");
    buf
}

/// A valid encoding, then bytes overwritten, the end cut or extended.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        message(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(msg, writes, cut, do_cut, tail)| {
            let mut bytes = encode(&msg);
            for (i, b) in writes {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend_from_slice(&tail);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = encode(&msg);
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert_eq!(
            UdpMessage::decode(&bytes),
            Ok(Decoded::Complete { msg: msg.clone(), len: bytes.len() })
        );
        prop_assert_eq!(UdpMessage::decode_datagram(&bytes), Ok(msg));
    }

    #[test]
    fn datagram_padding_is_ignored(
        msg in message(),
        padding in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = encode(&msg);
        bytes.extend_from_slice(&padding);
        prop_assert_eq!(UdpMessage::decode_datagram(&bytes), Ok(msg));
    }

    #[test]
    fn truncated_datagram_is_ignored(msg in message(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&msg);
        let cut = cut.index(bytes.len());
        prop_assert_eq!(
            UdpMessage::decode_datagram(&bytes[..cut]),
            Err(Error::LengthExceedsDatagram)
        );
    }

    #[test]
    fn arbitrary_bytes_decode_incrementally(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = assert_incremental(UdpMessage::decode, &bytes);
    }

    #[test]
    fn plausible_headers_decode_incrementally(
        message_type in 0u8..6,
        length in 0u16..80,
        rest in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut bytes = vec![6, message_type];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&rest);
        let _ = assert_incremental(UdpMessage::decode, &bytes);
    }

    #[test]
    fn mutated_messages_decode_incrementally(bytes in mutated()) {
        let _ = assert_incremental(UdpMessage::decode, &bytes);
    }
}
