//! Command line and JSON configuration.
//!
//! One struct, [`Options`], is both the clap argument set and the serde shape
//! of the JSON config file, so every flag can be set in the file under the
//! same (kebab-case) name. The file is read first and flags override it.
//! [`Options::resolve`] validates everything and produces [`Settings`], the
//! typed configuration the server runs with; every error names the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::policy::{EgressRule, RuleAction};
use crate::secret::Secret;

/// A configuration problem, naming the field. The binary exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The flag or config-file field at fault (`listen`, `users`, …).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every server setting, as flags and as JSON config fields.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// Address to accept clients on, as ADDR:PORT, optionally restricted to
    /// some protocols with /PROTO+PROTO (socks6, socks5, socks4, convert),
    /// e.g. `[::]:1080` or `0.0.0.0:1234/convert`. Add `tls` to the list
    /// for a TLS 1.3 listener (needs --tls-cert and --tls-key), e.g.
    /// `[::]:443/tls` or `[::]:443/socks6+tls`; listeners without it are
    /// plain. Repeatable. Sockets are Multipath TCP when the kernel allows,
    /// else TCP.
    #[arg(long, value_name = "ADDR:PORT[/PROTOS]")]
    #[serde(default)]
    pub listen: Vec<String>,

    /// JSON file with the same settings as these flags (kebab-case names);
    /// flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// JSON users file for username/password authentication:
    /// `{"users": [{"username": "alice", "password": "..."}]}`. Reloaded on
    /// SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Serve clients without authentication on non-loopback addresses.
    /// Without this the server refuses to start as an open proxy.
    #[arg(long)]
    #[serde(default)]
    pub allow_anonymous: bool,

    /// Allow egress to this CIDR (optionally `CIDR:PORT` or
    /// `CIDR:PORT-PORT`), even inside ranges denied by default (loopback,
    /// private, link-local, CGNAT, ULA, multicast, this host). Repeatable;
    /// rules are checked in order, deny rules first.
    #[arg(long, value_name = "CIDR[:PORTS]")]
    #[serde(default)]
    pub allow_egress: Vec<String>,

    /// Deny egress to this CIDR (optionally with `:PORT` or `:PORT-PORT`).
    /// Repeatable.
    #[arg(long, value_name = "CIDR[:PORTS]")]
    #[serde(default)]
    pub deny_egress: Vec<String>,

    /// Seconds a client has to complete its handshake.
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,

    /// Seconds a relayed connection may stay idle in both directions before
    /// it is closed.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Seconds to wait for an outbound connection (all addresses together).
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Maximum concurrent client connections.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Maximum concurrent client connections from one source address.
    #[arg(long, value_name = "N")]
    pub max_connections_per_source: Option<usize>,

    /// Disable TCP Fast Open on listeners (0-RTT requests then cost one
    /// round trip more).
    #[arg(long)]
    #[serde(default)]
    pub no_tfo: bool,

    /// File holding the server key (at least 32 bytes, e.g. from
    /// `head -c 32 /dev/urandom`) for session IDs, idempotence tokens and
    /// Convert cookies. Servers sharing the key accept each other's. Without
    /// it a random key is drawn at start-up.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Log filter (error, warn, info, debug, trace, or a tracing
    /// directive such as `sixpath_server=debug`). Overridden by `RUST_LOG`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

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
        let mut tls = false;
        for name in protos.into_iter().flat_map(|p| p.split('+')) {
            if name.eq_ignore_ascii_case("tls") {
                tls = true;
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
                })
                .collect(),
            users: None,
            allow_anonymous: false,
            egress_rules: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_PER_SOURCE,
            tfo: true,
            secret: Secret::random(),
            tls: None,
        }
    }
}

/// Default handshake deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default outbound connect deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Default per-source connection cap.
pub const DEFAULT_MAX_PER_SOURCE: usize = 2_000;

impl Options {
    /// Reads `path` as a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| json_error("config", path, &e))
    }

    /// Fills every setting not given on the command line from `file`.
    #[must_use]
    pub fn or(self, file: Self) -> Self {
        fn vec_or(a: Vec<String>, b: Vec<String>) -> Vec<String> {
            if a.is_empty() { b } else { a }
        }
        Self {
            listen: vec_or(self.listen, file.listen),
            config: self.config,
            users: self.users.or(file.users),
            allow_anonymous: self.allow_anonymous || file.allow_anonymous,
            allow_egress: vec_or(self.allow_egress, file.allow_egress),
            deny_egress: vec_or(self.deny_egress, file.deny_egress),
            handshake_timeout: self.handshake_timeout.or(file.handshake_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            connect_timeout: self.connect_timeout.or(file.connect_timeout),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_source: self
                .max_connections_per_source
                .or(file.max_connections_per_source),
            no_tfo: self.no_tfo || file.no_tfo,
            secret_file: self.secret_file.or(file.secret_file),
            log: self.log.or(file.log),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
        }
    }

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

        let secs =
            |field: &str, v: Option<u64>, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(0) => Err(ConfigError::new(field, "must be at least 1 second")),
                    Some(s) if s > 86_400 * 7 => {
                        Err(ConfigError::new(field, "must be at most 604800 seconds"))
                    }
                    Some(s) => Ok(Duration::from_secs(s)),
                }
            };
        let count = |field: &str, v: Option<usize>, default: usize| -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(0) => Err(ConfigError::new(field, "must be at least 1")),
                Some(n) => Ok(n),
            }
        };

        let tls = self.tls()?;
        let settings = Settings {
            listen,
            users: self.users,
            allow_anonymous: self.allow_anonymous,
            egress_rules,
            handshake_timeout: secs(
                "handshake-timeout",
                self.handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
            idle_timeout: secs("idle-timeout", self.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
            connect_timeout: secs(
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
            secret: match &self.secret_file {
                Some(path) => Secret::load(path)?,
                None => Secret::random(),
            },
            tls,
        };
        settings.check_tls_listeners()?;
        settings.check_open_proxy()?;
        Ok(settings)
    }
}

impl Options {
    /// Loads --tls-cert and --tls-key (both or neither).
    fn tls(&self) -> Result<Option<sixpath_net::tls::ServerTls>, ConfigError> {
        use sixpath_net::tls::{self, TlsError};
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "tls-key",
                    "--tls-cert is set without --tls-key: give both or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "tls-cert",
                    "--tls-key is set without --tls-cert: give both or neither",
                ));
            }
        };
        tls::ServerTls::load(cert, key, &[tls::ALPN_SIXPATH])
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

/// A `serde_json` error as a [`ConfigError`]: unknown fields are named by
/// serde itself ("unknown field `x`, expected one of ..."); the location is
/// added.
pub fn json_error(field: &str, path: &Path, e: &serde_json::Error) -> ConfigError {
    ConfigError::new(
        field,
        format!(
            "{}: {e} (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ),
    )
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
    fn rejects_zero_timeout_naming_the_field() {
        let mut o = opts(&["127.0.0.1:1"]);
        o.handshake_timeout = Some(0);
        assert_eq!(o.resolve().expect_err("zero").field, "handshake-timeout");
    }
}
