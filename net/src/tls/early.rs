//! The server side of TLS 1.3 early data (RFC 8446 §2.3, §4.2.10): a
//! stream over a rustls [`ServerConnection`] that hands out the client's
//! early data while the handshake is still running, so the server can read
//! a request that came with the `ClientHello` one round trip sooner.
//!
//! Early data can be replayed (RFC 8446 §8, §E.5): whoever recorded a
//! client's first flight can send it again. What the stream guarantees is
//! what the server needs to stay safe: while [`EarlyData::is_early`] is
//! true every byte read so far came as early data and nothing proves the
//! flight is not a replay; [`EarlyData::poll_confirm`] completes only once
//! the client's `Finished` has been checked, which a replayed flight can
//! never produce (it needs the handshake keys of this connection's fresh
//! key exchange). Bytes written before that are held by rustls and sent
//! when the handshake completes.
//!
//! rustls accepts early data only with single-use, server-side session
//! tickets (RFC 8446 §8.1, `ServerConfig::max_early_data_size` with the
//! ticketer disabled); [`super::ServerTlsOptions::max_early_data`] sets
//! that up.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::{ServerConfig, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::framed::{EarlyData, Reset};

/// A TLS 1.3 server stream that reads early data before the handshake
/// completes (see the module documentation).
pub struct EarlyTlsStream<IO> {
    io: IO,
    conn: ServerConnection,
    /// The peer closed its side of the transport.
    eof: bool,
    /// Whether early data was accepted on this connection.
    early_accepted: bool,
    /// The first bytes from the client, kept until its first TLS record
    /// (the `ClientHello`) is complete, to see whether it offers early data.
    first: Option<Vec<u8>>,
    /// Whether the client's `ClientHello` offered early data.
    early_offered: bool,
    /// When the handshake must have completed.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<IO> std::fmt::Debug for EarlyTlsStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyTlsStream")
            .field("handshaking", &self.conn.is_handshaking())
            .field("early_accepted", &self.early_accepted)
            .finish_non_exhaustive()
    }
}

/// Adapts a polled `AsyncRead` to `std::io::Read` for `read_tls`.
struct SyncRead<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
    /// Where a copy of what is read goes, if anywhere.
    copy: Option<&'a mut Vec<u8>>,
}

impl<IO: AsyncRead + Unpin> Read for SyncRead<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                if let Some(copy) = self.copy.as_mut() {
                    copy.extend_from_slice(rb.filled());
                }
                Ok(rb.filled().len())
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Adapts a polled `AsyncWrite` to `std::io::Write` for `write_tls`.
struct SyncWrite<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncWrite + Unpin> Write for SyncWrite<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block<T>(r: io::Result<T>) -> Poll<io::Result<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> EarlyTlsStream<IO> {
    /// The TLS stream and the rustls connection.
    pub fn get_ref(&self) -> (&IO, &ServerConnection) {
        (&self.io, &self.conn)
    }

    /// Whether the client's early data was accepted.
    pub fn early_data_accepted(&self) -> bool {
        self.early_accepted
    }

    /// Whether the client offered early data that was not accepted (it
    /// then sends the data again after the handshake).
    pub fn early_data_rejected(&self) -> bool {
        self.early_offered && !self.early_accepted
    }

    /// Writes every pending TLS record.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut w = SyncWrite {
                io: &mut self.io,
                cx,
            };
            ready!(would_block(self.conn.write_tls(&mut w)))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the transport has into rustls and processes it: `Ok(0)`
    /// at the end of the transport.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // A server that acted on early data still needs the handshake to
        // complete: a replayed flight never completes it, and is closed at
        // the deadline instead of holding its connection open.
        if self.conn.is_handshaking() && self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not completed by its deadline",
            )));
        }
        let mut r = SyncRead {
            io: &mut self.io,
            cx,
            copy: self.first.as_mut(),
        };
        let n = ready!(would_block(self.conn.read_tls(&mut r)))?;
        if n == 0 {
            self.eof = true;
        }
        if let Some(first) = &self.first {
            match offers_early_data(first) {
                Some(offered) => {
                    self.early_offered = offered;
                    self.first = None;
                }
                // A ClientHello over several records, or garbage: not
                // looked at further.
                None if first.len() > MAX_RECORD || self.eof => self.first = None,
                None => {}
            }
        }
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued goes out before the error does.
            let _ = self.poll_write_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        if self.conn.early_data().is_some() {
            self.early_accepted = true;
        }
        Poll::Ready(Ok(n))
    }

    /// Drives the handshake until it completes, or until the server's
    /// flight is out and the client's early data was accepted.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_write_tls(cx))?;
            if !self.conn.is_handshaking() || self.early_accepted {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_read_tls(cx))?;
        }
    }
}

/// Starts a TLS 1.3 server connection on `io` with `config` and drives it
/// until the handshake completes or the client's early data was accepted;
/// the error comes with the transport, as `tokio_rustls`' fallible accept
/// does, for a clean close. A handshake still running at `deadline` fails
/// the stream's reads and writes then, whatever was done with its early
/// data.
pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
    config: Arc<ServerConfig>,
    io: IO,
    deadline: tokio::time::Instant,
) -> Result<EarlyTlsStream<IO>, (io::Error, IO)> {
    let conn = match ServerConnection::new(config) {
        Ok(c) => c,
        Err(e) => return Err((io::Error::other(e), io)),
    };
    let mut s = EarlyTlsStream {
        io,
        conn,
        eof: false,
        early_accepted: false,
        first: Some(Vec::new()),
        early_offered: false,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
    };
    match std::future::poll_fn(|cx| s.poll_accept(cx)).await {
        Ok(()) => Ok(s),
        Err(e) => Err((e, s.io)),
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for EarlyTlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Early data comes before anything sent after the handshake.
            if let Some(mut early) = this.conn.early_data() {
                let n = early.read(buf.initialize_unfilled())?;
                if n > 0 {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
            }
            if !this.conn.is_handshaking() {
                match this.conn.reader().read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            ready!(this.poll_write_tls(cx))?;
            if this.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(this.poll_read_tls(cx))?;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for EarlyTlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            // Held by rustls while the handshake runs (up to its buffer
            // limit), encrypted and queued when it completes.
            let n = this.conn.writer().write(buf)?;
            // Send what can go now; a full socket does not hold up
            // accepting the bytes.
            if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                return Poll::Ready(Err(e));
            }
            if n > 0 || buf.is_empty() {
                return Poll::Ready(Ok(n));
            }
            // rustls' buffer is full: it drains as records go out, or,
            // during the handshake, once the client's Finished is in.
            ready!(this.poll_write_tls(cx))?;
            if this.conn.is_handshaking() {
                if this.eof {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                ready!(this.poll_read_tls(cx))?;
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.is_handshaking() {
            // Replies held for the end of the handshake go out only once it
            // ends: finish it first (a replayed flight fails here).
            ready!(this.poll_confirm(cx))?;
        }
        this.conn.send_close_notify();
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> EarlyData for EarlyTlsStream<IO> {
    fn is_early(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn poll_confirm(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Early data not read yet stays in rustls' buffer: processing the
        // rest of the handshake does not lose it.
        while self.conn.is_handshaking() {
            ready!(self.poll_write_tls(cx))?;
            if self.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_read_tls(cx))?;
        }
        self.poll_write_tls(cx)
    }
}

/// The largest TLS record: 2^14 bytes of plaintext and its 5-byte header
/// (RFC 8446 §5.1).
const MAX_RECORD: usize = 5 + (1 << 14);

/// Whether `bytes`, the start of a connection, begin with a TLS record
/// holding a whole `ClientHello` with the `early_data` extension (RFC 8446
/// §4.1.2, §4.2.10; type 42): `None` while the record is incomplete, or if
/// it is not a `ClientHello` in one record.
fn offers_early_data(bytes: &[u8]) -> Option<bool> {
    fn u16_at(b: &[u8], i: usize) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *b.get(i)?,
            *b.get(i + 1)?,
        ])))
    }
    // TLSPlaintext: type 22 (handshake), version, length.
    if *bytes.first()? != 22 {
        return None;
    }
    let len = u16_at(bytes, 3)?;
    let record = bytes.get(5..5 + len)?;
    // Handshake: type 1 (client_hello), 24-bit length.
    if *record.first()? != 1 {
        return None;
    }
    let body_len = usize::from(*record.get(2)?) << 8 | usize::from(*record.get(3)?);
    let body = record.get(4..4 + usize::from(*record.get(1)?) * 65536 + body_len)?;
    // legacy_version (2), random (32), legacy_session_id<0..32>.
    let mut i = 34;
    i += 1 + usize::from(*body.get(i)?);
    // cipher_suites<2..2^16-2>, legacy_compression_methods<1..2^8-1>.
    i += 2 + u16_at(body, i)?;
    i += 1 + usize::from(*body.get(i)?);
    let ext_len = u16_at(body, i)?;
    let exts = body.get(i + 2..i + 2 + ext_len)?;
    let mut j = 0;
    while j < exts.len() {
        let kind = u16_at(exts, j)?;
        if kind == 42 {
            return Some(true);
        }
        j += 4 + u16_at(exts, j + 2)?;
    }
    Some(false)
}

impl<IO: Reset> Reset for EarlyTlsStream<IO> {
    fn reset_on_close(&self) -> io::Result<()> {
        self.io.reset_on_close()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        self.io.unacknowledged()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ClientHello` record with the extension types `exts` (empty
    /// bodies).
    fn client_hello(exts: &[u16]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.extend([32]);
        body.extend([1; 32]);
        body.extend([0, 2, 0x13, 0x01, 1, 0]);
        let mut e = Vec::new();
        for t in exts {
            e.extend(t.to_be_bytes());
            e.extend([0, 0]);
        }
        body.extend((e.len() as u16).to_be_bytes());
        body.extend(e);
        let mut hs = vec![1, 0];
        hs.extend((body.len() as u16).to_be_bytes());
        hs.extend(body);
        let mut rec = vec![22, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn finds_the_early_data_extension_only_in_a_whole_client_hello() {
        let with = client_hello(&[0, 41, 42, 43]);
        assert_eq!(offers_early_data(&with), Some(true));
        assert_eq!(offers_early_data(&client_hello(&[0, 41, 43])), Some(false));
        assert_eq!(offers_early_data(&client_hello(&[])), Some(false));
        for n in 0..with.len() {
            assert_eq!(offers_early_data(&with[..n]), None, "{n}");
        }
        let mut more = with.clone();
        more.extend([23, 3, 3, 0, 1, 0]);
        assert_eq!(offers_early_data(&more), Some(true), "bytes after it");
        let mut alert = with;
        alert[0] = 21;
        assert_eq!(offers_early_data(&alert), None);
    }

    #[test]
    fn a_lying_extension_length_is_not_a_panic() {
        let mut b = client_hello(&[42]);
        let n = b.len();
        b[n - 2] = 0xff;
        // The extension claims more bytes than there are: it is still seen
        // first; a length past the end of an earlier one ends the walk.
        assert_eq!(offers_early_data(&b), Some(true));
        let mut c = client_hello(&[7, 42]);
        let n = c.len();
        c[n - 6] = 0xff;
        assert_eq!(offers_early_data(&c), Some(false));
    }
}
