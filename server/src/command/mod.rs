//! The commands, one module per command: each serves a request a handshake
//! accepted and answers it in the client's protocol.
//!
//! - [`noop`]: SOCKS6 NOOP.
//! - [`connect`]: CONNECT for SOCKS5, SOCKS4, SOCKS6 and Convert; returns
//!   the [`Handoff`] the connection relays.
//! - [`bind`]: BIND for SOCKS5, SOCKS4 and SOCKS6.
//! - [`udp`]: UDP ASSOCIATE for SOCKS5 and SOCKS6.
//!
//! This module owns what the commands share: the hand-off to the relay
//! ([`Handoff`], [`relay_with_leftover`]), the SOCKS reply code of a
//! failed outbound connection, and the checks of a requested bind address.
//! Commands stand on the server state and the services (`outbound`,
//! `relay`, `session`, `policy`, `associations`); they know no handshake
//! and no connection driver.

pub mod bind;
pub mod connect;
pub mod noop;
pub mod probe;
pub mod udp;

use std::net::IpAddr;

use bytes::BytesMut;
use sixpath_net::framed::Framed;
use sixpath_protocol::socks6::{OperationReply, SessionId, SocksOption};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::outbound::ConnectError;
use crate::relay::{self, Cutoff, RelayOptions, RelayStats};
use sixpath_net::framed::Reset;

/// What a successful CONNECT hands to the relay: the client stream, the
/// bytes the client sent past its request (for the target), the connected
/// target, and how many bytes already reached the target with the
/// connection (Initial Data in the SYN). The command returns it, so its
/// future, with the request, the resolver and the connect attempts, is
/// freed before the relay starts: an idle relayed connection holds only
/// what the relay needs.
pub struct Handoff<S> {
    client: S,
    leftover: BytesMut,
    target: TcpStream,
    delivered: u64,
}

impl<S> Handoff<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    /// The client stream and its unread bytes from `framed`.
    pub fn new(framed: Framed<S>, target: TcpStream, delivered: u64) -> Self {
        let (client, leftover) = framed.into_parts();
        Self::from_parts(client, leftover, target, delivered)
    }

    /// From its parts.
    pub fn from_parts(client: S, leftover: BytesMut, target: TcpStream, delivered: u64) -> Self {
        Self {
            client,
            leftover,
            target,
            delivered,
        }
    }

    /// Writes the leftover bytes to the target, frees them, then relays
    /// ([`relay::relay_borrowed`]: an abnormal end reaches the other side
    /// as a reset). The streams stay in `self` (closed when it is
    /// dropped), so the relay's future borrows them where they are instead
    /// of holding copies: every idle relayed connection pays for each
    /// byte of its task's largest state.
    #[allow(clippy::manual_async_fn)] // Arguments kept once, not twice.
    pub fn relay<'a>(
        &'a mut self,
        opts: RelayOptions,
        cutoff: &'a Cutoff,
    ) -> impl Future<Output = RelayStats> + 'a
    where
        S: Reset,
    {
        async move {
            let pre = self.leftover.len() as u64;
            if pre > 0 && self.target.write_all(&self.leftover).await.is_err() {
                // The target is gone before the client's first bytes: the
                // client must not see a clean end.
                let _ = self.client.reset_on_close();
                return RelayStats {
                    client_to_target: self.delivered,
                    target_to_client: 0,
                    end: relay::RelayEnd::TargetError,
                    path: relay::RelayPath::Copy,
                };
            }
            // Freed before a relay that may stay idle for hours.
            self.leftover = BytesMut::new();
            let mut stats =
                relay::relay_borrowed(&mut self.client, &mut self.target, opts, cutoff).await;
            stats.client_to_target += self.delivered + pre;
            stats
        }
    }
}

/// Writes the leftover handshake bytes to the target, frees them, then
/// relays ([`Handoff::relay`]).
pub fn relay_with_leftover<S>(
    client: S,
    leftover: impl AsRef<[u8]>,
    target: TcpStream,
    opts: RelayOptions,
    cutoff: &Cutoff,
) -> impl Future<Output = RelayStats>
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let mut handoff = Handoff::from_parts(client, BytesMut::from(leftover.as_ref()), target, 0);
    async move { handoff.relay(opts, cutoff).await }
}

/// The SOCKS reply code (the same values in SOCKS5 and SOCKS6, 0x01–0x09)
/// for a failed outbound connection. SOCKS5 has no 0x09: its CONNECT maps
/// a timeout to host unreachable (0x04) itself.
pub fn socks_reply_code(e: &ConnectError) -> u8 {
    match e {
        ConnectError::Denied { .. } => 0x02,
        ConnectError::NetworkUnreachable { .. } => 0x03,
        ConnectError::HostUnreachable { .. } | ConnectError::Dns { .. } => 0x04,
        ConnectError::Refused(_) => 0x05,
        ConnectError::TtlExpired(_) => 0x06,
        ConnectError::TimedOut(_) => 0x09,
        ConnectError::Resources(_) | ConnectError::Other(_) => 0x01,
    }
}

/// A new Session ID goes into the successful Operation Reply too: "Session
/// ID Option in the successful Operation Reply" (-11 text; digest §5.2).
pub(crate) fn push_session_id(reply: &mut OperationReply, id: Option<&SessionId>) {
    if let Some(id) = id {
        let _ = reply.options.push(SocksOption::SessionId(id.clone()));
    }
}

/// Ports a client may not ask a SOCKS6 BIND or UDP ASSOCIATE to use.
pub(crate) const fn privileged(port: u16) -> bool {
    port != 0 && port < 1024
}

/// The configured IP of `v6`'s family in `list`.
pub(crate) fn for_family(list: &[IpAddr], v6: bool) -> Option<IpAddr> {
    list.iter().copied().find(|ip| ip.is_ipv6() == v6)
}
