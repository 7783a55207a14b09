//! Counters for the admin endpoint (`/stats` JSON, `/metrics` Prometheus)
//! and `sixpath-client status`.
//!
//! Everything is an atomic counter bumped once per event, except the
//! per-interface byte counts: each connection's subflow statistics
//! (`MPTCP_FULL_INFO`) are sampled while it relays and added to the
//! interface totals when it ends; `/stats` adds the latest sample of every
//! open connection, so a long download shows up while it runs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sixpath_net::mptcp::InterfaceStats;
use sixpath_net::sys::Transport;
use sixpath_net::tls::Handshake;
use sixpath_service::limits::Refused;

use crate::failure::Kind;

/// Front-end protocols, as the connection log names them; `none` for
/// connections closed before their protocol was known.
pub const PROTOCOLS: [&str; 8] = [
    "socks5",
    "socks4",
    "socks4a",
    "socks6",
    "http-connect",
    "http",
    "transparent",
    "none",
];

/// Error classes: the failure classes towards the server and target, plus
/// `tls` (handshake with the server failed), `handshake` (the application's
/// handshake was refused) and `handshake-timeout`.
pub const ERRORS: [&str; 13] = [
    "general",
    "not-allowed",
    "network-unreachable",
    "host-unreachable",
    "refused",
    "ttl-expired",
    "command-not-supported",
    "address-type-not-supported",
    "timed-out",
    "unavailable",
    "tls",
    "handshake",
    "handshake-timeout",
];

/// The error class of a failure towards the server.
pub fn error_class(kind: Kind, tls: bool) -> &'static str {
    if tls {
        return "tls";
    }
    match kind {
        Kind::General => "general",
        Kind::NotAllowed => "not-allowed",
        Kind::NetworkUnreachable => "network-unreachable",
        Kind::HostUnreachable => "host-unreachable",
        Kind::Refused => "refused",
        Kind::TtlExpired => "ttl-expired",
        Kind::CommandNotSupported => "command-not-supported",
        Kind::AddressTypeNotSupported => "address-type-not-supported",
        Kind::TimedOut => "timed-out",
        Kind::Unavailable => "unavailable",
    }
}

/// Bytes and subflows over one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceBytes {
    /// Subflows opened over it (summed over connections).
    pub subflows: u64,
    /// Bytes sent to the server over it.
    pub bytes_sent: u64,
    /// Bytes received from the server over it.
    pub bytes_received: u64,
    /// The smoothed RTT of its subflows in the latest sample (the lowest
    /// when several), in microseconds; 0 before any.
    #[serde(default)]
    pub rtt_us: u32,
}

/// One configured path as the path manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// Interface name.
    pub interface: String,
    /// The interface's address (`null` when it has none usable).
    pub address: Option<String>,
    /// An MPTCP endpoint for the address is in the kernel.
    pub endpoint_installed: bool,
    /// Subflows from it are backup subflows.
    pub backup: bool,
}

/// One configured path's health, as the path manager judges it
/// (`docs/paths.md`, "Path health").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathHealthInfo {
    /// Interface name.
    pub interface: String,
    /// `up`, `suspect` or `down`.
    pub state: String,
    /// Milliseconds in this state.
    pub since_ms: u64,
    /// Probes are running (a SOCKS6 session with the server and open
    /// connections, or `--probe-idle`).
    pub probing: bool,
    /// Smoothed probe round-trip time, microseconds (`null` before any
    /// answer).
    pub probe_rtt_us: Option<u64>,
    /// Probes sent, answered and lost.
    pub probes_sent: u64,
    /// See `probes_sent`.
    pub probes_answered: u64,
    /// See `probes_sent`.
    pub probes_lost: u64,
    /// State changes since start.
    pub transitions: u64,
    /// The last change: `from -> to (cause)`, with how long the path had
    /// been silent (to `down`) or out (back `up`), and how long ago.
    pub last_change: Option<String>,
}

/// How many failed connections `/stats` lists (`recent_failures`).
pub const RECENT_FAILURES: usize = 16;

/// A connection that could not be made through the server, for
/// `recent_failures`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureInfo {
    /// When, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// How long before the statistics were taken, in milliseconds.
    pub age_ms: u64,
    /// The application's protocol ([`PROTOCOLS`]).
    pub protocol: String,
    /// The target, as the application named it.
    pub target: String,
    /// The error class ([`ERRORS`]).
    pub class: String,
    /// What happened, as the connection's log line says.
    pub cause: String,
    /// The application had been answered early, so it only saw a reset.
    pub early: bool,
}

/// Counts by name.
pub type Named = BTreeMap<String, u64>;

/// Open and total connections of one front-end protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTotal {
    /// Being served now.
    pub open: u64,
    /// Served since start (finished ones).
    pub total: u64,
}

/// Everything `/stats` reports, also what `status` reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the client started.
    pub uptime_seconds: u64,
    /// Application connections being served now.
    pub connections_open: u64,
    /// Application connections accepted since start.
    pub connections_accepted: u64,
    /// Per front-end protocol.
    pub protocols: BTreeMap<String, OpenTotal>,
    /// Finished connections by how the server leg was carried: `mptcp`,
    /// `fallback` (MPTCP asked, TCP used), `tcp` (MPTCP not asked).
    pub upstream: Named,
    /// Subflows of finished MPTCP connections (summed).
    pub subflows: u64,
    /// Bytes from applications to targets.
    pub bytes_up: u64,
    /// Bytes from targets to applications.
    pub bytes_down: u64,
    /// Per interface, finished connections plus the latest sample of open
    /// ones.
    pub interfaces: BTreeMap<String, InterfaceBytes>,
    /// Errors by class ([`ERRORS`]).
    pub errors: Named,
    /// Applications answered early whose connection then failed (they
    /// saw a reset).
    pub early_reply_closes: u64,
    /// Application connections refused at accept and closed at once, by
    /// cap: `total` (`--max-connections`), `per_source`
    /// (`--max-connections-per-source`).
    #[serde(default)]
    pub refused_by_cap: Named,
    /// Application logins with wrong credentials (`--local-user`).
    #[serde(default)]
    pub auth_failures: u64,
    /// Application logins refused unchecked: their source failed
    /// `--max-failed-logins` times within `--failed-login-window`.
    #[serde(default)]
    pub logins_refused: u64,
    /// Completed TLS handshakes with the server by kind: `full` or
    /// `resumed` (a session ticket of an earlier connection).
    #[serde(default)]
    pub tls_handshakes: Named,
    /// Requests sent to the server as TLS 1.3 early data: `accepted`, or
    /// `rejected` (sent again after the handshake).
    #[serde(default)]
    pub tls_early_data: Named,
    /// Configured paths.
    pub paths: Vec<PathInfo>,
    /// The path policy (`null` without paths).
    #[serde(default)]
    pub path_policy: Option<String>,
    /// Each configured path's health.
    #[serde(default)]
    pub path_health: Vec<PathHealthInfo>,
    /// How often the kernel's MPTCP blackhole detection fired in this
    /// network namespace (`MPTcpExt` `Blackhole`), and how often the client
    /// reset it.
    #[serde(default)]
    pub mptcp_blackholes: u64,
    /// See `mptcp_blackholes`.
    #[serde(default)]
    pub mptcp_blackhole_resets: u64,
    /// The last [`RECENT_FAILURES`] connections that could not be made
    /// through the server, newest first.
    #[serde(default)]
    pub recent_failures: Vec<FailureInfo>,
}

/// One interface of an open connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnInterface {
    /// Interface name (or the local address when it is unknown).
    pub interface: String,
    /// Subflows over it.
    pub subflows: u64,
    /// Bytes sent to the server over it.
    pub bytes_sent: u64,
    /// Bytes received from the server over it.
    pub bytes_received: u64,
    /// Lowest smoothed RTT of its subflows, in microseconds (0 unknown).
    pub rtt_us: u32,
}

/// An open connection in its relay, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenConnection {
    /// Its number (in order of acceptance).
    pub id: u64,
    /// The front-end that accepted it (`mixed`, `http`, `transparent`).
    pub front_end: &'static str,
    /// The application's protocol.
    pub protocol: &'static str,
    /// The target.
    pub target: String,
    /// How the server connection is carried (`mptcp`, `tcp-fallback`,
    /// `tcp`), as at the start of the relay.
    pub transport: &'static str,
    /// Milliseconds since the relay began.
    pub age_ms: u64,
    /// Bytes per interface as of the latest sample (empty for TCP).
    pub interfaces: Vec<ConnInterface>,
}

/// What is kept of a relaying connection for [`OpenConnection`]: one per
/// open connection, so kept small (72 bytes with its key, from 88: the
/// start as milliseconds after [`Stats`] began, the transport as itself).
#[derive(Debug)]
struct Relaying {
    /// Milliseconds after `Stats::started`.
    since_ms: u64,
    front_end: &'static str,
    protocol: &'static str,
    target: Box<str>,
    transport: Transport,
}

/// The counters.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    accepted: AtomicU64,
    open: [AtomicU64; PROTOCOLS.len()],
    total: [AtomicU64; PROTOCOLS.len()],
    mptcp: AtomicU64,
    fallback: AtomicU64,
    tcp: AtomicU64,
    subflows: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    errors: [AtomicU64; ERRORS.len()],
    early_reply_closes: AtomicU64,
    auth_failures: AtomicU64,
    logins_refused: AtomicU64,
    refused_total_cap: AtomicU64,
    refused_source_cap: AtomicU64,
    tls_handshakes: [AtomicU64; Handshake::ALL.len()],
    /// Early data accepted, rejected.
    tls_early_data: [AtomicU64; 2],
    next_id: AtomicU64,
    interfaces: Mutex<BTreeMap<String, InterfaceBytes>>,
    live: Mutex<HashMap<u64, Vec<InterfaceStats>>>,
    /// Connections in their relay.
    relaying: Mutex<HashMap<u64, Relaying>>,
    /// The last failures, oldest first, with when they happened.
    recent: Mutex<VecDeque<(Instant, FailureInfo)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn index(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len().saturating_sub(1))
}

fn merge(into: &mut BTreeMap<String, InterfaceBytes>, ifaces: &[InterfaceStats]) {
    for i in ifaces {
        let e = into.entry(i.iface.clone()).or_default();
        e.subflows += i.subflows as u64;
        e.bytes_sent += i.bytes_sent;
        e.bytes_received += i.bytes_received;
        if i.min_rtt_us != 0 && i.min_rtt_us != u32::MAX {
            e.rtt_us = i.min_rtt_us;
        }
    }
}

impl Stats {
    /// Zeroed counters; uptime counts from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            accepted: AtomicU64::new(0),
            open: Default::default(),
            total: Default::default(),
            mptcp: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            tcp: AtomicU64::new(0),
            subflows: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            errors: Default::default(),
            early_reply_closes: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            logins_refused: AtomicU64::new(0),
            refused_total_cap: AtomicU64::new(0),
            refused_source_cap: AtomicU64::new(0),
            tls_handshakes: Default::default(),
            tls_early_data: Default::default(),
            next_id: AtomicU64::new(0),
            interfaces: Mutex::new(BTreeMap::new()),
            live: Mutex::new(HashMap::new()),
            relaying: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_FAILURES)),
        }
    }

    /// Milliseconds since these counters began.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// An application connection was accepted; returns its id for
    /// [`Stats::sample`].
    pub fn accepted(&self) -> u64 {
        add(&self.accepted, 1);
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The application's protocol became known.
    pub fn opened(&self, protocol: &str) {
        if let Some(c) = self.open.get(index(&PROTOCOLS, protocol)) {
            add(c, 1);
        }
    }

    /// A connection ended: `protocol` as given to [`Stats::opened`] (or
    /// `None`), the server leg's transport and the bytes each way. Returns
    /// its per-interface statistics (latest sample) for the log line.
    pub fn closed(
        &self,
        id: u64,
        protocol: Option<&str>,
        transport: Option<Transport>,
        up: u64,
        down: u64,
    ) -> Vec<InterfaceStats> {
        let i = index(&PROTOCOLS, protocol.unwrap_or("none"));
        if protocol.is_some()
            && let Some(c) = self.open.get(i)
        {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(c) = self.total.get(i) {
            add(c, 1);
        }
        let last = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        self.relaying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        match transport {
            Some(Transport::Mptcp { subflows }) => {
                add(&self.mptcp, 1);
                // Subflows may be gone when the relay ends: the largest
                // count seen.
                let sampled: usize = last.iter().flatten().map(|i| i.subflows).sum();
                add(&self.subflows, u64::from(subflows).max(sampled as u64));
            }
            Some(Transport::Fallback) => add(&self.fallback, 1),
            Some(Transport::Tcp) => add(&self.tcp, 1),
            None => {}
        }
        add(&self.bytes_up, up);
        add(&self.bytes_down, down);
        let last = last.unwrap_or_default();
        merge(
            &mut self
                .interfaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            &last,
        );
        last
    }

    /// The latest per-interface sample of open connection `id`. Subflow
    /// byte counts only grow, so a sample with fewer bytes than the one
    /// kept (subflows already gone at the end of the connection) is
    /// ignored.
    pub fn sample(&self, id: u64, mut ifaces: Vec<InterfaceStats>) {
        // Kept for the connection's life: no spare capacity (a vector
        // grown by one push holds room for four).
        ifaces.shrink_to_fit();
        let total = |v: &[InterfaceStats]| {
            v.iter()
                .map(|i| i.bytes_sent + i.bytes_received)
                .sum::<u64>()
        };
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match live.get_mut(&id) {
            Some(kept) if total(kept) > total(&ifaces) => {}
            Some(kept) => *kept = ifaces,
            None => {
                live.insert(id, ifaces);
            }
        }
    }

    /// Connection `id` began its relay: listed by [`Stats::connections`]
    /// until [`Stats::closed`].
    pub fn relaying(
        &self,
        id: u64,
        front_end: &'static str,
        protocol: &'static str,
        target: &str,
        transport: Transport,
    ) {
        self.relaying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                id,
                Relaying {
                    since_ms: self.elapsed_ms(),
                    front_end,
                    protocol,
                    target: target.into(),
                    transport,
                },
            );
    }

    /// The newest `limit` connections in their relay, newest first, with
    /// their bytes per interface, and how many there are in all.
    pub fn connections(&self, limit: usize) -> (Vec<OpenConnection>, usize) {
        let now_ms = self.elapsed_ms();
        let relaying = self
            .relaying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids: Vec<u64> = relaying.keys().copied().collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(limit);
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = ids
            .iter()
            .filter_map(|id| {
                let r = relaying.get(id)?;
                Some(OpenConnection {
                    id: *id,
                    front_end: r.front_end,
                    protocol: r.protocol,
                    target: r.target.to_string(),
                    transport: r.transport.name(),
                    age_ms: now_ms.saturating_sub(r.since_ms),
                    interfaces: live
                        .get(id)
                        .into_iter()
                        .flatten()
                        .map(|i| ConnInterface {
                            interface: i.iface.clone(),
                            subflows: i.subflows as u64,
                            bytes_sent: i.bytes_sent,
                            bytes_received: i.bytes_received,
                            rtt_us: if i.min_rtt_us == u32::MAX {
                                0
                            } else {
                                i.min_rtt_us
                            },
                        })
                        .collect(),
                })
            })
            .collect();
        (list, relaying.len())
    }

    /// An error of class `class` (one of [`ERRORS`]).
    pub fn error(&self, class: &str) {
        if let Some(c) = self.errors.get(index(&ERRORS, class)) {
            add(c, 1);
        }
    }

    /// An application answered early saw its connection reset.
    pub fn early_reply_close(&self) {
        add(&self.early_reply_closes, 1);
    }

    /// A connection to `target` could not be made: kept among the last
    /// [`RECENT_FAILURES`] with its error class and cause, and whether the
    /// application had been answered early.
    pub fn failed(
        &self,
        protocol: &str,
        target: &impl std::fmt::Display,
        class: &str,
        cause: &str,
        early: bool,
    ) {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let info = FailureInfo {
            unix_ms,
            age_ms: 0,
            protocol: protocol.to_owned(),
            target: target.to_string(),
            class: class.to_owned(),
            cause: cause.to_owned(),
            early,
        };
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() >= RECENT_FAILURES {
            recent.pop_front();
        }
        recent.push_back((Instant::now(), info));
    }

    /// A TLS handshake with the server completed.
    pub fn tls_handshake(&self, kind: Handshake) {
        if let Some(c) = self.tls_handshakes.get(kind as usize) {
            add(c, 1);
        }
    }

    /// A request went as TLS early data; the server took it or not.
    pub fn tls_early_data(&self, accepted: bool) {
        let [yes, no] = &self.tls_early_data;
        add(if accepted { yes } else { no }, 1);
    }

    /// An application gave wrong local credentials.
    pub fn auth_failure(&self) {
        add(&self.auth_failures, 1);
    }

    /// An application's login was refused unchecked (its source failed too
    /// often).
    pub fn login_refused(&self) {
        add(&self.logins_refused, 1);
    }

    /// An application connection was refused by a connection cap.
    pub fn refused(&self, cap: Refused) {
        match cap {
            Refused::Total => add(&self.refused_total_cap, 1),
            Refused::PerSource => add(&self.refused_source_cap, 1),
        }
    }

    /// The current values, with `paths` from the path manager.
    pub fn snapshot(&self, open: usize, paths: Vec<PathInfo>) -> Snapshot {
        let mut interfaces = self
            .interfaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for live in self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            merge(&mut interfaces, live);
        }
        Snapshot {
            uptime_seconds: self.started.elapsed().as_secs(),
            connections_open: open as u64,
            connections_accepted: get(&self.accepted),
            protocols: PROTOCOLS
                .iter()
                .zip(self.open.iter().zip(&self.total))
                .map(|(n, (o, t))| {
                    (
                        (*n).to_owned(),
                        OpenTotal {
                            open: get(o),
                            total: get(t),
                        },
                    )
                })
                .collect(),
            upstream: [
                ("mptcp", &self.mptcp),
                ("fallback", &self.fallback),
                ("tcp", &self.tcp),
            ]
            .iter()
            .map(|(n, c)| ((*n).to_owned(), get(c)))
            .collect(),
            subflows: get(&self.subflows),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
            interfaces,
            errors: ERRORS
                .iter()
                .zip(&self.errors)
                .map(|(n, c)| ((*n).to_owned(), get(c)))
                .collect(),
            early_reply_closes: get(&self.early_reply_closes),
            auth_failures: get(&self.auth_failures),
            logins_refused: get(&self.logins_refused),
            refused_by_cap: [
                ("total", &self.refused_total_cap),
                ("per_source", &self.refused_source_cap),
            ]
            .iter()
            .map(|(n, c)| ((*n).to_owned(), get(c)))
            .collect(),
            tls_handshakes: Handshake::ALL
                .iter()
                .zip(&self.tls_handshakes)
                .map(|(k, c)| (k.name().to_owned(), get(c)))
                .collect(),
            tls_early_data: ["accepted", "rejected"]
                .iter()
                .zip(&self.tls_early_data)
                .map(|(k, c)| ((*k).to_owned(), get(c)))
                .collect(),
            paths,
            recent_failures: self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .rev()
                .map(|(at, f)| FailureInfo {
                    age_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
                    ..f.clone()
                })
                .collect(),
            ..Snapshot::default()
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Snapshot {
    /// The Prometheus text exposition of these values.
    pub fn prometheus(&self) -> String {
        let mut s = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(s, "# HELP sixpath_client_{name} {help}");
            let _ = writeln!(s, "# TYPE sixpath_client_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(s, "sixpath_client_{name}{labels} {v}");
            }
        };
        let one = |v: u64| [(String::new(), v)];
        let by = |label: &str, m: &Named| {
            m.iter()
                .map(|(n, v)| (format!("{{{label}=\"{}\"}}", escape(n)), *v))
                .collect::<Vec<_>>()
        };
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the client started.",
            &one(self.uptime_seconds),
        );
        metric(
            "connections_open",
            "gauge",
            "Application connections being served now, by front-end protocol.",
            &self
                .protocols
                .iter()
                .map(|(p, c)| (format!("{{protocol=\"{p}\"}}"), c.open))
                .collect::<Vec<_>>(),
        );
        metric(
            "connections_total",
            "counter",
            "Application connections served to the end, by front-end protocol (none: closed before one was recognised).",
            &self
                .protocols
                .iter()
                .map(|(p, c)| (format!("{{protocol=\"{p}\"}}"), c.total))
                .collect::<Vec<_>>(),
        );
        metric(
            "connections_accepted_total",
            "counter",
            "Application connections accepted.",
            &one(self.connections_accepted),
        );
        metric(
            "upstream_connections_total",
            "counter",
            "Finished server connections by transport (mptcp, fallback: MPTCP asked but TCP used, tcp: MPTCP not asked).",
            &by("transport", &self.upstream),
        );
        metric(
            "subflows_total",
            "counter",
            "Subflows of finished MPTCP server connections.",
            &one(self.subflows),
        );
        metric(
            "tls_handshakes_total",
            "counter",
            "Completed TLS handshakes with the server, by kind (full: certificate and signature; resumed: a session ticket of an earlier connection).",
            &by("kind", &self.tls_handshakes),
        );
        metric(
            "tls_early_data_total",
            "counter",
            "Requests sent to the server as TLS 1.3 early data, by result (accepted; rejected: sent again after the handshake).",
            &by("result", &self.tls_early_data),
        );
        metric(
            "bytes_total",
            "counter",
            "Bytes relayed, by direction (up: application to target).",
            &[
                ("{direction=\"up\"}".to_owned(), self.bytes_up),
                ("{direction=\"down\"}".to_owned(), self.bytes_down),
            ],
        );
        let iface = |f: fn(&InterfaceBytes) -> u64| {
            self.interfaces
                .iter()
                .map(|(n, b)| (format!("{{interface=\"{}\"}}", escape(n)), f(b)))
                .collect::<Vec<_>>()
        };
        metric(
            "interface_sent_bytes_total",
            "counter",
            "Bytes sent to the server per local interface (subflow level).",
            &iface(|b| b.bytes_sent),
        );
        metric(
            "interface_received_bytes_total",
            "counter",
            "Bytes received from the server per local interface (subflow level).",
            &iface(|b| b.bytes_received),
        );
        metric(
            "interface_subflows_total",
            "counter",
            "Subflows per local interface.",
            &iface(|b| b.subflows),
        );
        metric(
            "interface_rtt_microseconds",
            "gauge",
            "Smoothed RTT of the subflows per local interface in the latest sample.",
            &iface(|b| u64::from(b.rtt_us)),
        );
        metric(
            "errors_total",
            "counter",
            "Errors by class.",
            &by("class", &self.errors),
        );
        metric(
            "early_reply_closes_total",
            "counter",
            "Applications answered before the server whose connection then failed (reset).",
            &one(self.early_reply_closes),
        );
        metric(
            "connections_refused_total",
            "counter",
            "Application connections refused at accept and closed at once by a connection cap (total: --max-connections, per_source: --max-connections-per-source).",
            &by("cap", &self.refused_by_cap),
        );
        metric(
            "auth_failures_total",
            "counter",
            "Application logins with wrong local credentials (--local-user).",
            &one(self.auth_failures),
        );
        metric(
            "logins_refused_total",
            "counter",
            "Application logins refused unchecked because their source failed too often (--max-failed-logins).",
            &one(self.logins_refused),
        );
        metric(
            "path_info",
            "gauge",
            "Configured paths: 1 per interface and address, with the endpoint and backup state.",
            &self
                .paths
                .iter()
                .map(|p| {
                    (
                        format!(
                            "{{interface=\"{}\",address=\"{}\",endpoint_installed=\"{}\",backup=\"{}\"}}",
                            escape(&p.interface),
                            escape(p.address.as_deref().unwrap_or("")),
                            p.endpoint_installed,
                            p.backup
                        ),
                        1,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let health = |f: fn(&PathHealthInfo) -> Vec<(String, u64)>| {
            self.path_health
                .iter()
                .flat_map(|h| {
                    f(h).into_iter().map(move |(labels, v)| {
                        (
                            format!("{{interface=\"{}\"{labels}}}", escape(&h.interface)),
                            v,
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        metric(
            "path_health",
            "gauge",
            "Each configured path's health: 1 for its state (up, suspect, down), 0 for the others.",
            &health(|h| {
                ["up", "suspect", "down"]
                    .iter()
                    .map(|st| (format!(",state=\"{st}\""), u64::from(h.state == *st)))
                    .collect()
            }),
        );
        metric(
            "path_transitions_total",
            "counter",
            "Health state changes per path.",
            &health(|h| vec![(String::new(), h.transitions)]),
        );
        metric(
            "path_probes_total",
            "counter",
            "Path probes by result (sent, answered, lost).",
            &health(|h| {
                vec![
                    (",result=\"sent\"".to_owned(), h.probes_sent),
                    (",result=\"answered\"".to_owned(), h.probes_answered),
                    (",result=\"lost\"".to_owned(), h.probes_lost),
                ]
            }),
        );
        metric(
            "path_probe_rtt_microseconds",
            "gauge",
            "Smoothed probe round-trip time per path.",
            &health(|h| {
                h.probe_rtt_us
                    .map(|r| vec![(String::new(), r)])
                    .unwrap_or_default()
            }),
        );
        metric(
            "mptcp_blackholes_total",
            "counter",
            "Times the kernel's MPTCP blackhole detection fired (it then opens new connections as plain TCP).",
            &one(self.mptcp_blackholes),
        );
        metric(
            "mptcp_blackhole_resets_total",
            "counter",
            "Times the client reset the kernel's MPTCP blackhole detection.",
            &one(self.mptcp_blackhole_resets),
        );
        s
    }

    /// The readable summary `sixpath-client status` prints.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "sixpath-client up {}s: {} connections open, {} accepted",
            self.uptime_seconds, self.connections_open, self.connections_accepted
        );
        let per: Vec<String> = self
            .protocols
            .iter()
            .filter(|(_, c)| c.open > 0 || c.total > 0)
            .map(|(p, c)| format!("{p} {} open/{} total", c.open, c.total))
            .collect();
        if !per.is_empty() {
            let _ = writeln!(s, "  by protocol: {}", per.join(", "));
        }
        let up = |k: &str| self.upstream.get(k).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "upstream: {} mptcp ({} subflows), {} fallback to TCP, {} plain TCP",
            up("mptcp"),
            self.subflows,
            up("fallback"),
            up("tcp")
        );
        let _ = writeln!(s, "bytes: {} up, {} down", self.bytes_up, self.bytes_down);
        if self.paths.is_empty() {
            let _ = writeln!(s, "paths: none configured");
        } else {
            let _ = writeln!(s, "paths:");
            for p in &self.paths {
                let b = self
                    .interfaces
                    .get(&p.interface)
                    .copied()
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  {:<12} {:<28} endpoint {:<13} {:<7} {} sent, {} received, {} subflows, rtt {:.1} ms",
                    p.interface,
                    p.address.as_deref().unwrap_or("-"),
                    if p.endpoint_installed {
                        "installed"
                    } else {
                        "not installed"
                    },
                    if p.backup { "backup" } else { "active" },
                    b.bytes_sent,
                    b.bytes_received,
                    b.subflows,
                    f64::from(b.rtt_us) / 1000.0
                );
            }
        }
        if !self.path_health.is_empty() {
            let _ = writeln!(
                s,
                "path health (policy {}):",
                self.path_policy.as_deref().unwrap_or("-")
            );
            for h in &self.path_health {
                let rtt = h.probe_rtt_us.map_or_else(
                    || "-".to_owned(),
                    |r| format!("{:.1} ms", Duration::from_micros(r).as_secs_f64() * 1e3),
                );
                let _ = writeln!(
                    s,
                    "  {:<12} {:<8} for {:.1} s, probes {} ({} sent, {} answered, {} lost), probe rtt {rtt}{}",
                    h.interface,
                    h.state,
                    Duration::from_millis(h.since_ms).as_secs_f64(),
                    if h.probing { "running" } else { "idle" },
                    h.probes_sent,
                    h.probes_answered,
                    h.probes_lost,
                    h.last_change
                        .as_deref()
                        .map(|c| format!("; last change: {c}"))
                        .unwrap_or_default()
                );
            }
        }
        if self.mptcp_blackholes > 0 {
            let _ = writeln!(
                s,
                "MPTCP blackhole detection fired {} time(s) (new connections then use plain TCP); reset by the client {} time(s){}",
                self.mptcp_blackholes,
                self.mptcp_blackhole_resets,
                if self.mptcp_blackhole_resets < self.mptcp_blackholes {
                    "; fix: sysctl -w net.mptcp.blackhole_timeout=3600 (writing it resets the detection)"
                } else {
                    ""
                }
            );
        }
        let other: Vec<_> = self
            .interfaces
            .iter()
            .filter(|(n, _)| !self.paths.iter().any(|p| &p.interface == *n))
            .collect();
        if !other.is_empty() {
            let _ = writeln!(s, "interfaces:");
            for (n, b) in other {
                let _ = writeln!(
                    s,
                    "  {n:<12} {} sent, {} received, {} subflows, rtt {:.1} ms",
                    b.bytes_sent,
                    b.bytes_received,
                    b.subflows,
                    f64::from(b.rtt_us) / 1000.0
                );
            }
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "errors: {}",
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            }
        );
        let _ = writeln!(s, "early-reply closes: {}", self.early_reply_closes);
        if !self.recent_failures.is_empty() {
            let _ = writeln!(s, "recent failures (newest first):");
            for f in &self.recent_failures {
                let _ = writeln!(
                    s,
                    "  {:>8.1} s ago  {:<12} {:<28} {:<18} {}{}",
                    Duration::from_millis(f.age_ms).as_secs_f64(),
                    f.protocol,
                    f.target,
                    f.class,
                    if f.early { "after early reply: " } else { "" },
                    f.cause
                );
            }
        }
        let refused: u64 = self.refused_by_cap.values().sum();
        if refused > 0 {
            let n = |k: &str| self.refused_by_cap.get(k).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "connections refused: {} over --max-connections, {} over --max-connections-per-source",
                n("total"),
                n("per_source")
            );
        }
        if self.auth_failures > 0 || self.logins_refused > 0 {
            let _ = writeln!(
                s,
                "local logins: {} failed, {} refused unchecked (source over --max-failed-logins)",
                self.auth_failures, self.logins_refused
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, sent: u64, received: u64) -> InterfaceStats {
        InterfaceStats {
            iface: name.into(),
            subflows: 1,
            bytes_sent: sent,
            bytes_acked: sent,
            bytes_received: received,
            min_rtt_us: 100,
        }
    }

    /// Every open connection keeps one entry (and its key) in the map of
    /// relaying connections for its whole life.
    #[test]
    fn a_relaying_entry_with_its_key_takes_at_most_72_bytes() {
        assert!(std::mem::size_of::<(u64, Relaying)>() <= 72);
    }

    #[test]
    fn relaying_connections_are_listed_newest_first_with_bytes_per_path_until_closed() {
        let s = Stats::new();
        let a = s.accepted();
        let b = s.accepted();
        let c = s.accepted();
        s.relaying(
            a,
            "mixed",
            "socks5",
            "example.org:443",
            Transport::Mptcp { subflows: 2 },
        );
        s.relaying(
            b,
            "http",
            "http-connect",
            "10.0.0.1:22",
            Transport::Fallback,
        );
        s.relaying(
            c,
            "transparent",
            "transparent",
            "10.0.0.2:80",
            Transport::Tcp,
        );
        s.sample(a, vec![iface("wlan0", 10, 2000), iface("lte0", 5, 700)]);
        let (list, all) = s.connections(2);
        assert_eq!(all, 3);
        let ids: Vec<u64> = list.iter().map(|o| o.id).collect();
        assert_eq!(ids, [c, b], "newest first, at most the limit");
        assert_eq!(list[1].transport, "tcp-fallback");
        assert_eq!(list[1].front_end, "http");
        let (list, _) = s.connections(10);
        let first = list.iter().find(|o| o.id == a).unwrap();
        assert_eq!(first.target, "example.org:443");
        assert_eq!(first.transport, "mptcp");
        let lte = first
            .interfaces
            .iter()
            .find(|i| i.interface == "lte0")
            .unwrap();
        assert_eq!(
            (lte.bytes_sent, lte.bytes_received, lte.rtt_us),
            (5, 700, 100)
        );
        s.closed(
            a,
            Some("socks5"),
            Some(Transport::Mptcp { subflows: 2 }),
            15,
            2700,
        );
        let (list, all) = s.connections(10);
        assert_eq!(all, 2);
        assert!(
            list.iter().all(|o| o.id != a),
            "closed connections leave the list"
        );
    }

    #[test]
    fn counts_connections_transports_and_interface_bytes() {
        let s = Stats::new();
        let a = s.accepted();
        s.opened("socks5");
        s.sample(a, vec![iface("wlan0", 10, 20)]);
        let live = s.snapshot(1, Vec::new());
        assert_eq!(live.protocols["socks5"], OpenTotal { open: 1, total: 0 });
        assert_eq!(
            live.interfaces["wlan0"].bytes_received, 20,
            "open connections count"
        );
        s.sample(a, vec![iface("wlan0", 100, 200), iface("lte0", 1, 2)]);
        s.sample(a, vec![iface("0.0.0.0", 0, 0)]);
        s.closed(
            a,
            Some("socks5"),
            Some(Transport::Mptcp { subflows: 2 }),
            5,
            6,
        );
        let b = s.accepted();
        s.closed(b, None, None, 0, 0);
        s.error("handshake");
        let snap = s.snapshot(0, Vec::new());
        assert_eq!(snap.protocols["socks5"], OpenTotal { open: 0, total: 1 });
        assert_eq!(snap.protocols["none"].total, 1);
        assert_eq!(snap.upstream["mptcp"], 1);
        assert_eq!(snap.subflows, 2);
        assert_eq!((snap.bytes_up, snap.bytes_down), (5, 6));
        assert_eq!(
            snap.interfaces["wlan0"],
            InterfaceBytes {
                subflows: 1,
                bytes_sent: 100,
                bytes_received: 200,
                rtt_us: 100
            }
        );
        assert_eq!(snap.interfaces["lte0"].bytes_sent, 1);
        assert_eq!(snap.errors["handshake"], 1);
        assert_eq!(snap.connections_accepted, 2);
    }

    #[test]
    fn prometheus_has_help_and_type_for_every_metric() {
        let s = Stats::new();
        let paths = vec![PathInfo {
            interface: "wlan0".into(),
            address: Some("198.18.0.2".into()),
            endpoint_installed: true,
            backup: false,
        }];
        let text = s.snapshot(0, paths).prometheus();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        assert!(text.contains("sixpath_client_connections_total{protocol=\"socks5\"} 0\n"));
        assert!(text.contains(
            "sixpath_client_path_info{interface=\"wlan0\",address=\"198.18.0.2\",endpoint_installed=\"true\",backup=\"false\"} 1\n"
        ));
    }

    #[test]
    fn recent_failures_keep_the_last_sixteen_newest_first() {
        let s = Stats::new();
        for i in 0..20 {
            s.failed(
                "socks5",
                &format!("host{i}.invalid:443"),
                "host-unreachable",
                "server replied HOST_UNREACHABLE",
                i % 2 == 0,
            );
        }
        let snap = s.snapshot(0, Vec::new());
        assert_eq!(snap.recent_failures.len(), RECENT_FAILURES);
        let newest = &snap.recent_failures[0];
        assert_eq!(newest.target, "host19.invalid:443");
        assert_eq!(newest.class, "host-unreachable");
        assert_eq!(newest.cause, "server replied HOST_UNREACHABLE");
        assert!(!newest.early);
        assert!(newest.unix_ms > 0);
        assert_eq!(snap.recent_failures[15].target, "host4.invalid:443");
        let summary = snap.summary();
        assert!(
            summary.contains("recent failures (newest first):"),
            "{summary}"
        );
        assert!(
            summary.contains("host18.invalid:443")
                && summary.contains("after early reply: server replied HOST_UNREACHABLE"),
            "{summary}"
        );
        let json = serde_json::to_string(&snap).expect("json");
        let back: Snapshot = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, snap);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let s = Stats::new();
        let snap = s.snapshot(3, Vec::new());
        let json = serde_json::to_string(&snap).expect("json");
        let back: Snapshot = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, snap);
        assert!(back.summary().contains("3 connections open"));
    }
}
