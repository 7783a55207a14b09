//! sixpath-client: the handset-side local proxy. Accepts SOCKS5/4a, HTTP proxy
//! and SOCKS6 from applications and carries each connection over one
//! Multipath TCP connection to sixpath-server.
//!
//! # Layout
//!
//! Front-ends, the upstream dialer and the path manager land here as the
//! client is built; wire formats live in `sixpath-protocol`.
//!
//! - [`paths`]: the path manager (MPTCP endpoints per interface over
//!   generic netlink, address-change following, `ip mptcp` advice).
//! - [`doctor`]: `sixpath-client doctor`, checks of the host and the path
//!   to the server, each problem with the command that fixes it.

pub mod doctor;
pub mod paths;
