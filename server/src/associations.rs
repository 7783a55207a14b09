//! The UDP associations of the whole server: the caps
//! (`--max-udp-associations` in total, `--max-udp-associations-per-user`
//! per authenticated user, `--max-udp-associations-per-source` per source,
//! an IPv4 address or an IPv6 /64 as [`source_key`] counts them), the SOCKS6 Association IDs that datagrams
//! arriving over UDP are routed by, and the counters summed over finished
//! associations ([`UdpStats`]). The UDP ASSOCIATE command
//! (`command::udp`) takes a `Slot` here for each association it serves.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sixpath_protocol::socks6::udp::Datagram;
use sixpath_service::logins::source_key;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Counters of one association, also summed over all of them.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Datagrams relayed client to target.
    pub datagrams_out: AtomicU64,
    /// Datagrams relayed target to client.
    pub datagrams_in: AtomicU64,
    /// Payload bytes relayed client to target.
    pub bytes_out: AtomicU64,
    /// Payload bytes relayed target to client.
    pub bytes_in: AtomicU64,
    /// Datagrams dropped by the egress policy (either direction) or
    /// because their destination did not resolve.
    pub denied: AtomicU64,
    /// Datagrams dropped as malformed, fragmented, from a foreign source
    /// or on the wrong channel.
    pub rejected: AtomicU64,
    /// Datagrams dropped because a queue was full.
    pub queue_full: AtomicU64,
}

impl UdpStats {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds these counters to `total`.
    pub(crate) fn merge_into(&self, total: &Self) {
        for (from, to) in [
            (&self.datagrams_out, &total.datagrams_out),
            (&self.datagrams_in, &total.datagrams_in),
            (&self.bytes_out, &total.bytes_out),
            (&self.bytes_in, &total.bytes_in),
            (&self.denied, &total.denied),
            (&self.rejected, &total.rejected),
            (&self.queue_full, &total.queue_full),
        ] {
            Self::add(to, Self::get(from));
        }
    }
}

/// A SOCKS6 datagram that came over UDP to a listener's port.
#[derive(Debug)]
pub(crate) struct FromUdp {
    /// The listener's socket it came in on (replies go back through it).
    pub(crate) socket: Arc<UdpSocket>,
    /// Where it came from, as received.
    pub(crate) from: SocketAddr,
    /// The datagram.
    pub(crate) datagram: Datagram,
}

/// Caps on concurrent UDP associations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpLimits {
    /// In all (`--max-udp-associations`).
    pub max_total: usize,
    /// Of one authenticated user (`--max-udp-associations-per-user`).
    pub max_per_user: usize,
    /// From one source, an IPv4 address or an IPv6 /64
    /// (`--max-udp-associations-per-source`).
    pub max_per_source: usize,
}

/// Which cap refused an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpCap {
    /// `--max-udp-associations`.
    Total,
    /// `--max-udp-associations-per-user`.
    PerUser,
    /// `--max-udp-associations-per-source`.
    PerSource,
}

impl UdpCap {
    /// Every cap, in the order of the counters.
    pub const ALL: [Self; 3] = [Self::Total, Self::PerUser, Self::PerSource];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerUser => "per_user",
            Self::PerSource => "per_source",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
    per_source: HashMap<IpAddr, usize>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(k);
        }
    }
}

/// Every live association: the caps, the SOCKS6 Association IDs reachable
/// over UDP, and the counters summed over finished associations.
#[derive(Debug)]
pub struct Associations {
    limits: UdpLimits,
    counts: Mutex<Counts>,
    by_id: Mutex<HashMap<u64, mpsc::Sender<FromUdp>>>,
    /// Counters of finished associations.
    pub stats: UdpStats,
}

/// A place in [`Associations`]; frees it (and the ID) when dropped.
pub(crate) struct Slot<'a> {
    all: &'a Associations,
    id: Option<u64>,
    user: Option<String>,
    source: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.all.ids().remove(&id);
        }
        let mut c = self.all.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(u) = &self.user {
            decrement(&mut c.per_user, u);
        }
        decrement(&mut c.per_source, &self.source);
    }
}

impl Associations {
    /// Associations under `limits`.
    pub fn new(limits: UdpLimits) -> Self {
        Self {
            limits,
            counts: Mutex::new(Counts::default()),
            by_id: Mutex::new(HashMap::new()),
            stats: UdpStats::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live associations.
    pub fn active(&self) -> usize {
        self.counts().total
    }

    /// The registered Association IDs and where their datagrams go.
    pub(crate) fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<FromUdp>>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more association of `user` (authenticated, if any)
    /// from `source`, or the cap that refuses it.
    pub(crate) fn reserve(&self, user: Option<&str>, source: IpAddr) -> Result<Slot<'_>, UdpCap> {
        let source = source_key(source);
        let mut c = self.counts();
        let count = |n: Option<&usize>| n.copied().unwrap_or(0);
        if c.total >= self.limits.max_total {
            return Err(UdpCap::Total);
        }
        if user.is_some_and(|u| count(c.per_user.get(u)) >= self.limits.max_per_user) {
            return Err(UdpCap::PerUser);
        }
        if count(c.per_source.get(&source)) >= self.limits.max_per_source {
            return Err(UdpCap::PerSource);
        }
        c.total += 1;
        if let Some(u) = user {
            *c.per_user.entry(u.to_owned()).or_insert(0) += 1;
        }
        *c.per_source.entry(source).or_insert(0) += 1;
        Ok(Slot {
            all: self,
            id: None,
            user: user.map(str::to_owned),
            source,
        })
    }

    /// Registers a fresh random Association ID for `slot`.
    pub(crate) fn register(
        &self,
        slot: &mut Slot<'_>,
        tx: mpsc::Sender<FromUdp>,
    ) -> io::Result<u64> {
        let mut ids = self.ids();
        loop {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
            let id = u64::from_be_bytes(b);
            if let std::collections::hash_map::Entry::Vacant(e) = ids.entry(id) {
                e.insert(tx);
                slot.id = Some(id);
                return Ok(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_total: usize, max_per_user: usize, max_per_source: usize) -> UdpLimits {
        UdpLimits {
            max_total,
            max_per_user,
            max_per_source,
        }
    }

    #[test]
    fn association_cap_is_enforced_and_slots_free_on_drop() {
        let all = Associations::new(limits(2, 10, 10));
        let src: IpAddr = "192.0.2.1".parse().expect("ip");
        let a = all.reserve(None, src).expect("first");
        let mut b = all.reserve(None, src).expect("second");
        assert_eq!(all.reserve(None, src).err(), Some(UdpCap::Total));
        let (tx, _rx) = mpsc::channel(1);
        let id = all.register(&mut b, tx).expect("id");
        assert!(all.ids().contains_key(&id));
        drop(b);
        assert!(!all.ids().contains_key(&id), "ID released");
        assert_eq!(all.active(), 1);
        drop(a);
        assert_eq!(all.active(), 0);
    }

    #[test]
    fn caps_associations_per_user_and_per_source_and_frees_them_on_drop() {
        let all = Associations::new(limits(100, 2, 3));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let u1 = all.reserve(Some("alice"), a).expect("alice 1");
        let _u2 = all.reserve(Some("alice"), b).expect("alice 2");
        assert_eq!(all.reserve(Some("alice"), b).err(), Some(UdpCap::PerUser));
        let _v = all.reserve(Some("bob"), a).expect("bob, other user");
        let _n = all.reserve(None, a).expect("anonymous, third from a");
        assert_eq!(all.reserve(Some("carol"), a).err(), Some(UdpCap::PerSource));
        drop(u1);
        assert!(all.reserve(Some("alice"), b).is_ok(), "user place freed");
        assert!(all.reserve(Some("carol"), a).is_ok(), "source place freed");
        // An IPv6 source is its /64.
        let x: IpAddr = "2001:db8::1".parse().expect("ip");
        let y: IpAddr = "2001:db8::2".parse().expect("ip");
        let _h: Vec<_> = (0..3).map(|_| all.reserve(None, x).expect("v6")).collect();
        assert_eq!(all.reserve(None, y).err(), Some(UdpCap::PerSource));
    }
}
