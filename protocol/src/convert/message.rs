//! A whole Convert message: the fixed header and its TLVs in wire order
//! (RFC 8803, spec digest §2.1-§2.3).
//!
//! [`Message::decode`] is the structural parse both sides share, following
//! the digest's parse procedure (§2.3): header checks, then for each TLV a
//! Length of zero or past Total Length is Malformed, a repeated type is a
//! duplicate, type 0 is reserved, a known type too short for its fixed
//! fields is Malformed, and an unknown type is kept raw. Side-specific rules
//! live in [`Request`](super::Request) and [`Reply`](super::Reply).

use super::error::{EncodeError, Error};
use super::header::{self, DecodeOptions, HEADER_LEN, MAX_MESSAGE_LEN};
use super::tlv::{Tlv, TlvType, read_raw};
use crate::Decoded;
use crate::codec::{self, Fail, Out, Reader};

/// A Convert message: the fixed header (implicit) and its TLVs in wire
/// order, which is kept so a decoded message re-encodes byte for byte.
///
/// Every `Message` is valid to send: at most [`MAX_MESSAGE_LEN`] bytes, each
/// TLV type at most once ("A given TLV MUST only appear once on a
/// connection", §2.3). Zero TLVs is the header-only reply `01 01 22 63`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Message {
    tlvs: Vec<Tlv>,
}

impl Message {
    /// A message with `tlvs`, in this order. Fails on a repeated TLV type
    /// or if the message would be longer than 255 words.
    pub fn new(tlvs: Vec<Tlv>) -> Result<Self, EncodeError> {
        for (i, tlv) in tlvs.iter().enumerate() {
            let t = tlv.tlv_type();
            if tlvs.iter().take(i).any(|earlier| earlier.tlv_type() == t) {
                return Err(EncodeError::DuplicateTlv(t));
            }
        }
        let msg = Self { tlvs };
        let len = msg.encoded_len();
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::MessageTooLong { len });
        }
        Ok(msg)
    }

    /// A message the caller knows is valid (distinct types, short enough).
    pub(crate) fn from_checked(tlvs: Vec<Tlv>) -> Self {
        let msg = Self { tlvs };
        debug_assert_eq!(Self::new(msg.tlvs.clone()).as_ref(), Ok(&msg));
        msg
    }

    /// The header-only message `01 01 22 63` (a success reply with nothing
    /// to report).
    pub fn header_only() -> Self {
        Self::default()
    }

    /// The TLVs in wire order.
    pub fn tlvs(&self) -> &[Tlv] {
        &self.tlvs
    }

    /// The TLVs in wire order, owned.
    pub fn into_tlvs(self) -> Vec<Tlv> {
        self.tlvs
    }

    /// The TLV of type `tlv_type`, if present (there is at most one).
    pub fn get(&self, tlv_type: TlvType) -> Option<&Tlv> {
        self.tlvs.iter().find(|t| t.tlv_type() == tlv_type)
    }

    /// Decodes a message with the strict [`DecodeOptions`]. `len` of a
    /// complete message is Total Length × 4; the bytes after it are
    /// application data.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        Self::decode_with(buf, DecodeOptions::STRICT)
    }

    /// Decodes a message with `options`.
    pub fn decode_with(buf: &[u8], options: DecodeOptions) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r, options).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>, options: DecodeOptions) -> Result<Self, Fail<Error>> {
        let area_len = header::decode_header(r, options)?;
        // The whole message is read before its TLVs are looked at: at most
        // 1016 bytes, and every TLV error is then final.
        let mut area = r.sub(area_len)?;
        // At most 254 TLVs of one word each.
        let mut tlvs: Vec<Tlv> = Vec::new();
        while !area.is_empty() {
            let (tlv_type, body) = read_raw(&mut area)?;
            if tlvs.iter().any(|t| t.tlv_type() == tlv_type) {
                // §2.3: "A given TLV MUST only appear once on a connection."
                return Err(Error::DuplicateTlv(tlv_type).into());
            }
            tlvs.push(Tlv::parse(tlv_type, body)?);
        }
        Ok(Self { tlvs })
    }

    /// Bytes [`encode`](Self::encode) writes: 4 plus the TLVs, at most
    /// [`MAX_MESSAGE_LEN`].
    pub fn encoded_len(&self) -> usize {
        self.tlvs
            .iter()
            .fold(HEADER_LEN, |n, t| n.saturating_add(t.encoded_len()))
    }

    /// Writes the header (Version 1, Total Length, Magic Number `0x2263`)
    /// and the TLVs in order.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        let slot = header::start_header(buf);
        for tlv in &self.tlvs {
            tlv.encode(buf);
        }
        header::finish_header(slot, buf);
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf
    }
}

impl TryFrom<Vec<Tlv>> for Message {
    type Error = EncodeError;
    fn try_from(tlvs: Vec<Tlv>) -> Result<Self, EncodeError> {
        Self::new(tlvs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testing::{assert_splits, hex};
    use crate::convert::{
        Connect, Cookie, ErrorTlv, ExtendedTcpHeader, SupportedTcpExtensions, TcpOption,
        TcpOptionKind, UnknownTlv,
    };

    const T1: &str = "01 06 22 63 0a 05 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01";
    const CONNECT_T1: &str = "0a 05 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01";

    fn connect_t1() -> Tlv {
        Tlv::Connect(Connect::new("10.1.1.1:8080".parse().unwrap()))
    }

    /// Decodes `bytes` whole and split at every byte (and with application
    /// data after it), compares the TLVs, and re-encodes byte for byte.
    fn vector(bytes: &[u8], expected: &[Tlv]) {
        let got = assert_splits(Message::decode, bytes);
        let Ok(Decoded::Complete { msg, len }) = got else {
            panic!("{bytes:02x?}: {got:?}");
        };
        assert_eq!(len, bytes.len());
        assert_eq!(msg.tlvs(), expected);
        assert_eq!(msg.encoded_len(), bytes.len());
        assert_eq!(msg.to_bytes(), bytes);
        assert_eq!(Message::new(expected.to_vec()).unwrap(), msg);
    }

    fn rejects(bytes: &[u8], error: &Error) {
        assert_eq!(assert_splits(Message::decode, bytes).as_ref(), Err(error));
    }

    #[test]
    fn t1_connect() {
        vector(&hex(T1), &[connect_t1()]);
    }

    #[test]
    fn t2_connect_and_cookie() {
        let bytes = hex(&format!(
            "01 09 22 63 {CONNECT_T1} 16 03 00 00 63 6f 6f 6b 69 65 00 00"
        ));
        vector(
            &bytes,
            &[connect_t1(), Tlv::Cookie(Cookie::new(*b"cookie"))],
        );
    }

    #[test]
    fn t3_connect_and_empty_cookie() {
        let bytes = hex(&format!("01 07 22 63 {CONNECT_T1} 16 01 00 00"));
        vector(&bytes, &[connect_t1(), Tlv::Cookie(Cookie::new([]))]);
    }

    #[test]
    fn t4_connect_ipv6() {
        let bytes = hex("01 06 22 63 0a 05 1f 90 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01");
        vector(
            &bytes,
            &[Tlv::Connect(Connect::new(
                "[fd00::1]:8080".parse().unwrap(),
            ))],
        );
    }

    #[test]
    fn t5_header_only() {
        vector(&hex("01 01 22 63"), &[]);
        assert_eq!(Message::header_only().to_bytes(), hex("01 01 22 63"));
    }

    #[test]
    fn t6_extended_tcp_header() {
        vector(
            &hex("01 04 22 63 14 03 00 00 02 04 05 b4 04 02 00 00"),
            &[Tlv::ExtendedTcpHeader(ExtendedTcpHeader::new(hex(
                "02 04 05 b4 04 02",
            )))],
        );
    }

    #[test]
    fn t7_t8_t11_t12_t13_errors() {
        let cases = [
            (
                "01 02 22 63 1e 01 61 00",
                ErrorTlv::destination_unreachable(0),
            ),
            ("01 02 22 63 1e 01 01 00", ErrorTlv::malformed_message(&[])),
            (
                "01 02 22 63 1e 01 21 1d",
                ErrorTlv::unsupported_tcp_options(&[TcpOptionKind::TCP_AO]).unwrap(),
            ),
            (
                "01 04 22 63 1e 03 03 00 c0 ff ee 00 11 22 33 44",
                ErrorTlv::missing_cookie(&Cookie::new(hex("c0 ff ee 00 11 22 33 44"))).unwrap(),
            ),
            (
                "01 02 22 63 1e 01 00 01",
                ErrorTlv::unsupported_version(&[1]).unwrap(),
            ),
        ];
        for (bytes, e) in cases {
            vector(&hex(bytes), &[Tlv::Error(e)]);
        }
    }

    #[test]
    fn t9_info() {
        vector(&hex("01 02 22 63 01 01 00 00"), &[Tlv::Info]);
    }

    #[test]
    fn t10_supported_tcp_extensions() {
        vector(
            &hex("01 03 22 63 15 02 00 00 1e 00 00 00"),
            &[Tlv::SupportedTcpExtensions(
                SupportedTcpExtensions::new(&[TcpOptionKind::MPTCP]).unwrap(),
            )],
        );
    }

    #[test]
    fn t14_extended_connect() {
        let bytes = hex(&format!(
            "01 07 22 63 0a 06 {} 22 02 1e 02",
            &CONNECT_T1[6..]
        ));
        let c = Connect::new("10.1.1.1:8080".parse().unwrap()).with_tcp_options(vec![
            TcpOption::new(TcpOptionKind::FAST_OPEN, []).unwrap(),
            TcpOption::new(TcpOptionKind::MPTCP, []).unwrap(),
        ]);
        vector(&bytes, &[Tlv::Connect(c)]);
    }

    #[test]
    fn t15_rejects_zero_total_length() {
        rejects(&hex("01 00 22 63"), &Error::ZeroTotalLength);
    }

    #[test]
    fn t16_loopback_destination_is_structurally_valid() {
        // The address rule is the converter's (Request); the parse accepts it.
        let bytes = hex("01 06 22 63 0a 05 00 50 00 00 00 00 00 00 00 00 00 00 ff ff 7f 00 00 01");
        vector(
            &bytes,
            &[Tlv::Connect(Connect::new("127.0.0.1:80".parse().unwrap()))],
        );
    }

    #[test]
    fn t17_rejects_duplicate_connect() {
        let bytes = hex(&format!("01 0b 22 63 {CONNECT_T1} {CONNECT_T1}"));
        rejects(&bytes, &Error::DuplicateTlv(TlvType::CONNECT));
    }

    #[test]
    fn rejects_duplicate_unknown_tlv() {
        rejects(
            &hex("01 03 22 63 2a 01 00 00 2a 01 00 00"),
            &Error::DuplicateTlv(TlvType(42)),
        );
    }

    #[test]
    fn rejects_zero_tlv_length() {
        rejects(
            &hex("01 02 22 63 16 00 00 00"),
            &Error::ZeroTlvLength(TlvType::COOKIE),
        );
    }

    #[test]
    fn rejects_tlv_past_total_length() {
        // Cookie says 2 words, only 1 is left in Total Length; the bytes
        // after Total Length (application data) do not count.
        rejects(
            &hex("01 02 22 63 16 02 00 00 aa bb cc dd"),
            &Error::TlvPastTotalLength(TlvType::COOKIE),
        );
    }

    #[test]
    fn rejects_reserved_type_0() {
        rejects(&hex("01 02 22 63 00 01 00 00"), &Error::ReservedTlvType);
    }

    #[test]
    fn follows_the_parse_procedure_order() {
        // Length first, then duplicate, then type 0 (digest §2.3).
        rejects(
            &hex("01 03 22 63 00 01 00 00 00 01 00 00"),
            &Error::ReservedTlvType,
        );
        rejects(
            &hex("01 03 22 63 01 01 00 00 01 00 00 00"),
            &Error::ZeroTlvLength(TlvType::INFO),
        );
    }

    #[test]
    fn t2_tlvs_in_any_order() {
        let bytes = hex(&format!("01 07 22 63 16 01 00 00 {CONNECT_T1}"));
        vector(&bytes, &[Tlv::Cookie(Cookie::new([])), connect_t1()]);
    }

    #[test]
    fn leaves_application_data_alone() {
        let mut bytes = hex(T1);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (msg, len) = Message::decode(&bytes).unwrap().complete().unwrap();
        assert_eq!(len, 24);
        assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(msg.tlvs(), [connect_t1()]);
    }

    #[test]
    fn needs_the_whole_total_length() {
        assert_eq!(Message::decode(&hex(T1)[..10]), Ok(Decoded::NeedMore(14)));
        assert_eq!(
            Message::decode(&hex("01 ff 22 63")),
            Ok(Decoded::NeedMore(1016))
        );
    }

    #[test]
    fn draft_magic_only_with_the_knob() {
        let mut bytes = hex(T1);
        bytes[2] = 0;
        bytes[3] = 0;
        rejects(&bytes, &Error::BadMagic(0));
        let got = assert_splits(
            |b| Message::decode_with(b, DecodeOptions::DRAFT_COMPATIBLE),
            &bytes,
        );
        let (msg, len) = got.unwrap().complete().unwrap();
        assert_eq!((msg.tlvs(), len), (&[connect_t1()][..], 24));
        // The writer always sends the RFC magic.
        assert_eq!(msg.to_bytes(), hex(T1));
    }

    #[test]
    fn rejects_version_2() {
        rejects(&hex("02 01 22 63"), &Error::UnsupportedVersion(2));
    }

    #[test]
    fn new_refuses_duplicates_and_oversize() {
        assert_eq!(
            Message::new(vec![Tlv::Info, connect_t1(), Tlv::Info]),
            Err(EncodeError::DuplicateTlv(TlvType::INFO))
        );
        let cookie = |n: usize| Tlv::Cookie(Cookie::new(vec![1; n]));
        // 4 + 4 + 1012 = 1020 bytes fits; 4 more does not.
        assert_eq!(
            Message::new(vec![cookie(1012)]).unwrap().to_bytes().len(),
            1020
        );
        assert_eq!(
            Message::new(vec![cookie(1016)]),
            Err(EncodeError::MessageTooLong { len: 1024 })
        );
        let max = Message::new(vec![cookie(1012)]).unwrap().to_bytes();
        assert_eq!(&max[..6], hex("01 ff 22 63 16 fe"));
    }

    #[test]
    fn every_tlv_kind_in_one_message() {
        let tlvs = vec![
            Tlv::Info,
            connect_t1(),
            Tlv::ExtendedTcpHeader(ExtendedTcpHeader::new([2, 4, 5, 0xb4])),
            Tlv::SupportedTcpExtensions(
                SupportedTcpExtensions::new(&[TcpOptionKind::MPTCP]).unwrap(),
            ),
            Tlv::Cookie(Cookie::new(*b"abc")),
            Tlv::Error(ErrorTlv::connection_reset()),
            Tlv::Unknown(UnknownTlv::new(TlvType(200), [9; 7]).unwrap()),
        ];
        let msg = Message::new(tlvs.clone()).unwrap();
        let bytes = msg.to_bytes();
        vector(&bytes, &tlvs);
        assert_eq!(msg.get(TlvType::COOKIE), Some(&tlvs[4]));
        assert_eq!(msg.get(TlvType(201)), None);
    }
}
