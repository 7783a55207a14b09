//! The head of an HTTP/1.x request sent to a proxy (RFC 9112 §2-§5): request
//! line and header fields up to the blank line.
//!
//! [`RequestHead::decode`] uses `httparse` as the tokenizer (it checks the
//! method token, the target's characters, the version, and the field syntax,
//! and reads incrementally), with at most [`MAX_HEADERS`] fields and at most
//! [`DEFAULT_MAX_HEAD_LEN`] bytes; the target, the credentials and the
//! version classes are decoded here. `len` counts the bytes up to and
//! including the blank line; what follows (a request body, or tunnel data
//! sent early) is the caller's.
//!
//! Incremental contract: `httparse` reports only "partial" for an
//! unfinished head, so an unfinished head under the limit is `NeedMore(1)`,
//! which is always a correct lower bound. Errors are found only in the bytes
//! already read (and within the first `max_head_len` bytes), so a prefix of
//! bad input gives `NeedMore` or the same error.

use core::fmt;

use thiserror::Error;

use super::Error;
use super::basic::Credentials;
use super::target::{HostPort, Target};
use crate::codec::{self, Decoded, Fail, Out};

/// The size limit [`RequestHead::decode`] applies: 16 KiB, the same as the
/// SOCKS6 options limit, and more than browsers send.
pub const DEFAULT_MAX_HEAD_LEN: usize = 16 * 1024;

/// The most header fields a head may have; more is
/// [`Error::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

/// The HTTP version of the request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

impl Version {
    /// The minor version: 0 or 1.
    pub fn minor(self) -> u8 {
        match self {
            Self::Http10 => 0,
            Self::Http11 => 1,
        }
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field, as received: the name keeps its case, the value is
/// the bytes between the optional whitespace around it (it may hold
/// obs-text, bytes 0x80 to 0xFF, so it is not a `String`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The field name (a token).
    pub name: String,
    /// The field value, without leading or trailing whitespace.
    pub value: Vec<u8>,
}

impl Header {
    /// A field `name: value`.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// True if the name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Prints `name: "value"`; the values of `Proxy-Authorization` and
/// `Authorization` are redacted so a logged head never shows credentials.
impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is("proxy-authorization") || self.is("authorization") {
            write!(f, "{}: <redacted>", self.name)
        } else {
            let value = String::from_utf8_lossy(&self.value);
            write!(f, "{}: {value:?}", self.name)
        }
    }
}

/// A request head received by the HTTP proxy front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token, case-sensitive (`CONNECT`, `GET`, ...).
    pub method: String,
    /// The endpoint and, for plain HTTP, the path to request there.
    pub target: Target,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every header field in order, `Proxy-Authorization` included.
    pub headers: Vec<Header>,
    /// The credentials of a `Proxy-Authorization: Basic` field in
    /// `headers`; `None` without one or with another scheme.
    pub proxy_authorization: Option<Credentials>,
}

/// [`RequestHead::encode_origin_form`] was called on a CONNECT: a tunnel
/// request has nothing to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a CONNECT request has no origin-form")]
pub struct NotAbsoluteForm;

/// Fields a proxy never forwards (RFC 9110 §7.6.1 and §11.7). `Host` is
/// replaced; `Upgrade` is forwarded only with a `Connection: upgrade`.
const HOP_BY_HOP: [&str; 7] = [
    "host",
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "upgrade",
];

/// Fields kept even when `Connection` names them: the body is relayed
/// unchanged after the head, so its framing must reach the origin with it.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

impl RequestHead {
    /// Decodes a head from the front of `buf` with the default size limit
    /// ([`DEFAULT_MAX_HEAD_LEN`]).
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        Self::decode_with_limit(buf, DEFAULT_MAX_HEAD_LEN)
    }

    /// Decodes a head that must end within `max_head_len` bytes: if the
    /// first `max_head_len` bytes hold no complete head, the answer is
    /// [`Error::HeadTooLarge`]; under the limit an unfinished head is
    /// `NeedMore`.
    pub fn decode_with_limit(buf: &[u8], max_head_len: usize) -> Result<Decoded<Self>, Error> {
        codec::finish(decode_inner(buf, max_head_len))
    }

    /// The value of the first field called `name` (ASCII case ignored).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_slice())
    }

    /// True for a CONNECT (tunnel) request.
    pub fn is_connect(&self) -> bool {
        matches!(self.target, Target::Authority(_))
    }

    /// Bytes [`RequestHead::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let fields: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + 2 + h.value.len() + 2)
            .sum();
        self.method.len() + 1 + self.target.to_string().len() + 1 + 8 + 2 + fields + 2
    }

    /// Writes the head in proxy form, as an application sends it to a
    /// proxy: the request line with the target in absolute- or
    /// authority-form (see [`Target`]'s `Display`), every field of
    /// `headers` unchanged, and the blank line.
    ///
    /// The fields are written as they are: a head from [`RequestHead::decode`]
    /// always re-decodes to itself; one built by hand must use token
    /// characters in `method` and field names and keep CR, LF and NUL out of
    /// field values, or the output is not a valid head.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_slice(self.method.as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(self.target.to_string().as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(self.version.as_str().as_bytes());
        buf.put_slice(b"\r\n");
        for h in &self.headers {
            put_field(buf, h.name.as_bytes(), &h.value);
        }
        buf.put_slice(b"\r\n");
    }

    /// Writes the request for the origin server (RFC 9112 §3.2.1,
    /// RFC 9110 §7.6.1):
    ///
    /// - the request line with the origin-form target (path and query);
    /// - `Host` first, made from the target: "A proxy that forwards such a
    ///   request MUST generate a new Host field value based on the received
    ///   request-target rather than forward the received Host field value"
    ///   (RFC 9112 §3.2.2), so a received `Host` is replaced, not kept;
    /// - every other field in order, minus the hop-by-hop ones:
    ///   `Proxy-Authorization`, `Proxy-Authenticate`, `Proxy-Connection`,
    ///   `Keep-Alive`, `Connection` and the fields it names ("a proxy or
    ///   gateway MUST parse a received Connection header field before a
    ///   message is forwarded and, for each connection-option in this field,
    ///   remove any header or trailer field(s) from the message with the
    ///   same name", RFC 9110 §7.6.1), except `Content-Length` and
    ///   `Transfer-Encoding`, which frame the body the caller relays;
    /// - a `Content-Length` repeated with the same value (which the decoder
    ///   accepts) as one field with that value, where the first was;
    /// - `Connection: close`, because the client relays the rest of the
    ///   application's connection to this one origin unchanged, and a second
    ///   request on a kept-alive connection could be for another host. The
    ///   exception is an upgrade (`Connection: upgrade` with an `Upgrade`
    ///   field, e.g. WebSocket): then `Upgrade` is kept and
    ///   `Connection: upgrade` is written, since after a `101` the relay is
    ///   exactly what the application wants.
    ///
    /// A CONNECT head has no origin form: [`NotAbsoluteForm`], nothing
    /// written.
    pub fn encode_origin_form<B: Out>(&self, buf: &mut B) -> Result<(), NotAbsoluteForm> {
        let Target::Absolute {
            endpoint,
            path_and_query,
        } = &self.target
        else {
            return Err(NotAbsoluteForm);
        };
        let options: Vec<&[u8]> = self
            .headers
            .iter()
            .filter(|h| h.is("connection"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|t| !t.is_empty())
            .collect();
        let names = |name: &str| {
            options
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
        };
        let upgrade = names("upgrade") && self.header("upgrade").is_some();

        buf.put_slice(self.method.as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(path_and_query.as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(self.version.as_str().as_bytes());
        buf.put_slice(b"\r\n");
        put_field(buf, b"Host", HostPort(endpoint).to_string().as_bytes());
        // Repeated identical Content-Length values go out as one field, in
        // the place of the first (a head built by hand with an invalid one
        // keeps its fields as they are).
        let length = content_length(&self.headers).ok().flatten();
        let mut length_written = false;
        for h in &self.headers {
            if let (true, Some(n)) = (h.is("content-length"), length) {
                if !length_written {
                    put_field(buf, h.name.as_bytes(), n.to_string().as_bytes());
                    length_written = true;
                }
                continue;
            }
            let kept_upgrade = upgrade && h.is("upgrade");
            let hop_by_hop = HOP_BY_HOP.iter().any(|n| h.is(n)) && !kept_upgrade;
            let named = names(&h.name) && !kept_upgrade && !FRAMING.iter().any(|n| h.is(n));
            if !hop_by_hop && !named {
                put_field(buf, h.name.as_bytes(), &h.value);
            }
        }
        let connection: &[u8] = if upgrade { b"upgrade" } else { b"close" };
        put_field(buf, b"Connection", connection);
        buf.put_slice(b"\r\n");
        Ok(())
    }
}

fn put_field<B: Out>(buf: &mut B, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn decode_inner(buf: &[u8], max_head_len: usize) -> Result<(RequestHead, usize), Fail<Error>> {
    // Only the first `max_head_len` bytes are looked at, so the answer for a
    // longer buffer is the answer for that window.
    let window = buf.get(..max_head_len).unwrap_or(buf);
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= max_head_len => {
            return Err(Error::HeadTooLarge.into());
        }
        Ok(httparse::Status::Partial) => return Err(Fail::Incomplete(1)),
        Err(e) => return Err(syntax_error(e, window).into()),
    };
    // httparse fills all three on Complete.
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Error::BadRequestLine.into());
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Error::UnsupportedVersion.into()),
    };
    let target = Target::parse(method, path)?;
    let headers: Vec<Header> = req
        .headers
        .iter()
        .map(|h| Header::new(h.name, h.value))
        .collect();
    check_framing(&headers)?;
    let mut auth = headers.iter().filter(|h| h.is("proxy-authorization"));
    let proxy_authorization = match (auth.next(), auth.next()) {
        (None, _) => None,
        (Some(h), None) => Credentials::from_header_value(&h.value)?,
        // Two credentials: which one the client meant is anyone's guess.
        (Some(_), Some(_)) => return Err(Error::BadCredentials.into()),
    };
    Ok((
        RequestHead {
            method: method.to_owned(),
            target,
            version,
            headers,
            proxy_authorization,
        },
        len,
    ))
}

/// Refuses a head whose message framing or target host is ambiguous. The
/// proxy relays the body after the head unchanged, so the origin frames it
/// with these fields: if the proxy and the origin could read them
/// differently, a second request could hide in the body (request
/// smuggling, RFC 9112 §11.2). Refused, each with 400:
///
/// - more than one `Host` field line (RFC 9112 §3.2). A missing `Host` is
///   accepted: the proxy writes `Host` from the target itself (§3.2.2),
///   and CONNECT clients often send none;
/// - a `Content-Length` that is not one decimal number, including
///   different values in several fields or list members (§6.3, item 5);
/// - `Transfer-Encoding` together with `Content-Length` (§6.3, item 3);
/// - a `Transfer-Encoding` whose final coding is not `chunked` (§6.3,
///   item 4).
fn check_framing(headers: &[Header]) -> Result<(), Error> {
    if headers.iter().filter(|h| h.is("host")).count() > 1 {
        return Err(Error::DuplicateHost);
    }
    let length = content_length(headers)?;
    let mut codings = headers
        .iter()
        .filter(|h| h.is("transfer-encoding"))
        .peekable();
    if codings.peek().is_none() {
        return Ok(());
    }
    if length.is_some() {
        return Err(Error::TransferEncodingWithContentLength);
    }
    let last = codings
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(trim_ows)
        .rfind(|c| !c.is_empty());
    if last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
        Ok(())
    } else {
        Err(Error::BadTransferEncoding)
    }
}

/// The body length the `Content-Length` fields give, `None` without one:
/// every member of every field must be the same decimal number ("a
/// recipient MAY either reject the message as invalid or replace the
/// duplicated field values with a single valid Content-Length field
/// containing that decimal value", RFC 9110 §8.6).
fn content_length(headers: &[Header]) -> Result<Option<u64>, Error> {
    let mut length = None;
    let members = headers
        .iter()
        .filter(|h| h.is("content-length"))
        .flat_map(|h| h.value.split(|&b| b == b','));
    for member in members {
        let n = decimal(trim_ows(member)).ok_or(Error::BadContentLength)?;
        match length {
            Some(l) if l != n => return Err(Error::BadContentLength),
            _ => length = Some(n),
        }
    }
    Ok(length)
}

/// `1*DIGIT` as a number, `None` if it is not one or does not fit.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

fn syntax_error(e: httparse::Error, window: &[u8]) -> Error {
    match e {
        httparse::Error::HeaderName => Error::BadHeaderName,
        httparse::Error::HeaderValue => Error::BadHeaderValue,
        httparse::Error::NewLine => Error::BadLineEnding,
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::Token | httparse::Error::Status => Error::BadRequestLine,
        httparse::Error::Version => version_error(window),
    }
}

/// httparse says "invalid version" both for `HTTP/2.0` and for garbage. A
/// version token that starts `HTTP/` is a version we do not speak (505,
/// which also answers the HTTP/2 preface `PRI * HTTP/2.0`); anything else is
/// a malformed request line (400).
///
/// httparse stops at the first byte that differs from `HTTP/1.0` or
/// `HTTP/1.1`, so whether the token starts with `HTTP/` is already settled
/// in every prefix that fails: prefixes and the whole agree.
fn version_error(window: &[u8]) -> Error {
    let line = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .and_then(|start| window.get(start..))
        .unwrap_or_default();
    let line = line
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    if version.starts_with(b"HTTP/") {
        Error::UnsupportedVersion
    } else {
        Error::BadRequestLine
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::addr::{Address, DomainName, Endpoint};

    fn domain(s: &str) -> Address {
        Address::Domain(DomainName::new(s).expect("valid"))
    }

    fn complete(bytes: &[u8]) -> (RequestHead, usize) {
        RequestHead::decode(bytes)
            .expect("valid head")
            .complete()
            .expect("complete head")
    }

    /// Every prefix shorter than the head needs more; the whole and any
    /// longer buffer give the same head and length.
    fn check_split(bytes: &[u8], head_len: usize) {
        let (head, len) = complete(bytes);
        assert_eq!(len, head_len);
        for k in 0..head_len {
            assert_eq!(
                RequestHead::decode(&bytes[..k]),
                Ok(Decoded::NeedMore(1)),
                "prefix {k}"
            );
        }
        for k in head_len..=bytes.len() {
            assert_eq!(
                RequestHead::decode(&bytes[..k]),
                Ok(Decoded::Complete {
                    msg: head.clone(),
                    len
                })
            );
        }
    }

    fn error(bytes: &[u8]) -> Error {
        RequestHead::decode(bytes).expect_err("invalid head")
    }

    fn origin_form(head: &RequestHead) -> String {
        let mut buf = Vec::new();
        head.encode_origin_form(&mut buf).expect("absolute-form");
        String::from_utf8(buf).expect("ASCII")
    }

    fn round_trips(head: &RequestHead) {
        let mut buf = Vec::new();
        head.encode(&mut buf);
        assert_eq!(buf.len(), head.encoded_len());
        assert_eq!(
            RequestHead::decode(&buf),
            Ok(Decoded::Complete {
                msg: head.clone(),
                len: buf.len()
            })
        );
    }

    #[test]
    fn connect_to_domain() {
        let bytes = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let (head, len) = complete(bytes);
        assert_eq!(len, bytes.len());
        assert_eq!(head.method, "CONNECT");
        assert!(head.is_connect());
        assert_eq!(
            head.target,
            Target::Authority(Endpoint::new(domain("example.com"), 443))
        );
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers, [Header::new("Host", "example.com:443")]);
        assert_eq!(head.proxy_authorization, None);
        round_trips(&head);
        check_split(bytes, bytes.len());
    }

    #[test]
    fn connect_to_ipv4_over_http10() {
        let (head, _) = complete(b"CONNECT 192.0.2.1:8443 HTTP/1.0\r\n\r\n");
        assert_eq!(
            head.target,
            Target::Authority(Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 8443))
        );
        assert_eq!(head.version, Version::Http10);
        assert!(head.headers.is_empty());
        round_trips(&head);
    }

    #[test]
    fn connect_to_bracketed_ipv6() {
        let (head, _) = complete(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n");
        assert_eq!(
            head.target,
            Target::Authority(Endpoint::new(
                "2001:db8::1".parse::<Ipv6Addr>().expect("v6"),
                443
            ))
        );
        round_trips(&head);
    }

    #[test]
    fn connect_leaves_early_tunnel_bytes() {
        let bytes = b"CONNECT a.com:443 HTTP/1.1\r\n\r\n\x16\x03\x01";
        let (_, len) = complete(bytes);
        assert_eq!(&bytes[len..], b"\x16\x03\x01");
        check_split(bytes, len);
    }

    #[test]
    fn absolute_get_with_query() {
        let bytes = b"GET http://example.com:8080/search?q=sixpath&n=1 HTTP/1.1\r\n\
                      Host: example.com:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
                      Proxy-Connection: Keep-Alive\r\n\r\n";
        let (head, len) = complete(bytes);
        assert_eq!(len, bytes.len());
        assert_eq!(head.method, "GET");
        assert_eq!(
            head.target,
            Target::Absolute {
                endpoint: Endpoint::new(domain("example.com"), 8080),
                path_and_query: "/search?q=sixpath&n=1".into(),
            }
        );
        assert_eq!(head.header("user-agent"), Some(&b"curl/8.5.0"[..]));
        round_trips(&head);
        check_split(bytes, len);
        assert_eq!(
            origin_form(&head),
            "GET /search?q=sixpath&n=1 HTTP/1.1\r\n\
             Host: example.com:8080\r\n\
             User-Agent: curl/8.5.0\r\n\
             Accept: */*\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn post_leaves_body_after_len() {
        let bytes = b"POST http://192.0.2.7/form HTTP/1.1\r\nHost: 192.0.2.7\r\n\
                      Content-Type: application/x-www-form-urlencoded\r\n\
                      Content-Length: 7\r\n\r\na=1&b=2";
        let (head, len) = complete(bytes);
        assert_eq!(&bytes[len..], b"a=1&b=2");
        assert_eq!(head.method, "POST");
        assert_eq!(
            head.target.endpoint(),
            &Endpoint::new(Ipv4Addr::new(192, 0, 2, 7), 80)
        );
        check_split(bytes, len);
        assert_eq!(
            origin_form(&head),
            "POST /form HTTP/1.1\r\nHost: 192.0.2.7\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 7\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn header_split_at_every_byte() {
        let bytes =
            b"GET http://a.com/ HTTP/1.1\r\nX-Long-Header-Name:   some value\t with tab  \r\n\r\n";
        let (head, len) = complete(bytes);
        assert_eq!(
            head.headers,
            [Header::new("X-Long-Header-Name", "some value\t with tab")]
        );
        check_split(bytes, len);
    }

    #[test]
    fn accepts_basic_credentials() {
        let bytes = b"CONNECT a.com:443 HTTP/1.1\r\n\
                      Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n";
        let (head, _) = complete(bytes);
        assert_eq!(
            head.proxy_authorization,
            Some(Credentials::new("Aladdin", "open sesame"))
        );
        round_trips(&head);
    }

    #[test]
    fn accepts_lower_case_header_names() {
        let bytes = b"GET http://a.com/x HTTP/1.1\r\nhost: a.com\r\n\
                      proxy-authorization: basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\
                      proxy-connection: keep-alive\r\nconnection: x-trace\r\nx-trace: 1\r\n\r\n";
        let (head, _) = complete(bytes);
        assert_eq!(
            head.proxy_authorization,
            Some(Credentials::new("Aladdin", "open sesame"))
        );
        assert_eq!(head.header("HOST"), Some(&b"a.com"[..]));
        assert_eq!(
            origin_form(&head),
            "GET /x HTTP/1.1\r\nHost: a.com\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn debug_output_hides_credentials() {
        let (head, _) = complete(
            b"CONNECT a.com:443 HTTP/1.1\r\n\
              Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n",
        );
        let debug = format!("{head:?}");
        assert!(!debug.contains("QWxh"), "{debug}");
        assert!(!debug.contains("open sesame"), "{debug}");
        assert!(debug.contains("Aladdin"), "{debug}");
    }

    #[test]
    fn ignores_other_authorization_schemes() {
        let (head, _) =
            complete(b"CONNECT a.com:443 HTTP/1.1\r\nProxy-Authorization: Negotiate abc\r\n\r\n");
        assert_eq!(head.proxy_authorization, None);
        assert_eq!(head.headers.len(), 1);
    }

    #[test]
    fn origin_form_replaces_host_and_strips_hop_by_hop_fields() {
        let bytes = b"PUT http://[2001:db8::5]:8000/up?x=1 HTTP/1.1\r\n\
                      Host: attacker.example\r\n\
                      Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\
                      Proxy-Authenticate: nothing\r\n\
                      Keep-Alive: timeout=5\r\n\
                      Connection: keep-alive, X-Hop, Transfer-Encoding\r\n\
                      X-Hop: secret\r\n\
                      Transfer-Encoding: chunked\r\n\
                      Upgrade: h2c\r\n\
                      X-End: 2\r\n\r\n";
        let (head, _) = complete(bytes);
        assert_eq!(
            origin_form(&head),
            "PUT /up?x=1 HTTP/1.1\r\n\
             Host: [2001:db8::5]:8000\r\n\
             Transfer-Encoding: chunked\r\n\
             X-End: 2\r\n\
             Connection: close\r\n\r\n"
        );
    }

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any ... request message that contains more than one Host
    // header field line".
    #[test]
    fn rejects_duplicate_host() {
        for bytes in [
            &b"GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n"[..],
            b"GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\nhost: a.com\r\n\r\n",
            b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\nX: 1\r\nHOST: b.com:443\r\n\r\n",
        ] {
            let e = error(bytes);
            assert_eq!(e, Error::DuplicateHost, "{bytes:?}");
            assert_eq!(e.status(), (400, "Bad Request"));
        }
    }

    #[test]
    fn accepts_missing_host_the_proxy_writes_it() {
        let (head, _) = complete(b"GET http://a.com/x HTTP/1.1\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            origin_form(&head),
            "GET /x HTTP/1.1\r\nHost: a.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    // RFC 9112 §6.3, item 5: an invalid Content-Length (RFC 9110 §8.6: not
    // one decimal value) "MUST" get 400 and a close.
    #[test]
    fn rejects_two_different_content_lengths() {
        for bytes in [
            &b"POST http://a.com/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc"[..],
            b"POST http://a.com/ HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabc",
            b"POST http://a.com/ HTTP/1.1\r\ncontent-length: 3\r\nX: y\r\nCONTENT-LENGTH: 0\r\n\r\n",
        ] {
            let e = error(bytes);
            assert_eq!(e, Error::BadContentLength, "{bytes:?}");
            assert_eq!(e.status(), (400, "Bad Request"));
        }
    }

    #[test]
    fn rejects_content_length_that_is_not_a_decimal_number() {
        for value in [
            "",
            "-1",
            "+3",
            "3x",
            "0x10",
            "1 2",
            "3,",
            "18446744073709551616",
        ] {
            let bytes = format!("POST http://a.com/ HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                error(bytes.as_bytes()),
                Error::BadContentLength,
                "{value:?}"
            );
        }
    }

    // RFC 9110 §8.6: identical values "MAY" be replaced by one field.
    #[test]
    fn accepts_repeated_identical_content_length_and_forwards_one() {
        let bytes = b"POST http://a.com/f HTTP/1.1\r\nContent-Length: 3\r\n\
                      X: y\r\ncontent-length: 3, 03\r\n\r\nabc";
        let (head, len) = complete(bytes);
        assert_eq!(&bytes[len..], b"abc");
        round_trips(&head);
        assert_eq!(
            origin_form(&head),
            "POST /f HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\nX: y\r\n\
             Connection: close\r\n\r\n"
        );
    }

    // RFC 9112 §6.3, item 3: both fields "might indicate an attempt to
    // perform request smuggling ... and ought to be handled as an error".
    #[test]
    fn rejects_transfer_encoding_with_content_length() {
        for bytes in [
            &b"POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST http://a.com/ HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            b"POST http://a.com/ HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ] {
            let e = error(bytes);
            assert_eq!(e, Error::TransferEncodingWithContentLength, "{bytes:?}");
            assert_eq!(e.status(), (400, "Bad Request"));
        }
    }

    // RFC 9112 §6.3, item 4: chunked not the final coding of a request
    // "MUST" get 400 and a close.
    #[test]
    fn rejects_transfer_encoding_not_ending_in_chunked() {
        for value in [
            "gzip",
            "chunked, gzip",
            "",
            "chunked;x=1",
            "chunked\r\nTransfer-Encoding: gzip",
        ] {
            let bytes =
                format!("POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            let e = error(bytes.as_bytes());
            assert_eq!(e, Error::BadTransferEncoding, "{value:?}");
            assert_eq!(e.status().0, 400);
        }
    }

    #[test]
    fn accepts_chunked_as_the_final_coding() {
        for value in [
            "chunked",
            "gzip, chunked",
            "Chunked",
            "gzip\r\nTransfer-Encoding: chunked",
        ] {
            let bytes = format!(
                "POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n0\r\n\r\n"
            );
            let (head, len) = complete(bytes.as_bytes());
            assert_eq!(&bytes.as_bytes()[len..], b"0\r\n\r\n");
            round_trips(&head);
        }
    }

    /// Ambiguous framing is found once the head is complete: every prefix
    /// needs more, the whole head is refused.
    #[test]
    fn ambiguous_framing_split_at_every_byte() {
        let bytes =
            b"POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        for k in 0..bytes.len() {
            assert_eq!(
                RequestHead::decode(&bytes[..k]),
                Ok(Decoded::NeedMore(1)),
                "prefix {k}"
            );
        }
        assert_eq!(error(bytes), Error::BadContentLength);
    }

    #[test]
    fn origin_form_keeps_websocket_upgrade() {
        let bytes = b"GET http://a.com/ws HTTP/1.1\r\nHost: a.com\r\n\
                      Connection: Upgrade\r\nUpgrade: websocket\r\n\
                      Sec-WebSocket-Version: 13\r\n\r\n";
        let (head, _) = complete(bytes);
        assert_eq!(
            origin_form(&head),
            "GET /ws HTTP/1.1\r\nHost: a.com\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn connect_has_no_origin_form() {
        let (head, _) = complete(b"CONNECT a.com:443 HTTP/1.1\r\n\r\n");
        let mut buf = Vec::new();
        assert_eq!(head.encode_origin_form(&mut buf), Err(NotAbsoluteForm));
        assert!(buf.is_empty());
    }

    #[test]
    fn accepts_leading_empty_lines_and_bare_lf() {
        let bytes = b"\r\n\nGET http://a.com HTTP/1.0\nAccept: */*\n\n";
        let (head, len) = complete(bytes);
        assert_eq!(len, bytes.len());
        assert_eq!(head.version, Version::Http10);
        check_split(bytes, len);
    }

    #[test]
    fn rejects_connect_without_port() {
        let e = error(b"CONNECT example.com HTTP/1.1\r\n\r\n");
        assert_eq!(e, Error::MissingPort);
        assert_eq!(e.status(), (400, "Bad Request"));
    }

    #[test]
    fn rejects_origin_form_get() {
        let e = error(b"GET /index.html HTTP/1.1\r\nHost: a.com\r\n\r\n");
        assert_eq!(e, Error::OriginForm);
        assert_eq!(e.status().0, 400);
    }

    #[test]
    fn rejects_https_and_ftp_absolute_form() {
        for bytes in [
            &b"GET https://a.com/ HTTP/1.1\r\n\r\n"[..],
            b"GET ftp://a.com/f HTTP/1.1\r\n\r\n",
        ] {
            let e = error(bytes);
            assert_eq!(e, Error::UnsupportedScheme);
            assert_eq!(e.status().0, 400);
        }
    }

    #[test]
    fn rejects_http2_version() {
        let e = error(b"GET http://a.com/ HTTP/2.0\r\n\r\n");
        assert_eq!(e, Error::UnsupportedVersion);
        assert_eq!(e.status(), (505, "HTTP Version Not Supported"));
        assert_eq!(
            error(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Error::UnsupportedVersion
        );
        assert_eq!(
            error(b"GET http://a.com/ HTTP/1.2\r\n\r\n"),
            Error::UnsupportedVersion
        );
        // Known as soon as the differing byte arrives.
        assert_eq!(error(b"PRI * HTTP/2"), Error::UnsupportedVersion);
    }

    #[test]
    fn rejects_garbage_version_as_bad_request() {
        let e = error(b"GET http://a.com/ FOO/1.1\r\n\r\n");
        assert_eq!(e, Error::BadRequestLine);
        assert_eq!(e.status().0, 400);
        assert_eq!(error(b"GET http://a.com/\r\n\r\n"), Error::BadRequestLine);
    }

    #[test]
    fn rejects_oversize_head() {
        let mut bytes = b"GET http://a.com/ HTTP/1.1\r\nX-Big: ".to_vec();
        bytes.resize(DEFAULT_MAX_HEAD_LEN, b'a');
        assert_eq!(
            RequestHead::decode(&bytes[..DEFAULT_MAX_HEAD_LEN - 1]),
            Ok(Decoded::NeedMore(1))
        );
        let e = error(&bytes);
        assert_eq!(e, Error::HeadTooLarge);
        assert_eq!(e.status(), (431, "Request Header Fields Too Large"));
        // The limit is the head, not the buffer: a body may follow.
        let small = b"GET http://a.com/ HTTP/1.1\r\n\r\n";
        let mut with_body = small.to_vec();
        with_body.extend_from_slice(&[b'b'; 100]);
        assert_eq!(
            RequestHead::decode_with_limit(&with_body, small.len()).map(|d| d.is_complete()),
            Ok(true)
        );
        assert_eq!(
            RequestHead::decode_with_limit(&with_body, small.len() - 1),
            Err(Error::HeadTooLarge)
        );
    }

    #[test]
    fn rejects_too_many_headers() {
        let mut bytes = b"GET http://a.com/ HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let e = error(&bytes);
        assert_eq!(e, Error::TooManyHeaders);
        assert_eq!(e.status().0, 431);
    }

    #[test]
    fn rejects_bad_base64_credentials() {
        let e =
            error(b"CONNECT a.com:443 HTTP/1.1\r\nProxy-Authorization: Basic QWxh!ZGRp\r\n\r\n");
        assert_eq!(e, Error::BadCredentials);
        assert_eq!(e.status().0, 400);
    }

    #[test]
    fn rejects_two_proxy_authorization_fields() {
        let e = error(
            b"CONNECT a.com:443 HTTP/1.1\r\n\
              Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\
              proxy-authorization: Basic Og==\r\n\r\n",
        );
        assert_eq!(e, Error::BadCredentials);
    }

    #[test]
    fn rejects_nul_in_host() {
        assert_eq!(
            error(b"CONNECT a\0b.com:443 HTTP/1.1\r\n\r\n"),
            Error::BadRequestLine
        );
        assert_eq!(
            error(b"CONNECT a%00b.com:443 HTTP/1.1\r\n\r\n"),
            Error::InvalidHost
        );
        assert_eq!(
            error(b"GET http://a%00b/ HTTP/1.1\r\n\r\n"),
            Error::InvalidHost
        );
    }

    #[test]
    fn rejects_bad_fields() {
        assert_eq!(
            error(b"GET http://a.com/ HTTP/1.1\r\nBad Name: v\r\n\r\n"),
            Error::BadHeaderName
        );
        assert_eq!(
            error(b"GET http://a.com/ HTTP/1.1\r\nX: a\0b\r\n\r\n"),
            Error::BadHeaderValue
        );
        assert_eq!(
            error(b"GET http://a.com/ HTTP/1.1\rX: y\r\n\r\n"),
            Error::BadLineEnding
        );
        // Obsolete line folding is refused.
        assert_eq!(
            error(b"GET http://a.com/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
            Error::BadHeaderName
        );
    }

    #[test]
    fn rejects_user_info_in_uri() {
        assert_eq!(
            error(b"GET http://u:p@a.com/ HTTP/1.1\r\n\r\n"),
            Error::BadTarget
        );
    }
}
