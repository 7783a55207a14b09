//! Why an HTTP proxy request head was refused, the status the application
//! gets for it (RFC 9110 §15), and the few fixed responses a proxy writes
//! itself, including the error response that says why with `Proxy-Status`
//! (RFC 9209).

use thiserror::Error;

use crate::codec::{Fail, Out};

/// Why a request head could not be accepted. [`Error::status`] gives the
/// response the application must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Error {
    /// The request line is not `method SP request-target SP HTTP-version`
    /// (bad method token, empty or invalid target, missing version).
    #[error("malformed request line")]
    BadRequestLine,
    /// A header field name is empty or not a token (this includes obsolete
    /// line folding).
    #[error("malformed header field name")]
    BadHeaderName,
    /// A header field value contains a control character.
    #[error("malformed header field value")]
    BadHeaderValue,
    /// A CR not followed by LF.
    #[error("bare CR in the request head")]
    BadLineEnding,
    /// More than [`MAX_HEADERS`](super::MAX_HEADERS) header fields.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The head did not end within the size limit.
    #[error("request head too large")]
    HeadTooLarge,
    /// An HTTP version other than 1.0 and 1.1, including the HTTP/2
    /// connection preface `PRI * HTTP/2.0`.
    #[error("HTTP version not supported")]
    UnsupportedVersion,
    /// An origin-form (`GET /path`) or asterisk-form (`OPTIONS *`) target:
    /// the application spoke to the proxy as if it were the origin server.
    #[error("request target is not in absolute-form: not a proxy request")]
    OriginForm,
    /// An absolute-form target with a scheme other than `http` (`https://`
    /// without CONNECT, `ftp://`, ...). The proxy forwards plain HTTP only;
    /// TLS goes through CONNECT.
    #[error("request target scheme not supported by this proxy")]
    UnsupportedScheme,
    /// The target does not fit the method: CONNECT without an authority-form
    /// target, another method with an authority-form target, user info in an
    /// `http` URI (RFC 9110 §4.2.4), or an otherwise malformed URI.
    #[error("malformed request target")]
    BadTarget,
    /// A CONNECT target without a port.
    #[error("CONNECT target without a port")]
    MissingPort,
    /// A port that is not a number from 1 to 65535.
    #[error("invalid port")]
    InvalidPort,
    /// A host that is not an IPv4 literal, a bracketed IPv6 literal or a
    /// plain DNS name (letters, digits, `-`, `.`, `_`; not ending in a
    /// numeric label unless it is a dotted-quad IPv4 address; at most 255
    /// bytes).
    #[error("invalid host in request target")]
    InvalidHost,
    /// `Proxy-Authorization: Basic` with bad base64, no `:` between user and
    /// password, credentials that are not UTF-8, or more than one
    /// `Proxy-Authorization` field.
    #[error("malformed Basic proxy credentials")]
    BadCredentials,
    /// More than one `Host` field line: "A server MUST respond with a 400
    /// (Bad Request) status code to any HTTP/1.1 request message that lacks
    /// a Host header field and to any request message that contains more
    /// than one Host header field line" (RFC 9112 §3.2).
    #[error("more than one Host header field")]
    DuplicateHost,
    /// A `Content-Length` that is not one decimal number: a value that is
    /// not `1*DIGIT` (or does not fit 64 bits), or several fields (or list
    /// members) with different values. "If a message is received without
    /// Transfer-Encoding and with an invalid Content-Length header field,
    /// then the message framing is invalid and the recipient MUST treat it
    /// as an unrecoverable error ... the server MUST respond with a 400
    /// (Bad Request) status code and then close the connection" (RFC 9112
    /// §6.3, item 5). Repeated identical values are accepted (RFC 9110
    /// §8.6) and forwarded as one field.
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// Both `Transfer-Encoding` and `Content-Length`: "Such a message might
    /// indicate an attempt to perform request smuggling ... and ought to be
    /// handled as an error" (RFC 9112 §6.3, item 3). This proxy relays the
    /// body unchanged, so it cannot drop one and forward the other safely.
    #[error("both Transfer-Encoding and Content-Length")]
    TransferEncodingWithContentLength,
    /// A `Transfer-Encoding` whose final coding is not `chunked`: "If a
    /// Transfer-Encoding header field is present in a request and the
    /// chunked transfer coding is not the final encoding, the message body
    /// length cannot be determined reliably; the server MUST respond with
    /// the 400 (Bad Request) status code and then close the connection"
    /// (RFC 9112 §6.3, item 4).
    #[error("Transfer-Encoding does not end with chunked")]
    BadTransferEncoding,
}

impl Error {
    /// The status code and reason phrase the application must get. Write it
    /// with [`Error::write_response`] and close the connection.
    ///
    /// | Error | Status |
    /// |---|---|
    /// | syntax (`BadRequestLine`, `BadHeaderName`, `BadHeaderValue`, `BadLineEnding`) | 400 Bad Request |
    /// | `TooManyHeaders`, `HeadTooLarge` | 431 Request Header Fields Too Large (RFC 6585 §5) |
    /// | `UnsupportedVersion` (also the HTTP/2 preface) | 505 HTTP Version Not Supported |
    /// | `OriginForm`, `UnsupportedScheme`, `BadTarget`, `MissingPort`, `InvalidPort`, `InvalidHost` | 400 Bad Request |
    /// | `BadCredentials` | 400 Bad Request (RFC 7235 reserves 407 for missing or wrong credentials, not for malformed ones) |
    /// | ambiguous framing (`DuplicateHost`, `BadContentLength`, `TransferEncodingWithContentLength`, `BadTransferEncoding`) | 400 Bad Request (RFC 9112 §3.2, §6.3) |
    ///
    /// An unsupported scheme answers 400 rather than 501: the request is not
    /// one this proxy can serve as written, and clients that meet a 501
    /// sometimes retry the same request.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::TooManyHeaders | Self::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Self::UnsupportedVersion => (505, "HTTP Version Not Supported"),
            Self::BadRequestLine
            | Self::BadHeaderName
            | Self::BadHeaderValue
            | Self::BadLineEnding
            | Self::OriginForm
            | Self::UnsupportedScheme
            | Self::BadTarget
            | Self::MissingPort
            | Self::InvalidPort
            | Self::InvalidHost
            | Self::BadCredentials
            | Self::DuplicateHost
            | Self::BadContentLength
            | Self::TransferEncodingWithContentLength
            | Self::BadTransferEncoding => (400, "Bad Request"),
        }
    }

    /// Writes the response for [`Error::status`] with [`error_response`].
    pub fn write_response<B: Out>(&self, buf: &mut B) {
        let (code, reason) = self.status();
        error_response(code, reason, buf);
    }
}

impl From<Error> for Fail<Error> {
    fn from(e: Error) -> Self {
        Self::Invalid(e)
    }
}

/// Writes a minimal response that ends the exchange:
/// `HTTP/1.1 <code> <reason>\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`.
///
/// Characters of `reason` outside the reason-phrase grammar (RFC 9112 §4:
/// HTAB, SP, VCHAR, obs-text) are left out, so a reason can never end the
/// line early. `code` is written as three digits (it should be 100 to 999).
pub fn error_response<B: Out>(status: u16, reason: &str, buf: &mut B) {
    status_line(status, reason, buf);
    buf.put_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
}

/// A Proxy Error Type (RFC 9209 §2.3): why an intermediary could not
/// produce the response, for the `error` parameter of `Proxy-Status`. An
/// open set: the registered names are constants, others can be made with
/// [`ProxyError::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyError(&'static str);

impl ProxyError {
    /// `dns_timeout` (§2.3.1): no answer in time resolving the next hop.
    pub const DNS_TIMEOUT: Self = Self("dns_timeout");
    /// `dns_error` (§2.3.2): resolving the next hop's name failed.
    pub const DNS_ERROR: Self = Self("dns_error");
    /// `destination_unavailable` (§2.3.4): the next hop is considered
    /// unavailable.
    pub const DESTINATION_UNAVAILABLE: Self = Self("destination_unavailable");
    /// `destination_ip_prohibited` (§2.3.5): the intermediary is not allowed
    /// to connect to the next hop's address.
    pub const DESTINATION_IP_PROHIBITED: Self = Self("destination_ip_prohibited");
    /// `destination_ip_unroutable` (§2.3.6): no route to the next hop's
    /// address.
    pub const DESTINATION_IP_UNROUTABLE: Self = Self("destination_ip_unroutable");
    /// `connection_refused` (§2.3.7): the next hop refused the connection.
    pub const CONNECTION_REFUSED: Self = Self("connection_refused");
    /// `connection_terminated` (§2.3.8): the connection to the next hop
    /// was closed before a complete response.
    pub const CONNECTION_TERMINATED: Self = Self("connection_terminated");
    /// `connection_timeout` (§2.3.9): connecting to the next hop timed
    /// out.
    pub const CONNECTION_TIMEOUT: Self = Self("connection_timeout");
    /// `connection_limit_reached` (§2.3.12): too many connections to the
    /// next hop.
    pub const CONNECTION_LIMIT_REACHED: Self = Self("connection_limit_reached");
    /// `tls_protocol_error` (§2.3.13): TLS with the next hop failed.
    pub const TLS_PROTOCOL_ERROR: Self = Self("tls_protocol_error");
    /// `http_request_denied` (§2.3.17): the intermediary refused the
    /// request.
    pub const HTTP_REQUEST_DENIED: Self = Self("http_request_denied");
    /// `proxy_internal_error` (§2.3.29): an error inside the intermediary
    /// (here: its own next hop answered something it could not use).
    pub const PROXY_INTERNAL_ERROR: Self = Self("proxy_internal_error");
    /// `proxy_configuration_error` (§2.3.30): the intermediary's
    /// configuration is wrong (e.g. credentials its next hop refuses).
    pub const PROXY_CONFIGURATION_ERROR: Self = Self("proxy_configuration_error");

    /// Another type: `name` must be a Structured Field Token (RFC 8941
    /// §3.3.4), or the characters that are not are left out when written.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The registered name.
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// Longest `details` parameter [`proxy_error_response`] writes; longer
/// text is cut (at a character boundary) and ends with `...`.
pub const MAX_PROXY_STATUS_DETAILS: usize = 256;

/// Writes the error response of a proxy that could not reach the target,
/// saying why (RFC 9209):
///
/// ```text
/// HTTP/1.1 502 Bad Gateway
/// Proxy-Status: sixpath; error=dns_error; details="server replied HOST_UNREACHABLE"
/// Content-Type: text/plain; charset=utf-8
/// Content-Length: 58
/// Connection: close
///
/// <body>
/// ```
///
/// `proxy` names the intermediary and `error` is the type, both
/// Structured Field Tokens; `details` becomes a Structured Field String
/// (RFC 8941 §3.3.3: printable ASCII, `"` and `\` escaped; other bytes are
/// written as `?`, and it is cut at [`MAX_PROXY_STATUS_DETAILS`]). `body`
/// is sent as it is, for people reading the response.
pub fn proxy_error_response<B: Out>(
    status: u16,
    reason: &str,
    proxy: &str,
    error: ProxyError,
    details: &str,
    body: &str,
    buf: &mut B,
) {
    status_line(status, reason, buf);
    buf.put_slice(b"Proxy-Status: ");
    put_token(proxy, buf);
    buf.put_slice(b"; error=");
    put_token(error.name(), buf);
    buf.put_slice(b"; details=\"");
    let mut cut = details;
    if details.len() > MAX_PROXY_STATUS_DETAILS {
        let mut end = MAX_PROXY_STATUS_DETAILS - 3;
        while !details.is_char_boundary(end) {
            end -= 1;
        }
        cut = details.get(..end).unwrap_or_default();
    }
    for c in cut.chars() {
        match c {
            '"' | '\\' => {
                buf.put_u8(b'\\');
                buf.put_u8(c as u8);
            }
            ' '..='~' => buf.put_u8(c as u8),
            _ => buf.put_u8(b'?'),
        }
    }
    if cut.len() < details.len() {
        buf.put_slice(b"...");
    }
    buf.put_slice(b"\"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    buf.put_slice(body.len().to_string().as_bytes());
    buf.put_slice(b"\r\nConnection: close\r\n\r\n");
    buf.put_slice(body.as_bytes());
}

/// Writes `token` as a Structured Field Token (RFC 8941 §3.3.4): a letter
/// or `*` first, then tchar, `:` or `/`; other characters are left out.
fn put_token<B: Out>(token: &str, buf: &mut B) {
    let mut first = true;
    for &b in token.as_bytes() {
        let ok = if first {
            b.is_ascii_alphabetic() || b == b'*'
        } else {
            b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b)
        };
        if ok {
            buf.put_u8(b);
            first = false;
        }
    }
}

/// Writes `407 Proxy Authentication Required` with the challenge
/// `Proxy-Authenticate: Basic realm="sixpath"` (RFC 7235 §3.2, RFC 7617).
pub fn proxy_auth_required<B: Out>(buf: &mut B) {
    status_line(407, "Proxy Authentication Required", buf);
    buf.put_slice(
        b"Proxy-Authenticate: Basic realm=\"sixpath\"\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

/// Writes the answer to a successful CONNECT:
/// `HTTP/1.1 200 Connection established\r\n\r\n`. The tunnel starts after it.
pub fn connection_established<B: Out>(buf: &mut B) {
    buf.put_slice(b"HTTP/1.1 200 Connection established\r\n\r\n");
}

fn status_line<B: Out>(status: u16, reason: &str, buf: &mut B) {
    buf.put_slice(b"HTTP/1.1 ");
    let code = status % 1000;
    for digit in [code / 100, code / 10 % 10, code % 10] {
        // A decimal digit: always below 10.
        buf.put_u8(b'0' + digit as u8);
    }
    buf.put_u8(b' ');
    for &b in reason.as_bytes() {
        if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80 {
            buf.put_u8(b);
        }
    }
    buf.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).expect("ASCII")
    }

    #[test]
    fn error_response_is_minimal_and_closes() {
        assert_eq!(
            text(|b| error_response(400, "Bad Request", b)),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            text(|b| Error::HeadTooLarge.write_response(b)),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn error_response_drops_line_breaks_from_reason() {
        assert_eq!(
            text(|b| error_response(502, "Bad\r\nX-Injected: 1", b)),
            "HTTP/1.1 502 BadX-Injected: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn proxy_error_response_says_why_in_proxy_status_and_body() {
        let body = "example.invalid:80: no such host\n";
        let text = text(|b| {
            proxy_error_response(
                502,
                "Bad Gateway",
                "sixpath",
                ProxyError::DNS_ERROR,
                "server replied HOST_UNREACHABLE",
                body,
                b,
            );
        });
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 502 Bad Gateway\r\n\
                 Proxy-Status: sixpath; error=dns_error; details=\"server replied HOST_UNREACHABLE\"\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }

    // RFC 8941 §3.3.3: sf-string is printable ASCII with `"` and `\`
    // escaped; nothing may end the field line.
    #[test]
    fn proxy_status_details_are_a_valid_structured_string() {
        let out = text(|b| {
            proxy_error_response(
                504,
                "Gateway Timeout",
                "six path\r\n",
                ProxyError::CONNECTION_TIMEOUT,
                "a \"quoted\" \\ path\r\nX-Injected: 1 \u{e9}",
                "",
                b,
            );
        });
        let line = out.lines().nth(1).expect("field line");
        assert_eq!(
            line,
            r#"Proxy-Status: sixpath; error=connection_timeout; details="a \"quoted\" \\ path??X-Injected: 1 ?""#
        );
        let long = "x".repeat(1000);
        let out = text(|b| {
            proxy_error_response(502, "Bad Gateway", "p", ProxyError::DNS_ERROR, &long, "", b);
        });
        let line = out.lines().nth(1).expect("field line");
        assert!(line.ends_with(r#"xxx...""#), "{line}");
        assert!(line.len() < MAX_PROXY_STATUS_DETAILS + 60, "{line}");
    }

    #[test]
    fn proxy_auth_required_challenges_basic() {
        assert_eq!(
            text(proxy_auth_required),
            "HTTP/1.1 407 Proxy Authentication Required\r\n\
             Proxy-Authenticate: Basic realm=\"sixpath\"\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn connection_established_has_no_headers() {
        assert_eq!(
            text(connection_established),
            "HTTP/1.1 200 Connection established\r\n\r\n"
        );
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(Error::BadRequestLine.status().0, 400);
        assert_eq!(Error::TooManyHeaders.status().0, 431);
        assert_eq!(Error::UnsupportedVersion.status().0, 505);
        assert_eq!(Error::UnsupportedScheme.status().0, 400);
        assert_eq!(Error::BadCredentials.status().0, 400);
        assert_eq!(Error::DuplicateHost.status().0, 400);
        assert_eq!(Error::BadContentLength.status().0, 400);
        assert_eq!(Error::TransferEncodingWithContentLength.status().0, 400);
        assert_eq!(Error::BadTransferEncoding.status().0, 400);
    }
}
