//! Path probes: any datagram decodes to a probe or an error, never a
//! panic; a decoded probe re-encodes to the bytes it came from (without
//! padding) and decodes to itself; a Reply is always 22 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::probe::{self, ProbeKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = probe::decode(data) {
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(buf.len(), p.encoded_len());
        assert_eq!(&data[..buf.len()], &buf[..]);
        assert_eq!(probe::decode(&buf), Ok(p.clone()));
        let mut reply = Vec::new();
        p.reply().encode(&mut reply);
        assert_eq!(reply.len(), probe::REPLY_LEN);
        assert!(p.kind == ProbeKind::Reply || reply.len() < buf.len());
    }
});
