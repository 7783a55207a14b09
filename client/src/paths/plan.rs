//! What the path manager wants the kernel to have, computed from the
//! configured paths and the kernel's current state, and the `ip mptcp`
//! commands that would make it so. Pure: no sockets, so the same plan
//! drives the installer, the "no `CAP_NET_ADMIN`" advice and `doctor`.

use std::fmt;
use std::net::IpAddr;

use super::netlink::{Endpoint, EndpointFlags, Limits};
use super::rtnetlink::{Address, Link};
use super::{PathPolicy, PathSpec};

/// The in-kernel path manager accepts at most 8 for either limit
/// (`MPTCP_PM_ADDR_MAX`).
pub const MAX_LIMIT: u32 = 8;

/// What has to happen for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add it.
    Add,
    /// An endpoint for the address exists with the right flags.
    Present {
        /// Its id.
        id: u8,
    },
    /// An endpoint exists but its backup flag differs: change it.
    SetBackup {
        /// Its id.
        id: u8,
        /// Its current flags.
        from: EndpointFlags,
    },
    /// An endpoint for the address exists without the `subflow` flag (a
    /// `signal`-only endpoint, say); the kernel cannot add the flag in
    /// place, so it has to be deleted and added again.
    Replace {
        /// Its id.
        id: u8,
        /// Its current flags.
        from: EndpointFlags,
    },
}

/// One endpoint the configured paths need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEndpoint {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// The interface's address.
    pub addr: IpAddr,
    /// Whether subflows from here are backup subflows.
    pub backup: bool,
    /// Whether the endpoint also gets the `laminar` flag: subflows towards
    /// the addresses the server announces (`ADD_ADDR`), not only towards
    /// the address the connection started on.
    pub laminar: bool,
    /// What has to happen.
    pub action: Action,
}

impl PlannedEndpoint {
    /// The flags the endpoint should have.
    pub fn flags(&self) -> EndpointFlags {
        EndpointFlags::SUBFLOW
            .with(EndpointFlags::LAMINAR, self.laminar)
            .with(EndpointFlags::BACKUP, self.backup)
    }

    /// The endpoint to send in `ADD_ADDR` (the kernel picks the id).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            id: 0,
            addr: self.addr,
            port: 0,
            flags: self.flags(),
            ifindex: i32::try_from(self.ifindex).unwrap_or(0),
        }
    }

    fn add_command(&self) -> String {
        format!(
            "ip mptcp endpoint add {} dev {} {}",
            self.addr,
            self.iface,
            self.flags()
        )
    }
}

/// A change of the per-namespace limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsChange {
    /// The limits now.
    pub from: Limits,
    /// The limits wanted.
    pub to: Limits,
}

/// A configured path the plan could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// No interface of that name.
    NoSuchInterface(String),
    /// The interface is down (its endpoints are still planned).
    Down(String),
    /// The interface has no usable (global) address.
    NoAddress(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchInterface(i) => write!(f, "{i}: no such interface"),
            Self::Down(i) => write!(f, "{i}: interface is down"),
            Self::NoAddress(i) => write!(f, "{i}: no global IPv4 or IPv6 address"),
        }
    }
}

/// The endpoints and limits the configured paths need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// One entry per usable address of each configured interface.
    pub endpoints: Vec<PlannedEndpoint>,
    /// The limits to raise, if they are too low.
    pub limits: Option<LimitsChange>,
    /// Configured paths that cannot be used now.
    pub unusable: Vec<Unusable>,
}

impl Plan {
    /// Whether the kernel already has everything (nothing to run).
    pub fn is_satisfied(&self) -> bool {
        self.limits.is_none()
            && self
                .endpoints
                .iter()
                .all(|e| matches!(e.action, Action::Present { .. }))
    }

    /// The `ip mptcp` commands that carry the plan out, in order (limits
    /// first). Empty when [`Plan::is_satisfied`].
    pub fn commands(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(change) = self.limits {
            out.push(format!("ip mptcp limits set {}", change.to));
        }
        for e in &self.endpoints {
            match e.action {
                Action::Add => out.push(e.add_command()),
                Action::Present { .. } => {}
                Action::SetBackup { id, .. } => out.push(format!(
                    "ip mptcp endpoint change id {id} {}",
                    if e.backup { "backup" } else { "nobackup" }
                )),
                Action::Replace { id, .. } => {
                    out.push(format!("ip mptcp endpoint delete id {id}"));
                    out.push(e.add_command());
                }
            }
        }
        out
    }
}

/// Which configured paths are backup paths under `policy`:
///
/// - `aggregate`: only those written `IFACE=backup`;
/// - `backup` and `handover`: every path but the first one not written
///   `=backup` (the primary, normally Wi-Fi);
/// - `single`: not applicable (nothing is installed).
pub fn backup_flags(specs: &[PathSpec], policy: PathPolicy) -> Vec<bool> {
    match policy {
        PathPolicy::Aggregate | PathPolicy::Single => specs.iter().map(|s| s.backup).collect(),
        PathPolicy::Backup | PathPolicy::Handover => {
            let primary = specs.iter().position(|s| !s.backup);
            (0..specs.len()).map(|i| Some(i) != primary).collect()
        }
    }
}

/// The limits the paths need: `subflows` at least the number of paths
/// (one extra subflow per other interface, plus one in case the initial
/// subflow leaves by an interface that is not configured), and
/// `add_addr_accepted` at least 1 so a server that announces its own
/// address (`ADD_ADDR`, needed behind a load balancer) can be followed.
/// Limits are only raised, never lowered: other applications share them.
pub fn wanted_limits(paths: usize, current: Limits) -> Limits {
    let paths = u32::try_from(paths).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    Limits {
        subflows: current.subflows.max(paths),
        add_addr_accepted: current.add_addr_accepted.max(1),
    }
}

/// Computes the plan for `specs` under `policy`, given the interfaces,
/// addresses, endpoints and limits the kernel has now. `single` plans
/// nothing. With `laminar` (the kernel has `laminar` endpoints, see
/// [`sixpath_net::netlink::mptcp_pm::laminar_supported`]) new endpoints
/// get `subflow laminar`: a subflow to the server's address (when it
/// accepts joins there) and one to each address it announces. An existing
/// `subflow` endpoint is kept as it is.
pub fn plan(
    specs: &[PathSpec],
    policy: PathPolicy,
    laminar: bool,
    links: &[Link],
    addrs: &[Address],
    endpoints: &[Endpoint],
    limits: Limits,
) -> Plan {
    let mut out = Plan::default();
    if policy == PathPolicy::Single || specs.is_empty() {
        return out;
    }
    let backups = backup_flags(specs, policy);
    for (spec, backup) in specs.iter().zip(backups) {
        let Some(link) = links.iter().find(|l| l.name == spec.iface) else {
            out.unusable
                .push(Unusable::NoSuchInterface(spec.iface.clone()));
            continue;
        };
        // A down interface keeps its endpoints: IPv4 addresses survive
        // down/up without an address event, and an endpoint on a down
        // link is harmless (its subflows fail until the link is back).
        if !link.up {
            out.unusable.push(Unusable::Down(spec.iface.clone()));
        }
        let mut any = false;
        for a in addrs
            .iter()
            .filter(|a| a.ifindex == link.index && a.usable())
        {
            if out.endpoints.iter().any(|e| e.addr == a.addr) {
                continue;
            }
            any = true;
            let wanted = EndpointFlags::SUBFLOW.with(EndpointFlags::BACKUP, backup);
            let action = match endpoints.iter().find(|e| e.addr == a.addr && e.port == 0) {
                None => Action::Add,
                Some(e) if !e.flags.contains(EndpointFlags::SUBFLOW) => Action::Replace {
                    id: e.id,
                    from: e.flags,
                },
                Some(e) if e.flags.contains(EndpointFlags::BACKUP) != backup => Action::SetBackup {
                    id: e.id,
                    from: e.flags,
                },
                Some(e) => {
                    debug_assert!(e.flags.contains(wanted.with(EndpointFlags::LAMINAR, false)));
                    Action::Present { id: e.id }
                }
            };
            out.endpoints.push(PlannedEndpoint {
                iface: spec.iface.clone(),
                ifindex: link.index,
                addr: a.addr,
                backup,
                laminar,
                action,
            });
        }
        if !any && link.up {
            out.unusable.push(Unusable::NoAddress(spec.iface.clone()));
        }
    }
    // Size the limits for every configured path, usable now or not, so a
    // path that comes back does not need another change.
    let to = wanted_limits(specs.len(), limits);
    if to != limits {
        out.limits = Some(LimitsChange { from: limits, to });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PathSpec {
        s.parse().expect("spec")
    }

    fn links() -> Vec<Link> {
        vec![
            Link {
                index: 1,
                name: "lo".into(),
                up: true,
                carrier: true,
                loopback: true,
            },
            Link {
                index: 2,
                name: "wlan0".into(),
                up: true,
                carrier: true,
                loopback: false,
            },
            Link {
                index: 3,
                name: "lte0".into(),
                up: true,
                carrier: true,
                loopback: false,
            },
            Link {
                index: 4,
                name: "eth9".into(),
                up: false,
                carrier: false,
                loopback: false,
            },
        ]
    }

    fn addr(ifindex: u32, a: &str) -> Address {
        Address {
            ifindex,
            addr: a.parse().expect("ip"),
            prefix_len: 24,
            scope: 0,
            flags: 0x80,
        }
    }

    fn addrs() -> Vec<Address> {
        vec![
            addr(1, "127.0.0.1"),
            addr(2, "198.18.1.2"),
            addr(3, "198.18.2.2"),
        ]
    }

    const DEFAULT_LIMITS: Limits = Limits {
        subflows: 2,
        add_addr_accepted: 0,
    };

    #[test]
    fn aggregate_plan_renders_ip_mptcp_commands() {
        let specs = [spec("wlan0"), spec("lte0")];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            false,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(
            p.commands(),
            [
                "ip mptcp limits set subflows 2 add_addr_accepted 1",
                "ip mptcp endpoint add 198.18.1.2 dev wlan0 subflow",
                "ip mptcp endpoint add 198.18.2.2 dev lte0 subflow",
            ]
        );
        assert!(!p.is_satisfied());
        assert!(p.unusable.is_empty());
    }

    #[test]
    fn with_laminar_endpoints_follow_announced_addresses_and_existing_ones_stay() {
        let specs = [spec("wlan0"), spec("lte0=backup")];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            true,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(
            p.commands()[1..],
            [
                "ip mptcp endpoint add 198.18.1.2 dev wlan0 subflow laminar",
                "ip mptcp endpoint add 198.18.2.2 dev lte0 subflow backup laminar",
            ]
        );
        assert_eq!(
            p.endpoints[1].endpoint().flags,
            EndpointFlags(2 | 4 | 32),
            "MPTCP_PM_ADDR_FLAG_SUBFLOW | BACKUP | LAMINAR"
        );
        let existing = [Endpoint {
            id: 7,
            addr: "198.18.1.2".parse().expect("ip"),
            port: 0,
            flags: EndpointFlags::SUBFLOW,
            ifindex: 2,
        }];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            true,
            &links(),
            &addrs(),
            &existing,
            DEFAULT_LIMITS,
        );
        assert_eq!(p.endpoints[0].action, Action::Present { id: 7 });
    }

    #[test]
    fn backup_spec_and_backup_policy_set_the_backup_flag() {
        let specs = [spec("wlan0"), spec("lte0=backup")];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            false,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(
            p.commands()[2],
            "ip mptcp endpoint add 198.18.2.2 dev lte0 subflow backup"
        );
        let specs = [spec("wlan0"), spec("lte0")];
        let p = plan(
            &specs,
            PathPolicy::Backup,
            false,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        let backups: Vec<_> = p.endpoints.iter().map(|e| e.backup).collect();
        assert_eq!(backups, [false, true], "first path is the primary");
        // A primary written =backup is skipped: the first plain path leads.
        let specs = [spec("wlan0=backup"), spec("lte0")];
        assert_eq!(backup_flags(&specs, PathPolicy::Backup), [true, false]);
    }

    #[test]
    fn existing_endpoints_are_kept_changed_or_replaced() {
        let existing = [
            Endpoint {
                id: 5,
                addr: "198.18.1.2".parse().expect("ip"),
                port: 0,
                flags: EndpointFlags::SUBFLOW,
                ifindex: 2,
            },
            Endpoint {
                id: 6,
                addr: "198.18.2.2".parse().expect("ip"),
                port: 0,
                flags: EndpointFlags::SIGNAL,
                ifindex: 3,
            },
        ];
        let limits = Limits {
            subflows: 4,
            add_addr_accepted: 2,
        };
        let specs = [spec("wlan0=backup"), spec("lte0")];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            false,
            &links(),
            &addrs(),
            &existing,
            limits,
        );
        assert_eq!(p.limits, None, "limits high enough are not lowered");
        assert_eq!(
            p.commands(),
            [
                "ip mptcp endpoint change id 5 backup",
                "ip mptcp endpoint delete id 6",
                "ip mptcp endpoint add 198.18.2.2 dev lte0 subflow",
            ]
        );
        let specs = [spec("wlan0")];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            false,
            &links(),
            &addrs(),
            &existing,
            limits,
        );
        assert!(p.is_satisfied());
        assert!(p.commands().is_empty());
    }

    #[test]
    fn missing_down_and_addressless_interfaces_are_reported() {
        let specs = [spec("wlan0"), spec("eth9"), spec("nope0"), spec("lo")];
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            false,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(
            p.unusable,
            [
                Unusable::Down("eth9".into()),
                Unusable::NoSuchInterface("nope0".into()),
                Unusable::NoAddress("lo".into()),
            ]
        );
        assert_eq!(p.endpoints.len(), 1);

        // A down interface with an address keeps its endpoint.
        let mut with_addr = addrs();
        with_addr.push(addr(4, "198.18.4.2"));
        let p = plan(
            &[spec("eth9")],
            PathPolicy::Aggregate,
            false,
            &links(),
            &with_addr,
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(p.unusable, [Unusable::Down("eth9".into())]);
        assert_eq!(
            p.commands()[1],
            "ip mptcp endpoint add 198.18.4.2 dev eth9 subflow"
        );
        let p = plan(
            &specs,
            PathPolicy::Aggregate,
            false,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(
            p.limits.map(|l| l.to),
            Some(Limits {
                subflows: 4,
                add_addr_accepted: 1
            })
        );
    }

    #[test]
    fn single_policy_plans_nothing() {
        let specs = [spec("wlan0"), spec("lte0")];
        let p = plan(
            &specs,
            PathPolicy::Single,
            false,
            &links(),
            &addrs(),
            &[],
            DEFAULT_LIMITS,
        );
        assert_eq!(p, Plan::default());
        assert!(p.is_satisfied());
    }

    #[test]
    fn limits_are_capped_at_eight() {
        let l = wanted_limits(20, DEFAULT_LIMITS);
        assert_eq!(l.subflows, MAX_LIMIT);
    }
}
