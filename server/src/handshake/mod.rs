//! Client handshakes, one module per protocol, on top of [`Framed`]: a
//! buffered reader that decodes messages incrementally with the protocol
//! crate and keeps the bytes that follow a handshake for the target.
//!
//! - [`convert`]: the 0-RTT TCP Convert protocol (RFC 8803).
//! - [`socks5`]: SOCKS5 (RFC 1928, RFC 1929) and SOCKS4/4a.
//! - [`socks6`]: SOCKS6 (draft -11) with 0-RTT initial data and
//!   username/password.

pub mod convert;
pub mod socks5;
pub mod socks6;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use sixpath_protocol::Decoded;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::outbound::ConnectError;

/// Largest handshake the server buffers: a SOCKS6 Request with 16 KiB of
/// options and 16 KiB of initial data, plus headers.
pub const MAX_HANDSHAKE: usize = 2 * 16_384 + 1024;

/// Why a handshake read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The message is invalid.
    #[error("malformed message: {0}")]
    Invalid(E),
    /// The client closed before the message was complete.
    #[error("client closed mid-handshake")]
    Eof,
    /// The message would exceed [`MAX_HANDSHAKE`].
    #[error("handshake larger than {MAX_HANDSHAKE} bytes")]
    TooLarge,
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// A client stream with a read buffer.
#[derive(Debug)]
pub struct Framed<S> {
    io: S,
    buf: BytesMut,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps `io`.
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(1024),
            local: None,
            peer: None,
        }
    }

    /// Records the connection's local and peer addresses, which BIND and
    /// UDP ASSOCIATE need (where the client reaches this server, and from
    /// where it sends).
    #[must_use]
    pub fn with_addresses(mut self, local: Option<SocketAddr>, peer: Option<SocketAddr>) -> Self {
        self.local = local;
        self.peer = peer;
        self
    }

    /// The connection's local address, if recorded.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The client's address, if recorded.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    async fn fill(&mut self) -> Result<(), ReadError<std::convert::Infallible>> {
        if self.buf.len() >= MAX_HANDSHAKE {
            return Err(ReadError::TooLarge);
        }
        // The buffer grows with what the client sends (doubling, at most
        // 16 KiB a step) rather than in one 16 KiB step: an idle or slow
        // client costs its 1 KiB buffer, not the largest handshake.
        let want = (MAX_HANDSHAKE - self.buf.len())
            .min(16 * 1024)
            .min(self.buf.len().max(1024));
        self.buf.reserve(want);
        let n = (&mut self.io)
            .take(want as u64)
            .read_buf(&mut self.buf)
            .await?;
        if n == 0 { Err(ReadError::Eof) } else { Ok(()) }
    }

    /// The first byte, without consuming it.
    pub async fn peek_u8(&mut self) -> Result<u8, ReadError<std::convert::Infallible>> {
        while self.buf.is_empty() {
            self.fill().await?;
        }
        Ok(self.buf.first().copied().unwrap_or_default())
    }

    /// Decodes the next message with `decode`, reading as needed.
    pub async fn next<T, E>(
        &mut self,
        decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
    ) -> Result<T, ReadError<E>> {
        loop {
            match decode(&self.buf).map_err(ReadError::Invalid)? {
                Decoded::Complete { msg, len } => {
                    self.buf.advance(len);
                    return Ok(msg);
                }
                Decoded::NeedMore(n) => {
                    if self.buf.len().saturating_add(n) > MAX_HANDSHAKE {
                        return Err(ReadError::TooLarge);
                    }
                    self.fill().await.map_err(widen)?;
                }
            }
        }
    }

    /// Exactly `n` bytes (e.g. SOCKS6 initial data), `n <= MAX_HANDSHAKE`.
    pub async fn take(
        &mut self,
        n: usize,
    ) -> Result<BytesMut, ReadError<std::convert::Infallible>> {
        if n > MAX_HANDSHAKE {
            return Err(ReadError::TooLarge);
        }
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.split_to(n))
    }

    /// Writes `bytes` to the client.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Writes a final answer, half-closes and drains what the client still
    /// sends for a moment, so the kernel does not answer unread bytes with
    /// a reset that would destroy the answer (SOCKS6 digest §2.2).
    pub async fn reject(mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.io.write_all(bytes).await;
        }
        let _ = self.io.shutdown().await;
        let drain = async {
            let mut sink = vec![0u8; 4096];
            let mut total = 0usize;
            while let Ok(n) = self.io.read(&mut sink).await {
                total += n;
                if n == 0 || total > 1 << 20 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    /// Reads into `sink` and drops what was read; false once the client
    /// closed or the read failed.
    pub async fn read_discard(&mut self, sink: &mut [u8]) -> bool {
        matches!(self.io.read(sink).await, Ok(n) if n > 0)
    }

    /// The client stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The bytes read and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The stream and the bytes read past the handshake (application data
    /// for the target).
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }
}

/// Runs a handshake read until `deadline`: the message, or `Err(Some(e))`
/// for an invalid one (the caller sends the protocol's answer), or
/// `Err(None)` when there is nothing to answer (the client closed, the
/// message is too large, a read failed, or the deadline passed); then `out`
/// already says why.
pub async fn read_by<T, E: std::fmt::Display>(
    deadline: tokio::time::Instant,
    out: &mut crate::conn::Outcome,
    read: impl Future<Output = Result<T, ReadError<E>>>,
) -> Result<T, Option<E>> {
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(ReadError::Invalid(e))) => Err(Some(e)),
        Ok(Err(e)) => {
            out.reply = e.to_string();
            Err(None)
        }
        Err(_) => {
            out.reply = "handshake timeout".into();
            Err(None)
        }
    }
}

fn widen<E>(e: ReadError<std::convert::Infallible>) -> ReadError<E> {
    match e {
        ReadError::Invalid(never) => match never {},
        ReadError::Eof => ReadError::Eof,
        ReadError::TooLarge => ReadError::TooLarge,
        ReadError::Io(e) => ReadError::Io(e),
    }
}

/// The SOCKS reply code (the same values in SOCKS5 and SOCKS6, 0x01–0x09)
/// for a failed outbound connection. SOCKS5 has no 0x09: `socks5` maps a
/// timeout to host unreachable (0x04) itself.
pub fn socks_reply_code(e: &ConnectError) -> u8 {
    match e {
        ConnectError::Denied { .. } => 0x02,
        ConnectError::NetworkUnreachable { .. } => 0x03,
        ConnectError::HostUnreachable { .. } | ConnectError::Dns { .. } => 0x04,
        ConnectError::Refused(_) => 0x05,
        ConnectError::TtlExpired(_) => 0x06,
        ConnectError::TimedOut(_) => 0x09,
        ConnectError::Resources(_) | ConnectError::Other(_) => 0x01,
    }
}
