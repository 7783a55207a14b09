//! Path probes: one small UDP echo per configured path per interval to
//! the server's listener port (wire format in `docs/probe.md`, codec in
//! `sixpath_protocol::probe`), sent only while connections are open (or
//! always with `--probe-idle`), over a socket bound to the path's
//! interface. The server answers only probes that carry a Session ID it
//! granted, so probing needs a SOCKS6 session with the server; without one
//! a path's health follows its link events alone.
//!
//! Each answer or loss feeds the path's [`super::health::PathHealth`]; the
//! first loss on a healthy path is followed by the next probe at once, so
//! a blackholed path is judged `down` within one interval plus two probe
//! timeouts.
//!
//! The same loop watches the kernel's Multipath TCP blackhole detection
//! (`net.mptcp.blackhole_timeout`, the `MPTcpExt` `Blackhole` counter of
//! `/proc/net/netstat`): a path outage can look to the kernel like a
//! middlebox that strips MPTCP, after which it opens new connections as
//! plain TCP for up to an hour. With `CAP_NET_ADMIN` the client resets it
//! (writing the sysctl clears the kernel's count); without, it says so
//! with the command to run.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sixpath_protocol::probe::{self, Probe, ProbeKind};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::Inner;

/// Default time between two probes of one path.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

/// Padding that keeps a request at least twice the size of its reply.
const PAD: usize = probe::REPLY_LEN;

/// How the probes run (`--probe-interval`, `--probe-idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between two probes of one path.
    pub interval: Duration,
    /// Probe while no connection is open too.
    pub idle: bool,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            idle: false,
        }
    }
}

/// What the probes need from the rest of the client.
pub trait ProbeContext: Send + Sync + 'static {
    /// The server's address and a Session ID it granted; `None` when there
    /// is none to prove (no session yet, or an upstream without sessions).
    fn target(&self) -> impl Future<Output = Option<(SocketAddr, Vec<u8>)>> + Send;
    /// Whether application connections are open.
    fn active(&self) -> bool;
}

/// Opens the probe socket of one path: bound to the interface
/// (`SO_BINDTODEVICE`), or where that is not allowed to the path's
/// address, and connected to the server.
fn open_socket(iface: &str, source: Option<IpAddr>, server: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if let Err(e) = sock.bind_device(Some(iface.as_bytes())) {
        let Some(ip) = source.filter(|ip| ip.is_ipv4() == server.is_ipv4()) else {
            return Err(e);
        };
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    sock.set_nonblocking(true)?;
    sock.connect(&server.into())?;
    UdpSocket::from_std(sock.into())
}

/// Probes one path until the path manager is gone.
pub(super) async fn run<C: ProbeContext>(
    iface: String,
    index: u16,
    settings: ProbeSettings,
    ctx: std::sync::Arc<C>,
    inner: Weak<Mutex<Inner>>,
) {
    let epoch = Instant::now();
    let mut seq: u32 = 0;
    let mut socket: Option<(SocketAddr, UdpSocket)> = None;
    let mut buf = vec![0u8; probe::MAX_LEN];
    let mut out = BytesMut::with_capacity(probe::MAX_LEN);
    let mut next = tokio::time::Instant::now();
    let mut unanswered: u32 = 0;
    loop {
        tokio::time::sleep_until(next).await;
        next += settings.interval;
        let (timeout, source, link, single) = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let g = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(h) = g.health.get(&iface) else {
                return;
            };
            let single = g.policy == super::PathPolicy::Single;
            (h.probe_timeout(), g.source_of(&iface), h.link(), single)
        };
        // Under `single` health decides nothing and nothing is sent on the
        // other paths; a switch to another policy resumes probing here.
        if single || !link || !(settings.idle || ctx.active()) {
            set_probing(&inner, &iface, false);
            continue;
        }
        let Some((server, token)) = ctx.target().await else {
            set_probing(&inner, &iface, false);
            continue;
        };
        if socket.as_ref().is_none_or(|(s, _)| *s != server) {
            socket = match open_socket(&iface, source, server) {
                Ok(s) => Some((server, s)),
                Err(e) => {
                    tracing::debug!(%iface, error = %e, "probe socket");
                    None
                }
            };
        }
        let Some((_, sock)) = socket.as_ref() else {
            continue;
        };
        seq = seq.wrapping_add(1);
        let sent_at = Instant::now();
        let request = Probe {
            kind: ProbeKind::Request,
            path: index,
            seq,
            sent: u64::try_from(sent_at.duration_since(epoch).as_micros()).unwrap_or(u64::MAX),
            token,
        };
        out.clear();
        request.encode(&mut out);
        out.resize(out.len() + PAD, 0);
        let sent = sock.send(&out).await;
        let answered = match sent {
            Ok(_) => {
                set_probing(&inner, &iface, true);
                with_health(&inner, &iface, |h| {
                    h.on_probe_sent();
                    None
                });
                wait_reply(sock, &mut buf, seq, timeout).await
            }
            // No route (link gone), or the socket broke: a lost probe, and
            // a fresh socket next time.
            Err(e) => {
                tracing::debug!(%iface, error = %e, "probe send");
                socket = None;
                false
            }
        };
        let now = Instant::now();
        if !answered && !server_answers(&inner, answered) {
            // A server that never answered a probe (one without probe
            // support, or one that does not know our session): losses
            // say nothing about the path.
            unanswered = unanswered.saturating_add(1);
            if unanswered == 20 {
                tracing::info!(
                    path = %iface,
                    "the server answers no path probes (not a sixpath-server, an older one, or no session); path health follows link events only"
                );
            }
            continue;
        }
        if answered {
            server_answers(&inner, true);
        }
        let t = if answered {
            with_health(&inner, &iface, |h| {
                h.on_probe_answered(now.duration_since(sent_at), now)
            })
        } else {
            with_health(&inner, &iface, |h| h.on_probe_lost(now))
        };
        if t.is_some_and(|t| t.to == super::health::State::Suspect) {
            // Confirm or clear a first loss at once, not an interval later.
            next = tokio::time::Instant::now();
        }
    }
}

/// Waits up to `timeout` for the reply to probe `seq` (older replies and
/// anything that is not a reply are skipped).
async fn wait_reply(sock: &UdpSocket, buf: &mut [u8], seq: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Ok(r) = tokio::time::timeout_at(deadline, sock.recv(buf)).await else {
            return false;
        };
        let Ok(n) = r else {
            // ICMP unreachable and the like arrive as errors on a
            // connected UDP socket: no answer.
            return false;
        };
        if let Ok(p) = probe::decode(buf.get(..n).unwrap_or_default())
            && p.kind == ProbeKind::Reply
            && p.seq == seq
        {
            return true;
        }
    }
}

/// Whether the server has answered any probe (on any path); `answered`
/// records that this one was.
fn server_answers(inner: &Weak<Mutex<Inner>>, answered: bool) -> bool {
    let Some(inner) = inner.upgrade() else {
        return false;
    };
    let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
    g.server_answers_probes |= answered;
    g.server_answers_probes
}

fn set_probing(inner: &Weak<Mutex<Inner>>, iface: &str, on: bool) {
    if let Some(inner) = inner.upgrade() {
        let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.set_probing(iface, on);
    }
}

/// Applies `f` to the path's health and lets the path manager act on the
/// transition it returns.
fn with_health(
    inner: &Weak<Mutex<Inner>>,
    iface: &str,
    f: impl FnOnce(&mut super::health::PathHealth) -> Option<super::health::Transition>,
) -> Option<super::health::Transition> {
    let inner = inner.upgrade()?;
    let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
    let t = f(g.health.get_mut(iface)?)?;
    g.on_transition(iface, t);
    if t.to == super::health::State::Down && g.health.len() > 1 {
        g.check_all_lost();
    }
    Some(t)
}

/// The `Blackhole` counter of the `MPTcpExt` line pair in
/// `/proc/net/netstat` (this network namespace), if the kernel has it.
pub fn mptcp_blackholes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("MPTcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "Blackhole")
        .and_then(|(_, v)| v.parse().ok())
}

/// Watches the kernel's MPTCP blackhole detection every `every` and
/// resets it when it fires (see the module documentation).
pub(super) async fn watch_blackhole(every: Duration, inner: Weak<Mutex<Inner>>) {
    let Some(mut seen) = mptcp_blackholes() else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Some(now) = mptcp_blackholes() else {
            return;
        };
        if now <= seen {
            continue;
        }
        seen = now;
        let timeout = sixpath_net::sys::sysctl_int("net/mptcp/blackhole_timeout");
        let reset =
            timeout.map(|t| std::fs::write("/proc/sys/net/mptcp/blackhole_timeout", t.to_string()));
        let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.blackholes = now;
        match reset {
            Some(Ok(())) => {
                g.blackhole_resets += 1;
                tracing::warn!(
                    blackholes = now,
                    "the kernel judged MPTCP blocked on the way to a server (MPTcpExt Blackhole) and would open new connections as plain TCP for net.mptcp.blackhole_timeout seconds; a path outage looks the same, so the client reset it"
                );
            }
            Some(Err(e)) => tracing::warn!(
                blackholes = now,
                error = %e,
                "the kernel judged MPTCP blocked (MPTcpExt Blackhole) and opens new connections as plain TCP for a while; to undo it run as root: sysctl -w net.mptcp.blackhole_timeout={}",
                timeout.unwrap_or(3600)
            ),
            None => {}
        }
    }
}
