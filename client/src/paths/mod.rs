//! The path manager: one MPTCP `subflow` endpoint per address of each
//! configured interface (`--path wlan0 --path lte0=backup`), so that every
//! upstream connection gets a subflow over every interface
//! (the in-kernel path manager's `subflow` endpoints: Linux
//! `Documentation/networking/mptcp.rst`, `include/uapi/linux/mptcp_pm.h`),
//! with the `laminar` flag too on Linux 6.18+
//! (`MPTCP_PM_ADDR_FLAG_LAMINAR`, `include/uapi/linux/mptcp.h`), so that
//! subflows also go to the addresses a server announces (a fleet whose
//! service address refuses joins).
//!
//! With `CAP_NET_ADMIN`, [`PathManager::start`] installs the endpoints over
//! generic netlink, raises the limits if they are too low, follows address
//! changes (roaming: an endpoint per new address, the old one removed), and
//! removes exactly what it added when dropped. Without the capability it
//! changes nothing and logs the `ip mptcp` commands an administrator can
//! run instead ([`Plan::commands`]).
//!
//! # Policies
//!
//! - `aggregate` (default): every path carries traffic; paths written
//!   `IFACE=backup` get the backup flag.
//! - `backup`: the first path not written `=backup` is the primary; every
//!   other path gets the backup flag, so the peer sends over it only when
//!   the primary fails. Changing the flag on a live endpoint sends `MP_PRIO`.
//! - `handover`: endpoints as under `backup` (the first path carries
//!   traffic, the others stand by as backup subflows), and the client
//!   judges each path's health itself ([`health`]): when the primary goes
//!   down (link event) or stops answering probes ([`probe`]), its
//!   endpoints are withdrawn, so the kernel sends `REMOVE_ADDR` over the
//!   standby subflow and the server moves to it within a round trip,
//!   instead of waiting out retransmission timeouts; new connections start
//!   on a healthy path; when the primary answers again its endpoints come
//!   back and traffic returns to it. `aggregate` acts on health the same
//!   way; `backup` leaves failover to the kernel.
//! - `single`: nothing is installed and the limits are left alone. Limits
//!   are per network namespace and shared with every other MPTCP
//!   application, so the client does not set `subflows 0`; endpoints that
//!   other software installed (`NetworkManager`, mptcpd) still add subflows.
//!   The upstream dialer binds the initial subflow to the first path.
//!
//! # Layout
//!
//! - [`netlink`]: the `mptcp_pm` generic netlink family.
//! - [`rtnetlink`]: interfaces, addresses, address-change watch.
//! - [`plan`]: what should be installed, and the `ip mptcp` equivalents.
//! - [`health`]: each path's `up`/`suspect`/`down` state machine.
//! - [`probe`]: the probes that feed it, and the kernel's MPTCP blackhole
//!   detection.
//! - `netlink`, `wire` (from `sixpath-net`): the path manager over
//!   generic netlink, netlink framing.

pub mod health;
pub mod plan;
pub mod probe;
pub mod rtnetlink;

use sixpath_net::netlink::socket;
pub use sixpath_net::netlink::{mptcp_pm as netlink, wire};

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

pub use health::{PathHealth, State, Transition};
pub use netlink::{Endpoint, EndpointFlags, Limits, MptcpPm};
pub use plan::{Action, Plan, PlannedEndpoint};
pub use probe::{ProbeContext, ProbeSettings};
pub use rtnetlink::{AddrEvent, AddrWatch, Address, Interfaces, Link, RouteSocket};

/// Longest interface name Linux accepts (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// One configured path: an interface, optionally marked backup.
/// Written `IFACE` or `IFACE=backup`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PathSpec {
    /// Interface name (`wlan0`).
    pub iface: String,
    /// Subflows over this interface are backup subflows.
    pub backup: bool,
}

impl FromStr for PathSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (iface, backup) = match s.split_once('=') {
            None => (s, false),
            Some((i, "backup")) => (i, true),
            Some((_, other)) => {
                return Err(format!(
                    "`{s}`: expected IFACE or IFACE=backup, not `={other}`"
                ));
            }
        };
        if iface.is_empty() || iface.len() > IFNAME_MAX {
            return Err(format!(
                "`{s}`: interface names are 1 to {IFNAME_MAX} bytes"
            ));
        }
        if iface
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("`{s}`: `{iface}` is not an interface name"));
        }
        Ok(Self {
            iface: iface.to_owned(),
            backup,
        })
    }
}

impl TryFrom<String> for PathSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for PathSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iface)?;
        if self.backup {
            f.write_str("=backup")?;
        }
        Ok(())
    }
}

/// How the configured paths are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PathPolicy {
    /// Use every path at once (paths written IFACE=backup only as backup).
    #[default]
    Aggregate,
    /// Use the first path; the others only when it fails (MPTCP backup
    /// flag, `MP_PRIO`), as the kernel judges it.
    Backup,
    /// Like `backup`, and the client judges path health itself (link
    /// events, probes): a failed primary's subflows are withdrawn at once
    /// and come back when it recovers.
    Handover,
    /// One path; install nothing.
    Single,
}

impl PathPolicy {
    /// The name used on the command line and in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aggregate => "aggregate",
            Self::Backup => "backup",
            Self::Handover => "handover",
            Self::Single => "single",
        }
    }
}

impl fmt::Display for PathPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path flags, for the client's command line and config file
/// (flatten into the client options; kebab-case names `path`,
/// `path-policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PathArgs {
    /// Interface to open Multipath TCP subflows over, as IFACE or
    /// IFACE=backup (a backup path carries traffic only when the others
    /// fail). Repeatable: `--path wlan0 --path lte0`. With `CAP_NET_ADMIN` the
    /// client installs an MPTCP `subflow` endpoint for each address of each
    /// interface and removes it on exit; without, it prints the `ip mptcp`
    /// commands to run.
    #[arg(long = "path", value_name = "IFACE[=backup]")]
    #[serde(rename = "path")]
    pub paths: Vec<PathSpec>,

    /// How to use the paths: `aggregate` (all at once, the default),
    /// `backup` (the first path; the others only when the kernel sees it
    /// fail), `handover` (the first path; the client judges its health
    /// and moves traffic off it within a fraction of a second when it
    /// fails, and back when it recovers) or `single` (the first path
    /// only; nothing installed).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub path_policy: Option<PathPolicy>,

    /// Milliseconds between two health probes of each path (a small UDP
    /// echo to the server's port, answered only for a client holding a
    /// SOCKS6 session; see docs/probe.md). 50 to 10000; default 250.
    /// Probes run only while connections are open, unless --probe-idle.
    #[arg(long, value_name = "MS")]
    pub probe_interval: Option<u64>,

    /// Probe the paths while no connection is open too (costs one small
    /// packet per path per interval; default: only while connections are
    /// open).
    #[arg(long)]
    pub probe_idle: bool,
}

// The command line over the config file, field by field.
sixpath_service::merge_fields!(PathArgs {
    paths,
    path_policy,
    probe_interval,
    probe_idle
});

/// Shortest and longest `--probe-interval`, milliseconds.
pub const PROBE_INTERVAL_MS: std::ops::RangeInclusive<u64> = 50..=10_000;

impl PathArgs {
    /// The policy, `aggregate` unless set.
    pub fn policy(&self) -> PathPolicy {
        self.path_policy.unwrap_or_default()
    }

    /// How the probes run; `Err` names the problem with
    /// `--probe-interval`.
    pub fn probe_settings(&self) -> Result<ProbeSettings, String> {
        let interval = match self.probe_interval {
            None => probe::DEFAULT_INTERVAL,
            Some(ms) if PROBE_INTERVAL_MS.contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(format!(
                    "{ms} ms: expected {} to {}",
                    PROBE_INTERVAL_MS.start(),
                    PROBE_INTERVAL_MS.end()
                ));
            }
        };
        Ok(ProbeSettings {
            interval,
            idle: self.probe_idle,
        })
    }
}

/// What the kernel has now, and what the configured paths need.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Interfaces and addresses.
    pub interfaces: Interfaces,
    /// Endpoints, or why they could not be read (no MPTCP in the kernel).
    pub endpoints: Result<Vec<Endpoint>, String>,
    /// Limits, when they could be read.
    pub limits: Option<Limits>,
    /// What is missing.
    pub plan: Plan,
}

/// Reads the kernel state and plans what `specs` need, changing nothing
/// (no privilege needed). For `doctor`.
pub fn inspect(specs: &[PathSpec], policy: PathPolicy) -> io::Result<Inspection> {
    let interfaces = RouteSocket::open()?.snapshot()?;
    let (endpoints, limits) = match MptcpPm::open() {
        Ok(mut pm) => (pm.endpoints().map_err(|e| e.to_string()), pm.limits().ok()),
        Err(e) => (Err(e.to_string()), None),
    };
    let plan = plan::plan(
        specs,
        policy,
        netlink::laminar_supported(),
        &interfaces.links,
        &interfaces.addresses,
        endpoints.as_deref().unwrap_or_default(),
        limits.unwrap_or(DEFAULT_LIMITS),
    );
    Ok(Inspection {
        interfaces,
        endpoints,
        limits,
        plan,
    })
}

/// The kernel's default limits (§3.1), assumed when they cannot be read.
pub const DEFAULT_LIMITS: Limits = Limits {
    subflows: 2,
    add_addr_accepted: 0,
};

/// Whether the path manager changes the kernel or only gives advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The path manager can change the kernel (`CAP_NET_ADMIN`) and keeps
    /// the endpoints in line with the paths and the policy.
    Installed,
    /// Nothing can be installed (no `CAP_NET_ADMIN`, or no MPTCP path
    /// manager in the kernel); the reason. The plan's commands were
    /// logged.
    Advisory(String),
}

/// Something the path manager changed and undoes on shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owned {
    /// An endpoint it added.
    Added(Endpoint),
    /// An existing endpoint whose backup flag it changed.
    Changed {
        ep: Endpoint,
        original: EndpointFlags,
    },
}

impl Owned {
    fn endpoint(&self) -> &Endpoint {
        match self {
            Self::Added(ep) | Self::Changed { ep, .. } => ep,
        }
    }
}

#[derive(Debug)]
struct Inner {
    specs: Vec<PathSpec>,
    policy: PathPolicy,
    route: RouteSocket,
    pm: Option<MptcpPm>,
    mode: Mode,
    plan: Plan,
    interfaces: Interfaces,
    owned: Vec<Owned>,
    /// Limits as they were before, and as set.
    limits: Option<plan::LimitsChange>,
    advised: Vec<String>,
    warned_replace: Vec<IpAddr>,
    /// Whether the kernel has `laminar` endpoints (read at start): new
    /// endpoints get it, so subflows follow addresses the server
    /// announces.
    laminar: bool,
    /// Health per configured interface.
    health: BTreeMap<String, PathHealth>,
    /// Interfaces whose probes run (a probe sent lately).
    probing: BTreeMap<String, bool>,
    /// Told the interface new server connections should start on, when
    /// it changes.
    primary_hook: Option<PrimaryHook>,
    /// The last interface given to the hook (`Told::Nothing` before the
    /// first call).
    primary_told: Told,
    /// The kernel's MPTCP blackhole count, and how often the client reset
    /// the detection.
    blackholes: u64,
    blackhole_resets: u64,
    /// The server has answered a probe: from then on, unanswered probes
    /// count against a path.
    server_answers_probes: bool,
    /// Health transitions of every path so far (read by connections for
    /// their log line).
    changes: Arc<std::sync::atomic::AtomicU64>,
}

/// What the primary hook was last told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Nothing,
    Interface(Option<String>),
}

/// Called with the interface new server connections should be bound to
/// (`None`: no binding, routing decides).
#[derive(Clone)]
pub struct PrimaryHook(pub Arc<dyn Fn(Option<String>) + Send + Sync>);

impl fmt::Debug for PrimaryHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrimaryHook")
    }
}

fn is_eperm(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

impl Inner {
    fn go_advisory(&mut self, why: &io::Error) {
        self.mode = Mode::Advisory(why.to_string());
    }

    /// Whether the policy acts on path health by withdrawing endpoints.
    fn acts_on_health(&self) -> bool {
        matches!(self.policy, PathPolicy::Aggregate | PathPolicy::Handover)
    }

    /// The paths the endpoints are planned for: all of them, or under a
    /// policy that acts on health those not `down` (all of them when every
    /// path is down: there is nothing better to move to).
    fn planned_specs(&self) -> Vec<PathSpec> {
        if !self.acts_on_health() {
            return self.specs.clone();
        }
        let alive: Vec<PathSpec> = self
            .specs
            .iter()
            .filter(|s| {
                self.health
                    .get(&s.iface)
                    .is_none_or(|h| h.state() != State::Down)
            })
            .cloned()
            .collect();
        if alive.is_empty() {
            self.specs.clone()
        } else {
            alive
        }
    }

    /// The interface new server connections should start on: under
    /// `backup` and `handover` the first path not written `=backup` that is
    /// not `down` (else any path not down, else the first); under
    /// `aggregate` none while every path is healthy (routing decides) and
    /// a healthy one while some path is down, so that no SYN goes into a
    /// dead path; under `single` the first path.
    fn primary(&self) -> Option<String> {
        let not_down = |s: &&PathSpec| {
            self.health
                .get(&s.iface)
                .is_none_or(|h| h.state() != State::Down)
        };
        let healthy = || {
            self.specs
                .iter()
                .filter(not_down)
                .find(|s| !s.backup)
                .or_else(|| self.specs.iter().find(not_down))
        };
        match self.policy {
            PathPolicy::Aggregate => {
                if self.specs.iter().all(|s| not_down(&s)) {
                    None
                } else {
                    healthy().map(|s| s.iface.clone())
                }
            }
            PathPolicy::Backup | PathPolicy::Handover => healthy()
                .or_else(|| self.specs.first())
                .map(|s| s.iface.clone()),
            PathPolicy::Single => self
                .specs
                .iter()
                .find(|s| !s.backup)
                .or(self.specs.first())
                .map(|s| s.iface.clone()),
        }
    }

    /// Tells the hook the primary interface if it changed.
    fn tell_primary(&mut self) {
        let now = self.primary();
        if self.primary_told == Told::Interface(now.clone()) {
            return;
        }
        if let Some(hook) = &self.primary_hook {
            if self.primary_told != Told::Nothing {
                tracing::info!(
                    interface = now.as_deref().unwrap_or("(routing)"),
                    "new server connections start on this path"
                );
            }
            (hook.0)(now.clone());
            self.primary_told = Told::Interface(now);
        }
    }

    /// The first usable address of `iface`, for a probe socket that cannot
    /// be bound to the interface.
    fn source_of(&self, iface: &str) -> Option<IpAddr> {
        let link = self.interfaces.links.iter().find(|l| l.name == iface)?;
        self.interfaces
            .addresses
            .iter()
            .find(|a| a.ifindex == link.index && a.usable())
            .map(|a| a.addr)
    }

    fn set_probing(&mut self, iface: &str, on: bool) {
        self.probing.insert(iface.to_owned(), on);
    }

    /// Feeds each path's link facts (carrier, a usable address) from
    /// `self.interfaces` into its health; returns the transitions.
    fn update_links(&mut self, now: std::time::Instant) -> Vec<(String, Transition)> {
        let mut out = Vec::new();
        for spec in &self.specs {
            let link = self.interfaces.links.iter().find(|l| l.name == spec.iface);
            let present = link.is_some_and(|l| l.carrier);
            let address = link.is_some_and(|l| {
                self.interfaces
                    .addresses
                    .iter()
                    .any(|a| a.ifindex == l.index && a.usable())
            });
            // A returning link waits for probes to confirm it only where
            // the server answers them.
            let probing = self.server_answers_probes;
            let h = self
                .health
                .entry(spec.iface.clone())
                .or_insert_with(|| PathHealth::new(present && address, now));
            if let Some(t) = h.on_link(present, address, probing, now) {
                out.push((spec.iface.clone(), t));
            }
        }
        out
    }

    /// When every path whose link is there has been judged down by its
    /// probes, the server is the likelier culprit (it restarted, or forgot
    /// the session the probes prove): probes are set aside until the server
    /// answers one again, and those paths are `up` again.
    fn check_all_lost(&mut self) {
        let all = self
            .health
            .values()
            .filter(|h| h.link())
            .all(|h| h.state() == State::Down);
        if !all || !self.server_answers_probes {
            return;
        }
        self.server_answers_probes = false;
        tracing::warn!(
            "no path's probes are answered any more: the server restarted or forgot the session, not every path at once; \
             path health follows link events until the server answers again"
        );
        let now = std::time::Instant::now();
        let ifaces: Vec<String> = self.health.keys().cloned().collect();
        for iface in ifaces {
            if let Some(t) = self
                .health
                .get_mut(&iface)
                .and_then(|h| h.on_probes_unavailable(now))
            {
                self.on_transition(&iface, t);
            }
        }
    }

    /// Logs a transition and acts on it: the endpoints follow the paths
    /// that are not `down`, and new connections start on a healthy path.
    fn on_transition(&mut self, iface: &str, t: Transition) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log_transition(iface, &t);
        let reshapes = matches!(t.to, State::Down) || matches!(t.from, State::Down);
        if reshapes
            && self.acts_on_health()
            && !self.specs.is_empty()
            && let Err(e) = self.apply_plan()
        {
            tracing::warn!("path manager: {e}");
        }
        self.tell_primary();
    }

    /// Brings the kernel in line with the paths (or, in advisory mode,
    /// logs what to run). Idempotent; run at start and on every address
    /// change.
    fn reconcile(&mut self) -> io::Result<()> {
        self.interfaces = self.route.snapshot()?;
        let now = std::time::Instant::now();
        let transitions = self.update_links(now);
        for (iface, t) in &transitions {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log_transition(iface, t);
        }
        self.apply_plan()?;
        self.tell_primary();
        Ok(())
    }

    /// Plans against the kernel's endpoints and limits for the paths that
    /// are not down, and applies the plan (or, in advisory mode, logs it).
    fn apply_plan(&mut self) -> io::Result<()> {
        let (endpoints, limits) = match &mut self.pm {
            Some(pm) => (pm.endpoints()?, pm.limits()?),
            None => (Vec::new(), DEFAULT_LIMITS),
        };
        let specs = self.planned_specs();
        let plan = plan::plan(
            &specs,
            self.policy,
            self.laminar,
            &self.interfaces.links,
            &self.interfaces.addresses,
            &endpoints,
            limits,
        );
        if plan.unusable != self.plan.unusable {
            for u in &plan.unusable {
                tracing::warn!("path {u}");
            }
        }
        self.plan = plan.clone();
        if self.mode == Mode::Installed
            && let Err(e) = self.apply(&plan, &endpoints)
        {
            if !is_eperm(&e) {
                return Err(e);
            }
            self.go_advisory(&e);
        }
        if let Mode::Advisory(why) = &self.mode {
            let commands = plan.commands();
            if !commands.is_empty() && commands != self.advised {
                tracing::warn!(
                    "cannot install MPTCP endpoints ({why}); for subflows over every path run as root:\n  {}",
                    commands.join("\n  ")
                );
            }
            self.advised = commands;
        }
        Ok(())
    }

    fn apply(&mut self, plan: &Plan, endpoints: &[Endpoint]) -> io::Result<()> {
        let Some(pm) = self.pm.as_mut() else {
            return Ok(());
        };
        // Endpoints of ours whose address went away (roaming) go first.
        let mut keep = Vec::new();
        for owned in std::mem::take(&mut self.owned) {
            let ep = *owned.endpoint();
            if plan.endpoints.iter().any(|p| p.addr == ep.addr) {
                keep.push(owned);
                continue;
            }
            let still = endpoints.iter().any(|e| e.id == ep.id && e.addr == ep.addr);
            if still {
                match owned {
                    Owned::Added(_) => match pm.delete_endpoint(ep.id) {
                        Ok(()) => tracing::info!(
                            "removed MPTCP endpoint {} id {} (address gone or path down)",
                            ep.addr,
                            ep.id
                        ),
                        Err(e) => tracing::warn!("{e}"),
                    },
                    Owned::Changed { original, .. } => {
                        if let Err(e) = pm.set_flags(ep.id, original) {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
        }
        self.owned = keep;

        if let Some(change) = plan.limits {
            match pm.set_limits(change.to) {
                Ok(()) => {
                    tracing::info!(
                        "MPTCP limits raised to {} (were {})",
                        change.to,
                        change.from
                    );
                    let from = self.limits.map_or(change.from, |l| l.from);
                    self.limits = Some(plan::LimitsChange {
                        from,
                        to: change.to,
                    });
                }
                Err(e) if is_eperm(&e) => return Err(e),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let mut added = false;
        for e in &plan.endpoints {
            match e.action {
                Action::Add => match pm.add_endpoint(&e.endpoint()) {
                    Ok(()) => added = true,
                    // Someone else added it since the dump; theirs.
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(err) if is_eperm(&err) => return Err(err),
                    // One bad address (say IPv6 without CONFIG_MPTCP_IPV6)
                    // must not cost the others.
                    Err(err) => tracing::warn!("{err}"),
                },
                Action::SetBackup { id, from } => {
                    match pm.set_flags(id, e.flags()) {
                        Ok(()) => {}
                        Err(err) if is_eperm(&err) => return Err(err),
                        Err(err) => {
                            tracing::warn!("{err}");
                            continue;
                        }
                    }
                    tracing::info!(
                        "MPTCP endpoint {} id {id}: {}",
                        e.addr,
                        if e.backup { "backup" } else { "nobackup" }
                    );
                    let ours = self.owned.iter().any(|o| o.endpoint().id == id);
                    if !ours {
                        let ep = Endpoint {
                            id,
                            addr: e.addr,
                            port: 0,
                            flags: e.flags(),
                            ifindex: i32::try_from(e.ifindex).unwrap_or(0),
                        };
                        self.owned.push(Owned::Changed { ep, original: from });
                    }
                }
                Action::Replace { id, from } => {
                    if !self.warned_replace.contains(&e.addr) {
                        self.warned_replace.push(e.addr);
                        tracing::warn!(
                            "MPTCP endpoint id {id} for {} has flags `{from}` and no `subflow`; \
                             it is not ours, so it stays; to use {} run: ip mptcp endpoint delete id {id}",
                            e.addr,
                            e.iface
                        );
                    }
                }
                Action::Present { .. } => {}
            }
        }
        if added {
            // The kernel chose the ids; learn them.
            for ep in pm.endpoints()? {
                let planned = plan
                    .endpoints
                    .iter()
                    .any(|p| p.action == Action::Add && p.addr == ep.addr);
                let known = self.owned.iter().any(|o| o.endpoint().id == ep.id);
                if planned && !known && endpoints.iter().all(|old| old.addr != ep.addr) {
                    let dev = plan
                        .endpoints
                        .iter()
                        .find(|p| p.addr == ep.addr)
                        .map_or("?", |p| p.iface.as_str());
                    tracing::info!(
                        "installed MPTCP endpoint {} dev {dev} {} (id {})",
                        ep.addr,
                        ep.flags,
                        ep.id
                    );
                    self.owned.push(Owned::Added(ep));
                }
            }
        }
        Ok(())
    }

    /// Undoes what this path manager changed, leaving alone anything
    /// changed since by someone else.
    fn cleanup(&mut self) {
        let Some(pm) = self.pm.as_mut() else {
            return;
        };
        for owned in std::mem::take(&mut self.owned) {
            let ep = *owned.endpoint();
            match pm.endpoint(ep.id) {
                Ok(Some(now)) if now.addr == ep.addr => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            }
            let res = match owned {
                Owned::Added(_) => pm.delete_endpoint(ep.id),
                Owned::Changed { original, .. } => pm.set_flags(ep.id, original),
            };
            match res {
                Ok(()) => tracing::debug!("removed MPTCP endpoint {} id {}", ep.addr, ep.id),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if let Some(change) = self.limits.take()
            && pm.limits().ok() == Some(change.to)
            && let Err(e) = pm.set_limits(change.from)
        {
            tracing::warn!("{e}");
        }
    }
}

/// Keeps MPTCP endpoints installed for the configured paths while it
/// lives. See the module documentation.
#[derive(Debug)]
pub struct PathManager {
    inner: Arc<Mutex<Inner>>,
    task: Option<tokio::task::JoinHandle<()>>,
    health_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PathManager {
    /// Installs endpoints for `specs` under `policy` in the caller's
    /// network namespace and follows address changes. Without
    /// `CAP_NET_ADMIN` (or without MPTCP in the kernel) it changes nothing,
    /// logs the commands to run, and still succeeds ([`Mode::Advisory`]).
    /// Must be called within a tokio runtime. Fails only when the
    /// interfaces cannot be read at all.
    pub fn start(specs: Vec<PathSpec>, policy: PathPolicy) -> io::Result<Self> {
        let active = !specs.is_empty();
        let route = RouteSocket::open()?;
        let watch = if active {
            Some(AddrWatch::open()?)
        } else {
            None
        };
        let (pm, mode) = if active {
            match MptcpPm::open() {
                Ok(pm) => (Some(pm), Mode::Installed),
                Err(e) => {
                    let why = format!("no MPTCP path manager: {e}");
                    (None, Mode::Advisory(why))
                }
            }
        } else {
            (None, Mode::Advisory("no paths configured".to_owned()))
        };
        let mut inner = Inner {
            specs,
            policy,
            route,
            pm,
            mode,
            plan: Plan::default(),
            interfaces: Interfaces::default(),
            owned: Vec::new(),
            limits: None,
            advised: Vec::new(),
            warned_replace: Vec::new(),
            laminar: netlink::laminar_supported(),
            health: BTreeMap::new(),
            probing: BTreeMap::new(),
            primary_hook: None,
            primary_told: Told::Nothing,
            blackholes: probe::mptcp_blackholes().unwrap_or(0),
            blackhole_resets: 0,
            server_answers_probes: false,
            changes: Arc::default(),
        };
        if active {
            if inner.laminar {
                tracing::info!(
                    "MPTCP endpoints get the `laminar` flag: subflows also go to the addresses the server announces"
                );
            } else {
                tracing::warn!(
                    "this kernel has no `laminar` MPTCP endpoints (Linux 6.18+): subflows go only to the server's own address, \
                     so a server that announces another address (a fleet behind a balancer) gets no extra subflows"
                );
            }
        }
        if active && let Err(e) = inner.reconcile() {
            inner.cleanup();
            return Err(e);
        }
        let inner = Arc::new(Mutex::new(inner));
        let task = watch.map(|watch| tokio::spawn(follow(watch, Arc::downgrade(&inner))));
        Ok(Self {
            inner,
            task,
            health_tasks: Vec::new(),
        })
    }

    /// Starts judging path health with probes (see [`probe`]): one prober
    /// per path (silent while the policy is `single`), and the watch on the
    /// kernel's MPTCP blackhole detection.
    /// `hook` is told the interface new server connections should start
    /// on, now and whenever it changes.
    pub fn start_health<C: ProbeContext>(
        &mut self,
        ctx: &Arc<C>,
        settings: ProbeSettings,
        hook: PrimaryHook,
    ) {
        let ifaces: Vec<String> = {
            let mut g = self.lock();
            g.primary_hook = Some(hook);
            g.primary_told = Told::Nothing;
            g.tell_primary();
            g.specs.iter().map(|s| s.iface.clone()).collect()
        };
        // Probers run under every policy and stay silent under `single`, so
        // a switch away from it at run time starts probing.
        for (i, iface) in ifaces.into_iter().enumerate() {
            self.health_tasks.push(tokio::spawn(probe::run(
                iface,
                u16::try_from(i).unwrap_or(u16::MAX),
                settings,
                Arc::clone(ctx),
                Arc::downgrade(&self.inner),
            )));
        }
        self.health_tasks.push(tokio::spawn(probe::watch_blackhole(
            Duration::from_secs(1),
            Arc::downgrade(&self.inner),
        )));
    }

    /// Each path's health, in the order of the paths.
    pub fn health(&self) -> Vec<(String, PathHealth, bool)> {
        let g = self.lock();
        g.specs
            .iter()
            .filter_map(|s| {
                g.health.get(&s.iface).map(|h| {
                    let probing = g.probing.get(&s.iface).copied().unwrap_or(false);
                    (s.iface.clone(), h.clone(), probing)
                })
            })
            .collect()
    }

    /// How often the kernel's MPTCP blackhole detection fired, and how
    /// often the client reset it.
    pub fn blackholes(&self) -> (u64, u64) {
        let g = self.lock();
        (g.blackholes, g.blackhole_resets)
    }

    /// A counter of every path's health transitions, for connections to
    /// tell how many happened during their life.
    pub fn change_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.lock().changes)
    }

    /// The policy in force.
    pub fn policy(&self) -> PathPolicy {
        self.lock().policy
    }

    /// Switches to `policy` at run time: endpoints are added, removed or
    /// get their backup flag changed accordingly (a flag change sends
    /// `MP_PRIO` on live subflows, so open connections follow at once).
    pub fn set_policy(&self, policy: PathPolicy) -> io::Result<()> {
        let mut inner = self.lock();
        inner.policy = policy;
        if inner.specs.is_empty() {
            return Ok(());
        }
        inner.reconcile()?;
        inner.tell_primary();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installed, or advisory and why.
    pub fn mode(&self) -> Mode {
        self.lock().mode.clone()
    }

    /// The plan computed at the last check, from the kernel state found
    /// then (before this manager acted on it): in advisory mode,
    /// [`Plan::commands`] are what an administrator should run.
    pub fn plan(&self) -> Plan {
        self.lock().plan.clone()
    }

    /// The endpoints this path manager added or changed (with their
    /// kernel ids), which it undoes on shutdown.
    pub fn installed(&self) -> Vec<Endpoint> {
        self.lock().owned.iter().map(|o| *o.endpoint()).collect()
    }

    /// The interface the initial subflow should be bound to: under
    /// `backup`, `handover` and `single` the first path not marked backup
    /// (skipping paths judged `down`, except under `single`); under
    /// `aggregate` none while no path is down, else a healthy one.
    pub fn primary(&self) -> Option<String> {
        self.lock().primary()
    }

    /// The interfaces and addresses as of the last check (kept current by
    /// the address watch): `iface_of` names the interface of a subflow's
    /// local address for per-interface statistics.
    pub fn interfaces(&self) -> Interfaces {
        self.lock().interfaces.clone()
    }

    /// Checks the kernel state again now (as on an address change).
    pub fn refresh(&self) -> io::Result<()> {
        self.lock().reconcile()
    }

    /// Stops following address changes and removes what was installed.
    /// Dropping the manager does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for task in self.health_tasks.drain(..) {
            task.abort();
        }
        self.lock().cleanup();
    }
}

impl Drop for PathManager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_transition(iface: &str, t: &Transition) {
    let after_ms = u64::try_from(t.after.as_millis()).unwrap_or(u64::MAX);
    match t.to {
        State::Down => tracing::warn!(
            path = iface,
            from = t.from.name(),
            to = t.to.name(),
            cause = %t.cause,
            silent_ms = after_ms,
            "path down"
        ),
        State::Up if t.from == State::Down || t.from == State::Suspect => tracing::info!(
            path = iface,
            from = t.from.name(),
            to = t.to.name(),
            cause = %t.cause,
            was_out_ms = after_ms,
            "path up"
        ),
        _ => tracing::info!(
            path = iface,
            from = t.from.name(),
            to = t.to.name(),
            cause = %t.cause,
            "path suspect"
        ),
    }
}

/// Follows address changes until the manager is gone.
async fn follow(mut watch: AddrWatch, inner: std::sync::Weak<Mutex<Inner>>) {
    loop {
        let events = watch.next().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match events {
            Ok(events) => {
                tracing::debug!("address change: {events:?}");
                let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = g.reconcile() {
                    tracing::warn!("path manager: {e}");
                }
            }
            Err(e) => {
                drop(inner);
                tracing::warn!("address watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_spec_parses_iface_and_backup() {
        assert_eq!(
            "wlan0".parse::<PathSpec>(),
            Ok(PathSpec {
                iface: "wlan0".into(),
                backup: false
            })
        );
        let s: PathSpec = "lte0=backup".parse().expect("spec");
        assert!(s.backup);
        assert_eq!(s.to_string(), "lte0=backup");
    }

    #[test]
    fn path_spec_rejects_bad_names_and_suffixes() {
        for bad in [
            "",
            "=backup",
            "wlan0=primary",
            "a/b",
            "sixteen-chars-xx",
            "wl an",
        ] {
            assert!(bad.parse::<PathSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn path_args_deserialize_with_kebab_case_names() {
        let a: PathArgs =
            serde_json::from_str(r#"{"path": ["wlan0", "lte0=backup"], "path-policy": "backup"}"#)
                .expect("json");
        assert_eq!(a.paths.len(), 2);
        assert!(a.paths[1].backup);
        assert_eq!(a.policy(), PathPolicy::Backup);
        let err =
            serde_json::from_str::<PathArgs>(r#"{"path": ["wlan0=fast"]}"#).expect_err("bad spec");
        assert!(err.to_string().contains("IFACE=backup"), "{err}");
    }

    #[test]
    fn path_args_command_line_overrides_file() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            paths: PathArgs,
        }
        let cli =
            Cli::try_parse_from(["x", "--path", "wlan0", "--path", "lte0=backup"]).expect("parse");
        let file = PathArgs {
            paths: vec!["eth0".parse().expect("spec")],
            path_policy: Some(PathPolicy::Single),
            ..PathArgs::default()
        };
        let merged = cli.paths.or(file);
        assert_eq!(merged.paths.len(), 2);
        assert_eq!(merged.policy(), PathPolicy::Single);
        assert!(
            Cli::try_parse_from(["x", "--path-policy", "fastest"]).is_err(),
            "unknown policy"
        );
    }
}
