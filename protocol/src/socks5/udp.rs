//! The header of SOCKS5 UDP ASSOCIATE datagrams (RFC 1928 §7).
//!
//! ```text
//! RSV(2, X'0000') FRAG ATYP DST.ADDR DST.PORT DATA
//! ```
//!
//! A datagram arrives whole, so decoding is not incremental:
//! [`UdpHeader::decode_datagram`] takes the datagram and answers the header
//! and where the payload starts, or an error meaning "drop it". RSV is
//! ignored on read and written as zero.
//!
//! Fragmentation is optional in RFC 1928 and not implemented: §7 "An
//! implementation that does not support fragmentation MUST drop any datagram
//! whose FRAG field is other than X'00'." Such datagrams are
//! [`Error::Fragmented`].

use crate::addr::Endpoint;
use crate::codec::{Fail, Out, Reader};

use super::{Error, decode_endpoint, encode_endpoint, endpoint_encoded_len};

/// The header in front of every datagram relayed through a UDP
/// association: the far end's address (destination from the client, source
/// towards the client).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UdpHeader {
    /// FRAG: 0 for a whole datagram. Decoded headers always have 0.
    pub frag: u8,
    /// DST.ADDR and DST.PORT.
    pub endpoint: Endpoint,
}

impl UdpHeader {
    /// The header of an unfragmented datagram to or from `endpoint`.
    pub fn new(endpoint: impl Into<Endpoint>) -> Self {
        Self {
            frag: 0,
            endpoint: endpoint.into(),
        }
    }

    /// Decodes the header of a whole datagram; the payload is
    /// `&datagram[offset..]` (possibly empty).
    ///
    /// Every error means the datagram is dropped without an answer:
    /// [`Error::Fragmented`], [`Error::TruncatedDatagram`] (the datagram
    /// ends inside the header), [`Error::UnsupportedAddressType`],
    /// [`Error::InvalidDomain`].
    pub fn decode_datagram(datagram: &[u8]) -> Result<(Self, usize), Error> {
        let mut r = Reader::new(datagram);
        match Self::decode_inner(&mut r) {
            Ok(header) => Ok((header, r.consumed())),
            Err(Fail::Incomplete(_)) => Err(Error::TruncatedDatagram),
            Err(Fail::Invalid(e)) => Err(e),
        }
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        // RSV: ignored.
        r.skip(2)?;
        let frag = r.u8()?;
        if frag != 0 {
            // RFC 1928 §7: "An implementation that does not support
            // fragmentation MUST drop any datagram whose FRAG field is other
            // than X'00'."
            return Err(Error::Fragmented(frag).into());
        }
        let endpoint = decode_endpoint(r)?;
        Ok(Self { frag, endpoint })
    }

    /// Writes the header; the caller appends the payload.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u16(0);
        buf.put_u8(self.frag);
        encode_endpoint(&self.endpoint, buf);
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        3 + endpoint_encoded_len(&self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::addr::{AddressType, DomainError, DomainName};
    use crate::socks5::testing::hex;

    fn round_trips(datagram: &[u8], expected: &UdpHeader, payload: &[u8]) {
        let (header, offset) = UdpHeader::decode_datagram(datagram).expect("valid");
        assert_eq!(&header, expected);
        assert_eq!(&datagram[offset..], payload);
        assert_eq!(offset, expected.encoded_len());
        let mut out = Vec::new();
        expected.encode(&mut out);
        out.extend_from_slice(payload);
        assert_eq!(out, datagram);
        // A datagram cut inside its header is dropped.
        for k in 0..offset {
            assert_eq!(
                UdpHeader::decode_datagram(&datagram[..k]),
                Err(Error::TruncatedDatagram),
                "cut at {k}"
            );
        }
    }

    #[test]
    fn ipv4_datagram_round_trips() {
        round_trips(
            &hex("0000 00 01 c0000201 0035 68656c6c6f"),
            &UdpHeader::new(Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 53)),
            b"hello",
        );
    }

    #[test]
    fn domain_datagram_round_trips() {
        round_trips(
            &hex("0000 00 03 0b 6578616d706c652e636f6d 0035 6869"),
            &UdpHeader::new(Endpoint::new(
                DomainName::new("example.com").expect("valid"),
                53,
            )),
            b"hi",
        );
    }

    #[test]
    fn ipv6_datagram_with_empty_payload_round_trips() {
        round_trips(
            &hex("0000 00 04 20010db8000000000000000000000001 1f90"),
            &UdpHeader::new(Endpoint::new(
                "2001:db8::1".parse::<Ipv6Addr>().expect("v6"),
                8080,
            )),
            b"",
        );
    }

    #[test]
    fn drops_fragmented_udp() {
        let err = UdpHeader::decode_datagram(&hex("0000 01 01 c0000201 0035 68656c6c6f"));
        assert_eq!(err, Err(Error::Fragmented(1)));
        assert_eq!(Error::Fragmented(1).reply(), None);
        // Dropped even when the rest is garbage: FRAG is checked first.
        assert_eq!(
            UdpHeader::decode_datagram(&hex("0000 81 ff")),
            Err(Error::Fragmented(0x81))
        );
    }

    #[test]
    fn accepts_nonzero_reserved_bytes() {
        let (header, offset) =
            UdpHeader::decode_datagram(&hex("abcd 00 01 c0000201 0035 ff")).expect("valid");
        assert_eq!(
            header,
            UdpHeader::new(Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 53))
        );
        assert_eq!(offset, 10);
    }

    #[test]
    fn drops_datagram_with_unknown_address_type() {
        assert_eq!(
            UdpHeader::decode_datagram(&hex("0000 00 02 c0000201 0035")),
            Err(Error::UnsupportedAddressType(AddressType(2)))
        );
    }

    #[test]
    fn drops_datagram_with_empty_domain() {
        assert_eq!(
            UdpHeader::decode_datagram(&hex("0000 00 03 00 0035")),
            Err(Error::InvalidDomain(DomainError::Empty))
        );
    }

    #[test]
    fn drops_truncated_datagram() {
        assert_eq!(
            UdpHeader::decode_datagram(&hex("0000 00 03 0b 6578")),
            Err(Error::TruncatedDatagram)
        );
        assert_eq!(Error::TruncatedDatagram.reply(), None);
    }
}
