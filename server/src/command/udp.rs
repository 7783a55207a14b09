//! UDP ASSOCIATE for SOCKS5 (RFC 1928 §7) and SOCKS6 (draft -11 §7.3,
//! digest §2.5): one association per control connection, living until that
//! connection closes (or stays idle for `--udp-idle-timeout`).
//!
//! Every association has its own remote-facing UDP socket (dual-stack
//! `[::]:0` where the host has IPv6, else `0.0.0.0:0`). Datagrams from the
//! client go through a bounded queue to a sender task that resolves names
//! with the [`crate::outbound::Connector`]'s resolver and checks
//! every destination against the egress policy; denied datagrams are
//! dropped and counted. Datagrams arriving from a source the policy denies
//! are dropped too: a client cannot hear from where it may not send.
//!
//! - **SOCKS5.** A client-facing socket on the control connection's local
//!   address; the reply's BND is that address (or `--udp-advertise`) and
//!   the socket's port. Only datagrams from the client's addresses — the
//!   control connection's IP and, over Multipath TCP, the remote address
//!   of each of its subflows ([`PeerAddresses`], looked up again when an
//!   unknown source sends) — and from the port the client declared, if
//!   not 0, are taken; FRAG ≠ 0
//!   is dropped ("An implementation that does not support fragmentation
//!   MUST drop any datagram whose FRAG field is other than X'00'", §7).
//!   Replies go to where the client's last datagram came from.
//! - **SOCKS6.** After the Operation Reply (its bind address is the
//!   remote-facing socket), Association Initialization goes out over TCP.
//!   Datagrams come over the TCP connection (stream framing by Message
//!   Length) or over UDP to the port of the listener the client connected
//!   to (digest §2.5: "make the client-facing UDP port configuration,
//!   defaulting to the TCP control connection's port"), told apart by the
//!   random Association ID. The first datagram maps the association to its
//!   channel and is answered with Association Confirmation over TCP; later
//!   datagrams on another channel are silently dropped (§4.9). An empty
//!   datagram to `0.0.0.0:0` only asks for the Confirmation (§7.3.1).
//!   Without a first datagram within the idle timeout the association ends
//!   ("The proxy SHOULD close the TCP connection if no initial datagram
//!   arrives within a timeout"). A client that asks for them with the UDP
//!   Error Stack option (reported back as performed) gets UDP Error
//!   messages on its channel for the ICMP errors the remote-facing socket
//!   receives (`IP_RECVERR`, read off the error queue): network and host
//!   unreachable, TTL expired, `ICMPv6` Packet Too Big; ICMP errors without
//!   a code there (port unreachable) and those of clients that did not ask
//!   are drained and dropped. Port Parity is
//!   honoured when the Request asks for any port (a few sockets are tried)
//!   and reported with the parity obtained; no counterpart port is
//!   reserved (Reserve 0).
//!
//! Limits: `--max-udp-associations` in total, per authenticated user and
//! per source (the server-wide registry in [`crate::associations`]; over
//! the per-user or per-source cap the request is answered "not allowed",
//! SOCKS5 REP 02 (RFC 1928 §6) or SOCKS6 Connection not allowed by
//! ruleset (draft §6.2); over the total, general failure); per association a queue of
//! [`QUEUE`] datagrams and [`QUEUE_BYTES`] bytes towards targets, and as
//! much towards a client that takes its datagrams over TCP;
//! datagrams beyond it are dropped and counted, never buffered.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use sixpath_protocol::socks5::{Reply, ReplyCode, UdpHeader};
use sixpath_protocol::socks6::udp::{Datagram, UdpErrorCode, UdpErrorMessage, UdpMessage};
use sixpath_protocol::socks6::{
    Availability, Leg, OperationReply, Parity, ReplyCode as Socks6ReplyCode, Request, SessionId,
    SocksOption, StackOption, StackValue,
};
use sixpath_protocol::{Decoded, Endpoint};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

use sixpath_net::framed::{Framed, Reset};
use sixpath_net::mptcp::PeerAddresses;

use super::{for_family, privileged, push_session_id};
use crate::associations::{FromUdp, Slot, UdpCap, UdpStats};
use crate::outbound::Connector;
use crate::policy::unmap;
use crate::relay::{RelayEnd, RelayPath, RelayStats};
use crate::state::{Outcome, Shared};
use crate::sys;

/// Datagrams queued per association in each direction that can back up.
pub const QUEUE: usize = 256;
/// Payload bytes queued per association in each direction that can back
/// up: a slow client or a stalled DNS lookup costs at most this much.
pub const QUEUE_BYTES: usize = 256 * 1024;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Sockets opened at most to find a port of the requested parity.
const PARITY_ATTEMPTS: usize = 16;
/// How long a name in a datagram's destination may take to resolve.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes queued in one direction of one association, at most
/// [`QUEUE_BYTES`].
#[derive(Debug, Clone, Default)]
struct Budget(Arc<AtomicUsize>);

impl Budget {
    /// Reserves `n` bytes; false if that would exceed the budget.
    fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= QUEUE_BYTES).then_some(q + n)
            })
            .is_ok()
    }

    /// Releases `n` bytes.
    fn give(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Receives SOCKS6 datagrams sent over UDP to a listener's port and hands
/// each to its association; path probes go to [`super::probe`]; anything
/// else is dropped (there is no error reply on the UDP channel, §4.9).
pub async fn serve_listener(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // Not a per-datagram error (the socket is unconnected):
                // back off instead of spinning.
                tracing::warn!(error = %e, "UDP listener receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let data = buf.get(..n).unwrap_or_default();
        if sixpath_protocol::probe::is_probe(data) {
            super::probe::answer(&socket, data, from, &shared);
            continue;
        }
        let msg = UdpMessage::decode_datagram(data);
        let Ok(UdpMessage::Datagram(datagram)) = msg else {
            UdpStats::add(&shared.udp.stats.rejected, 1);
            continue;
        };
        let tx = shared.udp.ids().get(&datagram.id).cloned();
        let Some(tx) = tx else {
            UdpStats::add(&shared.udp.stats.rejected, 1);
            continue;
        };
        let item = FromUdp {
            socket: Arc::clone(&socket),
            // As received: replies go back through the same socket, which
            // may be dual-stack and then needs the mapped form.
            from,
            datagram,
        };
        if tx.try_send(item).is_err() {
            UdpStats::add(&shared.udp.stats.queue_full, 1);
        }
    }
}

/// Binds the client-facing UDP socket of a listener (same address and
/// port as the TCP listener).
pub fn bind_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(false);
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// The remote-facing socket: dual-stack when possible. `want` is a
/// requested bind address (SOCKS6), else any.
fn remote_socket(want: Option<SocketAddr>) -> io::Result<(UdpSocket, bool)> {
    let open = |addr: SocketAddr| -> io::Result<UdpSocket> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            sock.set_only_v6(!addr.ip().is_unspecified())?;
        }
        sock.set_nonblocking(true)?;
        // ICMP errors about sent datagrams go to the error queue (ip(7),
        // ipv6(7) `IP_RECVERR`): relayed to SOCKS6 clients that asked for
        // them, drained for the others. A dual-stack socket needs both,
        // for its IPv4 and IPv6 destinations.
        if addr.is_ipv6() {
            let _ = sys::enable_recverr(&sock, true);
        }
        let _ = sys::enable_recverr(&sock, false);
        sock.bind(&addr.into())?;
        UdpSocket::from_std(sock.into())
    };
    if let Some(addr) = want {
        return open(addr).map(|s| (s, addr.is_ipv6()));
    }
    match open((Ipv6Addr::UNSPECIFIED, 0).into()) {
        Ok(s) => Ok((s, true)),
        Err(_) => open((Ipv4Addr::UNSPECIFIED, 0).into()).map(|s| (s, false)),
    }
}

/// The SOCKS6 UDP Error code (draft -11 §7.3, Error message) for an ICMP
/// error: Destination Unreachable "net" and "host" codes (RFC 792; RFC 4443
/// "no route" and "address unreachable"), Time Exceeded, and `ICMPv6`
/// Packet Too Big. Others (port unreachable among them) have no code.
fn udp_error_code(e: &sys::IcmpError) -> Option<UdpErrorCode> {
    const ICMP: u8 = 2; // SO_EE_ORIGIN_ICMP
    const ICMP6: u8 = 3; // SO_EE_ORIGIN_ICMP6
    match (e.origin, e.icmp_type, e.code) {
        (ICMP, 3, 0 | 6 | 9 | 11) | (ICMP6, 1, 0) => Some(UdpErrorCode::NETWORK_UNREACHABLE),
        (ICMP, 3, 1 | 7 | 10 | 12) | (ICMP6, 1, 3) => Some(UdpErrorCode::HOST_UNREACHABLE),
        (ICMP, 11, _) | (ICMP6, 3, _) => Some(UdpErrorCode::TTL_EXPIRED),
        (ICMP6, 2, _) => Some(UdpErrorCode::DATAGRAM_TOO_BIG),
        _ => None,
    }
}

/// ICMP errors read off a socket's error queue at most per wake-up.
const ICMP_PER_WAKE: usize = 64;

/// Takes the ICMP errors queued on `sock` (at most [`ICMP_PER_WAKE`]).
fn take_icmp_errors(sock: &UdpSocket) -> Vec<sys::IcmpError> {
    std::iter::from_fn(|| sys::take_icmp_error(sock))
        .take(ICMP_PER_WAKE)
        .collect()
}

/// The SOCKS6 Error messages for `errors` on association `id`: those with a
/// code, a destination and a reporter.
fn udp_error_messages(id: u64, errors: &[sys::IcmpError]) -> Vec<Vec<u8>> {
    errors
        .iter()
        .filter_map(|e| {
            let msg = UdpMessage::Error(UdpErrorMessage {
                id,
                destination: e.destination?,
                code: udp_error_code(e)?,
                reporter: e.reporter?,
            });
            let mut b = Vec::with_capacity(msg.encoded_len());
            msg.encode(&mut b).ok()?;
            Some(b)
        })
        .collect()
}

/// `dest` as the remote socket can address it.
fn for_socket(dest: SocketAddr, v6_socket: bool) -> Option<SocketAddr> {
    match (dest, v6_socket) {
        (SocketAddr::V4(a), true) => Some((a.ip().to_ipv6_mapped(), a.port()).into()),
        (SocketAddr::V6(_), false) => None,
        _ => Some(dest),
    }
}

/// Sends queued client datagrams to their destinations.
async fn send_loop(
    mut rx: mpsc::Receiver<(Endpoint, Vec<u8>)>,
    socket: Arc<UdpSocket>,
    v6_socket: bool,
    connector: Connector,
    stats: Arc<UdpStats>,
    budget: Budget,
) {
    while let Some((dest, payload)) = rx.recv().await {
        budget.give(payload.len());
        let targets = match tokio::time::timeout(
            DNS_TIMEOUT,
            connector.resolve_allowed(&dest.addr, dest.port),
        )
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::debug!(%dest, error = %e, "UDP datagram dropped");
                UdpStats::add(&stats.denied, 1);
                continue;
            }
            Err(_) => {
                UdpStats::add(&stats.denied, 1);
                continue;
            }
        };
        // The first address the socket can reach; the next on a local
        // error (no route for that family).
        for target in targets.into_iter().filter_map(|t| for_socket(t, v6_socket)) {
            if socket.send_to(&payload, target).await.is_ok() {
                UdpStats::add(&stats.datagrams_out, 1);
                UdpStats::add(&stats.bytes_out, payload.len() as u64);
                break;
            }
        }
    }
}

/// The address reported for `socket_port` to a client connected to
/// `control_local`.
fn advertised(shared: &Shared, control_local: IpAddr, port: u16) -> SocketAddr {
    let ip = for_family(&shared.settings.udp_advertise, control_local.is_ipv6())
        .unwrap_or(control_local);
    SocketAddr::new(ip, port)
}

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    f(&mut v);
    v
}

/// One association's common state: remote socket, sender queue, counters.
struct Engine {
    remote: Arc<UdpSocket>,
    queue: mpsc::Sender<(Endpoint, Vec<u8>)>,
    stats: Arc<UdpStats>,
    budget: Budget,
    sender: tokio::task::JoinHandle<()>,
}

impl Engine {
    fn start(shared: &Shared, want: Option<SocketAddr>) -> io::Result<Self> {
        Self::with_parity(shared, want, Parity::NONE).map(|(e, _)| e)
    }

    /// As [`Engine::start`], trying for a remote port of `parity` when no
    /// port was asked for; answers the parity obtained.
    fn with_parity(
        shared: &Shared,
        want: Option<SocketAddr>,
        parity: Parity,
    ) -> io::Result<(Self, Parity)> {
        let any_port = want.is_none_or(|a| a.port() == 0);
        let wanted_odd = match parity {
            Parity::EVEN if any_port => Some(false),
            Parity::ODD if any_port => Some(true),
            _ => None,
        };
        let (mut remote, mut v6) = remote_socket(want)?;
        let mut got = Parity::NONE;
        if let Some(odd) = wanted_odd {
            // Sockets of the wrong parity stay open until the loop ends, so
            // that the kernel hands out other ports.
            let mut spare = Vec::new();
            for _ in 0..PARITY_ATTEMPTS {
                let port = remote.local_addr()?.port();
                if (port % 2 == 1) == odd {
                    got = parity;
                    break;
                }
                let (next, next_v6) = remote_socket(want)?;
                spare.push(std::mem::replace(&mut remote, next));
                v6 = next_v6;
            }
        }
        let remote = Arc::new(remote);
        let stats = Arc::new(UdpStats::default());
        let (queue, rx) = mpsc::channel(QUEUE);
        let budget = Budget::default();
        let sender = tokio::spawn(send_loop(
            rx,
            Arc::clone(&remote),
            v6,
            shared.connector.clone(),
            Arc::clone(&stats),
            budget.clone(),
        ));
        Ok((
            Self {
                remote,
                queue,
                stats,
                budget,
                sender,
            },
            got,
        ))
    }

    /// Queues a client datagram for `dest`.
    fn send(&self, dest: Endpoint, payload: Vec<u8>) {
        let len = payload.len();
        if !self.budget.take(len) {
            UdpStats::add(&self.stats.queue_full, 1);
            return;
        }
        if self.queue.try_send((dest, payload)).is_err() {
            self.budget.give(len);
            UdpStats::add(&self.stats.queue_full, 1);
        }
    }

    /// Whether a datagram from `src` may reach the client.
    fn inbound_allowed(&self, shared: &Shared, src: SocketAddr) -> bool {
        if shared.connector.policy().check(src).is_ok() {
            true
        } else {
            UdpStats::add(&self.stats.denied, 1);
            false
        }
    }

    fn counted_in(&self, len: usize) {
        UdpStats::add(&self.stats.datagrams_in, 1);
        UdpStats::add(&self.stats.bytes_in, len as u64);
    }

    /// Ends the association: logs and sums the counters.
    fn finish(self, shared: &Shared, end: RelayEnd, out: &mut Outcome) {
        self.sender.abort();
        let s = &self.stats;
        tracing::debug!(
            datagrams_out = UdpStats::get(&s.datagrams_out),
            datagrams_in = UdpStats::get(&s.datagrams_in),
            denied = UdpStats::get(&s.denied),
            rejected = UdpStats::get(&s.rejected),
            queue_full = UdpStats::get(&s.queue_full),
            "UDP association ended"
        );
        let _ = write!(
            out.reply,
            "; datagrams out {} in {}, dropped denied {} rejected {} queue-full {}",
            UdpStats::get(&s.datagrams_out),
            UdpStats::get(&s.datagrams_in),
            UdpStats::get(&s.denied),
            UdpStats::get(&s.rejected),
            UdpStats::get(&s.queue_full),
        );
        out.relay = Some(RelayStats {
            client_to_target: UdpStats::get(&s.bytes_out),
            target_to_client: UdpStats::get(&s.bytes_in),
            end,
            path: RelayPath::Copy,
        });
        s.merge_into(&shared.udp.stats);
    }
}

/// The TCP (or Multipath TCP) socket under a control connection, plain or
/// TLS.
fn control_socket(s: &dyn std::any::Any) -> Option<std::os::fd::BorrowedFd<'_>> {
    use std::os::fd::AsFd;
    if let Some(t) = s.downcast_ref::<TcpStream>() {
        return Some(t.as_fd());
    }
    if let Some(t) = s.downcast_ref::<Box<sixpath_net::tls::early::EarlyTlsStream<TcpStream>>>() {
        return Some(t.get_ref().0.as_fd());
    }
    s.downcast_ref::<Box<sixpath_net::tls::server::TlsStream<TcpStream>>>()
        .map(|t| t.get_ref().0.as_fd())
}

/// A place for the association of `out`'s user from its source (`peer`
/// when the driver recorded none), or the cap that refuses it, counted
/// and written into `out`.
fn reserve<'a>(shared: &'a Shared, out: &mut Outcome, peer: IpAddr) -> Result<Slot<'a>, UdpCap> {
    let source = out.source.unwrap_or(peer);
    shared
        .udp
        .reserve(out.user.as_deref(), source)
        .inspect_err(|cap| {
            shared.stats.udp_association_refused(*cap);
            out.reply = format!("UDP ASSOCIATE: {} association cap reached", cap.name());
            tracing::warn!(%source, user = out.user.as_deref().unwrap_or("-"), cap = cap.name(), "UDP association refused: cap reached");
        })
}

/// Serves a SOCKS5 UDP ASSOCIATE; `declared` is DST.ADDR/DST.PORT, where
/// the client says it will send from: its port, and an address of the
/// client (the control connection's, or one of its subflows').
pub async fn serve_socks5<S>(
    mut f: Framed<S>,
    shared: &Shared,
    declared: &Endpoint,
    out: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let failure = |code| encode(|b| Reply::failure(code).encode(b));
    let (Some(local), Some(peer)) = (f.local_addr(), f.peer_addr()) else {
        out.reply = "UDP ASSOCIATE: connection addresses unknown".into();
        f.reject(&failure(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE))
            .await;
        return;
    };
    let _slot = match reserve(shared, out, peer.ip()) {
        Ok(slot) => slot,
        Err(cap) => {
            let code = if cap == UdpCap::Total {
                ReplyCode::GENERAL_SOCKS_SERVER_FAILURE
            } else {
                ReplyCode::CONNECTION_NOT_ALLOWED_BY_RULESET
            };
            f.reject(&failure(code)).await;
            return;
        }
    };
    let control_local = unmap(local.ip());
    // The client's addresses: the control connection's peer and, over
    // Multipath TCP, every subflow's (a phone's other path).
    let mut client_ips = PeerAddresses::new(control_socket(f.get_ref()), unmap(peer.ip()));
    let opened = bind_listener(SocketAddr::new(control_local, 0))
        .and_then(|client_sock| Ok((client_sock, Engine::start(shared, None)?)));
    let (client_sock, engine) = match opened {
        Ok(x) => x,
        Err(e) => {
            out.reply = format!("UDP ASSOCIATE: cannot open sockets: {e}");
            f.reject(&failure(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE))
                .await;
            return;
        }
    };
    let port = client_sock.local_addr().map_or(0, |a| a.port());
    let bnd = advertised(shared, control_local, port);
    if f.send(&encode(|b| Reply::new(ReplyCode::SUCCEEDED, bnd).encode(b)))
        .await
        .is_err()
    {
        out.reply = "client gone before reply".into();
        return;
    }
    out.reply = format!("UDP ASSOCIATE {:?} at {bnd}", ReplyCode::SUCCEEDED);
    let (mut control, _) = f.into_parts();
    let idle = shared.settings.udp_idle_timeout;
    let mut last = Instant::now();
    let mut client_addr: Option<SocketAddr> = None;
    let mut cbuf = vec![0u8; MAX_DATAGRAM];
    let mut rbuf = vec![0u8; MAX_DATAGRAM];
    let mut sink = [0u8; 512];
    let end = loop {
        tokio::select! {
            r = control.read(&mut sink) => match r {
                Ok(0) | Err(_) => break RelayEnd::Closed,
                Ok(_) => {} // RFC 1928 gives the control connection no further use.
            },
            r = client_sock.recv_from(&mut cbuf) => {
                // Unconnected UDP sockets report no per-peer errors; an
                // error here is the socket's own (out of memory, ...).
                let Ok((n, src)) = r else { break RelayEnd::ClientError };
                let src = SocketAddr::new(unmap(src.ip()), src.port());
                if !client_ips.admits(src.ip()) || (declared.port != 0 && src.port() != declared.port) {
                    tracing::debug!(%src, "UDP datagram from a foreign source dropped");
                    UdpStats::add(&engine.stats.rejected, 1);
                    continue;
                }
                let datagram = cbuf.get(..n).unwrap_or_default();
                let (header, offset) = match UdpHeader::decode_datagram(datagram) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(%src, error = %e, "UDP datagram dropped");
                        UdpStats::add(&engine.stats.rejected, 1);
                        continue;
                    }
                };
                last = Instant::now();
                client_addr = Some(src);
                engine.send(header.endpoint, datagram.get(offset..).unwrap_or_default().to_vec());
            }
            r = engine.remote.recv_from(&mut rbuf) => {
                let Ok((n, src)) = r else {
                    // An ICMP error about a datagram sent: SOCKS5 has no
                    // message for it (RFC 1928); drain it and go on.
                    if take_icmp_errors(&engine.remote).is_empty() {
                        break RelayEnd::TargetError;
                    }
                    continue;
                };
                let src = SocketAddr::new(unmap(src.ip()), src.port());
                let Some(to) = client_addr else { continue };
                if !engine.inbound_allowed(shared, src) {
                    continue;
                }
                last = Instant::now();
                let payload = rbuf.get(..n).unwrap_or_default();
                let mut msg = encode(|b| UdpHeader::new(src).encode(b));
                msg.extend_from_slice(payload);
                if client_sock.send_to(&msg, to).await.is_ok() {
                    engine.counted_in(n);
                }
            }
            () = tokio::time::sleep_until(last + idle) => break RelayEnd::Idle,
            () = shared.cutoff.reached() => break RelayEnd::Drained,
        }
    };
    if end == RelayEnd::Drained {
        let _ = control.reset_on_close();
    }
    engine.finish(shared, end, out);
}

/// Where a SOCKS6 client's datagrams come from, once the first one came.
enum Mapping {
    Tcp,
    Udp(Arc<UdpSocket>, SocketAddr),
}

impl Mapping {
    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tcp, Self::Tcp) => true,
            (Self::Udp(s1, a1), Self::Udp(s2, a2)) => Arc::ptr_eq(s1, s2) && a1 == a2,
            _ => false,
        }
    }
}

/// Serves a SOCKS6 UDP ASSOCIATE after a successful Authentication Reply;
/// the Request's endpoint is the desired bind address. A Session ID the
/// request created (`new_session`) goes into the successful Operation
/// Reply.
pub async fn serve_socks6<S>(
    mut f: Framed<S>,
    shared: &Shared,
    req: &Request,
    new_session: Option<&SessionId>,
    out: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let want = &req.endpoint;
    // Port Parity (proxy-remote leg): honoured without reservation.
    let parity = req
        .options
        .stack()
        .filter(|s| s.leg.0 & Leg::PROXY_REMOTE.0 != 0)
        .find_map(|s| match s.value {
            StackValue::PortParity { parity, .. } => Some(parity),
            _ => None,
        });
    // UDP Error (proxy-remote leg): the client opts in to Error messages.
    let udp_error = req
        .options
        .stack()
        .filter(|s| s.leg.0 & Leg::PROXY_REMOTE.0 != 0)
        .find_map(|s| match s.value {
            StackValue::UdpError(a) => Some(a),
            _ => None,
        });
    let send_errors = udp_error == Some(Availability::AVAILABLE);
    let failure = |code| {
        let reply = OperationReply::new(code, Endpoint::unspecified());
        encode(|b| reply.encode(b))
    };
    let control_local = f
        .local_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| unmap(a.ip()));
    // "BIND and UDP ASSOCIATE: the desired bind address and port" (§2.1).
    let requested = match want.addr.ip() {
        None => {
            out.reply = "UDP ASSOCIATE: bind address is a name".into();
            f.reject(&failure(Socks6ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED))
                .await;
            return;
        }
        Some(_) if privileged(want.port) => {
            out.reply = format!("UDP ASSOCIATE: port {} is below 1024", want.port);
            f.reject(&failure(Socks6ReplyCode::CONNECTION_NOT_ALLOWED))
                .await;
            return;
        }
        Some(ip) if ip.is_unspecified() && want.port == 0 => None,
        Some(ip) => Some(SocketAddr::new(ip, want.port)),
    };
    let source = out
        .source
        .or_else(|| f.peer_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut slot = match reserve(shared, out, source) {
        Ok(slot) => slot,
        Err(cap) => {
            let code = if cap == UdpCap::Total {
                Socks6ReplyCode::GENERAL_FAILURE
            } else {
                Socks6ReplyCode::CONNECTION_NOT_ALLOWED
            };
            f.reject(&failure(code)).await;
            return;
        }
    };
    let (engine, got_parity) =
        match Engine::with_parity(shared, requested, parity.unwrap_or(Parity::NONE)) {
            Ok(e) => e,
            Err(e) => {
                out.reply = format!("UDP ASSOCIATE: cannot open socket: {e}");
                f.reject(&failure(Socks6ReplyCode::GENERAL_FAILURE)).await;
                return;
            }
        };
    // Drained at once into the budgeted queue of the engine.
    let (udp_tx, mut udp_rx) = mpsc::channel(64);
    let id = match shared.udp.register(&mut slot, udp_tx) {
        Ok(id) => id,
        Err(e) => {
            out.reply = format!("UDP ASSOCIATE: {e}");
            f.reject(&failure(Socks6ReplyCode::GENERAL_FAILURE)).await;
            return;
        }
    };
    // The Operation Reply names "the proxy's remote-facing UDP socket".
    let bound = engine.remote.local_addr().map_or(0, |a| a.port());
    let bnd = match requested {
        Some(a) if !a.ip().is_unspecified() => SocketAddr::new(unmap(a.ip()), bound),
        _ => advertised(shared, control_local, bound),
    };
    let mut reply = OperationReply::new(Socks6ReplyCode::SUCCESS, bnd.into());
    if parity.is_some() {
        // "A proxy MUST report every Stack option it supports that the
        // client sent"; no counterpart port is reserved.
        let _ = reply.options.push(SocksOption::Stack(StackOption {
            leg: Leg::PROXY_REMOTE,
            value: StackValue::PortParity {
                parity: got_parity,
                reserve: false,
            },
        }));
    }
    if let Some(asked) = udp_error {
        // Reported as asked: desired is performed, not desired is not.
        let _ = reply.options.push(SocksOption::Stack(StackOption {
            leg: Leg::PROXY_REMOTE,
            value: StackValue::UdpError(asked),
        }));
    }
    push_session_id(&mut reply, new_session);
    let mut hello = encode(|b| reply.encode(b));
    let init = UdpMessage::AssociationInit { id };
    let _ = init.encode(&mut hello);
    if f.send(&hello).await.is_err() {
        out.reply = "client gone before reply".into();
        return;
    }
    out.reply = format!("UDP ASSOCIATE {:?} at {bnd}", Socks6ReplyCode::SUCCESS);

    let (mut control, leftover) = f.into_parts();
    let (mut rd, wr) = tokio::io::split(&mut control);
    let (tcp_tx, tcp_rx) = mpsc::channel::<(Vec<u8>, usize)>(QUEUE);
    let to_client = Budget::default();
    let done = tokio::sync::Notify::new();
    // The writer runs beside the loop below in this task; once the loop
    // ends it gets a moment to deliver what is queued.
    let writer = async {
        tokio::select! {
            () = write_loop(wr, tcp_rx, &to_client) => {}
            () = async {
                done.notified().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            } => {}
        }
    };
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(&leftover);
    let idle = shared.settings.udp_idle_timeout;
    let mut last = Instant::now();
    let mut mapping: Option<Mapping> = None;
    let mut rbuf = vec![0u8; MAX_DATAGRAM];

    // One datagram from the client on `channel`.
    let on_datagram =
        |channel: Mapping, d: Datagram, mapping: &mut Option<Mapping>| -> Option<Vec<u8>> {
            let mut confirm = None;
            match mapping {
                None => {
                    *mapping = Some(channel);
                    confirm = Some(encode(|b| {
                        let _ = UdpMessage::AssociationConfirmation { id }.encode(b);
                    }));
                }
                Some(m) if m.same(&channel) => {}
                Some(_) => {
                    // "Later datagrams with the same ID that do not match the
                    // mapping are silently dropped."
                    UdpStats::add(&engine.stats.rejected, 1);
                    return None;
                }
            }
            let empty = d.payload.is_empty()
                && d.endpoint.port == 0
                && d.endpoint.addr.ip().is_some_and(|ip| ip.is_unspecified());
            if !empty {
                engine.send(d.endpoint, d.payload);
            }
            confirm
        };

    let main = async {
        let end = 'assoc: loop {
            // Whole messages already read off the stream.
            loop {
                match UdpMessage::decode(&buf) {
                    Ok(Decoded::Complete { msg, len }) => {
                        buf.advance(len);
                        last = Instant::now();
                        if let UdpMessage::Datagram(d) = msg {
                            if d.id != id {
                                UdpStats::add(&engine.stats.rejected, 1);
                                continue;
                            }
                            if let Some(c) = on_datagram(Mapping::Tcp, d, &mut mapping)
                                && tcp_tx.send((c, 0)).await.is_err()
                            {
                                break 'assoc RelayEnd::ClientError;
                            }
                        }
                        // Other types from a client are ignored.
                    }
                    Ok(Decoded::NeedMore(_)) => break,
                    Err(e) => {
                        // The stream has lost its framing: close (digest §4.9).
                        let _ = write!(out.reply, "; bad message on the stream: {e}");
                        break 'assoc RelayEnd::ClientError;
                    }
                }
            }
            buf.reserve(4096);
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break RelayEnd::Closed,
                    Ok(_) => {}
                },
                Some(FromUdp { socket, from, datagram }) = udp_rx.recv() => {
                    last = Instant::now();
                    if let Some(c) = on_datagram(Mapping::Udp(socket, from), datagram, &mut mapping)
                        && tcp_tx.send((c, 0)).await.is_err()
                    {
                        break RelayEnd::ClientError;
                    }
                }
                r = engine.remote.recv_from(&mut rbuf) => {
                    let Ok((n, src)) = r else {
                        // ICMP errors about datagrams sent: Error messages
                        // for a client that opted in (draft -11 §7.3).
                        let errors = take_icmp_errors(&engine.remote);
                        if errors.is_empty() {
                            break RelayEnd::TargetError;
                        }
                        let Some(m) = mapping.as_ref().filter(|_| send_errors) else {
                            continue;
                        };
                        for bytes in udp_error_messages(id, &errors) {
                            match m {
                                Mapping::Tcp => {
                                    let len = bytes.len();
                                    if !to_client.take(len) {
                                        UdpStats::add(&engine.stats.queue_full, 1);
                                    } else if tcp_tx.try_send((bytes, len)).is_err() {
                                        to_client.give(len);
                                        UdpStats::add(&engine.stats.queue_full, 1);
                                    }
                                }
                                Mapping::Udp(sock, to) => {
                                    let _ = sock.send_to(&bytes, *to).await;
                                }
                            }
                        }
                        continue;
                    };
                    let src = SocketAddr::new(unmap(src.ip()), src.port());
                    let Some(m) = &mapping else { continue };
                    if !engine.inbound_allowed(shared, src) {
                        continue;
                    }
                    last = Instant::now();
                    let msg = UdpMessage::Datagram(Datagram {
                        id,
                        endpoint: src.into(),
                        payload: rbuf.get(..n).unwrap_or_default().to_vec(),
                    });
                    let mut bytes = Vec::with_capacity(msg.encoded_len());
                    if msg.encode(&mut bytes).is_err() {
                        UdpStats::add(&engine.stats.rejected, 1);
                        continue;
                    }
                    match m {
                        Mapping::Tcp => {
                            let len = bytes.len();
                            if !to_client.take(len) {
                                UdpStats::add(&engine.stats.queue_full, 1);
                                continue;
                            }
                            match tcp_tx.try_send((bytes, len)) {
                                Ok(()) => engine.counted_in(n),
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    to_client.give(len);
                                    UdpStats::add(&engine.stats.queue_full, 1);
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => {
                                    break RelayEnd::ClientError;
                                }
                            }
                        }
                        Mapping::Udp(sock, to) => {
                            if sock.send_to(&bytes, *to).await.is_ok() {
                                engine.counted_in(n);
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(last + idle) => break RelayEnd::Idle,
                () = shared.cutoff.reached() => break RelayEnd::Drained,
            }
        };
        drop(tcp_tx);
        done.notify_one();
        end
    };
    let (end, ()) = tokio::join!(main, writer);
    if end == RelayEnd::Drained {
        let _ = control.reset_on_close();
    }
    drop(slot);
    engine.finish(shared, end, out);
}

/// Writes queued messages to the control connection; ends when the queue
/// closes or a write fails.
/// Each message comes with the bytes it holds of `budget` (0 for the
/// unbudgeted Confirmation).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<(Vec<u8>, usize)>,
    budget: &Budget,
) {
    while let Some((bytes, held)) = rx.recv().await {
        let ok = wr.write_all(&bytes).await.is_ok();
        budget.give(held);
        if !ok {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icmp(origin: u8, icmp_type: u8, code: u8) -> sys::IcmpError {
        sys::IcmpError {
            origin,
            icmp_type,
            code,
            destination: Some("198.18.0.9:53".parse().expect("addr")),
            reporter: Some("198.19.0.2".parse().expect("addr")),
        }
    }

    #[test]
    fn icmp_errors_map_to_the_drafts_udp_error_codes() {
        let cases = [
            (icmp(2, 3, 0), Some(UdpErrorCode::NETWORK_UNREACHABLE)),
            (icmp(2, 3, 1), Some(UdpErrorCode::HOST_UNREACHABLE)),
            (icmp(2, 11, 0), Some(UdpErrorCode::TTL_EXPIRED)),
            (icmp(2, 3, 3), None), // port unreachable: no code
            (icmp(2, 3, 4), None), // fragmentation needed: IPv6 only
            (icmp(3, 1, 0), Some(UdpErrorCode::NETWORK_UNREACHABLE)),
            (icmp(3, 1, 3), Some(UdpErrorCode::HOST_UNREACHABLE)),
            (icmp(3, 3, 0), Some(UdpErrorCode::TTL_EXPIRED)),
            (icmp(3, 2, 0), Some(UdpErrorCode::DATAGRAM_TOO_BIG)),
            (icmp(3, 1, 4), None), // port unreachable
            (icmp(1, 3, 1), None), // a local error, not ICMP
        ];
        for (e, want) in cases {
            assert_eq!(udp_error_code(&e), want, "{e:?}");
        }
        // The message: header, destination, reporter ATYP and code.
        let m = udp_error_messages(7, &[icmp(2, 3, 1)]);
        assert_eq!(
            m,
            [vec![
                6, 4, 0, 28, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0, 0, 53, 198, 18, 0, 9, 1, 2, 0, 0, 198,
                19, 0, 2
            ]]
        );
        assert!(udp_error_messages(7, &[icmp(2, 3, 3)]).is_empty());
    }

    #[test]
    fn ipv4_destinations_are_mapped_for_a_dual_stack_socket() {
        let v4: SocketAddr = "192.0.2.1:53".parse().expect("addr");
        let v6: SocketAddr = "[2001:db8::1]:53".parse().expect("addr");
        assert_eq!(
            for_socket(v4, true),
            Some("[::ffff:192.0.2.1]:53".parse().expect("addr"))
        );
        assert_eq!(for_socket(v4, false), Some(v4));
        assert_eq!(for_socket(v6, true), Some(v6));
        assert_eq!(for_socket(v6, false), None);
    }

    #[test]
    fn budget_refuses_bytes_beyond_the_queue_limit() {
        let b = Budget::default();
        assert!(b.take(QUEUE_BYTES - 10));
        assert!(!b.take(11), "over the limit");
        assert!(b.take(10));
        b.give(QUEUE_BYTES);
        assert!(b.take(QUEUE_BYTES));
    }
}
