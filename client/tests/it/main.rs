//! sixpath-client integration tests. Tests that need network namespaces
//! (root) print `SKIP <test>: <reason>` without them.

mod doctor;
mod mptcp;
mod netns;
mod paths;
mod sink;
