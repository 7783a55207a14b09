//! Fuzzes `convert::Message::decode` (RFC 8803, both sides' structural
//! parse): a complete message re-encodes to bytes that decode to the same
//! message; a failure's converter answer is a valid reply of at most 1020
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::convert::{DecodeOptions, MAX_MESSAGE_LEN, Message};

fuzz_target!(|data: &[u8]| {
    for options in [DecodeOptions::STRICT, DecodeOptions::DRAFT_COMPATIBLE] {
        match Message::decode_with(data, options) {
            Ok(Decoded::Complete { msg, len }) => {
                assert!(len <= data.len() && len <= MAX_MESSAGE_LEN);
                let bytes = msg.to_bytes();
                assert_eq!(bytes.len(), msg.encoded_len());
                assert!(bytes.len() <= len);
                let again = Message::decode(&bytes);
                assert_eq!(
                    again,
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
    }
});
