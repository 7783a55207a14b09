//! Error codes and the Error TLV, type 30 (RFC 8803, spec digest §2.9).
//!
//! ```text
//! | Type=0x1E | Length | Error Code | Value ... (zero-padded to 32 bits) |
//! ```
//!
//! The Value layout depends on the code; [`ErrorTlv`] has one constructor per
//! layout and keeps the Value as written on the wire, padding included, so
//! a decoded Error TLV re-encodes byte for byte. Interpretations the digest
//! recommends (§2.9 "Interpretations of open points"):
//!
//! - codes 0, 32, 33, 64, 65, 96, 97 carry a one-byte Value (1-word TLV);
//!   codes 0 and 33 may carry a list of bytes instead;
//! - codes 1 and 2 echo the received message "shifted by one byte": Value =
//!   one zero byte, then the received Convert message, truncated so the
//!   whole reply stays within 255 words, zero-padded;
//! - code 3 (Missing Cookie) uses the same "first byte zero" layout, followed
//!   by the cookie.

use core::time::Duration;

use super::connect::TcpOptionKind;
use super::error::EncodeError;
use super::header::{HEADER_LEN, MAX_MESSAGE_LEN};
use super::message::Message;
use super::tlv::{Cookie, Tlv};
use crate::codec::{Out, pad4};

crate::code_point! {
    /// The Error Code of an Error TLV (IANA "Convert Errors"; digest §2.9).
    /// 4-31, 34-63, 66-95 and 98-191 are unassigned, 192-255 private use.
    pub struct ErrorCode(u8) {
        /// The peer does not support the message's version; the Value lists
        /// the versions it supports.
        UNSUPPORTED_VERSION = 0,
        /// The message could not be parsed or validated; the Value echoes it.
        MALFORMED_MESSAGE = 1,
        /// A TLV type the converter does not support; the Value echoes the
        /// message.
        UNSUPPORTED_MESSAGE = 2,
        /// The converter requires a Cookie TLV; the Value carries one.
        MISSING_COOKIE = 3,
        /// Not authorized (policy, invalid cookie, disabled hairpinning).
        NOT_AUTHORIZED = 32,
        /// A TCP option in an Extended Connect cannot be used; the Value
        /// lists the option kinds.
        UNSUPPORTED_TCP_OPTION = 33,
        /// The converter lacks resources; the Value is a suggested delay in
        /// seconds (0 = at least 30 s).
        RESOURCE_EXCEEDED = 64,
        /// The converter cannot forward; the Value is a suggested delay as
        /// for [`RESOURCE_EXCEEDED`](Self::RESOURCE_EXCEEDED).
        NETWORK_FAILURE = 65,
        /// The destination answered with RST.
        CONNECTION_RESET = 96,
        /// An ICMP destination unreachable arrived; the Value is its Code.
        DESTINATION_UNREACHABLE = 97,
    }
}

/// The four classes of error codes (digest §2.9 "Error classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 0-31: an invalid message, or a valid one with invalid or unknown TLVs.
    MessageValidation,
    /// 32-63: the client asked for something the converter does not accept.
    ClientSide,
    /// 64-95: a problem on the converter (e.g. lack of resources).
    ConverterSide,
    /// 96-127: the destination could not be reached or reset the connection.
    DestinationServer,
}

impl ErrorCode {
    /// The class of this code, or `None` above 127 (Specification Required
    /// and Private Use ranges, which the spec puts in no class).
    pub fn class(self) -> Option<ErrorClass> {
        match self.0 {
            0..=31 => Some(ErrorClass::MessageValidation),
            32..=63 => Some(ErrorClass::ClientSide),
            64..=95 => Some(ErrorClass::ConverterSide),
            96..=127 => Some(ErrorClass::DestinationServer),
            _ => None,
        }
    }
}

/// Longest Value an Error TLV can have: a message holding only the header
/// and this TLV (Type, Length, Error Code, Value) fills 255 words.
pub const MAX_ERROR_VALUE_LEN: usize = MAX_MESSAGE_LEN - HEADER_LEN - 3;

/// Longest echo of a received message in the Value of codes 1 and 2, after
/// the leading zero byte: 1020 - 4 (header) - 4 (Type, Length, Code, zero).
pub const MAX_ECHO_LEN: usize = MAX_ERROR_VALUE_LEN - 1;

/// Delay a client waits after Resource Exceeded or Network Failure with a
/// Value of zero: "a default delay of at least 30 seconds" (digest §2.9).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(30);

/// An Error TLV: the code and its Value as on the wire (zero-padded so that
/// the TLV ends on a 32-bit boundary; never empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorTlv {
    code: ErrorCode,
    value: Vec<u8>,
}

impl ErrorTlv {
    /// An Error TLV with `value`, zero-padded to the word boundary (an empty
    /// value becomes one zero byte). Fails if the Value would not fit in a
    /// message next to the header ([`MAX_ERROR_VALUE_LEN`]).
    pub fn new(code: ErrorCode, value: &[u8]) -> Result<Self, EncodeError> {
        if value.len() > MAX_ERROR_VALUE_LEN {
            return Err(EncodeError::ErrorValueTooLong { len: value.len() });
        }
        Ok(Self::padded(code, value.to_vec()))
    }

    /// `value` zero-padded; the caller has checked the length.
    fn padded(code: ErrorCode, mut value: Vec<u8>) -> Self {
        // An empty Value becomes one zero byte: pad4(3) == 1.
        let pad = pad4(3 + value.len());
        value.resize(value.len() + pad, 0);
        Self { code, value }
    }

    /// A one-byte Value.
    fn byte(code: ErrorCode, value: u8) -> Self {
        Self {
            code,
            value: vec![value],
        }
    }

    /// A decoded Error TLV: `value` is the rest of a TLV, so it is already
    /// aligned (length 1 mod 4) and within limits.
    pub(crate) fn from_wire(code: ErrorCode, value: &[u8]) -> Self {
        Self {
            code,
            value: value.to_vec(),
        }
    }

    /// Unsupported Version (0) listing the `versions` the sender supports:
    /// "each version is encoded in 8 bits ... padded with zeros".
    pub fn unsupported_version(versions: &[u8]) -> Result<Self, EncodeError> {
        Self::new(ErrorCode::UNSUPPORTED_VERSION, versions)
    }

    /// Malformed Message (1) echoing `received` (see [`echo_value`]).
    pub fn malformed_message(received: &[u8]) -> Self {
        Self::padded(ErrorCode::MALFORMED_MESSAGE, echo_value(received))
    }

    /// Unsupported Message (2) echoing `received` (see [`echo_value`]).
    pub fn unsupported_message(received: &[u8]) -> Self {
        Self::padded(ErrorCode::UNSUPPORTED_MESSAGE, echo_value(received))
    }

    /// Missing Cookie (3): "The first byte of the value field MUST be set to
    /// zero and the remaining bytes of the Error TLV contain the Cookie
    /// computed by the Transport Converter" (digest §2.9).
    pub fn missing_cookie(cookie: &Cookie) -> Result<Self, EncodeError> {
        let bytes = cookie.as_bytes();
        if bytes.len() > MAX_ECHO_LEN {
            return Err(EncodeError::ErrorValueTooLong {
                len: 1 + bytes.len(),
            });
        }
        let mut value = Vec::with_capacity(1 + bytes.len());
        value.push(0);
        value.extend_from_slice(bytes);
        Ok(Self::padded(ErrorCode::MISSING_COOKIE, value))
    }

    /// Not Authorized (32): "The Value field MUST be set to zero."
    pub fn not_authorized() -> Self {
        Self::byte(ErrorCode::NOT_AUTHORIZED, 0)
    }

    /// Unsupported TCP Option (33) listing `kinds` ("the list of unsupported
    /// TCP options is returned ... MUST be padded with zeros").
    pub fn unsupported_tcp_options(kinds: &[TcpOptionKind]) -> Result<Self, EncodeError> {
        let bytes: Vec<u8> = kinds.iter().map(|k| k.0).collect();
        Self::new(ErrorCode::UNSUPPORTED_TCP_OPTION, &bytes)
    }

    /// Resource Exceeded (64) suggesting a delay in seconds (0 means the
    /// default of at least 30 s).
    pub fn resource_exceeded(delay_secs: u8) -> Self {
        Self::byte(ErrorCode::RESOURCE_EXCEEDED, delay_secs)
    }

    /// Network Failure (65) suggesting a delay in seconds (0 means the
    /// default of at least 30 s).
    pub fn network_failure(delay_secs: u8) -> Self {
        Self::byte(ErrorCode::NETWORK_FAILURE, delay_secs)
    }

    /// Connection Reset (96): "The Value field MUST be set to zero."
    pub fn connection_reset() -> Self {
        Self::byte(ErrorCode::CONNECTION_RESET, 0)
    }

    /// Destination Unreachable (97): "The Value field MUST echo the Code
    /// field of the received ICMP message."
    pub fn destination_unreachable(icmp_code: u8) -> Self {
        Self::byte(ErrorCode::DESTINATION_UNREACHABLE, icmp_code)
    }

    /// The Error Code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The Value as on the wire, padding included (at least one byte).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The first byte of the Value: the one-byte Value of codes 32, 64, 65,
    /// 96 and 97, the first listed item of codes 0 and 33, zero for 1-3.
    pub fn first_value_byte(&self) -> u8 {
        self.value.first().copied().unwrap_or(0)
    }

    /// The Value of a list-carrying code without its zero padding.
    fn list(&self) -> &[u8] {
        let end = self
            .value
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        self.value.get(..end).unwrap_or_default()
    }

    /// The versions an Unsupported Version error lists (padding removed).
    pub fn supported_versions(&self) -> Option<&[u8]> {
        (self.code == ErrorCode::UNSUPPORTED_VERSION).then(|| self.list())
    }

    /// The option kinds an Unsupported TCP Option error lists (padding
    /// removed; kind 0 cannot be listed).
    pub fn unsupported_tcp_option_kinds(&self) -> Option<Vec<TcpOptionKind>> {
        (self.code == ErrorCode::UNSUPPORTED_TCP_OPTION)
            .then(|| self.list().iter().copied().map(TcpOptionKind).collect())
    }

    /// The echoed message of codes 1 and 2 (after the leading zero byte,
    /// padding included).
    pub fn echo(&self) -> Option<&[u8]> {
        matches!(
            self.code,
            ErrorCode::MALFORMED_MESSAGE | ErrorCode::UNSUPPORTED_MESSAGE
        )
        .then(|| self.value.get(1..).unwrap_or_default())
    }

    /// The cookie of a Missing Cookie error: the whole Value after the
    /// leading zero byte, padding included (see [`Cookie`]).
    pub fn cookie(&self) -> Option<Cookie> {
        (self.code == ErrorCode::MISSING_COOKIE)
            .then(|| Cookie::new(self.value.get(1..).unwrap_or_default()))
    }

    /// How long to wait before asking the converter again after Resource
    /// Exceeded or Network Failure: the Value in seconds, or
    /// [`DEFAULT_RETRY_DELAY`] when it is zero (digest §2.9, N28).
    pub fn retry_after(&self) -> Option<Duration> {
        matches!(
            self.code,
            ErrorCode::RESOURCE_EXCEEDED | ErrorCode::NETWORK_FAILURE
        )
        .then(|| match self.first_value_byte() {
            0 => DEFAULT_RETRY_DELAY,
            secs => Duration::from_secs(u64::from(secs)),
        })
    }

    /// The ICMP Code of a Destination Unreachable error.
    pub fn icmp_code(&self) -> Option<u8> {
        (self.code == ErrorCode::DESTINATION_UNREACHABLE).then(|| self.first_value_byte())
    }

    /// The reply message carrying only this TLV.
    pub fn to_message(&self) -> Message {
        Message::from_checked(vec![Tlv::Error(self.clone())])
    }

    /// Writes the whole reply, header and this TLV (at most 1020 bytes), to
    /// be sent in one write before closing (digest §2.9: no immediate RST).
    pub fn encode_reply<B: Out>(&self, buf: &mut B) {
        self.to_message().encode(buf);
    }

    /// The whole reply, header and this TLV, as bytes.
    pub fn reply_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEADER_LEN + 3 + self.value.len());
        self.encode_reply(&mut buf);
        buf
    }
}

/// The Value of an echo (codes 1 and 2), unpadded: one zero byte, then the
/// received Convert message "shifted by one byte to keep the original
/// alignment" (digest §2.9).
///
/// `received` starts at the Convert header; bytes past its Total Length
/// (application data) are never echoed, nor is anything past
/// [`MAX_ECHO_LEN`], so the reply fits 255 words.
pub fn echo_value(received: &[u8]) -> Vec<u8> {
    let message_len = match received.get(1) {
        Some(&words) if words > 0 => usize::from(words) * 4,
        _ => received.len(),
    };
    let len = received.len().min(message_len).min(MAX_ECHO_LEN);
    let mut value = Vec::with_capacity(1 + len);
    value.push(0);
    value.extend_from_slice(received.get(..len).unwrap_or_default());
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoded;
    use crate::convert::testing::{assert_splits, hex};

    /// Decodes a whole reply `bytes` to its only Error TLV, checks the TLV's
    /// bytes, and re-encodes the reply byte for byte.
    fn error_reply(bytes: &[u8]) -> ErrorTlv {
        let Ok(Decoded::Complete { msg, len }) = assert_splits(Message::decode, bytes) else {
            panic!("{bytes:02x?} does not decode");
        };
        assert_eq!(len, bytes.len());
        let [Tlv::Error(e)] = msg.tlvs() else {
            panic!("not a single Error TLV: {msg:?}");
        };
        assert_eq!(e.reply_bytes(), bytes);
        e.clone()
    }

    /// Wraps an Error TLV from the §2.9 table in a header.
    fn wrap(tlv: &str) -> Vec<u8> {
        let tlv = hex(tlv);
        let mut bytes = vec![1, (tlv.len() / 4 + 1) as u8, 0x22, 0x63];
        bytes.extend_from_slice(&tlv);
        bytes
    }

    #[test]
    fn classes_follow_the_four_ranges() {
        let cases = [
            (
                ErrorCode::UNSUPPORTED_VERSION,
                Some(ErrorClass::MessageValidation),
            ),
            (ErrorCode(31), Some(ErrorClass::MessageValidation)),
            (ErrorCode::NOT_AUTHORIZED, Some(ErrorClass::ClientSide)),
            (ErrorCode(63), Some(ErrorClass::ClientSide)),
            (ErrorCode::NETWORK_FAILURE, Some(ErrorClass::ConverterSide)),
            (ErrorCode(95), Some(ErrorClass::ConverterSide)),
            (
                ErrorCode::DESTINATION_UNREACHABLE,
                Some(ErrorClass::DestinationServer),
            ),
            (ErrorCode(127), Some(ErrorClass::DestinationServer)),
            (ErrorCode(128), None),
            (ErrorCode(255), None),
        ];
        for (code, class) in cases {
            assert_eq!(code.class(), class, "{code:?}");
        }
        assert_eq!(format!("{:?}", ErrorCode(0x61)), "DESTINATION_UNREACHABLE");
        assert_eq!(format!("{:?}", ErrorCode(0x62)), "ErrorCode(0x62)");
    }

    #[test]
    fn t7_destination_unreachable() {
        let e = error_reply(&hex("01 02 22 63 1e 01 61 00"));
        assert_eq!(e, ErrorTlv::destination_unreachable(0));
        assert_eq!(e.icmp_code(), Some(0));
    }

    #[test]
    fn t8_malformed_without_echo() {
        // libconvert's test form: a one-byte zero Value, no echo.
        let e = error_reply(&hex("01 02 22 63 1e 01 01 00"));
        assert_eq!(e.code(), ErrorCode::MALFORMED_MESSAGE);
        assert_eq!(e.echo(), Some(&[][..]));
        assert_eq!(e, ErrorTlv::malformed_message(&[]));
    }

    #[test]
    fn t11_unsupported_tcp_ao() {
        let e = error_reply(&hex("01 02 22 63 1e 01 21 1d"));
        assert_eq!(
            e,
            ErrorTlv::unsupported_tcp_options(&[TcpOptionKind::TCP_AO]).unwrap()
        );
        assert_eq!(
            e.unsupported_tcp_option_kinds(),
            Some(vec![TcpOptionKind::TCP_AO])
        );
    }

    #[test]
    fn t12_missing_cookie_carries_the_cookie() {
        let e = error_reply(&hex("01 04 22 63 1e 03 03 00 c0 ff ee 00 11 22 33 44"));
        let cookie = Cookie::new(hex("c0 ff ee 00 11 22 33 44"));
        assert_eq!(e.cookie(), Some(cookie.clone()));
        assert_eq!(e, ErrorTlv::missing_cookie(&cookie).unwrap());
        assert_eq!(e.value(), hex("00 c0 ff ee 00 11 22 33 44"));
    }

    #[test]
    fn missing_cookie_without_cookie_bytes() {
        // libconvert test_cookie_error.
        let e = error_reply(&hex("01 02 22 63 1e 01 03 00"));
        assert_eq!(e.cookie(), Some(Cookie::new([])));
        assert_eq!(e, ErrorTlv::missing_cookie(&Cookie::new([])).unwrap());
    }

    #[test]
    fn t13_unsupported_version_lists_version_1() {
        let e = error_reply(&hex("01 02 22 63 1e 01 00 01"));
        assert_eq!(e, ErrorTlv::unsupported_version(&[1]).unwrap());
        assert_eq!(e.supported_versions(), Some(&[1][..]));
    }

    #[test]
    fn section_2_9_wire_examples() {
        let cases: [(&str, ErrorTlv); 10] = [
            ("1e 01 00 01", ErrorTlv::unsupported_version(&[1]).unwrap()),
            ("1e 01 20 00", ErrorTlv::not_authorized()),
            (
                "1e 01 21 1d",
                ErrorTlv::unsupported_tcp_options(&[TcpOptionKind::TCP_AO]).unwrap(),
            ),
            (
                "1e 02 21 22 1d 00 00 00",
                ErrorTlv::unsupported_tcp_options(&[
                    TcpOptionKind::FAST_OPEN,
                    TcpOptionKind::TCP_AO,
                ])
                .unwrap(),
            ),
            ("1e 01 40 00", ErrorTlv::resource_exceeded(0)),
            ("1e 01 40 3c", ErrorTlv::resource_exceeded(60)),
            ("1e 01 41 00", ErrorTlv::network_failure(0)),
            ("1e 01 60 00", ErrorTlv::connection_reset()),
            ("1e 01 61 01", ErrorTlv::destination_unreachable(1)),
            (
                "1e 03 03 00 c0 ff ee 00 11 22 33 44",
                ErrorTlv::missing_cookie(&Cookie::new(hex("c0 ff ee 00 11 22 33 44"))).unwrap(),
            ),
        ];
        for (tlv, expected) in cases {
            assert_eq!(error_reply(&wrap(tlv)), expected, "{tlv}");
        }
    }

    #[test]
    fn list_forms_read_back_without_padding() {
        let e = error_reply(&wrap("1e 02 21 22 1d 00 00 00"));
        assert_eq!(
            e.unsupported_tcp_option_kinds(),
            Some(vec![TcpOptionKind::FAST_OPEN, TcpOptionKind::TCP_AO])
        );
        assert_eq!(e.value(), hex("22 1d 00 00 00"));
        assert_eq!(e.supported_versions(), None);
    }

    #[test]
    fn retry_delay_defaults_to_30_seconds() {
        assert_eq!(
            ErrorTlv::resource_exceeded(0).retry_after(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            ErrorTlv::network_failure(60).retry_after(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(ErrorTlv::connection_reset().retry_after(), None);
    }

    #[test]
    fn echo_shifts_the_received_message_by_one_byte() {
        let received = hex("01 02 22 63 01 01 00 00");
        let e = ErrorTlv::malformed_message(&received);
        assert_eq!(
            e.reply_bytes(),
            hex("01 04 22 63 1e 03 01 00 01 02 22 63 01 01 00 00")
        );
        assert_eq!(e.echo(), Some(&received[..]));
    }

    #[test]
    fn echo_stops_at_total_length_and_pads() {
        // Total Length 2 words: the application data after it is not echoed.
        let received = hex("01 02 22 63 01 01 00 00 47 45 54");
        assert_eq!(echo_value(&received), hex("00 01 02 22 63 01 01 00 00"));
        // A partial header is echoed as received and padded.
        let e = ErrorTlv::unsupported_message(&hex("01 02 00"));
        assert_eq!(e.value(), hex("00 01 02 00 00"));
    }

    #[test]
    fn echo_is_truncated_to_fit_255_words() {
        let mut received = hex("01 ff 22 63");
        received.resize(MAX_MESSAGE_LEN, 0xab);
        let bytes = ErrorTlv::malformed_message(&received).reply_bytes();
        assert_eq!(bytes.len(), MAX_MESSAGE_LEN);
        assert_eq!(&bytes[..8], hex("01 ff 22 63 1e fe 01 00"));
        assert_eq!(&bytes[8..], &received[..MAX_ECHO_LEN]);
    }

    #[test]
    fn rejects_values_that_cannot_fit_a_message() {
        assert!(ErrorTlv::new(ErrorCode(200), &[7; MAX_ERROR_VALUE_LEN]).is_ok());
        assert_eq!(
            ErrorTlv::new(ErrorCode(200), &[7; MAX_ERROR_VALUE_LEN + 1]),
            Err(EncodeError::ErrorValueTooLong {
                len: MAX_ERROR_VALUE_LEN + 1
            })
        );
        let big = Cookie::new(vec![1; MAX_ECHO_LEN + 4]);
        assert!(ErrorTlv::missing_cookie(&big).is_err());
        let max = Cookie::new(vec![1; MAX_ECHO_LEN]);
        assert_eq!(
            ErrorTlv::missing_cookie(&max).unwrap().reply_bytes().len(),
            MAX_MESSAGE_LEN
        );
    }

    #[test]
    fn new_pads_the_value_to_a_word() {
        assert_eq!(ErrorTlv::new(ErrorCode(5), &[]).unwrap().value(), [0]);
        assert_eq!(
            ErrorTlv::new(ErrorCode(5), &[1, 2]).unwrap().value(),
            [1, 2, 0, 0, 0]
        );
        assert_eq!(
            ErrorTlv::new(ErrorCode(5), &[1; 5]).unwrap().value(),
            [1; 5]
        );
    }
}
