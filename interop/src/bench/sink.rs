//! The loopback sink/source server every workload talks to.
//!
//! A client sends a 16-byte head: bytes it will upload (u64 big-endian),
//! then bytes it wants back (u64 big-endian; `u64::MAX` means "until I
//! close"). The server reads the upload, writes the download, and closes.
//! A connection that never sends its head (the idle workload) is simply
//! held open.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of the request head.
pub const HEAD_LEN: usize = 16;
/// Download length meaning "until the client closes".
pub const FOREVER: u64 = u64::MAX;

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
    let l = TcpListener::bind("127.0.0.1:0").await?;
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
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = up;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = s.read(buf.get_mut(..want).unwrap_or_default()).await?;
        if n == 0 {
            return Ok(());
        }
        left -= n as u64;
    }
    let mut left = down;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        s.write_all(buf.get(..want).unwrap_or_default()).await?;
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
