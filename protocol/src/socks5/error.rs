//! Why a SOCKS5, RFC 1929 or SOCKS4/4a message was refused, and what the
//! peer must be told (RFC 1928 §3 and §6, RFC 1929 §2, SOCKS4 "Reply").
//!
//! One enum serves the whole family. Each variant belongs to one message, so
//! each has at most one wire answer; the four accessors say which:
//!
//! | variant | answer |
//! |---|---|
//! | [`Error::UnsupportedVersion`] | none: close ([`Error::reply`] is `None`) |
//! | [`Error::NoMethods`] | method selection `05 FF`, then close ([`Error::method_selection`]) |
//! | [`Error::UnsupportedUserPassVersion`], [`Error::EmptyUsername`] | RFC 1929 status `0x01`, then close ([`Error::userpass_status`]) |
//! | [`Error::UnsupportedCommand`] | reply `0x07` [`COMMAND_NOT_SUPPORTED`](ReplyCode::COMMAND_NOT_SUPPORTED) ([`Error::reply`]) |
//! | [`Error::UnsupportedAddressType`] | reply `0x08` [`ADDRESS_TYPE_NOT_SUPPORTED`](ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED) |
//! | [`Error::InvalidDomain`] | reply `0x01` [`GENERAL_SOCKS_SERVER_FAILURE`](ReplyCode::GENERAL_SOCKS_SERVER_FAILURE) |
//! | [`Error::Fragmented`], [`Error::TruncatedDatagram`] (UDP) | none: drop the datagram |
//! | [`Error::UnsupportedSocks4Version`] | none: close |
//! | [`Error::UnsupportedSocks4Command`], [`Error::Socks4UserIdTooLong`], [`Error::InvalidSocks4Hostname`] | SOCKS4 reply 91 ([`Error::socks4_reply`]) |
//! | [`Error::UnsupportedSocks4ReplyVersion`] and decode errors of replies | none: these come from a proxy we are a client of |
//! | constructor errors ([`Error::TooManyMethods`], [`Error::EmptyPassword`], ...) | none: they never come off the wire |

use thiserror::Error;

use crate::addr::{AddressType, DomainError};
use crate::codec::Fail;

use super::method::Method;
use super::reply::ReplyCode;
use super::request::Command;
use super::socks4::{Socks4Command, Socks4ReplyCode};
use super::userpass::UserPassStatus;

/// Why a message of the SOCKS5 family could not be decoded or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Error {
    /// A SOCKS5 message whose VER byte is not 5.
    #[error("SOCKS version {0:#04x}, expected 0x05")]
    UnsupportedVersion(u8),
    /// A method request with NMETHODS 0: the client offers nothing the
    /// server could accept.
    #[error("method request offers no methods")]
    NoMethods,
    /// More than 255 methods given to [`MethodRequest::new`](super::MethodRequest::new).
    #[error("{0} methods offered, at most 255 fit")]
    TooManyMethods(usize),
    /// An RFC 1929 message whose VER byte is not 1.
    #[error("username/password version {0:#04x}, expected 0x01")]
    UnsupportedUserPassVersion(u8),
    /// An RFC 1929 request with ULEN 0.
    #[error("empty username")]
    EmptyUsername,
    /// An empty password given to [`UserPassRequest::new`](super::UserPassRequest::new)
    /// (decoding accepts PLEN 0).
    #[error("empty password")]
    EmptyPassword,
    /// A username longer than 255 bytes given to a constructor.
    #[error("username of {0} bytes, at most 255 fit")]
    UsernameTooLong(usize),
    /// A password longer than 255 bytes given to a constructor.
    #[error("password of {0} bytes, at most 255 fit")]
    PasswordTooLong(usize),
    /// A request whose CMD is not CONNECT, BIND or UDP ASSOCIATE.
    #[error("command {0} not supported")]
    UnsupportedCommand(Command),
    /// An address whose ATYP is not IPv4, domain name or IPv6.
    #[error("address type {0} not supported")]
    UnsupportedAddressType(AddressType),
    /// A domain name that is empty, contains NUL or is not UTF-8.
    #[error("bad domain name: {0}")]
    InvalidDomain(DomainError),
    /// A UDP datagram with FRAG other than 0; fragmentation is not
    /// implemented, so the datagram is dropped (RFC 1928 §7).
    #[error("fragmented UDP datagram (FRAG {0:#04x})")]
    Fragmented(u8),
    /// A UDP datagram that ends inside its header.
    #[error("UDP datagram shorter than its header")]
    TruncatedDatagram,
    /// A SOCKS4 request whose VN byte is not 4.
    #[error("SOCKS4 version {0:#04x}, expected 0x04")]
    UnsupportedSocks4Version(u8),
    /// A SOCKS4 request whose CD is not CONNECT or BIND.
    #[error("SOCKS4 command {0} not supported")]
    UnsupportedSocks4Command(Socks4Command),
    /// A SOCKS4 USERID longer than
    /// [`MAX_USER_ID_LEN`](super::socks4::MAX_USER_ID_LEN): no NUL within
    /// the limit on the wire, or too long for a constructor.
    #[error("SOCKS4 user id longer than 255 bytes")]
    Socks4UserIdTooLong,
    /// A SOCKS4 USERID with a NUL byte inside, given to a constructor.
    #[error("NUL byte inside a SOCKS4 user id")]
    Socks4UserIdContainsNul,
    /// A SOCKS4A hostname that is empty, not UTF-8, or has no NUL within
    /// [`MAX_HOSTNAME_LEN`](super::socks4::MAX_HOSTNAME_LEN) bytes.
    #[error("bad SOCKS4A hostname: {0}")]
    InvalidSocks4Hostname(DomainError),
    /// An IPv6 address given to a SOCKS4 constructor; SOCKS4 carries only
    /// IPv4 addresses and (4a) domain names.
    #[error("SOCKS4 cannot carry an IPv6 address")]
    Socks4Ipv6,
    /// An IPv4 address `0.0.0.x` with `x != 0` given to a SOCKS4
    /// constructor: on the wire it means "a SOCKS4A hostname follows".
    #[error("SOCKS4 destination 0.0.0.x is reserved for SOCKS4A")]
    Socks4ReservedAddress,
    /// A SOCKS4 reply whose VN byte is not 0.
    #[error("SOCKS4 reply version {0:#04x}, expected 0x00")]
    UnsupportedSocks4ReplyVersion(u8),
}

impl Error {
    /// The SOCKS5 reply (RFC 1928 §6) the server must send when decoding a
    /// [`Request`](super::Request) failed with this error, or `None` if it
    /// must close the connection without a reply.
    ///
    /// - [`UnsupportedCommand`](Self::UnsupportedCommand) → `0x07`
    ///   `COMMAND_NOT_SUPPORTED`.
    /// - [`UnsupportedAddressType`](Self::UnsupportedAddressType) → `0x08`
    ///   `ADDRESS_TYPE_NOT_SUPPORTED`.
    /// - [`InvalidDomain`](Self::InvalidDomain) (empty, NUL inside, not
    ///   UTF-8) → `0x01` `GENERAL_SOCKS_SERVER_FAILURE`. The request is
    ///   malformed rather than its target unreachable, so `0x04`
    ///   `HOST_UNREACHABLE` would mislead: no host was tried.
    /// - [`UnsupportedVersion`](Self::UnsupportedVersion) → `None`: the peer
    ///   does not speak SOCKS5, so a SOCKS5 reply means nothing to it. The
    ///   caller's protocol detection normally routes other versions away
    ///   before this decoder sees them.
    /// - Every other variant → `None`: it belongs to another message (see
    ///   [`method_selection`](Self::method_selection),
    ///   [`userpass_status`](Self::userpass_status),
    ///   [`socks4_reply`](Self::socks4_reply)), to a UDP datagram (dropped
    ///   silently), or to a constructor.
    ///
    /// RFC 1928 §6: "When a reply (REP value other than X'00') indicates a
    /// failure, the SOCKS server MUST terminate the TCP connection shortly
    /// after sending the reply."
    pub fn reply(&self) -> Option<ReplyCode> {
        match self {
            Self::UnsupportedCommand(_) => Some(ReplyCode::COMMAND_NOT_SUPPORTED),
            Self::UnsupportedAddressType(_) => Some(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED),
            Self::InvalidDomain(_) => Some(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE),
            _ => None,
        }
    }

    /// The method selection the server must send when decoding a
    /// [`MethodRequest`](super::MethodRequest) failed with this error, before
    /// closing the connection; `None` means close without one.
    ///
    /// - [`NoMethods`](Self::NoMethods) (NMETHODS 0) →
    ///   [`Method::NO_ACCEPTABLE_METHODS`] (`05 FF`). RFC 1928 §3: "If the
    ///   selected METHOD is X'FF', none of the methods listed by the client
    ///   are acceptable, and the client MUST close the connection." The
    ///   server closes too.
    /// - [`UnsupportedVersion`](Self::UnsupportedVersion) and everything
    ///   else → `None`.
    pub fn method_selection(&self) -> Option<Method> {
        match self {
            Self::NoMethods => Some(Method::NO_ACCEPTABLE_METHODS),
            _ => None,
        }
    }

    /// The RFC 1929 status the server must send when decoding a
    /// [`UserPassRequest`](super::UserPassRequest) failed with this error;
    /// `None` means close without one.
    ///
    /// - [`UnsupportedUserPassVersion`](Self::UnsupportedUserPassVersion) and
    ///   [`EmptyUsername`](Self::EmptyUsername) → [`UserPassStatus::FAILURE`]
    ///   (`01 01`). The client already chose method 0x02 in SOCKS5, so a
    ///   failure status is an answer it understands. RFC 1929 §2: "If the
    ///   server returns a 'failure' (STATUS value other than X'00') status,
    ///   it MUST close the connection."
    /// - Everything else → `None`.
    pub fn userpass_status(&self) -> Option<UserPassStatus> {
        match self {
            Self::UnsupportedUserPassVersion(_) | Self::EmptyUsername => {
                Some(UserPassStatus::FAILURE)
            }
            _ => None,
        }
    }

    /// The SOCKS4 reply code the server must send when decoding a
    /// [`Socks4Request`](super::Socks4Request) failed with this error, or
    /// `None` if it must close the connection without a reply.
    ///
    /// - [`UnsupportedSocks4Command`](Self::UnsupportedSocks4Command),
    ///   [`Socks4UserIdTooLong`](Self::Socks4UserIdTooLong),
    ///   [`InvalidSocks4Hostname`](Self::InvalidSocks4Hostname) → 91
    ///   [`Socks4ReplyCode::REJECTED_OR_FAILED`], the only failure code that
    ///   is not about identd.
    /// - [`UnsupportedSocks4Version`](Self::UnsupportedSocks4Version) and
    ///   everything else → `None`.
    pub fn socks4_reply(&self) -> Option<Socks4ReplyCode> {
        match self {
            Self::UnsupportedSocks4Command(_)
            | Self::Socks4UserIdTooLong
            | Self::InvalidSocks4Hostname(_) => Some(Socks4ReplyCode::REJECTED_OR_FAILED),
            _ => None,
        }
    }
}

impl From<Error> for Fail<Error> {
    fn from(e: Error) -> Self {
        Self::Invalid(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_at_most_one_wire_answer() {
        let all = [
            Error::UnsupportedVersion(4),
            Error::NoMethods,
            Error::TooManyMethods(256),
            Error::UnsupportedUserPassVersion(5),
            Error::EmptyUsername,
            Error::EmptyPassword,
            Error::UsernameTooLong(256),
            Error::PasswordTooLong(256),
            Error::UnsupportedCommand(Command(9)),
            Error::UnsupportedAddressType(AddressType(2)),
            Error::InvalidDomain(DomainError::Empty),
            Error::Fragmented(1),
            Error::TruncatedDatagram,
            Error::UnsupportedSocks4Version(5),
            Error::UnsupportedSocks4Command(Socks4Command(3)),
            Error::Socks4UserIdTooLong,
            Error::Socks4UserIdContainsNul,
            Error::InvalidSocks4Hostname(DomainError::TooLong),
            Error::Socks4Ipv6,
            Error::Socks4ReservedAddress,
            Error::UnsupportedSocks4ReplyVersion(4),
        ];
        for e in all {
            let answers = usize::from(e.reply().is_some())
                + usize::from(e.method_selection().is_some())
                + usize::from(e.userpass_status().is_some())
                + usize::from(e.socks4_reply().is_some());
            assert!(answers <= 1, "{e:?} has {answers} answers");
        }
    }

    #[test]
    fn request_errors_map_to_rfc_1928_replies() {
        assert_eq!(
            Error::UnsupportedCommand(Command(4)).reply(),
            Some(ReplyCode::COMMAND_NOT_SUPPORTED)
        );
        assert_eq!(
            Error::UnsupportedAddressType(AddressType(2)).reply(),
            Some(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED)
        );
        assert_eq!(
            Error::InvalidDomain(DomainError::NotUtf8).reply(),
            Some(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE)
        );
        assert_eq!(Error::UnsupportedVersion(4).reply(), None);
        assert_eq!(Error::Fragmented(1).reply(), None);
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            Error::UnsupportedCommand(Command(9)).to_string(),
            "command Command(0x09) not supported"
        );
        assert_eq!(
            Error::UnsupportedVersion(4).to_string(),
            "SOCKS version 0x04, expected 0x05"
        );
    }
}
