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
//! - [`relay`]: the bidirectional copy with half-close and idle timeout.
//! - [`users`]: the users file, constant-time password checks.
//! - [`limits`]: caps on connections in total and per source.
//! - [`sys`]: the socket options that need `libc` (the crate's only unsafe
//!   code).

pub mod config;
pub mod conn;
pub mod handshake;
pub mod limits;
pub mod outbound;
pub mod policy;
pub mod relay;
pub mod server;
pub mod sys;
pub mod users;
