//! End-to-end test harness for sixpath: runs the real binaries beside
//! third-party programs (curl, iperf3, proxychains, dante) on loopback or in
//! network namespaces it creates.
//!
//! [`bench`](mod@bench) is the load generator behind the `sixpath-bench` binary and
//! `scripts/bench`.

pub mod bench;
pub mod linkem;
