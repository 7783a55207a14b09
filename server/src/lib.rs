//! sixpath-server: the operator-side proxy. Accepts SOCKS6, Convert (RFC 8803)
//! and SOCKS5/4a over Multipath TCP and relays to ordinary TCP servers.
//!
//! # Layout
//!
//! The listener, handshakes, outbound connect, policy and relay modules land
//! here as the server is built; wire formats live in `sixpath-protocol`.
