//! Integration tests of the `sixpath-client` binary: the command line and
//! the configuration file, exit codes and messages.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod cli;
