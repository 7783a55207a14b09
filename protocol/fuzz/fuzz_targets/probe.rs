//! Path probes: any datagram decodes to a probe or an error, never a
//! panic; a decoded probe re-encodes to the bytes it came from (without
//! padding) and decodes to itself; an accepted datagram is at most
//! `MAX_LEN` bytes with a token of at most `MAX_TOKEN`; a Reply is always
//! 22 bytes, shorter than the Request datagram it answers (no
//! amplification).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::probe::{self, ProbeKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = probe::decode(data) {
        assert!(data.len() <= probe::MAX_LEN);
        assert!(p.token.len() <= probe::MAX_TOKEN);
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(buf.len(), p.encoded_len());
        assert_eq!(&data[..buf.len()], &buf[..]);
        assert_eq!(probe::decode(&buf), Ok(p.clone()));
        let mut reply = Vec::new();
        p.reply().encode(&mut reply);
        assert_eq!(reply.len(), probe::REPLY_LEN);
        assert!(p.kind == ProbeKind::Reply || reply.len() < buf.len());
        assert!(p.kind == ProbeKind::Reply || reply.len() < data.len());
    }
});
