//! The proxy's replies: the Version Mismatch Reply, Authentication Replies
//! and Operation Replies (draft -11 §5, §6, §7; spec digest §2.2–§2.4).
//!
//! ```text
//! Version Mismatch:      06
//! Authentication Reply:  Version=6 | Type | Options Length (2) | Options
//! Operation Reply:       Version=6 | Reply Code | Options Length (2) | Port (2) | Padding=0 | ATYP | Address | Options
//! ```

use super::address::DomainStyle;
use super::auth::Method;
use super::error::Error;
use super::option::{MAX_OPTIONS_LEN, Options};
use super::request::{VERSION, decode_frame, encode_frame, frame_len};
use crate::addr::Endpoint;
use crate::codec::{self, Decoded, Fail, Out, Reader};

/// The Version Mismatch Reply: "If the first byte of a request is not 6,
/// the proxy replies with one byte, 0x06, and closes" (spec digest §2.2).
///
/// A client tells it from an Authentication Reply (which also starts with
/// `06`) by the end of stream after that byte: see
/// [`VersionMismatchReply::matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VersionMismatchReply;

impl VersionMismatchReply {
    /// Its bytes.
    pub const BYTES: [u8; 1] = [VERSION];

    /// Writes `06`.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_slice(&Self::BYTES);
    }

    /// Bytes [`VersionMismatchReply::encode`] writes (1).
    pub fn encoded_len(&self) -> usize {
        Self::BYTES.len()
    }

    /// True if `received`, everything the proxy sent before closing, is a
    /// Version Mismatch Reply.
    pub fn matches(received: &[u8]) -> bool {
        received == Self::BYTES
    }
}

crate::code_point! {
    /// The Type of an Authentication Reply.
    pub struct AuthReplyType(u8) {
        /// Authentication succeeded.
        SUCCESS = 0x00,
        /// Authentication failed (negotiation may continue only through a
        /// Method Selection other than 0xFF).
        FAILURE = 0x01,
    }
}

/// An Authentication Reply: one or two per Request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthenticationReply {
    /// Success or failure.
    pub reply_type: AuthReplyType,
    /// The options: method selection and data, session and idempotence
    /// answers.
    pub options: Options,
}

impl AuthenticationReply {
    /// A reply of `reply_type` without options.
    pub fn new(reply_type: AuthReplyType) -> Self {
        Self {
            reply_type,
            options: Options::new(),
        }
    }

    /// True if negotiation continues: "Negotiation can continue only
    /// through an Authentication Method Selection option (kind 3) naming a
    /// method other than 0xFF" (spec digest §2.3), and only after a
    /// failure. Otherwise a failed reply means the client MUST close.
    pub fn allows_continuation(&self) -> bool {
        self.reply_type == AuthReplyType::FAILURE
            && self
                .options
                .auth_selection()
                .is_some_and(|m| m != Method::NO_ACCEPTABLE_METHODS)
    }

    /// Decodes an Authentication Reply from the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version).into());
        }
        let reply_type = AuthReplyType(r.u8()?);
        let options_len = usize::from(r.u16()?);
        if options_len > MAX_OPTIONS_LEN {
            return Err(Error::OptionsTooLong(options_len).into());
        }
        let options = Options::read(r, options_len)?;
        Ok(Self {
            reply_type,
            options,
        })
    }

    /// Writes the reply.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.reply_type.0);
        // At most 16384 by construction of `Options`.
        buf.put_u16(self.options.encoded_len() as u16);
        self.options.encode(buf);
    }

    /// Bytes [`AuthenticationReply::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        4 + self.options.encoded_len()
    }
}

crate::code_point! {
    /// The Reply Code of an Operation Reply.
    pub struct ReplyCode(u8) {
        /// Succeeded.
        SUCCESS = 0x00,
        /// General SOCKS server failure.
        GENERAL_FAILURE = 0x01,
        /// Connection not allowed by ruleset.
        CONNECTION_NOT_ALLOWED = 0x02,
        /// Network unreachable.
        NETWORK_UNREACHABLE = 0x03,
        /// Host unreachable.
        HOST_UNREACHABLE = 0x04,
        /// Connection refused.
        CONNECTION_REFUSED = 0x05,
        /// TTL expired.
        TTL_EXPIRED = 0x06,
        /// Command not supported.
        COMMAND_NOT_SUPPORTED = 0x07,
        /// Address type not supported.
        ADDRESS_TYPE_NOT_SUPPORTED = 0x08,
        /// Connection attempt timed out.
        CONNECTION_TIMED_OUT = 0x09,
    }
}

/// An Operation Reply: the outcome of the command.
///
/// The reader takes the bind address in both domain-name padding
/// conventions and does not check the padding byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperationReply {
    /// The outcome; anything but success means the client MUST close.
    pub code: ReplyCode,
    /// CONNECT: the proxy's local end of the outbound connection; BIND: the
    /// listening address, then the connected peer; UDP ASSOCIATE: the
    /// proxy's remote-facing socket.
    pub bind: Endpoint,
    /// The options: Stack options the proxy applied, Session ID.
    pub options: Options,
}

impl OperationReply {
    /// A reply without options.
    pub fn new(code: ReplyCode, bind: Endpoint) -> Self {
        Self {
            code,
            bind,
            options: Options::new(),
        }
    }

    /// Decodes an Operation Reply from the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        let inner = |r: &mut Reader<'_>| {
            decode_frame(r, |_| Ok(())).map(|(code, bind, options)| Self {
                code: ReplyCode(code),
                bind,
                options,
            })
        };
        codec::finish(inner(&mut r).map(|m| (m, r.consumed())))
    }

    /// Writes the reply, domain names in [`DomainStyle::Padded`].
    pub fn encode<B: Out>(&self, buf: &mut B) {
        self.encode_with_style(DomainStyle::Padded, buf);
    }

    /// Writes the reply with domain names in `style`.
    pub fn encode_with_style<B: Out>(&self, style: DomainStyle, buf: &mut B) {
        encode_frame(self.code.0, &self.bind, &self.options, style, buf);
    }

    /// Bytes [`OperationReply::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        frame_len(&self.bind, &self.options)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::addr::{AddressType, DomainName};
    use crate::socks6::address::AddressError;
    use crate::socks6::auth::UsernamePasswordReply;
    use crate::socks6::idempotence::Window;
    use crate::socks6::option::{OptionKind, SocksOption};
    use crate::socks6::session::SessionId;
    use crate::socks6::stack::{Availability, Leg, StackOption, StackValue};
    use crate::socks6::tests::hex;

    fn options(list: Vec<SocksOption>) -> Options {
        Options::try_from(list).expect("valid options")
    }

    fn split<T: core::fmt::Debug>(
        decode: impl Fn(&[u8]) -> Result<Decoded<T>, Error>,
        bytes: &[u8],
    ) -> T {
        for k in 0..bytes.len() {
            match decode(&bytes[..k]) {
                Ok(Decoded::NeedMore(n)) => assert!(n >= 1 && k + n <= bytes.len(), "prefix {k}"),
                other => panic!("prefix {k}: {other:?}"),
            }
        }
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(b"\x06\x00\x00\x00data");
        let (msg, len) = decode(&longer)
            .expect("valid")
            .complete()
            .expect("complete");
        assert_eq!(len, bytes.len());
        msg
    }

    fn auth_vector(bytes: &str, expected: &AuthenticationReply) {
        let bytes = hex(bytes);
        let reply = split(AuthenticationReply::decode, &bytes);
        assert_eq!(&reply, expected);
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        assert_eq!(buf, bytes);
        assert_eq!(reply.encoded_len(), bytes.len());
    }

    fn op_vector(bytes: &str, expected: &OperationReply) {
        let bytes = hex(bytes);
        let reply = split(OperationReply::decode, &bytes);
        assert_eq!(&reply, expected);
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        assert_eq!(buf, bytes);
        assert_eq!(reply.encoded_len(), bytes.len());
    }

    fn loopback(port: u16) -> Endpoint {
        Endpoint::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn version_mismatch_reply_v26() {
        let mut buf = Vec::new();
        VersionMismatchReply.encode(&mut buf);
        assert_eq!(buf, [0x06]);
        assert_eq!(VersionMismatchReply.encoded_len(), 1);
        assert!(VersionMismatchReply::matches(&[0x06]));
        assert!(!VersionMismatchReply::matches(&[0x06, 0x00, 0x00, 0x00]));
    }

    #[test]
    fn authentication_replies_v20() {
        auth_vector(
            "06 00 00 00",
            &AuthenticationReply::new(AuthReplyType::SUCCESS),
        );
        let mut failure = AuthenticationReply::new(AuthReplyType::FAILURE);
        failure.options = options(vec![SocksOption::AuthMethodSelection(
            Method::USERNAME_PASSWORD,
        )]);
        auth_vector("06 01 00 08 00 03 00 08 02 00 00 00", &failure);
        assert!(failure.allows_continuation());
        failure.options = options(vec![SocksOption::AuthMethodSelection(
            Method::NO_ACCEPTABLE_METHODS,
        )]);
        assert!(!failure.allows_continuation());
        assert!(!AuthenticationReply::new(AuthReplyType::FAILURE).allows_continuation());
    }

    #[test]
    fn operation_reply_v21() {
        op_vector(
            "06 00 00 00 c0 00 00 01 c0 00 02 02",
            &OperationReply::new(
                ReplyCode::SUCCESS,
                Endpoint::new(Ipv4Addr::new(192, 0, 2, 2), 49152),
            ),
        );
    }

    #[test]
    fn decodes_studentmain_replies() {
        auth_vector(
            "06 00 00 00",
            &AuthenticationReply::new(AuthReplyType::SUCCESS),
        );
        op_vector(
            "06 00 00 00 00 00 00 01 00 00 00 00",
            &OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified()),
        );
        for (bytes, port) in [
            ("06 00 00 00 8b 34 00 01 7f 00 00 01", 35636),
            ("06 00 00 00 df 06 00 01 7f 00 00 01", 0xdf06),
            ("06 00 00 00 b3 d1 00 01 7f 00 00 01", 0xb3d1),
            ("06 00 00 00 c2 86 00 01 7f 00 00 01", 49798),
        ] {
            op_vector(
                bytes,
                &OperationReply::new(ReplyCode::SUCCESS, loopback(port)),
            );
        }
        auth_vector(
            "06 01 00 00",
            &AuthenticationReply::new(AuthReplyType::FAILURE),
        );
    }

    #[test]
    fn accepts_studentmain_unpadded_auth_reply() {
        let bytes = hex("06 00 00 0f 00 03 00 08 02 00 00 00 00 04 00 07 02 01 00");
        let reply = split(AuthenticationReply::decode, &bytes);
        assert_eq!(reply.reply_type, AuthReplyType::SUCCESS);
        assert_eq!(
            reply.options.auth_selection(),
            Some(Method::USERNAME_PASSWORD)
        );
        let data = reply
            .options
            .auth_data(Method::USERNAME_PASSWORD)
            .expect("auth data");
        assert!(
            UsernamePasswordReply::from_auth_data(data)
                .expect("valid")
                .is_success()
        );
        // Re-encoded padded, as sixtysocks would accept it.
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        assert_eq!(
            buf,
            hex("06 00 00 10 00 03 00 08 02 00 00 00 00 04 00 08 02 01 00 00")
        );
        assert_eq!(
            AuthenticationReply::decode(&buf).map(Decoded::complete),
            Ok(Some((reply, 20)))
        );
    }

    #[test]
    fn decodes_sixtysocks_auth_replies() {
        let mut ok = AuthenticationReply::new(AuthReplyType::SUCCESS);
        ok.options = options(vec![UsernamePasswordReply::SUCCESS.to_option()]);
        auth_vector("06 00 00 08 00 04 00 08 02 01 00 00", &ok);
        let mut fail = AuthenticationReply::new(AuthReplyType::FAILURE);
        fail.options = options(vec![UsernamePasswordReply::FAILURE.to_option()]);
        auth_vector("06 01 00 08 00 04 00 08 02 01 01 00", &fail);
        let mut bogus_id = AuthenticationReply::new(AuthReplyType::FAILURE);
        bogus_id.options = options(vec![SocksOption::SessionInvalid]);
        auth_vector("06 01 00 04 00 09 00 04", &bogus_id);
    }

    #[test]
    fn decodes_sixtysocks_session_and_idempotence_replies() {
        let window = Window::new(0x15a3_caed, 4).expect("valid");
        let mut granted = AuthenticationReply::new(AuthReplyType::SUCCESS);
        granted.options = options(vec![
            SocksOption::SessionId(SessionId::new(hex("56 30 41 29 8c b8 54 24")).expect("valid")),
            SocksOption::IdempotenceWindow(window),
        ]);
        auth_vector(
            "06 00 00 18 00 06 00 0c 56 30 41 29 8c b8 54 24 00 0c 00 0c 15 a3 ca ed 00 00 00 04",
            &granted,
        );
        let mut spent = AuthenticationReply::new(AuthReplyType::SUCCESS);
        spent.options = options(vec![
            SocksOption::SessionOk,
            SocksOption::IdempotenceWindow(window),
            SocksOption::IdempotenceAccepted,
        ]);
        auth_vector(
            "06 00 00 14 00 08 00 04 00 0c 00 0c 15 a3 ca ed 00 00 00 04 00 0e 00 04",
            &spent,
        );
        assert!(spent.options.has(OptionKind::IDEMPOTENCE_ACCEPTED));
        assert_eq!(spent.options.idempotence_window(), Some(window));
    }

    #[test]
    fn decodes_operation_reply_with_stack_option() {
        let mut reply = OperationReply::new(ReplyCode::SUCCESS, loopback(80));
        reply.options = options(vec![SocksOption::Stack(StackOption::new(
            Leg::PROXY_REMOTE,
            StackValue::Mptcp(Availability::UNAVAILABLE),
        ))]);
        op_vector(
            "06 00 00 08 00 50 00 01 7f 00 00 01 00 01 00 08 84 02 01 00",
            &reply,
        );
    }

    #[test]
    fn accepts_both_domain_padding_styles_in_operation_reply() {
        let expected = OperationReply::new(
            ReplyCode::SUCCESS,
            Endpoint::new(DomainName::new("a.com").expect("valid"), 80),
        );
        op_vector("06 00 00 00 00 50 00 03 07 61 2e 63 6f 6d 00 00", &expected);
        let libsocks = hex("06 00 00 00 00 50 00 03 05 61 2e 63 6f 6d 00 00");
        assert_eq!(split(OperationReply::decode, &libsocks), expected);
        let mut buf = Vec::new();
        expected.encode_with_style(DomainStyle::Libsocks6msg, &mut buf);
        assert_eq!(buf, libsocks);
    }

    #[test]
    fn keeps_unknown_reply_code_and_type() {
        op_vector(
            "06 2a 00 00 00 00 00 01 00 00 00 00",
            &OperationReply::new(ReplyCode(0x2a), Endpoint::unspecified()),
        );
        auth_vector("06 07 00 00", &AuthenticationReply::new(AuthReplyType(7)));
    }

    #[test]
    fn rejects_bad_replies() {
        assert_eq!(
            AuthenticationReply::decode(&hex("05 00 00 00")),
            Err(Error::UnsupportedVersion(5))
        );
        assert_eq!(
            AuthenticationReply::decode(&hex("06 00 40 01")),
            Err(Error::OptionsTooLong(16385))
        );
        assert_eq!(
            OperationReply::decode(&hex("06 00 00 00 00 00 00 02 00 00 00 00")),
            Err(Error::Address(AddressError::UnsupportedType(AddressType(
                2
            ))))
        );
    }
}
