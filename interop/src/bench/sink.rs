//! The loopback sink/source server every workload talks to.
//!
//! A client sends a 16-byte head: bytes it will upload (u64 big-endian),
//! then bytes it wants back (u64 big-endian; `u64::MAX` means "until I
//! close"). The server reads the upload, writes the download, and closes.
//! A connection that never sends its head (the idle workload) is simply
//! held open.
//!
//! The download is a fixed pattern ([`pattern`]): pseudo-random bytes that
//! repeat every [`PATTERN_PERIOD`] bytes, so a client can check what it
//! received against [`pattern_digest`] without being told.

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of the request head.
pub const HEAD_LEN: usize = 16;
/// Download length meaning "until the client closes".
pub const FOREVER: u64 = u64::MAX;

/// Period of the download pattern, bytes: a prime, so that no buffer,
/// segment or record size lines up with it, and bytes that arrive shifted
/// by a multiple of any of them differ from the expected ones.
pub const PATTERN_PERIOD: usize = 262_139;
/// Longest write of the sink (and length of its read buffer).
const CHUNK: usize = 64 * 1024;

/// The download pattern, one period plus one write's worth: byte `i` of a
/// download is `pattern()[i % PATTERN_PERIOD]`, and every write of up to
/// `CHUNK` bytes is one slice of it. The bytes come from xorshift64* with
/// a fixed seed.
pub fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x: u64 = 0x5158_7061_7468_2021;
        let mut p = Vec::with_capacity(PATTERN_PERIOD + CHUNK);
        while p.len() < PATTERN_PERIOD {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            p.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        p.truncate(PATTERN_PERIOD);
        p.extend_from_within(..CHUNK);
        p
    })
}

/// The `len` bytes of the pattern from `offset` on (`len` at most
/// [`CHUNK`]).
fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PATTERN_PERIOD as u64) as usize;
    pattern()
        .get(start..start + len.min(CHUNK))
        .unwrap_or_default()
}

/// SHA-256 of the first `len` bytes of a download.
pub fn pattern_digest(len: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut off = 0;
    while off < len {
        let n = usize::try_from(len - off).unwrap_or(CHUNK).min(CHUNK);
        h.update(pattern_at(off, n));
        off += n as u64;
    }
    h.finalize().into()
}

/// Encodes a request head.
pub fn head(up: u64, down: u64) -> [u8; HEAD_LEN] {
    let mut h = [0u8; HEAD_LEN];
    let (a, b) = h.split_at_mut(8);
    a.copy_from_slice(&up.to_be_bytes());
    b.copy_from_slice(&down.to_be_bytes());
    h
}

/// Starts the server on `127.0.0.1:0`; it runs until the runtime stops.
pub async fn start() -> io::Result<SocketAddr> {
    start_with(false).await
}

/// [`start`], with a Multipath TCP listener when `mptcp` (it accepts TCP
/// too; TCP when the kernel refuses MPTCP).
pub async fn start_with(mptcp: bool) -> io::Result<SocketAddr> {
    let l = if mptcp {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let (sock, _) = sixpath_net::sys::stream_socket(&any, true)?;
        sock.bind(&any.into())?;
        sock.listen(1024)?;
        sock.set_nonblocking(true)?;
        TcpListener::from_std(std::net::TcpListener::from(sock))?
    } else {
        TcpListener::bind("127.0.0.1:0").await?
    };
    let addr = l.local_addr()?;
    tokio::spawn(accept_loop(l));
    Ok(addr)
}

/// Serves every connection `l` accepts, forever.
pub async fn accept_loop(l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(async move {
                    let _ = serve(s).await;
                });
            }
            // Out of descriptors: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve(mut s: TcpStream) -> io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut request = [0u8; HEAD_LEN];
    s.read_exact(&mut request).await?;
    let (up_bytes, down_bytes) = request.split_at(8);
    let up = u64::from_be_bytes(up_bytes.try_into().unwrap_or_default());
    let down = u64::from_be_bytes(down_bytes.try_into().unwrap_or_default());
    let mut buf = vec![0u8; CHUNK];
    let mut left = up;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = s.read(buf.get_mut(..want).unwrap_or_default()).await?;
        if n == 0 {
            return Ok(());
        }
        left -= n as u64;
    }
    let (mut left, mut offset) = (down, 0u64);
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        s.write_all(pattern_at(offset, want)).await?;
        offset = offset.wrapping_add(want as u64);
        if down != FOREVER {
            left -= want as u64;
        }
    }
    s.shutdown().await?;
    // Wait for the client's close so the server is not the one in TIME_WAIT
    // on the client's port.
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_repeats_with_its_period_and_slices_wrap_around() {
        let p = pattern();
        assert_eq!(p.len(), PATTERN_PERIOD + CHUNK);
        assert_eq!(p.get(..CHUNK), p.get(PATTERN_PERIOD..));
        // Not a short cycle: the first 64 bytes occur once in the period.
        let first = p.get(..64).expect("64 bytes");
        let hits = p
            .get(..PATTERN_PERIOD + 63)
            .expect("period")
            .windows(64)
            .filter(|w| *w == first)
            .count();
        assert_eq!(hits, 1);
        let off = PATTERN_PERIOD as u64 * 3 - 10;
        assert_eq!(
            pattern_at(off, 20),
            p.get(PATTERN_PERIOD - 10..PATTERN_PERIOD + 10).expect("20")
        );
    }

    #[test]
    fn digest_of_the_pattern_matches_hashing_byte_by_byte() {
        for len in [0u64, 1, 65_536, 65_537, PATTERN_PERIOD as u64 + 5, 600_000] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    pattern()
                        .get((i % PATTERN_PERIOD as u64) as usize)
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            let want: [u8; 32] = Sha256::digest(&bytes).into();
            assert_eq!(pattern_digest(len), want, "len {len}");
        }
    }

    #[tokio::test]
    async fn the_sink_sends_the_pattern() {
        let addr = start().await.expect("sink");
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let len = 300_000u64;
        s.write_all(&head(0, len)).await.expect("head");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("read");
        assert_eq!(got.len() as u64, len);
        let want: [u8; 32] = Sha256::digest(&got).into();
        assert_eq!(pattern_digest(len), want);
    }
}
