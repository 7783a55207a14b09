//! Fuzzes `convert::Request::decode` (RFC 8803, the converter's view of a
//! client message): a complete request re-encodes to bytes that decode to
//! the same request; a failure's answer is a valid reply of at most 1020
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::convert::{MAX_MESSAGE_LEN, Message, Request, TcpOptionKind};

const SUPPORTED: &[TcpOptionKind] = &[
    TcpOptionKind::SACK_PERMITTED,
    TcpOptionKind::TIMESTAMPS,
    TcpOptionKind::MPTCP,
    TcpOptionKind::FAST_OPEN,
];

fuzz_target!(|data: &[u8]| {
    match Request::decode(data, SUPPORTED) {
        Ok(Decoded::Complete { msg, len }) => {
            assert!(len <= data.len());
            let mut bytes = Vec::new();
            msg.encode(&mut bytes).expect("a valid request encodes");
            assert_eq!(bytes.len(), msg.encoded_len());
            assert_eq!(
                Request::decode(&bytes, SUPPORTED),
                Ok(Decoded::Complete {
                    msg,
                    len: bytes.len()
                })
            );
        }
        Ok(Decoded::NeedMore(n)) => assert!(n >= 1),
        Err(e) => {
            if let Some(reply) = e.reply_bytes(data) {
                assert!(reply.len() <= MAX_MESSAGE_LEN);
                assert!(matches!(
                    Message::decode(&reply),
                    Ok(Decoded::Complete { len, .. }) if len == reply.len()
                ));
            }
        }
    }
});
