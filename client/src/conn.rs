//! One application connection: the front-end handshake under a deadline,
//! the early reply and the short wait for the application's first bytes,
//! the connection through the server, the relay, and one log line.
//!
//! Early reply (the default) answers SOCKS5, SOCKS4 and HTTP CONNECT
//! applications at once with success (bind `0.0.0.0:0`), so their first
//! bytes can ride in the request to the server and in its SYN: no round
//! trip to the server before the application may speak. The price: if the
//! server then refuses, the application has been told "connected" and can
//! only see its connection reset. Early replies are therefore given only
//! while the server is known to answer (the previous connection through it
//! succeeded); before the first success and after a failure, applications
//! wait for the server's answer and get a proper error code. A failure
//! after an early reply is logged at warn with its cause, and every failure
//! is kept among the recent ones in the statistics (`/stats`, `status`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sixpath_net::mptcp::{self, InterfaceStats};

use sixpath_net::relay::{self, Cutoff, Direction, Progress, RelayMode, RelayOptions, RelayStats};
use sixpath_net::sys::{self, Transport};
use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::MAX_INITIAL_DATA_LEN;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::FrontEnd;
use crate::frontend::{self, Context, LocalAuth};
use crate::paths::{Action, Interfaces, PathManager, RouteSocket};
use crate::stats::{PathInfo, Stats, error_class};
use crate::upstream::{ServerStream, Upstream};
use sixpath_net::framed::Framed;
use sixpath_service::limits::{Limits, Permit};
use sixpath_service::logins::{FailedLogins, MAX_TRACKED_SOURCES};

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The server and the configuration.
    pub upstream: Upstream,
    /// Connections being served.
    pub active: AtomicUsize,
    /// Caps on connections in total and per source, taken at accept.
    pub limits: Arc<Limits>,
    /// Counters for the admin endpoint.
    pub stats: Stats,
    /// Applications' failed logins per source (`--local-user`).
    pub failed_logins: FailedLogins,
    /// The path manager, while it runs (taken at shutdown).
    pub paths: Mutex<Option<PathManager>>,
    /// Interfaces read when there is no path manager, and when.
    ifaces: Mutex<Option<(Instant, Interfaces)>>,
    /// Path health transitions so far (with a path manager).
    path_changes: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The end of the shutdown drain: relays still open then are reset.
    pub cutoff: Cutoff,
}

/// How often subflow statistics of a relaying connection are sampled, and
/// how long an interface list read without a path manager is used.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The relay's copy buffer per direction. Taken from a per-thread pool
/// only while bytes are in hand (an idle connection holds none); 64 KiB
/// moves a bulk transfer in a quarter of the reads and writes 16 KiB
/// takes (measured with `perf stat -e raw_syscalls:sys_enter` on loopback,
/// docs/benchmarks.md), and lets one read take several TLS records.
const RELAY_BUFFER: usize = 64 * 1024;
const IFACES_TTL: Duration = Duration::from_secs(30);

impl Shared {
    /// Shared state for `upstream`, with the path manager if one runs.
    pub fn new(upstream: Upstream, paths: Option<PathManager>) -> Self {
        let settings = upstream.settings();
        let failed_logins = FailedLogins::new(
            settings.max_failed_logins,
            settings.failed_login_window,
            MAX_TRACKED_SOURCES,
        );
        let limits = Limits::new(
            settings.max_connections,
            settings.max_connections_per_source,
        );
        Self {
            upstream,
            active: AtomicUsize::new(0),
            limits,
            stats: Stats::new(),
            failed_logins,
            path_changes: paths.as_ref().map(PathManager::change_counter),
            paths: Mutex::new(paths),
            ifaces: Mutex::new(None),
            cutoff: Cutoff::new(),
        }
    }

    /// The host's interfaces and addresses: the path manager's (kept
    /// current by its address watch), else read at most every 30 s.
    pub fn interfaces(&self) -> Interfaces {
        if let Some(pm) = self
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return pm.interfaces();
        }
        let mut cached = self.ifaces.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, i)) = cached.as_ref()
            && at.elapsed() < IFACES_TTL
        {
            return i.clone();
        }
        let fresh = RouteSocket::open()
            .and_then(|mut r| r.snapshot())
            .unwrap_or_default();
        *cached = Some((Instant::now(), fresh.clone()));
        fresh
    }

    /// The configured paths for the statistics: one entry per address of
    /// each path (or one without an address), with whether an endpoint is
    /// in the kernel.
    pub fn path_info(&self) -> Vec<PathInfo> {
        let guard = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pm) = guard.as_ref() else {
            return Vec::new();
        };
        let plan = pm.plan();
        let installed = pm.installed();
        let mut out: Vec<PathInfo> = plan
            .endpoints
            .iter()
            .map(|e| PathInfo {
                interface: e.iface.clone(),
                address: Some(e.addr.to_string()),
                endpoint_installed: matches!(e.action, Action::Present { .. })
                    || installed.iter().any(|i| i.addr == e.addr),
                backup: e.backup,
            })
            .collect();
        for spec in &self.upstream.settings().paths.paths {
            if !out.iter().any(|p| p.interface == spec.iface) {
                out.push(PathInfo {
                    interface: spec.iface.clone(),
                    address: None,
                    endpoint_installed: false,
                    backup: spec.backup,
                });
            }
        }
        out
    }

    /// Path health transitions since start (0 without a path manager).
    pub fn path_changes(&self) -> u64 {
        self.path_changes
            .as_ref()
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The statistics as of now.
    pub fn snapshot(&self) -> crate::stats::Snapshot {
        let mut snap = self
            .stats
            .snapshot(self.active.load(Ordering::Relaxed), self.path_info());
        let guard = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pm) = guard.as_ref() {
            let now = std::time::Instant::now();
            snap.path_policy = Some(pm.policy().name().to_owned());
            snap.path_health = pm
                .health()
                .into_iter()
                .map(|(interface, h, probing)| health_info(interface, &h, probing, now))
                .collect();
            (snap.mptcp_blackholes, snap.mptcp_blackhole_resets) = pm.blackholes();
        }
        snap
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One path's health for the statistics.
fn health_info(
    interface: String,
    h: &crate::paths::PathHealth,
    probing: bool,
    now: std::time::Instant,
) -> crate::stats::PathHealthInfo {
    let (sent, answered, lost) = h.probe_counts();
    crate::stats::PathHealthInfo {
        interface,
        state: h.state().name().to_owned(),
        since_ms: millis(now.saturating_duration_since(h.since())),
        probing,
        probe_rtt_us: h
            .rtt()
            .0
            .map(|r| u64::try_from(r.as_micros()).unwrap_or(u64::MAX)),
        probes_sent: sent,
        probes_answered: answered,
        probes_lost: lost,
        transitions: h.transitions(),
        last_change: h.last().map(|t| {
            let what = if t.to == crate::paths::State::Down {
                "silent"
            } else {
                "out"
            };
            format!(
                "{} -> {} ({}), {what} {} ms, {:.1} s ago",
                t.from,
                t.to,
                t.cause,
                millis(t.after),
                now.saturating_duration_since(t.at).as_secs_f64()
            )
        }),
    }
}

/// Subflow statistics of `sock` per interface (empty for TCP).
fn sample(sock: &impl std::os::fd::AsRawFd, ifaces: &Interfaces) -> Vec<InterfaceStats> {
    mptcp::subflows(sock).map_or_else(
        |_| Vec::new(),
        |subflows| mptcp::by_interface(&subflows, |ip| ifaces.iface_of(ip).map(str::to_owned)),
    )
}

/// What the log line of a finished connection says.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The application's protocol, once known.
    pub protocol: Option<&'static str>,
    /// The user the application authenticated as.
    pub user: Option<String>,
    /// The target.
    pub target: Option<String>,
    /// The answer, or why the connection ended before the relay (mostly
    /// fixed texts: no allocation held for the connection's life).
    pub reply: Cow<'static, str>,
    /// The application was answered before the server.
    pub early: bool,
    /// Bytes sent as initial data in the request.
    pub initial_data: usize,
    /// The SYN's data was acknowledged.
    pub syn_data: bool,
    /// The TLS handshake made with the server (`None`: plain TCP).
    pub tls: Option<sixpath_net::tls::Handshake>,
    /// The server connection.
    pub server: Option<SocketAddr>,
    /// How the server connection was carried (at the end of the relay).
    pub transport: Option<Transport>,
    /// The relay's counts.
    pub relay: Option<RelayStats>,
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted application connection to the end. The caller has
/// already added it to `shared.active`.
///
/// The task that runs this future holds it inline for the connection's
/// whole life, so only what the relay needs lives in it: the handshakes
/// run in a future of their own on the heap (`prepare`), freed before a
/// relay that may stay idle for hours, and the accepted stream goes
/// straight into that future instead of also taking a slot in this one.
pub fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    kind: FrontEnd,
    listener: SocketAddr,
    shared: Arc<Shared>,
    permit: Permit,
) -> impl Future<Output = ()> + Send + 'static {
    let started = Instant::now();
    let changes = shared.path_changes();
    let id = shared.stats.accepted();
    let handshakes = Box::pin(prepare(stream, peer, kind, listener, Arc::clone(&shared)));
    async move {
        // Counted by the accept loop; uncounted when this ends.
        let _guard = ActiveGuard(&shared.active);
        let (mut out, next) = handshakes.await;
        // `next` moves whole into `follow` (a partial move, as a `match`
        // binding its fields, would keep it here too for the relay's life).
        follow(next, &shared, &mut out, id, kind).await;
        let (up, down) = out
            .relay
            .map_or((0, 0), |r| (r.client_to_target, r.target_to_client));
        let per_interface = shared
            .stats
            .closed(id, out.protocol, out.transport, up, down);
        log(
            peer,
            kind,
            shared.upstream.settings().upstream.name(),
            started,
            &out,
            &per_interface,
            shared.path_changes().wrapping_sub(changes),
        );
        // The connection's place under the caps, held until here (used in
        // place: moving it into a local would keep a second copy).
        drop(permit);
    }
}

/// What follows the handshakes, on `next` where it lies in this future.
/// Not an `async fn` (it would keep its arguments twice, as captured and
/// as moved into its body).
#[allow(clippy::manual_async_fn)] // Arguments kept once, not twice.
fn follow<'a>(
    mut next: Next,
    shared: &'a Shared,
    out: &'a mut Outcome,
    id: u64,
    kind: FrontEnd,
) -> impl Future<Output = ()> + 'a {
    async move {
        match &mut next {
            Next::Relay(ready) => carry(ready, shared, out, id, kind).await,
            Next::Udp(_) => {
                if let Next::Udp(udp) = std::mem::replace(&mut next, Next::Done) {
                    let (control, from) = *udp;
                    Box::pin(crate::udp::serve(control, from, shared, out)).await;
                }
            }
            Next::Done => {}
        }
    }
}

/// What follows the handshakes.
enum Next {
    /// The relay.
    Relay(Ready),
    /// A SOCKS5 UDP association: the control connection past the request,
    /// and where the application said it sends from. Boxed: it is rare,
    /// and the relay's connections should not carry its size.
    Udp(Box<(Framed<TcpStream>, Endpoint)>),
    /// Nothing: the connection ended in its handshakes (`out` says why).
    Done,
}

/// A connection ready to relay: both streams past their handshakes, every
/// handshake byte delivered and its buffers freed.
struct Ready {
    /// The application.
    app: TcpStream,
    /// The server.
    server: ServerStream,
    /// Bytes delivered to the server before the relay (initial data and
    /// the application's bytes that followed its request).
    pre_up: u64,
    /// Bytes delivered to the application before the relay (the target's
    /// bytes that followed the server's reply).
    pre_down: u64,
}

/// Everything before the relay, as a future of its own: [`handshakes`]
/// with the log line's [`Outcome`] so far.
async fn prepare(
    stream: TcpStream,
    peer: SocketAddr,
    kind: FrontEnd,
    listener: SocketAddr,
    shared: Arc<Shared>,
) -> (Outcome, Next) {
    let mut out = Outcome::default();
    let next = handshakes(stream, peer, kind, listener, &shared, &mut out).await;
    (out, next)
}

/// The front-end handshake, the early reply, the connection through the
/// server and the delivery of the bytes each side sent along with its
/// handshake. Every handshake buffer is dropped when this returns.
async fn handshakes(
    stream: TcpStream,
    peer: SocketAddr,
    kind: FrontEnd,
    listener: SocketAddr,
    shared: &Shared,
    out: &mut Outcome,
) -> Next {
    let settings = shared.upstream.settings();
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + settings.handshake_timeout;
    let mut f = Framed::new(stream);
    let cx = Context {
        local: settings
            .local_credentials
            .as_ref()
            .map(|credentials| LocalAuth {
                credentials,
                failed_logins: &shared.failed_logins,
                stats: &shared.stats,
                source: peer.ip(),
            }),
        listener,
    };
    let req = match tokio::time::timeout_at(deadline, frontend::handshake(kind, &mut f, cx)).await {
        Ok(Ok(r)) => r,
        Ok(Err(refusal)) => {
            out.reply = refusal.why.into();
            shared.stats.error("handshake");
            f.reject(&refusal.bytes).await;
            return Next::Done;
        }
        Err(_) => {
            out.reply = "handshake timeout".into();
            shared.stats.error("handshake-timeout");
            return Next::Done;
        }
    };
    out.protocol = Some(req.protocol);
    shared.stats.opened(req.protocol);
    out.user.clone_from(&req.user);
    out.target = Some(req.target.to_string());
    if req.answer == frontend::Answer::Socks5Udp {
        return Next::Udp(Box::new((f, req.target)));
    }

    let early =
        settings.early_reply && req.answer.can_reply_early() && shared.upstream.health.is_good();
    out.early = early;
    if early && f.send(&req.answer.success(None)).await.is_err() {
        out.reply = "application gone".into();
        return Next::Done;
    }
    if req.answer.waits_for_data(early) && req.first.is_empty() {
        // Server-speaks-first protocols send nothing: after the wait the
        // request goes with no initial data. EOF here is the application's
        // half-close, which the relay passes on.
        let _ = f.wait_for_data(settings.early_data_wait).await;
    }
    let mut pending = req.first;
    pending.extend_from_slice(&f.take_buffered());
    let rest = pending.split_off(pending.len().min(MAX_INITIAL_DATA_LEN));
    let initial = pending;
    out.initial_data = initial.len();

    let upstream_deadline = Instant::now() + settings.handshake_timeout;
    let opened = match shared
        .upstream
        .open(&req.target, &initial, upstream_deadline)
        .await
    {
        Ok(o) => o,
        Err(failure) => {
            out.reply = failure.detail.clone().into();
            let tls = failure.detail.starts_with(crate::upstream::TLS_FAILURE);
            if tls {
                tracing::warn!(detail = %failure.detail, "TLS with the server failed");
            }
            let class = error_class(failure.kind, tls);
            shared.stats.error(class);
            shared
                .stats
                .failed(req.protocol, &req.target, class, &failure.detail, early);
            if early {
                shared.stats.early_reply_close();
                // The application was told "connected" and only sees a
                // reset: the log is where the cause shows.
                tracing::warn!(
                    target = %req.target,
                    protocol = req.protocol,
                    class,
                    cause = %failure.detail,
                    "connection failed after an early reply (the application sees a reset)"
                );
            }
            if let Some(bytes) = req.answer.failure(&failure, &req.target).filter(|_| !early) {
                f.reject(&bytes).await;
            } else {
                // Already told "connected" (or transparent): a reset is
                // the only way left to say it failed.
                let (app, _) = f.into_parts();
                let _ = app.set_zero_linger();
            }
            return Next::Done;
        }
    };
    out.server = Some(opened.server);
    out.syn_data = opened.syn_data;
    out.tls = opened.stream.tls_handshake();
    if let Some(kind) = out.tls {
        shared.stats.tls_handshake(kind);
    }
    if let Some(taken) = opened.stream.early_data() {
        shared.stats.tls_early_data(taken);
    }
    if !early {
        let bytes = req.answer.success(opened.reply.as_ref());
        if !bytes.is_empty() && f.send(&bytes).await.is_err() {
            out.reply = "application gone before the reply".into();
            return Next::Done;
        }
    }
    out.reply = "connected".into();
    let (mut app, leftover) = f.into_parts();
    let mut server = opened.stream;
    let mut pre_up = initial.len() as u64;
    let mut pre_down = 0u64;
    if !rest.is_empty() || !leftover.is_empty() {
        let ok = server.write_all(&rest).await.is_ok() && server.write_all(&leftover).await.is_ok();
        if !ok {
            out.reply = "server closed before the application's data".into();
            // Told "connected": the application must not see a clean end.
            let _ = app.set_zero_linger();
            return Next::Done;
        }
        pre_up += (rest.len() + leftover.len()) as u64;
    }
    if !opened.from_server.is_empty() {
        if app.write_all(&opened.from_server).await.is_err() {
            out.reply = "application gone".into();
            // The target must not see a clean end either.
            let _ = server.set_zero_linger();
            return Next::Done;
        }
        pre_down += opened.from_server.len() as u64;
    }
    Next::Relay(Ready {
        app,
        server,
        pre_up,
        pre_down,
    })
}

/// Relays between the application and the server, sampling the server
/// connection's subflows while it runs. The streams stay in `ready`,
/// borrowed where they lie (this is not an `async fn`, which would keep
/// its arguments twice).
#[allow(clippy::manual_async_fn)] // See `follow`: arguments once, not twice.
fn carry<'a>(
    ready: &'a mut Ready,
    shared: &'a Shared,
    out: &'a mut Outcome,
    id: u64,
    kind: FrontEnd,
) -> impl Future<Output = ()> + 'a {
    async move {
        let Ready {
            app,
            server,
            pre_up,
            pre_down,
        } = ready;
        let transport = sys::transport(&**server);
        shared.stats.relaying(
            id,
            kind.name(),
            out.protocol.unwrap_or("none"),
            out.target.as_deref().unwrap_or("-"),
            transport,
        );
        let record = |sock: &TcpStream| {
            let now = sample(sock, &shared.interfaces());
            if !now.is_empty() {
                shared.stats.sample(id, now);
            }
        };
        let opts = RelayOptions {
            idle_timeout: shared.upstream.settings().idle_timeout,
            buffer_size: RELAY_BUFFER,
            ..RelayOptions::default()
        };
        // Plain TCP or MPTCP to the server: the bytes never enter user
        // space (`splice(2)`, the kernel's MPTCP sockets take it). Over
        // TLS, or with `SIXPATH_RELAY=copy`, the buffered copy.
        let (mut stats, sampled_at_end) =
            if let (ServerStream::Plain(tcp), RelayMode::Auto) = (&*server, opts.mode) {
                spliced(app, tcp, opts, &shared.cutoff, &record).await
            } else {
                let mut watched = Sampled {
                    inner: server,
                    record: &record,
                    next: Instant::now() + SAMPLE_EVERY,
                    ends: Ends::default(),
                };
                let stats = relay::relay_copy(&mut *app, &mut watched, opts, &shared.cutoff).await;
                (stats, watched.ends.sampled_after_both)
            };
        // The subflows as they ended (a connection shorter than one sample
        // period is counted here only), unless a sample taken after the
        // last byte both ways already says it; before an abnormal end's
        // reset, which tears the subflows down.
        if !sampled_at_end {
            record(server);
        }
        // An abnormal end reaches the other side as a reset.
        relay::pass_on_end(stats.end, app, server, &shared.cutoff).await;
        out.transport = Some(sys::transport_now(&**server, transport));
        stats.client_to_target += *pre_up;
        stats.target_to_client += *pre_down;
        out.relay = Some(stats);
    }
}

/// Which ends of the relay went by, for sampling the server connection's
/// subflows once after the last byte both ways: at the application's EOF,
/// before our FIN to the server (the connection is whole then, whatever
/// the server did), and at the server's EOF only if ours went first (the
/// server's last bytes came after that sample). One sample per connection
/// when the server ends first, as a request and its answer do; two when
/// the application does.
#[derive(Debug, Default)]
struct Ends {
    /// The application's EOF (our shutdown towards the server).
    up: bool,
    /// The server's EOF.
    down: bool,
    /// A sample was taken after both.
    sampled_after_both: bool,
}

impl Ends {
    /// Notes the EOF of `direction` (`Up`: the application's); says
    /// whether to sample the server connection now.
    fn eof(&mut self, direction: Direction) -> bool {
        let sample = match direction {
            Direction::Up if !self.up => {
                self.up = true;
                true
            }
            Direction::Down if !self.down => {
                self.down = true;
                self.up
            }
            Direction::Up | Direction::Down => false,
        };
        if sample && self.up && self.down {
            self.sampled_after_both = true;
        }
        sample
    }
}

/// The `splice(2)` relay between the application and a plain server
/// connection, which never passes through [`Sampled`]: the server's
/// subflows are sampled (`record`) as there, on the relay's own progress
/// (at most every [`SAMPLE_EVERY`] while bytes move: an idle connection
/// costs no timer) and at the directions' EOFs ([`Ends`]), before the FIN
/// is passed on (subflows are torn down with the connection). Also says
/// whether a sample was taken after both EOFs. Not boxed: splice is the common path, and its
/// state inline (measured: 4.4 KB per idle chain connection in the client)
/// costs less than a box of it beside the task (5.1 KB); TLS and copy
/// connections carry the same task size.
#[allow(clippy::manual_async_fn)] // See `follow`: arguments once, not twice.
fn spliced<'a>(
    app: &'a TcpStream,
    server: &'a TcpStream,
    opts: RelayOptions,
    cutoff: &'a Cutoff,
    record: &'a (dyn Fn(&TcpStream) + Sync),
) -> impl Future<Output = (RelayStats, bool)> + 'a {
    async move {
        let start = Instant::now();
        let every = u64::try_from(SAMPLE_EVERY.as_millis()).unwrap_or(u64::MAX);
        // Milliseconds after `start` of the next sample.
        let next = AtomicU64::new(every);
        let ends = Mutex::new(Ends::default());
        let observe = |p: Progress| match p {
            Progress::Moved => {
                let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                if now >= next.load(Ordering::Relaxed) {
                    record(server);
                    next.store(now.saturating_add(every), Ordering::Relaxed);
                }
            }
            Progress::Eof(direction) => {
                let sample = ends
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .eof(direction);
                if sample {
                    record(server);
                }
            }
        };
        let stats = relay::relay_splice(app, server, opts, cutoff, &observe).await;
        let ends = ends.into_inner().unwrap_or_else(PoisonError::into_inner);
        (stats, ends.sampled_after_both)
    }
}

/// The server stream, with its subflows sampled (`record`) at most every
/// [`SAMPLE_EVERY`] while bytes move, and at its EOF and our shutdown of its
/// write side ([`Ends`]; subflows are torn down with the connection). Sampling rides on the relay's own reads and writes: an
/// idle connection costs no timer and no wake-up, and needs no second
/// descriptor for the sampler.
struct Sampled<'a> {
    inner: &'a mut ServerStream,
    record: &'a (dyn Fn(&TcpStream) + Sync),
    next: Instant,
    /// The server's EOF and our shutdown of the write side.
    ends: Ends,
}

impl Sampled<'_> {
    /// Samples when the period has passed.
    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next {
            (self.record)(self.inner);
            self.next = now + SAMPLE_EVERY;
        }
    }
}

impl AsyncRead for Sampled<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            if buf.filled().len() == before && buf.remaining() > 0 {
                if this.ends.eof(Direction::Down) {
                    (this.record)(this.inner);
                }
            } else {
                this.tick();
            }
        }
        r
    }
}

impl AsyncWrite for Sampled<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(_))) {
            this.tick();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.ends.eof(Direction::Up) {
            (this.record)(this.inner);
        }
        Pin::new(&mut *this.inner).poll_shutdown(cx)
    }
}

fn log(
    peer: SocketAddr,
    kind: FrontEnd,
    upstream: &str,
    started: Instant,
    o: &Outcome,
    per_interface: &[InterfaceStats],
    path_changes: u64,
) {
    // `wlan0:2/1200/35100/18.2ms`: subflows/bytes sent/bytes received/RTT.
    let paths = if per_interface.is_empty() {
        "-".to_owned()
    } else {
        per_interface
            .iter()
            .map(|i| {
                format!(
                    "{}:{}/{}/{}/{:.1}ms",
                    i.iface,
                    i.subflows,
                    i.bytes_sent,
                    i.bytes_received,
                    f64::from(if i.min_rtt_us == u32::MAX {
                        0
                    } else {
                        i.min_rtt_us
                    }) / 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let (up, down, end, path) = o.relay.map_or((0, 0, "none", "-"), |r| {
        (
            r.client_to_target,
            r.target_to_client,
            end_name(r.end),
            r.path.name(),
        )
    });
    let transport = o.transport.map_or("-", Transport::name);
    let subflows = o.transport.map_or(0, Transport::subflows);
    tracing::info!(
        %peer,
        frontend = kind.name(),
        protocol = o.protocol.unwrap_or("-"),
        user = o.user.as_deref().unwrap_or("-"),
        target = o.target.as_deref().unwrap_or("-"),
        upstream,
        server = %o.server.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        reply = %o.reply,
        early = o.early,
        initial_data = o.initial_data,
        syn_data = o.syn_data,
        tls = o.tls.map_or("no", sixpath_net::tls::Handshake::name),
        transport,
        subflows,
        %paths,
        path_changes,
        bytes_up = up,
        bytes_down = down,
        end,
        relay = path,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection closed"
    );
}

fn end_name(e: relay::RelayEnd) -> &'static str {
    match e {
        relay::RelayEnd::Closed => "closed",
        relay::RelayEnd::Idle => "idle-timeout",
        relay::RelayEnd::ClientError => "app-error",
        relay::RelayEnd::TargetError => "server-error",
        relay::RelayEnd::Drained => "drained",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connected pair of loopback streams.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (b, _) = l.accept().await.expect("accept");
        (a, b)
    }

    #[test]
    fn server_ending_first_is_sampled_once_at_the_applications_eof() {
        let mut ends = Ends::default();
        assert!(!ends.eof(Direction::Down), "the server's EOF first: later");
        assert!(ends.eof(Direction::Up), "the application's EOF: now");
        assert!(ends.sampled_after_both);
        assert!(!ends.eof(Direction::Up), "once");
    }

    #[test]
    fn application_ending_first_is_sampled_at_both_eofs() {
        let mut ends = Ends::default();
        assert!(ends.eof(Direction::Up), "before our FIN to the server");
        assert!(!ends.sampled_after_both, "the server may still send");
        assert!(ends.eof(Direction::Down), "after the server's last byte");
        assert!(ends.sampled_after_both);
    }

    #[test]
    fn one_eof_alone_leaves_the_sample_at_the_end_to_the_caller() {
        let mut ends = Ends::default();
        assert!(!ends.eof(Direction::Down));
        assert!(!ends.sampled_after_both);
    }

    /// The task of an idle relayed connection holds this future inline:
    /// beyond the relay it keeps only the streams and the log line, not the
    /// handshakes (several KiB, freed before the
    /// relay starts).
    #[tokio::test]
    async fn connection_future_holds_little_beyond_the_relay() {
        let (app, _peer) = pair().await;
        let addr = app.local_addr().expect("addr");
        let shared = Arc::new(Shared::new(
            Upstream::new(crate::config::Settings::new(addr, addr)),
            None,
        ));
        let permit = Limits::new(1, 1).acquire(addr.ip()).expect("a place");
        let whole = std::mem::size_of_val(&serve(
            app,
            addr,
            FrontEnd::Mixed,
            addr,
            Arc::clone(&shared),
            permit,
        ));
        let (mut app, _a) = pair().await;
        let (server, _s) = pair().await;
        let mut server = ServerStream::Plain(server);
        let record = |_: &TcpStream| {};
        let mut watched = Sampled {
            inner: &mut server,
            record: &record,
            next: Instant::now(),
            ends: Ends::default(),
        };
        let cutoff = Cutoff::new();
        let copy = std::mem::size_of_val(&relay::relay_copy(
            &mut app,
            &mut watched,
            RelayOptions::default(),
            &cutoff,
        ));
        let (app, _b) = pair().await;
        let (server, _t) = pair().await;
        let splice = std::mem::size_of_val(&spliced(
            &app,
            &server,
            RelayOptions::default(),
            &cutoff,
            &record,
        ));
        let relay = copy.max(splice);
        assert!(
            whole < relay + 1200,
            "connection future {whole} bytes, relay {relay}"
        );
    }
}
