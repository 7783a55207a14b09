//! The 0-RTT TCP Convert protocol, RFC 8803.
//!
//! A Convert message is a 4-byte fixed header (Version 1, Total Length in
//! 32-bit words, Magic Number `0x2263`) followed by TLVs; it is the first
//! thing in each direction of the byte stream, and whatever follows its Total
//! Length is application data. The client sends a Connect TLV (and maybe Info
//! and Cookie); the Transport Converter (TC) answers with the header alone,
//! with Extended TCP Header / Supported TCP Extensions TLVs, or with an Error
//! TLV.
//!
//! Decoding happens in two steps. [`Message::decode`] is the structural parse
//! of §2.3 that both sides share: header checks, TLV lengths, duplicates,
//! reserved type 0; unknown TLV types are kept raw. [`Request::from_message`]
//! (converter side) and [`Reply::from_message`] (client side) then apply the
//! rules of each side; [`Request::decode`] and [`Reply::decode`] do both
//! steps at once. Every failure is an [`Error`] whose
//! [`to_error_tlv`](Error::to_error_tlv) says what a converter must answer
//! (an Error TLV, with the echo of the received message for codes 1 and 2),
//! or `None` where the connection must be reset instead. A client resets on
//! every error.
//!
//! Writers are strict: every value that can be encoded is valid by
//! construction ([`Message::new`], [`TcpOption::new`], [`ErrorTlv::new`] and
//! the other constructors check limits and pad values), so
//! [`Message::encode`] cannot fail and never writes more than 1020 bytes.
//!
//! # Layout
//!
//! - [`header`]: the fixed header, its constants, [`DecodeOptions`] (the
//!   draft-era magic `00 00` knob).
//! - [`message`]: [`Message`], the header and its TLVs in wire order.
//! - [`tlv`]: [`TlvType`], [`Tlv`] and the small TLVs (Info, Extended TCP
//!   Header, Supported TCP Extensions, Cookie, unknown types).
//! - [`connect`]: the Connect TLV, its TCP Options field and the destination
//!   address rules.
//! - [`error_code`]: [`ErrorCode`], its classes, and [`ErrorTlv`] with one
//!   constructor per code's Value layout.
//! - [`request`]: [`Request`], the converter's validation of a client
//!   message.
//! - [`reply`]: [`Reply`], the client's validation of a converter message.
//! - [`error`]: [`Error`] (decode and validation failures and their wire
//!   answers) and [`EncodeError`].

pub mod connect;
pub mod error;
pub mod error_code;
pub mod header;
pub mod message;
pub mod reply;
pub mod request;
pub mod tlv;

pub use connect::{Connect, TcpOption, TcpOptionKind};
pub use error::{EncodeError, Error};
pub use error_code::{ErrorClass, ErrorCode, ErrorTlv};
pub use header::{DecodeOptions, MAGIC, MAX_MESSAGE_LEN, VERSION};
pub use message::Message;
pub use reply::Reply;
pub use request::Request;
pub use tlv::{Cookie, ExtendedTcpHeader, SupportedTcpExtensions, Tlv, TlvType, UnknownTlv};

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the unit tests of this module family.

    use std::fmt::Debug;

    use crate::Decoded;

    /// Bytes from a hex string with optional spaces.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(
            digits.len().is_multiple_of(2),
            "odd number of hex digits in {s:?}"
        );
        digits
            .chunks(2)
            .map(|pair| {
                let text = std::str::from_utf8(pair).expect("ASCII");
                u8::from_str_radix(text, 16).expect("hex digit")
            })
            .collect()
    }

    /// Decodes `bytes` whole and split at every byte (every prefix), and
    /// checks what `tests/properties/main.rs::assert_incremental` checks:
    /// a shorter prefix of a complete message needs more (never past the
    /// message end), a longer input gives the same message, and an error is
    /// either the same error or a request for more bytes on every prefix.
    pub(crate) fn assert_splits<T, E>(
        decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
        bytes: &[u8],
    ) -> Result<Decoded<T>, E>
    where
        T: PartialEq + Debug,
        E: PartialEq + Debug,
    {
        let whole = decode(bytes);
        for k in 0..bytes.len() {
            let part = decode(&bytes[..k]);
            match (&whole, &part) {
                (Ok(Decoded::Complete { len, .. }), Ok(Decoded::NeedMore(n))) if k < *len => {
                    assert!(*n >= 1 && k + n <= *len, "prefix {k}: NeedMore({n})");
                }
                (Ok(Decoded::Complete { len, .. }), _) if k < *len => {
                    panic!("prefix {k} of a {len}-byte message gave {part:?}");
                }
                (Ok(Decoded::Complete { .. }), _) => assert_eq!(part, whole, "prefix {k}"),
                (Ok(Decoded::NeedMore(n)), Ok(Decoded::NeedMore(m))) => {
                    assert!(*m >= 1 && k + m <= bytes.len() + n, "prefix {k}");
                }
                (Err(_), Ok(Decoded::NeedMore(m))) => assert!(*m >= 1, "prefix {k}"),
                (Err(e), Err(p)) => assert_eq!(p, e, "prefix {k}"),
                _ => panic!("prefix {k} gave {part:?}, whole gave {whole:?}"),
            }
        }
        // Application data after the message is never read.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(b"GET / HTTP/1.1\r\n");
        if !matches!(whole, Ok(Decoded::NeedMore(_))) {
            assert_eq!(
                decode(&longer),
                whole,
                "trailing application data changed the result"
            );
        }
        whole
    }
}
