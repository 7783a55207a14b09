//! The request target of a proxy request (RFC 9112 §3.2): the authority of
//! a CONNECT, or an absolute `http://` URI.
//!
//! Hosts are read strictly (RFC 3986 §3.2.2, narrowed): a dotted-quad IPv4
//! literal, a bracketed IPv6 literal (no zone), or a DNS name of letters,
//! digits, `-`, `.` and `_`. A name whose last label is numeric (`127.1`,
//! `0x7f.1`) but that is not a dotted-quad address is refused, as the URL
//! standard does: resolvers disagree about such names (`inet_aton` reads
//! `127.1` as 127.0.0.1), and an egress policy that looks only at IP
//! literals must not be bypassed with one.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::Error;
use crate::addr::{Address, DomainName, Endpoint};

/// The port of an `http` URI without one (RFC 9110 §4.2.1).
pub const HTTP_DEFAULT_PORT: u16 = 80;

/// Where a proxy request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`: open a tunnel to the endpoint.
    Authority(Endpoint),
    /// `http://host[:port]/path?query`: forward the request to the endpoint
    /// with `path_and_query` as its origin-form target.
    Absolute {
        /// The origin server (port 80 if the URI had none).
        endpoint: Endpoint,
        /// The path and query, starting with `/` (`/` if the URI had no
        /// path), without any `#fragment`.
        path_and_query: String,
    },
}

impl Target {
    /// The endpoint the proxy connects to.
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Self::Authority(e) | Self::Absolute { endpoint: e, .. } => e,
        }
    }

    /// Reads the target of a request with `method`: authority-form for
    /// CONNECT, absolute-form `http://` for every other method.
    pub(crate) fn parse(method: &str, target: &str) -> Result<Self, Error> {
        if method == "CONNECT" {
            // "A CONNECT request ... the request-target consists of only the
            // host name and port number of the tunnel destination" (RFC 9112
            // §3.2.3).
            if target.starts_with('/') || target.contains("://") {
                return Err(Error::BadTarget);
            }
            return parse_authority(target, None).map(Self::Authority);
        }
        if target.starts_with('/') || target == "*" {
            return Err(Error::OriginForm);
        }
        let Some((scheme, rest)) = target.split_once("://") else {
            return Err(Error::BadTarget);
        };
        if !is_scheme(scheme) {
            return Err(Error::BadTarget);
        }
        // "The scheme and host are case-insensitive" (RFC 9110 §4.2.3).
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(Error::UnsupportedScheme);
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at_checked(authority_end).unwrap_or((rest, ""));
        // "A recipient ... SHOULD parse for userinfo and treat its presence
        // as an error" (RFC 9110 §4.2.4).
        if authority.contains('@') {
            return Err(Error::BadTarget);
        }
        let endpoint = parse_authority(authority, Some(HTTP_DEFAULT_PORT))?;
        let path = path.split_once('#').map_or(path, |(p, _)| p);
        let path_and_query = if path.starts_with('/') {
            path.to_owned()
        } else {
            // Empty, or only a query: "If the target URI's path component is
            // empty, the client MUST send "/" as the path" (RFC 9112 §3.2.1).
            format!("/{path}")
        };
        Ok(Self::Absolute {
            endpoint,
            path_and_query,
        })
    }
}

/// Written in proxy form: `host:port` for CONNECT, `http://host[:port]/path`
/// otherwise (port left out when it is 80). IPv6 hosts are bracketed.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authority(e) => write!(f, "{}:{}", Host(&e.addr), e.port),
            Self::Absolute {
                endpoint,
                path_and_query,
            } => write!(f, "http://{}{path_and_query}", HostPort(endpoint)),
        }
    }
}

/// A host as URIs write it: IPv6 in brackets.
pub(crate) struct Host<'a>(pub(crate) &'a Address);

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Address::Ipv6(a) => write!(f, "[{a}]"),
            other => write!(f, "{other}"),
        }
    }
}

/// A `Host` field value for an `http` origin: the port only if it is not 80.
pub(crate) struct HostPort<'a>(pub(crate) &'a Endpoint);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Endpoint { addr, port } = self.0;
        if *port == HTTP_DEFAULT_PORT {
            write!(f, "{}", Host(addr))
        } else {
            write!(f, "{}:{port}", Host(addr))
        }
    }
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 §3.1).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `host [":" port]`; without a port, `default` or [`Error::MissingPort`].
fn parse_authority(s: &str, default: Option<u16>) -> Result<Endpoint, Error> {
    let (addr, port) = if let Some(bracketed) = s.strip_prefix('[') {
        let (literal, after) = bracketed.split_once(']').ok_or(Error::InvalidHost)?;
        let ip: Ipv6Addr = literal.parse().map_err(|_| Error::InvalidHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(Error::InvalidHost)?),
        };
        (Address::Ipv6(ip), port)
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        (parse_host(host)?, port)
    };
    let port = match port {
        // "host:" is allowed by RFC 3986 §3.2.3 ("URI producers ... SHOULD
        // omit the port component and its ':' delimiter if port is empty").
        None | Some("") => default.ok_or(Error::MissingPort)?,
        Some(p) => parse_port(p)?,
    };
    Ok(Endpoint { addr, port })
}

fn parse_port(p: &str) -> Result<u16, Error> {
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidPort);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(Error::InvalidPort),
        Ok(port) => Ok(port),
    }
}

fn parse_host(host: &str) -> Result<Address, Error> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Address::Ipv4(ip));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if host.is_empty() || !host.bytes().all(allowed) || ends_in_number(host) {
        return Err(Error::InvalidHost);
    }
    DomainName::new(host)
        .map(Address::Domain)
        .map_err(|_| Error::InvalidHost)
}

/// The URL standard's "ends in a number": the last label (ignoring one
/// trailing dot) is decimal digits or `0x` and hex digits.
fn ends_in_number(host: &str) -> bool {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or_default();
    if last.is_empty() {
        return false;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(s: &str) -> Address {
        Address::Domain(DomainName::new(s).expect("valid"))
    }

    #[test]
    fn reads_connect_authorities() {
        assert_eq!(
            Target::parse("CONNECT", "example.com:443"),
            Ok(Target::Authority(Endpoint::new(domain("example.com"), 443)))
        );
        assert_eq!(
            Target::parse("CONNECT", "192.0.2.1:8443"),
            Ok(Target::Authority(Endpoint::new(
                Ipv4Addr::new(192, 0, 2, 1),
                8443
            )))
        );
        assert_eq!(
            Target::parse("CONNECT", "[2001:db8::1]:443"),
            Ok(Target::Authority(Endpoint::new(
                "2001:db8::1".parse::<Ipv6Addr>().expect("v6"),
                443
            )))
        );
    }

    #[test]
    fn rejects_connect_without_port() {
        assert_eq!(
            Target::parse("CONNECT", "example.com"),
            Err(Error::MissingPort)
        );
        assert_eq!(
            Target::parse("CONNECT", "example.com:"),
            Err(Error::MissingPort)
        );
        assert_eq!(Target::parse("CONNECT", "[::1]"), Err(Error::MissingPort));
    }

    #[test]
    fn rejects_bad_ports() {
        for p in ["0", "65536", "123456", "-1", "8o", "+80"] {
            assert_eq!(
                Target::parse("CONNECT", &format!("a.com:{p}")),
                Err(Error::InvalidPort),
                "{p}"
            );
        }
    }

    #[test]
    fn rejects_bad_hosts() {
        for h in [
            ":443",
            "::1:443",
            "[::1:443",
            "[::1]x:443",
            "[fe80::1%25eth0]:443",
            "a%2eb:443",
            "a b:443",
            "127.1:80",
            "0x7f.1:80",
            "1.2.3.4.:80",
            "exa\u{e9}mple.com:80",
        ] {
            assert_eq!(Target::parse("CONNECT", h), Err(Error::InvalidHost), "{h}");
        }
        let long = format!("{}:80", "a".repeat(256));
        assert_eq!(Target::parse("CONNECT", &long), Err(Error::InvalidHost));
    }

    #[test]
    fn numeric_labels_are_fine_before_the_last() {
        assert_eq!(
            Target::parse("CONNECT", "1.2.3.example:80"),
            Ok(Target::Authority(Endpoint::new(
                domain("1.2.3.example"),
                80
            )))
        );
    }

    #[test]
    fn reads_absolute_uris() {
        let abs = |host: Address, port, path: &str| Target::Absolute {
            endpoint: Endpoint::new(host, port),
            path_and_query: path.to_owned(),
        };
        assert_eq!(
            Target::parse("GET", "http://example.com/a/b?q=1&r=2"),
            Ok(abs(domain("example.com"), 80, "/a/b?q=1&r=2"))
        );
        assert_eq!(
            Target::parse("GET", "HTTP://example.com:8080"),
            Ok(abs(domain("example.com"), 8080, "/"))
        );
        assert_eq!(
            Target::parse("GET", "http://example.com?x"),
            Ok(abs(domain("example.com"), 80, "/?x"))
        );
        assert_eq!(
            Target::parse("GET", "http://[::1]:81/p#frag"),
            Ok(abs(Address::Ipv6(Ipv6Addr::LOCALHOST), 81, "/p"))
        );
        assert_eq!(
            Target::parse("GET", "http://10.0.0.1:/"),
            Ok(abs(Address::Ipv4(Ipv4Addr::new(10, 0, 0, 1)), 80, "/"))
        );
    }

    #[test]
    fn rejects_wrong_forms_and_schemes() {
        assert_eq!(Target::parse("GET", "/index.html"), Err(Error::OriginForm));
        assert_eq!(Target::parse("OPTIONS", "*"), Err(Error::OriginForm));
        assert_eq!(
            Target::parse("GET", "example.com:80"),
            Err(Error::BadTarget)
        );
        assert_eq!(
            Target::parse("GET", "https://example.com/"),
            Err(Error::UnsupportedScheme)
        );
        assert_eq!(
            Target::parse("GET", "ftp://example.com/"),
            Err(Error::UnsupportedScheme)
        );
        assert_eq!(Target::parse("GET", "1http://x/"), Err(Error::BadTarget));
        assert_eq!(
            Target::parse("GET", "http://user:pw@example.com/"),
            Err(Error::BadTarget)
        );
        assert_eq!(
            Target::parse("GET", "http:///path"),
            Err(Error::InvalidHost)
        );
        assert_eq!(Target::parse("CONNECT", "/x"), Err(Error::BadTarget));
        assert_eq!(
            Target::parse("CONNECT", "http://a.com:443"),
            Err(Error::BadTarget)
        );
    }

    #[test]
    fn displays_proxy_form() {
        let t = Target::Absolute {
            endpoint: Endpoint::new(Ipv6Addr::LOCALHOST, 80),
            path_and_query: "/x?y".into(),
        };
        assert_eq!(t.to_string(), "http://[::1]/x?y");
        let t = Target::Authority(Endpoint::new(domain("a.com"), 443));
        assert_eq!(t.to_string(), "a.com:443");
    }
}
