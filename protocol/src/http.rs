//! HTTP/1.x proxy request heads: what an application sends to an HTTP proxy
//! (RFC 9110, RFC 9112), so the sixpath client can accept browsers, the
//! Android system proxy and anything else configured with `http_proxy`.
//!
//! Two request forms reach a proxy:
//!
//! - `CONNECT host:port HTTP/1.1` (authority-form, RFC 9112 §3.2.3): a
//!   tunnel; after the proxy answers `200`, bytes flow unchanged.
//! - `GET http://host[:port]/path?q HTTP/1.1` (absolute-form, RFC 9112
//!   §3.2.2), any method: a plain-HTTP request the proxy forwards to the
//!   origin server in origin-form, minus the hop-by-hop proxy headers.
//!
//! `httparse` tokenizes the head (request line and header fields, with a
//! fixed maximum number of headers); the request target, the
//! `Proxy-Authorization: Basic` credentials and the forwarding rules are
//! decoded here. Bytes after the head (a request body, or the first bytes of
//! a tunnel) belong to the caller.
//!
//! # Layout
//!
//! - [`request_head`]: [`RequestHead`], its decoder and both encoders.
//! - [`target`]: [`Target`], the CONNECT authority and the absolute `http://`
//!   URI.
//! - [`basic`]: [`Credentials`] of the Basic scheme (RFC 7617) and the strict
//!   base64 codec they need.
//! - [`error`]: [`Error`], the status each error answers, and the canned
//!   responses ([`error_response`], [`proxy_error_response`] with its
//!   RFC 9209 [`ProxyError`] types, [`proxy_auth_required`],
//!   [`connection_established`]).

pub mod basic;
pub mod error;
pub mod request_head;
pub mod target;

pub use basic::Credentials;
pub use error::{
    Error, MAX_PROXY_STATUS_DETAILS, ProxyError, connection_established, error_response,
    proxy_auth_required, proxy_error_response,
};
pub use request_head::{
    DEFAULT_MAX_HEAD_LEN, Header, MAX_HEADERS, NotAbsoluteForm, RequestHead, Version,
};
pub use target::Target;
