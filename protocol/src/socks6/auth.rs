//! Authentication: method numbers, the Authentication Method Advertisement
//! option body, and the 0-RTT username/password data carried in
//! Authentication Data options (draft -11 §8.2, §8.3, §9; spec digest §3.3,
//! §3.4, §3.5).
//!
//! Username/password is RFC 1929's sub-negotiation moved into options: the
//! client's Authentication Data (method 2) holds `VER=1 ULEN UNAME PLEN
//! PASSWD`, the proxy's holds `VER=1 STATUS`. Both are zero-padded to the
//! option's 4-byte boundary; the decoders here ignore the padding.

use core::fmt;

use bytes::BufMut;

use super::error::Error;
use super::option::SocksOption;
use super::request::MAX_INITIAL_DATA_LEN;
use crate::codec::{self, Decoded, Fail, Out, Reader};
use crate::rfc1929::{self, EmptyFields};

impl From<rfc1929::Invalid> for Error {
    fn from(e: rfc1929::Invalid) -> Self {
        match e {
            rfc1929::Invalid::Version(v) => Self::UsernamePasswordVersion(v),
            // Not produced under `EmptyFields::Accept`; a zero length is
            // the closest SOCKS6 error.
            rfc1929::Invalid::EmptyUsername => Self::CredentialLength(0),
        }
    }
}

crate::code_point! {
    /// An authentication method, from the IANA "SOCKS methods" registry
    /// shared with SOCKS5.
    pub struct Method(u8) {
        /// No authentication required.
        NO_AUTHENTICATION = 0x00,
        /// GSSAPI.
        GSSAPI = 0x01,
        /// Username/password (RFC 1929; 0-RTT in SOCKS6).
        USERNAME_PASSWORD = 0x02,
        /// Challenge-Handshake Authentication Protocol.
        CHAP = 0x03,
        /// Challenge-Response Authentication Method.
        CRAM = 0x05,
        /// Secure Sockets Layer (-12 forbids it).
        SSL = 0x06,
        /// NDS authentication.
        NDS = 0x07,
        /// Multi-Authentication Framework.
        MAF = 0x08,
        /// JSON parameter block.
        JSON_PARAMETER_BLOCK = 0x09,
        /// No acceptable methods (in a Selection: the client must close).
        NO_ACCEPTABLE_METHODS = 0xff,
    }
}

/// The body of an Authentication Method Advertisement option (kind 2): how
/// many bytes of initial data follow the Request, and the methods the
/// client supports.
///
/// Method 0 ("No authentication required") never appears in the list:
/// padding is zero too, so the reader drops every 0 byte as studentmain
/// does, and [`AuthMethodAdvertisement::new`] drops it as well (clients
/// "SHOULD omit advertising" it; it is always supported).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthMethodAdvertisement {
    initial_data_len: u16,
    methods: Vec<Method>,
}

impl AuthMethodAdvertisement {
    /// An advertisement of `methods` with `initial_data_len` bytes of
    /// initial data, which "MUST NOT be larger than 2^14" (draft -11 §8.2).
    pub fn new(
        initial_data_len: u16,
        methods: impl IntoIterator<Item = Method>,
    ) -> Result<Self, Error> {
        if usize::from(initial_data_len) > MAX_INITIAL_DATA_LEN {
            return Err(Error::InitialDataTooLong(initial_data_len));
        }
        let methods = methods
            .into_iter()
            .filter(|&m| m != Method::NO_AUTHENTICATION)
            .collect();
        Ok(Self {
            initial_data_len,
            methods,
        })
    }

    /// Bytes of initial data that follow the Request.
    pub fn initial_data_len(&self) -> u16 {
        self.initial_data_len
    }

    /// The advertised methods, in the client's order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Reads an option body. `Ok(None)` if it is too short to hold the
    /// Initial Data Length (a malformed option, kept raw); an error if that
    /// length is over the limit, which the digest (§4.9) makes a protocol
    /// violation wherever it appears.
    pub(crate) fn from_body(body: &[u8]) -> Result<Option<Self>, Error> {
        let mut r = Reader::new(body);
        let Ok(idl) = r.u16() else {
            return Ok(None);
        };
        Self::new(idl, r.rest().iter().copied().map(Method)).map(Some)
    }

    /// Body length before padding.
    pub(crate) fn body_len(&self) -> usize {
        2 + self.methods.len()
    }

    pub(crate) fn encode_body<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.initial_data_len);
        for m in &self.methods {
            buf.put_u8(m.0);
        }
    }
}

/// The RFC 1929 sub-negotiation version.
pub const USERNAME_PASSWORD_VERSION: u8 = rfc1929::VERSION;

/// A 0-RTT username/password request: the Authentication Data of method 2
/// (RFC 1929 `VER ULEN UNAME PLEN PASSWD`).
///
/// [`UsernamePassword::new`] accepts 1 to 255 bytes each, as RFC 1929
/// draws them; the reader also accepts empty fields, so a server can answer
/// them with an authentication failure rather than a decode error. `Debug`
/// does not print the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UsernamePassword {
    username: Vec<u8>,
    password: Vec<u8>,
}

impl UsernamePassword {
    /// Credentials to send; each must be 1 to 255 bytes.
    pub fn new(username: impl Into<Vec<u8>>, password: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let (username, password) = (username.into(), password.into());
        for field in [&username, &password] {
            if !(1..=255).contains(&field.len()) {
                return Err(Error::CredentialLength(field.len()));
            }
        }
        Ok(Self { username, password })
    }

    /// The username.
    pub fn username(&self) -> &[u8] {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &[u8] {
        &self.password
    }

    /// Decodes `VER ULEN UNAME PLEN PASSWD` from the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        // Empty fields are read, to be answered with a failure.
        let (username, password) =
            rfc1929::read_request(r, EmptyFields::Accept).map_err(|f| f.map_err(Error::from))?;
        Ok(Self {
            username: username.to_vec(),
            password: password.to_vec(),
        })
    }

    /// Reads the whole data of an Authentication Data option of method 2;
    /// bytes after the password are padding and ignored.
    pub fn from_auth_data(data: &[u8]) -> Result<Self, Error> {
        match Self::decode(data)? {
            Decoded::Complete { msg, .. } => Ok(msg),
            Decoded::NeedMore(_) => Err(Error::TruncatedCredentials),
        }
    }

    /// Writes `VER ULEN UNAME PLEN PASSWD` (no padding).
    pub fn encode<B: Out>(&self, buf: &mut B) {
        // Both fields are at most 255 bytes: checked by `new`, or read
        // after a one-byte length.
        rfc1929::write_request(buf, &self.username, &self.password);
    }

    /// Bytes [`UsernamePassword::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        rfc1929::request_len(&self.username, &self.password)
    }

    /// The Authentication Data option that carries these credentials.
    pub fn to_option(&self) -> SocksOption {
        let mut data = Vec::with_capacity(self.encoded_len());
        self.encode(&mut data);
        SocksOption::AuthData {
            method: Method::USERNAME_PASSWORD,
            data,
        }
    }
}

impl fmt::Debug for UsernamePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsernamePassword")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The proxy's username/password answer: the Authentication Data of
/// method 2 in its Authentication Reply (`VER=1 STATUS`). Status 0 is
/// success, anything else failure (RFC 1929 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsernamePasswordReply {
    /// The status byte.
    pub status: u8,
}

impl UsernamePasswordReply {
    /// The success answer.
    pub const SUCCESS: Self = Self { status: 0x00 };
    /// The failure answer sixtysocks sends.
    pub const FAILURE: Self = Self { status: 0x01 };

    /// True for status 0.
    pub fn is_success(&self) -> bool {
        self.status == 0
    }

    /// Decodes `VER STATUS` from the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        let inner = |r: &mut Reader<'_>| -> Result<Self, Fail<Error>> {
            let status = rfc1929::read_reply(r).map_err(|f| f.map_err(Error::from))?;
            Ok(Self { status })
        };
        codec::finish(inner(&mut r).map(|m| (m, r.consumed())))
    }

    /// Reads the whole data of an Authentication Data option of method 2;
    /// bytes after the status are padding and ignored.
    pub fn from_auth_data(data: &[u8]) -> Result<Self, Error> {
        match Self::decode(data)? {
            Decoded::Complete { msg, .. } => Ok(msg),
            Decoded::NeedMore(_) => Err(Error::TruncatedCredentials),
        }
    }

    /// Writes `VER STATUS`.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        rfc1929::write_reply(buf, self.status);
    }

    /// Bytes [`UsernamePasswordReply::encode`] writes (2).
    pub fn encoded_len(&self) -> usize {
        2
    }

    /// The Authentication Data option that carries this answer.
    pub fn to_option(&self) -> SocksOption {
        SocksOption::AuthData {
            method: Method::USERNAME_PASSWORD,
            data: vec![USERNAME_PASSWORD_VERSION, self.status],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_user_pass_of_v10() {
        // V10 without the option header and method byte.
        let data = b"\x01\x04user\x04pass";
        let up = UsernamePassword::from_auth_data(data).expect("valid");
        assert_eq!(up, UsernamePassword::new("user", "pass").expect("valid"));
        let mut buf = Vec::new();
        up.encode(&mut buf);
        assert_eq!(buf, data);
        assert_eq!(up.encoded_len(), data.len());
    }

    #[test]
    fn ignores_padding_after_credentials() {
        // studentmain's client option body: "alice"/"secret" and one NUL.
        let data = b"\x01\x05alice\x06secret\x00";
        let up = UsernamePassword::from_auth_data(data).expect("valid");
        assert_eq!(up.username(), b"alice");
        assert_eq!(up.password(), b"secret");
        assert_eq!(
            UsernamePassword::decode(data),
            Ok(Decoded::Complete {
                msg: up,
                len: data.len() - 1
            })
        );
    }

    #[test]
    fn split_at_every_byte_needs_more() {
        let data = b"\x01\x04user\x04pass";
        for k in 0..data.len() {
            match UsernamePassword::decode(&data[..k]) {
                Ok(Decoded::NeedMore(n)) => assert!(n >= 1 && k + n <= data.len()),
                other => panic!("prefix {k}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_wrong_version_and_truncation() {
        assert_eq!(
            UsernamePassword::from_auth_data(b"\x05\x01a\x01b"),
            Err(Error::UsernamePasswordVersion(5))
        );
        assert_eq!(
            UsernamePassword::from_auth_data(b"\x01\x04us"),
            Err(Error::TruncatedCredentials)
        );
        assert_eq!(
            UsernamePasswordReply::from_auth_data(b"\x01"),
            Err(Error::TruncatedCredentials)
        );
    }

    #[test]
    fn accepts_empty_fields_on_read_but_not_on_write() {
        let up = UsernamePassword::from_auth_data(b"\x01\x00\x00").expect("RFC 1929 bytes");
        assert!(up.username().is_empty() && up.password().is_empty());
        assert_eq!(
            UsernamePassword::new("", "x"),
            Err(Error::CredentialLength(0))
        );
        assert_eq!(
            UsernamePassword::new("x", vec![b'p'; 256]),
            Err(Error::CredentialLength(256))
        );
        assert!(UsernamePassword::new(vec![b'u'; 255], vec![b'p'; 255]).is_ok());
    }

    #[test]
    fn debug_hides_the_password() {
        let up = UsernamePassword::new("user", "hunter2").expect("valid");
        assert!(!format!("{up:?}").contains("hunter2"));
    }

    #[test]
    fn decodes_password_replies_of_v12_and_studentmain() {
        // V12 data (padded) and studentmain's unpadded data.
        for data in [&[0x01, 0x00, 0x00][..], &[0x01, 0x00]] {
            let r = UsernamePasswordReply::from_auth_data(data).expect("valid");
            assert!(r.is_success());
        }
        let fail = UsernamePasswordReply::from_auth_data(&[0x01, 0x01, 0x00]).expect("valid");
        assert_eq!(fail, UsernamePasswordReply::FAILURE);
        let mut buf = Vec::new();
        fail.encode(&mut buf);
        assert_eq!(buf, [0x01, 0x01]);
    }

    #[test]
    fn advertisement_drops_zero_methods_and_bounds_initial_data() {
        let a = AuthMethodAdvertisement::from_body(&[0x00, 0x05, 0x00, 0x00])
            .expect("in range")
            .expect("long enough");
        assert_eq!(a.initial_data_len(), 5);
        assert!(a.methods().is_empty());
        let a = AuthMethodAdvertisement::from_body(&[0x00, 0x00, 0x01, 0x00, 0x02, 0x00])
            .expect("in range")
            .expect("long enough");
        assert_eq!(a.methods(), [Method::GSSAPI, Method::USERNAME_PASSWORD]);
        assert_eq!(AuthMethodAdvertisement::from_body(&[0x00]), Ok(None));
        assert_eq!(
            AuthMethodAdvertisement::from_body(&[0x40, 0x01, 0x00, 0x00]),
            Err(Error::InitialDataTooLong(16385))
        );
        assert!(AuthMethodAdvertisement::new(16384, []).is_ok());
    }
}
