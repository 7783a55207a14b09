//! Front-end listeners and the accept loop: [`Client::bind`] opens every
//! listener, [`Client::run`] serves until the shutdown future completes,
//! then stops accepting and gives open connections time to finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

use crate::config::{FrontEnd, Settings};
use crate::conn::{self, Shared};
use crate::upstream::Upstream;
use sixpath_net::sys;

/// Listen queue length.
const BACKLOG: i32 = 1024;
/// How long open connections may take to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
}

struct Bound {
    listener: TcpListener,
    kind: FrontEnd,
    addr: SocketAddr,
    tproxy: bool,
}

/// A client with its front-ends open.
pub struct Client {
    listeners: Vec<Bound>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("local_addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

/// Opens a front-end listener. Applications are on this host or the LAN,
/// so front-ends are plain TCP; transparent ones try `IP_TRANSPARENT` for
/// TPROXY (needs `CAP_NET_ADMIN`; REDIRECT works without it).
fn listen(addr: SocketAddr, kind: FrontEnd) -> io::Result<(TcpListener, bool)> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    let mut tproxy = false;
    if kind == FrontEnd::Transparent {
        tproxy = sys::set_transparent(&sock, addr.is_ipv6()).is_ok();
    }
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok((TcpListener::from_std(sock.into())?, tproxy))
}

impl Client {
    /// Opens the front-ends of `settings`; must run inside a tokio runtime.
    pub fn bind(settings: Settings) -> Result<Self, StartError> {
        let mut listeners = Vec::new();
        for &(addr, kind) in &settings.listen {
            let (listener, tproxy) =
                listen(addr, kind).map_err(|source| StartError::Listen { addr, source })?;
            let addr = listener.local_addr().unwrap_or(addr);
            listeners.push(Bound {
                listener,
                kind,
                addr,
                tproxy,
            });
        }
        let shared = Arc::new(Shared {
            upstream: Upstream::new(settings),
            active: AtomicUsize::new(0),
        });
        Ok(Self { listeners, shared })
    }

    /// The addresses the front-ends are bound to (ports resolved), in the
    /// order of the settings.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|b| b.addr).collect()
    }

    /// Logs the front-ends and what the host offers for the server leg.
    pub fn report_startup(&self) {
        let s = self.shared.upstream.settings();
        for b in &self.listeners {
            if b.kind == FrontEnd::Transparent && !b.tproxy {
                tracing::info!(addr = %b.addr, frontend = b.kind.name(), "listening (REDIRECT only: no IP_TRANSPARENT for TPROXY)");
            } else {
                tracing::info!(addr = %b.addr, frontend = b.kind.name(), "listening");
            }
        }
        tracing::info!(
            server = %s.server,
            upstream = s.upstream.name(),
            mptcp = s.mptcp,
            tfo = s.tfo,
            early_reply = s.early_reply,
            "forwarding to the server"
        );
        if s.mptcp && sys::sysctl_int("net/mptcp/enabled") == Some(0) {
            tracing::warn!(
                "net.mptcp.enabled is 0: connections to the server use plain TCP. Fix: sysctl -w net.mptcp.enabled=1"
            );
        }
        if s.tfo && sys::sysctl_int("net/ipv4/tcp_fastopen").is_some_and(|v| v & 0x1 == 0) {
            tracing::warn!(
                "net.ipv4.tcp_fastopen lacks the client bit 0x1: requests wait for the TCP handshake. Fix: sysctl -w net.ipv4.tcp_fastopen=1"
            );
        }
    }

    /// Serves until `shutdown` completes, then stops accepting and waits up
    /// to 30 s for open connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = Arc::clone(&self.shared);
        let accept_all = async {
            let mut tasks = tokio::task::JoinSet::new();
            for b in self.listeners {
                tasks.spawn(accept_loop(b.listener, b.kind, b.addr, Arc::clone(&shared)));
            }
            while tasks.join_next().await.is_some() {}
        };
        tokio::select! {
            () = accept_all => {}
            () = shutdown => {}
        }
        let drain = async {
            while shared.active.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            tracing::warn!(
                open = shared.active.load(Ordering::Relaxed),
                "shutdown with connections still open"
            );
        }
    }
}

async fn accept_loop(listener: TcpListener, kind: FrontEnd, addr: SocketAddr, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let max = shared.upstream.settings().max_connections;
                if shared.active.fetch_add(1, Ordering::Relaxed) >= max {
                    shared.active.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(%peer, max, "connection refused: connection limit reached");
                    continue;
                }
                tokio::spawn(conn::serve(stream, peer, kind, addr, Arc::clone(&shared)));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
