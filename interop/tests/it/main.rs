//! End-to-end tests with real third-party programs. A test whose program
//! is missing prints `SKIP <test>: <reason>` and returns.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod client;
mod client_ops;
mod client_socks6;
mod curl;
mod early_data;
mod ends;
mod haproxy;
mod openssl;
mod readme;
mod socksify;
mod support;
