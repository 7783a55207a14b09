//! The SOCKS5 reply (RFC 1928 §6).
//!
//! ```text
//! VER(5) REP RSV(0) ATYP BND.ADDR BND.PORT
//! ```
//!
//! As in the request, a non-zero RSV is accepted and ignored, and written as
//! 0. Unknown REP values decode into a [`ReplyCode`] and re-encode
//! unchanged.

use crate::Decoded;
use crate::addr::Endpoint;
use crate::codec::{self, Fail, Out, Reader};

use super::{Error, decode_head, encode_head, endpoint_encoded_len};

crate::code_point! {
    /// The REP field of a SOCKS5 reply (RFC 1928 §6).
    pub struct ReplyCode(u8) {
        /// X'00' succeeded.
        SUCCEEDED = 0x00,
        /// X'01' general SOCKS server failure.
        GENERAL_SOCKS_SERVER_FAILURE = 0x01,
        /// X'02' connection not allowed by ruleset.
        CONNECTION_NOT_ALLOWED_BY_RULESET = 0x02,
        /// X'03' Network unreachable.
        NETWORK_UNREACHABLE = 0x03,
        /// X'04' Host unreachable.
        HOST_UNREACHABLE = 0x04,
        /// X'05' Connection refused.
        CONNECTION_REFUSED = 0x05,
        /// X'06' TTL expired.
        TTL_EXPIRED = 0x06,
        /// X'07' Command not supported.
        COMMAND_NOT_SUPPORTED = 0x07,
        /// X'08' Address type not supported.
        ADDRESS_TYPE_NOT_SUPPORTED = 0x08,
    }
}

/// The server's answer to a [`Request`](super::Request): a code and the
/// bound address (for CONNECT the server's outbound address, for UDP
/// ASSOCIATE the relay's address, for BIND the listening and later the
/// peer's address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    /// REP.
    pub code: ReplyCode,
    /// BND.ADDR and BND.PORT.
    pub bind: Endpoint,
}

impl Reply {
    /// A reply with `code` and `bind`.
    pub fn new(code: ReplyCode, bind: impl Into<Endpoint>) -> Self {
        Self {
            code,
            bind: bind.into(),
        }
    }

    /// A failure reply with `code` and the bind address `0.0.0.0:0`, which
    /// carries no information on failure.
    pub const fn failure(code: ReplyCode) -> Self {
        Self {
            code,
            bind: Endpoint::unspecified(),
        }
    }

    /// Decodes a reply from the front of `buf`. Bytes after it (relayed
    /// data) are not consumed.
    ///
    /// Errors: [`Error::UnsupportedVersion`],
    /// [`Error::UnsupportedAddressType`], [`Error::InvalidDomain`]. A client
    /// that gets one closes the connection; nothing is sent back.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let (code, bind) = decode_head(r, |_| Ok(()))?;
        Ok(Self {
            code: ReplyCode(code),
            bind,
        })
    }

    /// Writes the reply, RSV 0.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        encode_head(self.code.0, &self.bind, buf);
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        3 + endpoint_encoded_len(&self.bind)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::addr::{AddressType, DomainName};
    use crate::socks5::testing::{assert_decodes, assert_rejects, hex};

    fn round_trips(bytes: &[u8], expected: &Reply) {
        assert_decodes(Reply::decode, bytes, expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    #[test]
    fn success_reply_ipv4_round_trips() {
        round_trips(
            &hex("05 00 00 01 c0000201 0438"),
            &Reply::new(
                ReplyCode::SUCCEEDED,
                Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 1080),
            ),
        );
    }

    #[test]
    fn success_reply_ipv6_round_trips() {
        round_trips(
            &hex("05 00 00 04 20010db8000000000000000000000002 c350"),
            &Reply::new(
                ReplyCode::SUCCEEDED,
                Endpoint::new("2001:db8::2".parse::<Ipv6Addr>().expect("v6"), 50000),
            ),
        );
    }

    #[test]
    fn reply_with_domain_round_trips() {
        round_trips(
            &hex("05 00 00 03 0b 6578616d706c652e636f6d 0050"),
            &Reply::new(
                ReplyCode::SUCCEEDED,
                Endpoint::new(DomainName::new("example.com").expect("valid"), 80),
            ),
        );
    }

    #[test]
    fn failure_reply_round_trips() {
        round_trips(
            &hex("05 05 00 01 00000000 0000"),
            &Reply::failure(ReplyCode::CONNECTION_REFUSED),
        );
        round_trips(
            &hex("05 07 00 01 00000000 0000"),
            &Reply::failure(ReplyCode::COMMAND_NOT_SUPPORTED),
        );
    }

    #[test]
    fn keeps_unknown_reply_code() {
        let reply = Reply::failure(ReplyCode(0x09));
        round_trips(&hex("05 09 00 01 00000000 0000"), &reply);
        assert_eq!(format!("{:?}", reply.code), "ReplyCode(0x09)");
    }

    #[test]
    fn accepts_nonzero_reserved_byte() {
        assert_decodes(
            Reply::decode,
            &hex("05 00 01 01 00000000 0000"),
            &Reply::failure(ReplyCode::SUCCEEDED),
        );
    }

    #[test]
    fn rejects_unknown_bind_address_type() {
        assert_rejects(
            Reply::decode,
            &hex("05 00 00 05 00000000 0000"),
            &Error::UnsupportedAddressType(AddressType(0x05)),
        );
    }

    #[test]
    fn rejects_reply_with_wrong_version() {
        // A SOCKS4 reply where a SOCKS5 one was expected.
        assert_rejects(
            Reply::decode,
            &hex("00 5a 0000 00000000"),
            &Error::UnsupportedVersion(0),
        );
    }
}
