//! Front-end listeners and the accept loop: [`Client::bind`] opens every
//! listener, [`Client::run`] serves until the shutdown future completes,
//! then stops accepting and gives open connections time to finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

use crate::config::{FrontEnd, Settings, UpstreamProtocol};
use crate::conn::{self, Shared};
use crate::paths::{Mode, PathManager, PrimaryHook, ProbeContext};
use crate::upstream::Upstream;
use sixpath_net::{admin, sys};

/// Listen queue length.
const BACKLOG: i32 = 1024;
/// How long connections reset at the end of the drain have to write their
/// log lines before the client stops.
const AFTER_CUTOFF: Duration = Duration::from_secs(2);

/// What the path probes need from the client: the server's address, the
/// SOCKS6 Session ID it granted (the probe's proof), and whether
/// connections are open.
struct Probes(Weak<Shared>);

impl ProbeContext for Probes {
    async fn target(&self) -> Option<(SocketAddr, Vec<u8>)> {
        let shared = self.0.upgrade()?;
        if shared.upstream.settings().upstream != UpstreamProtocol::Socks6 {
            return None;
        }
        let server = shared.upstream.server_addr().await.ok()?;
        let id = shared.upstream.sessions().session_id(server)?;
        Some((server, id.as_bytes().to_vec()))
    }

    fn active(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|s| s.active.load(Ordering::Relaxed) > 0)
    }
}

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
    /// The path manager could not read the interfaces.
    #[error("path manager: {0}")]
    Paths(io::Error),
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
    admin: Option<TcpListener>,
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
        let admin = match settings.admin {
            Some(addr) => {
                Some(admin_listener(addr).map_err(|source| StartError::Listen { addr, source })?)
            }
            None => None,
        };
        let paths = if settings.paths.paths.is_empty() {
            None
        } else {
            Some(
                PathManager::start(settings.paths.paths.clone(), settings.paths.policy())
                    .map_err(StartError::Paths)?,
            )
        };
        let probe_settings = settings.paths.probe_settings().unwrap_or_default();
        let upstream = Upstream::new(settings);
        upstream.set_device(paths.as_ref().and_then(PathManager::primary));
        let shared = Arc::new(Shared::new(upstream, paths));
        if let Some(pm) = shared
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            let weak = Arc::downgrade(&shared);
            let hook = PrimaryHook(Arc::new(move |dev: Option<String>| {
                if let Some(shared) = weak.upgrade() {
                    shared.upstream.set_device(dev);
                }
            }));
            pm.start_health(
                &Arc::new(Probes(Arc::downgrade(&shared))),
                probe_settings,
                hook,
            );
        }
        Ok(Self {
            listeners,
            shared,
            admin,
        })
    }

    /// The admin endpoint's address, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
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
        if let Some(tls) = &s.tls {
            tracing::info!(
                server_name = ?tls.server_name,
                "TLS 1.3 to the server: requests follow the TLS handshake (1-RTT)"
            );
        }
        if let Some(pm) = self
            .shared
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let paths: Vec<String> = s.paths.paths.iter().map(ToString::to_string).collect();
            match pm.mode() {
                Mode::Installed => tracing::info!(
                    paths = %paths.join(" "),
                    policy = s.paths.policy().name(),
                    endpoints = pm.installed().len(),
                    "path manager: MPTCP endpoints installed (removed on exit)"
                ),
                Mode::Advisory(why) => {
                    tracing::warn!(
                        paths = %paths.join(" "),
                        policy = s.paths.policy().name(),
                        "path manager cannot change the kernel ({why}); the commands to run were logged"
                    );
                    if matches!(
                        s.paths.policy(),
                        crate::paths::PathPolicy::Handover | crate::paths::PathPolicy::Aggregate
                    ) {
                        tracing::warn!(
                            "path health is still judged and new connections start on a healthy path, but a failed path's \
                             subflows cannot be withdrawn: open connections wait for the kernel's retransmission timers. \
                             Fix: run as root or setcap cap_net_admin+ep sixpath-client (see sixpath-client doctor)"
                        );
                    }
                }
            }
            if let Some(dev) = self.shared.upstream.device() {
                tracing::info!(interface = %dev, "server connections start on the primary path");
            }
        }
        if let Some(addr) = self.admin_addr() {
            tracing::info!(%addr, "admin endpoint: status page at http://{addr}/, /stats, /metrics");
        }
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
    /// to the drain timeout (30 s) for open connections; relays still open
    /// then are reset (each logs `end=drained`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = Arc::clone(&self.shared);
        let admin = self.admin.map(|l| {
            let addr = l
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let pages = crate::web::Admin::new(Arc::clone(&shared), addr);
            tokio::spawn(admin::serve(l, move |req| pages.handle(req)))
        });
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
        let drain_timeout = shared.upstream.settings().drain_timeout;
        if tokio::time::timeout(drain_timeout, drain).await.is_err() {
            tracing::warn!(
                open = shared.active.load(Ordering::Relaxed),
                "drain timeout: resetting the connections still open"
            );
            shared.cutoff.cut();
            let ended = async {
                while shared.active.load(Ordering::Relaxed) > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if tokio::time::timeout(AFTER_CUTOFF, ended).await.is_err() {
                tracing::warn!(
                    open = shared.active.load(Ordering::Relaxed),
                    "shutdown with connections still open"
                );
            }
        }
        if let Some(a) = admin {
            a.abort();
        }
        let pm = shared
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(pm) = pm {
            let n = pm.installed().len();
            pm.shutdown();
            if n > 0 {
                tracing::info!(endpoints = n, "path manager: endpoints removed");
            }
        }
    }
}

/// The admin listener (plain TCP, `SO_REUSEADDR` so `TIME_WAIT` entries of
/// the endpoint's closes do not stop a restart).
fn admin_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(64)?;
    TcpListener::from_std(sock.into())
}

async fn accept_loop(listener: TcpListener, kind: FrontEnd, addr: SocketAddr, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // One source whether it came to an IPv4 or a dual-stack
                // listener.
                let source = peer.ip().to_canonical();
                // Every application of this host comes from loopback: the
                // per-source cap is for other devices (a LAN listener).
                let taken = if source.is_loopback() {
                    shared.limits.acquire_exempt(source)
                } else {
                    shared.limits.acquire(source)
                };
                let permit = match taken {
                    Ok(p) => p,
                    Err(cap) => {
                        shared.stats.refused(cap);
                        tracing::warn!(%peer, ?cap, "connection refused: connection cap reached");
                        continue;
                    }
                };
                shared.active.fetch_add(1, Ordering::Relaxed);
                // The permit goes into the connection's own future: a
                // wrapping `async` block would hold a second copy of it.
                tokio::spawn(conn::serve(
                    stream,
                    peer,
                    kind,
                    addr,
                    Arc::clone(&shared),
                    permit,
                ));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
