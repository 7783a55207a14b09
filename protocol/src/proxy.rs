//! The PROXY protocol version 2 header a layer-4 load balancer (HAProxy
//! `send-proxy-v2`, cloud network load balancers) puts in front of the
//! client's bytes to say whose connection it forwards (HAProxy, "The PROXY
//! protocol", `doc/proxy-protocol.txt`, §2.2 "Binary header format
//! (version 2)").
//!
//! ```text
//! offset size
//!  0     12  signature \r\n\r\n\0\r\nQUIT\n
//! 12     1   version (high nibble, 2) and command (low: 0 LOCAL, 1 PROXY)
//! 13     1   address family (high: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) and
//!            transport (low: 0 UNSPEC, 1 STREAM, 2 DGRAM)
//! 14     2   length of what follows, big-endian
//! 16     L   addresses (INET 12 bytes, INET6 36, UNIX 216: source and
//!            destination address, then source and destination port),
//!            then TLVs (type, 2-byte length, value) up to L
//! ```
//!
//! Only version 2 is decoded: the text header of version 1 (`PROXY TCP4
//! ...`) fails the signature check. Values the specification leaves
//! unassigned (a version other than 2, a command other than LOCAL and
//! PROXY, a family above UNIX, a transport above DGRAM) are errors, as §2.2
//! requires of receivers, and so is a length too short for the family's
//! addresses or TLVs that do not fill it exactly. TLV contents are not
//! interpreted. A header is at most [`MAX_LEN`] bytes, so a receiver's
//! buffer is bounded.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Decoded;
use crate::codec::{Fail, Incomplete, Out, Reader, finish};

/// The twelve bytes every version 2 header starts with (§2.2).
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part: signature, version and command, family, length.
pub const FIXED_LEN: usize = 16;
/// The longest header accepted: the fixed part, the longest address block
/// (UNIX, 216 bytes) and room for TLVs a balancer adds (unique ID, TLS
/// details, cloud endpoint IDs).
pub const MAX_LEN: usize = 1024;

/// What the balancer says about the connection (§2.2, the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The balancer's own connection (a health check): the connection's
    /// endpoints are the real ones and the addresses are ignored.
    Local,
    /// A relayed connection: the addresses are the client's.
    Proxy,
}

/// One decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// LOCAL or PROXY.
    pub command: Command,
    /// The original source and destination of a TCP or UDP connection over
    /// IPv4 or IPv6; `None` for the UNSPEC and UNIX families, for the
    /// UNSPEC transport, and always for LOCAL.
    pub addresses: Option<Addresses>,
}

/// The original connection's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to (the balancer's service
    /// address).
    pub destination: SocketAddr,
}

/// Why bytes are not a version 2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The first bytes are not the version 2 signature.
    #[error("not a PROXY protocol v2 header (bad signature)")]
    Signature,
    /// A version other than 2.
    #[error("PROXY protocol version {0} is not supported")]
    Version(u8),
    /// A command other than LOCAL (0) and PROXY (1).
    #[error("unknown PROXY protocol command {0}")]
    Command(u8),
    /// An address family or transport the specification does not assign.
    #[error("unknown PROXY protocol address family/transport 0x{0:02x}")]
    Family(u8),
    /// The length is shorter than the family's address block.
    #[error("PROXY header length {len} is too short for its addresses ({need} bytes)")]
    Short {
        /// The header's length field.
        len: usize,
        /// What the family's addresses take.
        need: usize,
    },
    /// The whole header would exceed [`MAX_LEN`].
    #[error("PROXY header of {0} bytes is longer than 1024")]
    TooLong(usize),
    /// The TLVs after the addresses do not fill the length exactly.
    #[error("PROXY header TLVs are malformed")]
    Tlv,
}

impl Header {
    /// A LOCAL header (no addresses).
    pub fn local() -> Self {
        Self {
            command: Command::Local,
            addresses: None,
        }
    }

    /// A PROXY header for a TCP connection from `source` to `destination`
    /// (both IPv4 or both IPv6; a mixed pair is sent as IPv6 with the IPv4
    /// one mapped).
    pub fn proxy(source: SocketAddr, destination: SocketAddr) -> Self {
        Self {
            command: Command::Proxy,
            addresses: Some(Addresses {
                source,
                destination,
            }),
        }
    }

    /// The bytes of this header, without TLVs.
    pub fn encode<B: Out>(&self, out: &mut B) {
        out.put_slice(&SIGNATURE);
        out.put_u8(match self.command {
            Command::Local => 0x20,
            Command::Proxy => 0x21,
        });
        match self.addresses {
            None => {
                out.put_u8(0x00);
                out.put_u16(0);
            }
            Some(a) => match (a.source, a.destination) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    out.put_u8(0x11);
                    out.put_u16(12);
                    out.put_slice(&s.ip().octets());
                    out.put_slice(&d.ip().octets());
                    out.put_u16(s.port());
                    out.put_u16(d.port());
                }
                (s, d) => {
                    let v6 = |a: SocketAddr| match a {
                        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
                        SocketAddr::V6(v6) => *v6.ip(),
                    };
                    out.put_u8(0x21);
                    out.put_u16(36);
                    out.put_slice(&v6(s).octets());
                    out.put_slice(&v6(d).octets());
                    out.put_u16(s.port());
                    out.put_u16(d.port());
                }
            },
        }
    }

    /// The bytes of this header, without TLVs, in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FIXED_LEN + 36);
        self.encode(&mut v);
        v
    }
}

/// Decodes a version 2 header at the front of `buf`. Bytes after it are
/// the client's. A wrong signature is reported as soon as the first
/// differing byte is in `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded<Header>, Error> {
    let signature_part = buf.len().min(SIGNATURE.len());
    if buf.get(..signature_part) != SIGNATURE.get(..signature_part) {
        return Err(Error::Signature);
    }
    finish(decode_inner(&mut Reader::new(buf)))
}

fn decode_inner(r: &mut Reader<'_>) -> Result<(Header, usize), Fail<Error>> {
    r.skip(SIGNATURE.len())?;
    let version_command = r.u8()?;
    if version_command >> 4 != 2 {
        return Err(Fail::Invalid(Error::Version(version_command >> 4)));
    }
    let command = match version_command & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        c => return Err(Fail::Invalid(Error::Command(c))),
    };
    let family = r.u8()?;
    let (family_code, transport) = (family >> 4, family & 0x0f);
    if family_code > 3 || transport > 2 {
        return Err(Fail::Invalid(Error::Family(family)));
    }
    let len = usize::from(r.u16()?);
    if FIXED_LEN + len > MAX_LEN {
        return Err(Fail::Invalid(Error::TooLong(FIXED_LEN + len)));
    }
    let need = match family_code {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if len < need {
        return Err(Fail::Invalid(Error::Short { len, need }));
    }
    let mut body = r.sub(len)?;
    let mut block = body.sub(need)?;
    let addresses = match family_code {
        1 => {
            let s = Ipv4Addr::from(block.array::<4>()?);
            let d = Ipv4Addr::from(block.array::<4>()?);
            let (sp, dp) = (block.u16()?, block.u16()?);
            Some(Addresses {
                source: SocketAddr::from((s, sp)),
                destination: SocketAddr::from((d, dp)),
            })
        }
        2 => {
            let s = Ipv6Addr::from(block.array::<16>()?);
            let d = Ipv6Addr::from(block.array::<16>()?);
            let (sp, dp) = (block.u16()?, block.u16()?);
            Some(Addresses {
                source: SocketAddr::from((s, sp)),
                destination: SocketAddr::from((d, dp)),
            })
        }
        _ => None,
    };
    check_tlvs(&mut body).map_err(|_: Incomplete| Fail::Invalid(Error::Tlv))?;
    let addresses = match (command, transport) {
        (Command::Proxy, 1 | 2) => addresses,
        _ => None,
    };
    Ok((Header { command, addresses }, r.consumed()))
}

/// Walks the TLVs (type, 2-byte length, value) to the end of the header;
/// one that runs past it is malformed.
fn check_tlvs(r: &mut Reader<'_>) -> Result<(), Incomplete> {
    while !r.is_empty() {
        let _kind = r.u8()?;
        let len = usize::from(r.u16()?);
        r.skip(len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header built byte by byte from §2.2: PROXY, TCP over IPv4,
    /// 192.0.2.1:56324 → 198.51.100.7:1080.
    const TCP4: [u8; 28] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
        0x21, // version 2, PROXY
        0x11, // AF_INET, STREAM
        0x00, 0x0c, // 12 bytes of addresses
        192, 0, 2, 1, // source
        198, 51, 100, 7, // destination
        0xdc, 0x04, // source port 56324
        0x04, 0x38, // destination port 1080
    ];

    #[test]
    fn decodes_a_tcp_over_ipv4_header_and_leaves_the_client_bytes() {
        let mut buf = TCP4.to_vec();
        buf.extend_from_slice(&[0x06, 0x00]);
        let (h, len) = decode(&buf).unwrap().complete().unwrap();
        assert_eq!(len, 28);
        assert_eq!(
            h,
            Header::proxy(
                "192.0.2.1:56324".parse().unwrap(),
                "198.51.100.7:1080".parse().unwrap()
            )
        );
        assert_eq!(h.to_bytes(), TCP4);
    }

    #[test]
    fn decodes_a_tcp_over_ipv6_header() {
        let src: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let mut buf = SIGNATURE.to_vec();
        buf.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
        buf.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        buf.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        buf.extend_from_slice(&40000u16.to_be_bytes());
        buf.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            decode(&buf),
            Ok(Decoded::Complete {
                msg: Header::proxy(src, dst),
                len: 52
            })
        );
    }

    #[test]
    fn local_command_carries_no_addresses_even_when_given() {
        let mut buf = TCP4;
        buf[12] = 0x20;
        let (h, _) = decode(&buf).unwrap().complete().unwrap();
        assert_eq!(h, Header::local());
        let local = [&SIGNATURE[..], &[0x20, 0x00, 0x00, 0x00]].concat();
        assert_eq!(
            decode(&local).unwrap().complete(),
            Some((Header::local(), 16))
        );
    }

    #[test]
    fn unspec_and_unix_families_carry_no_addresses() {
        let unspec = [&SIGNATURE[..], &[0x21, 0x00, 0x00, 0x00]].concat();
        let (h, _) = decode(&unspec).unwrap().complete().unwrap();
        assert_eq!((h.command, h.addresses), (Command::Proxy, None));
        let mut unix = [&SIGNATURE[..], &[0x21, 0x31, 0x00, 216]].concat();
        unix.resize(16 + 216, 0);
        let (h, len) = decode(&unix).unwrap().complete().unwrap();
        assert_eq!((h.addresses, len), (None, 232));
    }

    #[test]
    fn tlvs_are_skipped_and_must_fill_the_length() {
        let mut buf = TCP4.to_vec();
        buf[15] = 12 + 7;
        // PP2_TYPE_AUTHORITY "a.b" and PP2_TYPE_NOOP, empty.
        buf.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'.', b'b', 0x04, 0x00, 0x00][..7]);
        assert_eq!(decode(&buf), Err(Error::Tlv));
        buf[15] = 12 + 9;
        buf.extend_from_slice(&[0x00, 0x00]);
        let (_, len) = decode(&buf).unwrap().complete().unwrap();
        assert_eq!(len, 16 + 21);
    }

    #[test]
    fn refuses_what_the_specification_leaves_unassigned() {
        let with = |i: usize, b: u8| {
            let mut v = TCP4;
            v[i] = b;
            decode(&v)
        };
        assert_eq!(with(12, 0x11), Err(Error::Version(1)));
        assert_eq!(with(12, 0x22), Err(Error::Command(2)));
        assert_eq!(with(13, 0x41), Err(Error::Family(0x41)));
        assert_eq!(with(13, 0x13), Err(Error::Family(0x13)));
        assert_eq!(with(15, 11), Err(Error::Short { len: 11, need: 12 }));
        assert_eq!(with(14, 0x04), Err(Error::TooLong(16 + 0x040c)));
        assert_eq!(with(3, 0x0b), Err(Error::Signature));
    }

    #[test]
    fn a_version_1_header_and_a_socks_greeting_fail_the_signature_at_once() {
        assert_eq!(decode(b"PROXY TCP4 192.0.2.1 "), Err(Error::Signature));
        assert_eq!(decode(&[0x05, 0x01, 0x00]), Err(Error::Signature));
        assert_eq!(decode(&[0x06]), Err(Error::Signature));
        assert_eq!(decode(&SIGNATURE[..5]), Ok(Decoded::NeedMore(7)));
        assert_eq!(decode(&TCP4[..20]), Ok(Decoded::NeedMore(8)));
    }
}
