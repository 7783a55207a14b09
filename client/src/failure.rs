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

use std::io;

use sixpath_protocol::convert::{ErrorCode, ErrorTlv};
use sixpath_protocol::socks5;
use sixpath_protocol::socks6::ReplyCode;

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

/// A failure and the words for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its class.
    pub kind: Kind,
    /// What happened, for the log.
    pub detail: String,
    /// True when the server itself could not be reached or misbehaved (as
    /// opposed to the server reporting a failure towards the target).
    pub server_fault: bool,
}

impl Failure {
    /// A failure of class `kind`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            server_fault: false,
        }
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
            server_fault: true,
        }
    }

    /// The server did not answer in time.
    pub fn server_timeout(server: &str, what: &str) -> Self {
        Self {
            kind: Kind::TimedOut,
            detail: format!("server {server}: no {what} in time"),
            server_fault: true,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_server_maps_to_socks5_refused_and_http_502() {
        let f = Failure::server(
            &io::Error::from_raw_os_error(libc::ECONNREFUSED),
            "198.18.0.1:1",
        );
        assert!(f.server_fault);
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
