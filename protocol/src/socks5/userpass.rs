//! Username/password authentication for SOCKS5 (RFC 1929 §2), the
//! sub-negotiation after the server selects method X'02'.
//!
//! ```text
//! client: VER(1) ULEN(1..255) UNAME PLEN(1..255) PASSWD
//! server: VER(1) STATUS
//! ```
//!
//! Names and passwords are opaque bytes: RFC 1929 gives no character set.
//! Tolerant reader: PLEN 0 (an empty password) is accepted, because clients
//! configured with a user but no password send it; ULEN 0 is refused, as
//! there is nobody to authenticate. Strict writer: [`UserPassRequest::new`]
//! refuses both.

use core::fmt;

use crate::Decoded;
use crate::codec::{self, Fail, Out, Reader};
use crate::rfc1929::{self, EmptyFields};

use super::Error;

impl From<rfc1929::Invalid> for Error {
    fn from(e: rfc1929::Invalid) -> Self {
        match e {
            rfc1929::Invalid::Version(v) => Self::UnsupportedUserPassVersion(v),
            rfc1929::Invalid::EmptyUsername => Self::EmptyUsername,
        }
    }
}

/// The VER byte of RFC 1929 messages: "The VER field contains the current
/// version of the subnegotiation, which is X'01'."
pub const USERPASS_VERSION: u8 = rfc1929::VERSION;

/// Longest username or password: the length fields are one byte.
pub const MAX_CREDENTIAL_LEN: usize = 255;

crate::code_point! {
    /// The STATUS of an RFC 1929 reply: X'00' is success, anything else a
    /// failure.
    pub struct UserPassStatus(u8) {
        /// X'00': the credentials were accepted.
        SUCCESS = 0x00,
        /// A failure; the conventional value (RFC 1929 names none).
        FAILURE = 0x01,
    }
}

impl UserPassStatus {
    /// True for X'00'.
    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }
}

/// The client's credentials.
///
/// The username is 1 to 255 bytes and the password at most 255 by
/// construction, so encoding cannot fail. `Debug` does not print the
/// password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserPassRequest {
    username: Vec<u8>,
    password: Vec<u8>,
}

impl UserPassRequest {
    /// Credentials to send. Both must be 1 to 255 bytes (RFC 1929 §2):
    /// [`Error::EmptyUsername`], [`Error::EmptyPassword`],
    /// [`Error::UsernameTooLong`], [`Error::PasswordTooLong`].
    pub fn new(username: impl Into<Vec<u8>>, password: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let (username, password) = (username.into(), password.into());
        if username.is_empty() {
            return Err(Error::EmptyUsername);
        }
        if username.len() > MAX_CREDENTIAL_LEN {
            return Err(Error::UsernameTooLong(username.len()));
        }
        if password.is_empty() {
            return Err(Error::EmptyPassword);
        }
        if password.len() > MAX_CREDENTIAL_LEN {
            return Err(Error::PasswordTooLong(password.len()));
        }
        Ok(Self { username, password })
    }

    /// The username (1 to 255 bytes).
    pub fn username(&self) -> &[u8] {
        &self.username
    }

    /// The password (0 to 255 bytes; empty only if a peer sent PLEN 0).
    pub fn password(&self) -> &[u8] {
        &self.password
    }

    /// Decodes a username/password request from the front of `buf`.
    ///
    /// Errors, each answered with status X'01' and a close (see
    /// [`Error::userpass_status`]): [`Error::UnsupportedUserPassVersion`],
    /// [`Error::EmptyUsername`].
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        // PLEN 0 accepted, ULEN 0 refused: see the module documentation.
        let (username, password) = rfc1929::read_request(r, EmptyFields::RejectEmptyUsername)
            .map_err(|f| f.map_err(Error::from))?;
        Ok(Self {
            username: username.to_vec(),
            password: password.to_vec(),
        })
    }

    /// Writes the request. An empty password (only possible in a decoded
    /// request) is written as PLEN 0, as it arrived.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        // Both at most 255 by construction.
        rfc1929::write_request(buf, &self.username, &self.password);
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        rfc1929::request_len(&self.username, &self.password)
    }
}

impl fmt::Debug for UserPassRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPassRequest")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &format_args!("<{} bytes>", self.password.len()))
            .finish()
    }
}

/// The server's verdict on a [`UserPassRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserPassReply {
    /// X'00' success, anything else failure.
    pub status: UserPassStatus,
}

impl UserPassReply {
    /// `01 00`.
    pub const SUCCESS: Self = Self {
        status: UserPassStatus::SUCCESS,
    };
    /// `01 01`.
    pub const FAILURE: Self = Self {
        status: UserPassStatus::FAILURE,
    };

    /// Decodes a reply from the front of `buf`. Any status is accepted;
    /// VER must be 1 ([`Error::UnsupportedUserPassVersion`]).
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let status = rfc1929::read_reply(r).map_err(|f| f.map_err(Error::from))?;
        Ok(Self {
            status: UserPassStatus(status),
        })
    }

    /// Writes the reply.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        rfc1929::write_reply(buf, self.status.0);
    }

    /// Bytes [`encode`](Self::encode) writes: always 2.
    pub const fn encoded_len(&self) -> usize {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks5::testing::{assert_decodes, assert_rejects, hex};

    fn decoded(bytes: &[u8]) -> UserPassRequest {
        UserPassRequest::decode(bytes)
            .expect("valid")
            .complete()
            .expect("complete")
            .0
    }

    fn request_round_trips(bytes: &[u8], expected: &UserPassRequest) {
        assert_decodes(UserPassRequest::decode, bytes, expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    #[test]
    fn user_pass_request_round_trips() {
        let bytes = hex("01 04 75736572 04 70617373");
        let expected = UserPassRequest::new("user", "pass").expect("valid");
        request_round_trips(&bytes, &expected);
        let req = decoded(&bytes);
        assert_eq!(req.username(), b"user");
        assert_eq!(req.password(), b"pass");
    }

    #[test]
    fn longest_credentials_round_trip() {
        let user = vec![b'u'; 255];
        let pass = vec![0xff; 255];
        let mut bytes = vec![0x01, 0xff];
        bytes.extend_from_slice(&user);
        bytes.push(0xff);
        bytes.extend_from_slice(&pass);
        request_round_trips(&bytes, &UserPassRequest::new(user, pass).expect("valid"));
    }

    #[test]
    fn accepts_empty_password() {
        let bytes = hex("01 04 75736572 00");
        let req = decoded(&bytes);
        assert_eq!(req.username(), b"user");
        assert_eq!(req.password(), b"");
        assert_decodes(UserPassRequest::decode, &bytes, &req);
        let mut out = Vec::new();
        req.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn rejects_empty_username_with_status_01() {
        let err = Error::EmptyUsername;
        assert_rejects(UserPassRequest::decode, &hex("01 00 04 70617373"), &err);
        assert_eq!(err.userpass_status(), Some(UserPassStatus::FAILURE));
        let mut out = Vec::new();
        UserPassReply {
            status: err.userpass_status().expect("answer"),
        }
        .encode(&mut out);
        assert_eq!(out, hex("01 01"));
    }

    #[test]
    fn rejects_socks5_version_in_subnegotiation_with_status_01() {
        let err = Error::UnsupportedUserPassVersion(5);
        assert_rejects(
            UserPassRequest::decode,
            &hex("05 04 75736572 04 70617373"),
            &err,
        );
        assert_eq!(err.userpass_status(), Some(UserPassStatus::FAILURE));
        assert_eq!(err.reply(), None);
    }

    #[test]
    fn new_refuses_out_of_range_lengths() {
        assert_eq!(UserPassRequest::new("", "p"), Err(Error::EmptyUsername));
        assert_eq!(UserPassRequest::new("u", ""), Err(Error::EmptyPassword));
        assert_eq!(
            UserPassRequest::new(vec![b'u'; 256], "p"),
            Err(Error::UsernameTooLong(256))
        );
        assert_eq!(
            UserPassRequest::new("u", vec![b'p'; 256]),
            Err(Error::PasswordTooLong(256))
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let req = UserPassRequest::new("user", "secret").expect("valid");
        let shown = format!("{req:?}");
        assert!(
            shown.contains("user") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn replies_round_trip() {
        for (bytes, reply) in [
            (hex("01 00"), UserPassReply::SUCCESS),
            (hex("01 01"), UserPassReply::FAILURE),
            (
                hex("01 7f"),
                UserPassReply {
                    status: UserPassStatus(0x7f),
                },
            ),
        ] {
            assert_decodes(UserPassReply::decode, &bytes, &reply);
            let mut out = Vec::new();
            reply.encode(&mut out);
            assert_eq!(out, bytes);
            assert_eq!(reply.encoded_len(), 2);
        }
        assert!(UserPassReply::SUCCESS.status.is_success());
        assert!(!UserPassStatus(0x7f).is_success());
    }

    #[test]
    fn rejects_reply_with_wrong_version() {
        assert_rejects(
            UserPassReply::decode,
            &hex("05 00"),
            &Error::UnsupportedUserPassVersion(5),
        );
    }
}
