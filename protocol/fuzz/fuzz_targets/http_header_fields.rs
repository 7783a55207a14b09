//! HTTP proxy header fields: the framing and credential checks of the
//! request head decoder against a reference written from RFC 9112 §3.2 and
//! §6.3, and the origin-form rewrite read back by a plain HTTP parser.
//!
//! Input: the first byte picks the request line (absolute-form with a name,
//! an IPv6 literal and a port, an IPv4 literal, or CONNECT); the rest is the
//! header block, one field line per `\n`-separated line, each sent with
//! CRLF, then the blank line. Checked for every head `httparse` tokenizes:
//!
//! - the decoder refuses exactly the heads the reference refuses, with the
//!   same error: two `Host` lines, a `Content-Length` that is not one
//!   decimal number (every member of every field equal), `Transfer-Encoding`
//!   with `Content-Length`, a final transfer coding other than `chunked`,
//!   two `Proxy-Authorization` lines or malformed Basic credentials;
//! - an accepted absolute-form head is forwarded with one `Host`, made from
//!   the target, no proxy hop-by-hop fields, the same body framing
//!   (`Content-Length` value or `Transfer-Encoding` values) and a
//!   `Connection` field last (up to two fields more than it came with:
//!   `Host` and `Connection` are added when missing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::http::{Credentials, Error, MAX_HEADERS, RequestHead};

const LINES: [&str; 4] = [
    "GET http://example.com/ HTTP/1.1",
    "POST http://[2001:db8::1]:8080/up?x=1 HTTP/1.1",
    "PUT http://192.0.2.1/ HTTP/1.0",
    "CONNECT example.com:443 HTTP/1.1",
];

const PROXY_ONLY: [&str; 5] = [
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "keep-alive",
    "host",
];

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn members<'a>(
    fields: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(trim)
}

/// RFC 9112 §6.3 and §3.2, read directly.
fn reference(fields: &[(String, Vec<u8>)]) -> Result<(), Error> {
    let count = |name: &str| {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    if count("host") > 1 {
        return Err(Error::DuplicateHost);
    }
    let lengths: Vec<Option<u64>> = members(fields, "content-length")
        .map(|m| {
            if m.is_empty() || !m.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(m).ok()?.parse::<u64>().ok()
        })
        .collect();
    if lengths.iter().any(Option::is_none) || lengths.windows(2).any(|w| w[0] != w[1]) {
        return Err(Error::BadContentLength);
    }
    if count("transfer-encoding") > 0 {
        if !lengths.is_empty() {
            return Err(Error::TransferEncodingWithContentLength);
        }
        let last = members(fields, "transfer-encoding")
            .filter(|c| !c.is_empty())
            .last();
        if !last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            return Err(Error::BadTransferEncoding);
        }
    }
    match count("proxy-authorization") {
        0 => Ok(()),
        1 => {
            let (_, v) = fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
                .expect("counted");
            Credentials::from_header_value(v).map(|_| ())
        }
        _ => Err(Error::BadCredentials),
    }
}

/// `httparse` with room for `N` fields.
fn tokenize<const N: usize>(head: &[u8]) -> Option<(Option<String>, Vec<(String, Vec<u8>)>)> {
    let mut storage = [httparse::EMPTY_HEADER; N];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => Some((
            req.path.map(str::to_owned),
            req.headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_owned()))
                .collect(),
        )),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, block)) = data.split_first() else {
        return;
    };
    let line = LINES[usize::from(pick) % LINES.len()];
    let mut head = Vec::with_capacity(line.len() + block.len() * 2 + 4);
    head.extend_from_slice(line.as_bytes());
    head.extend_from_slice(b"\r\n");
    for l in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        head.extend_from_slice(l);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    // Heads the tokenizer refuses are the raw decoder target's business.
    let Some((_, fields)) = tokenize::<MAX_HEADERS>(&head) else {
        return;
    };
    let decoded = RequestHead::decode(&head);
    let expected = reference(&fields);
    let msg = match (decoded, expected) {
        (Ok(Decoded::Complete { msg, len }), Ok(())) => {
            assert_eq!(len, head.len());
            msg
        }
        (Err(got), Err(want)) => {
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&head));
            return;
        }
        (got, want) => panic!(
            "decoder {got:?}, reference {want:?} for {:?}",
            String::from_utf8_lossy(&head)
        ),
    };
    let mut out = Vec::new();
    if msg.encode_origin_form(&mut out).is_err() {
        assert!(msg.is_connect());
        return;
    }
    let (path, forwarded) =
        tokenize::<{ MAX_HEADERS + 2 }>(&out).expect("the origin-form head parses");
    assert!(path.is_some_and(|p| p.starts_with('/')));
    let target = msg.target.to_string();
    let host = target
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("absolute-form");
    let hosts: Vec<&[u8]> = forwarded
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(hosts, [host.as_bytes()]);
    assert!(forwarded.first().is_some_and(|(n, _)| n == "Host"));
    for name in PROXY_ONLY.iter().filter(|n| **n != "host") {
        assert!(!forwarded.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)));
    }
    let last = forwarded.last().expect("Connection");
    assert!(last.0 == "Connection" && (last.1 == b"close" || last.1 == b"upgrade"));
    // The origin frames the body as the proxy did.
    let length_in: Vec<&[u8]> = members(&fields, "content-length").collect();
    let length_out: Vec<&[u8]> = members(&forwarded, "content-length").collect();
    assert_eq!(length_out.len(), usize::from(!length_in.is_empty()));
    // Equal values with leading zeros (`05`, `5`) go out as one number.
    let number = |m: &&[u8]| -> u64 {
        std::str::from_utf8(m)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("checked")
    };
    let out = length_out.first().map(number);
    assert!(length_in.iter().all(|m| Some(number(m)) == out));
    let te_in: Vec<&[u8]> = members(&fields, "transfer-encoding").collect();
    let te_out: Vec<&[u8]> = members(&forwarded, "transfer-encoding").collect();
    assert_eq!(te_in, te_out);
});
