//! sixpath-client integration tests: the command line and configuration
//! file, the path manager, per-subflow statistics and `doctor`. Tests that
//! need network namespaces (root) print `SKIP <test>: <reason>` without
//! them.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod cli;
mod doctor;
mod limits;
mod logins;
mod mptcp;
mod netns;
mod ops;
mod paths;
mod sink;
mod web;
