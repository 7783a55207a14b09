//! Egress policy: which destinations clients may reach through the server.
//!
//! Secure by default: destinations that are not globally routable —
//! loopback, RFC 1918, CGNAT, link-local, ULA, multicast, broadcast,
//! documentation and benchmarking ranges, unspecified — and the server's own
//! addresses are denied unless a rule allows them. Configured rules are
//! checked in order (all `--deny-egress` rules, then all `--allow-egress`
//! rules); the first that matches decides. Addresses are checked after DNS
//! resolution, on every address a name resolves to, and IPv4-mapped IPv6
//! addresses are checked as the IPv4 address they carry. An unspecified
//! address (`0.0.0.0`, `::`, `::ffff:0.0.0.0`) is never a destination,
//! whatever the rules say: connecting to it reaches this host. An IPv6
//! address that embeds an IPv4 one (IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) must also pass as that IPv4 address.
//!
//! The server's own addresses are followed at run time
//! ([`EgressPolicy::set_own_addresses`]). A destination that is one of the
//! server's own listeners — its address and port, or any own address with
//! the port of a listener bound to a wildcard address — is refused
//! whatever the rules say: it would loop the proxy through itself.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

/// What a rule does with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Let the connection through.
    Allow,
    /// Refuse it ("connection not allowed by ruleset").
    Deny,
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`; `None` if the prefix is too long for the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    const fn v4(a: [u8; 4], prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [s0, s1, s2, s3, s4, s5, s6, s7] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7)),
            prefix,
        }
    }

    /// True if `ip` is inside this network. An IPv4 network never contains
    /// an IPv6 address and vice versa (callers unmap IPv4-mapped addresses
    /// first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{p:?} is not a prefix length from 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One configured egress rule: a network and an optional port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    /// Allow or deny.
    pub action: RuleAction,
    /// The network.
    pub net: Cidr,
    /// Inclusive port range; all ports when `None`.
    pub ports: Option<(u16, u16)>,
}

impl EgressRule {
    /// Parses `CIDR`, `CIDR:PORT` or `CIDR:LOW-HIGH`; IPv6 networks with a
    /// port are written in brackets: `[2001:db8::/32]:443`.
    pub fn parse(action: RuleAction, s: &str) -> Result<Self, String> {
        let (net, ports) = if let Some(rest) = s.strip_prefix('[') {
            let (net, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: missing ']'"))?;
            let ports = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{s:?}: expected ':PORT' after ']'")),
            };
            (net, ports)
        } else if s.matches(':').count() == 1 {
            let (net, p) = s.split_once(':').unwrap_or((s, ""));
            (net, Some(p))
        } else {
            (s, None)
        };
        let net: Cidr = net.parse()?;
        let ports = ports.map(parse_port_range).transpose()?;
        Ok(Self { action, net, ports })
    }

    fn matches(&self, dest: SocketAddr) -> bool {
        self.net.contains(dest.ip())
            && self
                .ports
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&dest.port()))
    }
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let (lo, hi) = if let Some((a, b)) = s.split_once('-') {
        (port(a)?, port(b)?)
    } else {
        let p = port(s)?;
        (p, p)
    };
    if lo > hi {
        return Err(format!("port range {s:?} is empty"));
    }
    Ok((lo, hi))
}

/// Destinations denied unless a rule allows them: everything that is not a
/// globally reachable unicast address (IANA special-purpose registries).
const DENIED_BY_DEFAULT: &[Cidr] = &[
    Cidr::v4([0, 0, 0, 0], 8),                        // "this network"
    Cidr::v4([10, 0, 0, 0], 8),                       // RFC 1918
    Cidr::v4([100, 64, 0, 0], 10),                    // CGNAT, RFC 6598
    Cidr::v4([127, 0, 0, 0], 8),                      // loopback
    Cidr::v4([169, 254, 0, 0], 16),                   // link-local
    Cidr::v4([172, 16, 0, 0], 12),                    // RFC 1918
    Cidr::v4([192, 0, 0, 0], 24),                     // IETF protocol assignments
    Cidr::v4([192, 0, 2, 0], 24),                     // documentation
    Cidr::v4([192, 168, 0, 0], 16),                   // RFC 1918
    Cidr::v4([198, 18, 0, 0], 15),                    // benchmarking, RFC 2544
    Cidr::v4([198, 51, 100, 0], 24),                  // documentation
    Cidr::v4([203, 0, 113, 0], 24),                   // documentation
    Cidr::v4([224, 0, 0, 0], 4),                      // multicast
    Cidr::v4([240, 0, 0, 0], 4),                      // reserved, and 255.255.255.255
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),          // unspecified
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),          // loopback
    Cidr::v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
    Cidr::v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),       // ULA
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),      // link-local
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),       // multicast
];

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A configured `--deny-egress` rule matched.
    Rule(Cidr),
    /// The address is in a range denied by default.
    SpecialRange(Cidr),
    /// The address is one of this host's own.
    OwnAddress,
    /// One of this server's own listeners: a proxy loop.
    ProxyLoop,
    /// An unspecified address (`0.0.0.0`, `::`): never a destination.
    Unspecified,
    /// An IPv6 address embedding an IPv4 address that is refused.
    Embedded(Ipv4Addr, Box<Denied>),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule(c) => write!(f, "denied by rule {c}"),
            Self::SpecialRange(c) => write!(f, "{c} is denied by default (not globally routable)"),
            Self::OwnAddress => f.write_str("the server's own address"),
            Self::ProxyLoop => {
                f.write_str("one of the server's own listeners (proxy loop): never a destination")
            }
            Self::Unspecified => f.write_str("an unspecified address is never a destination"),
            Self::Embedded(v4, why) => write!(f, "it embeds {v4}: {why}"),
        }
    }
}

/// The egress policy in force.
#[derive(Debug, Default)]
pub struct EgressPolicy {
    rules: Vec<EgressRule>,
    /// This host's addresses, unmapped; swapped whole on refresh so a check
    /// holds the read lock only for one lookup.
    own: RwLock<Arc<HashSet<IpAddr>>>,
    /// The server's listener addresses (ports resolved), unmapped.
    listeners: Vec<SocketAddr>,
}

/// Addresses that [`EgressPolicy::set_own_addresses`] added and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnChange {
    /// Newly seen addresses.
    pub added: Vec<IpAddr>,
    /// Addresses no longer present.
    pub removed: Vec<IpAddr>,
}

impl OwnChange {
    /// True when the set did not change.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl EgressPolicy {
    /// A policy with `rules` (checked in order) and this host's addresses.
    pub fn new(rules: Vec<EgressRule>, own_addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            rules,
            own: RwLock::new(Arc::new(own_addresses.into_iter().map(unmap).collect())),
            listeners: Vec::new(),
        }
    }

    /// The same policy, refusing the server's own listeners at `addrs`.
    #[must_use]
    pub fn with_listeners(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.listeners = addrs
            .into_iter()
            .map(|a| SocketAddr::new(unmap(a.ip()), a.port()))
            .collect();
        self
    }

    /// This host's addresses as last set.
    pub fn own_addresses(&self) -> Arc<HashSet<IpAddr>> {
        Arc::clone(&self.own.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces this host's addresses with `addrs`; returns what changed.
    pub fn set_own_addresses(&self, addrs: impl IntoIterator<Item = IpAddr>) -> OwnChange {
        let new: HashSet<IpAddr> = addrs.into_iter().map(unmap).collect();
        let old = self.own_addresses();
        if *old == new {
            return OwnChange::default();
        }
        let mut change = OwnChange {
            added: new.difference(&old).copied().collect(),
            removed: old.difference(&new).copied().collect(),
        };
        change.added.sort_unstable();
        change.removed.sort_unstable();
        *self.own.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
        change
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        self.own
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&ip)
    }

    /// Whether `dest` (unmapped) reaches one of the server's listeners.
    fn is_listener(&self, dest: SocketAddr) -> bool {
        self.listeners.iter().any(|l| {
            l.port() == dest.port()
                && (l.ip() == dest.ip()
                    || (l.ip().is_unspecified()
                        && (dest.ip().is_loopback() || self.is_own(dest.ip()))))
        })
    }

    /// Whether clients may connect to `dest`.
    pub fn check(&self, dest: SocketAddr) -> Result<(), Denied> {
        let dest = SocketAddr::new(unmap(dest.ip()), dest.port());
        if dest.ip().is_unspecified() {
            return Err(Denied::Unspecified);
        }
        if self.is_listener(dest) {
            return Err(Denied::ProxyLoop);
        }
        if let IpAddr::V6(v6) = dest.ip()
            && let Some(v4) = embedded_v4(v6)
        {
            self.check(SocketAddr::new(IpAddr::V4(v4), dest.port()))
                .map_err(|why| Denied::Embedded(v4, Box::new(why)))?;
        }
        if let Some(rule) = self.rules.iter().find(|r| r.matches(dest)) {
            return match rule.action {
                RuleAction::Allow => Ok(()),
                RuleAction::Deny => Err(Denied::Rule(rule.net)),
            };
        }
        if let Some(net) = DENIED_BY_DEFAULT.iter().find(|n| n.contains(dest.ip())) {
            return Err(Denied::SpecialRange(*net));
        }
        if self.is_own(dest.ip()) {
            return Err(Denied::OwnAddress);
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address carries in a form that reaches it:
/// IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated but still
/// routed by some stacks; `::` and `::1` excepted), the NAT64 well-known
/// prefix `64:ff9b::/96` (RFC 6052 §2.1) and 6to4 `2002:a.b.c.d::/16`
/// (RFC 3056 §2). IPv4-mapped addresses are handled by [`unmap`].
pub fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match v6.segments() {
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) > (0, 1) => Some(v4(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they carry.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn denies_private_and_special_ranges_by_default() {
        let p = EgressPolicy::default();
        for d in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "172.31.255.255:80",
            "192.168.1.1:80",
            "100.64.0.1:80",
            "169.254.169.254:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[::]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[ff02::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
        ] {
            assert!(p.check(sa(d)).is_err(), "{d} should be denied");
        }
        for d in [
            "1.1.1.1:443",
            "[2606:4700::1111]:443",
            "[::ffff:8.8.8.8]:53",
        ] {
            assert_eq!(p.check(sa(d)), Ok(()), "{d} should be allowed");
        }
    }

    #[test]
    fn unspecified_addresses_are_refused_even_when_a_rule_allows_them() {
        let allow_all = vec![
            EgressRule::parse(RuleAction::Allow, "0.0.0.0/0").unwrap(),
            EgressRule::parse(RuleAction::Allow, "[::/0]").unwrap(),
            EgressRule::parse(RuleAction::Deny, "127.0.0.0/8").unwrap(),
        ];
        let p = EgressPolicy::new(allow_all, []);
        for d in ["0.0.0.0:80", "[::]:80", "[::ffff:0.0.0.0]:80"] {
            assert_eq!(p.check(sa(d)), Err(Denied::Unspecified), "{d}");
        }
        assert_eq!(p.check(sa("1.1.1.1:80")), Ok(()));
    }

    #[test]
    fn embedded_ipv4_addresses_pass_the_ipv4_policy() {
        let p = EgressPolicy::new(Vec::new(), []);
        for d in [
            "[64:ff9b::127.0.0.1]:80",
            "[64:ff9b::10.1.2.3]:80",
            "[2002:7f00:1::]:80",
            "[2002:c0a8:0101::1]:80",
            "[::127.0.0.1]:80",
            "[::10.0.0.1]:80",
        ] {
            assert!(
                matches!(p.check(sa(d)), Err(Denied::Embedded(..))),
                "{d}: {:?}",
                p.check(sa(d))
            );
        }
        for d in ["[64:ff9b::8.8.8.8]:53", "[2002:0808:0808::1]:80"] {
            assert_eq!(p.check(sa(d)), Ok(()), "{d}");
        }
        // An allow rule for the IPv4 range opens the embedded form too.
        let p = EgressPolicy::new(
            vec![EgressRule::parse(RuleAction::Allow, "10.0.0.0/8").unwrap()],
            [],
        );
        assert_eq!(p.check(sa("[64:ff9b::10.1.2.3]:80")), Ok(()));
        assert_eq!(embedded_v4("::1".parse().unwrap()), None);
        assert_eq!(embedded_v4("2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn allow_rule_opens_a_denied_range() {
        let allow = EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").expect("rule");
        let p = EgressPolicy::new(vec![allow], []);
        assert_eq!(p.check(sa("127.0.0.1:8080")), Ok(()));
        assert!(p.check(sa("10.0.0.1:80")).is_err());
    }

    #[test]
    fn deny_rule_with_ports_wins_over_later_allow() {
        let rules = vec![
            EgressRule::parse(RuleAction::Deny, "127.0.0.1:25").expect("rule"),
            EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").expect("rule"),
        ];
        let p = EgressPolicy::new(rules, []);
        assert!(matches!(p.check(sa("127.0.0.1:25")), Err(Denied::Rule(_))));
        assert_eq!(p.check(sa("127.0.0.1:26")), Ok(()));
    }

    #[test]
    fn denies_own_addresses() {
        let own: IpAddr = "203.0.114.7".parse().expect("ip");
        let p = EgressPolicy::new(Vec::new(), [own]);
        assert_eq!(p.check(SocketAddr::new(own, 80)), Err(Denied::OwnAddress));
    }

    #[test]
    fn own_addresses_follow_refreshes() {
        let a: IpAddr = "203.0.114.7".parse().expect("ip");
        let b: IpAddr = "203.0.114.8".parse().expect("ip");
        let p = EgressPolicy::new(Vec::new(), [a]);
        assert_eq!(p.check(SocketAddr::new(b, 80)), Ok(()));
        let change = p.set_own_addresses([b, "::ffff:203.0.114.8".parse().expect("ip")]);
        assert_eq!(
            change,
            OwnChange {
                added: vec![b],
                removed: vec![a]
            }
        );
        assert_eq!(p.check(SocketAddr::new(b, 80)), Err(Denied::OwnAddress));
        assert_eq!(p.check(SocketAddr::new(a, 80)), Ok(()));
        assert!(p.set_own_addresses([b]).is_empty());
    }

    #[test]
    fn own_listeners_are_refused_whatever_the_rules_say() {
        let allow_all = vec![
            EgressRule::parse(RuleAction::Allow, "0.0.0.0/0").unwrap(),
            EgressRule::parse(RuleAction::Allow, "[::/0]").unwrap(),
        ];
        let own: IpAddr = "198.18.0.7".parse().expect("ip");
        let p = EgressPolicy::new(allow_all, [own, "127.0.0.1".parse().expect("ip")])
            .with_listeners([sa("127.0.0.1:1080"), sa("[::]:1443"), sa("0.0.0.0:1444")]);
        for d in [
            "127.0.0.1:1080",
            "[::ffff:127.0.0.1]:1080",
            "198.18.0.7:1443",
            "127.0.0.2:1444",
            "[::1]:1443",
            "[64:ff9b::198.18.0.7]:1444",
        ] {
            let why = p.check(sa(d)).expect_err(d);
            assert!(why.to_string().contains("proxy loop"), "{d}: {why}");
        }
        assert_eq!(p.check(sa("198.18.0.7:1443")), Err(Denied::ProxyLoop));
        for d in ["127.0.0.2:1080", "198.18.0.7:1080", "198.18.0.8:1443"] {
            assert_eq!(p.check(sa(d)), Ok(()), "{d}");
        }
        // An address added later counts once the set is refreshed.
        let later: IpAddr = "198.18.0.9".parse().expect("ip");
        assert_eq!(p.check(SocketAddr::new(later, 1443)), Ok(()));
        p.set_own_addresses([own, later]);
        assert_eq!(
            p.check(SocketAddr::new(later, 1443)),
            Err(Denied::ProxyLoop)
        );
    }

    #[test]
    fn parses_rules_with_ports_and_ipv6() {
        let r = EgressRule::parse(RuleAction::Allow, "[2001:db8::/32]:443-444").expect("rule");
        assert_eq!(r.ports, Some((443, 444)));
        assert!(r.matches(sa("[2001:db8::5]:444")));
        assert!(!r.matches(sa("[2001:db8::5]:445")));
        let r = EgressRule::parse(RuleAction::Allow, "fd00::/8").expect("rule");
        assert_eq!(r.ports, None);
        assert!(EgressRule::parse(RuleAction::Allow, "10.0.0.0/33").is_err());
        assert!(EgressRule::parse(RuleAction::Allow, "10.0.0.0/8:99999").is_err());
        assert!(EgressRule::parse(RuleAction::Allow, "example.com").is_err());
    }
}
