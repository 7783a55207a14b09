//! sixpath-client: the handset-side local proxy. Accepts SOCKS5/4a, HTTP proxy
//! and SOCKS6 from applications and carries each connection over one
//! Multipath TCP connection to sixpath-server.
//!
//! # Layout
//!
//! Front-ends, the upstream dialer and the path manager land here as the
//! client is built; wire formats live in `sixpath-protocol`.
