//! SOCKS6 Authentication Reply: decode; a complete message re-encodes to bytes that
//! decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::socks6::AuthenticationReply;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { msg, len }) = AuthenticationReply::decode(data) {
        assert!(len <= data.len());
        let mut buf = Vec::new();
        msg.encode(&mut buf);
        assert_eq!(buf.len(), msg.encoded_len());
        assert_eq!(
            AuthenticationReply::decode(&buf),
            Ok(Decoded::Complete { msg, len: buf.len() })
        );
    }
});
