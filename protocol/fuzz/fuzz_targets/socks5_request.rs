//! Decodes the SOCKS5 request (RFC 1928 §4); a complete message must re-encode
//! to `encoded_len` bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::socks5::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { msg, len }) = Request::decode(data) {
        assert!(len <= data.len());
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out.len(), msg.encoded_len());
        assert_eq!(
            Request::decode(&out),
            Ok(Decoded::Complete {
                msg,
                len: out.len()
            })
        );
    }
});
