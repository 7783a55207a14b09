//! [`Framed`]: a buffered reader that decodes handshake messages
//! incrementally with the protocol crate and keeps the bytes that follow
//! them. The server reads its clients' handshakes with it; the client reads
//! applications' handshakes and the server's replies with it.

use std::io;
use std::net::SocketAddr;
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

/// A stream whose connection can be ended with a reset (RST) instead of a
/// FIN: a TCP socket, or TLS over one.
pub trait Reset {
    /// Makes closing the connection send a reset (`SO_LINGER` 0): unread
    /// and unsent bytes are dropped. On a Multipath TCP socket the close
    /// then sends `MP_FASTCLOSE` (RFC 8684 §3.5) and the peer's reads fail
    /// with `ECONNRESET`, as with TCP.
    fn reset_on_close(&self) -> io::Result<()>;

    /// Bytes written to the socket that the peer has not acknowledged yet
    /// (`SIOCOUTQ`, tcp(7)); on Multipath TCP the connection-level count.
    fn unacknowledged(&self) -> io::Result<usize>;
}

impl Reset for tokio::net::TcpStream {
    fn reset_on_close(&self) -> io::Result<()> {
        self.set_zero_linger()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        crate::sys::unacknowledged(self)
    }
}

impl<S: Reset + ?Sized> Reset for Box<S> {
    fn reset_on_close(&self) -> io::Result<()> {
        (**self).reset_on_close()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        (**self).unacknowledged()
    }
}

impl<S: Reset + ?Sized> Reset for &mut S {
    fn reset_on_close(&self) -> io::Result<()> {
        (**self).reset_on_close()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        (**self).unacknowledged()
    }
}

impl<S: Reset> Reset for tokio_rustls::server::TlsStream<S> {
    fn reset_on_close(&self) -> io::Result<()> {
        self.get_ref().0.reset_on_close()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        self.get_ref().0.unacknowledged()
    }
}

impl<S: Reset> Reset for tokio_rustls::client::TlsStream<S> {
    fn reset_on_close(&self) -> io::Result<()> {
        self.get_ref().0.reset_on_close()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        self.get_ref().0.unacknowledged()
    }
}

/// What a stream knows about TLS 1.3 early data (RFC 8446 §2.3): whether
/// what was read so far may be a replay, and a way to wait until it cannot
/// be. Streams without early data are never early.
pub trait EarlyData {
    /// True while the TLS handshake is still running and what was read so
    /// far came as early data, which an attacker may have replayed.
    fn is_early(&self) -> bool {
        false
    }

    /// Completes the TLS handshake (the client's `Finished` checked, which
    /// a replayed flight cannot produce); ready at once on other streams.
    fn poll_confirm(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl EarlyData for tokio::net::TcpStream {}
impl<S> EarlyData for tokio_rustls::server::TlsStream<S> {}
impl<S> EarlyData for tokio_rustls::client::TlsStream<S> {}

impl<S: EarlyData + ?Sized> EarlyData for Box<S> {
    fn is_early(&self) -> bool {
        (**self).is_early()
    }

    fn poll_confirm(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        (**self).poll_confirm(cx)
    }
}

/// A stream with a read buffer.
#[derive(Debug)]
pub struct Framed<S> {
    io: S,
    buf: BytesMut,
    /// Bytes held for the next [`Framed::send`] or [`Framed::reject`].
    held: Vec<u8>,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps `io`.
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(1024),
            held: Vec::new(),
            local: None,
            peer: None,
        }
    }

    /// Records the connection's local and peer addresses, which a server's
    /// BIND and UDP ASSOCIATE need (where the client reaches the server,
    /// and from where it sends).
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

    /// The peer's address, if recorded.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Reads once more into the buffer. EOF is [`ReadError::Eof`].
    pub async fn fill(&mut self) -> Result<(), ReadError<std::convert::Infallible>> {
        if self.buf.len() >= MAX_HANDSHAKE {
            return Err(ReadError::TooLarge);
        }
        // The buffer grows with what the peer sends (doubling, at
        // most 16 KiB a step): an idle or slow peer costs its 1 KiB buffer,
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

    /// Keeps `bytes` to go out in front of the next [`Framed::send`] or
    /// [`Framed::reject`], in the same write: an answer the peer has no
    /// use for before the next one (a SOCKS6 Authentication Reply ahead of
    /// a CONNECT's Operation Reply) then shares its segment, and the peer
    /// wakes once instead of twice.
    pub fn hold(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
    }

    /// Writes the held bytes and `bytes` to the peer.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.held.is_empty() {
            self.io.write_all(bytes).await?;
        } else {
            let mut all = std::mem::take(&mut self.held);
            all.extend_from_slice(bytes);
            self.io.write_all(&all).await?;
        }
        self.io.flush().await
    }

    /// Writes a final answer, half-closes and drains what the peer still
    /// sends for a moment, so the kernel does not answer unread bytes with
    /// a reset that would destroy the answer.
    pub async fn reject(mut self, bytes: &[u8]) {
        let mut all = std::mem::take(&mut self.held);
        all.extend_from_slice(bytes);
        if !all.is_empty() {
            let _ = self.io.write_all(&all).await;
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

    /// Ends the connection with a reset, writing nothing more (for the
    /// errors a protocol answers with a reset, such as a Convert header of
    /// Total Length 0).
    pub fn reset(self)
    where
        S: Reset,
    {
        let _ = self.io.reset_on_close();
    }

    /// Reads into `sink` and drops what was read; false once the peer
    /// closed or the read failed.
    pub async fn read_discard(&mut self, sink: &mut [u8]) -> bool {
        matches!(self.io.read(sink).await, Ok(n) if n > 0)
    }

    /// The bytes read and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Whether the bytes read so far came as TLS early data that may be a
    /// replay ([`EarlyData::is_early`]).
    pub fn is_early(&self) -> bool
    where
        S: EarlyData,
    {
        self.io.is_early()
    }

    /// Waits until the TLS handshake has completed, so that what was read
    /// cannot be a replay ([`EarlyData::poll_confirm`]).
    pub async fn confirm(&mut self) -> io::Result<()>
    where
        S: EarlyData,
    {
        std::future::poll_fn(|cx| self.io.poll_confirm(cx)).await
    }

    /// The stream and the bytes read past the handshake.
    pub fn into_parts(self) -> (S, BytesMut) {
        debug_assert!(self.held.is_empty(), "held bytes never sent");
        (self.io, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixpath_protocol::socks5::MethodRequest;
    use tokio::io::duplex;

    #[tokio::test]
    async fn next_decodes_a_message_split_across_reads_and_keeps_what_follows() {
        let (ours, mut theirs) = duplex(64);
        let mut f = Framed::new(ours);
        let reader = tokio::spawn(async move {
            let req = f.next(MethodRequest::decode).await.expect("decoded");
            (req, f)
        });
        theirs.write_all(&[5, 2]).await.expect("write");
        tokio::task::yield_now().await;
        theirs.write_all(&[0, 2, b'G', b'E']).await.expect("write");
        let (req, f) = reader.await.expect("task");
        assert!(req.offers(sixpath_protocol::socks5::Method::NO_AUTHENTICATION));
        assert_eq!(f.buffered(), b"GE", "bytes after the message stay buffered");
        let (_, rest) = f.into_parts();
        assert_eq!(&rest[..], b"GE");
    }

    #[tokio::test]
    async fn held_bytes_leave_only_with_the_next_send_in_one_segment() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (ours, _) = listener.accept().await.expect("accept");
        ours.set_nodelay(true).expect("nodelay");
        let mut f = Framed::new(ours);
        f.hold(b"auth");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        assert!(
            matches!(peer.try_read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "held bytes went out on their own"
        );
        f.send(b"+op").await.expect("send");
        peer.readable().await.expect("readable");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = peer.try_read(&mut buf).expect("read");
        assert_eq!(buf.get(..n), Some(&b"auth+op"[..]));
        f.hold(b"auth");
        let rejected = tokio::spawn(f.reject(b"+refused"));
        let mut rest = Vec::new();
        let mut peer = peer;
        peer.read_to_end(&mut rest).await.expect("read to end");
        assert_eq!(rest, b"auth+refused", "a reject carries held bytes too");
        drop(peer);
        rejected.await.expect("reject");
    }

    #[tokio::test]
    async fn a_take_beyond_the_limit_is_too_large_without_reading() {
        let (ours, _theirs) = duplex(64);
        let mut f = Framed::new(ours);
        assert!(matches!(
            f.take(MAX_HANDSHAKE + 1).await,
            Err(ReadError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn eof_mid_message_is_eof() {
        let (ours, mut theirs) = duplex(64);
        let mut f = Framed::new(ours);
        theirs.write_all(&[5, 3, 0]).await.expect("write");
        drop(theirs);
        assert!(matches!(
            f.next(MethodRequest::decode).await,
            Err(ReadError::Eof)
        ));
    }

    #[tokio::test]
    async fn reject_sends_the_answer_then_closes() {
        let (ours, mut theirs) = duplex(64);
        let f = Framed::new(ours);
        let task = tokio::spawn(f.reject(&[5, 0xff]));
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, [5, 0xff]);
        drop(theirs);
        task.await.expect("reject ends once the peer is gone");
    }
}
