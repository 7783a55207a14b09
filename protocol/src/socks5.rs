//! SOCKS Protocol Version 5 (RFC 1928), its username/password
//! authentication (RFC 1929), and SOCKS4 with the 4a extension.
//!
//! These are what applications speak to the sixpath client, and what the
//! client's tests and benchmarks speak to upstream SOCKS5 proxies, so every
//! message decodes and encodes in both directions.
//!
//! A SOCKS5 connection goes: [`MethodRequest`] → [`MethodSelection`] →
//! (method 0x02: [`UserPassRequest`] → [`UserPassReply`]) → [`Request`] →
//! [`Reply`], then relayed data; UDP ASSOCIATE datagrams carry a
//! [`UdpHeader`]. SOCKS4 is one [`Socks4Request`] and one [`Socks4Reply`].
//!
//! Decoding follows the crate's rule: tolerant reader, strict writer. A
//! non-zero RSV byte is accepted and ignored (RFC 1928 only says it is
//! reserved; encoders write 0); RFC 1929 PLEN 0 is accepted. Decode errors
//! say what the peer must get, see [`Error`].
//!
//! # Layout
//!
//! - [`method`]: [`Method`], [`MethodRequest`], [`MethodSelection`]
//!   (RFC 1928 §3).
//! - [`userpass`]: [`UserPassRequest`], [`UserPassReply`],
//!   [`UserPassStatus`] (RFC 1929 §2).
//! - [`request`]: [`Command`], [`Request`] (RFC 1928 §4).
//! - [`reply`]: [`ReplyCode`], [`Reply`] (RFC 1928 §6).
//! - [`udp`]: [`UdpHeader`] (RFC 1928 §7).
//! - [`socks4`]: [`Socks4Request`], [`Socks4Reply`] and their code points
//!   (SOCKS4 and SOCKS4A).
//! - [`error`]: [`Error`] and its mapping to wire answers.
//! - this module: the ATYP / address / port encoding shared by requests,
//!   replies and UDP headers ([`decode_endpoint`], [`encode_endpoint`];
//!   RFC 1928 §5).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::addr::{Address, AddressType, DomainName, Endpoint};
use crate::codec::{Fail, Out, Reader};

pub mod error;
pub mod method;
pub mod reply;
pub mod request;
pub mod socks4;
pub mod udp;
pub mod userpass;

pub use error::Error;
pub use method::{Method, MethodRequest, MethodSelection};
pub use reply::{Reply, ReplyCode};
pub use request::{Command, Request};
pub use socks4::{Socks4Command, Socks4Reply, Socks4ReplyCode, Socks4Request};
pub use udp::UdpHeader;
pub use userpass::{UserPassReply, UserPassRequest, UserPassStatus};

/// The VER byte of every SOCKS5 message.
pub const VERSION: u8 = 0x05;

/// Reads `ATYP, ADDR, PORT` (RFC 1928 §5 and §4).
///
/// A domain name is a length byte and that many bytes, with "no terminating
/// NUL octet" (§5); it must be 1 to 255 bytes of UTF-8 without NUL, else
/// [`Error::InvalidDomain`]. An unknown ATYP is
/// [`Error::UnsupportedAddressType`], found as soon as the ATYP byte is read.
pub fn decode_endpoint(r: &mut Reader<'_>) -> Result<Endpoint, Fail<Error>> {
    let atyp = AddressType(r.u8()?);
    let addr = match atyp {
        AddressType::IPV4 => Address::Ipv4(Ipv4Addr::from(r.array::<4>()?)),
        AddressType::IPV6 => Address::Ipv6(Ipv6Addr::from(r.array::<16>()?)),
        AddressType::DOMAIN_NAME => {
            let len = usize::from(r.u8()?);
            let name = r.take(len)?;
            Address::Domain(DomainName::from_bytes(name).map_err(Error::InvalidDomain)?)
        }
        other => return Err(Error::UnsupportedAddressType(other).into()),
    };
    let port = r.u16()?;
    Ok(Endpoint { addr, port })
}

/// Writes `ATYP, ADDR, PORT` (RFC 1928 §5). Infallible: a [`DomainName`] is
/// at most 255 bytes, so its length always fits the length byte.
pub fn encode_endpoint<B: Out>(endpoint: &Endpoint, buf: &mut B) {
    buf.put_u8(endpoint.addr.address_type().0);
    match &endpoint.addr {
        Address::Ipv4(a) => buf.put_slice(&a.octets()),
        Address::Ipv6(a) => buf.put_slice(&a.octets()),
        Address::Domain(d) => {
            buf.put_u8(d.len() as u8);
            buf.put_slice(d.as_str().as_bytes());
        }
    }
    buf.put_u16(endpoint.port);
}

/// Bytes [`encode_endpoint`] writes for `endpoint`.
pub fn endpoint_encoded_len(endpoint: &Endpoint) -> usize {
    let addr = match &endpoint.addr {
        Address::Ipv4(_) => 4,
        Address::Ipv6(_) => 16,
        Address::Domain(d) => 1 + d.len(),
    };
    1 + addr + 2
}

/// Helpers for the unit tests of this module family.
/// Reads the layout RFC 1928 requests and replies share: `VER`, one code
/// byte (CMD or REP), `RSV` (ignored), then an address and port. `check`
/// validates the code byte before anything after it is read.
pub(crate) fn decode_head(
    r: &mut Reader<'_>,
    check: impl FnOnce(u8) -> Result<(), Error>,
) -> Result<(u8, Endpoint), Fail<Error>> {
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version).into());
    }
    let code = r.u8()?;
    check(code)?;
    r.skip(1)?;
    Ok((code, decode_endpoint(r)?))
}

/// Writes `VER code RSV=0 address port`.
pub(crate) fn encode_head<B: Out>(code: u8, endpoint: &Endpoint, buf: &mut B) {
    buf.put_u8(VERSION);
    buf.put_u8(code);
    buf.put_u8(0);
    encode_endpoint(endpoint, buf);
}

#[cfg(test)]
pub(crate) mod testing {
    use core::fmt::Debug;

    use crate::Decoded;

    /// Bytes from hex, ignoring whitespace.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| {
                u8::from_str_radix(core::str::from_utf8(pair).expect("ascii"), 16).expect("hex")
            })
            .collect()
    }

    /// Checks that `bytes` decodes to exactly `expected` using all of it,
    /// that every shorter prefix asks for more without overshooting the
    /// message, and that trailing bytes are left alone.
    pub(crate) fn assert_decodes<T, E>(
        decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
        bytes: &[u8],
        expected: &T,
    ) where
        T: PartialEq + Debug + Clone,
        E: PartialEq + Debug,
    {
        let len = bytes.len();
        assert_eq!(
            decode(bytes),
            Ok(Decoded::Complete {
                msg: expected.clone(),
                len
            })
        );
        for k in 0..len {
            match decode(&bytes[..k]) {
                Ok(Decoded::NeedMore(n)) => {
                    assert!(
                        n >= 1 && k + n <= len,
                        "prefix {k}: NeedMore({n}), len {len}"
                    );
                }
                other => panic!("prefix {k} of {len}: {other:?}"),
            }
        }
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(b"\x00\x05app data");
        assert_eq!(
            decode(&longer),
            Ok(Decoded::Complete {
                msg: expected.clone(),
                len
            }),
            "trailing bytes changed the message"
        );
    }

    /// Checks that `bytes` fails with `err`, and every prefix either asks
    /// for more or fails the same way.
    pub(crate) fn assert_rejects<T, E>(
        decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
        bytes: &[u8],
        err: &E,
    ) where
        T: PartialEq + Debug,
        E: PartialEq + Debug,
    {
        assert_eq!(decode(bytes).as_ref().err(), Some(err), "whole input");
        for k in 0..bytes.len() {
            match decode(&bytes[..k]) {
                Ok(Decoded::NeedMore(n)) => assert!(n >= 1),
                Err(e) => assert_eq!(&e, err, "prefix {k}"),
                Ok(other) => panic!("prefix {k}: {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoded;
    use crate::codec::finish;
    use testing::{assert_decodes, assert_rejects, hex};

    fn decode(buf: &[u8]) -> Result<Decoded<Endpoint>, Error> {
        let mut r = Reader::new(buf);
        finish(decode_endpoint(&mut r).map(|e| (e, r.consumed())))
    }

    fn round_trips(bytes: &[u8], expected: &Endpoint) {
        assert_decodes(decode, bytes, expected);
        let mut out = Vec::new();
        encode_endpoint(expected, &mut out);
        assert_eq!(out, bytes);
        assert_eq!(endpoint_encoded_len(expected), bytes.len());
    }

    #[test]
    fn ipv4_endpoint_round_trips() {
        round_trips(
            &hex("01 c0000201 0050"),
            &Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
        );
    }

    #[test]
    fn ipv6_endpoint_round_trips() {
        round_trips(
            &hex("04 20010db8000000000000000000000001 01bb"),
            &Endpoint::new("2001:db8::1".parse::<Ipv6Addr>().expect("v6"), 443),
        );
    }

    #[test]
    fn domain_endpoint_has_no_terminating_nul() {
        round_trips(
            &hex("03 0b 6578616d706c652e636f6d 01bb"),
            &Endpoint::new(DomainName::new("example.com").expect("name"), 443),
        );
    }

    #[test]
    fn longest_domain_round_trips() {
        let name = "a".repeat(255);
        let mut bytes = vec![0x03, 0xff];
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&[0x1f, 0x90]);
        round_trips(
            &bytes,
            &Endpoint::new(DomainName::new(name).expect("name"), 8080),
        );
    }

    #[test]
    fn rejects_unknown_address_type_at_once() {
        assert_rejects(
            decode,
            &hex("02"),
            &Error::UnsupportedAddressType(AddressType(2)),
        );
    }

    #[test]
    fn rejects_nul_inside_domain() {
        assert_rejects(
            decode,
            &hex("03 03 61 00 62 0050"),
            &Error::InvalidDomain(crate::addr::DomainError::ContainsNul),
        );
    }
}
