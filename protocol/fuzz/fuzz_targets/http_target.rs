//! HTTP proxy request targets (RFC 9112 §3.2.2, §3.2.3): the absolute-form
//! `http://` URI and the CONNECT authority, behind a fixed request line.
//!
//! Input: the first byte picks the method (CONNECT or another), the rest is
//! the request-target. For a target the decoder accepts: the target writes
//! back in proxy form and decodes to itself; the path starts with `/` and
//! has no fragment; a name is never one whose last label is numeric (an
//! IPv4 spelling that only some resolvers read as an address); a refusal
//! answers 400 (or 431 for a head over the size limit, 505 for another
//! version), never a server error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::http::{RequestHead, Target};
use sixpath_protocol::{Address, Decoded};

const METHODS: [&str; 4] = ["CONNECT", "GET", "POST", "OPTIONS"];

fn decode(
    method: &str,
    target: &[u8],
) -> Result<Decoded<RequestHead>, sixpath_protocol::http::Error> {
    let mut head = Vec::with_capacity(method.len() + target.len() + 16);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    RequestHead::decode(&head)
}

/// The URL standard's "ends in a number checker" (URL Standard §3.5, host
/// parsing): the last label, one trailing dot ignored, is decimal digits or
/// `0x` followed by hex digits.
fn ends_in_number(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    matches!(last.get(..2), Some("0x" | "0X"))
        && last.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, target)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(pick) % METHODS.len()];
    let head = match decode(method, target) {
        Ok(Decoded::Complete { msg, .. }) => msg,
        Ok(Decoded::NeedMore(_)) => panic!("a whole head needs more"),
        Err(e) => {
            assert!(matches!(e.status().0, 400 | 431 | 505), "{e:?}");
            return;
        }
    };
    assert_eq!(head.is_connect(), method == "CONNECT");
    match &head.target {
        Target::Authority(_) => {}
        Target::Absolute { path_and_query, .. } => {
            assert!(path_and_query.starts_with('/'));
            assert!(!path_and_query.contains('#'));
        }
    }
    if let Address::Domain(name) = &head.target.endpoint().addr {
        assert!(name.as_str().parse::<std::net::IpAddr>().is_err());
        assert!(!ends_in_number(name.as_str()), "{name}");
    }
    let written = head.target.to_string();
    match decode(method, written.as_bytes()) {
        Ok(Decoded::Complete { msg, .. }) => assert_eq!(msg.target, head.target),
        other => panic!("{written:?} does not decode back: {other:?}"),
    }
});
