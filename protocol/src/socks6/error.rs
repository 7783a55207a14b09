//! Errors of the SOCKS6 module family and the wire answer each one calls for
//! (spec digest §4.9).
//!
//! Decoders return [`Error`]; a server turns it into what the peer must get
//! with [`Error::response`] and writes that with [`ErrorResponse::encode`],
//! so it never picks reply codes itself.

use thiserror::Error as ThisError;

use super::address::AddressError;
use super::option::{MAX_OPTIONS_LEN, OptionKind};
use super::reply::{AuthReplyType, AuthenticationReply, OperationReply, ReplyCode};
use super::request::{Command, MAX_INITIAL_DATA_LEN};
use super::stack::{Leg, Level};
use crate::addr::Endpoint;
use crate::codec::{Fail, Out};

/// Why a SOCKS6 message or option could not be decoded or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ThisError)]
pub enum Error {
    /// The first byte of a message is not 6.
    #[error("SOCKS version {0} is not 6")]
    UnsupportedVersion(u8),
    /// A Request's command code is none of NOOP, CONNECT, BIND,
    /// UDP ASSOCIATE.
    #[error("command {0} not supported")]
    UnknownCommand(Command),
    /// The address is of an unknown type or is a malformed domain name.
    #[error("bad address: {0}")]
    Address(#[from] AddressError),
    /// Options Length above 16384, or options that would encode longer.
    #[error("options length {0} exceeds {MAX_OPTIONS_LEN}")]
    OptionsTooLong(usize),
    /// Initial Data Length above 16384.
    #[error("initial data length {0} exceeds {MAX_INITIAL_DATA_LEN}")]
    InitialDataTooLong(u16),
    /// An option the spec forbids twice in one message: a second
    /// Authentication Data option for a method, or a Stack option for a
    /// level, code and leg already set (only from [`Options::push`]).
    ///
    /// [`Options::push`]: super::Options::push
    #[error("duplicate {0} option")]
    DuplicateOption(OptionKind),
    /// A Stack option whose leg is not 1–3 or whose level does not fit six
    /// bits (only from [`Options::push`]).
    ///
    /// [`Options::push`]: super::Options::push
    #[error("stack option leg {leg} or level {level} out of range")]
    StackFieldOutOfRange {
        /// The leg.
        leg: Leg,
        /// The level.
        level: Level,
    },
    /// A Session ID that is empty or not a multiple of 4 bytes long.
    #[error("session ID of {0} bytes (must be a non-zero multiple of 4)")]
    SessionIdLength(usize),
    /// An idempotence window size outside 1 to 2^31 − 1.
    #[error("idempotence window size {0} outside 1..2^31")]
    WindowSize(u32),
    /// A username/password sub-negotiation version other than 1.
    #[error("username/password version {0} is not 1")]
    UsernamePasswordVersion(u8),
    /// Username/password authentication data that ends inside a field.
    #[error("truncated username/password authentication data")]
    TruncatedCredentials,
    /// A username or password to send that is empty or longer than 255
    /// bytes.
    #[error("username or password of {0} bytes (must be 1 to 255)")]
    CredentialLength(usize),
}

impl From<Error> for Fail<Error> {
    fn from(e: Error) -> Self {
        Self::Invalid(e)
    }
}

impl From<AddressError> for Fail<Error> {
    fn from(e: AddressError) -> Self {
        Self::Invalid(Error::Address(e))
    }
}

/// What a server must send before closing, after failing to decode a
/// client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorResponse {
    /// The Version Mismatch Reply, the single byte `06`, then close.
    VersionMismatch,
    /// An Authentication Reply of type failure without options
    /// (`06 01 00 00`), then an Operation Reply with this code and bind
    /// address `0.0.0.0:0`, then close.
    Reject(ReplyCode),
    /// An Authentication Reply of type failure without options
    /// (`06 01 00 00`), then close.
    AuthenticationFailure,
    /// Nothing: close the connection.
    Close,
}

impl ErrorResponse {
    /// Writes the bytes the peer must get. The caller then closes,
    /// half-closing first so the peer reads them (spec digest §2.2).
    pub fn encode<B: Out>(&self, buf: &mut B) {
        match self {
            Self::VersionMismatch => super::VersionMismatchReply.encode(buf),
            Self::Reject(code) => {
                AuthenticationReply::new(AuthReplyType::FAILURE).encode(buf);
                OperationReply::new(*code, Endpoint::unspecified()).encode(buf);
            }
            Self::AuthenticationFailure => {
                AuthenticationReply::new(AuthReplyType::FAILURE).encode(buf);
            }
            Self::Close => {}
        }
    }

    /// Bytes [`ErrorResponse::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::VersionMismatch => 1,
            // Authentication Reply (4) + Operation Reply with 0.0.0.0:0 (12).
            Self::Reject(_) => 16,
            Self::AuthenticationFailure => 4,
            Self::Close => 0,
        }
    }
}

impl Error {
    /// What the peer must get when a server fails to decode its Request (or
    /// the username/password data inside it). The mapping follows spec
    /// digest §4.9:
    ///
    /// | error | answer |
    /// |---|---|
    /// | [`UnsupportedVersion`](Self::UnsupportedVersion) | [`VersionMismatch`](ErrorResponse::VersionMismatch): `06`, close ("the proxy replies with one byte, 0x06, and closes", §2.2) |
    /// | [`Address`](Self::Address) with an unsupported address type | [`Reject`](ErrorResponse::Reject)`(ADDRESS_TYPE_NOT_SUPPORTED)` (0x08) |
    /// | [`UnknownCommand`](Self::UnknownCommand) | `Reject(COMMAND_NOT_SUPPORTED)` (0x07, the code the draft gives for commands a proxy does not support) |
    /// | [`Address`](Self::Address), any other (empty name, NUL inside, bad padding, not UTF-8) | `Reject(GENERAL_FAILURE)` (0x01) |
    /// | [`UsernamePasswordVersion`](Self::UsernamePasswordVersion), [`TruncatedCredentials`](Self::TruncatedCredentials), [`CredentialLength`](Self::CredentialLength) | [`AuthenticationFailure`](ErrorResponse::AuthenticationFailure): `06 01 00 00`, close |
    /// | [`OptionsTooLong`](Self::OptionsTooLong), [`InitialDataTooLong`](Self::InitialDataTooLong) | [`Close`](ErrorResponse::Close): "no error code is defined; close" |
    /// | errors only building messages can give ([`DuplicateOption`](Self::DuplicateOption), [`StackFieldOutOfRange`](Self::StackFieldOutOfRange), [`SessionIdLength`](Self::SessionIdLength), [`WindowSize`](Self::WindowSize)) | `Close` |
    ///
    /// A client that fails to decode a reply closes; it has nothing to send.
    pub fn response(&self) -> ErrorResponse {
        match self {
            Self::UnsupportedVersion(_) => ErrorResponse::VersionMismatch,
            Self::UnknownCommand(_) => ErrorResponse::Reject(ReplyCode::COMMAND_NOT_SUPPORTED),
            Self::Address(AddressError::UnsupportedType(_)) => {
                ErrorResponse::Reject(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED)
            }
            Self::Address(_) => ErrorResponse::Reject(ReplyCode::GENERAL_FAILURE),
            Self::UsernamePasswordVersion(_)
            | Self::TruncatedCredentials
            | Self::CredentialLength(_) => ErrorResponse::AuthenticationFailure,
            Self::OptionsTooLong(_)
            | Self::InitialDataTooLong(_)
            | Self::DuplicateOption(_)
            | Self::StackFieldOutOfRange { .. }
            | Self::SessionIdLength(_)
            | Self::WindowSize(_) => ErrorResponse::Close,
        }
    }

    /// The Operation Reply code of [`Error::response`], if it sends one.
    pub fn reply(&self) -> Option<ReplyCode> {
        match self.response() {
            ErrorResponse::Reject(code) => Some(code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{AddressType, DomainError};

    fn wire(r: ErrorResponse) -> Vec<u8> {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        buf
    }

    #[test]
    fn version_mismatch_answers_single_six() {
        let e = Error::UnsupportedVersion(5);
        assert_eq!(e.response(), ErrorResponse::VersionMismatch);
        assert_eq!(e.reply(), None);
        assert_eq!(wire(e.response()), [0x06]);
    }

    #[test]
    fn bad_address_type_answers_auth_failure_then_0x08() {
        let e = Error::Address(AddressError::UnsupportedType(AddressType(0x02)));
        assert_eq!(e.reply(), Some(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED));
        assert_eq!(
            wire(e.response()),
            [6, 1, 0, 0, 6, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn unknown_command_answers_0x07() {
        let e = Error::UnknownCommand(Command(9));
        assert_eq!(e.reply(), Some(ReplyCode::COMMAND_NOT_SUPPORTED));
    }

    #[test]
    fn malformed_domain_answers_general_failure() {
        let e = Error::Address(AddressError::Domain(DomainError::ContainsNul));
        assert_eq!(e.reply(), Some(ReplyCode::GENERAL_FAILURE));
    }

    #[test]
    fn over_limit_lengths_close_silently() {
        for e in [
            Error::OptionsTooLong(16388),
            Error::InitialDataTooLong(16385),
        ] {
            assert_eq!(e.response(), ErrorResponse::Close);
            assert_eq!(e.reply(), None);
            assert!(wire(e.response()).is_empty());
        }
    }

    #[test]
    fn bad_credentials_answer_auth_failure() {
        let e = Error::TruncatedCredentials;
        assert_eq!(e.response(), ErrorResponse::AuthenticationFailure);
        assert_eq!(wire(e.response()), [6, 1, 0, 0]);
    }
}
