//! SOCKS4 ("SOCKS: A protocol for TCP proxy across firewalls", Ying-Da Lee)
//! and its 4A extension ("SOCKS 4A: A Simple Extension to SOCKS 4
//! Protocol").
//!
//! ```text
//! request: VN(4) CD DSTPORT(2) DSTIP(4) USERID NUL [HOSTNAME NUL]
//! reply:   VN(0) CD DSTPORT(2) DSTIP(4)
//! ```
//!
//! SOCKS4A: "the client should set the first three bytes of DSTIP to NULL
//! and the last byte to a non-zero value. (This corresponds to IP address
//! 0.0.0.x, with x nonzero ...)" and sends the host name after the USERID's
//! NUL, terminated by another NUL. "A server using protocol 4A must check
//! the DSTIP in the request packet. If it represents address 0.0.0.x with
//! nonzero x, the server must read in the domain name that the client sends
//! in the packet." Such a request decodes into an [`Address::Domain`]
//! endpoint; we write DSTIP `0.0.0.1`, and accept any non-zero `x`.
//!
//! Neither document bounds USERID or the host name. So that a peer that
//! never sends NUL cannot make us buffer without end, both are limited to
//! 255 bytes ([`MAX_USER_ID_LEN`], [`MAX_HOSTNAME_LEN`], the latter the DNS
//! limit): 256 bytes without a NUL is an error answered with reply 91.
//!
//! The reply's VN "is the version of the reply code and should be 0"; we
//! read only 0, as curl does.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::Decoded;
use crate::addr::{Address, DomainError, DomainName, Endpoint};
use crate::codec::{self, Fail, Out, Reader};

use super::Error;

/// The VN byte of a SOCKS4 request.
pub const SOCKS4_VERSION: u8 = 0x04;

/// The VN byte of a SOCKS4 reply.
pub const SOCKS4_REPLY_VERSION: u8 = 0x00;

/// Longest USERID we read or write, in bytes, not counting its NUL.
pub const MAX_USER_ID_LEN: usize = 255;

/// Longest SOCKS4A host name we read, in bytes, not counting its NUL (the
/// [`DomainName`] limit).
pub const MAX_HOSTNAME_LEN: usize = crate::addr::MAX_DOMAIN_LEN;

/// DSTIP of the SOCKS4A requests we write.
const SOCKS4A_MARKER: Ipv4Addr = Ipv4Addr::new(0, 0, 0, 1);

crate::code_point! {
    /// The CD of a SOCKS4 request.
    pub struct Socks4Command(u8) {
        /// 1: CONNECT.
        CONNECT = 1,
        /// 2: BIND.
        BIND = 2,
    }
}

crate::code_point! {
    /// The CD of a SOCKS4 reply.
    pub struct Socks4ReplyCode(u8) {
        /// 90: request granted.
        GRANTED = 90,
        /// 91: request rejected or failed.
        REJECTED_OR_FAILED = 91,
        /// 92: request rejected because the SOCKS server cannot connect to
        /// identd on the client.
        NO_IDENTD = 92,
        /// 93: request rejected because the client program and identd report
        /// different user-ids.
        IDENTD_MISMATCH = 93,
    }
}

/// A SOCKS4 or SOCKS4A request.
///
/// By construction the endpoint is IPv4 (not `0.0.0.x` with `x != 0`) or a
/// domain name, and the user id is at most 255 bytes without NUL, so
/// encoding cannot fail and decodes to the same request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Socks4Request {
    command: Socks4Command,
    endpoint: Endpoint,
    user_id: Vec<u8>,
}

/// True for `0.0.0.x` with `x != 0`, the SOCKS4A marker.
fn is_socks4a_marker(ip: Ipv4Addr) -> bool {
    matches!(ip.octets(), [0, 0, 0, x] if x != 0)
}

/// Bytes up to the next NUL, which is consumed too. No NUL within
/// `max + 1` bytes is `too_long`; fewer bytes without one need more input.
/// Looks no further than the NUL.
fn take_nul_terminated<'a>(
    r: &mut Reader<'a>,
    max: usize,
    too_long: Error,
) -> Result<&'a [u8], Fail<Error>> {
    let ahead = r.clone().rest();
    let window = ahead.get(..=max).unwrap_or(ahead);
    match window.iter().position(|&b| b == 0) {
        Some(n) => {
            let bytes = r.take(n)?;
            r.skip(1)?;
            Ok(bytes)
        }
        None if window.len() > max => Err(too_long.into()),
        None => Err(Fail::Incomplete(1)),
    }
}

impl Socks4Request {
    /// A request for `command` to `endpoint` as `user_id`. A domain-name
    /// endpoint makes it a SOCKS4A request.
    ///
    /// Errors: [`Error::Socks4Ipv6`], [`Error::Socks4ReservedAddress`]
    /// (`0.0.0.x`, `x != 0`), [`Error::Socks4UserIdTooLong`],
    /// [`Error::Socks4UserIdContainsNul`].
    pub fn new(
        command: Socks4Command,
        endpoint: impl Into<Endpoint>,
        user_id: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        let (endpoint, user_id) = (endpoint.into(), user_id.into());
        match endpoint.addr {
            Address::Ipv6(_) => return Err(Error::Socks4Ipv6),
            Address::Ipv4(ip) if is_socks4a_marker(ip) => {
                return Err(Error::Socks4ReservedAddress);
            }
            Address::Ipv4(_) | Address::Domain(_) => {}
        }
        if user_id.len() > MAX_USER_ID_LEN {
            return Err(Error::Socks4UserIdTooLong);
        }
        if user_id.contains(&0) {
            return Err(Error::Socks4UserIdContainsNul);
        }
        Ok(Self {
            command,
            endpoint,
            user_id,
        })
    }

    /// CONNECT or BIND (decoding refuses other values).
    pub fn command(&self) -> Socks4Command {
        self.command
    }

    /// The destination: IPv4, or a domain name for SOCKS4A.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The USERID, possibly empty, without its NUL.
    pub fn user_id(&self) -> &[u8] {
        &self.user_id
    }

    /// True if this is a SOCKS4A request (the destination is a name).
    pub fn is_socks4a(&self) -> bool {
        matches!(self.endpoint.addr, Address::Domain(_))
    }

    /// Decodes a SOCKS4 or SOCKS4A request from the front of `buf`.
    ///
    /// Errors: [`Error::UnsupportedSocks4Version`] (close, no reply);
    /// [`Error::UnsupportedSocks4Command`], [`Error::Socks4UserIdTooLong`],
    /// [`Error::InvalidSocks4Hostname`] (reply 91); see
    /// [`Error::socks4_reply`].
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let version = r.u8()?;
        if version != SOCKS4_VERSION {
            return Err(Error::UnsupportedSocks4Version(version).into());
        }
        let command = Socks4Command(r.u8()?);
        if !matches!(command, Socks4Command::CONNECT | Socks4Command::BIND) {
            return Err(Error::UnsupportedSocks4Command(command).into());
        }
        let port = r.u16()?;
        let ip = Ipv4Addr::from(r.array::<4>()?);
        let user_id = take_nul_terminated(r, MAX_USER_ID_LEN, Error::Socks4UserIdTooLong)?.to_vec();
        let addr = if is_socks4a_marker(ip) {
            let name = take_nul_terminated(
                r,
                MAX_HOSTNAME_LEN,
                Error::InvalidSocks4Hostname(DomainError::TooLong),
            )?;
            Address::Domain(DomainName::from_bytes(name).map_err(Error::InvalidSocks4Hostname)?)
        } else {
            Address::Ipv4(ip)
        };
        Ok(Self {
            command,
            endpoint: Endpoint { addr, port },
            user_id,
        })
    }

    /// Writes the request; a SOCKS4A request gets DSTIP `0.0.0.1`.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u8(SOCKS4_VERSION);
        buf.put_u8(self.command.0);
        buf.put_u16(self.endpoint.port);
        match &self.endpoint.addr {
            Address::Ipv4(ip) => {
                buf.put_slice(&ip.octets());
                buf.put_slice(&self.user_id);
                buf.put_u8(0);
            }
            Address::Domain(name) => {
                buf.put_slice(&SOCKS4A_MARKER.octets());
                buf.put_slice(&self.user_id);
                buf.put_u8(0);
                buf.put_slice(name.as_str().as_bytes());
                buf.put_u8(0);
            }
            // Refused by the constructor and never decoded.
            Address::Ipv6(_) => {}
        }
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let host = match &self.endpoint.addr {
            Address::Domain(name) => name.len() + 1,
            Address::Ipv4(_) | Address::Ipv6(_) => 0,
        };
        8 + self.user_id.len() + 1 + host
    }
}

/// The SOCKS4 server's answer. For CONNECT the address is ignored by
/// clients; for BIND it is where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Socks4Reply {
    /// CD: 90 granted, 91–93 rejected.
    pub code: Socks4ReplyCode,
    /// DSTPORT and DSTIP.
    pub bind: SocketAddrV4,
}

impl Socks4Reply {
    /// A reply with `code` and `bind`.
    pub const fn new(code: Socks4ReplyCode, bind: SocketAddrV4) -> Self {
        Self { code, bind }
    }

    /// A reply with `code` and the address `0.0.0.0:0`.
    pub const fn unbound(code: Socks4ReplyCode) -> Self {
        Self {
            code,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        }
    }

    /// Decodes a reply from the front of `buf`. Any code is accepted; VN
    /// must be 0 ([`Error::UnsupportedSocks4ReplyVersion`]).
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let version = r.u8()?;
        if version != SOCKS4_REPLY_VERSION {
            return Err(Error::UnsupportedSocks4ReplyVersion(version).into());
        }
        let code = Socks4ReplyCode(r.u8()?);
        let port = r.u16()?;
        let ip = Ipv4Addr::from(r.array::<4>()?);
        Ok(Self {
            code,
            bind: SocketAddrV4::new(ip, port),
        })
    }

    /// Writes the reply.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u8(SOCKS4_REPLY_VERSION);
        buf.put_u8(self.code.0);
        buf.put_u16(self.bind.port());
        buf.put_slice(&self.bind.ip().octets());
    }

    /// Bytes [`encode`](Self::encode) writes: always 8.
    pub const fn encoded_len(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::socks5::testing::{assert_decodes, assert_rejects, hex};

    fn request_round_trips(bytes: &[u8], expected: &Socks4Request) {
        assert_decodes(Socks4Request::decode, bytes, expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    fn reply_round_trips(bytes: &[u8], expected: Socks4Reply) {
        assert_decodes(Socks4Reply::decode, bytes, &expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    fn example_com() -> Endpoint {
        Endpoint::new(DomainName::new("example.com").expect("valid"), 443)
    }

    #[test]
    fn socks4_connect_round_trips() {
        let bytes = hex("04 01 0050 c0000201 00");
        let req = Socks4Request::new(
            Socks4Command::CONNECT,
            Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
            Vec::new(),
        )
        .expect("valid");
        request_round_trips(&bytes, &req);
        assert!(!req.is_socks4a());
        assert_eq!(req.user_id(), b"");
    }

    #[test]
    fn socks4_connect_with_user_id_round_trips() {
        let req = Socks4Request::new(
            Socks4Command::CONNECT,
            Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
            *b"fred",
        )
        .expect("valid");
        request_round_trips(&hex("04 01 0050 c0000201 66726564 00"), &req);
    }

    #[test]
    fn socks4a_connect_round_trips() {
        let bytes = hex("04 01 01bb 00000001 75 00 6578616d706c652e636f6d 00");
        let req = Socks4Request::new(Socks4Command::CONNECT, example_com(), *b"u").expect("valid");
        request_round_trips(&bytes, &req);
        assert!(req.is_socks4a());
        assert_eq!(req.command(), Socks4Command::CONNECT);
        assert_eq!(req.endpoint(), &example_com());
        assert_eq!(req.user_id(), b"u");
    }

    #[test]
    fn socks4_bind_round_trips() {
        let req = Socks4Request::new(
            Socks4Command::BIND,
            Endpoint::new(Ipv4Addr::new(198, 51, 100, 7), 21),
            Vec::new(),
        )
        .expect("valid");
        request_round_trips(&hex("04 02 0015 c6336407 00"), &req);
    }

    #[test]
    fn accepts_any_nonzero_socks4a_marker() {
        let bytes = hex("04 01 01bb 000000ff 00 6578616d706c652e636f6d 00");
        let req =
            Socks4Request::new(Socks4Command::CONNECT, example_com(), Vec::new()).expect("valid");
        assert_decodes(Socks4Request::decode, &bytes, &req);
        let mut out = Vec::new();
        req.encode(&mut out);
        assert_eq!(out, hex("04 01 01bb 00000001 00 6578616d706c652e636f6d 00"));
    }

    #[test]
    fn treats_dstip_zero_as_plain_socks4() {
        let req = Socks4Request::new(
            Socks4Command::BIND,
            Endpoint::new(Ipv4Addr::UNSPECIFIED, 0),
            Vec::new(),
        )
        .expect("valid");
        request_round_trips(&hex("04 02 0000 00000000 00"), &req);
    }

    #[test]
    fn accepts_socks4_user_id_at_limit() {
        let mut bytes = hex("04 01 0050 c0000201");
        bytes.extend_from_slice(&[b'u'; 255]);
        bytes.push(0);
        let req = Socks4Request::new(
            Socks4Command::CONNECT,
            Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
            vec![b'u'; 255],
        )
        .expect("valid");
        request_round_trips(&bytes, &req);
    }

    #[test]
    fn rejects_socks4_user_id_without_terminator_past_limit() {
        let mut bytes = hex("04 01 0050 c0000201");
        bytes.extend_from_slice(&[b'u'; 256]);
        let err = Error::Socks4UserIdTooLong;
        assert_rejects(Socks4Request::decode, &bytes, &err);
        assert_eq!(
            err.socks4_reply(),
            Some(Socks4ReplyCode::REJECTED_OR_FAILED)
        );
        // However much more arrives, the answer is the same.
        bytes.extend_from_slice(&[b'u'; 1000]);
        assert_eq!(Socks4Request::decode(&bytes), Err(err));
    }

    #[test]
    fn waits_for_user_id_terminator_within_limit() {
        let mut bytes = hex("04 01 0050 c0000201");
        bytes.extend_from_slice(&[b'u'; 255]);
        assert_eq!(Socks4Request::decode(&bytes), Ok(Decoded::NeedMore(1)));
    }

    #[test]
    fn accepts_socks4a_hostname_at_limit() {
        let name = "h".repeat(255);
        let mut bytes = hex("04 01 0050 00000001 00");
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        let req = Socks4Request::new(
            Socks4Command::CONNECT,
            Endpoint::new(DomainName::new(name).expect("valid"), 80),
            Vec::new(),
        )
        .expect("valid");
        request_round_trips(&bytes, &req);
    }

    #[test]
    fn rejects_socks4a_hostname_without_terminator_past_limit() {
        let mut bytes = hex("04 01 0050 00000001 00");
        bytes.extend_from_slice(&[b'h'; 256]);
        let err = Error::InvalidSocks4Hostname(DomainError::TooLong);
        assert_rejects(Socks4Request::decode, &bytes, &err);
        assert_eq!(
            err.socks4_reply(),
            Some(Socks4ReplyCode::REJECTED_OR_FAILED)
        );
    }

    #[test]
    fn rejects_socks4a_empty_hostname() {
        let err = Error::InvalidSocks4Hostname(DomainError::Empty);
        assert_rejects(
            Socks4Request::decode,
            &hex("04 01 0050 00000001 00 00"),
            &err,
        );
        assert_eq!(
            err.socks4_reply(),
            Some(Socks4ReplyCode::REJECTED_OR_FAILED)
        );
    }

    #[test]
    fn rejects_socks4a_non_utf8_hostname() {
        let err = Error::InvalidSocks4Hostname(DomainError::NotUtf8);
        assert_rejects(
            Socks4Request::decode,
            &hex("04 01 0050 00000001 00 c328 00"),
            &err,
        );
        assert_eq!(
            err.socks4_reply(),
            Some(Socks4ReplyCode::REJECTED_OR_FAILED)
        );
    }

    #[test]
    fn rejects_socks4_unknown_command_with_reply_91() {
        let err = Error::UnsupportedSocks4Command(Socks4Command(3));
        assert_rejects(Socks4Request::decode, &hex("04 03 0050 c0000201 00"), &err);
        assert_eq!(
            err.socks4_reply(),
            Some(Socks4ReplyCode::REJECTED_OR_FAILED)
        );
        assert_eq!(err.reply(), None);
    }

    #[test]
    fn rejects_socks5_version_without_reply() {
        let err = Error::UnsupportedSocks4Version(5);
        assert_rejects(Socks4Request::decode, &hex("05 01 00"), &err);
        assert_eq!(err.socks4_reply(), None);
    }

    #[test]
    fn new_refuses_what_socks4_cannot_carry() {
        let v4 = |ip| Endpoint::new(ip, 80);
        assert_eq!(
            Socks4Request::new(
                Socks4Command::CONNECT,
                Endpoint::new(Ipv6Addr::LOCALHOST, 80),
                Vec::new()
            ),
            Err(Error::Socks4Ipv6)
        );
        assert_eq!(
            Socks4Request::new(
                Socks4Command::CONNECT,
                v4(Ipv4Addr::new(0, 0, 0, 7)),
                Vec::new()
            ),
            Err(Error::Socks4ReservedAddress)
        );
        assert_eq!(
            Socks4Request::new(
                Socks4Command::CONNECT,
                v4(Ipv4Addr::LOCALHOST),
                vec![b'u'; 256]
            ),
            Err(Error::Socks4UserIdTooLong)
        );
        assert_eq!(
            Socks4Request::new(Socks4Command::CONNECT, v4(Ipv4Addr::LOCALHOST), *b"a\0b"),
            Err(Error::Socks4UserIdContainsNul)
        );
    }

    #[test]
    fn granted_reply_round_trips() {
        reply_round_trips(
            &hex("00 5a 0050 c0000201"),
            Socks4Reply::new(
                Socks4ReplyCode::GRANTED,
                SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 80),
            ),
        );
        reply_round_trips(
            &hex("00 5a 0000 00000000"),
            Socks4Reply::unbound(Socks4ReplyCode::GRANTED),
        );
    }

    #[test]
    fn rejection_replies_round_trip() {
        for (byte, code) in [
            (0x5b, Socks4ReplyCode::REJECTED_OR_FAILED),
            (0x5c, Socks4ReplyCode::NO_IDENTD),
            (0x5d, Socks4ReplyCode::IDENTD_MISMATCH),
            (0x20, Socks4ReplyCode(0x20)),
        ] {
            reply_round_trips(&[0, byte, 0, 0, 0, 0, 0, 0], Socks4Reply::unbound(code));
        }
    }

    #[test]
    fn rejects_reply_version_4() {
        assert_rejects(
            Socks4Reply::decode,
            &hex("04 5a 0000 00000000"),
            &Error::UnsupportedSocks4ReplyVersion(4),
        );
    }
}
