//! sixpath-server: the operator-side proxy. Accepts SOCKS6, RFC 8803
//! Convert and SOCKS5/4a over Multipath TCP and relays to ordinary TCP
//! servers.
//!
//! # Layout
//!
//! - [`server`]: listeners (MPTCP, TFO) and the accept loop.
//! - [`conn`]: one connection: caps, deadline, protocol detection, log line.
//! - [`handshake`]: SOCKS5/4a and SOCKS6 handshakes.
//! - [`config`]: command line and JSON configuration, validated into
//!   [`config::Settings`].
//! - [`policy`]: the egress policy (secure by default).
//! - [`outbound`]: DNS, Happy Eyeballs, TCP Fast Open, failure
//!   classification.
//! - [`secret`]: the HMAC key behind session IDs, tokens and cookies.
//! - [`users`]: the users file, constant-time password checks.
//! - [`session`]: SOCKS6 sessions and idempotence token windows.
//! - [`limits`]: caps on connections in total and per source.
//! - [`bind`]: BIND for SOCKS5, SOCKS4 and SOCKS6.
//! - [`udp`]: UDP ASSOCIATE for SOCKS5 and SOCKS6.
//! - [`logins`]: failed-login limiting per source, per-user connection caps.
//! - [`stats`]: counters behind the admin endpoint's `/stats` and
//!   `/metrics`.
//!
//! Socket helpers and the relay loop live in `sixpath-net`, shared with the
//! client.

pub mod config;
pub mod conn;
pub mod handshake;
pub mod limits;
pub mod logins;
pub mod outbound;
pub mod policy;
pub mod secret;
pub mod server;
pub mod session;
pub mod stats;
pub mod users;

pub mod bind;
pub mod udp;

pub use sixpath_net::{relay, sys};
