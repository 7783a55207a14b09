//! Why a Convert message was refused, and what the peer must get for it
//! (RFC 8803, spec digest §2.3, §2.9, §3.3); why a message cannot be built.
//!
//! [`Error::to_error_tlv`] is the one place that maps a failure to the
//! converter's answer, so the server never picks codes itself. A client
//! resets the connection on every error ("Upon reception of an Error TLV, a
//! Client MUST reset", §2.9; duplicates and type 0, §2.3).

use std::net::IpAddr;

use thiserror::Error;

use super::connect::TcpOptionKind;
use super::error_code::ErrorTlv;
use super::header::VERSION;
use super::tlv::TlvType;
use crate::codec::Fail;

/// A Convert message that failed to decode or validate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// Total Length 0 in the fixed header (§2.2).
    #[error("Convert header with Total Length 0")]
    ZeroTotalLength,
    /// The Magic Number is not `0x2263` (nor `0x0000` when draft magic is
    /// accepted).
    #[error("bad Convert magic number {0:#06x}")]
    BadMagic(u16),
    /// A Version other than 1.
    #[error("unsupported Convert version {0}")]
    UnsupportedVersion(u8),
    /// A TLV whose Length is 0.
    #[error("{0:?} TLV with Length 0")]
    ZeroTlvLength(TlvType),
    /// A TLV whose Length runs past the message's Total Length.
    #[error("{0:?} TLV runs past the Total Length")]
    TlvPastTotalLength(TlvType),
    /// A TLV too short for its fixed fields (a Connect below 5 words).
    #[error("{0:?} TLV too short for its fields")]
    TlvTooShort(TlvType),
    /// A TLV type seen twice in one message.
    #[error("duplicate {0:?} TLV")]
    DuplicateTlv(TlvType),
    /// A TLV of the reserved type 0.
    #[error("TLV of the reserved type 0")]
    ReservedTlvType,
    /// A TCP option in a Connect TLV with Length below 2.
    #[error("TCP option {kind} in a Connect TLV with Length {len}")]
    TcpOptionTooShort {
        /// The option Kind.
        kind: u8,
        /// Its Length byte.
        len: u8,
    },
    /// A TCP option running past the end of its Connect TLV.
    #[error("TCP option {kind} runs past its Connect TLV")]
    TcpOptionPastTlv {
        /// The option Kind.
        kind: u8,
    },
    /// Converter side: a TLV type the converter does not accept from a
    /// client (unknown types, and the types only a converter sends).
    #[error("{0:?} TLV not supported in a request")]
    UnsupportedTlv(TlvType),
    /// Converter side: neither a Connect nor an Info TLV.
    #[error("request without a Connect or Info TLV")]
    MissingConnect,
    /// Converter side: a Connect to a loopback, multicast, broadcast or
    /// unspecified address (IPv4-mapped addresses shown unmapped).
    #[error("forbidden Connect destination {0}")]
    ForbiddenDestination(IpAddr),
    /// Converter side: TCP options of an Extended Connect that the converter
    /// does not support (TCP-AO always), in order of appearance, once each.
    #[error("unsupported TCP options {0:?}")]
    UnsupportedTcpOptions(Vec<TcpOptionKind>),
    /// Client side: the converter answered with an Error TLV.
    #[error("the converter refused the connection: {}", .0.code())]
    Refused(ErrorTlv),
    /// Client side: a TLV a converter does not send in a reply.
    #[error("unexpected {0:?} TLV in a converter reply")]
    UnexpectedTlv(TlvType),
}

impl From<Error> for Fail<Error> {
    fn from(e: Error) -> Self {
        Self::Invalid(e)
    }
}

impl Error {
    /// The Error TLV a converter must answer this error with, then close
    /// the connection (FIN, no immediate RST: "The Transport Converter MUST
    /// NOT send a RST immediately after the detection of an error", §2.9),
    /// or `None` where the connection must be reset without a reply.
    ///
    /// `received` is what the client sent, from the first byte of the
    /// Convert header; it is echoed for codes 1 and 2 up to its Total Length
    /// and truncated so the reply fits 255 words (see
    /// [`echo_value`](super::error_code::echo_value)).
    ///
    /// | error | answer |
    /// |---|---|
    /// | `ZeroTotalLength` | `None`: reset ("MUST be reset", §2.2) |
    /// | `BadMagic` | 1 Malformed Message, echo (see below) |
    /// | `UnsupportedVersion` | 0 Unsupported Version, Value `01` (`1e 01 00 01`) |
    /// | `ZeroTlvLength`, `TlvPastTotalLength`, `TlvTooShort`, `TcpOptionTooShort`, `TcpOptionPastTlv` | 1 Malformed Message, echo (digest §2.3 hardening) |
    /// | `DuplicateTlv` | 1 Malformed Message, echo (§2.3, N8) |
    /// | `ReservedTlvType` | 2 Unsupported Message, echo (§2.3, N8) |
    /// | `UnsupportedTlv` | 2 Unsupported Message, echo (§2.3) |
    /// | `MissingConnect` | 1 Malformed Message, echo |
    /// | `ForbiddenDestination` | 1 Malformed Message, echo (§2.6, N12) |
    /// | `UnsupportedTcpOptions` | 33 Unsupported TCP Option listing the kinds (§2.6, N15, N21) |
    /// | `Refused`, `UnexpectedTlv` | `None`: client-side errors, the client resets |
    ///
    /// A bad Magic Number gets Malformed Message rather than a bare reset
    /// (the digest allows either, §2.2): the spec asks the converter to
    /// answer failures with an Error TLV (N9), and the echo shows a
    /// draft-era peer (magic `00 00`) what was wrong. A client receiving a
    /// bad magic resets, like libconvert.
    pub fn to_error_tlv(&self, received: &[u8]) -> Option<ErrorTlv> {
        Some(match self {
            Self::ZeroTotalLength | Self::Refused(_) | Self::UnexpectedTlv(_) => return None,
            // §2.9: the Value "MUST be set to the version supported by the
            // peer". One byte, never too long.
            Self::UnsupportedVersion(_) => ErrorTlv::unsupported_version(&[VERSION]).ok()?,
            Self::BadMagic(_)
            | Self::ZeroTlvLength(_)
            | Self::TlvPastTotalLength(_)
            | Self::TlvTooShort(_)
            | Self::DuplicateTlv(_)
            | Self::TcpOptionTooShort { .. }
            | Self::TcpOptionPastTlv { .. }
            | Self::MissingConnect
            | Self::ForbiddenDestination(_) => ErrorTlv::malformed_message(received),
            Self::ReservedTlvType | Self::UnsupportedTlv(_) => {
                ErrorTlv::unsupported_message(received)
            }
            // At most 256 distinct kinds: always fits.
            Self::UnsupportedTcpOptions(kinds) => ErrorTlv::unsupported_tcp_options(kinds).ok()?,
        })
    }

    /// The whole reply a converter sends for this error (header and Error
    /// TLV, at most 1020 bytes, to be written in one go), or `None` where
    /// the connection must be reset. See [`to_error_tlv`](Self::to_error_tlv).
    pub fn reply_bytes(&self, received: &[u8]) -> Option<Vec<u8>> {
        self.to_error_tlv(received).map(|e| e.reply_bytes())
    }
}

/// A message that cannot be built: it would break a limit or a MUST of the
/// writer. Every constructor that can fail returns this, so a built
/// [`Message`](super::Message) always encodes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The message would be longer than 255 words (1020 bytes).
    #[error("Convert message of {len} bytes exceeds 1020")]
    MessageTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The same TLV type twice ("A given TLV MUST only appear once").
    #[error("duplicate {0:?} TLV")]
    DuplicateTlv(TlvType),
    /// An [`UnknownTlv`](super::UnknownTlv) of type 0 or of a type the RFC
    /// defines.
    #[error("{0:?} is reserved or has its own TLV variant")]
    AssignedTlvType(TlvType),
    /// EOL or NOP in a Connect's TCP Options ("MUST NOT be placed").
    #[error("TCP option {0:?} must not be placed in a Connect TLV")]
    ForbiddenTcpOptionKind(TcpOptionKind),
    /// A TCP option value longer than 253 bytes.
    #[error("TCP option {kind:?} value of {len} bytes exceeds 253")]
    TcpOptionTooLong {
        /// The option Kind.
        kind: TcpOptionKind,
        /// The value's length.
        len: usize,
    },
    /// A kind the Supported TCP Extensions TLV "MUST NOT" list.
    #[error("TCP option {0:?} must not be announced")]
    ForbiddenExtensionKind(TcpOptionKind),
    /// An Error TLV Value that cannot fit a message.
    #[error("Error TLV value of {len} bytes is too long")]
    ErrorValueTooLong {
        /// The value's length.
        len: usize,
    },
    /// A request with neither Connect nor Info.
    #[error("request without a Connect or Info TLV")]
    EmptyRequest,
    /// A Connect to an address a client "MUST NOT" send (N11).
    #[error("forbidden Connect destination {0}")]
    ForbiddenDestination(IpAddr),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Message;
    use crate::convert::error_code::{ErrorCode, MAX_ECHO_LEN};
    use crate::convert::header::MAX_MESSAGE_LEN;
    use crate::convert::testing::hex;

    /// Decodes `received` (which must fail) and returns the error and the
    /// converter's reply.
    fn answer(received: &[u8]) -> (Error, Option<Vec<u8>>) {
        let e = Message::decode(received).expect_err("must fail");
        let reply = e.reply_bytes(received);
        (e, reply)
    }

    #[test]
    fn zero_total_length_is_a_reset_without_reply() {
        let (e, reply) = answer(&hex("01 00 22 63"));
        assert_eq!(e, Error::ZeroTotalLength);
        assert_eq!(reply, None);
    }

    #[test]
    fn version_2_gets_unsupported_version_listing_1() {
        let (e, reply) = answer(&hex("02 01 22 63"));
        assert_eq!(e, Error::UnsupportedVersion(2));
        assert_eq!(reply, Some(hex("01 02 22 63 1e 01 00 01")));
    }

    #[test]
    fn bad_magic_gets_malformed_with_echo() {
        let (e, reply) = answer(&hex("01 02 00 00 01 01"));
        assert_eq!(e, Error::BadMagic(0));
        // Echo of what arrived (6 bytes of the 8 announced), padded.
        assert_eq!(
            reply,
            Some(hex("01 04 22 63 1e 03 01 00 01 02 00 00 01 01 00 00"))
        );
    }

    #[test]
    fn duplicate_connect_gets_malformed_with_echo() {
        let connect = "0a 05 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01";
        let received = hex(&format!("01 0b 22 63 {connect} {connect}"));
        let (e, reply) = answer(&received);
        assert_eq!(e, Error::DuplicateTlv(TlvType::CONNECT));
        let mut expected = hex("01 0d 22 63 1e 0c 01 00");
        expected.extend_from_slice(&received);
        assert_eq!(reply, Some(expected));
    }

    #[test]
    fn tlv_length_zero_and_overrun_get_malformed() {
        let received = hex("01 02 22 63 16 00 00 00");
        let (e, reply) = answer(&received);
        assert_eq!(e, Error::ZeroTlvLength(TlvType::COOKIE));
        assert_eq!(
            reply,
            Some(hex("01 04 22 63 1e 03 01 00 01 02 22 63 16 00 00 00"))
        );

        // Application data after Total Length is not echoed.
        let received = hex("01 02 22 63 16 02 00 00 47 45 54 20");
        let (e, reply) = answer(&received);
        assert_eq!(e, Error::TlvPastTotalLength(TlvType::COOKIE));
        assert_eq!(
            reply,
            Some(hex("01 04 22 63 1e 03 01 00 01 02 22 63 16 02 00 00"))
        );
    }

    #[test]
    fn reserved_type_gets_unsupported_message_with_echo() {
        let received = hex("01 02 22 63 00 01 00 00");
        let (e, reply) = answer(&received);
        assert_eq!(e, Error::ReservedTlvType);
        assert_eq!(
            reply,
            Some(hex("01 04 22 63 1e 03 02 00 01 02 22 63 00 01 00 00"))
        );
    }

    #[test]
    fn unsupported_tcp_options_list_the_kinds() {
        let e = Error::UnsupportedTcpOptions(vec![TcpOptionKind::FAST_OPEN, TcpOptionKind::TCP_AO]);
        assert_eq!(
            e.reply_bytes(&[]),
            Some(hex("01 03 22 63 1e 02 21 22 1d 00 00 00"))
        );
        let all: Vec<_> = (0..=255).map(TcpOptionKind).collect();
        let tlv = Error::UnsupportedTcpOptions(all).to_error_tlv(&[]).unwrap();
        assert_eq!(tlv.code(), ErrorCode::UNSUPPORTED_TCP_OPTION);
    }

    #[test]
    fn client_side_errors_have_no_converter_answer() {
        assert_eq!(
            Error::Refused(ErrorTlv::connection_reset()).to_error_tlv(&[]),
            None
        );
        assert_eq!(Error::UnexpectedTlv(TlvType::INFO).to_error_tlv(&[]), None);
    }

    #[test]
    fn echo_never_exceeds_1020_bytes() {
        let mut received = hex("01 ff 22 63 00 01 00 00");
        received.resize(2000, 0x5a);
        let reply = Error::ReservedTlvType.reply_bytes(&received).unwrap();
        assert_eq!(reply.len(), MAX_MESSAGE_LEN);
        assert_eq!(&reply[8..], &received[..MAX_ECHO_LEN]);
    }

    #[test]
    fn errors_display_their_problem() {
        assert_eq!(
            Error::BadMagic(0).to_string(),
            "bad Convert magic number 0x0000"
        );
        assert_eq!(
            Error::Refused(ErrorTlv::destination_unreachable(1)).to_string(),
            "the converter refused the connection: DESTINATION_UNREACHABLE"
        );
    }
}
