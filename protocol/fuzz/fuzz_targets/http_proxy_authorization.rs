//! `Proxy-Authorization` field values (RFC 7235 §4.4, Basic scheme of
//! RFC 7617) and the strict base64 codec (RFC 4648 §4) under them.
//!
//! Accepted credentials write back as a value that reads to the same
//! credentials, and the user name never holds a `:`. Any text the base64
//! decoder accepts is the encoder's output for those bytes, with or without
//! its padding: every byte string has one spelling of each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::http::Credentials;
use sixpath_protocol::http::basic::{base64_decode, base64_encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(c)) = Credentials::from_header_value(data) {
        assert!(!c.username.contains(':'));
        let value = c.to_header_value();
        assert_eq!(
            Credentials::from_header_value(value.as_bytes()),
            Ok(Some(c))
        );
    }
    if let Some(bytes) = base64_decode(data) {
        let text = base64_encode(&bytes);
        assert!(text.as_bytes() == data || text.trim_end_matches('=').as_bytes() == data);
        assert_eq!(base64_decode(text.as_bytes()), Some(bytes));
    }
});
