//! Convert TLVs (RFC 8803, spec digest §2.3-§2.8): the type code point, the
//! [`Tlv`] enum, and the TLVs too small for a file of their own (Info,
//! Extended TCP Header, Supported TCP Extensions, Cookie, unknown types).
//!
//! ```text
//! | Type (1) | Length (1, in 32-bit words incl. Type and Length) | Value, zero-padded |
//! ```
//!
//! Values whose padding cannot be told apart from their content (Extended
//! TCP Header, Cookie, unknown TLVs) are kept whole, padding included, and
//! their constructors pad, so every value re-encodes byte for byte. Fields
//! the spec calls Zero or Unassigned are written as zero and ignored on
//! receipt (N18).

use core::fmt;

use super::connect::{Connect, TcpOptionKind};
use super::error::{EncodeError, Error};
use super::error_code::{ErrorCode, ErrorTlv};
use crate::codec::{LengthSlot, Out, Reader, pad4};

crate::code_point! {
    /// A TLV type (IANA "Convert TLVs"; digest §2.3). 1-127 IETF Review,
    /// 128-191 Specification Required, 192-255 Private Use.
    pub struct TlvType(u8) {
        /// Reserved; a converter answers Unsupported Message, a client
        /// resets.
        RESERVED = 0,
        /// Info: the client asks for the converter's TCP extensions.
        INFO = 1,
        /// Connect: the destination, and TCP options for its SYN.
        CONNECT = 10,
        /// Extended TCP Header: the options of the destination's SYN+ACK.
        EXTENDED_TCP_HEADER = 20,
        /// Supported TCP Extensions: the option kinds the converter offers.
        SUPPORTED_TCP_EXTENSIONS = 21,
        /// Cookie: an opaque token proving the client's address.
        COOKIE = 22,
        /// Error.
        ERROR = 30,
    }
}

impl TlvType {
    /// True for the reserved type 0 and the types the RFC defines; an
    /// [`UnknownTlv`] must have another type.
    pub fn is_assigned(self) -> bool {
        self.name().is_some()
    }
}

/// One TLV of a Convert message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tlv {
    /// Info (type 1, always one word `01 01 00 00`): the client asks for the
    /// Supported TCP Extensions TLV (§2.4).
    Info,
    /// Connect (type 10), base or extended (§2.6).
    Connect(Connect),
    /// Extended TCP Header (type 20, §2.7).
    ExtendedTcpHeader(ExtendedTcpHeader),
    /// Supported TCP Extensions (type 21, §2.5).
    SupportedTcpExtensions(SupportedTcpExtensions),
    /// Cookie (type 22, §2.8).
    Cookie(Cookie),
    /// Error (type 30, §2.9).
    Error(ErrorTlv),
    /// A type this crate does not know, kept raw.
    Unknown(UnknownTlv),
}

impl Tlv {
    /// The Type byte.
    pub fn tlv_type(&self) -> TlvType {
        match self {
            Self::Info => TlvType::INFO,
            Self::Connect(_) => TlvType::CONNECT,
            Self::ExtendedTcpHeader(_) => TlvType::EXTENDED_TCP_HEADER,
            Self::SupportedTcpExtensions(_) => TlvType::SUPPORTED_TCP_EXTENSIONS,
            Self::Cookie(_) => TlvType::COOKIE,
            Self::Error(_) => TlvType::ERROR,
            Self::Unknown(u) => u.tlv_type,
        }
    }

    /// Bytes the TLV takes on the wire in a [`Message`](super::Message): a
    /// multiple of 4.
    pub fn encoded_len(&self) -> usize {
        let body = match self {
            Self::Info => 2,
            Self::Connect(c) => c.body_len(),
            Self::ExtendedTcpHeader(h) => 2 + h.0.len(),
            Self::SupportedTcpExtensions(s) => 2 + s.0.len(),
            Self::Cookie(c) => 2 + c.0.len(),
            Self::Error(e) => 1 + e.value().len(),
            Self::Unknown(u) => u.value.len(),
        };
        (2 + body).saturating_add(pad4(2 + body))
    }

    /// Writes the TLV, zero-padded to a word. Crate-private: only a
    /// [`Message`](super::Message), which bounds its TLVs to 1016 bytes,
    /// writes TLVs, so the Length byte cannot overflow.
    pub(crate) fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u8(self.tlv_type().0);
        let slot = LengthSlot::u8(buf);
        match self {
            // §2.4: "Zero".
            Self::Info => buf.put_u16(0),
            Self::Connect(c) => c.encode_body(buf),
            Self::ExtendedTcpHeader(ExtendedTcpHeader(bytes))
            | Self::SupportedTcpExtensions(SupportedTcpExtensions(bytes))
            | Self::Cookie(Cookie(bytes)) => {
                // Unassigned / Zero, "set to zero by the sender".
                buf.put_u16(0);
                buf.put_slice(bytes);
            }
            Self::Error(e) => {
                buf.put_u8(e.code().0);
                buf.put_slice(e.value());
            }
            Self::Unknown(u) => buf.put_slice(&u.value),
        }
        // §2.3: "If necessary, Value MUST be padded with zeroes so that the
        // length of the TLV is a multiple of 32 bits."
        let len = 2 + slot.written_after(buf);
        buf.put_bytes(0, pad4(len));
        slot.fill(buf, (len + pad4(len)) / 4);
    }

    /// Parses the Value of a TLV of type `tlv_type` whose Length was
    /// checked: `body` is the TLV after its Type and Length bytes (so
    /// `body.len() % 4 == 2`).
    pub(crate) fn parse(tlv_type: TlvType, body: &[u8]) -> Result<Self, Error> {
        // The Zero / Unassigned field of the types that have one; every TLV
        // has at least 2 bytes after its Type and Length.
        let after_zero = || body.get(2..).ok_or(Error::TlvTooShort(tlv_type));
        Ok(match tlv_type {
            TlvType::RESERVED => return Err(Error::ReservedTlvType),
            TlvType::INFO => Self::Info,
            TlvType::CONNECT => Self::Connect(Connect::parse_body(body)?),
            TlvType::EXTENDED_TCP_HEADER => {
                Self::ExtendedTcpHeader(ExtendedTcpHeader(after_zero()?.to_vec()))
            }
            TlvType::SUPPORTED_TCP_EXTENSIONS => {
                // "padded with 0 to end on a 32-bit boundary": kind 0 cannot
                // be listed, so the first zero starts the padding.
                let kinds = after_zero()?;
                let end = kinds.iter().position(|&k| k == 0).unwrap_or(kinds.len());
                Self::SupportedTcpExtensions(SupportedTcpExtensions(
                    kinds.get(..end).unwrap_or_default().to_vec(),
                ))
            }
            TlvType::COOKIE => Self::Cookie(Cookie(after_zero()?.to_vec())),
            TlvType::ERROR => {
                let (&code, value) = body.split_first().ok_or(Error::TlvTooShort(tlv_type))?;
                Self::Error(ErrorTlv::from_wire(ErrorCode(code), value))
            }
            other => Self::Unknown(UnknownTlv {
                tlv_type: other,
                value: body.to_vec(),
            }),
        })
    }
}

/// Reads one TLV's Type, Length and body from a TLV area that holds whole
/// words. Checks the digest's hardening rules (§2.3): a Length of zero, or
/// one running past the area (past the message's Total Length), is
/// Malformed.
pub(crate) fn read_raw<'a>(area: &mut Reader<'a>) -> Result<(TlvType, &'a [u8]), Error> {
    // The area is word-aligned and so is every TLV, so a TLV start always
    // has four bytes; report an overrun should it not.
    let tlv_type = TlvType(
        area.u8()
            .map_err(|_| Error::TlvPastTotalLength(TlvType(0)))?,
    );
    let words = area.u8().map_err(|_| Error::TlvPastTotalLength(tlv_type))?;
    if words == 0 {
        return Err(Error::ZeroTlvLength(tlv_type));
    }
    let body = area
        .take(usize::from(words) * 4 - 2)
        .map_err(|_| Error::TlvPastTotalLength(tlv_type))?;
    Ok((tlv_type, body))
}

/// Writes `bytes` as lowercase hex.
fn write_hex(f: &mut fmt::Formatter<'_>, name: &str, bytes: &[u8]) -> fmt::Result {
    write!(f, "{name}(")?;
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    f.write_str(")")
}

/// The Value of an Extended TCP Header TLV: "a copy of the TCP Options that
/// were included in the SYN+ACK received by the Transport Converter",
/// zero-padded to a word (zero is TCP's End of Option List, so the padding
/// stays valid option syntax). Kept whole: a trailing zero may belong to an
/// option (a Timestamps echo of 0), so padding cannot be stripped.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ExtendedTcpHeader(Vec<u8>);

impl ExtendedTcpHeader {
    /// Raw TCP option bytes (as in a SYN+ACK), zero-padded to a word.
    pub fn new(options: impl Into<Vec<u8>>) -> Self {
        Self(pad_to_word(options.into()))
    }

    /// The option bytes, padding included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ExtendedTcpHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, "ExtendedTcpHeader", &self.0)
    }
}

/// The option kinds a Supported TCP Extensions TLV lists.
///
/// The writer refuses the kinds that "MUST NOT" be announced (0, 1, 2, 3,
/// 5, 29; digest §2.5, N20); the reader keeps what it gets up to the first
/// zero, which starts the padding.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct SupportedTcpExtensions(Vec<u8>);

impl SupportedTcpExtensions {
    /// The list of `kinds`, refusing any kind that must not be announced.
    pub fn new(kinds: &[TcpOptionKind]) -> Result<Self, EncodeError> {
        if let Some(&kind) = kinds.iter().find(|k| !k.may_be_announced()) {
            return Err(EncodeError::ForbiddenExtensionKind(kind));
        }
        Ok(Self(kinds.iter().map(|k| k.0).collect()))
    }

    /// The listed kinds, in wire order.
    pub fn kinds(&self) -> impl Iterator<Item = TcpOptionKind> + '_ {
        self.0.iter().copied().map(TcpOptionKind)
    }

    /// True if `kind` is listed.
    pub fn contains(&self, kind: TcpOptionKind) -> bool {
        self.0.contains(&kind.0)
    }
}

impl fmt::Debug for SupportedTcpExtensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}

/// The opaque value of a Cookie TLV (§2.8), or the cookie in a Missing
/// Cookie error.
///
/// The cookie has no length of its own and is zero-padded to a word, so
/// `"cookie"` and `"cookie\0\0"` look the same on the wire. This type
/// settles the ambiguity by defining the cookie as **the whole padded
/// value**: [`Cookie::new`] pads (exactly as libconvert sends a configured
/// cookie), decoding keeps the padding, and `==` compares the whole padded
/// value. A converter should issue cookies whose length is a multiple of 4;
/// an externally configured cookie is compared as `Cookie::new(configured)`,
/// which matches what libconvert sends for it. [`Cookie::trimmed`] gives the
/// value without trailing zeros for logs.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Cookie(Vec<u8>);

impl Cookie {
    /// The cookie `bytes`, zero-padded to a multiple of 4.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(pad_to_word(bytes.into()))
    }

    /// The whole padded value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value without its trailing zero bytes.
    pub fn trimmed(&self) -> &[u8] {
        let end = self.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        self.0.get(..end).unwrap_or_default()
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, "Cookie", &self.0)
    }
}

/// A TLV of an unassigned or private-use type, kept raw so it re-encodes
/// unchanged. A converter answers it with Unsupported Message
/// ([`Request::from_message`](super::Request::from_message)); a client
/// resets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnknownTlv {
    tlv_type: TlvType,
    value: Vec<u8>,
}

impl UnknownTlv {
    /// A TLV of `tlv_type` with `value` (everything after the Length byte),
    /// zero-padded so the TLV ends on a word. Refuses type 0 and the types
    /// the RFC defines, which have their own [`Tlv`] variants.
    pub fn new(tlv_type: TlvType, value: impl Into<Vec<u8>>) -> Result<Self, EncodeError> {
        if tlv_type.is_assigned() {
            return Err(EncodeError::AssignedTlvType(tlv_type));
        }
        let mut value = value.into();
        value.resize(value.len() + pad4(2 + value.len()), 0);
        Ok(Self { tlv_type, value })
    }

    /// The Type byte.
    pub fn tlv_type(&self) -> TlvType {
        self.tlv_type
    }

    /// Everything after the Length byte, padding included.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for UnknownTlv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.tlv_type)?;
        write_hex(f, "UnknownTlv", &self.value)
    }
}

/// `bytes` zero-padded to a multiple of 4.
fn pad_to_word(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.resize(bytes.len() + pad4(bytes.len()), 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoded;
    use crate::convert::Message;
    use crate::convert::testing::{assert_splits, hex};

    /// Decodes a one-TLV message, checks it re-encodes byte for byte, and
    /// returns its TLV.
    fn only_tlv(bytes: &[u8]) -> Tlv {
        let Ok(Decoded::Complete { msg, len }) = assert_splits(Message::decode, bytes) else {
            panic!("{bytes:02x?} does not decode");
        };
        assert_eq!(len, bytes.len());
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, bytes);
        let [tlv] = msg.tlvs() else {
            panic!("not one TLV: {msg:?}");
        };
        assert_eq!(tlv.encoded_len(), bytes.len() - 4);
        tlv.clone()
    }

    #[test]
    fn t9_info() {
        assert_eq!(only_tlv(&hex("01 02 22 63 01 01 00 00")), Tlv::Info);
    }

    #[test]
    fn ignores_nonzero_info_field_and_writes_zero() {
        let msg = Message::decode(&hex("01 02 22 63 01 01 ab cd")).unwrap();
        let (msg, _) = msg.complete().unwrap();
        assert_eq!(msg.tlvs(), [Tlv::Info]);
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, hex("01 02 22 63 01 01 00 00"));
    }

    #[test]
    fn t10_supported_tcp_extensions_mptcp() {
        let tlv = only_tlv(&hex("01 03 22 63 15 02 00 00 1e 00 00 00"));
        let expected = SupportedTcpExtensions::new(&[TcpOptionKind::MPTCP]).unwrap();
        assert_eq!(tlv, Tlv::SupportedTcpExtensions(expected.clone()));
        assert!(expected.contains(TcpOptionKind::MPTCP));
        assert!(!expected.contains(TcpOptionKind::FAST_OPEN));
    }

    #[test]
    fn supported_extensions_stop_at_the_first_zero() {
        let msg = Message::decode(&hex("01 03 22 63 15 02 00 00 1e 00 22 00"));
        let (msg, _) = msg.unwrap().complete().unwrap();
        let [Tlv::SupportedTcpExtensions(s)] = msg.tlvs() else {
            panic!("{msg:?}");
        };
        assert_eq!(s.kinds().collect::<Vec<_>>(), [TcpOptionKind::MPTCP]);
    }

    #[test]
    fn refuses_to_announce_forbidden_kinds() {
        for kind in [0, 1, 2, 3, 5, 29] {
            assert_eq!(
                SupportedTcpExtensions::new(&[TcpOptionKind::MPTCP, TcpOptionKind(kind)]),
                Err(EncodeError::ForbiddenExtensionKind(TcpOptionKind(kind)))
            );
        }
        let ok = [4, 8, 30, 34].map(TcpOptionKind);
        assert!(SupportedTcpExtensions::new(&ok).is_ok());
    }

    #[test]
    fn t6_extended_tcp_header_mss_and_sack_permitted() {
        let tlv = only_tlv(&hex("01 04 22 63 14 03 00 00 02 04 05 b4 04 02 00 00"));
        assert_eq!(
            tlv,
            Tlv::ExtendedTcpHeader(ExtendedTcpHeader::new(hex("02 04 05 b4 04 02")))
        );
    }

    #[test]
    fn extended_tcp_header_keeps_trailing_zeros_of_options() {
        // Timestamps with TSecr 0 ends in zeros that are not padding.
        let opts = hex("08 0a 00 00 00 01 00 00 00 00 01 01");
        let header = ExtendedTcpHeader::new(opts.clone());
        assert_eq!(header.as_bytes(), opts);
        let mut bytes = hex("01 05 22 63 14 04 00 00");
        bytes.extend_from_slice(&opts);
        assert_eq!(only_tlv(&bytes), Tlv::ExtendedTcpHeader(header));
    }

    #[test]
    fn libconvert_extended_header_and_cookie_with_8_bytes() {
        // tests/check_convert_util.c: 8 random bytes, length 3 words each.
        let random = hex("9a 13 00 7f ee 01 02 00");
        let mut bytes = hex("01 07 22 63 14 03 00 00");
        bytes.extend_from_slice(&random);
        bytes.extend_from_slice(&hex("16 03 00 00"));
        bytes.extend_from_slice(&random);
        let (msg, len) = assert_splits(Message::decode, &bytes)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(len, 28);
        assert_eq!(
            msg.tlvs(),
            [
                Tlv::ExtendedTcpHeader(ExtendedTcpHeader::new(random.clone())),
                Tlv::Cookie(Cookie::new(random)),
            ]
        );
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn cookie_is_the_whole_padded_value() {
        let tlv = only_tlv(&hex("01 04 22 63 16 03 00 00 63 6f 6f 6b 69 65 00 00"));
        let Tlv::Cookie(c) = tlv else {
            panic!("{tlv:?}");
        };
        assert_eq!(c, Cookie::new(*b"cookie"));
        assert_eq!(c.as_bytes(), b"cookie\0\0");
        assert_eq!(c.trimmed(), b"cookie");
        assert_ne!(c, Cookie::new(*b"cookie\0\0\0\0"));
        assert_eq!(format!("{c:?}"), "Cookie(636f6f6b69650000)");
    }

    #[test]
    fn empty_cookie() {
        assert_eq!(
            only_tlv(&hex("01 02 22 63 16 01 00 00")),
            Tlv::Cookie(Cookie::new([]))
        );
    }

    #[test]
    fn keeps_unknown_tlvs_raw() {
        // libconvert's check_convert_util uses type 42 as the unknown type.
        let tlv = only_tlv(&hex("01 03 22 63 2a 02 01 02 03 04 05 06"));
        let expected = UnknownTlv::new(TlvType(42), hex("01 02 03 04 05 06")).unwrap();
        assert_eq!(tlv, Tlv::Unknown(expected.clone()));
        assert_eq!(expected.tlv_type(), TlvType(42));
        assert_eq!(
            only_tlv(&hex("01 02 22 63 c0 01 ff 00")),
            Tlv::Unknown(UnknownTlv::new(TlvType(0xc0), [0xff]).unwrap())
        );
    }

    #[test]
    fn unknown_tlv_refuses_assigned_types() {
        for t in [0, 1, 10, 20, 21, 22, 30] {
            assert_eq!(
                UnknownTlv::new(TlvType(t), []),
                Err(EncodeError::AssignedTlvType(TlvType(t)))
            );
        }
        assert_eq!(UnknownTlv::new(TlvType(2), []).unwrap().value(), [0, 0]);
    }

    #[test]
    fn tlv_type_names() {
        assert_eq!(
            format!("{:?}", TlvType::SUPPORTED_TCP_EXTENSIONS),
            "SUPPORTED_TCP_EXTENSIONS"
        );
        assert_eq!(format!("{:?}", TlvType(42)), "TlvType(0x2a)");
        assert_eq!(TlvType::COOKIE.0, 0x16);
    }
}
