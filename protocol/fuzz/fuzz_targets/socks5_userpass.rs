//! Decodes the RFC 1929 username/password request; a complete message must re-encode
//! to `encoded_len` bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::socks5::UserPassRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { msg, len }) = UserPassRequest::decode(data) {
        assert!(len <= data.len());
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out.len(), msg.encoded_len());
        assert_eq!(
            UserPassRequest::decode(&out),
            Ok(Decoded::Complete {
                msg,
                len: out.len()
            })
        );
    }
});
