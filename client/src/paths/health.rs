//! Path health: whether a configured path (an interface) can carry traffic
//! to the server right now, judged by the client itself rather than left
//! to the kernel's retransmission timers.
//!
//! Each path is `up`, `suspect` or `down`. Inputs, each with the time it
//! happened (this module keeps no clock):
//!
//! - **link events** (rtnetlink): the interface lost its carrier or was
//!   set down, or its last usable address went away → `down` at once;
//!   back → `suspect` until probes confirm it (or `up` at once when no
//!   probes can be sent);
//! - **probes** (`docs/probe.md`): one small keyed echo per path per
//!   interval to the server. A probe not answered within
//!   [`PathHealth::probe_timeout`] makes an `up` path `suspect`, and the
//!   prober sends the next probe at once; a second loss in a row makes it
//!   `down`. A `down` path comes back after [`RECOVER_PROBES`] answers in
//!   a row (a path that is merely `suspect` after one loss comes back on
//!   the next answer).
//!
//! Every change is a [`Transition`] with its cause and, for a recovery,
//! how long the path was out; the path manager acts on them
//! ([`super::PathManager`]): a `down` path's MPTCP endpoints are withdrawn
//! (the kernel sends `REMOVE_ADDR` over the remaining subflows, so the
//! server stops sending on it within one round trip) and new connections
//! start on a healthy path; `up` again restores them.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Answers in a row that bring a `down` path back.
pub const RECOVER_PROBES: u32 = 3;

/// Shortest and longest time a probe may go unanswered before it counts
/// as lost. Between them the limit follows the path's round-trip time
/// ([`PathHealth::probe_timeout`]).
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(80);
/// See [`MIN_PROBE_TIMEOUT`].
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The state of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Carries traffic.
    Up,
    /// A probe went unanswered, or the link just came back: still used,
    /// watched closely.
    Suspect,
    /// Out of use: its endpoints are withdrawn, no connection starts on it.
    Down,
}

impl State {
    /// The name in logs, `/stats` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Down => "down",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [Self; 3] = [Self::Up, Self::Suspect, Self::Down];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a path changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The interface went down or lost its carrier.
    LinkDown,
    /// The interface has no usable address left.
    AddressGone,
    /// The interface came back (up, carrier, address).
    LinkUp,
    /// Probes went unanswered (how many in a row).
    ProbeLost(u32),
    /// Probes were answered (how many in a row).
    ProbeAnswered(u32),
    /// The server stopped answering probes on every path at once: a
    /// server matter (a restart, a session it forgot), not the paths';
    /// health follows link events until it answers again.
    ProbesUnavailable,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LinkDown => f.write_str("link down"),
            Self::AddressGone => f.write_str("address gone"),
            Self::LinkUp => f.write_str("link up"),
            Self::ProbeLost(n) => write!(f, "{n} probe(s) unanswered"),
            Self::ProbeAnswered(n) => write!(f, "{n} probe(s) answered"),
            Self::ProbesUnavailable => {
                f.write_str("no path's probes answered: judging by link events")
            }
        }
    }
}

/// One change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why.
    pub cause: Cause,
    /// When.
    pub at: Instant,
    /// For a change to `down`: how long the path had been silent when it
    /// was judged down (since the last answer or the link event). For a
    /// change to `up` from `down`: how long it was down.
    pub after: Duration,
}

/// The health of one path, fed by link events and probe results.
#[derive(Debug, Clone)]
pub struct PathHealth {
    state: State,
    since: Instant,
    /// The state before the current `suspect` (to know how much proof a
    /// recovery needs).
    before_suspect: State,
    lost_in_row: u32,
    answered_in_row: u32,
    /// The link (carrier and address) is there.
    link: bool,
    last_answer: Option<Instant>,
    /// Smoothed probe round-trip time (RFC 6298 weights), if any answer.
    srtt: Option<Duration>,
    last_rtt: Option<Duration>,
    last: Option<Transition>,
    transitions: u64,
    sent: u64,
    answered: u64,
    lost: u64,
}

impl PathHealth {
    /// A path first seen at `now`: `up` if its link is there, else `down`.
    pub fn new(link: bool, now: Instant) -> Self {
        let state = if link { State::Up } else { State::Down };
        Self {
            state,
            since: now,
            before_suspect: state,
            lost_in_row: 0,
            answered_in_row: 0,
            link,
            last_answer: None,
            srtt: None,
            last_rtt: None,
            last: None,
            transitions: 0,
            sent: 0,
            answered: 0,
            lost: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Since when.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Whether the link (carrier and a usable address) is there.
    pub fn link(&self) -> bool {
        self.link
    }

    /// The last change, if any.
    pub fn last(&self) -> Option<Transition> {
        self.last
    }

    /// Changes so far.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Probes sent, answered and lost so far.
    pub fn probe_counts(&self) -> (u64, u64, u64) {
        (self.sent, self.answered, self.lost)
    }

    /// Smoothed and last probe round-trip time.
    pub fn rtt(&self) -> (Option<Duration>, Option<Duration>) {
        (self.srtt, self.last_rtt)
    }

    /// How long a probe may go unanswered: twice the smoothed round-trip
    /// time plus 40 ms of slack for queueing, within
    /// [`MIN_PROBE_TIMEOUT`]..=[`MAX_PROBE_TIMEOUT`]; the maximum before
    /// any answer.
    pub fn probe_timeout(&self) -> Duration {
        self.srtt.map_or(MAX_PROBE_TIMEOUT, |s| {
            (s * 2 + Duration::from_millis(40)).clamp(MIN_PROBE_TIMEOUT, MAX_PROBE_TIMEOUT)
        })
    }

    fn go(&mut self, to: State, cause: Cause, now: Instant) -> Option<Transition> {
        if to == self.state {
            return None;
        }
        let after = match to {
            State::Down => now.saturating_duration_since(self.last_answer.unwrap_or(self.since)),
            State::Up | State::Suspect => now.saturating_duration_since(self.since),
        };
        if to == State::Suspect {
            self.before_suspect = self.state;
        }
        let t = Transition {
            from: self.state,
            to,
            cause,
            at: now,
            after,
        };
        self.state = to;
        self.since = now;
        self.transitions += 1;
        self.last = Some(t);
        Some(t)
    }

    /// The link came or went (carrier, administrative state, a usable
    /// address). `probing`: whether probes will confirm a returning link
    /// (else it is `up` at once).
    pub fn on_link(
        &mut self,
        present: bool,
        address: bool,
        probing: bool,
        now: Instant,
    ) -> Option<Transition> {
        let was = self.link;
        self.link = present && address;
        if !self.link {
            self.answered_in_row = 0;
            let cause = if present {
                Cause::AddressGone
            } else {
                Cause::LinkDown
            };
            return self.go(State::Down, cause, now);
        }
        if was {
            return None;
        }
        self.lost_in_row = 0;
        self.answered_in_row = 0;
        if probing {
            let t = self.go(State::Suspect, Cause::LinkUp, now);
            // A returning link needs the full proof.
            self.before_suspect = State::Down;
            t
        } else {
            self.go(State::Up, Cause::LinkUp, now)
        }
    }

    /// Probes are no longer a reliable signal (see
    /// [`Cause::ProbesUnavailable`]): a path whose link is there is `up`.
    pub fn on_probes_unavailable(&mut self, now: Instant) -> Option<Transition> {
        self.lost_in_row = 0;
        self.answered_in_row = 0;
        if self.link {
            self.go(State::Up, Cause::ProbesUnavailable, now)
        } else {
            None
        }
    }

    /// A probe was sent.
    pub fn on_probe_sent(&mut self) {
        self.sent += 1;
    }

    /// A probe was answered after `rtt`.
    pub fn on_probe_answered(&mut self, rtt: Duration, now: Instant) -> Option<Transition> {
        self.answered += 1;
        self.last_answer = Some(now);
        self.last_rtt = Some(rtt);
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        self.lost_in_row = 0;
        self.answered_in_row = self.answered_in_row.saturating_add(1);
        if !self.link {
            return None;
        }
        let n = self.answered_in_row;
        let recovered = match self.state {
            State::Up => false,
            State::Suspect if self.before_suspect == State::Up => true,
            State::Suspect | State::Down => n >= RECOVER_PROBES,
        };
        if recovered {
            self.go(State::Up, Cause::ProbeAnswered(n), now)
        } else {
            None
        }
    }

    /// A probe went unanswered for [`Self::probe_timeout`].
    pub fn on_probe_lost(&mut self, now: Instant) -> Option<Transition> {
        self.lost += 1;
        self.answered_in_row = 0;
        self.lost_in_row = self.lost_in_row.saturating_add(1);
        let n = self.lost_in_row;
        match self.state {
            State::Up => self.go(State::Suspect, Cause::ProbeLost(n), now),
            State::Suspect => self.go(State::Down, Cause::ProbeLost(n), now),
            State::Down => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn link_down_is_down_at_once_and_link_up_waits_for_probes() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        let t = h.on_link(false, true, true, t0 + ms(10)).expect("down");
        assert_eq!(
            (t.from, t.to, t.cause),
            (State::Up, State::Down, Cause::LinkDown)
        );
        let t = h.on_link(true, true, true, t0 + ms(2010)).expect("suspect");
        assert_eq!((t.to, t.cause), (State::Suspect, Cause::LinkUp));
        assert_eq!(h.on_probe_answered(ms(20), t0 + ms(2050)), None);
        assert_eq!(h.on_probe_answered(ms(20), t0 + ms(2300)), None);
        let t = h.on_probe_answered(ms(20), t0 + ms(2550)).expect("up");
        assert_eq!((t.to, t.cause), (State::Up, Cause::ProbeAnswered(3)));
    }

    #[test]
    fn link_up_without_probes_is_up_at_once() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(false, t0);
        assert_eq!(h.state(), State::Down);
        let t = h.on_link(true, true, false, t0 + ms(5)).expect("up");
        assert_eq!(t.to, State::Up);
    }

    #[test]
    fn an_address_gone_is_down_with_its_own_cause() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        let t = h.on_link(true, false, true, t0).expect("down");
        assert_eq!(t.cause, Cause::AddressGone);
    }

    #[test]
    fn one_lost_probe_is_suspect_and_the_next_answer_clears_it() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        h.on_probe_answered(ms(30), t0);
        let t = h.on_probe_lost(t0 + ms(300)).expect("suspect");
        assert_eq!((t.to, t.cause), (State::Suspect, Cause::ProbeLost(1)));
        let t = h.on_probe_answered(ms(30), t0 + ms(400)).expect("up");
        assert_eq!(t.to, State::Up);
    }

    #[test]
    fn two_lost_probes_in_a_row_are_down_and_recovery_needs_three_answers() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        h.on_probe_answered(ms(30), t0 + ms(100));
        h.on_probe_lost(t0 + ms(450));
        let t = h.on_probe_lost(t0 + ms(550)).expect("down");
        assert_eq!((t.to, t.cause), (State::Down, Cause::ProbeLost(2)));
        assert_eq!(t.after, ms(450), "silent since the last answer");
        assert_eq!(h.on_probe_lost(t0 + ms(800)), None, "already down");
        assert_eq!(h.on_probe_answered(ms(30), t0 + ms(5000)), None);
        assert_eq!(h.on_probe_answered(ms(30), t0 + ms(5250)), None);
        let t = h.on_probe_answered(ms(30), t0 + ms(5500)).expect("up");
        assert_eq!(t.after, ms(4950), "how long it was down");
        assert_eq!(h.transitions(), 3);
        assert_eq!(h.probe_counts(), (0, 4, 3));
    }

    #[test]
    fn a_loss_between_answers_restarts_the_recovery_count() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        h.on_probe_lost(t0);
        h.on_probe_lost(t0);
        h.on_probe_answered(ms(20), t0);
        h.on_probe_answered(ms(20), t0);
        h.on_probe_lost(t0);
        h.on_probe_answered(ms(20), t0);
        h.on_probe_answered(ms(20), t0);
        assert_eq!(h.state(), State::Down);
        h.on_probe_answered(ms(20), t0);
        assert_eq!(h.state(), State::Up);
    }

    #[test]
    fn probes_unavailable_brings_back_a_path_with_link_only() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        h.on_probe_lost(t0);
        h.on_probe_lost(t0);
        let t = h.on_probes_unavailable(t0).expect("up");
        assert_eq!((t.to, t.cause), (State::Up, Cause::ProbesUnavailable));
        let mut h = PathHealth::new(false, t0);
        assert_eq!(h.on_probes_unavailable(t0), None);
    }

    #[test]
    fn answers_do_not_bring_back_a_path_without_link() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(false, t0);
        for _ in 0..5 {
            assert_eq!(h.on_probe_answered(ms(20), t0), None);
        }
        assert_eq!(h.state(), State::Down);
    }

    #[test]
    fn probe_timeout_follows_the_round_trip_time_within_bounds() {
        let t0 = Instant::now();
        let mut h = PathHealth::new(true, t0);
        assert_eq!(h.probe_timeout(), MAX_PROBE_TIMEOUT);
        h.on_probe_answered(ms(10), t0);
        assert_eq!(h.probe_timeout(), MIN_PROBE_TIMEOUT);
        let mut h = PathHealth::new(true, t0);
        h.on_probe_answered(ms(100), t0);
        assert_eq!(h.probe_timeout(), ms(240));
        let mut h = PathHealth::new(true, t0);
        h.on_probe_answered(ms(900), t0);
        assert_eq!(h.probe_timeout(), MAX_PROBE_TIMEOUT);
    }
}
