//! The SOCKS5 request (RFC 1928 §4).
//!
//! ```text
//! VER(5) CMD RSV(0) ATYP DST.ADDR DST.PORT
//! ```
//!
//! RSV is "reserved" with the value X'00'; RFC 1928 states no rule for a
//! receiver, so a non-zero RSV is accepted and ignored (tolerant reader) and
//! always written as 0 (strict writer). Commands other than CONNECT, BIND
//! and UDP ASSOCIATE are refused as soon as the CMD byte arrives, with reply
//! X'07' ([`Error::reply`]).

use crate::Decoded;
use crate::addr::Endpoint;
use crate::codec::{self, Fail, Out, Reader};

use super::{Error, decode_head, encode_head, endpoint_encoded_len};

crate::code_point! {
    /// The CMD of a SOCKS5 request (RFC 1928 §4).
    pub struct Command(u8) {
        /// X'01' CONNECT.
        CONNECT = 0x01,
        /// X'02' BIND.
        BIND = 0x02,
        /// X'03' UDP ASSOCIATE.
        UDP_ASSOCIATE = 0x03,
    }
}

/// What the client asks the server to do, and where.
///
/// For CONNECT `endpoint` is the target; for BIND and UDP ASSOCIATE it is
/// the address the client expects to use, often `0.0.0.0:0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// CONNECT, BIND or UDP ASSOCIATE. Other values encode, but decoding
    /// refuses them with [`Error::UnsupportedCommand`].
    pub command: Command,
    /// DST.ADDR and DST.PORT.
    pub endpoint: Endpoint,
}

impl Request {
    /// A request for `command` to `endpoint`.
    pub fn new(command: Command, endpoint: impl Into<Endpoint>) -> Self {
        Self {
            command,
            endpoint: endpoint.into(),
        }
    }

    /// Decodes a request from the front of `buf`. Bytes after it (data the
    /// client sent without waiting for the reply) are not consumed.
    ///
    /// Errors: [`Error::UnsupportedVersion`] (close, no reply),
    /// [`Error::UnsupportedCommand`] (reply X'07'),
    /// [`Error::UnsupportedAddressType`] (X'08'), [`Error::InvalidDomain`]
    /// (X'01'); see [`Error::reply`].
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        // RSV is ignored, see the module documentation.
        let (command, endpoint) = decode_head(r, |c| match Command(c) {
            Command::CONNECT | Command::BIND | Command::UDP_ASSOCIATE => Ok(()),
            other => Err(Error::UnsupportedCommand(other)),
        })?;
        Ok(Self {
            command: Command(command),
            endpoint,
        })
    }

    /// Writes the request, RSV 0.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        encode_head(self.command.0, &self.endpoint, buf);
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
    use crate::socks5::ReplyCode;
    use crate::socks5::testing::{assert_decodes, assert_rejects, hex};

    fn round_trips(bytes: &[u8], expected: &Request) {
        assert_decodes(Request::decode, bytes, expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    fn domain(name: &str, port: u16) -> Endpoint {
        Endpoint::new(DomainName::new(name).expect("valid"), port)
    }

    #[test]
    fn connect_ipv4_round_trips() {
        let bytes = hex("05 01 00 01 c0000201 0050");
        let expected = Request::new(
            Command::CONNECT,
            Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
        );
        round_trips(&bytes, &expected);
        assert_eq!(
            expected.endpoint.socket_addr(),
            Some("192.0.2.1:80".parse().expect("addr"))
        );
    }

    #[test]
    fn connect_domain_round_trips() {
        round_trips(
            &hex("05 01 00 03 0b 6578616d706c652e636f6d 01bb"),
            &Request::new(Command::CONNECT, domain("example.com", 443)),
        );
    }

    #[test]
    fn connect_ipv6_round_trips() {
        round_trips(
            &hex("05 01 00 04 20010db8000000000000000000000001 01bb"),
            &Request::new(
                Command::CONNECT,
                Endpoint::new("2001:db8::1".parse::<Ipv6Addr>().expect("v6"), 443),
            ),
        );
    }

    #[test]
    fn udp_associate_any_address_round_trips() {
        round_trips(
            &hex("05 03 00 01 00000000 0000"),
            &Request::new(Command::UDP_ASSOCIATE, Endpoint::unspecified()),
        );
    }

    #[test]
    fn bind_round_trips() {
        round_trips(
            &hex("05 02 00 01 c6336407 1f90"),
            &Request::new(
                Command::BIND,
                Endpoint::new(Ipv4Addr::new(198, 51, 100, 7), 8080),
            ),
        );
    }

    #[test]
    fn leaves_early_application_data_alone() {
        let mut bytes = hex("05 01 00 01 c0000201 0050");
        let request_len = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (req, len) = Request::decode(&bytes)
            .expect("valid")
            .complete()
            .expect("complete");
        assert_eq!(len, request_len);
        assert_eq!(req.command, Command::CONNECT);
        assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn accepts_nonzero_reserved_byte() {
        let bytes = hex("05 01 7f 01 c0000201 0050");
        let expected = Request::new(
            Command::CONNECT,
            Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
        );
        assert_decodes(Request::decode, &bytes, &expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, hex("05 01 00 01 c0000201 0050"));
    }

    #[test]
    fn rejects_unsupported_command_with_reply_07() {
        let err = Error::UnsupportedCommand(Command(0x04));
        assert_rejects(Request::decode, &hex("05 04 00 01 c0000201 0050"), &err);
        assert_eq!(err.reply(), Some(ReplyCode::COMMAND_NOT_SUPPORTED));
    }

    #[test]
    fn rejects_unknown_address_type_with_reply_08() {
        let err = Error::UnsupportedAddressType(AddressType(0x02));
        assert_rejects(Request::decode, &hex("05 01 00 02 c0000201 0050"), &err);
        assert_eq!(err.reply(), Some(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED));
    }

    #[test]
    fn rejects_empty_domain() {
        let err = Error::InvalidDomain(DomainError::Empty);
        assert_rejects(Request::decode, &hex("05 01 00 03 00 0050"), &err);
        assert_eq!(err.reply(), Some(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE));
    }

    #[test]
    fn rejects_nul_terminated_domain() {
        let err = Error::InvalidDomain(DomainError::ContainsNul);
        assert_rejects(Request::decode, &hex("05 01 00 03 02 61 00 0050"), &err);
        assert_eq!(err.reply(), Some(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE));
    }

    #[test]
    fn rejects_non_utf8_domain() {
        let err = Error::InvalidDomain(DomainError::NotUtf8);
        assert_rejects(Request::decode, &hex("05 01 00 03 02 c3 28 0050"), &err);
        assert_eq!(err.reply(), Some(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE));
    }

    #[test]
    fn rejects_wrong_version_without_reply() {
        let err = Error::UnsupportedVersion(0x04);
        assert_rejects(Request::decode, &hex("04 01 00 50 c0000201 00"), &err);
        assert_eq!(err.reply(), None);
    }
}
