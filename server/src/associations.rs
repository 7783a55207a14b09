//! The UDP associations of the whole server: the cap
//! (`--max-udp-associations`), the SOCKS6 Association IDs that datagrams
//! arriving over UDP are routed by, and the counters summed over finished
//! associations ([`UdpStats`]). The UDP ASSOCIATE command
//! (`command::udp`) takes a `Slot` here for each association it serves.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sixpath_protocol::socks6::udp::Datagram;
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

/// Every live association: the cap, the SOCKS6 Association IDs reachable
/// over UDP, and the counters summed over finished associations.
#[derive(Debug)]
pub struct Associations {
    max: usize,
    active: AtomicUsize,
    by_id: Mutex<HashMap<u64, mpsc::Sender<FromUdp>>>,
    /// Counters of finished associations.
    pub stats: UdpStats,
}

/// A place in [`Associations`]; frees it (and the ID) when dropped.
pub(crate) struct Slot<'a> {
    all: &'a Associations,
    id: Option<u64>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.all.ids().remove(&id);
        }
        self.all.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Associations {
    /// At most `max` associations at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            active: AtomicUsize::new(0),
            by_id: Mutex::new(HashMap::new()),
            stats: UdpStats::default(),
        }
    }

    /// Live associations.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The registered Association IDs and where their datagrams go.
    pub(crate) fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<FromUdp>>> {
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one more association; `None` at the cap.
    pub(crate) fn reserve(&self) -> Option<Slot<'_>> {
        let mut n = self.active.load(Ordering::Acquire);
        loop {
            if n >= self.max {
                return None;
            }
            match self
                .active
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Slot {
                        all: self,
                        id: None,
                    });
                }
                Err(now) => n = now,
            }
        }
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

    #[test]
    fn association_cap_is_enforced_and_slots_free_on_drop() {
        let all = Associations::new(2);
        let a = all.reserve().expect("first");
        let mut b = all.reserve().expect("second");
        assert!(all.reserve().is_none(), "cap of 2");
        let (tx, _rx) = mpsc::channel(1);
        let id = all.register(&mut b, tx).expect("id");
        assert!(all.ids().contains_key(&id));
        drop(b);
        assert!(!all.ids().contains_key(&id), "ID released");
        assert_eq!(all.active(), 1);
        drop(a);
        assert_eq!(all.active(), 0);
    }
}
