//! Caps on the connections clients can make a daemon hold: concurrent
//! connections in total (`--max-connections`) and per source address
//! (`--max-connections-per-source`), checked at accept by both binaries. A
//! permit is held for the life of a connection and released on drop.
//!
//! The server answers a connection over a cap with its protocol's refusal
//! and closes it; that answer costs a moment of the connection's task, so
//! at most [`MAX_ANSWERED_REFUSALS`] are answered at once
//! ([`Limits::answer_slot`]) and beyond them a refused connection is closed
//! at once. The client closes a refused connection at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Refusals (connections over a cap) answered at once.
pub const MAX_ANSWERED_REFUSALS: usize = 256;

/// Connection caps.
#[derive(Debug)]
pub struct Limits {
    max_total: usize,
    max_per_source: usize,
    state: Mutex<State>,
    answering: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server-wide cap.
    Total,
    /// The per-source cap.
    PerSource,
}

/// A held connection slot.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<Limits>,
    source: IpAddr,
}

impl Limits {
    /// Caps of `max_total` connections and `max_per_source` per address.
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_source,
            state: Mutex::new(State::default()),
            answering: AtomicUsize::new(0),
        })
    }

    /// A slot to answer a refused connection in, or `None` when
    /// [`MAX_ANSWERED_REFUSALS`] are being answered.
    pub fn answer_slot(self: &Arc<Self>) -> Option<AnswerSlot> {
        let taken = self
            .answering
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_ANSWERED_REFUSALS).then_some(n + 1)
            });
        taken.is_ok().then(|| AnswerSlot {
            limits: Arc::clone(self),
        })
    }

    /// Takes a slot for a connection from `source`.
    pub fn acquire(self: &Arc<Self>, source: IpAddr) -> Result<Permit, Refused> {
        self.take(source, self.max_per_source)
    }

    /// Takes a slot for a connection from `source` under the total cap
    /// only: for a source the per-source cap is not meant for (the
    /// client's own host on loopback, where every application shares one
    /// address). The connection still counts towards its source.
    pub fn acquire_exempt(self: &Arc<Self>, source: IpAddr) -> Result<Permit, Refused> {
        self.take(source, usize::MAX)
    }

    fn take(self: &Arc<Self>, source: IpAddr, max_per_source: usize) -> Result<Permit, Refused> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = s.per_source.entry(source).or_insert(0);
        if *n >= max_per_source {
            return Err(Refused::PerSource);
        }
        *n += 1;
        s.total += 1;
        Ok(Permit {
            limits: Arc::clone(self),
            source,
        })
    }

    /// Connections held now.
    pub fn active(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// A held slot for answering a refused connection.
#[derive(Debug)]
pub struct AnswerSlot {
    limits: Arc<Limits>,
}

impl Drop for AnswerSlot {
    fn drop(&mut self) {
        self.limits.answering.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self
            .limits
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_total_and_releases_on_drop() {
        let l = Limits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let p1 = l.acquire(a).expect("first");
        let _p2 = l.acquire(a).expect("second");
        assert_eq!(l.acquire(a).expect_err("per source"), Refused::PerSource);
        let _p3 = l.acquire(b).expect("other source");
        assert_eq!(l.acquire(b).expect_err("total"), Refused::Total);
        drop(p1);
        assert!(l.acquire(a).is_ok());
    }

    #[test]
    fn exempt_sources_are_held_by_the_total_cap_only_and_still_count() {
        let l = Limits::new(3, 1);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let p1 = l.acquire_exempt(a).expect("first");
        let _p2 = l
            .acquire_exempt(a)
            .expect("second, past the per-source cap");
        assert_eq!(l.acquire(a).expect_err("counted"), Refused::PerSource);
        let _p3 = l.acquire_exempt(a).expect("third");
        assert_eq!(l.acquire_exempt(a).expect_err("total"), Refused::Total);
        drop(p1);
        assert!(l.acquire_exempt(a).is_ok());
    }

    #[test]
    fn refusals_answered_at_once_are_capped_and_released_on_drop() {
        let l = Limits::new(1, 1);
        let mut held: Vec<_> = (0..MAX_ANSWERED_REFUSALS)
            .map(|_| l.answer_slot().expect("slot"))
            .collect();
        assert!(l.answer_slot().is_none(), "all slots taken");
        held.pop();
        assert!(l.answer_slot().is_some());
    }
}
