//! A converter's Convert message as a client validates it (RFC 8803, spec
//! digest §2.3, §2.5, §2.7, §2.9, §5.1).
//!
//! On success the converter's byte stream starts with at least the header
//! `01 01 22 63`, maybe with Extended TCP Header and Supported TCP
//! Extensions TLVs. On top of the structural parse of [`Message`], a client:
//!
//! - fails with [`Error::Refused`] on any Error TLV ("Upon reception of an
//!   Error TLV, a Client MUST reset the associated connection", §2.9);
//! - fails with [`Error::UnexpectedTlv`] on a type other than Extended TCP
//!   Header (0x14), Supported TCP Extensions (0x15), Error (0x1E) and Cookie
//!   (0x16; libconvert accepts it in replies, so it is tolerated and kept).
//!   Info, Connect (incoming connections are not supported) and unknown
//!   types are refused: a client that cannot process a TLV resets (§2.3).
//!
//! Every error means reset; duplicates and type 0 are already refused by
//! [`Message::decode`] ("A Client ... MUST reset", §2.3, N7).

use super::error::{EncodeError, Error};
use super::header::DecodeOptions;
use super::message::Message;
use super::tlv::{Cookie, ExtendedTcpHeader, SupportedTcpExtensions, Tlv};
use crate::Decoded;
use crate::codec::Out;

/// A converter's success reply, as a client sees it. The default is the
/// header-only reply `01 01 22 63`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Reply {
    /// The options of the destination's SYN+ACK (required after an
    /// Extended Connect, N17).
    pub extended_tcp_header: Option<ExtendedTcpHeader>,
    /// The converter's capabilities (the answer to Info).
    pub supported_tcp_extensions: Option<SupportedTcpExtensions>,
    /// A Cookie TLV (tolerated, no defined meaning in a reply).
    pub cookie: Option<Cookie>,
}

impl Reply {
    /// Decodes and validates a reply with the strict [`DecodeOptions`].
    /// `len` of a complete reply is where the destination's data starts.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        Self::decode_with(buf, DecodeOptions::STRICT)
    }

    /// Decodes and validates a reply with `options`.
    pub fn decode_with(buf: &[u8], options: DecodeOptions) -> Result<Decoded<Self>, Error> {
        match Message::decode_with(buf, options)? {
            Decoded::Complete { msg, len } => Ok(Decoded::Complete {
                msg: Self::from_message(msg)?,
                len,
            }),
            Decoded::NeedMore(n) => Ok(Decoded::NeedMore(n)),
        }
    }

    /// Applies the client's rules to a decoded message: an Error TLV
    /// anywhere wins, then the first TLV of an unexpected type.
    pub fn from_message(msg: Message) -> Result<Self, Error> {
        let tlvs = msg.into_tlvs();
        if let Some(Tlv::Error(e)) = tlvs.iter().find(|t| matches!(t, Tlv::Error(_))) {
            return Err(Error::Refused(e.clone()));
        }
        let mut reply = Self::default();
        for tlv in tlvs {
            match tlv {
                Tlv::ExtendedTcpHeader(h) => reply.extended_tcp_header = Some(h),
                Tlv::SupportedTcpExtensions(s) => reply.supported_tcp_extensions = Some(s),
                Tlv::Cookie(c) => reply.cookie = Some(c),
                other => return Err(Error::UnexpectedTlv(other.tlv_type())),
            }
        }
        Ok(reply)
    }

    /// The message a converter sends: Extended TCP Header, Supported TCP
    /// Extensions, Cookie, in this order, each if present. Fails if it
    /// would exceed 1020 bytes.
    pub fn to_message(&self) -> Result<Message, EncodeError> {
        let tlvs = [
            self.extended_tcp_header.clone().map(Tlv::ExtendedTcpHeader),
            self.supported_tcp_extensions
                .clone()
                .map(Tlv::SupportedTcpExtensions),
            self.cookie.clone().map(Tlv::Cookie),
        ];
        Message::new(tlvs.into_iter().flatten().collect())
    }

    /// Bytes [`encode`](Self::encode) writes (whether or not it succeeds).
    pub fn encoded_len(&self) -> usize {
        let tlvs = [
            self.extended_tcp_header
                .as_ref()
                .map(|h| 4 + h.as_bytes().len()),
            self.supported_tcp_extensions
                .as_ref()
                .map(|s| Tlv::SupportedTcpExtensions(s.clone()).encoded_len()),
            self.cookie.as_ref().map(|c| 4 + c.as_bytes().len()),
        ];
        tlvs.iter()
            .flatten()
            .fold(4usize, |n, l| n.saturating_add(*l))
    }

    /// Writes the reply (see [`to_message`](Self::to_message)) in one
    /// buffer, to be sent in one write before any destination data
    /// (libconvert needs the whole reply at once, digest §5.1); on error
    /// nothing is written.
    pub fn encode<B: Out>(&self, buf: &mut B) -> Result<(), EncodeError> {
        self.to_message()?.encode(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testing::{assert_splits, hex};
    use crate::convert::{ErrorTlv, TcpOptionKind, TlvType};

    fn accepts(bytes: &[u8]) -> Reply {
        let Ok(Decoded::Complete { msg, len }) = assert_splits(Reply::decode, bytes) else {
            panic!("{bytes:02x?} refused");
        };
        assert_eq!(len, bytes.len());
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(msg.encoded_len(), bytes.len());
        msg
    }

    fn refused(bytes: &[u8]) -> ErrorTlv {
        match assert_splits(Reply::decode, bytes) {
            Err(Error::Refused(e)) => {
                assert_eq!(Error::Refused(e.clone()).to_error_tlv(bytes), None);
                e
            }
            other => panic!("{bytes:02x?}: {other:?}"),
        }
    }

    #[test]
    fn t5_accepts_header_only() {
        assert_eq!(accepts(&hex("01 01 22 63")), Reply::default());
    }

    #[test]
    fn t6_accepts_extended_tcp_header() {
        let r = accepts(&hex("01 04 22 63 14 03 00 00 02 04 05 b4 04 02 00 00"));
        assert_eq!(
            r.extended_tcp_header,
            Some(ExtendedTcpHeader::new(hex("02 04 05 b4 04 02")))
        );
    }

    #[test]
    fn t10_accepts_supported_tcp_extensions() {
        let r = accepts(&hex("01 03 22 63 15 02 00 00 1e 00 00 00"));
        assert!(
            r.supported_tcp_extensions
                .unwrap()
                .contains(TcpOptionKind::MPTCP)
        );
    }

    #[test]
    fn accepts_server_data_in_the_same_segment() {
        let mut bytes = hex("01 01 22 63");
        bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(
            Reply::decode(&bytes),
            Ok(Decoded::Complete {
                msg: Reply::default(),
                len: 4
            })
        );
    }

    #[test]
    fn t7_t8_t11_t12_t13_refuse_with_the_error() {
        assert_eq!(
            refused(&hex("01 02 22 63 1e 01 61 00")),
            ErrorTlv::destination_unreachable(0)
        );
        assert_eq!(
            refused(&hex("01 02 22 63 1e 01 01 00")).code(),
            crate::convert::ErrorCode::MALFORMED_MESSAGE
        );
        assert_eq!(
            refused(&hex("01 02 22 63 1e 01 21 1d")).unsupported_tcp_option_kinds(),
            Some(vec![TcpOptionKind::TCP_AO])
        );
        assert_eq!(
            refused(&hex("01 04 22 63 1e 03 03 00 c0 ff ee 00 11 22 33 44")).cookie(),
            Some(Cookie::new(hex("c0 ff ee 00 11 22 33 44")))
        );
        assert_eq!(
            refused(&hex("01 02 22 63 1e 01 00 01")).supported_versions(),
            Some(&[1][..])
        );
    }

    #[test]
    fn error_wins_over_other_tlvs() {
        let e = refused(&hex("01 03 22 63 01 01 00 00 1e 01 60 00"));
        assert_eq!(e, ErrorTlv::connection_reset());
    }

    #[test]
    fn resets_on_unexpected_tlvs() {
        let connect = "0a 05 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01";
        let cases = [
            ("01 02 22 63 01 01 00 00".to_owned(), TlvType::INFO),
            (format!("01 06 22 63 {connect}"), TlvType::CONNECT),
            ("01 02 22 63 2a 01 00 00".to_owned(), TlvType(42)),
        ];
        for (bytes, t) in cases {
            let bytes = hex(&bytes);
            let got = assert_splits(Reply::decode, &bytes);
            assert_eq!(got, Err(Error::UnexpectedTlv(t)));
            assert_eq!(Error::UnexpectedTlv(t).to_error_tlv(&bytes), None);
        }
    }

    #[test]
    fn resets_on_duplicates_and_type_0() {
        assert_eq!(
            Reply::decode(&hex("01 03 22 63 14 01 00 00 14 01 00 00")),
            Err(Error::DuplicateTlv(TlvType::EXTENDED_TCP_HEADER))
        );
        assert_eq!(
            Reply::decode(&hex("01 02 22 63 00 01 00 00")),
            Err(Error::ReservedTlvType)
        );
    }

    #[test]
    fn resets_on_zero_total_length_and_bad_magic() {
        assert_eq!(
            Reply::decode(&hex("01 00 22 63")),
            Err(Error::ZeroTotalLength)
        );
        assert_eq!(Reply::decode(&hex("01 01 00 00")), Err(Error::BadMagic(0)));
        assert_eq!(
            Reply::decode_with(&hex("01 01 00 00"), DecodeOptions::DRAFT_COMPATIBLE),
            Ok(Decoded::Complete {
                msg: Reply::default(),
                len: 4
            })
        );
    }

    #[test]
    fn tolerates_a_cookie_tlv() {
        let r = accepts(&hex("01 03 22 63 16 02 00 00 01 02 03 04"));
        assert_eq!(r.cookie, Some(Cookie::new([1, 2, 3, 4])));
    }

    #[test]
    fn encodes_extended_header_then_supported_extensions() {
        let r = Reply {
            extended_tcp_header: Some(ExtendedTcpHeader::new([30, 4, 0x81, 0])),
            supported_tcp_extensions: Some(
                SupportedTcpExtensions::new(&[TcpOptionKind::MPTCP, TcpOptionKind::FAST_OPEN])
                    .unwrap(),
            ),
            cookie: None,
        };
        let bytes = accepts(&{
            let mut b = Vec::new();
            r.encode(&mut b).unwrap();
            b
        });
        assert_eq!(bytes, r);
        assert_eq!(
            r.to_message().unwrap().to_bytes(),
            hex("01 05 22 63 14 02 00 00 1e 04 81 00 15 02 00 00 1e 22 00 00")
        );
        let huge = Reply {
            extended_tcp_header: Some(ExtendedTcpHeader::new(vec![1; 1020])),
            ..Reply::default()
        };
        assert_eq!(
            huge.to_message(),
            Err(EncodeError::MessageTooLong { len: 1028 })
        );
        assert_eq!(huge.encoded_len(), 1028);
    }
}
