//! Path probes: the small keyed UDP echo a sixpath client sends over each
//! of its paths to judge the path's health (`docs/probe.md`).
//!
//! A probe goes to the UDP port of a SOCKS6 listener, the port SOCKS6
//! datagrams use. All integers are big-endian:
//!
//! ```text
//! offset size
//!  0     4   magic "SXPP" (0x53 0x58 0x50 0x50); a SOCKS6 datagram starts
//!            with its version, 0x06, so the two never collide
//!  4     1   version = 1
//!  5     1   type: 1 Echo Request, 2 Echo Reply
//!  6     2   path: opaque to the server, copied into the reply
//!  8     4   sequence: opaque, copied
//! 12     8   sent: opaque (the client's clock), copied
//! 20     2   token length L: Request 1..=64, Reply 0
//! 22     L   token: a SOCKS6 Session ID the server granted (Request only)
//! 22+L   P   padding, ignored
//! ```
//!
//! A Request is at most [`MAX_LEN`] bytes; a Reply is exactly
//! [`REPLY_LEN`] bytes, so a reply is always shorter than the request it
//! answers: the echo cannot amplify.
//!
//! Datagrams arrive whole, so [`decode`] answers with the probe or an
//! [`Error`], never with "need more".

use crate::codec::{Fail, Incomplete, Out, Reader};

/// The first four bytes of every probe.
pub const MAGIC: [u8; 4] = *b"SXPP";
/// The version this module speaks.
pub const VERSION: u8 = 1;
/// Longest Request.
pub const MAX_LEN: usize = 512;
/// Length of a Reply, and of a probe's fixed header.
pub const REPLY_LEN: usize = 22;
/// Longest token.
pub const MAX_TOKEN: usize = 64;

/// Echo Request or Echo Reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// From the client; carries a token.
    Request,
    /// From the server; carries none.
    Reply,
}

impl ProbeKind {
    fn code(self) -> u8 {
        match self {
            Self::Request => 1,
            Self::Reply => 2,
        }
    }
}

/// One probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Request or Reply.
    pub kind: ProbeKind,
    /// The client's path number, copied into the reply.
    pub path: u16,
    /// Sequence number, copied into the reply.
    pub seq: u32,
    /// The client's send time, copied into the reply.
    pub sent: u64,
    /// A Session ID the server granted (Request); empty in a Reply.
    pub token: Vec<u8>,
}

/// Why a datagram is not a valid probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the fixed header, or than its token.
    #[error("probe truncated: {0} more byte(s) needed")]
    Truncated(usize),
    /// Not the probe magic.
    #[error("not a probe (bad magic)")]
    BadMagic,
    /// A version this module does not speak.
    #[error("probe version {0} is not supported")]
    Version(u8),
    /// Neither Request nor Reply.
    #[error("unknown probe type {0}")]
    UnknownType(u8),
    /// A Request without a token or with one over [`MAX_TOKEN`] bytes, or a
    /// Reply with one.
    #[error("token length {len} is invalid for a {kind:?}")]
    TokenLength {
        /// Request or Reply.
        kind: ProbeKind,
        /// The length found.
        len: usize,
    },
    /// Longer than [`MAX_LEN`].
    #[error("probe of {0} bytes is longer than 512")]
    TooLong(usize),
}

impl From<Incomplete> for Error {
    fn from(i: Incomplete) -> Self {
        Self::Truncated(i.0)
    }
}

/// Whether `datagram` starts with the probe magic (and so is a probe, valid
/// or not, rather than a SOCKS6 datagram).
pub fn is_probe(datagram: &[u8]) -> bool {
    datagram.starts_with(&MAGIC)
}

/// Decodes one datagram as a probe.
pub fn decode(datagram: &[u8]) -> Result<Probe, Error> {
    if datagram.len() > MAX_LEN {
        return Err(Error::TooLong(datagram.len()));
    }
    decode_inner(&mut Reader::new(datagram)).map_err(|f| match f {
        Fail::Incomplete(n) => Error::Truncated(n),
        Fail::Invalid(e) => e,
    })
}

fn decode_inner(r: &mut Reader<'_>) -> Result<Probe, Fail<Error>> {
    if r.array::<4>()? != MAGIC {
        return Err(Fail::Invalid(Error::BadMagic));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(Fail::Invalid(Error::Version(version)));
    }
    let kind = match r.u8()? {
        1 => ProbeKind::Request,
        2 => ProbeKind::Reply,
        other => return Err(Fail::Invalid(Error::UnknownType(other))),
    };
    let path = r.u16()?;
    let seq = r.u32()?;
    let sent = r.u64()?;
    let len = usize::from(r.u16()?);
    let valid = match kind {
        ProbeKind::Request => (1..=MAX_TOKEN).contains(&len),
        ProbeKind::Reply => len == 0,
    };
    if !valid {
        return Err(Fail::Invalid(Error::TokenLength { kind, len }));
    }
    let token = r.take(len)?.to_vec();
    // Padding after the token is ignored.
    Ok(Probe {
        kind,
        path,
        seq,
        sent,
        token,
    })
}

impl Probe {
    /// A Request for `path` with `seq`, `sent` and `token`.
    pub fn request(path: u16, seq: u32, sent: u64, token: Vec<u8>) -> Self {
        Self {
            kind: ProbeKind::Request,
            path,
            seq,
            sent,
            token,
        }
    }

    /// The Reply to this probe: path, sequence and send time copied, no
    /// token.
    #[must_use]
    pub fn reply(&self) -> Self {
        Self {
            kind: ProbeKind::Reply,
            path: self.path,
            seq: self.seq,
            sent: self.sent,
            token: Vec::new(),
        }
    }

    /// Bytes [`Probe::encode`] writes (without padding).
    pub fn encoded_len(&self) -> usize {
        REPLY_LEN + self.token.len()
    }

    /// Writes the probe (no padding; a token over 64 bytes is cut to 64).
    pub fn encode<B: Out>(&self, buf: &mut B) {
        let token = self.token.get(..MAX_TOKEN).unwrap_or(&self.token);
        buf.put_slice(&MAGIC);
        buf.put_u8(VERSION);
        buf.put_u8(self.kind.code());
        buf.put_u16(self.path);
        buf.put_u32(self.seq);
        buf.put_u64(self.sent);
        buf.put_u16(token.len() as u16);
        buf.put_slice(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Request: path 1, seq 7, sent 0x0102030405060708, a 16-byte token.
    const REQUEST: &str = "53585050 01 01 0001 00000007 0102030405060708 0010
        a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
    const REPLY: &str = "53585050 01 02 0001 00000007 0102030405060708 0000";

    fn request() -> Probe {
        Probe::request(1, 7, 0x0102_0304_0506_0708, (0xa0..=0xaf).collect())
    }

    #[test]
    fn request_vector_decodes_and_re_encodes() {
        let bytes = hex(REQUEST);
        assert_eq!(decode(&bytes), Ok(request()));
        let mut out = Vec::new();
        request().encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(request().encoded_len(), bytes.len());
    }

    #[test]
    fn reply_vector_decodes_and_is_22_bytes() {
        let bytes = hex(REPLY);
        assert_eq!(bytes.len(), REPLY_LEN);
        assert_eq!(decode(&bytes), Ok(request().reply()));
        let mut out = Vec::new();
        request().reply().encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_reply_is_shorter_than_any_valid_request() {
        let mut r = request();
        r.token = vec![1];
        assert!(r.reply().encoded_len() < r.encoded_len());
    }

    #[test]
    fn accepts_and_ignores_padding() {
        let mut bytes = hex(REQUEST);
        bytes.extend([0xee; 100]);
        assert_eq!(decode(&bytes), Ok(request()));
    }

    #[test]
    fn rejects_bad_magic_version_and_type() {
        let mut b = hex(REQUEST);
        b[0] = 0x06;
        assert_eq!(decode(&b), Err(Error::BadMagic));
        assert!(!is_probe(&b));
        let mut b = hex(REQUEST);
        b[4] = 2;
        assert_eq!(decode(&b), Err(Error::Version(2)));
        let mut b = hex(REQUEST);
        b[5] = 3;
        assert_eq!(decode(&b), Err(Error::UnknownType(3)));
    }

    #[test]
    fn rejects_requests_without_token_or_with_a_long_one_and_replies_with_one() {
        let mut b = hex(REPLY);
        b[5] = 1;
        assert!(matches!(decode(&b), Err(Error::TokenLength { len: 0, .. })));
        let mut long = request();
        long.token = vec![0; 65];
        let mut b = Vec::new();
        b.extend(&hex(REQUEST)[..20]);
        b.extend(65u16.to_be_bytes());
        b.extend(&long.token);
        assert!(matches!(
            decode(&b),
            Err(Error::TokenLength { len: 65, .. })
        ));
        let mut b = hex(REQUEST);
        b[5] = 2;
        assert!(matches!(
            decode(&b),
            Err(Error::TokenLength { len: 16, .. })
        ));
    }

    #[test]
    fn rejects_every_truncation() {
        let bytes = hex(REQUEST);
        for n in 0..bytes.len() {
            let r = decode(&bytes[..n]);
            if n >= 4 || n == 0 {
                assert!(matches!(r, Err(Error::Truncated(_))), "{n}: {r:?}");
            }
        }
    }

    #[test]
    fn rejects_datagrams_over_512_bytes() {
        let mut bytes = hex(REQUEST);
        bytes.resize(513, 0);
        assert_eq!(decode(&bytes), Err(Error::TooLong(513)));
        bytes.truncate(512);
        assert_eq!(decode(&bytes), Ok(request()));
    }
}
