//! The floor every connection stands on: [`Shared`], the server-wide state
//! (configuration, outbound connector, users, caps, sessions, UDP
//! associations, counters), and [`Outcome`], the record of one connection
//! that its handshake and command fill in and its log line and counters
//! read.
//!
//! It knows the services it holds and nothing above them: no handshake, no
//! command, no connection driver.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::associations::Associations;
use crate::config::Settings;
use crate::limits::Limits;
use crate::logins::{FailedLogins, UserCaps, UserSlot};
use crate::outbound::Connector;
use crate::probes::ProbeLimits;
use crate::relay::{Cutoff, RelayOptions, RelayStats};
use crate::session::Sessions;
use crate::stats::Stats;
use crate::store::Store;
use crate::sys::Transport;
use crate::users::Users;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub settings: Settings,
    /// Outbound connections under the egress policy.
    pub connector: Connector,
    /// Users, when authentication is required.
    pub users: Option<RwLock<Users>>,
    /// Connection caps.
    pub limits: Arc<Limits>,
    /// SOCKS6 sessions and their token windows.
    pub sessions: Sessions,
    /// UDP associations.
    pub udp: Associations,
    /// Failed logins per source.
    pub failed_logins: FailedLogins,
    /// Concurrent connections per user.
    pub user_caps: Arc<UserCaps>,
    /// Counters for the admin endpoint.
    pub stats: Arc<Stats>,
    /// Rate limits for path probes.
    pub probe_limits: ProbeLimits,
    /// The shared idempotence store (`--state`); `None`: in this process.
    pub store: Option<Store>,
    /// The end of the shutdown drain: relays still open then are reset.
    pub cutoff: Cutoff,
}

impl Shared {
    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.users.is_some()
    }

    /// Checks credentials from `source`; true when no authentication is
    /// configured. A source with too many recent failures is refused
    /// without the password being checked; a failure is counted against
    /// the source.
    pub fn verify(&self, source: Option<IpAddr>, username: &[u8], password: &[u8]) -> bool {
        let Some(users) = &self.users else {
            return true;
        };
        let source = source.unwrap_or(IpAddr::from([0; 4]));
        let now = std::time::Instant::now();
        let user = String::from_utf8_lossy(username);
        if self.failed_logins.is_blocked(source, now) {
            tracing::warn!(%source, %user, "login refused: too many failed logins from this source");
            self.stats.login_refused();
            return false;
        }
        let ok = users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .verify(username, password);
        if !ok {
            self.stats.auth_failure();
            let n = self.failed_logins.record_failure(source, now);
            if n == self.failed_logins.max_failures() {
                tracing::warn!(
                    %source,
                    %user,
                    failures = n,
                    window_secs = self.failed_logins.window().as_secs(),
                    "too many failed logins: source refused for the rest of the window"
                );
            }
        }
        ok
    }

    /// Takes a connection slot for the authenticated user of `out` (kept in
    /// `out` for the life of the connection); false when the user is at
    /// `--max-connections-per-user`. True without a user.
    pub fn hold_user_slot(&self, out: &mut Outcome) -> bool {
        let Some(user) = &out.user else {
            return true;
        };
        if let Some(slot) = self.user_caps.acquire(user) {
            out.user_slot = Some(slot);
            true
        } else {
            tracing::warn!(%user, "connection refused: per-user connection cap reached");
            false
        }
    }

    /// Relay settings from the configuration.
    pub fn relay_options(&self) -> RelayOptions {
        RelayOptions {
            idle_timeout: self.settings.idle_timeout,
            ..RelayOptions::default()
        }
    }
}

/// What the log line of a finished connection says.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The protocol, once detected.
    pub protocol: Option<&'static str>,
    /// The authenticated user.
    pub user: Option<String>,
    /// The requested target.
    pub target: Option<String>,
    /// The reply sent (protocol-specific code), or why the handshake ended.
    pub reply: String,
    /// The relay's counts, if the connection got that far.
    pub relay: Option<RelayStats>,
    /// The client's address (always set by the connection driver).
    pub source: Option<IpAddr>,
    /// The user's connection slot, held until the connection ends.
    pub user_slot: Option<UserSlot>,
    /// Whether the connection came in on a TLS listener.
    pub tls: bool,
    /// The kind of TLS handshake made, once it succeeded.
    pub tls_handshake: Option<sixpath_net::tls::Handshake>,
}

impl Outcome {
    /// The log line's `tls` field: `no` (plain listener), `full` or
    /// `resumed` (the handshake made), `failed` (no handshake completed).
    pub fn tls_name(&self) -> &'static str {
        match (self.tls, self.tls_handshake) {
            (false, _) => "no",
            (true, None) => "failed",
            (true, Some(h)) => h.name(),
        }
    }

    /// Counts the finished connection in `stats` (beside its log line).
    pub fn record(&self, stats: &Stats, transport: Transport) {
        stats.record(transport, self.protocol, &self.reply, self.relay.as_ref());
    }
}
