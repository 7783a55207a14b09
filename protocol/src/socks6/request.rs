//! The Request (draft -11 §4, spec digest §2.1 and §4.1).
//!
//! ```text
//! Version=6 | Command | Options Length (2) | Port (2) | Padding=0 | ATYP | Address | Options
//! ```
//!
//! A Request may be followed by Initial Data: exactly
//! [`Request::initial_data_len`] bytes of application data, declared in the
//! Authentication Method Advertisement option. [`Request::decode`] does not
//! consume them; they start at the returned `len` and belong to the
//! caller.
//!
//! The reader is tolerant: the padding byte is not checked, both
//! domain-name padding conventions are read (digest §5.1), and a NOOP
//! Request is accepted with any address and port, which "have no meaning"
//! for it (the draft's "MUST be 0" is the writer's duty:
//! [`Request::noop`] writes the canonical `06 00 00 00 00 00 00 01 00 00 00
//! 00`). An unknown command is refused, so a server answers 0x07 before
//! reading on.

use super::address::{DomainStyle, address_encoded_len, decode_address, encode_address};
use super::error::Error;
use super::option::{MAX_OPTIONS_LEN, Options};
use crate::addr::{AddressType, Endpoint};
use crate::codec::{self, Decoded, Fail, Out, Reader};

/// The version byte of every SOCKS6 message.
pub const VERSION: u8 = 6;

/// Largest Initial Data Length: "This number MUST NOT be larger than 2^14"
/// (draft -11 §8.2).
pub const MAX_INITIAL_DATA_LEN: usize = 16384;

crate::code_point! {
    /// A Request's command code.
    pub struct Command(u8) {
        /// No operation: authenticate, handle session options, reply, close.
        NOOP = 0x00,
        /// Connect to the endpoint.
        CONNECT = 0x01,
        /// Listen on the endpoint and accept one connection.
        BIND = 0x02,
        /// Relay UDP datagrams.
        UDP_ASSOCIATE = 0x03,
    }
}

/// A SOCKS6 Request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// CONNECT: the destination; BIND and UDP ASSOCIATE: the wanted bind
    /// address and port (`0.0.0.0:0` or `[::]:0` for any); NOOP: nothing.
    pub endpoint: Endpoint,
    /// The options.
    pub options: Options,
}

impl Request {
    /// A Request without options.
    pub fn new(command: Command, endpoint: Endpoint) -> Self {
        Self {
            command,
            endpoint,
            options: Options::new(),
        }
    }

    /// A NOOP Request in canonical form: "Address Type MUST be 0x01 or
    /// 0x04, and Address and Port MUST be 0" (draft -11 §4).
    pub fn noop() -> Self {
        Self::new(Command::NOOP, Endpoint::unspecified())
    }

    /// Bytes of Initial Data that follow the Request, from its
    /// Authentication Method Advertisement; 0 without one.
    pub fn initial_data_len(&self) -> usize {
        self.options.initial_data_len()
    }

    /// Decodes a Request from the front of `buf`. Initial Data is not
    /// consumed.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let (code, endpoint, options) = decode_frame(r, |code| {
            let command = Command(code);
            if command.name().is_none() {
                return Err(Error::UnknownCommand(command));
            }
            Ok(())
        })?;
        Ok(Self {
            command: Command(code),
            endpoint,
            options,
        })
    }

    /// Writes the Request, domain names in the recommended
    /// [`DomainStyle::Padded`].
    pub fn encode<B: Out>(&self, buf: &mut B) {
        self.encode_with_style(DomainStyle::Padded, buf);
    }

    /// Writes the Request with domain names in `style` (use
    /// [`DomainStyle::Libsocks6msg`] towards sixtysocks).
    pub fn encode_with_style<B: Out>(&self, style: DomainStyle, buf: &mut B) {
        encode_frame(self.command.0, &self.endpoint, &self.options, style, buf);
    }

    /// Bytes [`Request::encode`] writes (the same in both styles).
    pub fn encoded_len(&self) -> usize {
        frame_len(&self.endpoint, &self.options)
    }
}

/// Reads the layout Request and Operation Reply share, checking the code
/// byte with `check_code` as soon as it is read.
pub(crate) fn decode_frame(
    r: &mut Reader<'_>,
    check_code: impl FnOnce(u8) -> Result<(), Error>,
) -> Result<(u8, Endpoint, Options), Fail<Error>> {
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version).into());
    }
    let code = r.u8()?;
    check_code(code)?;
    let options_len = usize::from(r.u16()?);
    // "MUST NOT exceed 16384" (spec digest §2.1): checked before reading on.
    if options_len > MAX_OPTIONS_LEN {
        return Err(Error::OptionsTooLong(options_len).into());
    }
    let port = r.u16()?;
    r.skip(1)?; // Padding.
    let atyp = AddressType(r.u8()?);
    let addr = decode_address(r, atyp).map_err(|f| f.map_err(Error::Address))?;
    let options = Options::read(r, options_len)?;
    Ok((code, Endpoint { addr, port }, options))
}

/// Writes the layout Request and Operation Reply share.
pub(crate) fn encode_frame<B: Out>(
    code: u8,
    endpoint: &Endpoint,
    options: &Options,
    style: DomainStyle,
    buf: &mut B,
) {
    buf.put_u8(VERSION);
    buf.put_u8(code);
    // At most 16384: `Options` cannot grow past it. Known up front, so not
    // back-filled.
    buf.put_u16(options.encoded_len() as u16);
    buf.put_u16(endpoint.port);
    buf.put_u8(0);
    buf.put_u8(endpoint.addr.address_type().0);
    encode_address(&endpoint.addr, style, buf);
    options.encode(buf);
}

/// Bytes [`encode_frame`] writes.
pub(crate) fn frame_len(endpoint: &Endpoint, options: &Options) -> usize {
    8 + address_encoded_len(&endpoint.addr) + options.encoded_len()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::addr::{Address, DomainError, DomainName};
    use crate::socks6::address::AddressError;
    use crate::socks6::auth::{AuthMethodAdvertisement, Method, UsernamePassword};
    use crate::socks6::error::ErrorResponse;
    use crate::socks6::idempotence::Window;
    use crate::socks6::option::SocksOption;
    use crate::socks6::reply::ReplyCode;
    use crate::socks6::session::SessionId;
    use crate::socks6::tests::hex;

    fn v4(a: [u8; 4], port: u16) -> Endpoint {
        Endpoint::new(Ipv4Addr::from(a), port)
    }

    fn domain(name: &str, port: u16) -> Endpoint {
        Endpoint::new(DomainName::new(name).expect("valid"), port)
    }

    fn options(list: Vec<SocksOption>) -> Options {
        Options::try_from(list).expect("valid options")
    }

    /// Every prefix needs more (with a lower bound), the whole decodes, and
    /// bytes after the Request are left alone.
    fn decode_split(bytes: &[u8], extra: &[u8]) -> Request {
        for k in 0..bytes.len() {
            match Request::decode(&bytes[..k]) {
                Ok(Decoded::NeedMore(n)) => assert!(n >= 1 && k + n <= bytes.len(), "prefix {k}"),
                other => panic!("prefix {k}: {other:?}"),
            }
        }
        let mut with_extra = bytes.to_vec();
        with_extra.extend_from_slice(extra);
        let (req, len) = Request::decode(&with_extra)
            .expect("valid")
            .complete()
            .expect("complete");
        assert_eq!(len, bytes.len());
        req
    }

    /// Decodes, compares, re-encodes byte for byte.
    fn vector(bytes: &str, expected: &Request) {
        let bytes = hex(bytes);
        let req = decode_split(&bytes, b"trailing");
        assert_eq!(&req, expected);
        let mut buf = Vec::new();
        req.encode(&mut buf);
        assert_eq!(buf, bytes);
        assert_eq!(req.encoded_len(), bytes.len());
    }

    #[test]
    fn vectors_v1_to_v7() {
        use Command as C;
        vector(
            "06 01 00 00 00 50 00 01 c0 00 02 01",
            &Request::new(C::CONNECT, v4([192, 0, 2, 1], 80)),
        );
        vector(
            "06 01 00 00 01 bb 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01",
            &Request::new(
                C::CONNECT,
                Endpoint::new("2001:db8::1".parse::<Ipv6Addr>().expect("ip"), 443),
            ),
        );
        vector(
            "06 01 00 00 01 bb 00 03 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d",
            &Request::new(C::CONNECT, domain("example.com", 443)),
        );
        vector(
            "06 01 00 00 00 50 00 03 07 61 2e 63 6f 6d 00 00",
            &Request::new(C::CONNECT, domain("a.com", 80)),
        );
        vector("06 00 00 00 00 00 00 01 00 00 00 00", &Request::noop());
        vector(
            "06 02 00 00 00 00 00 01 00 00 00 00",
            &Request::new(C::BIND, Endpoint::unspecified()),
        );
        vector(
            "06 03 00 00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
            &Request::new(C::UDP_ASSOCIATE, Endpoint::new(Ipv6Addr::UNSPECIFIED, 0)),
        );
    }

    #[test]
    fn accepts_both_domain_padding_styles_v4() {
        let libsocks = hex("06 01 00 00 00 50 00 03 05 61 2e 63 6f 6d 00 00");
        let req = decode_split(&libsocks, &[]);
        assert_eq!(req, Request::new(Command::CONNECT, domain("a.com", 80)));
        let mut buf = Vec::new();
        req.encode_with_style(DomainStyle::Libsocks6msg, &mut buf);
        assert_eq!(buf, libsocks);
    }

    #[test]
    fn leaves_initial_data_to_the_caller_v19() {
        let bytes = hex("06 01 00 08 00 50 00 01 c0 00 02 01 00 02 00 08 00 05 00 00");
        let req = decode_split(&bytes, b"hello");
        let adv = AuthMethodAdvertisement::new(5, []).expect("valid");
        let mut expected = Request::new(Command::CONNECT, v4([192, 0, 2, 1], 80));
        expected.options = options(vec![SocksOption::AuthMethodAdvertisement(adv)]);
        assert_eq!(req, expected);
        assert_eq!(req.initial_data_len(), 5);
        let mut buf = Vec::new();
        req.encode(&mut buf);
        assert_eq!(buf, bytes);
    }

    #[test]
    fn decodes_studentmain_requests() {
        // CONNECT 127.0.0.1:17777 with 11 bytes of early data.
        let bytes = hex("06 01 00 08 45 71 00 01 7f 00 00 01 00 02 00 08 00 0b 00 00");
        let req = decode_split(&bytes, b"early-data!");
        assert_eq!(req.endpoint, v4([127, 0, 0, 1], 17777));
        assert_eq!(req.initial_data_len(), 11);
        // Domain "localhost", length byte counting two NULs.
        vector(
            "06 01 00 00 45 71 00 03 0b 6c 6f 63 61 6c 68 6f 73 74 00 00",
            &Request::new(Command::CONNECT, domain("localhost", 17777)),
        );
        vector(
            "06 02 00 00 00 00 00 01 7f 00 00 01",
            &Request::new(Command::BIND, v4([127, 0, 0, 1], 0)),
        );
        // 0-RTT password with method 2 advertised.
        let mut expected = Request::new(Command::CONNECT, v4([127, 0, 0, 1], 17777));
        expected.options = options(vec![
            SocksOption::AuthMethodAdvertisement(
                AuthMethodAdvertisement::new(0, [Method::USERNAME_PASSWORD]).expect("valid"),
            ),
            UsernamePassword::new("alice", "secret")
                .expect("valid")
                .to_option(),
        ]);
        vector(
            "06 01 00 1c 45 71 00 01 7f 00 00 01 00 02 00 08 00 00 02 00 \
             00 04 00 14 02 01 05 61 6c 69 63 65 06 73 65 63 72 65 74 00",
            &expected,
        );
        let up = expected
            .options
            .auth_data(Method::USERNAME_PASSWORD)
            .map(UsernamePassword::from_auth_data);
        assert_eq!(up, Some(UsernamePassword::new("alice", "secret")));
    }

    #[test]
    fn decodes_sixtysocks_session_requests() {
        let mut open = Request::new(Command::CONNECT, v4([127, 0, 0, 1], 17777));
        open.options = options(vec![
            SocksOption::SessionRequest,
            SocksOption::IdempotenceRequest(4),
        ]);
        vector(
            "06 01 00 0c 45 71 00 01 7f 00 00 01 00 05 00 04 00 0b 00 08 00 00 00 04",
            &open,
        );
        let id = SessionId::new(hex("56 30 41 29 8c b8 54 24")).expect("valid");
        let mut spend = Request::new(Command::CONNECT, v4([127, 0, 0, 1], 17777));
        spend.options = options(vec![
            SocksOption::SessionId(id.clone()),
            SocksOption::IdempotenceExpenditure(0x15a3_caed),
        ]);
        vector(
            "06 01 00 14 45 71 00 01 7f 00 00 01 00 06 00 0c 56 30 41 29 8c b8 54 24 \
             00 0d 00 08 15 a3 ca ed",
            &spend,
        );
        assert_eq!(spend.options.session_id(), Some(&id));
        assert_eq!(spend.options.idempotence_expenditure(), Some(0x15a3_caed));
        assert!(
            Window::new(0x15a3_caed, 4)
                .expect("valid")
                .contains(0x15a3_caed)
        );
    }

    #[test]
    fn accepts_non_canonical_noop() {
        let req = decode_split(&hex("06 00 00 00 12 34 00 01 0a 00 00 01"), &[]);
        assert_eq!(req.command, Command::NOOP);
        assert_eq!(req.endpoint, v4([10, 0, 0, 1], 0x1234));
    }

    fn rejects(bytes: &str, error: Error) -> ErrorResponse {
        let bytes = hex(bytes);
        assert_eq!(Request::decode(&bytes), Err(error));
        error.response()
    }

    #[test]
    fn rejects_version_mismatch() {
        let r = rejects(
            "05 01 00 00 00 50 00 01 c0 00 02 01",
            Error::UnsupportedVersion(5),
        );
        assert_eq!(r, ErrorResponse::VersionMismatch);
        // Decided on the first byte.
        assert_eq!(Request::decode(&[0x04]), Err(Error::UnsupportedVersion(4)));
    }

    #[test]
    fn rejects_bad_address_type_with_0x08() {
        let r = rejects(
            "06 01 00 00 00 50 00 02 c0 00 02 01",
            Error::Address(AddressError::UnsupportedType(AddressType(0x02))),
        );
        assert_eq!(
            r,
            ErrorResponse::Reject(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED)
        );
    }

    #[test]
    fn rejects_unknown_command_with_0x07() {
        let r = rejects(
            "06 04 00 00 00 50 00 01 c0 00 02 01",
            Error::UnknownCommand(Command(4)),
        );
        assert_eq!(r, ErrorResponse::Reject(ReplyCode::COMMAND_NOT_SUPPORTED));
    }

    #[test]
    fn rejects_options_length_over_16384() {
        let r = rejects("06 01 40 01", Error::OptionsTooLong(16385));
        assert_eq!(r, ErrorResponse::Close);
    }

    #[test]
    fn rejects_initial_data_length_over_16384() {
        let r = rejects(
            "06 01 00 08 00 50 00 01 c0 00 02 01 00 02 00 08 40 01 00 00",
            Error::InitialDataTooLong(16385),
        );
        assert_eq!(r, ErrorResponse::Close);
    }

    #[test]
    fn rejects_nul_inside_domain_and_empty_domain() {
        let r = rejects(
            "06 01 00 00 00 50 00 03 03 61 00 62",
            Error::Address(AddressError::Domain(DomainError::ContainsNul)),
        );
        assert_eq!(r, ErrorResponse::Reject(ReplyCode::GENERAL_FAILURE));
        rejects(
            "06 01 00 00 00 50 00 03 03 00 00 00",
            Error::Address(AddressError::Domain(DomainError::Empty)),
        );
        rejects(
            "06 01 00 00 00 50 00 03 00 00 00 00",
            Error::Address(AddressError::Domain(DomainError::Empty)),
        );
    }

    #[test]
    fn ignores_option_with_length_two_and_the_rest() {
        let bytes = hex("06 01 00 08 00 50 00 01 c0 00 02 01 00 05 00 02 00 08 00 04");
        let req = decode_split(&bytes, &[]);
        assert!(req.options.is_empty());
        assert_eq!(
            req.endpoint.addr,
            Address::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
    }
}
