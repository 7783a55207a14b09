//! sixpath-server: the operator-side proxy. Accepts SOCKS6, RFC 8803
//! Convert and SOCKS5/4a over Multipath TCP and relays to ordinary TCP
//! servers.
//!
//! # Layers
//!
//! Every import points down:
//!
//! ```text
//! server       listeners, accept loop, admin endpoint, reloads
//!   ↓
//! conn         one connection: caps, deadline, detection,
//!   ↓          handshake → command → log line
//! handshake/   decode, authenticate → a typed request
//! command/     serve a request: noop, connect, bind, udp
//!   ↓          (side by side: neither imports the other)
//! state        Shared (server-wide state), Outcome (one connection's record)
//!   ↓
//! config       the validated settings
//!   ↓
//! services     outbound → policy   session → secret, store   users
//!              associations   limits   logins   stats   advertise
//! ```
//!
//! A handshake returns the request it accepted and [`conn`] hands it to
//! its command, so a command changes without reading a handshake, and the
//! reverse. [`state`] holds the services and knows nothing above them;
//! [`stats`] counts what an [`state::Outcome`] reports. `config` names the
//! settings types of `policy`, `session` and `secret`, which take their
//! error type from `sixpath-service`, not from `config`.
//! Socket helpers, the relay loop, the handshake reader and TLS come from
//! `sixpath-net`, wire formats from `sixpath-protocol`; the config file,
//! logging, exit codes, signals and the failed-login limiter from
//! `sixpath-service`.
//!
//! # Layout
//!
//! - [`server`]: listeners (MPTCP, TFO) and the accept loop.
//! - [`conn`]: one connection: caps, deadline, protocol detection, the
//!   handshake, its command, the log line.
//! - [`handshake`]: SOCKS5/4a, SOCKS6 and Convert handshakes, each ending
//!   in a typed request.
//! - [`command`]: one module per command (NOOP, CONNECT, BIND, UDP
//!   ASSOCIATE), and the hand-off to the relay.
//! - [`state`]: [`state::Shared`], what every connection shares, and
//!   [`state::Outcome`], what one connection's log line says.
//! - [`config`]: command line and JSON configuration, validated into
//!   [`config::Settings`].
//! - [`policy`]: the egress policy (secure by default).
//! - [`outbound`]: DNS, Happy Eyeballs, TCP Fast Open, failure
//!   classification.
//! - [`secret`]: the HMAC key behind session IDs, tokens and cookies.
//! - [`users`]: the users file, constant-time password checks.
//! - [`session`]: SOCKS6 sessions (capped in all, per user and per
//!   source), idempotence token windows and the listeners Listen Backlogs
//!   keep open.
//! - [`associations`]: the server's UDP associations: cap, IDs, counters.
//! - [`limits`]: caps on connections in total and per source (shared with
//!   the client, from `sixpath-service`).
//! - [`probes`]: rate limits for path probes (answered in
//!   [`command::probe`]).
//! - [`logins`]: failed-login limiting per source, per-user connection caps.
//! - [`store`]: `--state`, idempotence windows in a shared Redis/Valkey
//!   server, with a deadline, failing closed for tokens.
//! - [`advertise`]: `--advertise`, the instance's own addresses as
//!   in-kernel MPTCP `signal` endpoints, withdrawn on drain and exit.
//! - [`stats`]: counters behind the admin endpoint's `/stats` and
//!   `/metrics`.

pub mod advertise;
pub mod associations;
pub mod command;
pub mod config;
pub mod conn;
pub mod handshake;
pub use sixpath_service::limits;
pub mod logins;
pub mod outbound;
pub mod policy;
pub mod probes;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod stats;
pub mod store;
pub mod users;

pub use sixpath_net::{relay, sys};
