//! Session IDs (draft -11 §8.4, spec digest §3.6 and §4.3).
//!
//! A session spans several Requests: the client asks for one with a Session
//! Request option, the proxy answers with a Session ID, and later Requests
//! carry that ID instead of authenticating again. The session options
//! without a body (Session Request, OK, Invalid, Teardown) are plain
//! variants of [`SocksOption`](super::SocksOption); this module holds the
//! ID.

use core::fmt;

use super::error::Error;

/// An opaque Session ID: "The size MUST be a multiple of 4. MUST NOT be
/// empty" (draft -11 §8.4).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Vec<u8>);

impl SessionId {
    /// Checks that `bytes` is a non-empty multiple of 4 bytes long.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() % 4 != 0 {
            return Err(Error::SessionIdLength(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl AsRef<[u8]> for SessionId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_unaligned_ids() {
        assert_eq!(SessionId::new([]), Err(Error::SessionIdLength(0)));
        assert_eq!(SessionId::new([1, 2, 3]), Err(Error::SessionIdLength(3)));
        assert_eq!(SessionId::new([0; 6]), Err(Error::SessionIdLength(6)));
        let id = SessionId::new([1, 2, 3, 4, 5, 6, 7, 8]).expect("8 bytes");
        assert_eq!(id.as_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(format!("{id:?}"), "SessionId(0102030405060708)");
    }
}
