//! sixpath-client: the handset-side local proxy. Accepts SOCKS5/4a, HTTP
//! proxy, SOCKS6 and transparently diverted connections from applications
//! and carries each one over its own Multipath TCP connection to
//! sixpath-server, speaking SOCKS6 (0-RTT: request, credentials and the
//! application's first bytes in the SYN) or RFC 8803 Convert.
//!
//! # Layout
//!
//! - [`client`]: front-end listeners and the accept loop.
//! - [`conn`]: one application connection: handshake, early reply, the
//!   server connection, relay, log line.
//! - [`frontend`]: SOCKS5, SOCKS4/4a, HTTP, SOCKS6 and transparent
//!   front-ends.
//! - [`upstream`]: the MPTCP + TFO connection to the server, SOCKS6 and
//!   Convert.
//! - [`udp`]: SOCKS5 UDP ASSOCIATE carried as SOCKS6 UDP ASSOCIATE.
//! - [`failure`]: failure classes and their reply in every protocol.
//! - the buffered handshake reader is `sixpath_net::framed`, shared with the
//!   server.
//! - [`config`]: command line and JSON configuration, validated into
//!   [`config::Settings`].
//! - [`paths`]: the path manager (MPTCP endpoints per interface over
//!   generic netlink, address-change following, `ip mptcp` advice).
//! - [`stats`]: counters behind the admin endpoint (`/stats`, `/metrics`).
//! - [`status`]: `sixpath-client status`, a running client's statistics.
//! - [`web`]: the admin endpoint's pages: `/stats`, `/metrics`, the status
//!   page and its JSON API, the guarded policy switch.
//! - [`doctor`]: `sixpath-client doctor`, checks of the host and the path
//!   to the server, each problem with the command that fixes it.
//!
//! Wire formats live in `sixpath-protocol`; socket helpers and the relay in
//! `sixpath-net`.

pub mod client;
pub mod config;
pub mod conn;
pub mod doctor;
pub mod failure;
pub mod frontend;
pub mod paths;
pub mod stats;
pub mod status;
pub mod udp;
pub mod upstream;
pub mod web;
