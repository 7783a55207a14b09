//! `sixpath-client doctor`: checks that this host can carry sixpath
//! connections over Multipath TCP on every configured path, and prints,
//! for each problem, the exact command that fixes it.
//!
//! Checks, in order:
//!
//! 1. `net.mptcp.enabled` is 1 (and the kernel has MPTCP at all);
//! 2. the in-kernel path manager is selected (`net.mptcp.path_manager`),
//!    and whether it has `laminar` endpoints (Linux 6.18+);
//! 3. the client bit of `net.ipv4.tcp_fastopen` is set (0-RTT);
//! 4. reverse-path filtering is not strict on a configured interface;
//! 5. the MPTCP endpoints and limits match the configured paths (the plan
//!    of [`crate::paths`]);
//! 6. the server is reachable over each configured interface (plain TCP,
//!    `SO_BINDTODEVICE`);
//! 7. an MPTCP connection to the server stays MPTCP and gets one subflow
//!    per path. The probe sends one byte (the SOCKS6 version, so the
//!    connection becomes fully established and the path manager adds
//!    subflows), waits `--wait` seconds, reads the per-subflow statistics
//!    and closes; the server logs an incomplete handshake;
//! 8. more than one path can ever be used (`multipath`): a single
//!    `--path`, `--path-policy single`, no `--path` and no MPTCP `subflow`
//!    endpoint, or one network interface only, each leave every
//!    connection on one path. The verdict then says `SINGLE PATH` and what
//!    to do, instead of `OK`.
//!
//! Nothing is changed. The exit status is 0 when no check failed
//! (warnings and a single path allowed) and 1 otherwise.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use sixpath_net::{mptcp, sys};
use socket2::{Domain, Protocol, Socket, Type};

use crate::paths::{self, PathArgs, PathPolicy, plan::Unusable};

/// `sixpath-client doctor` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DoctorArgs {
    /// The sixpath server to test the paths against, as HOST:PORT. Without
    /// it only the host is checked.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,

    /// The paths to check (as for the client).
    #[command(flatten)]
    pub paths: PathArgs,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Seconds the test connection waits for its extra subflows.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub wait: f64,

    /// Seconds each connection attempt may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub timeout: f64,

    /// The client's JSON config file: its `server`, `path` and
    /// `path-policy` are checked unless given here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

impl DoctorArgs {
    /// These arguments with what they leave out filled from --config.
    pub fn with_config(mut self) -> Result<Self, crate::config::ConfigError> {
        if let Some(path) = &self.config {
            let file = crate::config::Options::from_file(path)?;
            self.server = self.server.or(file.server);
            self.paths = self.paths.or(file.paths);
        }
        Ok(self)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but not as well as it could.
    Warn,
    /// Broken: sixpath cannot use multipath (or the server) this way.
    Fail,
    /// Not checked (nothing configured to check).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One check: name, status, what was found, and the commands that fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`mptcp-enabled`, `endpoints`, `reach wlan0`, ...).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// Commands that fix the problem, to run as root, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fix: Vec<String>,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: Vec::new(),
        }
    }

    fn fix(mut self, cmds: impl IntoIterator<Item = String>) -> Self {
        self.fix.extend(cmds);
        self
    }
}

/// Statistics of one interface on the test connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStats {
    /// Interface name (or local address when unknown).
    pub iface: String,
    /// Subflows over it.
    pub subflows: usize,
    /// Bytes sent over it.
    pub bytes_sent: u64,
    /// Bytes received over it.
    pub bytes_received: u64,
    /// Lowest subflow RTT in microseconds.
    pub rtt_us: u32,
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check passed.
    Ok,
    /// Nothing failed, but only one path can ever be used: connections
    /// work without multipath (the `multipath` check says why).
    SinglePath,
    /// Only warnings.
    Degraded,
    /// At least one check failed.
    Broken,
}

/// The name of the check that says only one path can ever be used.
const MULTIPATH: &str = "multipath";

/// The verdict of `checks`: broken when one failed, single path when the
/// `multipath` check warned (whatever else warned), degraded on any other
/// warning, else OK.
pub fn verdict(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.status == Status::Fail) {
        Verdict::Broken
    } else if checks
        .iter()
        .any(|c| c.name == MULTIPATH && c.status == Status::Warn)
    {
        Verdict::SinglePath
    } else if checks.iter().any(|c| c.status == Status::Warn) {
        Verdict::Degraded
    } else {
        Verdict::Ok
    }
}

/// The full report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Overall verdict.
    pub verdict: Verdict,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Per-interface statistics of the test MPTCP connection.
    pub paths: Vec<PathStats>,
}

impl Report {
    /// Every fix command, in check order, without duplicates.
    pub fn fixes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.checks {
            for f in &c.fix {
                if !out.contains(&f.as_str()) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// The report as text, one line per check and its fixes.
    pub fn to_text(&self) -> String {
        let mut s = String::from("sixpath-client doctor\n");
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  {:<4}  {:<width$}  {}",
                c.status.label(),
                c.name,
                c.detail
            );
            for f in &c.fix {
                let _ = writeln!(s, "        {:<width$}  fix: {f}", "");
            }
        }
        if !self.paths.is_empty() {
            s.push_str("test connection per interface:\n");
            for p in &self.paths {
                let _ = writeln!(
                    s,
                    "  {:<10} {} subflow(s), {} B sent, {} B received, rtt {:.2} ms",
                    p.iface,
                    p.subflows,
                    p.bytes_sent,
                    p.bytes_received,
                    f64::from(p.rtt_us) / 1000.0
                );
            }
        }
        let problems = self
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
            .count();
        let _ = match self.verdict {
            Verdict::Ok => writeln!(s, "verdict: OK"),
            Verdict::SinglePath => {
                let others = problems.saturating_sub(1);
                writeln!(
                    s,
                    "verdict: SINGLE PATH (connections work, but only one path can ever be used: \
                     see multipath above{})",
                    if others == 0 {
                        String::new()
                    } else {
                        format!("; {others} other warning(s)")
                    }
                )
            }
            Verdict::Degraded => writeln!(s, "verdict: DEGRADED ({problems} warning(s))"),
            Verdict::Broken => writeln!(s, "verdict: BROKEN ({problems} problem(s))"),
        };
        let fixes = self.fixes();
        if !fixes.is_empty() {
            s.push_str("to fix, run as root:\n");
            for f in fixes {
                let _ = writeln!(s, "  {f}");
            }
        }
        s
    }
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn check_enabled() -> Check {
    match read_sysctl("net/mptcp/enabled").as_deref() {
        None => Check::new(
            "mptcp-enabled",
            Status::Fail,
            "this kernel has no Multipath TCP (CONFIG_MPTCP); connections use plain TCP",
        ),
        Some("1") => Check::new("mptcp-enabled", Status::Ok, "net.mptcp.enabled = 1"),
        Some(v) => Check::new(
            "mptcp-enabled",
            Status::Fail,
            format!(
                "net.mptcp.enabled = {v}: MPTCP sockets are refused, connections use plain TCP"
            ),
        )
        .fix(["sysctl -w net.mptcp.enabled=1".to_owned()]),
    }
}

/// Under `handover` and `aggregate` the client withdraws a failed path's
/// endpoints, which needs `CAP_NET_ADMIN`; without it failover is left to
/// the kernel's retransmission timers (a second or more).
fn check_handover(args: &PathArgs) -> Option<Check> {
    let policy = args.policy();
    if args.paths.is_empty() || !matches!(policy, PathPolicy::Handover | PathPolicy::Aggregate) {
        return None;
    }
    let name = "handover";
    let can = paths::MptcpPm::open().and_then(|mut pm| {
        // Setting the limits to what they are changes nothing and needs
        // the same capability as withdrawing an endpoint.
        let l = pm.limits()?;
        pm.set_limits(l)
    });
    Some(match can {
        Ok(()) => Check::new(
            name,
            Status::Ok,
            format!("{policy}: a failed path's subflows can be withdrawn at once (CAP_NET_ADMIN)"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Check::new(
            name,
            Status::Warn,
            format!(
                "{policy}: without CAP_NET_ADMIN the client judges path health and starts new connections on a healthy path, \
                 but cannot withdraw a failed path's subflows: open connections wait for the kernel's retransmission timers (a second or more)"
            ),
        )
        .fix(["setcap cap_net_admin+ep \"$(command -v sixpath-client)\"".to_owned()]),
        Err(e) => Check::new(name, Status::Skip, format!("MPTCP path manager not readable: {e}")),
    })
}

/// The kernel's MPTCP blackhole detection: once it fires, new connections
/// are opened as plain TCP for `net.mptcp.blackhole_timeout` seconds
/// (doubling each time); a path outage can set it off.
fn check_blackhole() -> Check {
    let name = "blackhole";
    let count = paths::probe::mptcp_blackholes();
    let timeout = read_sysctl("net/mptcp/blackhole_timeout");
    match (count, timeout) {
        (None, _) | (_, None) => Check::new(
            name,
            Status::Skip,
            "no MPTCP blackhole detection in this kernel",
        ),
        (Some(0), Some(t)) => Check::new(
            name,
            Status::Ok,
            format!("the kernel has not judged MPTCP blocked (net.mptcp.blackhole_timeout = {t})"),
        ),
        (Some(n), Some(t)) => Check::new(
            name,
            Status::Ok,
            format!(
                "the kernel judged MPTCP blocked {n} time(s) since this network namespace started (MPTcpExt Blackhole); \
                 after each it opens new connections as plain TCP for up to {t} s. A path outage during connection set-up \
                 looks the same; sixpath-client resets it when it has CAP_NET_ADMIN. If connections fall back to TCP \
                 (mptcp-e2e below), reset it: sysctl -w net.mptcp.blackhole_timeout={t}"
            ),
        ),
    }
}

fn check_path_manager() -> Check {
    let name = "path-manager";
    let pm = read_sysctl("net/mptcp/path_manager").or_else(|| {
        read_sysctl("net/mptcp/pm_type").map(|t| {
            if t == "1" {
                "userspace".into()
            } else {
                "kernel".into()
            }
        })
    });
    match pm.as_deref() {
        None => Check::new(name, Status::Skip, "no MPTCP sysctls"),
        Some("kernel") if sixpath_net::netlink::mptcp_pm::laminar_supported() => Check::new(
            name,
            Status::Ok,
            "in-kernel path manager, with `laminar` endpoints (subflows follow the addresses a server announces)",
        ),
        Some("kernel") => Check::new(
            name,
            Status::Ok,
            "in-kernel path manager, without `laminar` endpoints (Linux < 6.18): subflows go only to the server's own address, \
             none to addresses a server behind a balancer announces",
        ),
        Some(other) => Check::new(
            name,
            Status::Fail,
            format!("net.mptcp.path_manager = {other}: endpoints are ignored, no extra subflows"),
        )
        .fix(["sysctl -w net.mptcp.path_manager=kernel".to_owned()]),
    }
}

fn check_fastopen() -> Check {
    let name = "tcp-fastopen";
    match read_sysctl("net/ipv4/tcp_fastopen").and_then(|v| v.parse::<i64>().ok()) {
        None => Check::new(name, Status::Skip, "net.ipv4.tcp_fastopen not readable"),
        Some(v) if v & 1 == 1 => Check::new(
            name,
            Status::Ok,
            format!("net.ipv4.tcp_fastopen = {v} (client bit set)"),
        ),
        Some(v) => Check::new(
            name,
            Status::Warn,
            format!("net.ipv4.tcp_fastopen = {v}: no data in the SYN, every connection costs one more round trip"),
        )
        .fix([format!("sysctl -w net.ipv4.tcp_fastopen={}", v | 1)]),
    }
}

fn check_rp_filter(args: &PathArgs) -> Option<Check> {
    if args.paths.is_empty() {
        return None;
    }
    let all = read_sysctl("net/ipv4/conf/all/rp_filter").and_then(|v| v.parse::<i64>().ok())?;
    // The kernel uses max(all, iface): 1 is strict, 2 loose.
    let strict: Vec<&str> = args
        .paths
        .iter()
        .filter(|p| {
            let dev = read_sysctl(&format!("net/ipv4/conf/{}/rp_filter", p.iface))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            all.max(dev) == 1
        })
        .map(|p| p.iface.as_str())
        .collect();
    Some(if strict.is_empty() {
        Check::new(
            "rp-filter",
            Status::Ok,
            "no strict reverse-path filter on the paths",
        )
    } else {
        Check::new(
            "rp-filter",
            Status::Warn,
            format!(
                "strict reverse-path filtering on {}: replies to subflows on other interfaces may be dropped",
                strict.join(", ")
            ),
        )
        .fix(["sysctl -w net.ipv4.conf.all.rp_filter=2".to_owned()])
    })
}

fn check_paths(args: &PathArgs, insp: Option<&paths::Inspection>) -> Vec<Check> {
    let policy = args.policy();
    if args.paths.is_empty() {
        return vec![Check::new(
            "endpoints",
            Status::Skip,
            "no --path given: subflows come from the system's endpoints",
        )];
    }
    if policy == PathPolicy::Single {
        return vec![Check::new(
            "endpoints",
            Status::Ok,
            "policy single: no endpoints needed",
        )];
    }
    let Some(insp) = insp else {
        return vec![Check::new(
            "endpoints",
            Status::Fail,
            "cannot read interfaces over rtnetlink",
        )];
    };
    let mut out = Vec::new();
    for u in &insp.plan.unusable {
        let iface = match u {
            Unusable::NoSuchInterface(i) | Unusable::Down(i) | Unusable::NoAddress(i) => i,
        };
        let c = Check::new(format!("path {iface}"), Status::Fail, u.to_string());
        out.push(match u {
            Unusable::Down(i) => c.fix([format!("ip link set {i} up")]),
            _ => c,
        });
    }
    if let Err(e) = &insp.endpoints {
        out.push(Check::new(
            "endpoints",
            Status::Fail,
            format!("cannot read MPTCP endpoints: {e}"),
        ));
        return out;
    }
    let mut endpoint_plan = insp.plan.clone();
    endpoint_plan.limits = None;
    let cmds = endpoint_plan.commands();
    let have: Vec<String> = insp
        .plan
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "{} dev {}{}",
                e.addr,
                e.iface,
                if e.backup { " backup" } else { "" }
            )
        })
        .collect();
    out.push(if cmds.is_empty() {
        Check::new(
            "endpoints",
            Status::Ok,
            if have.is_empty() {
                "no usable path to install endpoints for".to_owned()
            } else {
                format!("subflow endpoints: {}", have.join(", "))
            },
        )
    } else {
        Check::new(
            "endpoints",
            Status::Warn,
            format!(
                "{} endpoint change(s) needed for subflows over every path \
                 (sixpath-client makes them itself when run with CAP_NET_ADMIN)",
                cmds.len()
            ),
        )
        .fix(cmds)
    });
    let limits = insp.limits.unwrap_or(paths::DEFAULT_LIMITS);
    out.push(match insp.plan.limits {
        None => Check::new("limits", Status::Ok, limits.to_string()),
        Some(change) => Check::new(
            "limits",
            Status::Warn,
            format!("{} (need {})", change.from, change.to),
        )
        .fix([format!("ip mptcp limits set {}", change.to)]),
    });
    out
}

/// What the `multipath` check looks at, read from the arguments and the
/// kernel (kept apart so the decision can be tested without a kernel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PathFacts {
    /// The `--path` interfaces, in order.
    paths: Vec<String>,
    /// The path policy.
    policy: PathPolicy,
    /// Interfaces that are up with an address subflows can use, loopback
    /// excluded.
    usable_ifaces: Vec<String>,
    /// The system's MPTCP endpoints with the `subflow` flag, when they
    /// could be read.
    subflow_endpoints: Option<usize>,
    /// The extra-subflow limit (`ip mptcp limits`), when it could be read.
    subflow_limit: Option<u32>,
}

impl PathFacts {
    fn read(args: &PathArgs, insp: Option<&paths::Inspection>) -> Self {
        let mut facts = Self {
            paths: args.paths.iter().map(|p| p.iface.clone()).collect(),
            policy: args.policy(),
            ..Self::default()
        };
        if let Some(insp) = insp {
            let ifs = &insp.interfaces;
            for link in ifs.links.iter().filter(|l| l.up && !l.loopback) {
                let has_addr = ifs
                    .addresses
                    .iter()
                    .any(|a| a.ifindex == link.index && a.usable());
                if has_addr && !facts.usable_ifaces.contains(&link.name) {
                    facts.usable_ifaces.push(link.name.clone());
                }
            }
            facts.subflow_endpoints = insp.endpoints.as_ref().ok().map(|eps| {
                eps.iter()
                    .filter(|e| e.flags.contains(paths::EndpointFlags::SUBFLOW))
                    .count()
            });
            facts.subflow_limit = insp.limits.map(|l| l.subflows);
        }
        facts
    }
}

/// `multipath`: whether more than one path can ever carry a connection.
/// `None` when the paths were not judged (they are broken, which other
/// checks report).
fn check_multipath(f: &PathFacts) -> Option<Check> {
    let single = |detail: String, fix: Vec<String>| {
        Some(
            Check::new(
                MULTIPATH,
                Status::Warn,
                format!("only one path can ever be used: {detail}"),
            )
            .fix(fix),
        )
    };
    // The command that gives the client one path per interface.
    let paths_cmd = |ifaces: &[String]| {
        let mut cmd = "sixpath-client".to_owned();
        for i in ifaces {
            let _ = write!(cmd, " --path {i}");
        }
        cmd
    };
    let others: Vec<String> = f
        .usable_ifaces
        .iter()
        .filter(|i| !f.paths.contains(i))
        .cloned()
        .collect();
    match f.paths.as_slice() {
        [] => {
            if f.usable_ifaces.len() < 2 {
                return single(
                    format!(
                        "this host has {} network interface(s) with a usable address{}; connect a second one \
                         (Wi-Fi and LTE, or a second uplink), then run the client with one --path per interface",
                        f.usable_ifaces.len(),
                        if f.usable_ifaces.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", f.usable_ifaces.join(", "))
                        }
                    ),
                    Vec::new(),
                );
            }
            match f.subflow_endpoints {
                // No MPTCP path manager to read: mptcp-enabled says why.
                None => None,
                Some(0) => single(
                    format!(
                        "no --path given and no MPTCP subflow endpoint on this host, so every connection keeps \
                         its first subflow; run the client with one --path per interface ({}), as root or with \
                         CAP_NET_ADMIN it installs the endpoints itself",
                        f.usable_ifaces.join(", ")
                    ),
                    vec![paths_cmd(&f.usable_ifaces)],
                ),
                Some(n) if f.subflow_limit == Some(0) => single(
                    format!("{n} subflow endpoint(s), but the limit of extra subflows is 0"),
                    vec!["ip mptcp limits set subflows 2".to_owned()],
                ),
                Some(n) => Some(Check::new(
                    MULTIPATH,
                    Status::Ok,
                    format!("no --path given: the system's {n} subflow endpoint(s) add subflows"),
                )),
            }
        }
        [only] => {
            let mut want = vec![only.clone()];
            want.extend(others.iter().cloned());
            let detail = if others.is_empty() {
                format!(
                    "only one --path ({only}), and no other interface with a usable address; connect a \
                     second one and add a --path for it"
                )
            } else {
                format!(
                    "only one --path ({only}); add a --path for each other interface to use ({})",
                    others.join(", ")
                )
            };
            single(
                detail,
                if others.is_empty() {
                    Vec::new()
                } else {
                    vec![paths_cmd(&want)]
                },
            )
        }
        [first, ..] if f.policy == PathPolicy::Single => single(
            format!(
                "--path-policy single uses the first --path ({first}) only; drop it (aggregate is the \
                 default) or choose handover or backup to use the others"
            ),
            Vec::new(),
        ),
        all => Some(Check::new(
            MULTIPATH,
            Status::Ok,
            format!("{} paths: {}", all.len(), all.join(", ")),
        )),
    }
}

fn resolve(server: &str) -> Result<SocketAddr, String> {
    let mut addrs = server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {server}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{server} resolves to no address"))
}

fn check_reach(server: SocketAddr, iface: Option<&str>, timeout: Duration) -> Check {
    let name = iface.map_or_else(|| "reach".to_owned(), |i| format!("reach {i}"));
    let attempt = || -> std::io::Result<Duration> {
        let sock = Socket::new(
            Domain::for_address(server),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if let Some(i) = iface {
            sock.bind_device(Some(i.as_bytes()))?;
        }
        let start = Instant::now();
        sock.connect_timeout(&server.into(), timeout)?;
        Ok(start.elapsed())
    };
    match attempt() {
        Ok(t) => Check::new(
            name,
            Status::Ok,
            format!("TCP to {server} in {:.1} ms", t.as_secs_f64() * 1000.0),
        ),
        Err(e) => Check::new(
            name,
            Status::Fail,
            match iface {
                Some(i) => format!(
                    "cannot reach {server} over {i}: {e} (see `ip route get {} oif {i}`)",
                    server.ip()
                ),
                None => format!("cannot reach {server}: {e}"),
            },
        ),
    }
}

/// Opens the probe connection, waits for `expect` subflows (at most
/// `wait`), and reports what carried it.
fn check_mptcp(
    server: SocketAddr,
    expect: usize,
    expect_ifaces: &[String],
    wait: Duration,
    timeout: Duration,
    insp: Option<&paths::Inspection>,
) -> (Check, Vec<PathStats>) {
    let name = "mptcp-e2e";
    let probe = || -> std::io::Result<(sys::Transport, Vec<mptcp::SubflowStats>)> {
        // As the client dials: an IPv6 socket even to an IPv4 server, so
        // IPv6-only paths can add subflows.
        let (sock, _, to) = sys::dual_stack_stream_socket(&server, true)?;
        sock.connect_timeout(&to.into(), timeout)?;
        // The SOCKS6 version byte: data makes the connection fully
        // established, which is when the path manager adds subflows.
        (&sock).write_all(&[6])?;
        let deadline = Instant::now() + wait;
        loop {
            let t = sys::transport(&sock);
            let enough = usize::from(t.subflows()) >= expect;
            if enough || Instant::now() >= deadline || !matches!(t, sys::Transport::Mptcp { .. }) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let t = sys::transport(&sock);
        let stats = mptcp::subflows(&sock).unwrap_or_default();
        Ok((t, stats))
    };
    match probe() {
        Err(e) => (
            Check::new(
                name,
                Status::Fail,
                format!("cannot connect to {server}: {e}"),
            ),
            Vec::new(),
        ),
        Ok((sys::Transport::Tcp, _)) => {
            let c = Check::new(
                name,
                Status::Fail,
                "the kernel refused an MPTCP socket; the connection used plain TCP",
            );
            // The sysctl only helps a kernel that has MPTCP.
            let c = if read_sysctl("net/mptcp/enabled").is_some() {
                c.fix(["sysctl -w net.mptcp.enabled=1".to_owned()])
            } else {
                c
            };
            (c, Vec::new())
        }
        Ok((sys::Transport::Fallback, _)) => (
            Check::new(
                name,
                Status::Fail,
                format!(
                    "the connection to {server} fell back to TCP: the server does not speak MPTCP \
                     or a middlebox on the path strips the MPTCP options"
                ),
            ),
            Vec::new(),
        ),
        Ok((sys::Transport::Mptcp { subflows }, stats)) => {
            let per_if = mptcp::by_interface(&stats, |ip| {
                insp.and_then(|i| i.interfaces.iface_of(ip))
                    .map(str::to_owned)
            });
            let paths: Vec<PathStats> = per_if
                .iter()
                .map(|p| PathStats {
                    iface: p.iface.clone(),
                    subflows: p.subflows,
                    bytes_sent: p.bytes_sent,
                    bytes_received: p.bytes_received,
                    rtt_us: p.min_rtt_us,
                })
                .collect();
            let missing: Vec<&str> = expect_ifaces
                .iter()
                .filter(|i| !per_if.iter().any(|p| &p.iface == *i))
                .map(String::as_str)
                .collect();
            let over = if per_if.is_empty() {
                String::new()
            } else {
                format!(
                    " over {}",
                    per_if
                        .iter()
                        .map(|p| p.iface.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let detail = format!("MPTCP to {server} with {subflows} subflow(s){over}");
            let check = if usize::from(subflows) >= expect && missing.is_empty() {
                Check::new(name, Status::Ok, detail)
            } else {
                Check::new(
                    name,
                    Status::Warn,
                    format!(
                        "{detail}; expected {expect}{}: check the endpoints and limits above, \
                         and that the server allows joins (`ip mptcp limits` on the server)",
                        if missing.is_empty() {
                            String::new()
                        } else {
                            format!(", none over {}", missing.join(", "))
                        }
                    ),
                )
            };
            (check, paths)
        }
    }
}

fn secs(v: f64, default: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or_else(|_| Duration::from_secs_f64(default))
}

/// Runs every check and returns the report.
pub fn check(args: &DoctorArgs) -> Report {
    let timeout = secs(args.timeout, 5.0);
    let wait = secs(args.wait, 2.0);
    let policy = args.paths.policy();
    let mut checks = vec![check_enabled(), check_path_manager(), check_fastopen()];
    checks.extend(check_rp_filter(&args.paths));
    let insp = paths::inspect(&args.paths.paths, policy).ok();
    checks.extend(check_paths(&args.paths, insp.as_ref()));
    checks.extend(check_handover(&args.paths));
    checks.extend(check_multipath(&PathFacts::read(
        &args.paths,
        insp.as_ref(),
    )));
    checks.push(check_blackhole());
    let mut path_stats = Vec::new();
    match args.server.as_deref() {
        None => checks.push(Check::new(
            "server",
            Status::Skip,
            "no --server given: paths to the server not checked",
        )),
        Some(server) => match resolve(server) {
            Err(e) => checks.push(Check::new("server", Status::Fail, e)),
            Ok(addr) => {
                if args.paths.paths.is_empty() {
                    checks.push(check_reach(addr, None, timeout));
                } else {
                    for p in &args.paths.paths {
                        checks.push(check_reach(addr, Some(&p.iface), timeout));
                    }
                }
                // One subflow per path that has an address of the
                // server's family (single: just one).
                let expect_ifaces: Vec<String> = match (&insp, policy) {
                    (
                        Some(i),
                        PathPolicy::Aggregate | PathPolicy::Backup | PathPolicy::Handover,
                    ) => {
                        let mut v: Vec<String> = Vec::new();
                        for e in &i.plan.endpoints {
                            if e.addr.is_ipv4() == addr.is_ipv4() && !v.contains(&e.iface) {
                                v.push(e.iface.clone());
                            }
                        }
                        v
                    }
                    _ => Vec::new(),
                };
                let expect = expect_ifaces.len().max(1);
                let (c, stats) =
                    check_mptcp(addr, expect, &expect_ifaces, wait, timeout, insp.as_ref());
                checks.push(c);
                path_stats = stats;
            }
        },
    }
    Report {
        verdict: verdict(&checks),
        checks,
        paths: path_stats,
    }
}

/// `sixpath-client doctor`: prints the report (text or `--json`) and
/// returns exit status 0 when nothing failed, 1 otherwise.
pub fn run(args: &DoctorArgs) -> ExitCode {
    let report = check(args);
    let out = if args.json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        report.to_text()
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    if report.verdict == Verdict::Broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>, verdict: Verdict) -> Report {
        Report {
            verdict,
            checks,
            paths: vec![PathStats {
                iface: "wlan0".into(),
                subflows: 1,
                bytes_sent: 1,
                bytes_received: 0,
                rtt_us: 1500,
            }],
        }
    }

    #[test]
    fn text_report_lists_problems_and_fix_commands_once() {
        let r = report(
            vec![
                Check::new("mptcp-enabled", Status::Fail, "net.mptcp.enabled = 0")
                    .fix(["sysctl -w net.mptcp.enabled=1".to_owned()]),
                Check::new("tcp-fastopen", Status::Ok, "net.ipv4.tcp_fastopen = 1"),
                Check::new("mptcp-e2e", Status::Fail, "plain TCP")
                    .fix(["sysctl -w net.mptcp.enabled=1".to_owned()]),
            ],
            Verdict::Broken,
        );
        let text = r.to_text();
        assert!(
            text.contains("  FAIL  mptcp-enabled  net.mptcp.enabled = 0\n"),
            "{text}"
        );
        assert!(
            text.contains("fix: sysctl -w net.mptcp.enabled=1"),
            "{text}"
        );
        assert!(text.contains("verdict: BROKEN (2 problem(s))"), "{text}");
        assert!(
            text.ends_with("to fix, run as root:\n  sysctl -w net.mptcp.enabled=1\n"),
            "{text}"
        );
        assert!(
            text.contains("wlan0      1 subflow(s), 1 B sent, 0 B received, rtt 1.50 ms"),
            "{text}"
        );
    }

    #[test]
    fn json_report_uses_lowercase_status_and_omits_empty_fixes() {
        let r = report(
            vec![Check::new("tcp-fastopen", Status::Ok, "fine")],
            Verdict::Ok,
        );
        let v: serde_json::Value = serde_json::to_value(&r).expect("json");
        assert_eq!(v["verdict"], "ok");
        assert_eq!(v["checks"][0]["status"], "ok");
        assert!(v["checks"][0].get("fix").is_none());
        assert_eq!(v["paths"][0]["iface"], "wlan0");
    }

    fn facts(
        paths: &[&str],
        policy: PathPolicy,
        ifaces: &[&str],
        endpoints: Option<usize>,
    ) -> PathFacts {
        PathFacts {
            paths: paths.iter().map(|&p| p.to_owned()).collect(),
            policy,
            usable_ifaces: ifaces.iter().map(|&i| i.to_owned()).collect(),
            subflow_endpoints: endpoints,
            subflow_limit: Some(2),
        }
    }

    fn multipath(f: &PathFacts) -> Check {
        check_multipath(f).expect("judged")
    }

    #[test]
    fn verdict_is_broken_over_single_path_over_degraded_over_ok() {
        let ok = Check::new("tcp-fastopen", Status::Ok, "");
        let skip = Check::new("server", Status::Skip, "");
        let warn = Check::new("rp-filter", Status::Warn, "");
        let single = Check::new(MULTIPATH, Status::Warn, "");
        let fail = Check::new("mptcp-enabled", Status::Fail, "");
        assert_eq!(verdict(&[ok.clone(), skip.clone()]), Verdict::Ok);
        assert_eq!(verdict(&[ok.clone(), warn.clone()]), Verdict::Degraded);
        assert_eq!(
            verdict(&[warn.clone(), single.clone()]),
            Verdict::SinglePath
        );
        assert_eq!(verdict(&[single.clone(), fail]), Verdict::Broken);
        // A multipath check that passed is no single path.
        let multi = Check::new(MULTIPATH, Status::Ok, "");
        assert_eq!(verdict(&[ok, multi]), Verdict::Ok);
    }

    #[test]
    fn one_path_flag_is_a_single_path_and_the_fix_names_the_other_interfaces() {
        let c = multipath(&facts(
            &["wlan0"],
            PathPolicy::Aggregate,
            &["wlan0", "lte0", "eth1"],
            Some(1),
        ));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail
                .starts_with("only one path can ever be used: only one --path (wlan0)"),
            "{}",
            c.detail
        );
        assert_eq!(
            c.fix,
            ["sixpath-client --path wlan0 --path lte0 --path eth1"]
        );
        // Nothing else to add: say so, no command.
        let c = multipath(&facts(
            &["wlan0"],
            PathPolicy::Aggregate,
            &["wlan0"],
            Some(1),
        ));
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("no other interface"), "{}", c.detail);
        assert!(c.fix.is_empty());
    }

    #[test]
    fn no_path_flag_and_no_subflow_endpoint_is_a_single_path() {
        let c = multipath(&facts(
            &[],
            PathPolicy::Aggregate,
            &["eth0", "wlan0"],
            Some(0),
        ));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("no MPTCP subflow endpoint"),
            "{}",
            c.detail
        );
        assert_eq!(c.fix, ["sixpath-client --path eth0 --path wlan0"]);
        // The system's own endpoints add subflows.
        let c = multipath(&facts(
            &[],
            PathPolicy::Aggregate,
            &["eth0", "wlan0"],
            Some(2),
        ));
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        // ... unless the kernel allows no extra subflow.
        let mut f = facts(&[], PathPolicy::Aggregate, &["eth0", "wlan0"], Some(2));
        f.subflow_limit = Some(0);
        let c = multipath(&f);
        assert_eq!(c.status, Status::Warn);
        assert_eq!(c.fix, ["ip mptcp limits set subflows 2"]);
        // Endpoints not readable (no MPTCP): mptcp-enabled reports it.
        assert_eq!(
            check_multipath(&facts(&[], PathPolicy::Aggregate, &["eth0", "wlan0"], None)),
            None
        );
    }

    #[test]
    fn one_interface_on_the_host_is_a_single_path() {
        let c = multipath(&facts(&[], PathPolicy::Aggregate, &["eth0"], Some(3)));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail
                .contains("1 network interface(s) with a usable address (eth0)"),
            "{}",
            c.detail
        );
        let c = multipath(&facts(&[], PathPolicy::Aggregate, &[], None));
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("0 network interface(s)"), "{}", c.detail);
    }

    #[test]
    fn two_paths_are_multipath_unless_the_policy_is_single() {
        for policy in [
            PathPolicy::Aggregate,
            PathPolicy::Backup,
            PathPolicy::Handover,
        ] {
            let c = multipath(&facts(
                &["wlan0", "lte0"],
                policy,
                &["wlan0", "lte0"],
                Some(0),
            ));
            assert_eq!(c.status, Status::Ok, "{policy}: {}", c.detail);
        }
        let c = multipath(&facts(
            &["wlan0", "lte0"],
            PathPolicy::Single,
            &["wlan0", "lte0"],
            Some(0),
        ));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail
                .contains("--path-policy single uses the first --path (wlan0) only"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn single_path_verdict_says_so_instead_of_ok() {
        let checks = vec![
            Check::new("tcp-fastopen", Status::Ok, "net.ipv4.tcp_fastopen = 1"),
            multipath(&facts(
                &["wlan0"],
                PathPolicy::Aggregate,
                &["wlan0", "lte0"],
                Some(1),
            )),
        ];
        let r = report(checks.clone(), verdict(&checks));
        let text = r.to_text();
        assert!(!text.contains("verdict: OK"), "{text}");
        assert!(
            text.contains("verdict: SINGLE PATH (connections work, but only one path can ever be used: see multipath above)"),
            "{text}"
        );
        assert!(
            text.ends_with("to fix, run as root:\n  sixpath-client --path wlan0 --path lte0\n"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::to_value(&r).expect("json");
        assert_eq!(v["verdict"], "single-path");
    }

    #[test]
    fn doctor_args_parse_paths_and_json() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            doctor: DoctorArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--server",
            "198.18.9.2:1080",
            "--path",
            "wlan0",
            "--path",
            "lte0=backup",
            "--json",
            "--wait",
            "0.5",
        ])
        .expect("parse");
        assert_eq!(cli.doctor.server.as_deref(), Some("198.18.9.2:1080"));
        assert_eq!(cli.doctor.paths.paths.len(), 2);
        assert!(cli.doctor.json);
        assert!((cli.doctor.wait - 0.5).abs() < f64::EPSILON);
    }
}
