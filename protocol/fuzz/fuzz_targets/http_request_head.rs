//! HTTP proxy request heads: decode; a complete head re-encodes (proxy
//! form) and decodes to itself, and its origin form is written without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::http::RequestHead;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { msg, len }) = RequestHead::decode(data) {
        assert!(len <= data.len());
        let mut buf = Vec::new();
        msg.encode(&mut buf);
        assert_eq!(buf.len(), msg.encoded_len());
        assert_eq!(
            RequestHead::decode(&buf),
            Ok(Decoded::Complete {
                msg: msg.clone(),
                len: buf.len()
            })
        );
        let mut origin = Vec::new();
        assert_eq!(
            msg.encode_origin_form(&mut origin).is_ok(),
            !msg.is_connect()
        );
    }
});
