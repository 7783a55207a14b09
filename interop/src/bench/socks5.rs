//! The smallest SOCKS5 CONNECT client (RFC 1928, no authentication), one
//! round trip per step as ordinary clients do.

use std::io;
use std::net::SocketAddr;

use sixpath_net::sys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How a workload reaches the sink: through a SOCKS5 proxy or directly,
/// over TCP or Multipath TCP.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The SOCKS5 proxy; direct when `None`.
    pub proxy: Option<SocketAddr>,
    /// The connection this program opens (to the proxy, or to the sink) is
    /// Multipath TCP (`IPPROTO_MPTCP`; TCP when the kernel refuses it).
    pub mptcp: bool,
}

impl Route {
    /// Connects to `target` by this route.
    pub async fn connect(self, target: SocketAddr) -> io::Result<TcpStream> {
        let first = self.proxy.unwrap_or(target);
        let s = if self.mptcp {
            let (sock, _) = sys::stream_socket(&first, true)?;
            sock.set_nonblocking(true)?;
            TcpSocket::from_std_stream(std::net::TcpStream::from(sock))
                .connect(first)
                .await?
        } else {
            TcpStream::connect(first).await?
        };
        s.set_nodelay(true)?;
        match self.proxy {
            None => Ok(s),
            Some(_) => handshake(s, target).await,
        }
    }
}

/// Connects to `target`, through the SOCKS5 proxy at `proxy` if given.
pub async fn connect(proxy: Option<SocketAddr>, target: SocketAddr) -> io::Result<TcpStream> {
    Route {
        proxy,
        mptcp: false,
    }
    .connect(target)
    .await
}

/// The SOCKS5 CONNECT exchange to `target` on `s`.
async fn handshake(mut s: TcpStream, target: SocketAddr) -> io::Result<TcpStream> {
    s.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice != [5, 0] {
        return Err(io::Error::other(format!("method choice {choice:?}")));
    }
    let mut req = vec![5, 1, 0];
    match target {
        SocketAddr::V4(a) => {
            req.push(1);
            req.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            req.push(4);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).await?;
    let mut rep = [0u8; 4];
    s.read_exact(&mut rep).await?;
    let [ver, code, _, atyp] = rep;
    if (ver, code) != (5, 0) {
        return Err(io::Error::other(format!("reply {rep:?}")));
    }
    let addr_len = match atyp {
        1 => 4,
        4 => 16,
        3 => usize::from(s.read_u8().await?),
        t => return Err(io::Error::other(format!("address type {t}"))),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await?;
    Ok(s)
}
