//! sixpath-net: the socket code shared by `sixpath-client` and
//! `sixpath-server` that is not wire format.
//!
//! - [`sys`]: Multipath TCP sockets with TCP fallback, TCP Fast Open, MPTCP
//!   introspection (`MPTCP_INFO`, `SO_PROTOCOL`), the ICMP error queue, the
//!   host's own addresses (with [`mptcp`] and [`netlink::socket`], the
//!   crate's only unsafe code).
//! - [`relay`]: the bidirectional copy with half-close and idle timeout.
//! - [`admin`]: the HTTP/1.1 server (on hyper) behind the admin endpoints.
//! - [`framed`]: the buffered handshake reader both sides decode with.
//! - [`tls`]: TLS 1.3 configurations (rustls, ring), certificate pinning,
//!   self-signed certificates.
//! - [`mptcp`]: per-subflow statistics (`MPTCP_FULL_INFO`), per interface.
//! - [`netlink`]: netlink framing, a request/reply netlink socket and the
//!   kernel's MPTCP path manager over generic netlink (`mptcp_pm`):
//!   endpoints and limits, for the client's paths and the server's
//!   advertised addresses.

pub mod admin;
pub mod framed;
pub mod mptcp;
pub mod netlink;
pub mod relay;
pub mod sys;
pub mod tls;
