//! Transparent front-end: connections the firewall diverts to the client.
//!
//! - nftables `redirect` (NAT): the accepted socket's local address is the
//!   listener's; the original destination comes from conntrack through
//!   `SO_ORIGINAL_DST` (`IP6T_SO_ORIGINAL_DST` for IPv6).
//! - nftables `tproxy`: the listener has `IP_TRANSPARENT`, and the accepted
//!   socket's local address *is* the original destination.
//!
//! `SO_ORIGINAL_DST` is asked first; without a conntrack entry the local
//! address is used. A destination that is the listener itself (someone
//! connected to the port directly: this host's address and the listener's
//! port) is refused: there is nowhere to go.

use std::net::SocketAddr;

use sixpath_net::sys;
use sixpath_protocol::Endpoint;
use tokio::net::TcpStream;

use super::{Answer, AppRequest, Context, Refusal};
use sixpath_net::framed::Framed;

/// The original destination of a diverted connection.
pub fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    match sys::original_dst(stream, local.is_ipv6()) {
        Ok(dst) => Some(dst),
        Err(_) => Some(local),
    }
}

/// Finds where the application meant to connect.
pub fn handshake(f: &Framed<TcpStream>, cx: Context<'_>) -> Result<AppRequest, Refusal> {
    let dst = original_destination(f.get_ref())
        .ok_or_else(|| Refusal::new("no local address", Vec::new()))?;
    let dst = match dst {
        // An IPv4 destination reached through a dual-stack socket.
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => dst,
        },
        SocketAddr::V4(_) => dst,
    };
    let to_self = dst.port() == cx.listener.port()
        && (dst.ip() == cx.listener.ip()
            || dst.ip().is_loopback()
            || sys::own_addresses().contains(&dst.ip()));
    if to_self {
        return Err(Refusal::new(
            format!("connection to the transparent listener itself ({dst}): not diverted"),
            Vec::new(),
        ));
    }
    Ok(AppRequest {
        protocol: "transparent",
        target: Endpoint::from(dst),
        user: None,
        first: Vec::new(),
        answer: Answer::Transparent,
    })
}
