//! [`Framed`]: a buffered reader that decodes handshake messages
//! incrementally with the protocol crate and keeps the bytes that follow
//! them (the server's `Framed` pattern, used here on both sides: towards
//! applications and towards the server).

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use sixpath_protocol::Decoded;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest handshake buffered from a peer: a SOCKS6 Request with 16 KiB of
/// options and 16 KiB of initial data, plus headers (an HTTP head is at most
/// 16 KiB).
pub const MAX_HANDSHAKE: usize = 2 * 16_384 + 1024;

/// Why a handshake read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The message is invalid.
    #[error("malformed message: {0}")]
    Invalid(E),
    /// The peer closed before the message was complete.
    #[error("peer closed mid-handshake")]
    Eof,
    /// The message would exceed [`MAX_HANDSHAKE`].
    #[error("handshake larger than {MAX_HANDSHAKE} bytes")]
    TooLarge,
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

impl ReadError<std::convert::Infallible> {
    /// The same error for a decoder with error type `E`.
    pub fn widen<E>(self) -> ReadError<E> {
        match self {
            Self::Invalid(never) => match never {},
            Self::Eof => ReadError::Eof,
            Self::TooLarge => ReadError::TooLarge,
            Self::Io(e) => ReadError::Io(e),
        }
    }
}

/// A stream with a read buffer.
#[derive(Debug)]
pub struct Framed<S> {
    io: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps `io`.
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(1024),
        }
    }

    /// Reads once more into the buffer. EOF is [`ReadError::Eof`].
    pub async fn fill(&mut self) -> Result<(), ReadError<std::convert::Infallible>> {
        if self.buf.len() >= MAX_HANDSHAKE {
            return Err(ReadError::TooLarge);
        }
        // The buffer grows with what the application sends (doubling, at
        // most 16 KiB a step): an idle connection costs its 1 KiB buffer,
        // not the largest handshake.
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

    /// Waits up to `wait` for bytes when none are buffered. Returns whether
    /// the peer has closed its side (EOF seen).
    pub async fn wait_for_data(&mut self, wait: Duration) -> io::Result<bool> {
        if !self.buf.is_empty() || wait.is_zero() {
            return Ok(false);
        }
        match tokio::time::timeout(wait, self.fill()).await {
            Err(_) | Ok(Ok(()) | Err(ReadError::TooLarge)) => Ok(false),
            Ok(Err(ReadError::Eof)) => Ok(true),
            Ok(Err(ReadError::Io(e))) => Err(e),
            Ok(Err(ReadError::Invalid(never))) => match never {},
        }
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
                    self.fill().await.map_err(ReadError::widen)?;
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

    /// Takes every buffered byte.
    pub fn take_buffered(&mut self) -> BytesMut {
        self.buf.split()
    }

    /// Writes `bytes` to the peer.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Writes a final answer, half-closes and drains what the peer still
    /// sends for a moment, so the kernel does not answer unread bytes with
    /// a reset that would destroy the answer.
    pub async fn reject(mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.io.write_all(bytes).await;
        }
        let _ = self.io.shutdown().await;
        // The read buffer is spent: what the peer still sends is read into
        // it and dropped (no sink array inside this future, which the
        // caller's task would hold for the connection's whole life).
        let drain = async {
            let mut total = 0usize;
            self.buf.clear();
            self.buf.reserve(4096);
            loop {
                self.buf.clear();
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
                if total > 1 << 20 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    /// The bytes read and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The stream and the bytes read past the handshake.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }
}
