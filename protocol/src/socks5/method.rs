//! SOCKS5 method negotiation (RFC 1928 §3): the client's version identifier
//! / method selection message and the server's METHOD selection message.
//!
//! ```text
//! client: VER(5) NMETHODS(1..255) METHODS...
//! server: VER(5) METHOD
//! ```

use crate::Decoded;
use crate::codec::{self, Fail, Out, Reader};

use super::{Error, VERSION};

crate::code_point! {
    /// An authentication method (RFC 1928 §3, IANA "SOCKS Methods").
    pub struct Method(u8) {
        /// X'00' NO AUTHENTICATION REQUIRED.
        NO_AUTHENTICATION = 0x00,
        /// X'01' GSSAPI (RFC 1961).
        GSSAPI = 0x01,
        /// X'02' USERNAME/PASSWORD (RFC 1929).
        USERNAME_PASSWORD = 0x02,
        /// X'FF' NO ACCEPTABLE METHODS, only ever sent by the server.
        NO_ACCEPTABLE_METHODS = 0xff,
    }
}

/// Most methods one request can list: NMETHODS is one byte.
pub const MAX_METHODS: usize = 255;

/// The client's first message: the methods it supports.
///
/// Holds 1 to 255 methods by construction ([`MethodRequest::new`] checks,
/// decoding refuses NMETHODS 0), so encoding cannot fail. Duplicates and
/// unknown methods are kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodRequest {
    methods: Vec<Method>,
}

impl MethodRequest {
    /// A request offering `methods`, in order of preference.
    ///
    /// Fails with [`Error::NoMethods`] if empty and
    /// [`Error::TooManyMethods`] past 255.
    pub fn new(methods: Vec<Method>) -> Result<Self, Error> {
        if methods.is_empty() {
            return Err(Error::NoMethods);
        }
        if methods.len() > MAX_METHODS {
            return Err(Error::TooManyMethods(methods.len()));
        }
        Ok(Self { methods })
    }

    /// The methods offered, as sent.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// True if `method` is among those offered.
    pub fn offers(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }

    /// The methods, consuming the request.
    pub fn into_methods(self) -> Vec<Method> {
        self.methods
    }

    /// Decodes a method request from the front of `buf`.
    ///
    /// Errors: [`Error::UnsupportedVersion`] (close silently),
    /// [`Error::NoMethods`] (answer `05 FF`, see
    /// [`Error::method_selection`]).
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version).into());
        }
        let n = usize::from(r.u8()?);
        if n == 0 {
            return Err(Error::NoMethods.into());
        }
        // At most 255 bytes: NMETHODS is one byte.
        let methods = r.take(n)?.iter().copied().map(Method).collect();
        Ok(Self { methods })
    }

    /// Writes the request.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        // 1..=255 by construction.
        buf.put_u8(self.methods.len() as u8);
        for m in &self.methods {
            buf.put_u8(m.0);
        }
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        2 + self.methods.len()
    }
}

/// The server's answer to a [`MethodRequest`]: the method chosen, or
/// [`Method::NO_ACCEPTABLE_METHODS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodSelection {
    /// The selected method.
    pub method: Method,
}

impl MethodSelection {
    /// Selects `method`.
    pub const fn new(method: Method) -> Self {
        Self { method }
    }

    /// Decodes a method selection from the front of `buf`. Any method value
    /// is accepted; only VER is checked ([`Error::UnsupportedVersion`]).
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(Self::decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    fn decode_inner(r: &mut Reader<'_>) -> Result<Self, Fail<Error>> {
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version).into());
        }
        Ok(Self {
            method: Method(r.u8()?),
        })
    }

    /// Writes the selection.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u8(VERSION);
        buf.put_u8(self.method.0);
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

    fn request_round_trips(bytes: &[u8], methods: &[Method]) {
        let expected = MethodRequest::new(methods.to_vec()).expect("valid");
        assert_decodes(MethodRequest::decode, bytes, &expected);
        assert_eq!(expected.methods(), methods);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    fn selection_round_trips(bytes: &[u8], method: Method) {
        let expected = MethodSelection::new(method);
        assert_decodes(MethodSelection::decode, bytes, &expected);
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(expected.encoded_len(), bytes.len());
    }

    #[test]
    fn no_authentication_request_round_trips() {
        request_round_trips(&hex("05 01 00"), &[Method::NO_AUTHENTICATION]);
    }

    #[test]
    fn two_method_request_round_trips() {
        let bytes = hex("05 02 00 02");
        request_round_trips(
            &bytes,
            &[Method::NO_AUTHENTICATION, Method::USERNAME_PASSWORD],
        );
        let (req, _) = MethodRequest::decode(&bytes)
            .expect("valid")
            .complete()
            .expect("complete");
        assert!(req.offers(Method::USERNAME_PASSWORD));
        assert!(!req.offers(Method::GSSAPI));
    }

    #[test]
    fn keeps_unknown_and_duplicate_methods() {
        request_round_trips(
            &hex("05 03 80 02 80"),
            &[Method(0x80), Method::USERNAME_PASSWORD, Method(0x80)],
        );
    }

    #[test]
    fn accepts_255_methods() {
        let methods: Vec<Method> = (0..=254).map(Method).collect();
        let mut bytes = vec![0x05, 0xff];
        bytes.extend(0..=254u8);
        request_round_trips(&bytes, &methods);
    }

    #[test]
    fn selections_round_trip() {
        selection_round_trips(&hex("05 00"), Method::NO_AUTHENTICATION);
        selection_round_trips(&hex("05 02"), Method::USERNAME_PASSWORD);
        selection_round_trips(&hex("05 ff"), Method::NO_ACCEPTABLE_METHODS);
    }

    #[test]
    fn rejects_zero_methods() {
        let err = Error::NoMethods;
        assert_rejects(MethodRequest::decode, &hex("05 00"), &err);
        assert_eq!(err.method_selection(), Some(Method::NO_ACCEPTABLE_METHODS));
        assert_eq!(err.reply(), None);
        let mut out = Vec::new();
        MethodSelection::new(err.method_selection().expect("answer")).encode(&mut out);
        assert_eq!(out, hex("05 ff"));
    }

    #[test]
    fn rejects_socks4_version_without_answer() {
        let err = Error::UnsupportedVersion(4);
        assert_rejects(MethodRequest::decode, &hex("04 01 00 50"), &err);
        assert_eq!(err.method_selection(), None);
        assert_eq!(err.reply(), None);
    }

    #[test]
    fn rejects_selection_with_wrong_version() {
        assert_rejects(
            MethodSelection::decode,
            &hex("01 00"),
            &Error::UnsupportedVersion(1),
        );
    }

    #[test]
    fn new_refuses_empty_and_oversized_lists() {
        assert_eq!(MethodRequest::new(Vec::new()), Err(Error::NoMethods));
        assert_eq!(
            MethodRequest::new(vec![Method::NO_AUTHENTICATION; 256]),
            Err(Error::TooManyMethods(256))
        );
    }

    #[test]
    fn debug_names_methods() {
        assert_eq!(
            format!("{:?}", Method::USERNAME_PASSWORD),
            "USERNAME_PASSWORD"
        );
        assert_eq!(format!("{:?}", Method(0x80)), "Method(0x80)");
    }
}
