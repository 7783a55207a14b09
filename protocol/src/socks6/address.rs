//! SOCKS6 address bodies (draft -11 §4, spec digest §2.1 and §5.1).
//!
//! The address type byte sits in a different place in the Request and
//! Operation Reply (`Port, pad, ATYP`) than in UDP association messages
//! (`ATYP, pad, Port`), so callers read the type and port themselves and use
//! this module for the address that follows.
//!
//! Domain names: -11 does not say whether the length byte counts the NUL
//! padding. We emit the -12 rule (length includes padding) by default and
//! read both conventions (§5.1 of the digest):
//! read L, read L bytes, strip trailing NULs; if `(1 + L) % 4 != 0` the
//! sender used the libsocks6msg rule, so another `pad4(1 + L)` NUL bytes
//! follow.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::addr::{Address, AddressType, DomainError, DomainName};
use crate::codec::{Fail, Out, Reader, pad4};

/// How a domain name's length byte is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DomainStyle {
    /// The length byte counts the NUL padding (-12 text, studentmain). The
    /// recommended default.
    #[default]
    Padded,
    /// The length byte counts only the name and padding follows
    /// (libsocks6msg / sixtysocks, which reject NULs counted in the length).
    Libsocks6msg,
}

/// Why an address body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    /// The address type is none of IPv4, domain name, IPv6.
    #[error("address type {0} not supported")]
    UnsupportedType(AddressType),
    /// The domain name is empty, contains NUL, or is not UTF-8.
    #[error("bad domain name: {0}")]
    Domain(DomainError),
    /// Padding after a domain name that is not NUL.
    #[error("non-zero padding after a domain name")]
    NonZeroPadding,
}

/// Reads the address body of type `atyp`.
pub fn decode_address(
    r: &mut Reader<'_>,
    atyp: AddressType,
) -> Result<Address, Fail<AddressError>> {
    match atyp {
        AddressType::IPV4 => Ok(Address::Ipv4(Ipv4Addr::from(r.array::<4>()?))),
        AddressType::IPV6 => Ok(Address::Ipv6(Ipv6Addr::from(r.array::<16>()?))),
        AddressType::DOMAIN_NAME => {
            let len = usize::from(r.u8()?);
            let raw = r.take(len)?;
            let name_len = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let name = raw.get(..name_len).unwrap_or_default();
            // libsocks6msg style: the length did not include the padding.
            let extra = pad4(1 + len);
            if extra > 0 && r.take(extra)?.iter().any(|&b| b != 0) {
                return Err(Fail::Invalid(AddressError::NonZeroPadding));
            }
            DomainName::from_bytes(name)
                .map(Address::Domain)
                .map_err(|e| Fail::Invalid(AddressError::Domain(e)))
        }
        other => Err(Fail::Invalid(AddressError::UnsupportedType(other))),
    }
}

/// Writes the address body (not its type byte) in `style`.
pub fn encode_address<B: Out>(addr: &Address, style: DomainStyle, buf: &mut B) {
    match addr {
        Address::Ipv4(a) => buf.put_slice(&a.octets()),
        Address::Ipv6(a) => buf.put_slice(&a.octets()),
        Address::Domain(d) => {
            let pad = pad4(1 + d.len());
            let len_byte = match style {
                DomainStyle::Padded => d.len() + pad,
                DomainStyle::Libsocks6msg => d.len(),
            };
            // At most 255: a 255-byte name needs no padding.
            buf.put_u8(len_byte as u8);
            buf.put_slice(d.as_str().as_bytes());
            buf.put_bytes(0, pad);
        }
    }
}

/// Bytes [`encode_address`] writes for `addr` (the same in both styles).
pub fn address_encoded_len(addr: &Address) -> usize {
    match addr {
        Address::Ipv4(_) => 4,
        Address::Ipv6(_) => 16,
        Address::Domain(d) => 1 + d.len() + pad4(1 + d.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::finish;

    fn decode(bytes: &[u8], atyp: AddressType) -> Result<crate::Decoded<Address>, AddressError> {
        let mut r = Reader::new(bytes);
        finish(decode_address(&mut r, atyp).map(|a| (a, r.consumed())))
    }

    fn domain(s: &str) -> Address {
        Address::Domain(DomainName::new(s).expect("valid name"))
    }

    #[test]
    fn emits_padded_length_by_default() {
        let mut buf = Vec::new();
        encode_address(&domain("a.com"), DomainStyle::Padded, &mut buf);
        assert_eq!(buf, [0x07, b'a', b'.', b'c', b'o', b'm', 0, 0]);
        let mut buf = Vec::new();
        encode_address(&domain("example.com"), DomainStyle::Padded, &mut buf);
        assert_eq!(buf.len(), 12);
        assert_eq!(buf.first(), Some(&0x0b));
    }

    #[test]
    fn emits_libsocks6msg_length_on_request() {
        let mut buf = Vec::new();
        encode_address(&domain("a.com"), DomainStyle::Libsocks6msg, &mut buf);
        assert_eq!(buf, [0x05, b'a', b'.', b'c', b'o', b'm', 0, 0]);
    }

    #[test]
    fn accepts_both_domain_padding_conventions() {
        let padded = [0x07, b'a', b'.', b'c', b'o', b'm', 0, 0];
        let libsocks = [0x05, b'a', b'.', b'c', b'o', b'm', 0, 0];
        for bytes in [padded, libsocks] {
            assert_eq!(
                decode(&bytes, AddressType::DOMAIN_NAME),
                Ok(crate::Decoded::Complete {
                    msg: domain("a.com"),
                    len: 8
                })
            );
        }
    }

    #[test]
    fn long_names_encode_within_one_length_byte() {
        for n in 250..=255 {
            let a = domain(&"x".repeat(n));
            let mut buf = Vec::new();
            encode_address(&a, DomainStyle::Padded, &mut buf);
            assert_eq!(buf.len(), address_encoded_len(&a));
            assert_eq!(buf.len() % 4, 0);
            assert_eq!(
                decode(&buf, AddressType::DOMAIN_NAME),
                Ok(crate::Decoded::Complete {
                    msg: a,
                    len: buf.len()
                })
            );
        }
    }

    #[test]
    fn rejects_empty_and_nul_names_and_bad_padding() {
        assert_eq!(
            decode(&[0x03, 0, 0, 0], AddressType::DOMAIN_NAME),
            Err(AddressError::Domain(DomainError::Empty))
        );
        assert_eq!(
            decode(&[0x03, b'a', 0, b'b'], AddressType::DOMAIN_NAME),
            Err(AddressError::Domain(DomainError::ContainsNul))
        );
        assert_eq!(
            decode(&[0x01, b'a', 1, 0], AddressType::DOMAIN_NAME),
            Err(AddressError::NonZeroPadding)
        );
        assert_eq!(
            decode(&[0; 4], AddressType(0x02)),
            Err(AddressError::UnsupportedType(AddressType(0x02)))
        );
    }

    #[test]
    fn reports_missing_bytes() {
        assert_eq!(
            decode(&[1, 2], AddressType::IPV4),
            Ok(crate::Decoded::NeedMore(2))
        );
        assert_eq!(
            decode(&[0x07, b'a'], AddressType::DOMAIN_NAME),
            Ok(crate::Decoded::NeedMore(6))
        );
    }
}
