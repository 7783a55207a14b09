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
//! wait for the server's answer and get a proper error code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sixpath_net::relay::{self, RelayOptions, RelayStats};
use sixpath_net::sys::{self, Transport};
use sixpath_protocol::socks6::MAX_INITIAL_DATA_LEN;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::FrontEnd;
use crate::framed::Framed;
use crate::frontend::{self, Context};
use crate::upstream::Upstream;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The server and the configuration.
    pub upstream: Upstream,
    /// Connections being served.
    pub active: AtomicUsize,
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
    /// The answer, or why the connection ended before the relay.
    pub reply: String,
    /// The application was answered before the server.
    pub early: bool,
    /// Bytes sent as initial data in the request.
    pub initial_data: usize,
    /// The SYN's data was acknowledged.
    pub syn_data: bool,
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
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    kind: FrontEnd,
    listener: SocketAddr,
    shared: Arc<Shared>,
) {
    // Counted by the accept loop; uncounted when this ends.
    let _guard = ActiveGuard(&shared.active);
    let started = Instant::now();
    let mut out = Outcome::default();
    run(stream, kind, listener, &shared, &mut out).await;
    log(
        peer,
        kind,
        shared.upstream.settings().upstream.name(),
        started,
        &out,
    );
}

async fn run(
    stream: TcpStream,
    kind: FrontEnd,
    listener: SocketAddr,
    shared: &Shared,
    out: &mut Outcome,
) {
    let settings = shared.upstream.settings();
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + settings.handshake_timeout;
    let mut f = Framed::new(stream);
    let cx = Context {
        local: settings.local_credentials.as_ref(),
        listener,
    };
    let req = match tokio::time::timeout_at(deadline, frontend::handshake(kind, &mut f, cx)).await {
        Ok(Ok(r)) => r,
        Ok(Err(refusal)) => {
            out.reply = refusal.why;
            f.reject(&refusal.bytes).await;
            return;
        }
        Err(_) => {
            out.reply = "handshake timeout".into();
            return;
        }
    };
    out.protocol = Some(req.protocol);
    out.user.clone_from(&req.user);
    out.target = Some(req.target.to_string());
    if req.answer == frontend::Answer::Socks5Udp {
        crate::udp::serve(f, req.target, shared, out).await;
        return;
    }

    let early =
        settings.early_reply && req.answer.can_reply_early() && shared.upstream.health.is_good();
    out.early = early;
    if early && f.send(&req.answer.success(None)).await.is_err() {
        out.reply = "application gone".into();
        return;
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
            out.reply.clone_from(&failure.detail);
            if let Some(bytes) = req.answer.failure(&failure).filter(|_| !early) {
                f.reject(&bytes).await;
            } else {
                // Already told "connected" (or transparent): a reset is
                // the only way left to say it failed.
                let (app, _) = f.into_parts();
                let _ = app.set_zero_linger();
            }
            return;
        }
    };
    out.server = Some(opened.server);
    out.syn_data = opened.syn_data;
    if !early {
        let bytes = req.answer.success(opened.reply.as_ref());
        if !bytes.is_empty() && f.send(&bytes).await.is_err() {
            out.reply = "application gone before the reply".into();
            return;
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
            return;
        }
        pre_up += (rest.len() + leftover.len()) as u64;
    }
    if !opened.from_server.is_empty() {
        if app.write_all(&opened.from_server).await.is_err() {
            out.reply = "application gone".into();
            return;
        }
        pre_down += opened.from_server.len() as u64;
    }
    let opts = RelayOptions {
        idle_timeout: settings.idle_timeout,
        ..RelayOptions::default()
    };
    let mut stats = relay::relay_borrowed(&mut app, &mut server, opts).await;
    out.transport = Some(sys::transport(&server));
    stats.client_to_target += pre_up;
    stats.target_to_client += pre_down;
    out.relay = Some(stats);
}

fn log(peer: SocketAddr, kind: FrontEnd, upstream: &str, started: Instant, o: &Outcome) {
    let (up, down, end) = o.relay.map_or((0, 0, "none"), |r| {
        (r.client_to_target, r.target_to_client, end_name(r.end))
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
        transport,
        subflows,
        bytes_up = up,
        bytes_down = down,
        end,
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
    }
}
