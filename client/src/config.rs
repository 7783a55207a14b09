//! Command line and JSON configuration.
//!
//! As in the server, one struct, [`Options`], is both the clap argument set
//! and the serde shape of the JSON config file, so every flag can be set in
//! the file under the same (kebab-case) name; reading the file, letting the
//! flags override it, `--config`, `--log` and `--log-format` are
//! `sixpath_service`'s, shared with the server. [`Options::resolve`]
//! validates the client's own settings into [`Settings`]; every error names
//! the field, and the binary exits with 2.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use clap::Args;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use sixpath_net::tls::{self, ServerVerification, rustls};
use sixpath_service::cli::ServiceArgs;
use sixpath_service::config::{both_or_neither, count, seconds};
use sixpath_service::logins::{DEFAULT_MAX_FAILURES, DEFAULT_WINDOW};

use crate::paths::PathArgs;

pub use sixpath_service::config::ConfigError;

/// Every client setting, as flags and as JSON config fields.
// Each bool is an independent on/off flag of the command line.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// The sixpath server (or RFC 8803 converter) as HOST:PORT, e.g.
    /// `proxy.example.net:1080` or `[2001:db8::1]:1080`. Names are resolved
    /// again every 30 s, so a changed address is picked up.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,

    /// Mixed front-end for applications as ADDR:PORT: SOCKS5, SOCKS4/4a,
    /// HTTP proxy and SOCKS6 on one port, told apart by the first byte.
    /// Repeatable. Default 127.0.0.1:1080 when no front-end is given.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<String>,

    /// HTTP-proxy-only front-end as ADDR:PORT (CONNECT tunnels and
    /// absolute-form `http://` requests). Repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http_listen: Vec<String>,

    /// Transparent front-end as ADDR:PORT for connections diverted by
    /// nftables REDIRECT (original destination from `SO_ORIGINAL_DST`) or
    /// TPROXY (the listener gets `IP_TRANSPARENT` when permitted).
    /// Repeatable. `docs/client.md` has the nft rules.
    #[arg(long, value_name = "ADDR:PORT")]
    pub transparent: Vec<String>,

    /// Username for the server (SOCKS6 username/password, sent 0-RTT in
    /// the request). Needs --password-file.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// File whose first line is the password for --user.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Username applications must give this client (SOCKS5 RFC 1929,
    /// SOCKS6 username/password, HTTP `Proxy-Authorization: Basic`).
    /// Needs --local-password-file. Required when a front-end listens on a
    /// non-loopback address.
    #[arg(long, value_name = "NAME")]
    pub local_user: Option<String>,

    /// File whose first line is the password for --local-user.
    #[arg(long, value_name = "FILE")]
    pub local_password_file: Option<PathBuf>,

    /// Failed logins of applications from one source (an IPv4 address or
    /// an IPv6 /64) within --failed-login-window after which its further
    /// logins are refused without checking the password, until the window
    /// ends. Default 10.
    #[arg(long, value_name = "N")]
    pub max_failed_logins: Option<u32>,

    /// Seconds over which failed logins are counted, from a source's first
    /// failure. Default 60.
    #[arg(long, value_name = "SECS")]
    pub failed_login_window: Option<u64>,

    /// Serve applications without authentication on non-loopback
    /// front-ends. Without this the client refuses to start as an open
    /// proxy.
    #[arg(long)]
    pub allow_anonymous: bool,

    /// Protocol spoken to the server: `socks6` (default) or `convert`
    /// (RFC 8803; names are resolved on this host, no credentials).
    #[arg(long, value_name = "socks6|convert")]
    pub upstream: Option<String>,

    /// Milliseconds to wait, after answering an application at once, for
    /// its first bytes so they ride in the request (and the SYN) to the
    /// server. Protocols where the server speaks first (SMTP) get the
    /// request with no data after this wait. 0 to 1000; default 20.
    #[arg(long, value_name = "MS")]
    pub early_data_wait: Option<u64>,

    /// Answer applications only after the server has answered, with the
    /// server's result mapped onto the application's protocol (SOCKS5
    /// reply code, SOCKS4 0x5B, HTTP 502/503/504/403). Costs one round
    /// trip to the server per connection, and the application's first
    /// bytes no longer ride in the SYN.
    #[arg(long)]
    pub no_early_reply: bool,

    /// Seconds to wait for the TCP connection to the server. Default 10.
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Seconds an application has for its handshake, and the server has to
    /// answer a request. Default 15.
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,

    /// Seconds a relayed connection may stay idle in both directions before
    /// it is closed. Default 300.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Seconds open connections get to finish after SIGTERM or SIGINT;
    /// relays still open then are reset, each logged with `end=drained`.
    /// Default 30.
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<u64>,

    /// Maximum concurrent application connections; more are closed at
    /// once. Default 4096.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Maximum concurrent application connections from one source address
    /// other than loopback; more are closed at once. Default 1024. It
    /// matters when --listen takes connections from other devices (a LAN
    /// address with --local-user); this host's own applications, which all
    /// come from loopback, are held by --max-connections only.
    #[arg(long, value_name = "N")]
    pub max_connections_per_source: Option<usize>,

    /// Connect to the server with plain TCP instead of Multipath TCP, and
    /// do not ask the server for Multipath TCP towards targets.
    #[arg(long)]
    pub no_mptcp: bool,

    /// Ask the server to use Multipath TCP towards targets too (the SOCKS6
    /// stack option, or the Multipath TCP one of the Convert TCP options). Off by
    /// default: few targets speak Multipath TCP, and on Linux a Multipath
    /// TCP socket that falls back to TCP reads far slower than a TCP
    /// socket (docs/benchmarks.md), which every fallen-back target
    /// connection would pay.
    #[arg(long)]
    pub mptcp_to_targets: bool,

    /// Do not use TCP Fast Open: no data in the SYN to the server, and the
    /// server is not asked for it towards targets.
    #[arg(long)]
    pub no_tfo: bool,

    /// Do not use SOCKS6 sessions: every request to the server carries the
    /// credentials, and no idempotence tokens are spent.
    #[arg(long)]
    pub no_sessions: bool,

    /// How a SOCKS6 domain name's length byte is written towards the
    /// server: `counted` (it counts the NUL padding, the -12 text, which
    /// sixpath-server reads) or `uncounted` (only the name; libsocks6msg
    /// servers such as sixtysocks). Without this flag the client writes
    /// `counted` and switches to `uncounted` for good if the server
    /// rejects a domain-name request as malformed and takes it that way.
    #[arg(long, value_name = "counted|uncounted")]
    pub socks6_domain_padding: Option<String>,

    /// `--config`, `--log` and `--log-format`.
    #[command(flatten)]
    #[serde(flatten)]
    pub service: ServiceArgs,

    /// Multipath paths (`--path`, `--path-policy`).
    #[command(flatten)]
    #[serde(flatten)]
    pub paths: PathArgs,

    /// Speak TLS 1.3 to the server (its listener marked `tls`). The TLS
    /// `ClientHello` rides in the SYN; the SOCKS6 request follows the TLS
    /// handshake, one round trip more than plain 0-RTT SOCKS6, unless the
    /// server takes early data (see --no-tls-early-data). Needs exactly
    /// one of --tls-fingerprint or --tls-ca. Not with --upstream convert.
    #[arg(long)]
    pub tls: bool,

    /// SHA-256 fingerprint of the server's certificate, `sha256:` and 64
    /// hex digits (as `sixpath-server gen-cert` prints). Repeatable, to
    /// roll over certificates.
    #[arg(long, value_name = "sha256:HEX")]
    pub tls_fingerprint: Vec<String>,

    /// PEM file of CA certificates to verify the server's certificate
    /// chain and name against (instead of --tls-fingerprint).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Server name sent in the TLS SNI and checked with --tls-ca. Default:
    /// the host of --server.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// Do not send the request as TLS 1.3 early data (0-RTT). By default,
    /// resuming with a ticket of a server that takes early data
    /// (`sixpath-server --tls-early-data`), the request and its initial
    /// data go with the `ClientHello`; the server serves them before the
    /// handshake completes only when they spend an idempotence token, and
    /// data it refuses is sent again after the handshake.
    #[arg(long)]
    pub no_tls_early_data: bool,

    /// Admin endpoint as ADDR:PORT serving a status page at `/` (with a
    /// path policy switch, on loopback only), `/api/status`, `/stats`
    /// (JSON, read by `sixpath-client status`) and `/metrics`
    /// (Prometheus). Loopback only unless --admin-allow-remote.
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin: Option<String>,

    /// Allow --admin on a non-loopback address (the statistics name
    /// targets and interfaces).
    #[arg(long)]
    pub admin_allow_remote: bool,
}

sixpath_service::merge_fields!(Options {
    server,
    listen,
    http_listen,
    transparent,
    user,
    password_file,
    local_user,
    local_password_file,
    max_failed_logins,
    failed_login_window,
    allow_anonymous,
    upstream,
    early_data_wait,
    no_early_reply,
    connect_timeout,
    handshake_timeout,
    idle_timeout,
    drain_timeout,
    max_connections,
    max_connections_per_source,
    no_mptcp,
    mptcp_to_targets,
    no_tfo,
    no_sessions,
    socks6_domain_padding,
    service,
    paths,
    tls,
    tls_fingerprint,
    tls_ca,
    tls_server_name,
    no_tls_early_data,
    admin,
    admin_allow_remote,
});

impl AsRef<ServiceArgs> for Options {
    fn as_ref(&self) -> &ServiceArgs {
        &self.service
    }
}

/// The protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// SOCKS6 (draft -11) with 0-RTT initial data.
    Socks6,
    /// RFC 8803 Convert.
    Convert,
}

impl UpstreamProtocol {
    /// The name used in logs and `--upstream`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Socks6 => "socks6",
            Self::Convert => "convert",
        }
    }
}

impl FromStr for UpstreamProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "socks6" => Ok(Self::Socks6),
            "convert" => Ok(Self::Convert),
            _ => Err(format!(
                "unknown upstream {s:?} (expected socks6 or convert)"
            )),
        }
    }
}

/// How SOCKS6 domain names are written towards the server
/// (`--socks6-domain-padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DomainPadding {
    /// Counted, switching to uncounted if the server asks for it by
    /// rejecting a counted domain-name request (the default).
    #[default]
    Detect,
    /// The length byte counts the NUL padding (draft -12 text).
    Counted,
    /// The length byte counts only the name (libsocks6msg).
    Uncounted,
}

impl FromStr for DomainPadding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "counted" => Ok(Self::Counted),
            "uncounted" => Ok(Self::Uncounted),
            _ => Err(format!("{s:?}: expected counted or uncounted")),
        }
    }
}

/// The server as configured: a name or an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ServerAddr {
    /// The address, if the host is an IP literal.
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for ServerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Self {
                host: sa.ip().to_string(),
                port: sa.port(),
            });
        }
        let bad = || format!("{s:?} is not HOST:PORT (IPv6 in brackets, e.g. [2001:db8::1]:1080)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// A password read from a file; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub Vec<u8>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A username and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: Password,
}

impl Credentials {
    /// True if `username` and `password` match, compared in constant time
    /// for equal lengths.
    pub fn matches(&self, username: &[u8], password: &[u8]) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        // Both comparisons always run.
        let user_ok = eq(self.username.as_bytes(), username);
        let pass_ok = eq(&self.password.0, password);
        user_ok & pass_ok
    }
}

/// What a front-end listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    /// SOCKS5, SOCKS4/4a, HTTP proxy and SOCKS6, by first byte.
    Mixed,
    /// HTTP proxy only.
    Http,
    /// Redirected or TPROXY-diverted connections.
    Transparent,
}

impl FrontEnd {
    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mixed => "mixed",
            Self::Http => "http",
            Self::Transparent => "transparent",
        }
    }
}

/// The validated configuration the client runs with.
// Independent switches, one per flag.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server.
    pub server: ServerAddr,
    /// Front-end listeners.
    pub listen: Vec<(SocketAddr, FrontEnd)>,
    /// Credentials for the server.
    pub upstream_credentials: Option<Credentials>,
    /// Credentials applications must give.
    pub local_credentials: Option<Credentials>,
    /// Failed local logins from one source that block it for the rest of
    /// the window.
    pub max_failed_logins: u32,
    /// Window failed local logins are counted in.
    pub failed_login_window: Duration,
    /// Serve anonymous applications on non-loopback front-ends.
    pub allow_anonymous: bool,
    /// SOCKS6 or Convert.
    pub upstream: UpstreamProtocol,
    /// How long to wait for an application's first bytes after an early
    /// reply.
    pub early_data_wait: Duration,
    /// Answer applications before the server has answered.
    pub early_reply: bool,
    /// Deadline for the TCP connection to the server.
    pub connect_timeout: Duration,
    /// Deadline for handshakes (application's, and the server's answer).
    pub handshake_timeout: Duration,
    /// Idle timeout for relayed connections.
    pub idle_timeout: Duration,
    /// How long open connections may go on after a shutdown signal; those
    /// still open then are reset (30 s).
    pub drain_timeout: Duration,
    /// Cap on concurrent application connections.
    pub max_connections: usize,
    /// Cap on concurrent application connections from one source address.
    pub max_connections_per_source: usize,
    /// Multipath TCP to the server.
    pub mptcp: bool,
    /// Ask the server for Multipath TCP towards targets.
    pub mptcp_to_targets: bool,
    /// TCP Fast Open to the server.
    pub tfo: bool,
    /// SOCKS6 sessions and idempotence tokens.
    pub sessions: bool,
    /// How SOCKS6 domain names are written.
    pub domain_padding: DomainPadding,
    /// The multipath paths and their policy.
    pub paths: PathArgs,
    /// TLS towards the server.
    pub tls: Option<TlsSettings>,
    /// The admin endpoint.
    pub admin: Option<SocketAddr>,
}

/// TLS towards the server.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// TLS 1.3 client configuration (pins or CA, ALPN `sixpath`).
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent in the SNI (and verified with a CA file).
    pub server_name: ServerName<'static>,
    /// Whether the request may go as TLS 1.3 early data.
    pub early_data: bool,
}

impl TlsSettings {
    /// TLS for `server` (its host is the default SNI) as the options say,
    /// or `None` without `--tls`. Exactly one of `--tls-fingerprint` and
    /// `--tls-ca` is required with `--tls`; either without it is an error.
    fn resolve(o: &Options, server: &ServerAddr) -> Result<Option<Self>, ConfigError> {
        if !o.tls {
            for (given, field) in [
                (!o.tls_fingerprint.is_empty(), "tls-fingerprint"),
                (o.tls_ca.is_some(), "tls-ca"),
                (o.tls_server_name.is_some(), "tls-server-name"),
                (o.no_tls_early_data, "no-tls-early-data"),
            ] {
                if given {
                    return Err(ConfigError::new(field, format!("--{field} needs --tls")));
                }
            }
            return Ok(None);
        }
        let verify = match (o.tls_fingerprint.is_empty(), &o.tls_ca) {
            (true, None) => {
                return Err(ConfigError::new(
                    "tls-fingerprint",
                    "missing: --tls needs the server's --tls-fingerprint sha256:HEX or a --tls-ca FILE",
                ));
            }
            (false, Some(_)) => {
                return Err(ConfigError::new(
                    "tls-ca",
                    "give either --tls-fingerprint or --tls-ca, not both",
                ));
            }
            (false, None) => ServerVerification::Pinned(
                o.tls_fingerprint
                    .iter()
                    .map(|f| tls::parse_fingerprint(f))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ConfigError::new("tls-fingerprint", e))?,
            ),
            (true, Some(path)) => ServerVerification::CaFile(path.clone()),
        };
        let early_data = !o.no_tls_early_data;
        let config = tls::client_config_with(verify, &[tls::ALPN_SIXPATH], early_data)
            .map_err(|e| ConfigError::new("tls-ca", e.to_string()))?;
        let name = o.tls_server_name.as_deref().unwrap_or(&server.host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| ConfigError::new("tls-server-name", format!("{name:?}: {e}")))?;
        Ok(Some(Self {
            config,
            server_name,
            early_data,
        }))
    }
}

/// Default address of the admin endpoint that `sixpath-client status`
/// asks when not told otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:1090";

/// Parses and checks `--admin`: loopback unless `allow_remote`.
pub fn admin_addr(
    value: Option<&str>,
    allow_remote: bool,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(s) = value else {
        return Ok(None);
    };
    let addr = s.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new(
            "admin",
            format!("{s:?} is not ADDR:PORT (IPv6 in brackets, e.g. [::1]:1090)"),
        )
    })?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ConfigError::new(
            "admin",
            format!(
                "{addr} is not a loopback address: the statistics show targets and interfaces. \
                 Pass --admin-allow-remote if that is really intended"
            ),
        ));
    }
    Ok(Some(addr))
}

/// Default mixed front-end.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1080";
/// Default wait for an application's first bytes after an early reply:
/// long enough for a local application to write the request it has ready
/// (microseconds on an idle host, a few milliseconds on a loaded phone),
/// well under a cellular round trip (30–80 ms), so a server-speaks-first
/// protocol loses less to the wait than early reply saves.
pub const DEFAULT_EARLY_DATA_WAIT: Duration = Duration::from_millis(20);
/// Default server connect deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default handshake deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time open connections get to finish after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on the connections from one source address: a quarter of
/// [`DEFAULT_MAX_CONNECTIONS`], so one device on a shared LAN listener
/// leaves room for at least three others; on loopback, where all
/// applications of the host are one source, still far above what browsers
/// open through a proxy (a few dozen connections per proxy server).
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 1024;

impl Settings {
    /// Settings for tests and embedding: server `server`, one mixed
    /// front-end on `listen`, everything else at its default.
    pub fn new(server: SocketAddr, listen: SocketAddr) -> Self {
        Self {
            server: ServerAddr {
                host: server.ip().to_string(),
                port: server.port(),
            },
            listen: vec![(listen, FrontEnd::Mixed)],
            upstream_credentials: None,
            local_credentials: None,
            max_failed_logins: DEFAULT_MAX_FAILURES,
            failed_login_window: DEFAULT_WINDOW,
            allow_anonymous: false,
            upstream: UpstreamProtocol::Socks6,
            early_data_wait: DEFAULT_EARLY_DATA_WAIT,
            early_reply: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            mptcp: true,
            mptcp_to_targets: false,
            tfo: true,
            sessions: true,
            domain_padding: DomainPadding::Detect,
            paths: PathArgs::default(),
            tls: None,
            admin: None,
        }
    }
}

impl Options {
    /// Reads `path` as a JSON config file (`doctor` and `status` read the
    /// client's).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        sixpath_service::config::from_file(path)
    }

    /// Validates the options into [`Settings`].
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let server = self
            .server
            .as_deref()
            .ok_or_else(|| ConfigError::new("server", "missing: give --server HOST:PORT"))?
            .parse::<ServerAddr>()
            .map_err(|e| ConfigError::new("server", e))?;
        let tls = TlsSettings::resolve(&self, &server)?;
        let admin = admin_addr(self.admin.as_deref(), self.admin_allow_remote)?;

        let mut listen = Vec::new();
        for (field, kind, list) in [
            ("listen", FrontEnd::Mixed, &self.listen),
            ("http-listen", FrontEnd::Http, &self.http_listen),
            ("transparent", FrontEnd::Transparent, &self.transparent),
        ] {
            for s in list {
                let addr = s.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new(
                        field,
                        format!("{s:?} is not ADDR:PORT (IPv6 in brackets, e.g. [::1]:1080)"),
                    )
                })?;
                if listen.iter().any(|(a, _)| *a == addr) {
                    return Err(ConfigError::new(field, format!("{addr} given twice")));
                }
                listen.push((addr, kind));
            }
        }
        if listen.is_empty() {
            let addr = DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::new("listen", "bad default"))?;
            listen.push((addr, FrontEnd::Mixed));
        }

        let upstream_credentials =
            credentials("user", "password-file", self.user, self.password_file)?;
        let local_credentials = credentials(
            "local-user",
            "local-password-file",
            self.local_user,
            self.local_password_file,
        )?;

        let upstream = match &self.upstream {
            None => UpstreamProtocol::Socks6,
            Some(s) => s
                .parse::<UpstreamProtocol>()
                .map_err(|e| ConfigError::new("upstream", e))?,
        };
        if upstream == UpstreamProtocol::Convert && upstream_credentials.is_some() {
            return Err(ConfigError::new(
                "user",
                "Convert (RFC 8803) carries no credentials: --user needs --upstream socks6",
            ));
        }

        let early_data_wait = match self.early_data_wait {
            None => DEFAULT_EARLY_DATA_WAIT,
            Some(ms) if ms > 1000 => {
                return Err(ConfigError::new(
                    "early-data-wait",
                    "must be at most 1000 ms",
                ));
            }
            Some(ms) => Duration::from_millis(ms),
        };
        let connect_timeout = seconds(
            "connect-timeout",
            self.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let handshake_timeout = seconds(
            "handshake-timeout",
            self.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
        )?;
        let idle_timeout = seconds("idle-timeout", self.idle_timeout, DEFAULT_IDLE_TIMEOUT)?;
        let settings = Settings {
            server,
            listen,
            upstream_credentials,
            local_credentials,
            max_failed_logins: match self.max_failed_logins {
                None => DEFAULT_MAX_FAILURES,
                Some(0) => return Err(ConfigError::new("max-failed-logins", "must be at least 1")),
                Some(n) => n,
            },
            failed_login_window: seconds(
                "failed-login-window",
                self.failed_login_window,
                DEFAULT_WINDOW,
            )?,
            allow_anonymous: self.allow_anonymous,
            upstream,
            early_data_wait,
            early_reply: !self.no_early_reply,
            connect_timeout,
            handshake_timeout,
            idle_timeout,
            drain_timeout: seconds("drain-timeout", self.drain_timeout, DEFAULT_DRAIN_TIMEOUT)?,
            max_connections: count(
                "max-connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?,
            max_connections_per_source: count(
                "max-connections-per-source",
                self.max_connections_per_source,
                DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            )?,
            mptcp: !self.no_mptcp,
            mptcp_to_targets: !self.no_mptcp && self.mptcp_to_targets,
            tfo: !self.no_tfo,
            sessions: !self.no_sessions,
            domain_padding: match &self.socks6_domain_padding {
                None => DomainPadding::Detect,
                Some(v) => v
                    .parse()
                    .map_err(|e| ConfigError::new("socks6-domain-padding", e))?,
            },
            tls,
            admin,
            paths: self.paths,
        };
        if settings.tls.is_some() && settings.upstream == UpstreamProtocol::Convert {
            return Err(ConfigError::new(
                "tls",
                "RFC 8803 Convert is plain TCP (a converter cannot tell TLS from its TLVs): \
                 --tls needs --upstream socks6",
            ));
        }
        settings
            .paths
            .probe_settings()
            .map_err(|e| ConfigError::new("probe-interval", e))?;
        if settings.paths.paths.is_empty() && settings.paths.path_policy.is_some() {
            return Err(ConfigError::new(
                "path-policy",
                "needs at least one --path IFACE",
            ));
        }
        settings.check_open_proxy()?;
        Ok(settings)
    }
}

impl Settings {
    /// Refuses an open proxy: a non-loopback SOCKS or HTTP front-end
    /// without local authentication, unless `--allow-anonymous`.
    /// Transparent front-ends only carry connections the firewall diverts
    /// to them (a direct connection has no other destination), so they
    /// are exempt.
    fn check_open_proxy(&self) -> Result<(), ConfigError> {
        if self.local_credentials.is_some() || self.allow_anonymous {
            return Ok(());
        }
        let open = self
            .listen
            .iter()
            .find(|(a, k)| *k != FrontEnd::Transparent && !a.ip().is_loopback());
        if let Some((addr, kind)) = open {
            let field = if *kind == FrontEnd::Http {
                "http-listen"
            } else {
                "listen"
            };
            return Err(ConfigError::new(
                field,
                format!(
                    "{addr} is not a loopback address and no --local-user is configured: \
                     this would be an open proxy. Configure --local-user and \
                     --local-password-file, or pass --allow-anonymous if that is really intended"
                ),
            ));
        }
        Ok(())
    }
}

/// Reads a username/password pair; both or neither must be given.
fn credentials(
    user_field: &str,
    file_field: &str,
    user: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Credentials>, ConfigError> {
    let Some((username, path)) = both_or_neither((user_field, user), (file_field, file))? else {
        return Ok(None);
    };
    if username.is_empty() || username.len() > 255 {
        return Err(ConfigError::new(user_field, "must be 1 to 255 bytes"));
    }
    let password = read_password(&path).map_err(|e| ConfigError::new(file_field, e))?;
    Ok(Some(Credentials {
        username,
        password: Password(password),
    }))
}

/// The first line of `path`, without its line ending; 1 to 255 bytes.
fn read_password(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || line.len() > 255 {
        return Err(format!(
            "{}: the first line must hold a password of 1 to 255 bytes",
            path.display()
        ));
    }
    Ok(line.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(server: &str) -> Options {
        Options {
            server: Some(server.into()),
            ..Options::default()
        }
    }

    #[test]
    fn defaults_to_a_mixed_front_end_on_loopback_1080() {
        let s = opts("198.18.0.1:1080").resolve().expect("valid");
        assert_eq!(
            s.listen,
            vec![("127.0.0.1:1080".parse().expect("addr"), FrontEnd::Mixed)]
        );
        assert_eq!(s.upstream, UpstreamProtocol::Socks6);
        assert_eq!(s.early_data_wait, Duration::from_millis(20));
        assert!(s.early_reply && s.mptcp && s.tfo);
    }

    #[test]
    fn requires_a_server_naming_the_field() {
        let e = Options::default().resolve().expect_err("no server");
        assert_eq!(e.field, "server");
        assert_eq!(
            opts("no-port").resolve().expect_err("no port").field,
            "server"
        );
        assert_eq!(opts("a b:1").resolve().expect_err("space").field, "server");
    }

    #[test]
    fn parses_server_names_and_literals() {
        let s: ServerAddr = "proxy.example.net:1080".parse().expect("name");
        assert_eq!((s.host.as_str(), s.port), ("proxy.example.net", 1080));
        assert_eq!(s.literal(), None);
        let v6: ServerAddr = "[2001:db8::1]:443".parse().expect("v6");
        assert_eq!(
            v6.literal(),
            Some("[2001:db8::1]:443".parse().expect("addr"))
        );
        assert_eq!(v6.to_string(), "[2001:db8::1]:443");
    }

    #[test]
    fn refuses_open_proxy_on_public_address() {
        let mut o = opts("198.18.0.1:1080");
        o.http_listen = vec!["0.0.0.0:8080".into()];
        let e = o.clone().resolve().expect_err("open proxy");
        assert_eq!(e.field, "http-listen");
        assert!(e.message.contains("open proxy"), "{e}");
        o.allow_anonymous = true;
        assert!(o.resolve().is_ok());
        let mut t = opts("198.18.0.1:1080");
        t.transparent = vec!["0.0.0.0:1081".into()];
        assert!(t.resolve().is_ok(), "transparent front-ends are exempt");
    }

    #[test]
    fn credentials_need_both_halves() {
        let mut o = opts("198.18.0.1:1080");
        o.user = Some("alice".into());
        assert_eq!(o.resolve().expect_err("no file").field, "password-file");
        let mut o = opts("198.18.0.1:1080");
        o.local_password_file = Some("/nonexistent".into());
        assert_eq!(o.resolve().expect_err("no user").field, "local-user");
    }

    #[test]
    fn reads_the_first_line_of_the_password_file() {
        let dir = std::env::temp_dir().join(format!("sixpath-client-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("pw");
        std::fs::write(&path, b"s3cret\r\nignored\n").expect("write");
        let mut o = opts("198.18.0.1:1080");
        o.user = Some("alice".into());
        o.password_file = Some(path.clone());
        let s = o.resolve().expect("valid");
        let c = s.upstream_credentials.expect("creds");
        assert!(c.matches(b"alice", b"s3cret"));
        assert!(!c.matches(b"alice", b"s3cret\r"));
        std::fs::write(&path, b"\n").expect("write");
        let mut o = opts("198.18.0.1:1080");
        o.user = Some("alice".into());
        o.password_file = Some(path);
        assert_eq!(o.resolve().expect_err("empty").field, "password-file");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rejects_unknown_config_field_by_name() {
        let e = serde_json::from_str::<Options>(r#"{"server": "a:1", "early-dat-wait": 5}"#)
            .expect_err("typo");
        assert!(e.to_string().contains("early-dat-wait"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let file: Options = serde_json::from_str(
            r#"{"server": "198.18.0.1:1", "early-data-wait": 5, "upstream": "convert",
                "listen": ["127.0.0.1:9"], "no-early-reply": true}"#,
        )
        .expect("valid");
        let cli = Options {
            early_data_wait: Some(7),
            ..Options::default()
        };
        let s = cli.or(file).resolve().expect("valid");
        assert_eq!(s.early_data_wait, Duration::from_millis(7));
        assert_eq!(s.upstream, UpstreamProtocol::Convert);
        assert_eq!(s.listen[0].0.port(), 9);
        assert!(!s.early_reply);
    }

    #[test]
    fn reads_paths_tls_and_admin_from_the_file() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let file: Options = serde_json::from_str(&format!(
            r#"{{"server": "proxy.example.net:443", "path": ["wlan0", "lte0=backup"],
                "path-policy": "backup", "tls": true, "tls-fingerprint": ["{fp}"],
                "admin": "127.0.0.1:1090"}}"#
        ))
        .expect("valid");
        let s = Options::default().or(file).resolve().expect("valid");
        assert_eq!(s.paths.paths.len(), 2);
        assert!(s.paths.paths[1].backup);
        assert_eq!(s.paths.policy(), crate::paths::PathPolicy::Backup);
        let tls = s.tls.expect("tls");
        assert_eq!(
            tls.server_name,
            ServerName::try_from("proxy.example.net").expect("name")
        );
        assert_eq!(s.admin, Some("127.0.0.1:1090".parse().expect("addr")));
    }

    #[test]
    fn tls_needs_exactly_one_verification_naming_the_field() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let mut o = opts("198.18.0.1:1");
        o.tls = true;
        assert_eq!(
            o.clone().resolve().expect_err("none").field,
            "tls-fingerprint"
        );
        o.tls_fingerprint = vec![fp.clone()];
        o.tls_ca = Some("/nonexistent.pem".into());
        assert_eq!(o.clone().resolve().expect_err("both").field, "tls-ca");
        o.tls_ca = None;
        o.tls_server_name = Some("proxy.example.net".into());
        let s = o.clone().resolve().expect("pinned");
        assert!(s.tls.is_some());
        o.tls_fingerprint = vec!["sha256:zz".into()];
        assert_eq!(
            o.clone().resolve().expect_err("bad").field,
            "tls-fingerprint"
        );
        o.tls_fingerprint = Vec::new();
        o.tls_ca = Some("/nonexistent.pem".into());
        assert_eq!(o.clone().resolve().expect_err("no ca").field, "tls-ca");
        let mut o = opts("198.18.0.1:1");
        o.tls_fingerprint = vec![fp.clone()];
        assert_eq!(o.resolve().expect_err("no --tls").field, "tls-fingerprint");
        let mut o = opts("198.18.0.1:1");
        o.tls = true;
        o.tls_fingerprint = vec![fp];
        o.upstream = Some("convert".into());
        assert_eq!(o.resolve().expect_err("convert").field, "tls");
    }

    #[test]
    fn admin_is_loopback_unless_allowed() {
        let mut o = opts("198.18.0.1:1");
        o.admin = Some("0.0.0.0:1090".into());
        let e = o.clone().resolve().expect_err("remote");
        assert_eq!(e.field, "admin");
        o.admin_allow_remote = true;
        assert!(o.resolve().is_ok());
        let mut o = opts("198.18.0.1:1");
        o.admin = Some("localhost".into());
        assert_eq!(o.resolve().expect_err("bad").field, "admin");
    }

    #[test]
    fn rejects_a_bad_path_and_a_policy_without_paths() {
        let e = serde_json::from_str::<Options>(r#"{"server": "a:1", "path": ["wlan0=spare"]}"#)
            .expect_err("bad path");
        assert!(e.to_string().contains("wlan0=spare"), "{e}");
        let e = serde_json::from_str::<Options>(r#"{"server": "a:1", "pth": ["wlan0"]}"#)
            .expect_err("typo");
        assert!(e.to_string().contains("pth"), "{e}");
        let mut o = opts("198.18.0.1:1");
        o.paths.path_policy = Some(crate::paths::PathPolicy::Single);
        assert_eq!(o.resolve().expect_err("policy").field, "path-policy");
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let mut o = opts("198.18.0.1:1");
        o.early_data_wait = Some(5000);
        assert_eq!(o.resolve().expect_err("wait").field, "early-data-wait");
        let mut o = opts("198.18.0.1:1");
        o.upstream = Some("socks7".into());
        assert_eq!(o.resolve().expect_err("upstream").field, "upstream");
        let mut o = opts("198.18.0.1:1");
        o.handshake_timeout = Some(0);
        assert_eq!(o.resolve().expect_err("zero").field, "handshake-timeout");
        let mut o = opts("198.18.0.1:1");
        o.listen = vec!["localhost:1080".into()];
        assert_eq!(o.resolve().expect_err("name").field, "listen");
    }

    #[test]
    fn socks6_domain_padding_is_detected_unless_given() {
        let s = opts("198.18.0.1:1").resolve().expect("valid");
        assert_eq!(s.domain_padding, DomainPadding::Detect);
        let file: Options =
            serde_json::from_str(r#"{"socks6-domain-padding": "uncounted"}"#).expect("valid");
        let s = opts("198.18.0.1:1").or(file).resolve().expect("valid");
        assert_eq!(s.domain_padding, DomainPadding::Uncounted);
        let o = Options {
            socks6_domain_padding: Some("Counted".into()),
            ..opts("198.18.0.1:1")
        };
        assert_eq!(
            o.resolve().expect("valid").domain_padding,
            DomainPadding::Counted
        );
        let o = Options {
            socks6_domain_padding: Some("padded".into()),
            ..opts("198.18.0.1:1")
        };
        let e = o.resolve().expect_err("invalid");
        assert_eq!(e.field, "socks6-domain-padding");
    }

    #[test]
    fn failed_login_limits_default_as_the_servers_read_the_file_and_refuse_zero() {
        let s = opts("198.18.0.1:1").resolve().expect("valid");
        assert_eq!(s.max_failed_logins, 10);
        assert_eq!(s.failed_login_window, Duration::from_secs(60));
        let file: Options = serde_json::from_str(
            r#"{"server": "198.18.0.1:1", "max-failed-logins": 3, "failed-login-window": 5}"#,
        )
        .expect("valid");
        let s = Options::default().or(file).resolve().expect("valid");
        assert_eq!(s.max_failed_logins, 3);
        assert_eq!(s.failed_login_window, Duration::from_secs(5));
        let mut o = opts("198.18.0.1:1");
        o.max_failed_logins = Some(0);
        assert_eq!(o.resolve().expect_err("zero").field, "max-failed-logins");
        let mut o = opts("198.18.0.1:1");
        o.failed_login_window = Some(0);
        assert_eq!(o.resolve().expect_err("zero").field, "failed-login-window");
    }

    #[test]
    fn sessions_are_on_unless_no_sessions_on_the_command_line_or_in_json() {
        assert!(opts("198.18.0.1:1").resolve().expect("valid").sessions);
        let file: Options = serde_json::from_str(r#"{"no-sessions": true}"#).expect("valid");
        let s = opts("198.18.0.1:1").or(file).resolve().expect("valid");
        assert!(!s.sessions);
    }
}
