//! Command line and JSON configuration.
//!
//! One struct, [`Options`], is both the clap argument set and the serde shape
//! of the JSON config file, so every flag can be set in the file under the
//! same (kebab-case) name. The file is read first and flags override it, as
//! `sixpath_service::config` does it for both daemons (with `--config`,
//! `--log` and `--log-format`). [`Options::resolve`] validates the server's
//! own settings into [`Settings`], the typed configuration the server runs
//! with; every error names the field.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use sixpath_service::cli::ServiceArgs;
use sixpath_service::config::{both_or_neither, count, seconds};

use crate::outbound::DNS_TIMEOUT;
use crate::policy::{EgressRule, RuleAction};
use crate::secret::Secret;
use crate::session::SessionLimits;

pub use sixpath_service::config::ConfigError;

/// Every server setting, as flags and as JSON config fields.
// Command-line switches are naturally booleans.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// Address to accept clients on, as ADDR:PORT, optionally restricted to
    /// some protocols with /PROTO+PROTO (socks6, socks5, socks4, convert),
    /// e.g. `[::]:1080` or `0.0.0.0:1234/convert`. Add `tls` to the list
    /// for a TLS 1.3 listener (needs --tls-cert and --tls-key), e.g.
    /// `[::]:443/tls` or `[::]:443/socks6+tls`; listeners without it are
    /// plain. Add `proxy` for a listener behind a load balancer that sends
    /// the PROXY protocol v2 header (HAProxy `send-proxy-v2`, cloud network
    /// load balancers), e.g. `0.0.0.0:1080/proxy`: every connection must
    /// start with the header, whose source address then counts as the
    /// client's (limits, failed logins, cookies, logs); listeners without
    /// it never accept one. Repeatable. Sockets are Multipath TCP when the
    /// kernel allows, else TCP.
    #[arg(long, value_name = "ADDR:PORT[/PROTOS]")]
    pub listen: Vec<String>,

    /// `--config`, `--log` and `--log-format`.
    #[command(flatten)]
    #[serde(flatten)]
    pub service: ServiceArgs,

    /// JSON users file for username/password authentication:
    /// `{"users": [{"username": "alice", "password": "..."}]}`. Reloaded on
    /// SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Serve clients without authentication on non-loopback addresses.
    /// Without this the server refuses to start as an open proxy.
    #[arg(long)]
    pub allow_anonymous: bool,

    /// Allow egress to this CIDR (optionally `CIDR:PORT` or
    /// `CIDR:PORT-PORT`), even inside ranges denied by default (loopback,
    /// private, link-local, CGNAT, ULA, multicast, this host). Repeatable;
    /// rules are checked in order, deny rules first.
    #[arg(long, value_name = "CIDR[:PORTS]")]
    pub allow_egress: Vec<String>,

    /// Deny egress to this CIDR (optionally with `:PORT` or `:PORT-PORT`).
    /// Repeatable.
    #[arg(long, value_name = "CIDR[:PORTS]")]
    pub deny_egress: Vec<String>,

    /// Seconds a client has to complete its handshake.
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,

    /// Seconds a relayed connection may stay idle in both directions before
    /// it is closed.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Seconds open connections get to finish after SIGTERM or SIGINT;
    /// relays still open then are reset, each logged with `end=drained`.
    /// Default 30.
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,

    /// Seconds to wait for an outbound connection (all addresses together).
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Maximum concurrent client connections.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Maximum concurrent client connections from one source address
    /// (default 4096, sixpath-client's default --max-connections). Over it,
    /// or over --max-connections, a connection is answered "not allowed"
    /// in its protocol and closed.
    #[arg(long, value_name = "N")]
    pub max_connections_per_source: Option<usize>,

    /// Disable TCP Fast Open on listeners (0-RTT requests then cost one
    /// round trip more).
    #[arg(long)]
    pub no_tfo: bool,

    /// File holding the server key (at least 32 bytes, e.g. from
    /// `head -c 32 /dev/urandom`) for session IDs, idempotence tokens,
    /// Convert cookies and TLS session-ticket keys. Servers sharing the key
    /// accept each other's and resume each other's TLS sessions. Without
    /// it a random key is drawn at start-up.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Accept up to BYTES of TLS 1.3 early data (0-RTT) from resuming
    /// clients on TLS listeners (0 to 65536; default 0, off). A request in
    /// early data is served before the TLS handshake completes only if it
    /// spends a SOCKS6 idempotence token, otherwise once it completes, so
    /// a replayed request is never served twice. rustls takes early data only with
    /// single-use tickets kept by this process: with it, tickets no longer
    /// resume on other servers sharing --secret-file.
    #[arg(long, value_name = "BYTES")]
    pub tls_early_data: Option<u32>,

    /// Maximum SOCKS6 sessions held at once; a Session Request beyond it is
    /// served without a session (no Session ID in the reply).
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,

    /// Maximum SOCKS6 sessions of one authenticated user (default 64); a
    /// Session Request beyond it is served without a session.
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<usize>,

    /// Maximum SOCKS6 sessions from one source, an IPv4 address or an IPv6
    /// /64 (default 256); a Session Request beyond it is served without a
    /// session.
    #[arg(long, value_name = "N")]
    pub max_sessions_per_source: Option<usize>,

    /// Seconds a SOCKS6 session may go unused before it ends.
    #[arg(long, value_name = "SECS")]
    pub session_timeout: Option<u64>,

    /// Seconds a SOCKS6 session lasts at most, however busy (fixed in its
    /// ID, so it holds across servers sharing --secret-file).
    #[arg(long, value_name = "SECS")]
    pub session_lifetime: Option<u64>,

    /// Largest SOCKS6 idempotence token window granted to a session
    /// (1 to 65536 tokens; one bit of memory each).
    #[arg(long, value_name = "TOKENS")]
    pub token_window: Option<u32>,
    /// Local address BIND listeners are opened on (one IPv4 and/or one
    /// IPv6 address). Without it, a BIND listens on the address this host
    /// would use towards the expected peer, or on the client connection's
    /// local address.
    #[arg(long, value_name = "IP")]
    pub bind_address: Vec<String>,

    /// Address reported to BIND clients instead of the listening address
    /// (one per family), for a server behind 1:1 NAT.
    #[arg(long, value_name = "IP")]
    pub bind_advertise: Vec<String>,

    /// Seconds a BIND waits for the incoming connection (default 120).
    #[arg(long, value_name = "SECS")]
    pub bind_timeout: Option<u64>,

    /// Address reported in UDP ASSOCIATE replies (one per family) instead of
    /// the client connection's local address, for a server behind 1:1 NAT.
    #[arg(long, value_name = "IP")]
    pub udp_advertise: Vec<String>,

    /// Seconds a UDP association may pass without a datagram before it
    /// ends and its control connection is closed (default 120).
    #[arg(long, value_name = "SECS")]
    pub udp_idle_timeout: Option<u64>,

    /// Maximum concurrent UDP associations (default 1024).
    #[arg(long, value_name = "N")]
    pub max_udp_associations: Option<usize>,

    /// Maximum concurrent UDP associations of one authenticated user
    /// (default 128); one beyond it is refused "not allowed" (SOCKS5 REP
    /// 02, SOCKS6 Connection not allowed by ruleset).
    #[arg(long, value_name = "N")]
    pub max_udp_associations_per_user: Option<usize>,

    /// Maximum concurrent UDP associations from one source, an IPv4
    /// address or an IPv6 /64 (default 256); one beyond it is refused "not
    /// allowed" (SOCKS5 REP 02, SOCKS6 Connection not allowed by ruleset).
    #[arg(long, value_name = "N")]
    pub max_udp_associations_per_source: Option<usize>,

    /// Require an RFC 8803 Cookie TLV from Convert clients. A client without
    /// one gets Missing Cookie carrying a cookie bound to its address
    /// (HMAC of the server key, valid one to two hours); a wrong or expired
    /// cookie gets Not Authorized. Off by default.
    #[arg(long)]
    pub convert_cookies: bool,

    /// Failed logins from one source (an IPv4 address or an IPv6 /64)
    /// within --failed-login-window after which its further attempts are
    /// refused without checking the password, until the window ends.
    /// Default 10.
    #[arg(long, value_name = "N")]
    pub max_failed_logins: Option<u32>,

    /// Seconds over which failed logins are counted, from a source's first
    /// failure. Default 60.
    #[arg(long, value_name = "SECS")]
    pub failed_login_window: Option<u64>,

    /// Maximum concurrent connections of one authenticated user; over it a
    /// request is refused with "connection not allowed by ruleset" (0x02).
    /// Unlimited by default.
    #[arg(long, value_name = "N")]
    pub max_connections_per_user: Option<usize>,

    /// Serve the admin endpoint (HTTP: a status page at `/`, `/stats` JSON,
    /// `/metrics` Prometheus text) on ADDR:PORT. It must be a loopback address unless
    /// --admin-allow-remote is given; the endpoint has no authentication.
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin: Option<SocketAddr>,

    /// Allow --admin on a non-loopback address (anyone who can reach it
    /// reads the counters).
    #[arg(long)]
    pub admin_allow_remote: bool,

    /// DNS server (IP:PORT) to resolve target names with instead of those in
    /// /etc/resolv.conf (and /etc/hosts). Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Vec<SocketAddr>,

    /// Seconds to wait for the DNS answer for a target name (default 5,
    /// and never longer than --connect-timeout). No answer in time is
    /// answered as a name that does not resolve: host unreachable (0x04).
    #[arg(long, value_name = "SECS")]
    pub dns_timeout: Option<u64>,

    /// This instance's own address, announced to every Multipath TCP
    /// connection (`ADD_ADDR`) so that extra subflows come straight to this
    /// instance, not through the load balancer's service address; IPv4 or
    /// IPv6, repeatable. Installs in-kernel path-manager `signal`
    /// endpoints (needs `CAP_NET_ADMIN`) and sets
    /// `net.mptcp.allow_join_initial_addr_port` to 0; the endpoints are
    /// removed when a drain starts (SIGTERM) and on exit.
    #[arg(long, value_name = "IP")]
    pub advertise: Vec<String>,

    /// Keep SOCKS6 idempotence windows in a Redis or Valkey server shared
    /// by every instance behind one address, as
    /// `redis://[:PASSWORD@]HOST:PORT/DB` (`rediss://` for TLS), so that
    /// a token granted by one instance is spent on any of them exactly
    /// once. A store that fails or does not answer within 500 ms gets
    /// tokens refused (clients retry without them); everything else is
    /// served. Default: in this process.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,

    /// PEM certificates trusted for a `rediss://` --state store (a
    /// private CA, or the store's self-signed certificate) instead of the
    /// system's trust store.
    #[arg(long, value_name = "PEM")]
    pub state_ca: Option<PathBuf>,

    /// PEM client certificate chain presented to a `rediss://` --state
    /// store that requires one. Needs --state-key.
    #[arg(long, value_name = "PEM")]
    pub state_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, RSA or EC) of --state-cert. Needs
    /// --state-cert.
    #[arg(long, value_name = "PEM")]
    pub state_key: Option<PathBuf>,

    /// PEM certificate chain (end-entity first) for listeners marked
    /// `tls`; `sixpath-server gen-cert` makes a self-signed one. Needs
    /// --tls-key. Both files are re-read on SIGHUP.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, RSA or EC) of --tls-cert. Needs --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

/// A protocol a listener accepts, recognised by the first byte a client
/// sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SOCKS6 (first byte 0x06).
    Socks6,
    /// SOCKS5 (first byte 0x05).
    Socks5,
    /// SOCKS4 and `SOCKS4a` (first byte 0x04).
    Socks4,
    /// RFC 8803 Convert (first byte 0x01).
    Convert,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Self; 4] = [Self::Socks6, Self::Socks5, Self::Socks4, Self::Convert];

    /// The protocol a client's first byte announces.
    pub fn from_first_byte(b: u8) -> Option<Self> {
        match b {
            0x06 => Some(Self::Socks6),
            0x05 => Some(Self::Socks5),
            0x04 => Some(Self::Socks4),
            0x01 => Some(Self::Convert),
            _ => None,
        }
    }

    /// The name used in logs and `--listen`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Socks6 => "socks6",
            Self::Socks5 => "socks5",
            Self::Socks4 => "socks4",
            Self::Convert => "convert",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown protocol {s:?} (expected socks6, socks5, socks4 or convert)")
            })
    }
}

/// One `--listen` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Which protocols it accepts.
    pub protocols: Vec<Protocol>,
    /// Whether clients speak TLS 1.3 first (the `tls` marker).
    pub tls: bool,
    /// Whether every connection starts with a PROXY protocol v2 header
    /// naming the real client (the `proxy` marker).
    pub proxy: bool,
}

impl FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, protos) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| format!("{addr:?} is not ADDR:PORT (IPv6 in brackets, e.g. [::]:1080)"))?;
        let mut protocols = Vec::new();
        let (mut tls, mut proxy) = (false, false);
        for name in protos.into_iter().flat_map(|p| p.split('+')) {
            if name.eq_ignore_ascii_case("tls") {
                tls = true;
                continue;
            }
            if name.eq_ignore_ascii_case("proxy") {
                proxy = true;
                continue;
            }
            let proto = name.parse::<Protocol>()?;
            if !protocols.contains(&proto) {
                protocols.push(proto);
            }
        }
        if protocols.is_empty() {
            protocols = Protocol::ALL.to_vec();
        }
        Ok(Self {
            addr,
            protocols,
            tls,
            proxy,
        })
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listeners.
    pub listen: Vec<ListenSpec>,
    /// Users file, if authentication is configured.
    pub users: Option<PathBuf>,
    /// Serve anonymous clients on non-loopback listeners.
    pub allow_anonymous: bool,
    /// Egress rules from the configuration, in order.
    pub egress_rules: Vec<EgressRule>,
    /// Handshake deadline.
    pub handshake_timeout: Duration,
    /// Idle timeout for relayed connections.
    pub idle_timeout: Duration,
    /// How long open connections may go on after a shutdown signal; those
    /// still open then are reset (30 s).
    pub drain_timeout: Duration,
    /// Outbound connect deadline.
    pub connect_timeout: Duration,
    /// Cap on concurrent client connections.
    pub max_connections: usize,
    /// Cap on concurrent connections per source address.
    pub max_connections_per_source: usize,
    /// TCP Fast Open on listeners.
    pub tfo: bool,
    /// The key behind session IDs, idempotence tokens and cookies.
    pub secret: Secret,
    /// SOCKS6 session cap, idle timeout, lifetime and token window.
    pub sessions: SessionLimits,
    /// Local addresses for BIND listeners (at most one per family).
    pub bind_addresses: Vec<IpAddr>,
    /// Addresses reported to BIND clients (at most one per family).
    pub bind_advertise: Vec<IpAddr>,
    /// Addresses announced to MPTCP peers (`--advertise`).
    pub advertise: Vec<IpAddr>,
    /// The shared store's URL (`--state`); `None`: windows in this
    /// process.
    pub state: Option<String>,
    /// TLS material for a `rediss://` store (`--state-ca`,
    /// `--state-cert`, `--state-key`).
    pub state_tls: crate::store::StoreTls,
    /// How long a BIND waits for its incoming connection.
    pub bind_timeout: Duration,
    /// Addresses reported in UDP ASSOCIATE replies (at most one per family).
    pub udp_advertise: Vec<IpAddr>,
    /// Idle timeout of a UDP association.
    pub udp_idle_timeout: Duration,
    /// Cap on concurrent UDP associations.
    pub max_udp_associations: usize,
    /// Cap on concurrent UDP associations of one authenticated user.
    pub max_udp_associations_per_user: usize,
    /// Cap on concurrent UDP associations from one source (an IPv4 address
    /// or an IPv6 /64).
    pub max_udp_associations_per_source: usize,
    /// Require Convert Cookie TLVs.
    pub convert_cookies: bool,
    /// Failed logins per source that block it for the rest of the window.
    pub max_failed_logins: u32,
    /// Window failed logins are counted in.
    pub failed_login_window: Duration,
    /// Cap on concurrent connections per user.
    pub max_connections_per_user: usize,
    /// The admin endpoint's address.
    pub admin: Option<SocketAddr>,
    /// DNS servers replacing the system configuration (empty: system).
    pub dns_servers: Vec<SocketAddr>,
    /// Deadline for resolving a target name.
    pub dns_timeout: Duration,
    /// TLS for listeners marked `tls`, from --tls-cert and --tls-key
    /// (re-read on SIGHUP).
    pub tls: Option<sixpath_net::tls::ServerTls>,
}

impl Settings {
    /// Settings for tests and embedding: listen on `addrs`, everything else
    /// at its default.
    pub fn for_listeners(addrs: &[SocketAddr]) -> Self {
        Self {
            listen: addrs
                .iter()
                .map(|&addr| ListenSpec {
                    addr,
                    protocols: Protocol::ALL.to_vec(),
                    tls: false,
                    proxy: false,
                })
                .collect(),
            users: None,
            allow_anonymous: false,
            egress_rules: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_PER_SOURCE,
            tfo: true,
            secret: Secret::random(),
            sessions: SessionLimits {
                max_sessions: DEFAULT_MAX_SESSIONS,
                max_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
                max_per_source: DEFAULT_MAX_SESSIONS_PER_SOURCE,
                idle_timeout: DEFAULT_SESSION_TIMEOUT,
                lifetime: DEFAULT_SESSION_LIFETIME,
                max_window: DEFAULT_TOKEN_WINDOW,
            },
            bind_addresses: Vec::new(),
            bind_advertise: Vec::new(),
            advertise: Vec::new(),
            state: None,
            state_tls: crate::store::StoreTls::default(),
            bind_timeout: DEFAULT_BIND_TIMEOUT,
            udp_advertise: Vec::new(),
            udp_idle_timeout: DEFAULT_UDP_IDLE_TIMEOUT,
            max_udp_associations: DEFAULT_MAX_UDP_ASSOCIATIONS,
            max_udp_associations_per_user: DEFAULT_MAX_UDP_ASSOCIATIONS_PER_USER,
            max_udp_associations_per_source: DEFAULT_MAX_UDP_ASSOCIATIONS_PER_SOURCE,
            convert_cookies: false,
            max_failed_logins: DEFAULT_MAX_FAILED_LOGINS,
            failed_login_window: DEFAULT_FAILED_LOGIN_WINDOW,
            max_connections_per_user: usize::MAX,
            admin: None,
            dns_servers: Vec::new(),
            dns_timeout: DNS_TIMEOUT,
            tls: None,
        }
    }
}

/// Default handshake deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time open connections get to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default outbound connect deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Default per-source connection cap: the default `--max-connections` of
/// sixpath-client (4096), so one client at its own cap, behind one
/// address, is never refused by a server at its defaults.
pub const DEFAULT_MAX_PER_SOURCE: usize = 4_096;
/// Default SOCKS6 session cap.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Default cap on the SOCKS6 sessions of one user: a client holds one
/// session per server, so this leaves room for many devices and for
/// sessions abandoned by restarts until they idle out, and keeps one user
/// from more than a small share of `--max-sessions`.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 64;
/// Default cap on the SOCKS6 sessions from one source: larger than the
/// per-user cap, as one address may front many users (CGNAT, an office).
pub const DEFAULT_MAX_SESSIONS_PER_SOURCE: usize = 256;
/// Default SOCKS6 session idle timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// Default SOCKS6 session lifetime.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(86_400);
/// Default largest idempotence window.
pub const DEFAULT_TOKEN_WINDOW: u32 = 64;
/// Largest `--token-window`.
pub const MAX_TOKEN_WINDOW: u32 = 65_536;
/// Largest `--tls-early-data`, in bytes: a SOCKS6 request with its initial
/// data fits many times over.
pub const MAX_TLS_EARLY_DATA: u32 = 65_536;
/// Default wait for the incoming connection of a BIND.
pub const DEFAULT_BIND_TIMEOUT: Duration = Duration::from_secs(120);
/// Default idle timeout of a UDP association.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default cap on concurrent UDP associations.
pub const DEFAULT_MAX_UDP_ASSOCIATIONS: usize = 1024;
/// Default cap on the UDP associations of one user: an association is one
/// application's UDP flow (a QUIC connection, a DNS or game client), so a
/// few devices of one user stay well below it, and one user holds at most
/// an eighth of `--max-udp-associations`.
pub const DEFAULT_MAX_UDP_ASSOCIATIONS_PER_USER: usize = 128;
/// Default cap on the UDP associations from one source: larger than the
/// per-user cap, as one address may front many users (CGNAT, an office),
/// and a quarter of `--max-udp-associations`, so at least four sources
/// always find room.
pub const DEFAULT_MAX_UDP_ASSOCIATIONS_PER_SOURCE: usize = 256;

/// A list of IP addresses with at most one per family (`--bind-address`,
/// `--bind-advertise`, `--udp-advertise`).
fn ip_per_family(field: &str, list: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for s in list {
        let ip = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| ConfigError::new(field, format!("{s:?} is not an IP address")))?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(ConfigError::new(
                field,
                format!("{ip} is not a unicast address"),
            ));
        }
        if out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            return Err(ConfigError::new(
                field,
                "at most one IPv4 and one IPv6 address",
            ));
        }
        out.push(ip);
    }
    Ok(out)
}
/// Longest `--advertise` list: the kernel keeps at most 64 endpoints in
/// all (`MPTCP_PM_ADDR_MAX`), and an MPTCP connection at most 8 subflows.
pub const MAX_ADVERTISED: usize = 8;

/// `--advertise`: unicast, not loopback, no repeats, at most
/// [`MAX_ADVERTISED`].
fn advertised(list: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for s in list {
        let ip = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| ConfigError::new("advertise", format!("{s:?} is not an IP address")))?;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(ConfigError::new(
                "advertise",
                format!("{ip} cannot be announced to peers"),
            ));
        }
        if out.contains(&ip) {
            return Err(ConfigError::new("advertise", format!("{ip} given twice")));
        }
        out.push(ip);
    }
    if out.len() > MAX_ADVERTISED {
        return Err(ConfigError::new(
            "advertise",
            format!("at most {MAX_ADVERTISED} addresses"),
        ));
    }
    Ok(out)
}

/// Default failed logins that block a source.
pub const DEFAULT_MAX_FAILED_LOGINS: u32 = sixpath_service::logins::DEFAULT_MAX_FAILURES;
/// Default window for counting failed logins.
pub const DEFAULT_FAILED_LOGIN_WINDOW: Duration = sixpath_service::logins::DEFAULT_WINDOW;

sixpath_service::merge_fields!(Options {
    listen,
    service,
    users,
    allow_anonymous,
    allow_egress,
    deny_egress,
    handshake_timeout,
    idle_timeout,
    drain_timeout,
    connect_timeout,
    max_connections,
    max_connections_per_source,
    no_tfo,
    secret_file,
    tls_early_data,
    max_sessions,
    max_sessions_per_user,
    max_sessions_per_source,
    session_timeout,
    session_lifetime,
    token_window,
    bind_address,
    bind_advertise,
    bind_timeout,
    udp_advertise,
    udp_idle_timeout,
    max_udp_associations,
    max_udp_associations_per_user,
    max_udp_associations_per_source,
    convert_cookies,
    max_failed_logins,
    failed_login_window,
    max_connections_per_user,
    admin,
    admin_allow_remote,
    dns_server,
    dns_timeout,
    advertise,
    state,
    state_ca,
    state_cert,
    state_key,
    tls_cert,
    tls_key,
});

impl AsRef<ServiceArgs> for Options {
    fn as_ref(&self) -> &ServiceArgs {
        &self.service
    }
}

impl Options {
    /// Validates the options into [`Settings`].
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::new(
                "listen",
                "no listener: give --listen ADDR:PORT (or \"listen\" in the config file)",
            ));
        }
        let listen = self
            .listen
            .iter()
            .map(|s| {
                s.parse::<ListenSpec>()
                    .map_err(|e| ConfigError::new("listen", e))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut egress_rules = Vec::new();
        for (field, action, list) in [
            ("deny-egress", RuleAction::Deny, &self.deny_egress),
            ("allow-egress", RuleAction::Allow, &self.allow_egress),
        ] {
            for s in list {
                let rule = EgressRule::parse(action, s).map_err(|e| ConfigError::new(field, e))?;
                egress_rules.push(rule);
            }
        }

        if let Some(users) = &self.users
            && !users.is_file()
        {
            return Err(ConfigError::new(
                "users",
                format!("{} is not a readable file", users.display()),
            ));
        }

        let secret = match &self.secret_file {
            Some(path) => Some(Secret::load(path)?),
            None => None,
        };
        let tls = self.tls(secret.as_ref())?;
        let state_tls = self.state_tls()?;
        let settings = Settings {
            listen,
            users: self.users,
            allow_anonymous: self.allow_anonymous,
            egress_rules,
            handshake_timeout: seconds(
                "handshake-timeout",
                self.handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
            idle_timeout: seconds("idle-timeout", self.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
            drain_timeout: seconds("drain-timeout", self.drain_timeout, DEFAULT_DRAIN_TIMEOUT)?,
            connect_timeout: seconds(
                "connect-timeout",
                self.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            max_connections: count(
                "max-connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?,
            max_connections_per_source: count(
                "max-connections-per-source",
                self.max_connections_per_source,
                DEFAULT_MAX_PER_SOURCE,
            )?,
            tfo: !self.no_tfo,
            secret: secret.unwrap_or_else(Secret::random),
            sessions: SessionLimits {
                max_sessions: count("max-sessions", self.max_sessions, DEFAULT_MAX_SESSIONS)?,
                max_per_user: count(
                    "max-sessions-per-user",
                    self.max_sessions_per_user,
                    DEFAULT_MAX_SESSIONS_PER_USER,
                )?,
                max_per_source: count(
                    "max-sessions-per-source",
                    self.max_sessions_per_source,
                    DEFAULT_MAX_SESSIONS_PER_SOURCE,
                )?,
                idle_timeout: seconds(
                    "session-timeout",
                    self.session_timeout,
                    DEFAULT_SESSION_TIMEOUT,
                )?,
                lifetime: seconds(
                    "session-lifetime",
                    self.session_lifetime,
                    DEFAULT_SESSION_LIFETIME,
                )?,
                max_window: match self.token_window {
                    None => DEFAULT_TOKEN_WINDOW,
                    Some(n @ 1..=MAX_TOKEN_WINDOW) => n,
                    Some(_) => {
                        return Err(ConfigError::new(
                            "token-window",
                            format!("must be 1 to {MAX_TOKEN_WINDOW} tokens"),
                        ));
                    }
                },
            },
            bind_addresses: ip_per_family("bind-address", &self.bind_address)?,
            bind_advertise: ip_per_family("bind-advertise", &self.bind_advertise)?,
            advertise: advertised(&self.advertise)?,
            state: match self.state {
                Some(url) => {
                    crate::store::Store::open(&url, &state_tls)
                        .map_err(|e| ConfigError::new("state", format!("{url:?}: {e}")))?;
                    Some(url)
                }
                None if state_tls.is_set() => {
                    return Err(ConfigError::new(
                        "state",
                        "missing: --state-ca, --state-cert and --state-key need a rediss:// --state",
                    ));
                }
                None => None,
            },
            state_tls,
            bind_timeout: seconds("bind-timeout", self.bind_timeout, DEFAULT_BIND_TIMEOUT)?,
            udp_advertise: ip_per_family("udp-advertise", &self.udp_advertise)?,
            udp_idle_timeout: seconds(
                "udp-idle-timeout",
                self.udp_idle_timeout,
                DEFAULT_UDP_IDLE_TIMEOUT,
            )?,
            max_udp_associations: count(
                "max-udp-associations",
                self.max_udp_associations,
                DEFAULT_MAX_UDP_ASSOCIATIONS,
            )?,
            max_udp_associations_per_user: count(
                "max-udp-associations-per-user",
                self.max_udp_associations_per_user,
                DEFAULT_MAX_UDP_ASSOCIATIONS_PER_USER,
            )?,
            max_udp_associations_per_source: count(
                "max-udp-associations-per-source",
                self.max_udp_associations_per_source,
                DEFAULT_MAX_UDP_ASSOCIATIONS_PER_SOURCE,
            )?,
            convert_cookies: self.convert_cookies,
            max_failed_logins: match self.max_failed_logins {
                None => DEFAULT_MAX_FAILED_LOGINS,
                Some(0) => return Err(ConfigError::new("max-failed-logins", "must be at least 1")),
                Some(n) => n,
            },
            failed_login_window: seconds(
                "failed-login-window",
                self.failed_login_window,
                DEFAULT_FAILED_LOGIN_WINDOW,
            )?,
            max_connections_per_user: count(
                "max-connections-per-user",
                self.max_connections_per_user,
                usize::MAX,
            )?,
            admin: match self.admin {
                Some(a) if !a.ip().is_loopback() && !self.admin_allow_remote => {
                    return Err(ConfigError::new(
                        "admin",
                        format!(
                            "{a} is not a loopback address: the admin endpoint has no \
                             authentication. Use 127.0.0.1 or [::1], or pass \
                             --admin-allow-remote if that is really intended"
                        ),
                    ));
                }
                a => a,
            },
            dns_servers: self.dns_server,
            dns_timeout: seconds("dns-timeout", self.dns_timeout, DNS_TIMEOUT)?,
            tls,
        };
        settings.check_tls_listeners()?;
        settings.check_open_proxy()?;
        Ok(settings)
    }
}

impl Options {
    /// Reads --state-ca, --state-cert and --state-key, checking that each
    /// holds what it should.
    fn state_tls(&self) -> Result<crate::store::StoreTls, ConfigError> {
        use sixpath_net::tls::{load_certs, load_key};
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                ConfigError::new(field, format!("{}: cannot read: {e}", path.display()))
            })
        };
        let ca = match &self.state_ca {
            Some(path) => {
                load_certs(path).map_err(|e| ConfigError::new("state-ca", e.to_string()))?;
                Some(read("state-ca", path)?)
            }
            None => None,
        };
        let pair = both_or_neither(
            ("state-cert", self.state_cert.as_ref()),
            ("state-key", self.state_key.as_ref()),
        )?;
        let client = match pair {
            Some((cert, key)) => {
                load_certs(cert).map_err(|e| ConfigError::new("state-cert", e.to_string()))?;
                load_key(key).map_err(|e| ConfigError::new("state-key", e.to_string()))?;
                Some((read("state-cert", cert)?, read("state-key", key)?))
            }
            None => None,
        };
        Ok(crate::store::StoreTls { ca, client })
    }

    /// Loads --tls-cert and --tls-key (both or neither); with a
    /// --secret-file, session tickets are encrypted under keys derived from
    /// it, so that every server sharing the file resumes them.
    fn tls(
        &self,
        secret: Option<&Secret>,
    ) -> Result<Option<sixpath_net::tls::ServerTls>, ConfigError> {
        use sixpath_net::tls::{self, TlsError};
        let pair = both_or_neither(
            ("tls-cert", self.tls_cert.as_ref()),
            ("tls-key", self.tls_key.as_ref()),
        )?;
        let Some((cert, key)) = pair else {
            if self.tls_early_data.is_some_and(|n| n > 0) {
                return Err(ConfigError::new(
                    "tls-early-data",
                    "needs --tls-cert and --tls-key (early data is TLS 1.3's)",
                ));
            }
            return Ok(None);
        };
        let options = tls::ServerTlsOptions {
            ticket_secret: secret.map(|s| s.tls_ticket_material().to_vec()),
            max_early_data: match self.tls_early_data {
                None => 0,
                Some(n @ 0..=MAX_TLS_EARLY_DATA) => n,
                Some(_) => {
                    return Err(ConfigError::new(
                        "tls-early-data",
                        format!("must be 0 to {MAX_TLS_EARLY_DATA} bytes"),
                    ));
                }
            },
        };
        tls::ServerTls::load_with(cert, key, &[tls::ALPN_SIXPATH], &options)
            .map(Some)
            .map_err(|e| {
                let field = match e {
                    TlsError::Cert { .. } => "tls-cert",
                    _ => "tls-key",
                };
                ConfigError::new(field, e.to_string())
            })
    }
}

impl Settings {
    /// TLS listeners need a certificate, and a certificate needs a TLS
    /// listener (a certificate nobody is served with is a mistake, not a
    /// default).
    fn check_tls_listeners(&self) -> Result<(), ConfigError> {
        let marked = self.listen.iter().find(|l| l.tls);
        match (marked, &self.tls) {
            (Some(spec), None) => Err(ConfigError::new(
                "listen",
                format!(
                    "{} is marked tls but no certificate is configured: \
                     give --tls-cert and --tls-key",
                    spec.addr
                ),
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "listen",
                "--tls-cert is set but no listener is marked tls \
                 (e.g. --listen [::]:443/tls); listeners are plain unless marked",
            )),
            _ => Ok(()),
        }
    }

    /// Refuses an open proxy: a non-loopback listener without
    /// authentication, unless `--allow-anonymous`.
    fn check_open_proxy(&self) -> Result<(), ConfigError> {
        if self.users.is_some() || self.allow_anonymous {
            return Ok(());
        }
        if let Some(spec) = self.listen.iter().find(|l| !l.addr.ip().is_loopback()) {
            return Err(ConfigError::new(
                "listen",
                format!(
                    "{} is not a loopback address and no --users file is configured: \
                     this would be an open proxy. Configure --users, or pass \
                     --allow-anonymous if that is really intended",
                    spec.addr
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(listen: &[&str]) -> Options {
        Options {
            listen: listen.iter().map(ToString::to_string).collect(),
            ..Options::default()
        }
    }

    #[test]
    fn parses_listen_with_protocol_restriction() {
        let spec: ListenSpec = "[::]:1234/convert+socks6".parse().expect("valid");
        assert_eq!(spec.addr, "[::]:1234".parse().expect("addr"));
        assert_eq!(spec.protocols, vec![Protocol::Convert, Protocol::Socks6]);
        let all: ListenSpec = "127.0.0.1:1080".parse().expect("valid");
        assert_eq!(all.protocols.len(), 4);
        assert!("127.0.0.1:1080/http".parse::<ListenSpec>().is_err());
        assert!("localhost:1080".parse::<ListenSpec>().is_err());
    }

    #[test]
    fn refuses_open_proxy_on_public_address() {
        let err = opts(&["0.0.0.0:1080"]).resolve().expect_err("open proxy");
        assert_eq!(err.field, "listen");
        assert!(err.message.contains("open proxy"), "{err}");
        let mut ok = opts(&["0.0.0.0:1080"]);
        ok.allow_anonymous = true;
        assert!(ok.resolve().is_ok());
        assert!(opts(&["127.0.0.1:1080", "[::1]:1080"]).resolve().is_ok());
    }

    #[test]
    fn requires_a_listener() {
        assert_eq!(
            Options::default().resolve().expect_err("no listener").field,
            "listen"
        );
    }

    #[test]
    fn rejects_unknown_config_field_by_name() {
        let e = serde_json::from_str::<Options>(
            r#"{"listen": ["127.0.0.1:1"], "alow-anonymous": true}"#,
        )
        .expect_err("typo");
        assert!(e.to_string().contains("alow-anonymous"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let file: Options = serde_json::from_str(
            r#"{"listen": ["127.0.0.1:1"], "idle-timeout": 5, "connect-timeout": 7}"#,
        )
        .expect("valid");
        let mut cli = opts(&["127.0.0.1:2"]);
        cli.idle_timeout = Some(9);
        let s = cli.or(file).resolve().expect("valid");
        assert_eq!(s.listen[0].addr.port(), 2);
        assert_eq!(s.idle_timeout, Duration::from_secs(9));
        assert_eq!(s.connect_timeout, Duration::from_secs(7));
    }

    #[test]
    fn session_flags_resolve_and_name_bad_values() {
        let file: Options = serde_json::from_str(
            r#"{"listen": ["127.0.0.1:1"], "max-sessions": 7, "session-timeout": 30,
                "session-lifetime": 90, "token-window": 128, "max-sessions-per-user": 3,
                "max-sessions-per-source": 5}"#,
        )
        .expect("valid");
        let s = opts(&[]).or(file).resolve().expect("valid");
        assert_eq!(s.sessions.max_sessions, 7);
        assert_eq!(s.sessions.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.sessions.lifetime, Duration::from_secs(90));
        assert_eq!(s.sessions.max_window, 128);
        assert_eq!(s.sessions.max_per_user, 3);
        assert_eq!(s.sessions.max_per_source, 5);
        let defaults = opts(&["127.0.0.1:1"]).resolve().expect("valid").sessions;
        assert_eq!((defaults.max_per_user, defaults.max_per_source), (64, 256));
        let base = opts(&["127.0.0.1:1"]);
        for (field, o) in [
            (
                "max-sessions",
                Options {
                    max_sessions: Some(0),
                    ..base.clone()
                },
            ),
            (
                "max-sessions-per-user",
                Options {
                    max_sessions_per_user: Some(0),
                    ..base.clone()
                },
            ),
            (
                "max-sessions-per-source",
                Options {
                    max_sessions_per_source: Some(0),
                    ..base.clone()
                },
            ),
            (
                "session-timeout",
                Options {
                    session_timeout: Some(0),
                    ..base.clone()
                },
            ),
            (
                "session-lifetime",
                Options {
                    session_lifetime: Some(0),
                    ..base.clone()
                },
            ),
            (
                "token-window",
                Options {
                    token_window: Some(0),
                    ..base.clone()
                },
            ),
            (
                "token-window",
                Options {
                    token_window: Some(MAX_TOKEN_WINDOW + 1),
                    ..base.clone()
                },
            ),
        ] {
            assert_eq!(o.resolve().expect_err(field).field, field);
        }
    }

    #[test]
    fn parses_the_tls_marker_in_listen() {
        let spec: ListenSpec = "[::]:443/tls".parse().expect("valid");
        assert!(spec.tls);
        assert_eq!(spec.protocols, Protocol::ALL.to_vec());
        let spec: ListenSpec = "[::]:443/socks6+TLS".parse().expect("valid");
        assert!(spec.tls);
        assert_eq!(spec.protocols, vec![Protocol::Socks6]);
        let plain: ListenSpec = "[::]:1080/socks6".parse().expect("valid");
        assert!(!plain.tls);
    }

    #[test]
    fn advertise_takes_ipv4_and_ipv6_and_refuses_what_cannot_be_announced() {
        let mut o = opts(&["127.0.0.1:1080"]);
        o.advertise = vec!["198.18.0.2".into(), "[2001:db8::2]".into()];
        let s = o.resolve().expect("valid");
        assert_eq!(
            s.advertise,
            vec![
                "198.18.0.2".parse::<IpAddr>().expect("ip"),
                "2001:db8::2".parse().expect("ip")
            ]
        );
        for bad in ["0.0.0.0", "127.0.0.1", "ff02::1", "host.example"] {
            let mut o = opts(&["127.0.0.1:1080"]);
            o.advertise = vec![bad.into()];
            let e = o.resolve().expect_err(bad);
            assert_eq!(e.field, "advertise", "{bad}");
        }
        let mut o = opts(&["127.0.0.1:1080"]);
        o.advertise = vec!["198.18.0.2".into(), "198.18.0.2".into()];
        assert!(o.resolve().is_err());
    }

    #[test]
    fn a_malformed_state_url_names_the_flag() {
        let mut o = opts(&["127.0.0.1:1080"]);
        o.state = Some("redis://127.0.0.1:6379/2".into());
        assert!(o.resolve().is_ok());
        let mut o = opts(&["127.0.0.1:1080"]);
        o.state = Some("127.0.0.1:6379".into());
        assert_eq!(o.resolve().expect_err("no scheme").field, "state");
    }

    #[test]
    fn state_tls_files_are_checked_naming_the_flag() {
        let d = CertDir::new("state-tls");
        let (cert, key) = (d.0.join("cert.pem"), d.0.join("key.pem"));
        let with = |url: Option<&str>, ca: Option<&Path>, c: Option<&Path>, k: Option<&Path>| {
            let mut o = opts(&["127.0.0.1:1080"]);
            o.state = url.map(str::to_owned);
            o.state_ca = ca.map(Path::to_path_buf);
            o.state_cert = c.map(Path::to_path_buf);
            o.state_key = k.map(Path::to_path_buf);
            o.resolve()
        };
        let tls = Some("rediss://127.0.0.1:6380/0");
        let ok = with(tls, Some(&cert), Some(&cert), Some(&key)).expect("valid");
        assert!(ok.state_tls.ca.is_some() && ok.state_tls.client.is_some());
        assert!(with(tls, None, None, None).is_ok(), "system roots");
        let field = |r: Result<Settings, ConfigError>| r.expect_err("invalid").field;
        let missing = d.0.join("missing.pem");
        assert_eq!(field(with(tls, Some(&missing), None, None)), "state-ca");
        assert_eq!(field(with(tls, Some(&key), None, None)), "state-ca");
        assert_eq!(field(with(tls, None, Some(&cert), None)), "state-key");
        assert_eq!(field(with(tls, None, None, Some(&key))), "state-cert");
        assert_eq!(field(with(tls, None, Some(&key), Some(&key))), "state-cert");
        assert_eq!(
            field(with(tls, None, Some(&cert), Some(&cert))),
            "state-key"
        );
        let plain = Some("redis://127.0.0.1:6379/0");
        assert_eq!(field(with(plain, Some(&cert), None, None)), "state");
        assert_eq!(field(with(None, Some(&cert), None, None)), "state");
    }

    #[test]
    fn parses_the_proxy_marker_in_listen() {
        let spec: ListenSpec = "0.0.0.0:1080/proxy".parse().expect("valid");
        assert!(spec.proxy && !spec.tls);
        assert_eq!(spec.protocols, Protocol::ALL.to_vec());
        let spec: ListenSpec = "[::]:443/socks6+tls+PROXY".parse().expect("valid");
        assert!(spec.proxy && spec.tls);
        assert_eq!(spec.protocols, vec![Protocol::Socks6]);
        let plain: ListenSpec = "[::]:1080".parse().expect("valid");
        assert!(!plain.proxy);
    }

    /// A directory with a self-signed certificate and key, removed on drop.
    struct CertDir(PathBuf);

    impl CertDir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("sixpath-cfg-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&d).expect("mkdir");
            let (cert, key, _) = sixpath_net::tls::generate_self_signed(&[]).expect("generate");
            std::fs::write(d.join("cert.pem"), cert).expect("write");
            std::fs::write(d.join("key.pem"), key).expect("write");
            Self(d)
        }
    }

    impl Drop for CertDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_bind_and_udp_settings_and_rejects_two_of_one_family() {
        let file: Options = serde_json::from_str(
            r#"{"listen": ["127.0.0.1:1"], "bind-address": ["192.0.2.1", "[2001:db8::1]"],
                "udp-advertise": ["198.51.100.7"], "bind-timeout": 30,
                "udp-idle-timeout": 60, "max-udp-associations": 8,
                "max-udp-associations-per-user": 3, "max-udp-associations-per-source": 5}"#,
        )
        .expect("valid");
        let s = opts(&[]).or(file).resolve().expect("valid");
        assert_eq!(s.bind_addresses.len(), 2);
        assert_eq!(
            s.udp_advertise,
            ["198.51.100.7".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(s.bind_timeout, Duration::from_secs(30));
        assert_eq!(s.udp_idle_timeout, Duration::from_secs(60));
        assert_eq!(s.max_udp_associations, 8);
        assert_eq!(s.max_udp_associations_per_user, 3);
        assert_eq!(s.max_udp_associations_per_source, 5);
        let defaults = opts(&["127.0.0.1:1"]).resolve().expect("valid");
        assert_eq!(
            (
                defaults.max_udp_associations_per_user,
                defaults.max_udp_associations_per_source
            ),
            (128, 256)
        );
        let mut zero = opts(&["127.0.0.1:1"]);
        zero.max_udp_associations_per_source = Some(0);
        assert_eq!(
            zero.resolve().expect_err("zero").field,
            "max-udp-associations-per-source"
        );
        let mut two = opts(&["127.0.0.1:1"]);
        two.bind_advertise = vec!["192.0.2.1".into(), "192.0.2.2".into()];
        assert_eq!(two.resolve().expect_err("two IPv4").field, "bind-advertise");
        let mut bad = opts(&["127.0.0.1:1"]);
        bad.udp_advertise = vec!["0.0.0.0".into()];
        assert_eq!(
            bad.resolve().expect_err("unspecified").field,
            "udp-advertise"
        );
    }

    #[test]
    fn refuses_remote_admin_without_the_flag() {
        let mut o = opts(&["127.0.0.1:1"]);
        o.admin = Some("0.0.0.0:9090".parse().expect("addr"));
        assert_eq!(o.clone().resolve().expect_err("remote").field, "admin");
        o.admin_allow_remote = true;
        assert!(o.resolve().is_ok());
        let mut local = opts(&["127.0.0.1:1"]);
        local.admin = Some("[::1]:9090".parse().expect("addr"));
        assert!(local.resolve().is_ok());
    }

    #[test]
    fn tls_settings_are_checked_naming_the_field() {
        let d = CertDir::new("tls");
        let (cert, key) = (d.0.join("cert.pem"), d.0.join("key.pem"));
        let with = |listen: &str, c: Option<&Path>, k: Option<&Path>| {
            let mut o = opts(&[listen]);
            o.tls_cert = c.map(Path::to_path_buf);
            o.tls_key = k.map(Path::to_path_buf);
            o.resolve()
        };
        let ok = with("127.0.0.1:1/tls", Some(&cert), Some(&key)).expect("valid");
        assert!(ok.tls.is_some() && ok.listen[0].tls);
        let field = |r: Result<Settings, ConfigError>| r.expect_err("invalid").field;
        assert_eq!(field(with("127.0.0.1:1/tls", Some(&cert), None)), "tls-key");
        assert_eq!(field(with("127.0.0.1:1/tls", None, Some(&key))), "tls-cert");
        assert_eq!(field(with("127.0.0.1:1/tls", None, None)), "listen");
        assert_eq!(
            field(with("127.0.0.1:1", Some(&cert), Some(&key))),
            "listen"
        );
        // A file that is no key names the key field, and the file.
        let e = with("127.0.0.1:1/tls", Some(&cert), Some(&cert)).expect_err("no key");
        assert_eq!(e.field, "tls-key");
        assert!(e.message.contains("cert.pem"), "{e}");
        let e = with("127.0.0.1:1/tls", Some(&key), Some(&key)).expect_err("no cert");
        assert_eq!(e.field, "tls-cert");
        assert!(e.message.contains("key.pem"), "{e}");
    }

    #[test]
    fn tls_early_data_is_bounded_and_needs_a_certificate() {
        let d = CertDir::new("tls-early");
        let (cert, key) = (d.0.join("cert.pem"), d.0.join("key.pem"));
        let with = |early: u32, tls: bool| {
            let mut o = opts(&[if tls {
                "127.0.0.1:1/tls"
            } else {
                "127.0.0.1:1"
            }]);
            if tls {
                o.tls_cert = Some(cert.clone());
                o.tls_key = Some(key.clone());
            }
            o.tls_early_data = Some(early);
            o.resolve()
        };
        let on = with(MAX_TLS_EARLY_DATA, true).expect("valid");
        assert!(on.tls.is_some_and(|t| t.early_data()));
        let off = with(0, true).expect("valid");
        assert!(off.tls.is_some_and(|t| !t.early_data()));
        let field = |r: Result<Settings, ConfigError>| r.expect_err("invalid").field;
        assert_eq!(field(with(MAX_TLS_EARLY_DATA + 1, true)), "tls-early-data");
        assert_eq!(field(with(16_384, false)), "tls-early-data");
        assert!(with(0, false).is_ok());
    }

    #[test]
    fn tls_files_can_come_from_the_config_file() {
        let d = CertDir::new("tls-file");
        let file: Options = serde_json::from_value(serde_json::json!({
            "listen": ["127.0.0.1:1/socks6+tls"],
            "tls-cert": d.0.join("cert.pem"),
            "tls-key": d.0.join("key.pem"),
        }))
        .expect("valid");
        let s = Options::default().or(file).resolve().expect("valid");
        assert!(s.tls.is_some());
    }

    #[test]
    fn every_flag_but_config_is_a_config_file_field() {
        let names = sixpath_service::config::file_names::<Options>();
        assert!(names.len() > 30 && !names.iter().any(|n| n == "config"));
        for name in names {
            let json = serde_json::json!({ name.clone(): null });
            if let Err(e) = serde_json::from_value::<Options>(json) {
                assert!(!e.to_string().contains("unknown field"), "{name}: {e}");
            }
        }
    }

    #[test]
    fn dns_timeout_defaults_to_5_s_reads_the_file_and_refuses_zero() {
        let s = opts(&["127.0.0.1:1"]).resolve().expect("valid");
        assert_eq!(s.dns_timeout, Duration::from_secs(5));
        let file: Options =
            serde_json::from_str(r#"{"listen": ["127.0.0.1:1"], "dns-timeout": 2}"#)
                .expect("valid");
        let s = opts(&[]).or(file).resolve().expect("valid");
        assert_eq!(s.dns_timeout, Duration::from_secs(2));
        let mut o = opts(&["127.0.0.1:1"]);
        o.dns_timeout = Some(0);
        assert_eq!(o.resolve().expect_err("zero").field, "dns-timeout");
    }

    #[test]
    fn rejects_zero_timeout_naming_the_field() {
        let mut o = opts(&["127.0.0.1:1"]);
        o.handshake_timeout = Some(0);
        assert_eq!(o.resolve().expect_err("zero").field, "handshake-timeout");
    }
}
