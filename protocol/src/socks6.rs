//! SOCKS Protocol Version 6, draft-olteanu-intarea-socks-6-11.
//!
//! # Layout
//!
//! - [`address`]: address bodies, with both domain-name padding conventions.
//! - [`udp`]: UDP association messages, over the TCP stream and UDP/DTLS.

pub mod address;
pub mod udp;
