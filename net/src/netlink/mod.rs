//! Netlink from user space: the framing ([`wire`]), a request/reply socket
//! ([`socket`]) and the kernel's MPTCP path manager over generic netlink
//! ([`mptcp_pm`], family `mptcp_pm`, what `ip mptcp` uses). The client
//! installs its path endpoints with it, the server its advertised
//! (`signal`) addresses.

pub mod mptcp_pm;
pub mod socket;
pub mod wire;
