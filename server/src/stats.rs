//! Server counters for the admin endpoint: `/stats` (JSON) and `/metrics`
//! (Prometheus text exposition 0.0.4).
//!
//! Every counter is an atomic updated once per connection, where its log
//! line is written ([`Stats::record`]), plus the login counters updated by
//! the credential check; nothing on the relay path takes a lock.
//! Connections are counted when they end; `connections_open` is the number
//! being served now.
//!
//! Replies are counted by protocol and by class: the outcome of each
//! protocol's reply code in one vocabulary (`success`, `not_allowed`,
//! `host_unreachable`, `auth_failed`, `handshake_timeout`, ...; see
//! [`ReplyClass`]), so SOCKS5, SOCKS6 and Convert can be compared.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::associations::UdpCap;
use crate::limits::Refused;
use crate::relay::RelayStats;
use crate::session::SessionCap;
use crate::sys::Transport;
use sixpath_net::tls::Handshake;

/// Protocols as counted (index into the per-protocol arrays).
const PROTOCOLS: [&str; 5] = ["socks6", "socks5", "socks4", "convert", "none"];
/// Transports as counted.
const TRANSPORTS: [&str; 3] = ["mptcp", "tcp-fallback", "tcp"];

macro_rules! reply_classes {
    ($($variant:ident => $name:literal,)*) => {
        /// What a reply meant, across protocols.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum ReplyClass {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl ReplyClass {
            /// Every class, in index order.
            pub const ALL: &[ReplyClass] = &[$(ReplyClass::$variant,)*];

            /// The label value.
            pub fn name(self) -> &'static str {
                match self {
                    $(ReplyClass::$variant => $name,)*
                }
            }
        }
    };
}

reply_classes! {
    Success => "success",
    GeneralFailure => "general_failure",
    NotAllowed => "not_allowed",
    NetworkUnreachable => "network_unreachable",
    HostUnreachable => "host_unreachable",
    ConnectionRefused => "connection_refused",
    TtlExpired => "ttl_expired",
    CommandNotSupported => "command_not_supported",
    AddressTypeNotSupported => "address_type_not_supported",
    TimedOut => "timed_out",
    NetworkFailure => "network_failure",
    ResourceExceeded => "resource_exceeded",
    MissingCookie => "missing_cookie",
    AuthFailed => "auth_failed",
    BadRequest => "bad_request",
    HandshakeTimeout => "handshake_timeout",
    ClientGone => "client_gone",
    Other => "other",
}

const CLASSES: usize = ReplyClass::ALL.len();

impl ReplyClass {
    /// The class of a log line's reply text: the reply code's name before
    /// the first `:` (SOCKS5, SOCKS6 and Convert code names), or the
    /// handshake's own words.
    pub fn of(reply: &str) -> Self {
        let head = reply.split_once(':').map_or(reply, |(h, _)| h).trim();
        match head {
            "SUCCEEDED" | "SUCCESS" | "GRANTED" | "connected" | "info" => Self::Success,
            "GENERAL_SOCKS_SERVER_FAILURE" | "GENERAL_FAILURE" | "REJECTED_OR_FAILED" => {
                Self::GeneralFailure
            }
            "CONNECTION_NOT_ALLOWED_BY_RULESET"
            | "CONNECTION_NOT_ALLOWED"
            | "NOT_AUTHORIZED"
            | "Not Authorized" => Self::NotAllowed,
            "NETWORK_UNREACHABLE" => Self::NetworkUnreachable,
            "HOST_UNREACHABLE" | "DESTINATION_UNREACHABLE" => Self::HostUnreachable,
            "CONNECTION_REFUSED" | "CONNECTION_RESET" => Self::ConnectionRefused,
            "TTL_EXPIRED" => Self::TtlExpired,
            "COMMAND_NOT_SUPPORTED" => Self::CommandNotSupported,
            "ADDRESS_TYPE_NOT_SUPPORTED" => Self::AddressTypeNotSupported,
            "CONNECTION_TIMED_OUT" => Self::TimedOut,
            "NETWORK_FAILURE" => Self::NetworkFailure,
            "RESOURCE_EXCEEDED" => Self::ResourceExceeded,
            "Missing Cookie" => Self::MissingCookie,
            "handshake timeout" => Self::HandshakeTimeout,
            "peer closed mid-handshake" | "client gone" | "client gone before reply" => {
                Self::ClientGone
            }
            _ if head.starts_with("authentication failed")
                || head.starts_with("credentials required")
                || head.starts_with("no acceptable authentication method") =>
            {
                Self::AuthFailed
            }
            _ if head.starts_with("bad ")
                || head.starts_with("malformed")
                || head.starts_with("unsupported first byte")
                || head.starts_with("handshake larger")
                || head.starts_with("rejected") =>
            {
                Self::BadRequest
            }
            _ if head.starts_with("read failed") => Self::ClientGone,
            _ => Self::Other,
        }
    }
}

/// The server's counters.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    connections: [AtomicU64; PROTOCOLS.len()],
    transports: [AtomicU64; TRANSPORTS.len()],
    subflows: AtomicU64,
    replies: [[AtomicU64; CLASSES]; PROTOCOLS.len()],
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    relayed: AtomicU64,
    egress_denied: AtomicU64,
    auth_failures: AtomicU64,
    logins_refused: AtomicU64,
    refused_total_cap: AtomicU64,
    refused_source_cap: AtomicU64,
    proxy_headers_refused: AtomicU64,
    sessions_refused: [AtomicU64; SessionCap::ALL.len()],
    udp_associations_refused: [AtomicU64; UdpCap::ALL.len()],
    probes: [AtomicU64; ProbeResult::ALL.len()],
    tls_handshakes: [AtomicU64; Handshake::ALL.len()],
    early_data: [AtomicU64; EarlyResult::ALL.len()],
}

/// What became of a path probe (`docs/probe.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Answered.
    Answered,
    /// Not a live session's ID: no answer.
    NoSession,
    /// Not a valid Echo Request: no answer.
    Malformed,
    /// Over the source's or the total rate: no answer.
    RateLimited,
    /// Valid, but the reply could not be sent at once (socket buffer
    /// full).
    Unsent,
}

impl ProbeResult {
    /// Every result, in the order of the counters.
    pub const ALL: [Self; 5] = [
        Self::Answered,
        Self::NoSession,
        Self::Malformed,
        Self::RateLimited,
        Self::Unsent,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::NoSession => "no_session",
            Self::Malformed => "malformed",
            Self::RateLimited => "rate_limited",
            Self::Unsent => "unsent",
        }
    }
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

impl Stats {
    /// Zeroed counters; uptime counts from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            connections: Default::default(),
            transports: Default::default(),
            subflows: AtomicU64::new(0),
            replies: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            egress_denied: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            logins_refused: AtomicU64::new(0),
            refused_total_cap: AtomicU64::new(0),
            refused_source_cap: AtomicU64::new(0),
            proxy_headers_refused: AtomicU64::new(0),
            sessions_refused: Default::default(),
            udp_associations_refused: Default::default(),
            probes: Default::default(),
            tls_handshakes: Default::default(),
            early_data: Default::default(),
        }
    }

    /// Counts a finished connection (called beside its log line): its
    /// protocol (`None` if none was detected), the reply it got and the
    /// relay's counts, if it got that far.
    pub fn record(
        &self,
        transport: Transport,
        protocol: Option<&str>,
        reply: &str,
        relay: Option<&RelayStats>,
    ) {
        let p = PROTOCOLS
            .iter()
            .position(|&n| Some(n) == protocol)
            .unwrap_or(PROTOCOLS.len() - 1);
        if let Some(c) = self.connections.get(p) {
            add(c, 1);
        }
        let t = match transport {
            Transport::Mptcp { .. } => 0,
            Transport::Fallback => 1,
            Transport::Tcp => 2,
        };
        if let Some(c) = self.transports.get(t) {
            add(c, 1);
        }
        add(&self.subflows, u64::from(transport.subflows()));
        let class = ReplyClass::of(reply);
        if let Some(c) = self.replies.get(p).and_then(|r| r.get(class as usize)) {
            add(c, 1);
        }
        if reply.contains(": egress to ") {
            add(&self.egress_denied, 1);
        }
        if let Some(r) = relay {
            add(&self.relayed, 1);
            add(&self.bytes_up, r.client_to_target);
            add(&self.bytes_down, r.target_to_client);
        }
    }

    /// Counts a connection refused by a connection cap (answered "not
    /// allowed" and closed, without a handshake).
    pub fn refused(&self, cap: Refused) {
        match cap {
            Refused::Total => add(&self.refused_total_cap, 1),
            Refused::PerSource => add(&self.refused_source_cap, 1),
        }
    }

    /// Counts a connection on a `proxy` listener closed because it did not
    /// start with a valid PROXY protocol v2 header.
    pub fn proxy_header_refused(&self) {
        add(&self.proxy_headers_refused, 1);
    }

    /// Connections closed for a missing or invalid PROXY header so far.
    pub fn proxy_headers_refused(&self) -> u64 {
        get(&self.proxy_headers_refused)
    }

    /// Counts a session request (or adoption) a session cap refused.
    pub fn session_refused(&self, cap: SessionCap) {
        if let Some(c) = self.sessions_refused.get(cap as usize) {
            add(c, 1);
        }
    }

    /// Session requests `cap` refused so far.
    pub fn sessions_refused(&self, cap: SessionCap) -> u64 {
        self.sessions_refused.get(cap as usize).map_or(0, get)
    }

    /// Counts a UDP ASSOCIATE request an association cap refused.
    pub fn udp_association_refused(&self, cap: UdpCap) {
        if let Some(c) = self.udp_associations_refused.get(cap as usize) {
            add(c, 1);
        }
    }

    /// UDP ASSOCIATE requests `cap` refused so far.
    pub fn udp_associations_refused(&self, cap: UdpCap) -> u64 {
        self.udp_associations_refused
            .get(cap as usize)
            .map_or(0, get)
    }

    /// Counts a path probe by what became of it.
    pub fn probe(&self, result: ProbeResult) {
        if let Some(c) = self.probes.get(result as usize) {
            add(c, 1);
        }
    }

    /// Path probes with `result` so far.
    pub fn probes(&self, result: ProbeResult) -> u64 {
        self.probes.get(result as usize).map_or(0, get)
    }

    /// Counts a completed TLS handshake by its kind.
    pub fn tls_handshake(&self, kind: Handshake) {
        if let Some(c) = self.tls_handshakes.get(kind as usize) {
            add(c, 1);
        }
    }

    /// Completed TLS handshakes of `kind` so far.
    pub fn tls_handshakes(&self, kind: Handshake) -> u64 {
        self.tls_handshakes.get(kind as usize).map_or(0, get)
    }

    /// Counts what became of TLS early data.
    pub fn early_data(&self, result: EarlyResult) {
        if let Some(c) = self.early_data.get(result as usize) {
            add(c, 1);
        }
    }

    /// Early data with `result` so far.
    pub fn early_data_count(&self, result: EarlyResult) -> u64 {
        self.early_data.get(result as usize).map_or(0, get)
    }

    /// Counts a wrong password.
    pub fn auth_failure(&self) {
        add(&self.auth_failures, 1);
    }

    /// Counts a login refused because its source failed too often.
    pub fn login_refused(&self) {
        add(&self.logins_refused, 1);
    }

    fn replies(&self) -> impl Iterator<Item = (&'static str, ReplyClass, u64)> + '_ {
        PROTOCOLS.iter().zip(&self.replies).flat_map(|(p, row)| {
            ReplyClass::ALL
                .iter()
                .zip(row)
                .map(move |(c, n)| (*p, *c, get(n)))
                .filter(|(_, _, n)| *n > 0)
        })
    }

    /// The `/stats` document; `open` is the number of connections being
    /// served now.
    pub fn json(&self, open: usize) -> serde_json::Value {
        let by = |names: &[&str], counters: &[AtomicU64]| -> serde_json::Map<String, _> {
            names
                .iter()
                .zip(counters)
                .map(|(n, c)| ((*n).to_owned(), get(c).into()))
                .collect()
        };
        let mut replies = serde_json::Map::new();
        for (p, c, n) in self.replies() {
            if let serde_json::Value::Object(m) = replies
                .entry(p)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
            {
                m.insert(c.name().to_owned(), n.into());
            }
        }
        let total: u64 = self.connections.iter().map(get).sum();
        serde_json::json!({
            "uptime_seconds": self.started.elapsed().as_secs(),
            "connections": {
                "open": open,
                "total": total,
                "by_protocol": by(&PROTOCOLS, &self.connections),
                "by_transport": by(&TRANSPORTS, &self.transports),
                "relayed": get(&self.relayed),
                "refused_by_cap": {
                    "total": get(&self.refused_total_cap),
                    "per_source": get(&self.refused_source_cap),
                },
                "proxy_header_refused": get(&self.proxy_headers_refused),
            },
            "subflows": get(&self.subflows),
            "bytes": {
                "client_to_target": get(&self.bytes_up),
                "target_to_client": get(&self.bytes_down),
            },
            "replies": replies,
            "handshake_timeouts": self.replies().filter(|r| r.1 == ReplyClass::HandshakeTimeout).map(|r| r.2).sum::<u64>(),
            "egress_denied": get(&self.egress_denied),
            "auth_failures": get(&self.auth_failures),
            "logins_refused": get(&self.logins_refused),
            "sessions_refused": SessionCap::ALL
                .iter()
                .map(|c| (c.name().to_owned(), self.sessions_refused(*c).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "udp_associations_refused": UdpCap::ALL
                .iter()
                .map(|c| (c.name().to_owned(), self.udp_associations_refused(*c).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "probes": ProbeResult::ALL
                .iter()
                .map(|r| (r.name().to_owned(), self.probes(*r).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "tls_handshakes": Handshake::ALL
                .iter()
                .map(|k| (k.name().to_owned(), self.tls_handshakes(*k).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "tls_early_data": EarlyResult::ALL
                .iter()
                .map(|r| (r.name().to_owned(), self.early_data_count(*r).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        })
    }

    /// The `/metrics` page (Prometheus text format 0.0.4).
    pub fn prometheus(&self, open: usize) -> String {
        let mut s = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(s, "# HELP sixpath_server_{name} {help}");
            let _ = writeln!(s, "# TYPE sixpath_server_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(s, "sixpath_server_{name}{labels} {v}");
            }
        };
        let labelled = |label: &str, names: &[&str], counters: &[AtomicU64]| {
            names
                .iter()
                .zip(counters)
                .map(|(n, c)| (format!("{{{label}=\"{n}\"}}"), get(c)))
                .collect::<Vec<_>>()
        };
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            &[(String::new(), self.started.elapsed().as_secs())],
        );
        metric(
            "connections_open",
            "gauge",
            "Client connections being served now.",
            &[(String::new(), open as u64)],
        );
        metric(
            "connections_total",
            "counter",
            "Client connections served to the end, by protocol (none: closed before one was recognised).",
            &labelled("protocol", &PROTOCOLS, &self.connections),
        );
        metric(
            "connections_refused_total",
            "counter",
            "Client connections refused by a connection cap (--max-connections, --max-connections-per-source): answered not allowed and closed, without a handshake; not in connections_total.",
            &[
                ("{cap=\"total\"}".to_owned(), get(&self.refused_total_cap)),
                (
                    "{cap=\"per_source\"}".to_owned(),
                    get(&self.refused_source_cap),
                ),
            ],
        );
        metric(
            "proxy_headers_refused_total",
            "counter",
            "Connections on listeners marked proxy closed because they did not start with a valid PROXY protocol v2 header (missing, garbage, version 1, timeout); not in connections_total.",
            &[(String::new(), get(&self.proxy_headers_refused))],
        );
        metric(
            "connections_by_transport_total",
            "counter",
            "Client connections served to the end, by transport: Multipath TCP, MPTCP fallen back to TCP, plain TCP.",
            &labelled("transport", &TRANSPORTS, &self.transports),
        );
        metric(
            "subflows_total",
            "counter",
            "MPTCP subflows of finished client connections (1 per TCP connection).",
            &[(String::new(), get(&self.subflows))],
        );
        metric(
            "relayed_connections_total",
            "counter",
            "Client connections that reached the relay.",
            &[(String::new(), get(&self.relayed))],
        );
        metric(
            "bytes_total",
            "counter",
            "Bytes relayed, by direction (up: client to target, down: target to client).",
            &[
                ("{direction=\"up\"}".to_owned(), get(&self.bytes_up)),
                ("{direction=\"down\"}".to_owned(), get(&self.bytes_down)),
            ],
        );
        let replies: Vec<_> = self
            .replies()
            .map(|(p, c, n)| (format!("{{protocol=\"{p}\",reply=\"{}\"}}", c.name()), n))
            .collect();
        metric(
            "replies_total",
            "counter",
            "Replies sent to clients, by protocol and reply class.",
            &replies,
        );
        let timeouts = self
            .replies()
            .filter(|r| r.1 == ReplyClass::HandshakeTimeout)
            .map(|r| r.2)
            .sum();
        metric(
            "handshake_timeouts_total",
            "counter",
            "Client connections closed at the handshake deadline.",
            &[(String::new(), timeouts)],
        );
        metric(
            "egress_denied_total",
            "counter",
            "Requests refused by the egress policy.",
            &[(String::new(), get(&self.egress_denied))],
        );
        metric(
            "auth_failures_total",
            "counter",
            "Logins with wrong credentials.",
            &[(String::new(), get(&self.auth_failures))],
        );
        metric(
            "logins_refused_total",
            "counter",
            "Logins refused unchecked because their source failed too often.",
            &[(String::new(), get(&self.logins_refused))],
        );
        metric(
            "udp_associations_refused_total",
            "counter",
            "UDP ASSOCIATE requests refused by an association cap (total: --max-udp-associations, answered general failure; per_user: --max-udp-associations-per-user and per_source: --max-udp-associations-per-source, answered not allowed).",
            &UdpCap::ALL
                .iter()
                .map(|c| {
                    (
                        format!("{{cap=\"{}\"}}", c.name()),
                        self.udp_associations_refused(*c),
                    )
                })
                .collect::<Vec<_>>(),
        );
        metric(
            "sessions_refused_total",
            "counter",
            "SOCKS6 Session Requests served without a session, and Session IDs not adopted, because of a session cap (total: --max-sessions, per_user: --max-sessions-per-user, per_source: --max-sessions-per-source).",
            &SessionCap::ALL
                .iter()
                .map(|c| {
                    (
                        format!("{{cap=\"{}\"}}", c.name()),
                        self.sessions_refused(*c),
                    )
                })
                .collect::<Vec<_>>(),
        );
        metric(
            "probes_total",
            "counter",
            "Path probes by result (answered, no_session, malformed, rate_limited, unsent).",
            &ProbeResult::ALL
                .iter()
                .map(|r| (format!("{{result=\"{}\"}}", r.name()), self.probes(*r)))
                .collect::<Vec<_>>(),
        );
        metric(
            "tls_handshakes_total",
            "counter",
            "Completed TLS handshakes by kind (full: certificate and signature; resumed: a session ticket of an earlier connection).",
            &Handshake::ALL
                .iter()
                .map(|k| {
                    (
                        format!("{{kind=\"{}\"}}", k.name()),
                        self.tls_handshakes(*k),
                    )
                })
                .collect::<Vec<_>>(),
        );
        metric(
            "tls_early_data_total",
            "counter",
            "TLS 1.3 early data by result (accepted: taken from a resuming client; token: a SOCKS6 request in it with an unspent idempotence token, served before the handshake completed; waited: a request in it served only once the handshake completed; rejected: offered by the client and refused, sent again after the handshake).",
            &EarlyResult::ALL
                .iter()
                .map(|r| {
                    (
                        format!("{{result=\"{}\"}}", r.name()),
                        self.early_data_count(*r),
                    )
                })
                .collect::<Vec<_>>(),
        );
        s
    }
}

/// What became of TLS 1.3 early data on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyResult {
    /// The server took the client's early data.
    Accepted,
    /// A SOCKS6 request in it carried an idempotence token: served (the
    /// token spent) before the handshake completed.
    Token,
    /// A request in it was served only once the handshake completed.
    Waited,
    /// The client offered early data and the server refused it (no
    /// resumption, a stale ticket): the client sends it after the
    /// handshake.
    Rejected,
}

impl EarlyResult {
    /// Every result, in the order of counters indexed by `result as usize`.
    pub const ALL: [Self; 4] = [Self::Accepted, Self::Token, Self::Waited, Self::Rejected];

    /// The metric label and `/stats` key.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Token => "token",
            Self::Waited => "waited",
            Self::Rejected => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixpath_protocol::convert::ErrorCode;
    use sixpath_protocol::socks5::ReplyCode as Socks5Code;
    use sixpath_protocol::socks6::ReplyCode as Socks6Code;

    #[test]
    fn classifies_the_code_names_the_handshakes_log() {
        let c = |s: String| ReplyClass::of(&s);
        assert_eq!(
            c(format!("{:?}", Socks5Code::SUCCEEDED)),
            ReplyClass::Success
        );
        assert_eq!(c(format!("{:?}", Socks6Code::SUCCESS)), ReplyClass::Success);
        assert_eq!(
            c(format!(
                "{:?}: egress to x refused",
                Socks5Code::CONNECTION_NOT_ALLOWED_BY_RULESET
            )),
            ReplyClass::NotAllowed
        );
        assert_eq!(
            c(format!("{:?}: x", Socks6Code::CONNECTION_NOT_ALLOWED)),
            ReplyClass::NotAllowed
        );
        assert_eq!(
            c(format!("{:?}: x", Socks6Code::CONNECTION_TIMED_OUT)),
            ReplyClass::TimedOut
        );
        assert_eq!(
            c(format!("{:?}: x", ErrorCode::DESTINATION_UNREACHABLE)),
            ReplyClass::HostUnreachable
        );
        assert_eq!(
            c(format!("{:?}: x", ErrorCode::CONNECTION_RESET)),
            ReplyClass::ConnectionRefused
        );
        assert_eq!(c("handshake timeout".into()), ReplyClass::HandshakeTimeout);
        assert_eq!(
            c("authentication failed for \"a:b\"".into()),
            ReplyClass::AuthFailed
        );
        assert_eq!(c("bad request: x".into()), ReplyClass::BadRequest);
        assert_eq!(c("whatever".into()), ReplyClass::Other);
    }

    #[test]
    fn prometheus_page_has_help_and_type_for_every_metric() {
        let s = Stats::new();
        let page = s.prometheus(0);
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(page.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(page.contains(&format!("# HELP {name} ")), "{name}");
        }
    }
}
