//! Fuzzes `proxy::decode` (PROXY protocol v2 header): a complete header is
//! at most 1024 bytes and within the input, and its re-encoding (without
//! TLVs) decodes to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::proxy::{self, MAX_LEN};

fuzz_target!(|data: &[u8]| {
    match proxy::decode(data) {
        Ok(Decoded::Complete { msg, len }) => {
            assert!(len <= data.len() && len <= MAX_LEN);
            let bytes = msg.to_bytes();
            let again = proxy::decode(&bytes);
            assert_eq!(
                again,
                Ok(Decoded::Complete {
                    msg,
                    len: bytes.len()
                })
            );
        }
        Ok(Decoded::NeedMore(n)) => assert!(n >= 1 && data.len() + n <= MAX_LEN),
        Err(_) => {}
    }
});
