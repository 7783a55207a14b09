//! The RFC 1929 username/password wire format, read and written in one
//! place for both protocols that carry it: SOCKS5 sends it as its own
//! sub-negotiation after method X'02' ([`crate::socks5`]), SOCKS6 inside
//! Authentication Data options of method 2 ([`crate::socks6`]).
//!
//! ```text
//! request: VER=1 ULEN UNAME PLEN PASSWD
//! reply:   VER=1 STATUS
//! ```
//!
//! The two protocols differ only in what a zero-length field means to the
//! reader ([`EmptyFields`]); each maps [`Invalid`] into its own error type,
//! which knows the wire answer.

use crate::codec::{Fail, Out, Reader};

/// The VER byte of RFC 1929 messages: "The VER field contains the current
/// version of the subnegotiation, which is X'01'."
pub(crate) const VERSION: u8 = 0x01;

/// What the reader does with a zero-length username or password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyFields {
    /// ULEN 0 is [`Invalid::EmptyUsername`] (nobody to authenticate); PLEN 0
    /// is accepted, because clients configured with a user but no password
    /// send it. SOCKS5, where the decode error has its own answer.
    RejectEmptyUsername,
    /// Both are accepted, so a SOCKS6 server answers them with an
    /// authentication failure like any other wrong credentials.
    Accept,
}

/// Why an RFC 1929 message is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// VER is not 1.
    Version(u8),
    /// ULEN is 0 under [`EmptyFields::RejectEmptyUsername`].
    EmptyUsername,
}

/// Reads `VER ULEN UNAME PLEN PASSWD`: the username and password.
pub(crate) fn read_request<'a>(
    r: &mut Reader<'a>,
    empty: EmptyFields,
) -> Result<(&'a [u8], &'a [u8]), Fail<Invalid>> {
    let version = r.u8()?;
    if version != VERSION {
        return Err(Fail::Invalid(Invalid::Version(version)));
    }
    let ulen = usize::from(r.u8()?);
    if ulen == 0 && empty == EmptyFields::RejectEmptyUsername {
        return Err(Fail::Invalid(Invalid::EmptyUsername));
    }
    let username = r.take(ulen)?;
    let plen = usize::from(r.u8()?);
    let password = r.take(plen)?;
    Ok((username, password))
}

/// Writes `VER ULEN UNAME PLEN PASSWD`. Callers guarantee both fields are
/// at most 255 bytes (checked by their constructors, or read after a
/// one-byte length).
pub(crate) fn write_request<B: Out>(buf: &mut B, username: &[u8], password: &[u8]) {
    buf.put_u8(VERSION);
    buf.put_u8(username.len() as u8);
    buf.put_slice(username);
    buf.put_u8(password.len() as u8);
    buf.put_slice(password);
}

/// Bytes [`write_request`] writes.
pub(crate) fn request_len(username: &[u8], password: &[u8]) -> usize {
    3 + username.len() + password.len()
}

/// Reads `VER STATUS`: the status (any value; 0 is success).
pub(crate) fn read_reply(r: &mut Reader<'_>) -> Result<u8, Fail<Invalid>> {
    let version = r.u8()?;
    if version != VERSION {
        return Err(Fail::Invalid(Invalid::Version(version)));
    }
    Ok(r.u8()?)
}

/// Writes `VER STATUS`.
pub(crate) fn write_reply<B: Out>(buf: &mut B, status: u8) {
    buf.put_u8(VERSION);
    buf.put_u8(status);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, finish};

    type Credentials = (Vec<u8>, Vec<u8>);

    fn request(bytes: &[u8], empty: EmptyFields) -> Result<Decoded<Credentials>, Invalid> {
        let mut r = Reader::new(bytes);
        finish(read_request(&mut r, empty).map(|(u, p)| ((u.to_vec(), p.to_vec()), r.consumed())))
    }

    #[test]
    fn empty_field_policy_decides_ulen_0_and_both_accept_plen_0() {
        let no_user = [1, 0, 4, b'p', b'a', b's', b's'];
        assert_eq!(
            request(&no_user, EmptyFields::RejectEmptyUsername),
            Err(Invalid::EmptyUsername)
        );
        assert_eq!(
            request(&no_user, EmptyFields::Accept),
            Ok(Decoded::Complete {
                msg: (vec![], b"pass".to_vec()),
                len: 7
            })
        );
        let no_pass = [1, 1, b'u', 0];
        for policy in [EmptyFields::RejectEmptyUsername, EmptyFields::Accept] {
            assert_eq!(
                request(&no_pass, policy),
                Ok(Decoded::Complete {
                    msg: (b"u".to_vec(), vec![]),
                    len: 4
                })
            );
        }
    }

    #[test]
    fn rejects_version_2_under_both_policies_and_asks_for_missing_bytes() {
        for policy in [EmptyFields::RejectEmptyUsername, EmptyFields::Accept] {
            assert_eq!(request(&[2, 1, b'u'], policy), Err(Invalid::Version(2)));
            assert_eq!(request(&[1, 4, b'u'], policy), Ok(Decoded::NeedMore(3)));
        }
    }

    #[test]
    fn request_and_reply_round_trip() {
        let mut buf = Vec::new();
        write_request(&mut buf, b"user", b"pw");
        assert_eq!(buf, b"\x01\x04user\x02pw");
        assert_eq!(request_len(b"user", b"pw"), buf.len());
        let mut r = Reader::new(&buf);
        assert_eq!(
            read_request(&mut r, EmptyFields::Accept).ok(),
            Some((&b"user"[..], &b"pw"[..]))
        );
        let mut buf = Vec::new();
        write_reply(&mut buf, 0x01);
        assert_eq!(buf, [1, 1]);
        assert_eq!(read_reply(&mut Reader::new(&buf)).ok(), Some(1));
    }
}
