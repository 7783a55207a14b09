//! Why a connection through the server failed, and what each application
//! protocol answers for it. This is the one table behind every error reply
//! the client writes (README "Error mapping"):
//!
//! | cause | SOCKS6 | SOCKS5 REP | SOCKS4 | HTTP |
//! |---|---|---|---|---|
//! | general failure, bad server reply, server refused our credentials | 0x01 | 0x01 | 0x5B | 502 |
//! | not allowed (SOCKS6 0x02, Convert 32 Not Authorized) | 0x02 | 0x02 | 0x5B | 403 |
//! | network unreachable (SOCKS6 0x03) | 0x03 | 0x03 | 0x5B | 502 |
//! | host unreachable (SOCKS6 0x04, Convert 97, DNS failure) | 0x04 | 0x04 | 0x5B | 502 |
//! | connection refused (SOCKS6 0x05, Convert 96, server port closed) | 0x05 | 0x05 | 0x5B | 502 |
//! | TTL expired (SOCKS6 0x06) | 0x06 | 0x06 | 0x5B | 502 |
//! | command not supported (SOCKS6 0x07) | 0x07 | 0x07 | 0x5B | 502 |
//! | address type not supported (SOCKS6 0x08) | 0x08 | 0x08 | 0x5B | 502 |
//! | timed out (SOCKS6 0x09, no answer from the server in time) | 0x09 | 0x04 | 0x5B | 504 |
//! | server overloaded (Convert 64 Resource Exceeded, 65 Network Failure) | 0x01 | 0x01 | 0x5B | 503 |
//!
//! SOCKS5 has no "timed out" code; like the server, the client answers a
//! timeout with host unreachable (0x04).
//!
//! HTTP error responses also say why, in a `Proxy-Status` field (RFC 9209)
//! and a one-line body: [`Failure::proxy_error`] picks the RFC 9209 §2.3
//! type.
//!
//! [`Fault`] says where the failure lies as far as the server connection
//! is concerned; it decides whether early replies go on (see
//! [`crate::upstream::Health`]).

use std::io;

use sixpath_protocol::convert::{ErrorCode, ErrorTlv};
use sixpath_protocol::http::ProxyError;
use sixpath_protocol::socks6::ReplyCode;
use sixpath_protocol::{Address, Endpoint, socks5};

/// The class of a failure, independent of the protocols on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything without a better code.
    General,
    /// A policy refused the connection.
    NotAllowed,
    /// No route to the network.
    NetworkUnreachable,
    /// The host cannot be reached (or its name not resolved).
    HostUnreachable,
    /// A reset answered the connection attempt.
    Refused,
    /// TTL expired on the way.
    TtlExpired,
    /// The server does not support the command.
    CommandNotSupported,
    /// The server does not support the address type.
    AddressTypeNotSupported,
    /// No answer in time.
    TimedOut,
    /// The server is overloaded or cannot forward now.
    Unavailable,
}

/// Where a failure lies, as far as the connection to the server goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// The server answered: the target failed, or the server refused the
    /// request (policy, session, token), or the client could not build it.
    #[default]
    Target,
    /// The server could not be reached, or did not answer in time.
    Unreachable,
    /// The server refused the client's credentials (or wants some).
    AuthRefused,
    /// The server was reached but the exchange broke: it closed without a
    /// reply, its reply does not decode, or the TLS handshake failed.
    Protocol,
}

/// A failure and the words for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its class.
    pub kind: Kind,
    /// What happened, for the log.
    pub detail: String,
    /// Where it lies.
    pub fault: Fault,
}

impl Failure {
    /// A failure of class `kind`, the target's (see [`Fault`]).
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            fault: Fault::Target,
        }
    }

    /// The same failure, with fault `fault`.
    #[must_use]
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// A failure reaching the server.
    pub fn server(e: &io::Error, server: &str) -> Self {
        let kind = match e.raw_os_error() {
            Some(libc::ECONNREFUSED | libc::ECONNRESET) => Kind::Refused,
            Some(libc::ENETUNREACH) => Kind::NetworkUnreachable,
            Some(libc::EHOSTUNREACH | libc::EHOSTDOWN | libc::EADDRNOTAVAIL) => {
                Kind::HostUnreachable
            }
            Some(libc::ETIMEDOUT) => Kind::TimedOut,
            _ if e.kind() == io::ErrorKind::TimedOut => Kind::TimedOut,
            _ => Kind::General,
        };
        Self {
            kind,
            detail: format!("server {server}: {e}"),
            fault: Fault::Unreachable,
        }
    }

    /// The server did not answer in time.
    pub fn server_timeout(server: &str, what: &str) -> Self {
        Self {
            kind: Kind::TimedOut,
            detail: format!("server {server}: no {what} in time"),
            fault: Fault::Unreachable,
        }
    }

    /// The class of a SOCKS6 Operation Reply code.
    pub fn from_socks6(code: ReplyCode) -> Self {
        let kind = match code {
            ReplyCode::CONNECTION_NOT_ALLOWED => Kind::NotAllowed,
            ReplyCode::NETWORK_UNREACHABLE => Kind::NetworkUnreachable,
            ReplyCode::HOST_UNREACHABLE => Kind::HostUnreachable,
            ReplyCode::CONNECTION_REFUSED => Kind::Refused,
            ReplyCode::TTL_EXPIRED => Kind::TtlExpired,
            ReplyCode::COMMAND_NOT_SUPPORTED => Kind::CommandNotSupported,
            ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED => Kind::AddressTypeNotSupported,
            ReplyCode::CONNECTION_TIMED_OUT => Kind::TimedOut,
            _ => Kind::General,
        };
        Self::new(kind, format!("server replied {code:?}"))
    }

    /// The class of a converter's Error TLV.
    pub fn from_convert(e: &ErrorTlv) -> Self {
        let kind = match e.code() {
            ErrorCode::NOT_AUTHORIZED => Kind::NotAllowed,
            ErrorCode::CONNECTION_RESET => Kind::Refused,
            ErrorCode::DESTINATION_UNREACHABLE => {
                if e.icmp_code() == Some(0) {
                    Kind::NetworkUnreachable
                } else {
                    Kind::HostUnreachable
                }
            }
            ErrorCode::RESOURCE_EXCEEDED | ErrorCode::NETWORK_FAILURE => Kind::Unavailable,
            _ => Kind::General,
        };
        Self::new(kind, format!("converter replied Error {:?}", e.code()))
    }

    /// The SOCKS6 Operation Reply code for it.
    pub fn socks6(&self) -> ReplyCode {
        match self.kind {
            Kind::General | Kind::Unavailable => ReplyCode::GENERAL_FAILURE,
            Kind::NotAllowed => ReplyCode::CONNECTION_NOT_ALLOWED,
            Kind::NetworkUnreachable => ReplyCode::NETWORK_UNREACHABLE,
            Kind::HostUnreachable => ReplyCode::HOST_UNREACHABLE,
            Kind::Refused => ReplyCode::CONNECTION_REFUSED,
            Kind::TtlExpired => ReplyCode::TTL_EXPIRED,
            Kind::CommandNotSupported => ReplyCode::COMMAND_NOT_SUPPORTED,
            Kind::AddressTypeNotSupported => ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED,
            Kind::TimedOut => ReplyCode::CONNECTION_TIMED_OUT,
        }
    }

    /// The SOCKS5 REP code for it (RFC 1928 §6).
    pub fn socks5(&self) -> socks5::ReplyCode {
        match self.kind {
            Kind::TimedOut => socks5::ReplyCode::HOST_UNREACHABLE,
            _ => socks5::ReplyCode(self.socks6().0),
        }
    }

    /// The HTTP status and reason phrase for it.
    pub fn http(&self) -> (u16, &'static str) {
        match self.kind {
            Kind::NotAllowed => (403, "Forbidden"),
            Kind::TimedOut => (504, "Gateway Timeout"),
            Kind::Unavailable => (503, "Service Unavailable"),
            _ => (502, "Bad Gateway"),
        }
    }

    /// The RFC 9209 §2.3 Proxy Error Type of a failure to reach `target`.
    /// Towards the target, the server's reply code decides; a name the
    /// server answered "host unreachable" for is a `dns_error` (the
    /// server answers a name that does not resolve so, and SOCKS6 has no
    /// code of its own for it). When the server itself failed, the type
    /// says what went wrong with it, this client's next hop.
    pub fn proxy_error(&self, target: &Endpoint) -> ProxyError {
        match self.fault {
            Fault::Target => match self.kind {
                Kind::HostUnreachable if matches!(target.addr, Address::Domain(_)) => {
                    ProxyError::DNS_ERROR
                }
                Kind::HostUnreachable | Kind::NetworkUnreachable | Kind::TtlExpired => {
                    ProxyError::DESTINATION_IP_UNROUTABLE
                }
                Kind::Refused => ProxyError::CONNECTION_REFUSED,
                Kind::TimedOut => ProxyError::CONNECTION_TIMEOUT,
                Kind::NotAllowed => ProxyError::DESTINATION_IP_PROHIBITED,
                Kind::Unavailable => ProxyError::CONNECTION_LIMIT_REACHED,
                Kind::CommandNotSupported | Kind::AddressTypeNotSupported => {
                    ProxyError::PROXY_INTERNAL_ERROR
                }
                Kind::General => ProxyError::DESTINATION_UNAVAILABLE,
            },
            Fault::Unreachable => match self.kind {
                Kind::Refused => ProxyError::CONNECTION_REFUSED,
                Kind::TimedOut => ProxyError::CONNECTION_TIMEOUT,
                Kind::HostUnreachable | Kind::NetworkUnreachable => {
                    ProxyError::DESTINATION_IP_UNROUTABLE
                }
                _ => ProxyError::DESTINATION_UNAVAILABLE,
            },
            Fault::AuthRefused => ProxyError::PROXY_CONFIGURATION_ERROR,
            Fault::Protocol if self.detail.starts_with(crate::upstream::TLS_FAILURE) => {
                ProxyError::TLS_PROTOCOL_ERROR
            }
            Fault::Protocol => ProxyError::CONNECTION_TERMINATED,
        }
    }

    /// The HTTP error response for a failure to reach `target`: the status
    /// of [`Failure::http`], `Proxy-Status` with [`Failure::proxy_error`]
    /// and the detail, and a one-line body saying the same to a person.
    pub fn http_response(&self, target: &Endpoint) -> Vec<u8> {
        let (code, reason) = self.http();
        let error = self.proxy_error(target);
        let body = format!(
            "sixpath-client could not connect to {target}: {} ({}).\n",
            self.detail,
            error.name()
        );
        let mut out = Vec::with_capacity(256 + 2 * self.detail.len());
        sixpath_protocol::http::proxy_error_response(
            code,
            reason,
            PROXY_NAME,
            error,
            &self.detail,
            &body,
            &mut out,
        );
        out
    }
}

/// How the client names itself in `Proxy-Status`.
pub const PROXY_NAME: &str = "sixpath";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_server_maps_to_socks5_refused_and_http_502() {
        let f = Failure::server(
            &io::Error::from_raw_os_error(libc::ECONNREFUSED),
            "198.18.0.1:1",
        );
        assert_eq!(f.fault, Fault::Unreachable);
        assert_eq!(f.socks5(), socks5::ReplyCode::CONNECTION_REFUSED);
        assert_eq!(f.http().0, 502);
    }

    #[test]
    fn timeout_maps_to_socks5_host_unreachable_and_http_504() {
        let f = Failure::from_socks6(ReplyCode::CONNECTION_TIMED_OUT);
        assert_eq!(f.socks5(), socks5::ReplyCode::HOST_UNREACHABLE);
        assert_eq!(f.socks6(), ReplyCode::CONNECTION_TIMED_OUT);
        assert_eq!(f.http().0, 504);
    }

    #[test]
    fn socks6_codes_pass_through_to_socks5() {
        for c in 1..=8u8 {
            let f = Failure::from_socks6(ReplyCode(c));
            assert_eq!(f.socks5().0, c, "code {c}");
        }
        assert_eq!(Failure::from_socks6(ReplyCode(0x42)).socks5().0, 0x01);
        assert_eq!(
            Failure::from_socks6(ReplyCode::CONNECTION_NOT_ALLOWED)
                .http()
                .0,
            403
        );
    }

    #[test]
    fn http_failures_carry_the_rfc_9209_error_type() {
        let name = Endpoint::new(
            Address::Domain(sixpath_protocol::DomainName::new("typo.invalid").unwrap()),
            80,
        );
        let ip = Endpoint::new(std::net::Ipv4Addr::new(192, 0, 2, 7), 80);
        let cases = [
            (
                Failure::from_socks6(ReplyCode::HOST_UNREACHABLE),
                &name,
                "dns_error",
                502,
            ),
            (
                Failure::from_socks6(ReplyCode::HOST_UNREACHABLE),
                &ip,
                "destination_ip_unroutable",
                502,
            ),
            (
                Failure::from_socks6(ReplyCode::CONNECTION_REFUSED),
                &ip,
                "connection_refused",
                502,
            ),
            (
                Failure::from_socks6(ReplyCode::CONNECTION_TIMED_OUT),
                &name,
                "connection_timeout",
                504,
            ),
            (
                Failure::from_socks6(ReplyCode::CONNECTION_NOT_ALLOWED),
                &ip,
                "destination_ip_prohibited",
                403,
            ),
            (
                Failure::from_socks6(ReplyCode::NETWORK_UNREACHABLE),
                &name,
                "destination_ip_unroutable",
                502,
            ),
            (
                Failure::server(
                    &io::Error::from_raw_os_error(libc::ECONNREFUSED),
                    "198.18.0.1:1",
                ),
                &name,
                "connection_refused",
                502,
            ),
            (
                Failure::server_timeout("198.18.0.1:1", "reply"),
                &name,
                "connection_timeout",
                504,
            ),
            (
                Failure::new(Kind::General, "refused").with_fault(Fault::AuthRefused),
                &name,
                "proxy_configuration_error",
                502,
            ),
            (
                Failure::new(Kind::General, "closed").with_fault(Fault::Protocol),
                &name,
                "connection_terminated",
                502,
            ),
        ];
        for (f, target, error, status) in cases {
            assert_eq!(f.proxy_error(target).name(), error, "{f:?}");
            let text = String::from_utf8(f.http_response(target)).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(
                text.contains(&format!(
                    "\r\nProxy-Status: sixpath; error={error}; details=\"{}\"\r\n",
                    f.detail
                )),
                "{text}"
            );
            assert!(
                text.ends_with(&format!(
                    "\r\n\r\nsixpath-client could not connect to {target}: {} ({error}).\n",
                    f.detail
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn convert_errors_map_to_app_errors() {
        let cases = [
            (ErrorTlv::not_authorized(), 0x02, 403),
            (ErrorTlv::connection_reset(), 0x05, 502),
            (ErrorTlv::destination_unreachable(1), 0x04, 502),
            (ErrorTlv::destination_unreachable(0), 0x03, 502),
            (ErrorTlv::resource_exceeded(0), 0x01, 503),
            (ErrorTlv::network_failure(0), 0x01, 503),
            (ErrorTlv::malformed_message(&[1, 1, 0x22, 0x63]), 0x01, 502),
        ];
        for (tlv, rep, status) in cases {
            let f = Failure::from_convert(&tlv);
            assert_eq!(f.socks5().0, rep, "{tlv:?}");
            assert_eq!(f.http().0, status, "{tlv:?}");
        }
    }
}
