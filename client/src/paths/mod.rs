//! The path manager: one MPTCP `subflow` endpoint per address of each
//! configured interface (`--path wlan0 --path lte0=backup`), so that every
//! upstream connection gets a subflow over every interface
//! (`shared/DESIGN.md` decision 2, `shared/specs/mptcp-linux.md` §3).
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
//! - `wire`, `socket`: netlink framing and the socket.

pub mod netlink;
pub mod plan;
pub mod rtnetlink;
mod socket;
pub mod wire;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

pub use netlink::{Endpoint, EndpointFlags, Limits, MptcpPm};
pub use plan::{Action, Plan, PlannedEndpoint};
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
    /// flag, `MP_PRIO`).
    Backup,
    /// One path; install nothing.
    Single,
}

impl PathPolicy {
    /// The name used on the command line and in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aggregate => "aggregate",
            Self::Backup => "backup",
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
    /// `backup` (the first path; the others only when it fails) or
    /// `single` (the first path only; nothing installed).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub path_policy: Option<PathPolicy>,
}

// The command line over the config file, field by field.
sixpath_service::merge_fields!(PathArgs { paths, path_policy });

impl PathArgs {
    /// The policy, `aggregate` unless set.
    pub fn policy(&self) -> PathPolicy {
        self.path_policy.unwrap_or_default()
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
}

fn is_eperm(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

impl Inner {
    fn go_advisory(&mut self, why: &io::Error) {
        self.mode = Mode::Advisory(why.to_string());
    }

    /// Brings the kernel in line with the paths (or, in advisory mode,
    /// logs what to run). Idempotent; run at start and on every address
    /// change.
    fn reconcile(&mut self) -> io::Result<()> {
        let interfaces = self.route.snapshot()?;
        let (endpoints, limits) = match &mut self.pm {
            Some(pm) => (pm.endpoints()?, pm.limits()?),
            None => (Vec::new(), DEFAULT_LIMITS),
        };
        let plan = plan::plan(
            &self.specs,
            self.policy,
            &interfaces.links,
            &interfaces.addresses,
            &endpoints,
            limits,
        );
        self.interfaces = interfaces;
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
                            "removed MPTCP endpoint {} id {} (address gone)",
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
        };
        if active && let Err(e) = inner.reconcile() {
            inner.cleanup();
            return Err(e);
        }
        let inner = Arc::new(Mutex::new(inner));
        let task = watch.map(|watch| tokio::spawn(follow(watch, Arc::downgrade(&inner))));
        Ok(Self { inner, task })
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
        inner.reconcile()
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

    /// The interface the initial subflow should be bound to (`backup` and
    /// `single` policies): the first path not marked backup (or the first
    /// path). `None` under `aggregate`.
    pub fn primary(&self) -> Option<String> {
        let inner = self.lock();
        match inner.policy {
            PathPolicy::Aggregate => None,
            PathPolicy::Backup | PathPolicy::Single => inner
                .specs
                .iter()
                .find(|s| !s.backup)
                .or(inner.specs.first())
                .map(|s| s.iface.clone()),
        }
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
        self.lock().cleanup();
    }
}

impl Drop for PathManager {
    fn drop(&mut self) {
        self.stop();
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
