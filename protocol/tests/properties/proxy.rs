//! Property tests for the PROXY protocol v2 header.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use sixpath_protocol::Decoded;
use sixpath_protocol::proxy::{self, Header, SIGNATURE};

use crate::assert_incremental;

fn pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
    ]
}

proptest! {
    #[test]
    fn proxy_headers_round_trip_and_leave_what_follows(
        (source, destination) in pair(),
        after in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let h = Header::proxy(source, destination);
        let mut buf = h.to_bytes();
        let len = buf.len();
        buf.extend_from_slice(&after);
        prop_assert_eq!(
            assert_incremental(proxy::decode, &buf),
            Ok(Decoded::Complete { msg: h, len })
        );
    }

    #[test]
    fn arbitrary_bytes_after_the_signature_decode_consistently(
        rest in proptest::collection::vec(any::<u8>(), 0..300),
        version_command in prop_oneof![Just(0x20u8), Just(0x21), any::<u8>()],
        family in prop_oneof![Just(0x11u8), Just(0x21), Just(0x00), any::<u8>()],
    ) {
        let mut buf = SIGNATURE.to_vec();
        buf.push(version_command);
        buf.push(family);
        buf.extend_from_slice(&rest);
        if let Ok(Decoded::Complete { len, .. }) = assert_incremental(proxy::decode, &buf) {
            prop_assert!(len <= buf.len() && len <= proxy::MAX_LEN);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = assert_incremental(proxy::decode, &bytes);
    }
}
