//! `--advertise`: the instance's own addresses, announced to every
//! Multipath TCP connection, so that a client behind a load balancer opens
//! its extra subflows straight to the instance that holds its connection.
//!
//! The announcements are the kernel's: each address becomes an in-kernel
//! path-manager endpoint with the `signal` flag (generic netlink family
//! `mptcp_pm`, `include/uapi/linux/mptcp_pm.h`, what `ip mptcp endpoint add
//! ADDR signal` does), and the kernel sends `ADD_ADDR` for it on every MPTCP
//! connection (RFC 8684 §3.4.1). The service address itself must refuse
//! joins, or a client's join to it would be balanced to an instance that
//! does not know the connection: `net.mptcp.allow_join_initial_addr_port`
//! = 0 (Linux `Documentation/networking/mptcp-sysctl.rst`) makes the
//! server set the C flag in its `MP_CAPABLE` (RFC 8684 §3.1), telling the
//! client not to join the initial address and port.
//!
//! Endpoints belong to the network namespace; the ones this server
//! installed are removed when a drain starts and on exit (also when the
//! server fails after start-up), endpoints that were there before are
//! left alone. Changing them needs `CAP_NET_ADMIN`.

use std::io;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use sixpath_net::netlink::mptcp_pm::{Endpoint, EndpointFlags, MptcpPm};

/// The sysctl that lets peers join the address and port a connection
/// started on.
pub const ALLOW_JOIN_INITIAL: &str = "net/mptcp/allow_join_initial_addr_port";

/// Why the addresses could not be advertised.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    /// The path manager could not be reached (a kernel without MPTCP).
    #[error("--advertise: cannot reach the kernel's MPTCP path manager: {0}")]
    PathManager(io::Error),
    /// An endpoint could not be installed (no `CAP_NET_ADMIN`, a
    /// conflicting endpoint).
    #[error("--advertise {addr}: {source}")]
    Endpoint {
        /// The address.
        addr: IpAddr,
        /// The kernel's refusal.
        source: io::Error,
    },
}

/// The `signal` endpoints this server installed; withdrawn on
/// [`Advertised::withdraw`] or drop.
#[derive(Debug)]
pub struct Advertised {
    pm: Mutex<Option<MptcpPm>>,
    /// Endpoint ids this server owns, with their addresses.
    installed: Vec<(u8, IpAddr)>,
}

impl Advertised {
    /// Installs a `signal` endpoint for each of `addrs` (an address that
    /// already has a `signal` endpoint is kept and left in place on exit),
    /// then makes the initial address refuse joins (a failure there is
    /// logged, not fatal).
    pub fn install(addrs: &[IpAddr]) -> Result<Self, AdvertiseError> {
        let pm = MptcpPm::open().map_err(AdvertiseError::PathManager)?;
        let mut this = Self {
            pm: Mutex::new(Some(pm)),
            installed: Vec::new(),
        };
        // On an error `this` is dropped, withdrawing what was installed.
        for &addr in addrs {
            let pm = this.pm.get_mut().unwrap_or_else(PoisonError::into_inner);
            let Some(pm) = pm.as_mut() else { break };
            if let Some(id) = install_one(pm, addr)? {
                tracing::info!(%addr, id, "advertising to MPTCP peers (signal endpoint)");
                this.installed.push((id, addr));
            }
        }
        refuse_initial_joins();
        Ok(this)
    }

    /// The addresses this server installed endpoints for.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.installed.iter().map(|&(_, a)| a)
    }

    /// Removes the endpoints this server installed (once; later calls do
    /// nothing). The kernel withdraws the addresses from live connections
    /// (`REMOVE_ADDR`) and closes their subflows to them; the connections
    /// go on over their initial subflow.
    pub fn withdraw(&self) {
        let Some(mut pm) = self
            .pm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        for &(id, addr) in &self.installed {
            match pm.delete_endpoint(id) {
                Ok(()) => tracing::info!(%addr, id, "advertisement withdrawn"),
                Err(e) => {
                    tracing::warn!(%addr, id, error = %e, "cannot withdraw the advertisement");
                }
            }
        }
    }
}

impl Drop for Advertised {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// Adds a `signal` endpoint for `addr` and answers its id, or `None` when
/// one was there already (not this server's to remove).
fn install_one(pm: &mut MptcpPm, addr: IpAddr) -> Result<Option<u8>, AdvertiseError> {
    let ep = Endpoint {
        id: 0,
        addr,
        port: 0,
        flags: EndpointFlags::SIGNAL,
        ifindex: 0,
    };
    let failed = |source| AdvertiseError::Endpoint { addr, source };
    match pm.add_endpoint(&ep) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let list = pm.endpoints().map_err(failed)?;
            if list
                .iter()
                .any(|x| x.addr == addr && x.flags.contains(EndpointFlags::SIGNAL))
            {
                tracing::info!(%addr, "already advertised by an endpoint this server did not install");
                return Ok(None);
            }
            return Err(failed(e));
        }
        Err(e) => return Err(failed(e)),
    }
    // The kernel chose the id: find it.
    let list = pm.endpoints().map_err(failed)?;
    list.iter()
        .find(|x| x.addr == addr)
        .map(|x| Some(x.id))
        .ok_or_else(|| failed(io::Error::other("the endpoint vanished after it was added")))
}

/// Sets `net.mptcp.allow_join_initial_addr_port` to 0 in this namespace,
/// or says clearly why the service address still accepts joins.
fn refuse_initial_joins() {
    match sixpath_net::sys::sysctl_int(ALLOW_JOIN_INITIAL) {
        Some(0) => tracing::info!(
            "net.mptcp.allow_join_initial_addr_port is 0: the service address refuses joins"
        ),
        Some(_) => match std::fs::write(format!("/proc/sys/{ALLOW_JOIN_INITIAL}"), "0") {
            Ok(()) => tracing::info!(
                "net.mptcp.allow_join_initial_addr_port set to 0: the service address refuses joins"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "cannot set net.mptcp.allow_join_initial_addr_port to 0: clients may join the \
                 service address, and the balancer may send those joins to another instance. \
                 Fix: sysctl -w net.mptcp.allow_join_initial_addr_port=0"
            ),
        },
        None => tracing::error!(
            "cannot read net.mptcp.allow_join_initial_addr_port: check that the kernel has MPTCP"
        ),
    }
}
