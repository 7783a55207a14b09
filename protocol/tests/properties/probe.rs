//! Property tests for path probes.

use proptest::prelude::*;
use sixpath_protocol::probe::{self, Probe, ProbeKind, REPLY_LEN};

fn request() -> impl Strategy<Value = Probe> {
    (
        any::<u16>(),
        any::<u32>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 1..=64),
    )
        .prop_map(|(path, seq, sent, token)| Probe::request(path, seq, sent, token))
}

proptest! {
    #[test]
    fn requests_and_their_replies_round_trip(p in request(), pad in 0usize..200) {
        let mut buf = Vec::new();
        p.encode(&mut buf);
        prop_assert_eq!(buf.len(), p.encoded_len());
        let len = buf.len();
        buf.resize((len + pad).min(probe::MAX_LEN), 0xaa);
        prop_assert_eq!(probe::decode(&buf), Ok(p.clone()));
        let r = p.reply();
        let mut rb = Vec::new();
        r.encode(&mut rb);
        prop_assert_eq!(rb.len(), REPLY_LEN);
        prop_assert!(rb.len() < len);
        let back = probe::decode(&rb).unwrap();
        prop_assert_eq!(back.kind, ProbeKind::Reply);
        prop_assert_eq!((back.path, back.seq, back.sent), (p.path, p.seq, p.sent));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_prefixes_of_a_probe_are_truncated(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        p in request(),
    ) {
        let _ = probe::decode(&bytes);
        let mut buf = Vec::new();
        p.encode(&mut buf);
        for k in 0..buf.len() {
            let r = probe::decode(&buf[..k]);
            prop_assert!(matches!(r, Err(probe::Error::Truncated(_))), "{}: {:?}", k, r);
        }
    }
}
