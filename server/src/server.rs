//! Listeners and the accept loop: `Server::bind` opens every listener
//! (Multipath TCP when the kernel allows it, TCP Fast Open when enabled),
//! `Server::run` serves until the shutdown future completes, then stops
//! accepting and gives open connections time to finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sixpath_net::admin;
use tokio::net::TcpListener;

use crate::advertise::Advertised;
use crate::associations::{Associations, UdpLimits};
use crate::command;
use crate::config::{Protocol, Settings};
use crate::conn;
use crate::limits::Limits;
use crate::logins::{FailedLogins, MAX_TRACKED_SOURCES, UserCaps};
use crate::outbound::Connector;
use crate::policy::EgressPolicy;
use crate::probes::ProbeLimits;
use crate::relay::Cutoff;
use crate::session::Sessions;
use crate::state::Shared;
use crate::stats::Stats;
use crate::store::Store;
use crate::sys;
use crate::users::Users;
use sixpath_net::tls::TlsAcceptor;

/// Listen queue length, and the TFO queue of pending 0-RTT connections.
const BACKLOG: i32 = 1024;
/// How long connections reset at the end of the drain have to write their
/// log lines before the server stops.
const AFTER_CUTOFF: Duration = Duration::from_secs(2);

/// Why the server could not start.
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
    /// The users file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `--advertise` could not install its endpoints.
    #[error(transparent)]
    Advertise(#[from] crate::advertise::AdvertiseError),
    /// The system DNS configuration could not be read.
    #[error("cannot set up DNS resolution: {0}")]
    Resolver(io::Error),
}

struct Bound {
    listener: TcpListener,
    protocols: Arc<[Protocol]>,
    mptcp: bool,
    /// SOCKS6 datagrams over UDP, on the TCP listener's address and port.
    udp: Option<tokio::net::UdpSocket>,
    tls: Option<TlsAcceptor>,
    /// Connections start with a PROXY protocol v2 header.
    proxy: bool,
}

/// A server with its listeners open.
pub struct Server {
    listeners: Vec<Bound>,
    shared: Arc<Shared>,
    admin: Option<TcpListener>,
    /// The `--advertise` endpoints, withdrawn when the drain starts.
    advertised: Option<Advertised>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

fn listen(addr: SocketAddr, tfo: bool) -> io::Result<(TcpListener, bool)> {
    let (sock, mptcp) = sys::stream_socket(&addr, true)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    if tfo && let Err(e) = sys::enable_listener_fastopen(&sock, BACKLOG) {
        tracing::warn!(%addr, error = %e, "TCP Fast Open not available on this listener");
    }
    Ok((TcpListener::from_std(sock.into())?, mptcp))
}

impl Server {
    /// Opens the listeners of `settings`; must run inside a tokio runtime.
    pub fn bind(settings: Settings) -> Result<Self, StartError> {
        let users = match &settings.users {
            Some(path) => Some(RwLock::new(Users::load(path)?)),
            None => None,
        };
        let resolver = if settings.dns_servers.is_empty() {
            Connector::system_resolver()
        } else {
            Connector::resolver_with_servers(&settings.dns_servers)
        }
        .map_err(StartError::Resolver)?;
        let mut listeners = Vec::new();
        for spec in &settings.listen {
            let tls = match (spec.tls, &settings.tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls.acceptor()),
                (true, None) => {
                    return Err(StartError::Config(crate::config::ConfigError::new(
                        "listen",
                        format!(
                            "{} is marked tls but no certificate is configured",
                            spec.addr
                        ),
                    )));
                }
            };
            let (listener, mptcp) =
                listen(spec.addr, settings.tfo).map_err(|source| StartError::Listen {
                    addr: spec.addr,
                    source,
                })?;
            let udp = if spec.protocols.contains(&Protocol::Socks6) {
                udp_listener(&listener)
            } else {
                None
            };
            listeners.push(Bound {
                listener,
                protocols: spec.protocols.clone().into(),
                mptcp,
                udp,
                tls,
                proxy: spec.proxy,
            });
        }
        let limits = Limits::new(
            settings.max_connections,
            settings.max_connections_per_source,
        );
        let failed_logins = FailedLogins::new(
            settings.max_failed_logins,
            settings.failed_login_window,
            MAX_TRACKED_SOURCES,
        );
        let user_caps = UserCaps::new(settings.max_connections_per_user);
        let admin = match settings.admin {
            Some(addr) => {
                Some(admin_listener(addr).map_err(|source| StartError::Listen { addr, source })?)
            }
            None => None,
        };
        let own_listeners = listeners
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .chain(admin.as_ref().and_then(|l| l.local_addr().ok()));
        let policy = EgressPolicy::new(settings.egress_rules.clone(), sys::own_addresses())
            .with_listeners(own_listeners);
        let shared = Arc::new(Shared {
            connector: Connector::new(resolver, policy).with_dns_timeout(settings.dns_timeout),
            users,
            limits,
            sessions: Sessions::new(settings.secret.clone(), settings.sessions),
            udp: Associations::new(UdpLimits {
                max_total: settings.max_udp_associations,
                max_per_user: settings.max_udp_associations_per_user,
                max_per_source: settings.max_udp_associations_per_source,
            }),
            failed_logins,
            user_caps,
            stats: Arc::new(Stats::new()),
            probe_limits: ProbeLimits::default(),
            store: match &settings.state {
                Some(url) => Some(Store::open(url, &settings.state_tls).map_err(|e| {
                    StartError::Config(crate::config::ConfigError::new("state", e))
                })?),
                None => None,
            },
            cutoff: Cutoff::new(),
            settings,
        });
        // Last: nothing after it can fail, and the endpoints go when the
        // server does.
        let advertised = if shared.settings.advertise.is_empty() {
            None
        } else {
            Some(Advertised::install(&shared.settings.advertise)?)
        };
        Ok(Self {
            listeners,
            shared,
            admin,
            advertised,
        })
    }

    /// The addresses the listeners are bound to (ports resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .collect()
    }

    /// The admin endpoint's address, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Logs what the host offers: MPTCP on each listener, and whether the
    /// `net.ipv4.tcp_fastopen` server bit is set.
    pub fn report_startup(&self) {
        for b in &self.listeners {
            let addr = b
                .listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let protocols: Vec<_> = b.protocols.iter().map(|p| p.name()).collect();
            let (tls, proxy) = (b.tls.is_some(), b.proxy);
            if b.mptcp {
                tracing::info!(%addr, ?protocols, tls, proxy, "listening (Multipath TCP)");
            } else {
                tracing::warn!(%addr, ?protocols, tls, proxy, "listening with plain TCP: the kernel refused MPTCP (check net.mptcp.enabled)");
            }
        }
        if let Some(tls) = &self.shared.settings.tls {
            tracing::info!(
                fingerprint = %sixpath_net::tls::format_fingerprint(&tls.fingerprint()),
                "TLS certificate loaded (clients pin this fingerprint)"
            );
        }
        if self.shared.settings.tfo {
            match sys::sysctl_int("net/ipv4/tcp_fastopen") {
                Some(v) if v & 0x2 != 0 => {
                    tracing::info!(tcp_fastopen = v, "TCP Fast Open server side enabled");
                }
                v => tracing::warn!(
                    tcp_fastopen = ?v,
                    "net.ipv4.tcp_fastopen lacks the server bit 0x2: 0-RTT requests cost one round trip more. \
                     Fix: sysctl -w net.ipv4.tcp_fastopen=3"
                ),
            }
        }
    }

    /// A handle that re-reads the users file, for a SIGHUP handler.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until `shutdown` completes, then withdraws the `--advertise`
    /// addresses, stops accepting and waits up to the drain timeout (30 s)
    /// for open connections; relays still open then are reset (each logs
    /// `end=drained`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = Arc::clone(&self.shared);
        if let Some(l) = self.admin {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "admin endpoint: status page at http://{addr}/, /stats, /metrics");
            }
            let admin_shared = Arc::clone(&shared);
            tokio::spawn(admin::serve(l, move |req| admin_page(&admin_shared, req)));
        }
        let follow = tokio::spawn(follow_own_addresses(Arc::clone(&shared)));
        let accept_all = async {
            let mut tasks = tokio::task::JoinSet::new();
            for b in self.listeners {
                if let Some(udp) = b.udp {
                    let shared = Arc::clone(&shared);
                    tasks.spawn(command::udp::serve_listener(Arc::new(udp), shared));
                }
                let shared = Arc::clone(&shared);
                tasks.spawn(accept_loop(b.listener, b.protocols, b.proxy, shared, b.tls));
            }
            while tasks.join_next().await.is_some() {}
        };
        tokio::select! {
            () = accept_all => {}
            () = shutdown => {}
        }
        follow.abort();
        // Draining: no more subflows to this instance's own addresses.
        if let Some(a) = &self.advertised {
            a.withdraw();
        }
        let drain = async {
            while shared.limits.active() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(shared.settings.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                open = shared.limits.active(),
                "drain timeout: resetting the connections still open"
            );
            shared.cutoff.cut();
            let ended = async {
                while shared.limits.active() > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if tokio::time::timeout(AFTER_CUTOFF, ended).await.is_err() {
                tracing::warn!(
                    open = shared.limits.active(),
                    "shutdown with connections still open"
                );
            }
        }
    }
}

/// Re-reads the users file, the TLS certificate and the own addresses of a
/// running server.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    shared: Arc<Shared>,
}

impl ReloadHandle {
    /// Re-reads the users file. On error the old users stay in force.
    pub fn reload_users(&self) {
        let (Some(path), Some(lock)) = (&self.shared.settings.users, &self.shared.users) else {
            return;
        };
        match Users::load(path) {
            Ok(u) => {
                tracing::info!(users = u.len(), "users file reloaded");
                *lock
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = u;
            }
            Err(e) => tracing::error!(error = %e, "users file not reloaded"),
        }
    }

    /// Re-reads this host's addresses for the egress policy.
    pub fn reload_own_addresses(&self) {
        refresh_own_addresses(&self.shared, "SIGHUP");
    }

    /// Re-reads the TLS certificate and key; handshakes that start later
    /// use the new pair. On error the old pair stays in force.
    pub fn reload_tls(&self) {
        let Some(tls) = &self.shared.settings.tls else {
            return;
        };
        match tls.reload() {
            Ok(()) => tracing::info!(
                fingerprint = %sixpath_net::tls::format_fingerprint(&tls.fingerprint()),
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded"),
        }
    }
}

/// How often the egress policy re-reads this host's addresses.
const OWN_ADDRESSES_EVERY: Duration = Duration::from_secs(2);

/// Re-reads this host's addresses every [`OWN_ADDRESSES_EVERY`], so an
/// address added later (DHCP, SLAAC, VPN) is denied too. `getifaddrs` runs
/// on this task, not the blocking pool: it must see the network namespace
/// of the thread that runs the server. (An rtnetlink address watch would
/// react at once; the client crate has one, the server does not yet.)
async fn follow_own_addresses(shared: Arc<Shared>) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + OWN_ADDRESSES_EVERY,
        OWN_ADDRESSES_EVERY,
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        refresh_own_addresses(&shared, "periodic");
    }
}

/// Replaces the egress policy's own addresses with the current ones and
/// logs what changed.
fn refresh_own_addresses(shared: &Shared, trigger: &str) {
    // `getifaddrs` failing reads as no addresses: keep the last set then.
    let now = sys::own_addresses();
    if now.is_empty() {
        return;
    }
    let change = shared.connector.policy().set_own_addresses(now);
    if !change.is_empty() {
        tracing::info!(
            trigger,
            added = ?change.added,
            removed = ?change.removed,
            "own addresses changed (egress policy updated)"
        );
    }
}

/// The UDP socket for SOCKS6 datagrams on `listener`'s address and port
/// (digest §2.5: the client-facing UDP port defaults to the TCP port). If
/// the port is taken, SOCKS6 datagrams travel over TCP only.
fn udp_listener(listener: &TcpListener) -> Option<tokio::net::UdpSocket> {
    let addr = listener.local_addr().ok()?;
    match command::udp::bind_listener(addr) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "no UDP port for SOCKS6 datagrams; they can use TCP");
            None
        }
    }
}

/// The admin listener (plain TCP). `SO_REUSEADDR`: the endpoint closes
/// first, so its port holds `TIME_WAIT` entries that must not stop a restart.
fn admin_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(64)?;
    TcpListener::from_std(sock.into())
}

/// The admin endpoint's pages.
fn admin_page(shared: &Shared, req: &admin::Request) -> Option<admin::Response> {
    if req.method == admin::Method::POST {
        return None;
    }
    let page = matches!(req.path.as_str(), "/" | "/status.js" | "/status.css");
    if page && !admin::host_ok(req.header("host")) {
        return Some(admin::Response::text(
            403,
            "Host must be an IP address or localhost",
        ));
    }
    let open = shared.limits.active();
    match req.path.as_str() {
        "/" => Some(admin::Response::page(
            "text/html; charset=utf-8",
            include_str!("web/index.html"),
        )),
        "/status.js" => Some(admin::Response::page(
            "text/javascript; charset=utf-8",
            include_str!("web/status.js"),
        )),
        "/status.css" => Some(admin::Response::page(
            "text/css; charset=utf-8",
            include_str!("web/status.css"),
        )),
        "/stats" => Some(admin::Response::ok(
            "application/json",
            shared.stats.json(open).to_string() + "\n",
        )),
        "/metrics" => Some(admin::Response::ok(
            "text/plain; version=0.0.4; charset=utf-8",
            shared.stats.prometheus(open)
                + &shared
                    .store
                    .as_ref()
                    .map(Store::prometheus)
                    .unwrap_or_default(),
        )),
        _ => None,
    }
}

async fn accept_loop(
    listener: TcpListener,
    protocols: Arc<[Protocol]>,
    proxy: bool,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(conn::serve(
                    stream,
                    peer,
                    Arc::clone(&protocols),
                    proxy,
                    Arc::clone(&shared),
                    tls.clone(),
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
