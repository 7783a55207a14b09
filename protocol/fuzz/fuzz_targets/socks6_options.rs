//! SOCKS6 options area (decoded whole; its length comes from the enclosing
//! message): decode; the options re-encode to bytes that decode to the same
//! options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::socks6::Options;

fuzz_target!(|data: &[u8]| {
    if let Ok(opts) = Options::decode(data) {
        let mut buf = Vec::new();
        opts.encode(&mut buf);
        assert_eq!(buf.len(), opts.encoded_len());
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(Options::decode(&buf), Ok(opts));
    }
});
