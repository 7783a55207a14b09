//! End-to-end tests on the multipath testbed (`scripts/testbed`, see
//! `docs/testbed.md`): a phone with Wi-Fi and LTE, an operator network with
//! `sixpath-server`, an internet with origins, each in its own network
//! namespace, shaped with tbf and delayed by `sixpath-linkem`.
//!
//! Needs root; without it every test prints a loud SKIP and returns. The
//! tests take turns (one testbed at a time) because they measure
//! throughput on a shared machine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    missing_docs,
    unreachable_pub
)]

mod bed;
mod browser;
mod client_chain;
mod fleet;
mod flows;
mod lifecycle;
mod linkem;
mod mptcp;
mod netns;
mod proxy;
