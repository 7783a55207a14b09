//! Basic proxy credentials (`Proxy-Authorization: Basic <base64>`, RFC 7617
//! with RFC 7235 §4.4) and the small, strict base64 codec they need.
//!
//! The base64 decoder takes the standard alphabet of RFC 4648 §4 only (no
//! URL-safe `-`/`_`, no whitespace or line breaks). Trailing `=` padding is
//! **tolerated either way**: present, it must complete the last 4-character
//! group; absent, a last group of 2 or 3 characters is accepted (a tolerant
//! reader: the credentials are unambiguous without it). The unused low bits
//! of the last character must be zero (RFC 4648 §3.5), so every credential
//! has exactly one accepted spelling with padding and one without.

use core::fmt;

use super::Error;

/// A user name and password from the Basic scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user-id: everything before the first `:` (RFC 7617 §2 forbids a
    /// colon in it).
    pub username: String,
    /// The password: everything after the first `:`, which may contain `:`.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// `username` and `password`. A `username` containing `:` cannot be
    /// sent: it would be read back split at its first colon.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Reads a `Proxy-Authorization` field value. `Ok(None)` if it uses a
    /// scheme other than Basic (the proxy then treats the request as
    /// unauthenticated); [`Error::BadCredentials`] if it is Basic but
    /// malformed: no token, bad base64, no `:`, or not UTF-8 (RFC 7617 §2.1
    /// leaves the charset to the `charset` parameter of the challenge, which
    /// sixpath sets to nothing; clients send UTF-8 in practice).
    pub fn from_header_value(value: &[u8]) -> Result<Option<Self>, Error> {
        let value = trim_ows(value);
        let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (
                value.get(..i).unwrap_or_default(),
                value.get(i..).unwrap_or_default(),
            ),
            None => (value, &[][..]),
        };
        // "It uses a case-insensitive token as a means to identify the
        // authentication scheme" (RFC 7235 §2.1).
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Ok(None);
        }
        let token = trim_ows(rest);
        if token.is_empty() {
            return Err(Error::BadCredentials);
        }
        let decoded = base64_decode(token).ok_or(Error::BadCredentials)?;
        let text = String::from_utf8(decoded).map_err(|_| Error::BadCredentials)?;
        let (username, password) = text.split_once(':').ok_or(Error::BadCredentials)?;
        Ok(Some(Self::new(username, password)))
    }

    /// The field value `Basic <base64(user:password)>`, padded.
    pub fn to_header_value(&self) -> String {
        let mut plain = Vec::with_capacity(self.username.len() + 1 + self.password.len());
        plain.extend_from_slice(self.username.as_bytes());
        plain.push(b':');
        plain.extend_from_slice(self.password.as_bytes());
        let mut out = String::from("Basic ");
        out.push_str(&base64_encode(&plain));
        out
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes standard base64 (see the module doc for the exact rules), or
/// `None` if `text` is not valid.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let unpadded = match text {
        [rest @ .., b'=', b'='] | [rest @ .., b'='] => {
            if !text.len().is_multiple_of(4) {
                return None;
            }
            rest
        }
        _ => text,
    };
    let mut out = Vec::with_capacity(unpadded.len() / 4 * 3 + 2);
    let mut chunks = unpadded.chunks_exact(4);
    for chunk in &mut chunks {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        let [_, a, b, c] = acc.to_be_bytes();
        out.extend_from_slice(&[a, b, c]);
    }
    let tail = chunks.remainder();
    let mut acc = 0u32;
    for &c in tail {
        acc = (acc << 6) | sextet(c)?;
    }
    match tail.len() {
        0 => {}
        // 12 bits carry one byte; the low 4 must be zero.
        2 if acc.trailing_zeros() >= 4 => out.push((acc >> 4) as u8),
        // 18 bits carry two bytes; the low 2 must be zero.
        3 if acc.trailing_zeros() >= 2 => out.extend_from_slice(&((acc >> 2) as u16).to_be_bytes()),
        _ => return None,
    }
    Some(out)
}

/// Encodes `bytes` as standard base64 with `=` padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 4];
        for (dst, &src) in group.iter_mut().skip(1).zip(chunk) {
            *dst = src;
        }
        let acc = u32::from_be_bytes(group);
        for i in 0..4 {
            // A 3-byte chunk fills 4 characters, 2 bytes 3, 1 byte 2.
            let c = if i <= chunk.len() {
                let index = (acc >> (18 - 6 * i)) & 0x3f;
                ALPHABET.get(index as usize).copied().unwrap_or(b'=')
            } else {
                b'='
            };
            out.push(char::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc7617_example() {
        let c = Credentials::from_header_value(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
            .expect("valid")
            .expect("basic");
        assert_eq!(c, Credentials::new("Aladdin", "open sesame"));
        assert_eq!(c.to_header_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn accepts_unpadded_base64_and_any_case_scheme() {
        let c = Credentials::from_header_value(b"bAsIc   QWxhZGRpbjpvcGVuIHNlc2FtZQ  ")
            .expect("valid")
            .expect("basic");
        assert_eq!(c, Credentials::new("Aladdin", "open sesame"));
    }

    #[test]
    fn ignores_other_schemes() {
        assert_eq!(Credentials::from_header_value(b"Bearer abc.def"), Ok(None));
        assert_eq!(
            Credentials::from_header_value(b"Digest username=\"a\""),
            Ok(None)
        );
    }

    #[test]
    fn rejects_bad_basic_syntax() {
        for bad in [
            &b"Basic"[..],
            b"Basic ",
            b"Basic QWxh ZGRp",
            b"Basic QWxhZGRpbg==", // "Aladdin": no colon
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=",
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==", // non-zero trailing bits
            b"Basic QWxhZGRp-jpv",
            b"Basic Q",
            b"Basic =QWxh",
            b"Basic //79", // not UTF-8
        ] {
            assert_eq!(
                Credentials::from_header_value(bad),
                Err(Error::BadCredentials),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn password_may_contain_colons_and_be_empty() {
        let c = Credentials::new("u", "a:b:c");
        assert_eq!(
            Credentials::from_header_value(c.to_header_value().as_bytes()),
            Ok(Some(c))
        );
        let empty = Credentials::new("", "");
        assert_eq!(empty.to_header_value(), "Basic Og==");
        assert_eq!(
            Credentials::from_header_value(b"Basic Og=="),
            Ok(Some(empty))
        );
    }

    #[test]
    fn base64_round_trips_every_tail_length() {
        let data: Vec<u8> = (0..=255).collect();
        for n in 0..20 {
            let enc = base64_encode(&data[..n]);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(base64_decode(enc.as_bytes()).as_deref(), Some(&data[..n]));
            let unpadded = enc.trim_end_matches('=');
            assert_eq!(
                base64_decode(unpadded.as_bytes()).as_deref(),
                Some(&data[..n])
            );
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn debug_redacts_password() {
        let c = Credentials::new("alice", "secret");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
