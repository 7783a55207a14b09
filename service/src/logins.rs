//! Failed logins per source: after `max_failures` failed logins from one
//! source within `window` (counted from the first failure), further
//! attempts from that source are refused for the rest of the window without
//! the password being checked. A success resets nothing, so an attacker who
//! knows one account cannot clear the count for the passwords he guesses on
//! another. A source is an IPv4 address or an IPv6 /64 (one subscriber's
//! prefix; counting single IPv6 addresses would give one host 2^64 tries).
//! At most [`MAX_TRACKED_SOURCES`] sources are tracked; when full, expired
//! entries go first, then the oldest.
//!
//! The server counts its clients' failed logins with it, the client its
//! applications' (`--local-user`); it lives here, beside the rest of what a
//! daemon needs, so that any daemon checking passwords refuses guessers the
//! same way, with the same defaults.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most sources [`FailedLogins`] tracks at once (a few MiB at most).
pub const MAX_TRACKED_SOURCES: usize = 65_536;
/// Default failed logins that block a source (`--max-failed-logins` of
/// both daemons).
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// Default window failed logins are counted in (`--failed-login-window`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Failed logins per source within a window.
#[derive(Debug)]
pub struct FailedLogins {
    max_failures: u32,
    window: Duration,
    max_sources: usize,
    state: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    since: Instant,
    failures: u32,
}

/// The key a source is counted under: IPv4 (IPv4-mapped IPv6 included) as
/// is, IPv6 by its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl FailedLogins {
    /// Blocks a source after `max_failures` failures within `window`,
    /// tracking at most `max_sources` sources.
    pub fn new(max_failures: u32, window: Duration, max_sources: usize) -> Self {
        Self {
            max_failures,
            window,
            max_sources: max_sources.max(1),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Failures that block a source.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// The window failures are counted in.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.since) < self.window
    }

    /// Whether `source` has used up its failures in the current window.
    pub fn is_blocked(&self, source: IpAddr, now: Instant) -> bool {
        self.lock()
            .get(&source_key(source))
            .is_some_and(|e| self.live(e, now) && e.failures >= self.max_failures)
    }

    /// Records a failed login from `source`; returns the failures counted
    /// in its current window.
    pub fn record_failure(&self, source: IpAddr, now: Instant) -> u32 {
        let key = source_key(source);
        let mut s = self.lock();
        if let Some(e) = s.get_mut(&key) {
            if self.live(e, now) {
                e.failures = e.failures.saturating_add(1);
            } else {
                *e = Entry {
                    since: now,
                    failures: 1,
                };
            }
            return e.failures;
        }
        if s.len() >= self.max_sources {
            s.retain(|_, e| now.saturating_duration_since(e.since) < self.window);
        }
        if s.len() >= self.max_sources
            && let Some(oldest) = s.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k)
        {
            s.remove(&oldest);
        }
        s.insert(
            key,
            Entry {
                since: now,
                failures: 1,
            },
        );
        1
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let f = FailedLogins::new(3, Duration::from_secs(60), 100);
        let t = Instant::now();
        let a = ip("192.0.2.1");
        for i in 1..=3 {
            assert!(!f.is_blocked(a, t));
            assert_eq!(f.record_failure(a, t), i);
        }
        assert!(f.is_blocked(a, t + Duration::from_secs(59)));
        assert!(
            !f.is_blocked(ip("192.0.2.2"), t),
            "other sources unaffected"
        );
        assert!(!f.is_blocked(a, t + Duration::from_secs(60)));
        assert_eq!(f.record_failure(a, t + Duration::from_secs(61)), 1);
    }

    #[test]
    fn counts_ipv6_by_64_and_mapped_ipv4_as_ipv4() {
        let f = FailedLogins::new(2, Duration::from_secs(60), 100);
        let t = Instant::now();
        f.record_failure(ip("2001:db8:1:2::1"), t);
        f.record_failure(ip("2001:db8:1:2:ffff::9"), t);
        assert!(f.is_blocked(ip("2001:db8:1:2::77"), t));
        assert!(!f.is_blocked(ip("2001:db8:1:3::1"), t));
        f.record_failure(ip("::ffff:192.0.2.9"), t);
        f.record_failure(ip("192.0.2.9"), t);
        assert!(f.is_blocked(ip("192.0.2.9"), t));
    }

    #[test]
    fn tracked_sources_are_capped_evicting_the_oldest() {
        let f = FailedLogins::new(1, Duration::from_secs(60), 3);
        let t = Instant::now();
        for (i, s) in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
            .iter()
            .enumerate()
        {
            f.record_failure(ip(s), t + Duration::from_secs(i as u64));
        }
        assert_eq!(f.tracked(), 3);
        let later = t + Duration::from_secs(5);
        assert!(!f.is_blocked(ip("192.0.2.1"), later), "oldest evicted");
        assert!(f.is_blocked(ip("192.0.2.4"), later));
    }
}
