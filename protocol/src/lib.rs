//! Wire formats of sixpath, without I/O.
//!
//! This crate turns bytes into typed messages and back for every protocol
//! sixpath speaks: SOCKS6 (draft-olteanu-intarea-socks-6-11) between client
//! and server, SOCKS5 (RFC 1928, RFC 1929) and SOCKS4/4a from applications,
//! the 0-RTT TCP Convert protocol (RFC 8803), HTTP/1.x proxy request
//! heads, and the PROXY protocol v2 header of load balancers. It has no
//! sockets, no async runtime and no clock; callers feed it bytes and get
//! back messages, so the same code serves the server, the client, the
//! tests and the fuzzers.
//!
//! Every decoder is incremental: given the bytes received so far it answers
//! [`Decoded::Complete`] with the message and how many bytes it used,
//! [`Decoded::NeedMore`] with how many more it needs at least, or a typed
//! error that knows which reply the peer must get. Bytes after a complete
//! handshake message belong to the application and are left to the caller.
//!
//! # Layout
//!
//! - [`codec`]: the checked [`codec::Reader`], [`Decoded`], length
//!   back-filling, the [`code_point!`] macro for open code points.
//! - [`addr`]: [`Address`], [`Endpoint`], [`DomainName`], [`AddressType`].
//! - [`socks6`]: SOCKS6 requests, replies, options and UDP association
//!   messages.
//! - [`socks5`]: SOCKS5 method negotiation, RFC 1929, requests, replies, UDP
//!   headers, and SOCKS4/4a.
//! - `rfc1929`: the username/password wire format both SOCKS versions
//!   carry, with the empty-field policy as a parameter.
//! - [`convert`]: RFC 8803 header and TLVs, error codes and the echo rule.
//! - [`http`]: HTTP/1.x proxy request heads (`CONNECT` and absolute-form).
//! - [`probe`]: the path probe (keyed UDP echo) a client sends over each
//!   of its paths.
//! - [`proxy`]: the PROXY protocol version 2 header a load balancer puts
//!   before a client's bytes.
#![forbid(unsafe_code)]

pub mod addr;
pub mod codec;
pub mod convert;
pub mod http;
pub mod probe;
pub mod proxy;
mod rfc1929;
pub mod socks5;
pub mod socks6;

pub use addr::{Address, AddressType, DomainName, Endpoint};
pub use codec::Decoded;
