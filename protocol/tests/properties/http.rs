//! Property tests for http: HTTP/1.x proxy request heads.

use proptest::prelude::*;
use sixpath_protocol::http::{Credentials, Error, Header, RequestHead, Target, Version};
use sixpath_protocol::{Address, Decoded, DomainName, Endpoint};

use crate::assert_incremental;

/// Hosts as a proxy target may name them. The last label starts with a
/// letter, so it never "ends in a number".
fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(Address::Ipv4),
        any::<std::net::Ipv6Addr>().prop_map(Address::Ipv6),
        "([a-z0-9_-]{1,12}\\.){0,3}[a-zA-Z][a-zA-Z0-9-]{0,12}\\.?"
            .prop_map(|s| Address::Domain(DomainName::new(s).expect("valid name"))),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (address(), 1u16..).prop_map(|(addr, port)| Endpoint { addr, port })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        endpoint().prop_map(Target::Authority),
        (endpoint(), "/[A-Za-z0-9/._~%!$&'()*+,;=:@?\u{e9}-]{0,40}").prop_map(
            |(endpoint, path_and_query)| Target::Absolute {
                endpoint,
                path_and_query,
            }
        ),
    ]
}

fn field_value() -> impl Strategy<Value = Vec<u8>> {
    let visible = prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff];
    let inner = prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff];
    prop_oneof![
        Just(Vec::new()),
        visible.clone().prop_map(|b| vec![b]),
        (
            visible.clone(),
            proptest::collection::vec(inner, 0..30),
            visible
        )
            .prop_map(|(first, mut middle, last)| {
                middle.insert(0, first);
                middle.push(last);
                middle
            }),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    ("[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}", field_value())
        .prop_filter(
            "credentials and framing fields are generated apart",
            |(name, _)| {
                ![
                    "proxy-authorization",
                    "host",
                    "content-length",
                    "transfer-encoding",
                ]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            },
        )
        .prop_map(|(name, value)| Header::new(name, value))
}

prop_compose! {
    fn request_head()(
        target in target(),
        method in "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}",
        http11 in any::<bool>(),
        mut headers in proptest::collection::vec(header(), 0..12),
        credentials in proptest::option::of(("[^:]{0,16}", ".{0,16}")),
        auth_at in any::<prop::sample::Index>(),
    ) -> RequestHead {
        let method = match target {
            Target::Authority(_) => "CONNECT".to_owned(),
            Target::Absolute { .. } if method == "CONNECT" => "GET".to_owned(),
            Target::Absolute { .. } => method,
        };
        let proxy_authorization = credentials.map(|(u, p)| Credentials::new(u, p));
        if let Some(c) = &proxy_authorization {
            let at = auth_at.index(headers.len() + 1);
            headers.insert(at, Header::new("Proxy-Authorization", c.to_header_value()));
        }
        RequestHead {
            method,
            target,
            version: if http11 { Version::Http11 } else { Version::Http10 },
            headers,
            proxy_authorization,
        }
    }
}

fn encode(head: &RequestHead) -> Vec<u8> {
    let mut buf = Vec::new();
    head.encode(&mut buf);
    buf
}

/// Request heads assembled from plausible and broken pieces, so random
/// inputs reach the target, version and credential checks and not only the
/// tokenizer.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        &b"GET "[..],
        b"CONNECT ",
        b"POST ",
        b"OPTIONS ",
        b"get ",
        b"",
    ]);
    let target = prop::sample::select(vec![
        &b"http://"[..],
        b"HTTPS://",
        b"ftp://",
        b"u@",
        b"a.com",
        b"[::1]",
        b"[::1",
        b"127.1",
        b"0x7f",
        b"10.0.0.1",
        b":",
        b"443",
        b"0",
        b"99999",
        b"/",
        b"?q=1",
        b"#f",
        b"*",
        b"%00",
        b"\xc3\xa9",
    ]);
    let version = prop::sample::select(vec![
        &b" HTTP/1.1\r\n"[..],
        b" HTTP/1.0\n",
        b" HTTP/2.0\r\n",
        b" HTTP/1.",
        b" HTTX/1.1\r\n",
        b"\r\n",
    ]);
    let good_line = prop::sample::select(vec![
        &b"Host: a.com\r\n"[..],
        b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n",
        b"proxy-authorization: basic Og\r\n",
        b"Proxy-Authorization: Digest x\r\n",
        b"Connection: close, X\r\n",
        b"X: \x80\t v \r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
    ]);
    let bad_line = prop::sample::select(vec![
        &b"Proxy-Authorization: Basic Og=\r\n"[..],
        b"X\0: v\r\n",
        b"X: \x7f\r\n",
        b" folded\r\n",
        b"X: y\r",
        b"\n",
        b"Host: b.com\r\n",
        b"Content-Length: 4\r\n",
        b"Content-Length: x\r\n",
        b"Transfer-Encoding: gzip\r\n",
    ]);
    let line = prop_oneof![4 => good_line, 1 => bad_line];
    let end = prop::sample::select(vec![&b"\r\n"[..], b"\n", b"", b"\r", b"\r\nbody"]);
    let good_target = prop::sample::select(vec![
        &b"http://a.com/x?y"[..],
        b"a.com:443",
        b"[::1]:80",
        b"http://10.0.0.1:8080",
    ]);
    let target = prop_oneof![
        good_target.prop_map(|t| vec![t]),
        proptest::collection::vec(target, 0..6),
    ];
    (
        method,
        target,
        version,
        proptest::collection::vec(line, 0..5),
        end,
    )
        .prop_map(|(m, t, v, lines, e)| [m, &t.concat(), v, &lines.concat(), e].concat())
}

/// A valid encoding, then bytes overwritten, the end cut or extended.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        request_head(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        any::<prop::sample::Index>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(head, writes, cut, do_cut, tail)| {
            let mut bytes = encode(&head);
            for (i, b) in writes {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend_from_slice(&tail);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_head_round_trips(head in request_head()) {
        let bytes = encode(&head);
        prop_assert_eq!(bytes.len(), head.encoded_len());
        prop_assert_eq!(
            RequestHead::decode(&bytes),
            Ok(Decoded::Complete { msg: head, len: bytes.len() })
        );
    }

    #[test]
    fn body_after_the_head_is_left_alone(
        head in request_head(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = encode(&head);
        let len = bytes.len();
        bytes.extend_from_slice(&body);
        prop_assert_eq!(
            RequestHead::decode(&bytes),
            Ok(Decoded::Complete { msg: head, len })
        );
    }

    #[test]
    fn origin_form_is_a_valid_origin_request(head in request_head()) {
        let mut buf = Vec::new();
        if head.encode_origin_form(&mut buf).is_ok() {
            let mut fields = [httparse::EMPTY_HEADER; 80];
            let mut req = httparse::Request::new(&mut fields);
            prop_assert_eq!(req.parse(&buf), Ok(httparse::Status::Complete(buf.len())));
            prop_assert_eq!(req.method, Some(head.method.as_str()));
            prop_assert!(req.path.is_some_and(|p| p.starts_with('/')));
            prop_assert!(req.headers.first().is_some_and(|h| h.name == "Host"));
            prop_assert!(!req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("proxy-authorization")));
        } else {
            prop_assert!(head.is_connect());
            prop_assert!(buf.is_empty());
        }
    }

    /// RFC 9112 §6.3: two different Content-Length values, or one beside
    /// Transfer-Encoding, anywhere among the fields of any head: refused
    /// whole, `NeedMore` or the same error for every prefix.
    #[test]
    fn ambiguous_framing_is_refused_wherever_it_is(
        mut head in request_head(),
        at in any::<prop::sample::Index>(),
        at2 in any::<prop::sample::Index>(),
        n in 0u64..1000,
        chunked in any::<bool>(),
    ) {
        head.headers.insert(at.index(head.headers.len() + 1), Header::new("Content-Length", n.to_string()));
        let (second, expected) = if chunked {
            (Header::new("Transfer-Encoding", "chunked"), Error::TransferEncodingWithContentLength)
        } else {
            (Header::new("content-length", (n + 1).to_string()), Error::BadContentLength)
        };
        head.headers.insert(at2.index(head.headers.len() + 1), second);
        let bytes = encode(&head);
        prop_assert_eq!(RequestHead::decode(&bytes), Err(expected));
        let _ = assert_incremental(RequestHead::decode, &bytes);
    }

    #[test]
    fn arbitrary_bytes_decode_incrementally(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = assert_incremental(RequestHead::decode, &bytes);
    }

    #[test]
    fn head_like_bytes_decode_incrementally(bytes in head_like()) {
        let _ = assert_incremental(RequestHead::decode, &bytes);
    }

    #[test]
    fn mutated_heads_decode_incrementally(bytes in mutated()) {
        let _ = assert_incremental(RequestHead::decode, &bytes);
    }

    #[test]
    fn size_limit_decodes_incrementally(bytes in mutated(), limit in 0usize..300) {
        let _ = assert_incremental(|b: &[u8]| RequestHead::decode_with_limit(b, limit), &bytes);
    }
}
