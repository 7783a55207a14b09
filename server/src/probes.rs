//! Rate limits for path probes (`docs/probe.md`): at most
//! [`PER_SOURCE_RATE`] probes a second from one source (an IPv4 address or
//! an IPv6 /64, as for failed logins), with bursts of as many, and at most
//! [`TOTAL_RATE`] answered a second in all.
//!
//! Sources are tracked in a table of at most [`MAX_SOURCES`] entries. A
//! source whose bucket has been full for a second needs no entry, so when
//! the table is full those are dropped (at most every 100 ms, so a flood
//! from forged addresses cannot make every datagram scan the table); if it
//! is still full, probes from new sources are refused until entries age.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sixpath_service::logins::source_key;

/// Probes a second one source may send (a client sends 4 per path at the
/// default interval).
pub const PER_SOURCE_RATE: f64 = 20.0;
/// Probes answered a second, all sources together.
pub const TOTAL_RATE: f64 = 10_000.0;
/// Sources tracked at most.
pub const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Self {
            tokens: rate,
            at: now,
        }
    }

    /// Refills at `rate` a second up to `rate`, then takes one token if
    /// there is one.
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Table {
    sources: HashMap<IpAddr, Bucket>,
    total: Bucket,
    swept: Instant,
}

/// The probe rate limits.
#[derive(Debug)]
pub struct ProbeLimits {
    table: Mutex<Table>,
    per_source: f64,
    total: f64,
    max_sources: usize,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self::new(PER_SOURCE_RATE, TOTAL_RATE, MAX_SOURCES)
    }
}

impl ProbeLimits {
    /// Limits of `per_source` and `total` probes a second, tracking at most
    /// `max_sources` sources.
    pub fn new(per_source: f64, total: f64, max_sources: usize) -> Self {
        let now = Instant::now();
        Self {
            table: Mutex::new(Table {
                sources: HashMap::new(),
                total: Bucket::full(total, now),
                swept: now,
            }),
            per_source,
            total,
            max_sources,
        }
    }

    /// Whether `source` has a token left at `now`, without taking it: a
    /// cheap first look before the session check.
    pub fn may(&self, source: IpAddr, now: Instant) -> bool {
        let key = source_key(source);
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.sources.get(&key).is_none_or(|b| {
            let dt = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + dt * self.per_source >= 1.0
        })
    }

    /// Whether a probe from `source` at `now` may be answered (and counts
    /// it).
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let key = source_key(source);
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let per_source = self.per_source;
        if !t.sources.contains_key(&key) && t.sources.len() >= self.max_sources {
            if now.saturating_duration_since(t.swept) < Duration::from_millis(100) {
                return false;
            }
            t.swept = now;
            t.sources
                .retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(1));
            if t.sources.len() >= self.max_sources {
                return false;
            }
        }
        let ok = t
            .sources
            .entry(key)
            .or_insert_with(|| Bucket::full(per_source, now))
            .take(per_source, now);
        ok && t.total.take(self.total, now)
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sources
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let l = ProbeLimits::new(20.0, 1000.0, 100);
        let t0 = Instant::now();
        let first: usize = (0..100).filter(|_| l.allow(ip("198.18.0.1"), t0)).count();
        assert_eq!(first, 20);
        assert!(!l.allow(ip("198.18.0.1"), t0 + Duration::from_millis(10)));
        assert!(l.allow(ip("198.18.0.1"), t0 + Duration::from_millis(60)));
        assert!(l.allow(ip("198.18.0.2"), t0), "another source has its own");
    }

    #[test]
    fn a_look_takes_no_token() {
        let l = ProbeLimits::new(2.0, 1000.0, 100);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.may(ip("198.18.0.1"), t0));
        }
        assert!(l.allow(ip("198.18.0.1"), t0));
        assert!(l.allow(ip("198.18.0.1"), t0));
        assert!(!l.may(ip("198.18.0.1"), t0));
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let l = ProbeLimits::new(2.0, 1000.0, 100);
        let t0 = Instant::now();
        assert!(l.allow(ip("2001:db8::1"), t0));
        assert!(l.allow(ip("2001:db8::2"), t0));
        assert!(!l.allow(ip("2001:db8::3"), t0));
        assert!(l.allow(ip("2001:db8:0:1::1"), t0));
    }

    #[test]
    fn the_total_caps_all_sources_together() {
        let l = ProbeLimits::new(20.0, 50.0, 1000);
        let t0 = Instant::now();
        let n = (0..100u8)
            .filter(|i| l.allow(IpAddr::from([198, 18, 1, *i]), t0))
            .count();
        assert_eq!(n, 50);
    }

    #[test]
    fn a_full_table_refuses_new_sources_until_entries_age() {
        let l = ProbeLimits::new(20.0, 1e6, 3);
        let t0 = Instant::now();
        for i in 1..=3u8 {
            assert!(l.allow(IpAddr::from([198, 18, 2, i]), t0));
        }
        assert!(!l.allow(ip("198.18.2.9"), t0 + Duration::from_millis(200)));
        assert_eq!(l.tracked(), 3);
        assert!(l.allow(ip("198.18.2.9"), t0 + Duration::from_millis(1500)));
        assert_eq!(l.tracked(), 1);
    }
}
