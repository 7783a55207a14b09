//! Fuzzes `convert::Reply::decode` (RFC 8803, the client's view of a
//! converter message): a complete reply re-encodes to bytes that decode to
//! the same reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::convert::Reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { msg, len }) = Reply::decode(data) {
        assert!(len <= data.len());
        let mut bytes = Vec::new();
        msg.encode(&mut bytes)
            .expect("a decoded reply fits 1020 bytes");
        assert_eq!(bytes.len(), msg.encoded_len());
        assert_eq!(
            Reply::decode(&bytes),
            Ok(Decoded::Complete {
                msg,
                len: bytes.len()
            })
        );
    }
});
