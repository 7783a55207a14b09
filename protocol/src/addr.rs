//! Addresses as SOCKS and Convert carry them: an IPv4 or IPv6 address or a
//! domain name left for the proxy to resolve, plus a port.
//!
//! Each protocol module has its own wire encoding of these types (SOCKS6 pads
//! domain names to 4 bytes, SOCKS5 does not, Convert carries only IPv6 or
//! IPv4-mapped addresses); the types and their validation are shared.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

crate::code_point! {
    /// The address type byte (ATYP) of SOCKS5 and SOCKS6; both use the same
    /// values.
    pub struct AddressType(u8) {
        /// Four-byte IPv4 address.
        IPV4 = 0x01,
        /// Length-prefixed domain name.
        DOMAIN_NAME = 0x03,
        /// Sixteen-byte IPv6 address.
        IPV6 = 0x04,
    }
}

/// Longest domain name a length byte can describe.
pub const MAX_DOMAIN_LEN: usize = 255;

/// Why a domain name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DomainError {
    /// Zero-length name.
    #[error("empty domain name")]
    Empty,
    /// More than 255 bytes.
    #[error("domain name longer than 255 bytes")]
    TooLong,
    /// A NUL byte inside the name.
    #[error("NUL byte inside a domain name")]
    ContainsNul,
    /// Not valid UTF-8 (DNS names are ASCII; IDNs travel as punycode).
    #[error("domain name is not valid UTF-8")]
    NotUtf8,
}

/// A validated domain name: 1 to 255 bytes of UTF-8 without NUL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, DomainError> {
        let name = name.into();
        Self::check(name.as_bytes())?;
        Ok(Self(name))
    }

    /// Validates wire bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DomainError> {
        Self::check(bytes)?;
        let s = core::str::from_utf8(bytes).map_err(|_| DomainError::NotUtf8)?;
        Ok(Self(s.to_owned()))
    }

    fn check(bytes: &[u8]) -> Result<(), DomainError> {
        if bytes.is_empty() {
            return Err(DomainError::Empty);
        }
        if bytes.len() > MAX_DOMAIN_LEN {
            return Err(DomainError::TooLong);
        }
        if bytes.contains(&0) {
            return Err(DomainError::ContainsNul);
        }
        Ok(())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's length in bytes (1 to 255).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `DomainName` is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl core::str::FromStr for DomainName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// An address: IP, or a domain name for the far side to resolve.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// IPv4.
    Ipv4(Ipv4Addr),
    /// IPv6.
    Ipv6(Ipv6Addr),
    /// A domain name.
    Domain(DomainName),
}

impl Address {
    /// The unspecified IPv4 address `0.0.0.0` ("any address" in BIND and
    /// UDP ASSOCIATE requests).
    pub const UNSPECIFIED_V4: Self = Self::Ipv4(Ipv4Addr::UNSPECIFIED);

    /// The ATYP value that encodes this address.
    pub fn address_type(&self) -> AddressType {
        match self {
            Self::Ipv4(_) => AddressType::IPV4,
            Self::Ipv6(_) => AddressType::IPV6,
            Self::Domain(_) => AddressType::DOMAIN_NAME,
        }
    }

    /// The IP address, if this is not a domain name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ipv4(a) => Some(IpAddr::V4(*a)),
            Self::Ipv6(a) => Some(IpAddr::V6(*a)),
            Self::Domain(_) => None,
        }
    }
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::Ipv4(a),
            IpAddr::V6(a) => Self::Ipv6(a),
        }
    }
}

impl From<Ipv4Addr> for Address {
    fn from(ip: Ipv4Addr) -> Self {
        Self::Ipv4(ip)
    }
}

impl From<Ipv6Addr> for Address {
    fn from(ip: Ipv6Addr) -> Self {
        Self::Ipv6(ip)
    }
}

impl From<DomainName> for Address {
    fn from(name: DomainName) -> Self {
        Self::Domain(name)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4(a) => a.fmt(f),
            Self::Ipv6(a) => a.fmt(f),
            Self::Domain(d) => d.fmt(f),
        }
    }
}

/// An address and a port: a CONNECT target, a bind address, a datagram's
/// destination.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The address.
    pub addr: Address,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// `addr:port`.
    pub fn new(addr: impl Into<Address>, port: u16) -> Self {
        Self {
            addr: addr.into(),
            port,
        }
    }

    /// `0.0.0.0:0`, the "any address, any port" of BIND and UDP ASSOCIATE.
    pub const fn unspecified() -> Self {
        Self {
            addr: Address::UNSPECIFIED_V4,
            port: 0,
        }
    }

    /// The socket address, if the address is not a domain name.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addr.ip().map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(sa: SocketAddr) -> Self {
        Self::new(sa.ip(), sa.port())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Address::Ipv6(a) => write!(f, "[{a}]:{}", self.port),
            other => write!(f, "{other}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_nul_domains() {
        assert_eq!(DomainName::new(""), Err(DomainError::Empty));
        assert_eq!(DomainName::new("a".repeat(256)), Err(DomainError::TooLong));
        assert_eq!(DomainName::new("a\0b"), Err(DomainError::ContainsNul));
        assert_eq!(DomainName::from_bytes(&[0xff]), Err(DomainError::NotUtf8));
        assert!(DomainName::new("a".repeat(255)).is_ok());
    }

    #[test]
    fn endpoint_displays_ipv6_in_brackets() {
        let e = Endpoint::new(Ipv6Addr::LOCALHOST, 443);
        assert_eq!(e.to_string(), "[::1]:443");
        let d = Endpoint::new(DomainName::new("example.com").expect("valid"), 80);
        assert_eq!(d.to_string(), "example.com:80");
    }
}
