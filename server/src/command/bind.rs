//! BIND for SOCKS5 (RFC 1928 §4), SOCKS4 ("BIND" section) and SOCKS6
//! (draft -11 §7.2): the server listens for ONE incoming connection on the
//! client's behalf, reports where it listens in a first reply, reports the
//! peer in a second reply once it connected, then relays.
//!
//! - **Where to listen.** `--bind-address` for the family if configured;
//!   else the address this host would use towards the expected peer (a
//!   route lookup, no packet sent), so the client can hand the remote peer
//!   a reachable address; else the client connection's local address. A
//!   SOCKS6 Request names the desired bind address and port itself
//!   ("BIND and UDP ASSOCIATE: the desired bind address and port", digest
//!   §2.1); ports below 1024 are refused ("not allowed by ruleset").
//!   `--bind-advertise` replaces the reported address behind 1:1 NAT.
//! - **Which peer.** SOCKS5 and SOCKS4 name the expected peer in DST.ADDR
//!   (a name is resolved). The SOCKS4 text: "the SOCKS server checks the IP
//!   address of the originating host against the value of DSTIP specified
//!   in the client's BIND request. If a mismatch is found, the CD field in
//!   the second reply is set to 91 and the SOCKS server closes both
//!   connections." SOCKS5 is read the same way (second reply 0x02). An
//!   unspecified address (`0.0.0.0`, `::`) accepts any peer; SOCKS6 names
//!   no peer. The port is not compared: peers connect from ports of their
//!   own choosing (FTP data from port 20, or ephemeral). Every peer is also
//!   checked against the egress policy, as if the client had connected to
//!   it: a client must not reach through BIND what it cannot reach through
//!   CONNECT.
//! - **Deadline.** `--bind-timeout`; on expiry SOCKS5 answers 0x04 (it has
//!   no "timed out" code, as for CONNECT), SOCKS6 0x09, SOCKS4 91. A client
//!   that closes while waiting ends the BIND; bytes it sends early are
//!   forwarded to the peer first.
//! - **SOCKS6 Stack options.** MPTCP: the listener is Multipath TCP when
//!   asked; the first reply says whether an MPTCP connection will be
//!   accepted, the second whether the peer's connection uses it. TFO: the
//!   listener accepts data in the SYN when asked, and the option is echoed.
//! - **SOCKS6 Listen Backlog** is for BIND "only inside a Session" (digest
//!   §2.4, §3.2). Inside a session, a BIND with Listen Backlog N keeps its
//!   listener open with a queue of `min(N, 128)` (the value reported) for
//!   as long as that initial connection stays open and the session lives
//!   (a teardown or the session's expiry closes both); the initial
//!   connection carries no data (what the client sends on it is
//!   discarded). "Each
//!   further BIND Request from the same session, using the bind address and
//!   port from the first Reply, accepts one queued connection": it gets a
//!   first reply naming that address, a second naming the peer, then the
//!   relay. Outside a session a requested backlog is answered with Backlog
//!   0 ("If it provides no backlog it signals 0 and BIND behaves
//!   normally"). The held listeners are found through the session state
//!   ([`crate::session::Backlogs`]); this command opens, offers and closes
//!   them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sixpath_net::framed::Reset;
use sixpath_protocol::socks5::{Reply, ReplyCode, Socks4Reply, Socks4ReplyCode};
use sixpath_protocol::socks6::{
    Availability, Leg, OperationReply, ReplyCode as Socks6ReplyCode, Request as Socks6Request,
    SessionId, SocksOption, StackOption, StackValue,
};
use sixpath_protocol::{Address, Endpoint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use sixpath_net::framed::Framed;

use super::{for_family, privileged, push_session_id, relay_with_leftover, socks_reply_code};
use crate::outbound::ConnectError;
use crate::policy::unmap;
use crate::state::{Outcome, Shared};
use crate::sys;

/// Client bytes held while waiting for the peer; more is a protocol
/// violation (the client has not been told the BIND succeeded).
const MAX_EARLY: usize = 64 * 1024;

/// Why a BIND failed, with the code each protocol sends.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The expected peer or the bind address is refused by the egress
    /// policy or the rules above.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The expected peer's name did not resolve.
    #[error("{0}")]
    Dns(ConnectError),
    /// The listening socket could not be opened.
    #[error("cannot listen: {0}")]
    Listen(io::Error),
    /// Nobody connected in time.
    #[error("no connection within {0:?}")]
    TimedOut(Duration),
    /// The address type cannot be served (a SOCKS6 bind address that is a
    /// name; SOCKS4 without IPv4).
    #[error("address type not supported: {0}")]
    AddressType(String),
    /// The client closed (or sent too much) while waiting.
    #[error("client gone while waiting")]
    ClientGone,
    /// Accepting failed.
    #[error("accept failed: {0}")]
    Accept(io::Error),
    /// The shutdown drain ended with the peer not yet there.
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl BindError {
    /// The SOCKS5 / SOCKS6 reply code (the same values; SOCKS5 has no 0x09).
    fn code(&self, socks6: bool) -> u8 {
        match self {
            Self::NotAllowed(_) => 0x02,
            Self::Dns(e) => socks_reply_code(e),
            Self::TimedOut(_) if socks6 => 0x09,
            Self::TimedOut(_) => 0x04,
            Self::AddressType(_) => 0x08,
            Self::Listen(_) | Self::ClientGone | Self::Accept(_) | Self::ShuttingDown => 0x01,
        }
    }
}

/// An open BIND listener.
#[derive(Debug)]
pub struct Listening {
    listener: TcpListener,
    /// The address reported to the client.
    pub advertised: SocketAddr,
    /// Whether the listener is Multipath TCP.
    pub mptcp: bool,
}

/// How to open a listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenOptions {
    /// Open it as Multipath TCP.
    pub mptcp: bool,
    /// Accept data in the SYN.
    pub fast_open: bool,
    /// The accept queue; 0 for the default of a one-connection BIND (4).
    pub backlog: u16,
}

/// The largest Listen Backlog this server grants.
pub const MAX_LISTEN_BACKLOG: u16 = 128;

/// The local address this host would use to reach `ip`: a UDP socket is
/// "connected" (a route lookup only, nothing is sent).
fn route_source(ip: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = if ip.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((ip, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Where a BIND whose expected peer is `peer` (None: any) listens, for a
/// client connected to `control_local`.
fn choose_local(shared: &Shared, v6: bool, peer: Option<IpAddr>, control_local: IpAddr) -> IpAddr {
    if let Some(ip) = for_family(&shared.settings.bind_addresses, v6) {
        return ip;
    }
    if let Some(src) = peer.filter(|p| !p.is_unspecified()).and_then(route_source) {
        return unmap(src);
    }
    if control_local.is_ipv6() == v6 {
        return control_local;
    }
    if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

/// Opens the listener on `local` (port 0: any) and works out the advertised
/// address.
pub fn listen(
    shared: &Shared,
    local: SocketAddr,
    control_local: IpAddr,
    opts: ListenOptions,
) -> Result<Listening, BindError> {
    let (sock, mptcp) = sys::stream_socket(&local, opts.mptcp).map_err(BindError::Listen)?;
    sock.set_nonblocking(true).map_err(BindError::Listen)?;
    if local.is_ipv6() {
        let _ = sock.set_only_v6(true);
    }
    sock.bind(&local.into()).map_err(BindError::Listen)?;
    // One connection is accepted; a small queue is enough, unless a
    // Listen Backlog asks for more.
    let backlog = if opts.backlog == 0 { 4 } else { opts.backlog };
    sock.listen(i32::from(backlog)).map_err(BindError::Listen)?;
    if opts.fast_open {
        let _ = sys::enable_listener_fastopen(&sock, 4);
    }
    let listener = TcpListener::from_std(sock.into()).map_err(BindError::Listen)?;
    let bound = listener.local_addr().map_err(BindError::Listen)?;
    let v6 = bound.is_ipv6();
    let ip = for_family(&shared.settings.bind_advertise, v6).unwrap_or_else(|| {
        if bound.ip().is_unspecified() && control_local.is_ipv6() == v6 {
            control_local
        } else {
            bound.ip()
        }
    });
    Ok(Listening {
        listener,
        advertised: SocketAddr::new(ip, bound.port()),
        mptcp,
    })
}

/// What the client asked for, protocol-neutral.
struct Plan {
    /// Where to listen.
    local: SocketAddr,
    /// The peer IPs accepted (empty: any).
    expected: Vec<IpAddr>,
}

/// Plans a SOCKS5/SOCKS4 BIND: `hint` is the expected peer.
async fn plan_for_peer(
    shared: &Shared,
    hint: &Endpoint,
    control_local: IpAddr,
) -> Result<Plan, BindError> {
    let expected = match &hint.addr {
        Address::Ipv4(ip) if ip.is_unspecified() => Vec::new(),
        Address::Ipv6(ip) if ip.is_unspecified() => Vec::new(),
        addr => match shared.connector.resolve_allowed(addr, hint.port).await {
            Ok(v) => v.into_iter().map(|sa| unmap(sa.ip())).collect(),
            Err(ConnectError::Denied { addr, why }) => {
                return Err(BindError::NotAllowed(format!("peer {addr}: {why}")));
            }
            Err(e) => return Err(BindError::Dns(e)),
        },
    };
    let v6 = match (&hint.addr, expected.first()) {
        (_, Some(ip)) => ip.is_ipv6(),
        (Address::Ipv6(_), None) => true,
        _ => false,
    };
    let local = choose_local(shared, v6, expected.first().copied(), control_local);
    Ok(Plan {
        local: SocketAddr::new(local, 0),
        expected,
    })
}

/// Plans a SOCKS6 BIND: the Request names the desired bind address.
fn plan_for_bind_address(
    shared: &Shared,
    want: &Endpoint,
    control_local: IpAddr,
) -> Result<Plan, BindError> {
    if privileged(want.port) {
        return Err(BindError::NotAllowed(format!(
            "port {} is below 1024",
            want.port
        )));
    }
    let ip = match want.addr.ip() {
        Some(ip) if ip.is_unspecified() => choose_local(shared, ip.is_ipv6(), None, control_local),
        Some(ip) => unmap(ip),
        None => {
            return Err(BindError::AddressType(format!(
                "bind address {} is a name",
                want.addr
            )));
        }
    };
    Ok(Plan {
        local: SocketAddr::new(ip, want.port),
        expected: Vec::new(),
    })
}

/// Waits for the peer, holding what the client sends meanwhile in
/// `early`, until the bind timeout or the drain's cut-off. The peer must
/// be in `expected` (if not empty) and pass the egress policy.
async fn wait_for_peer<S: AsyncRead + Unpin>(
    shared: &Shared,
    listener: &TcpListener,
    expected: &[IpAddr],
    client: &mut S,
    early: &mut BytesMut,
) -> Result<(TcpStream, SocketAddr), BindError> {
    let wait = shared.settings.bind_timeout;
    let deadline = Instant::now() + wait;
    let (stream, peer) = loop {
        early.reserve(4096);
        tokio::select! {
            r = listener.accept() => break r.map_err(BindError::Accept)?,
            r = client.read_buf(early) => match r {
                Ok(n) if n > 0 && early.len() <= MAX_EARLY => {}
                _ => return Err(BindError::ClientGone),
            },
            () = tokio::time::sleep_until(deadline) => return Err(BindError::TimedOut(wait)),
            // The drain's cut-off: the client gets its second reply, a
            // failure, instead of a connection that just ends.
            () = shared.cutoff.reached() => return Err(BindError::ShuttingDown),
        }
    };
    let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
    if !expected.is_empty() && !expected.contains(&peer.ip()) {
        return Err(BindError::NotAllowed(format!(
            "peer {peer} is not the expected {expected:?}"
        )));
    }
    if let Err(why) = shared.connector.policy().check(peer) {
        return Err(BindError::NotAllowed(format!("peer {peer}: {why}")));
    }
    let _ = stream.set_nodelay(true);
    Ok((stream, peer))
}

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    f(&mut v);
    v
}

/// How long a BIND answered at the drain's cut-off waits for its client to
/// close before its connection is dropped; within the server's wait for
/// its connections to end after the cut-off.
const SHUTDOWN_ANSWER_TIME: Duration = Duration::from_millis(500);

/// The second half of every BIND, after the first reply went out: waits
/// for the peer; then sends the second reply `second` builds (its bytes
/// and the log text) and relays, or on failure the answer and log text
/// `failure` gives, and closes.
async fn accept_then_relay<S>(
    f: Framed<S>,
    shared: &Shared,
    listener: Arc<TcpListener>,
    expected: &[IpAddr],
    out: &mut Outcome,
    second: impl FnOnce(&TcpStream, SocketAddr) -> (Vec<u8>, String),
    failure: impl FnOnce(&BindError) -> (Vec<u8>, String),
) where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let (mut client, mut early) = f.into_parts();
    match wait_for_peer(shared, &listener, expected, &mut client, &mut early).await {
        Ok((peer_stream, peer)) => {
            drop(listener);
            let (reply, why) = second(&peer_stream, peer);
            out.reply = why;
            if tokio::io::AsyncWriteExt::write_all(&mut client, &reply)
                .await
                .is_err()
            {
                return;
            }
            let opts = shared.relay_options();
            out.relay =
                Some(relay_with_leftover(client, &early, peer_stream, opts, &shared.cutoff).await);
        }
        Err(e) => {
            let (reply, why) = failure(&e);
            out.reply = why;
            let reject = Framed::new(client).reject(&reply);
            if matches!(e, BindError::ShuttingDown) {
                // The process exits soon after the cut-off: the answer
                // gets a moment, not the usual wait for the client's close.
                let _ = tokio::time::timeout(SHUTDOWN_ANSWER_TIME, reject).await;
            } else {
                reject.await;
            }
        }
    }
}

/// The control connection's local address, unmapped.
fn control_local<S: AsyncRead + AsyncWrite + Unpin>(f: &Framed<S>) -> IpAddr {
    f.local_addr()
        .map_or(Ipv4Addr::UNSPECIFIED.into(), |a| unmap(a.ip()))
}

/// Serves a SOCKS5 BIND: `hint` is DST.ADDR/DST.PORT of the request.
pub async fn serve_socks5<S>(mut f: Framed<S>, shared: &Shared, hint: &Endpoint, out: &mut Outcome)
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let fail = |e: &BindError| encode(|b| Reply::failure(ReplyCode(e.code(false))).encode(b));
    let local = control_local(&f);
    let listening = match plan_for_peer(shared, hint, local).await.and_then(|plan| {
        listen(shared, plan.local, local, ListenOptions::default()).map(|l| (l, plan))
    }) {
        Ok(l) => l,
        Err(e) => {
            out.reply = format!("BIND: {e}");
            f.reject(&fail(&e)).await;
            return;
        }
    };
    let (listening, plan) = listening;
    let first = encode(|b| Reply::new(ReplyCode::SUCCEEDED, listening.advertised).encode(b));
    if f.send(&first).await.is_err() {
        out.reply = "client gone before reply".into();
        return;
    }
    let second = |_: &TcpStream, peer| {
        let bytes = encode(|b| Reply::new(ReplyCode::SUCCEEDED, peer).encode(b));
        (
            bytes,
            format!("BIND {:?}, peer {peer}", ReplyCode::SUCCEEDED),
        )
    };
    let failure = |e: &BindError| (fail(e), format!("BIND: {e}"));
    accept_then_relay(
        f,
        shared,
        Arc::new(listening.listener),
        &plan.expected,
        out,
        second,
        failure,
    )
    .await;
}

/// Serves a SOCKS4 BIND: `hint` is DSTIP (or the 4A name) and DSTPORT.
pub async fn serve_socks4<S>(mut f: Framed<S>, shared: &Shared, hint: &Endpoint, out: &mut Outcome)
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let rejected =
        || encode(|b| Socks4Reply::unbound(Socks4ReplyCode::REJECTED_OR_FAILED).encode(b));
    let local = control_local(&f);
    let opened = plan_for_peer(shared, hint, local).await.and_then(|plan| {
        if plan.local.is_ipv6() {
            return Err(BindError::AddressType("SOCKS4 carries IPv4 only".into()));
        }
        listen(shared, plan.local, local, ListenOptions::default()).map(|l| (l, plan))
    });
    let (listening, plan) = match opened {
        Ok((l, _)) if !l.advertised.is_ipv4() => {
            out.reply = "BIND: no IPv4 address to report".into();
            f.reject(&rejected()).await;
            return;
        }
        Ok(l) => l,
        Err(e) => {
            out.reply = format!("BIND: {e}");
            f.reject(&rejected()).await;
            return;
        }
    };
    let v4 = |a: SocketAddr| match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    };
    let first =
        encode(|b| Socks4Reply::new(Socks4ReplyCode::GRANTED, v4(listening.advertised)).encode(b));
    if f.send(&first).await.is_err() {
        out.reply = "client gone before reply".into();
        return;
    }
    let second = |_: &TcpStream, peer| {
        let bytes = encode(|b| Socks4Reply::new(Socks4ReplyCode::GRANTED, v4(peer)).encode(b));
        (bytes, format!("BIND GRANTED, peer {peer}"))
    };
    let failure = |e: &BindError| (rejected(), format!("BIND REJECTED_OR_FAILED: {e}"));
    accept_then_relay(
        f,
        shared,
        Arc::new(listening.listener),
        &plan.expected,
        out,
        second,
        failure,
    )
    .await;
}

/// Serves a SOCKS6 BIND after a successful Authentication Reply. `session`
/// is the request's session, if any (created by it or joined); a Session ID
/// the request created (`new_session`) goes into the first (successful)
/// Operation Reply.
pub async fn serve_socks6<S>(
    mut f: Framed<S>,
    shared: &Shared,
    req: &Socks6Request,
    session: Option<&SessionId>,
    new_session: Option<&SessionId>,
    out: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let fail = |e: &BindError| {
        let reply = OperationReply::new(Socks6ReplyCode(e.code(true)), Endpoint::unspecified());
        encode(|b| reply.encode(b))
    };
    let failure = |e: &BindError| (fail(e), format!("BIND: {e}"));
    let remote = |s: &&StackOption| s.leg.0 & Leg::PROXY_REMOTE.0 != 0;
    let want_mptcp = req
        .options
        .stack()
        .filter(remote)
        .any(|s| s.value == StackValue::Mptcp(Availability::AVAILABLE));
    let tfo = req
        .options
        .stack()
        .filter(remote)
        .find_map(|s| match s.value {
            StackValue::Tfo(size) => Some(size),
            _ => None,
        });
    let backlog = req
        .options
        .stack()
        .filter(remote)
        .find_map(|s| match s.value {
            StackValue::ListenBacklog(n) => Some(n),
            _ => None,
        });
    let stack = |v| {
        SocksOption::Stack(StackOption {
            leg: Leg::PROXY_REMOTE,
            value: v,
        })
    };
    let avail = |yes: bool| {
        if yes {
            Availability::AVAILABLE
        } else {
            Availability::UNAVAILABLE
        }
    };
    let second = |peer_stream: &TcpStream, peer: SocketAddr| {
        let mut second = OperationReply::new(Socks6ReplyCode::SUCCESS, peer.into());
        // In the second reply: "whether the connection uses MPTCP".
        if want_mptcp {
            let used = matches!(sys::transport(peer_stream), sys::Transport::Mptcp { .. });
            let _ = second.options.push(stack(StackValue::Mptcp(avail(used))));
        }
        let bytes = encode(|b| second.encode(b));
        (
            bytes,
            format!("BIND {:?}, peer {peer}", Socks6ReplyCode::SUCCESS),
        )
    };

    // "Each further BIND Request from the same session, using the bind
    // address and port from the first Reply, accepts one queued
    // connection" (digest §2.4).
    let queued = session.zip(req.endpoint.addr.ip()).and_then(|(id, ip)| {
        let addr = SocketAddr::new(ip, req.endpoint.port);
        shared.sessions.backlogs().find(id, addr).map(|l| (l, addr))
    });
    if let Some((listener, advertised)) = queued {
        let mut first = OperationReply::new(Socks6ReplyCode::SUCCESS, advertised.into());
        push_session_id(&mut first, new_session);
        if f.send(&encode(|b| first.encode(b))).await.is_err() {
            out.reply = "client gone before reply".into();
            return;
        }
        accept_then_relay(f, shared, listener, &[], out, second, failure).await;
        return;
    }

    // Listen Backlog only inside a session; elsewhere 0, BIND as usual.
    let granted = match (session, backlog) {
        (Some(_), Some(n)) => n.min(MAX_LISTEN_BACKLOG),
        _ => 0,
    };
    let local = control_local(&f);
    let opts = ListenOptions {
        mptcp: want_mptcp,
        fast_open: tfo.is_some(),
        backlog: granted,
    };
    let listening = match plan_for_bind_address(shared, &req.endpoint, local)
        .and_then(|plan| listen(shared, plan.local, local, opts))
    {
        Ok(l) => l,
        Err(e) => {
            out.reply = format!("BIND: {e}");
            f.reject(&fail(&e)).await;
            return;
        }
    };
    let mut first = OperationReply::new(Socks6ReplyCode::SUCCESS, listening.advertised.into());
    // "A proxy MUST report every Stack option it supports that the client
    // sent" (§3.2). MPTCP in the first BIND reply: "whether an MPTCP
    // connection will be accepted".
    if want_mptcp {
        let _ = first
            .options
            .push(stack(StackValue::Mptcp(avail(listening.mptcp))));
    }
    if let Some(size) = tfo {
        let _ = first.options.push(stack(StackValue::Tfo(size)));
    }
    if backlog.is_some() {
        // "The proxy replies with the backlog actually used."
        let _ = first
            .options
            .push(stack(StackValue::ListenBacklog(granted)));
    }
    push_session_id(&mut first, new_session);
    if f.send(&encode(|b| first.encode(b))).await.is_err() {
        out.reply = "client gone before reply".into();
        return;
    }
    let (advertised, listener) = (listening.advertised, Arc::new(listening.listener));
    match session {
        Some(id) if granted > 0 => hold_backlog(f, shared, id, listener, advertised, out).await,
        _ => accept_then_relay(f, shared, listener, &[], out, second, failure).await,
    }
}

/// The initial connection of a BIND with Listen Backlog: "only keeps the
/// listener alive and carries no data" (digest §2.4). The listener is
/// offered (as `advertised`) to further BINDs of `session` until the
/// client closes or the session ends (teardown, idle timeout, lifetime);
/// then the server closes the initial connection.
async fn hold_backlog<S>(
    f: Framed<S>,
    shared: &Shared,
    session: &SessionId,
    listener: Arc<TcpListener>,
    advertised: SocketAddr,
    out: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let backlogs = shared.sessions.backlogs();
    backlogs.insert(session, advertised, &listener);
    out.reply = format!(
        "BIND {:?}, listen backlog at {advertised}",
        Socks6ReplyCode::SUCCESS,
    );
    let mut client = f;
    let mut sink = [0u8; 1024];
    let mut check = tokio::time::interval(SESSION_CHECK);
    loop {
        tokio::select! {
            r = client.read_discard(&mut sink) => if !r {
                break;
            },
            _ = check.tick() => if !shared.sessions.is_live(session) {
                out.reply.push_str(", session ended");
                break;
            },
        }
    }
    backlogs.remove(session, advertised);
    // The listener closes now (BINDs still waiting on it keep it until
    // they are done), not after the initial connection's close.
    drop(listener);
    client.reject(&[]).await;
}

/// How often a held Listen Backlog checks that its session is alive.
const SESSION_CHECK: Duration = Duration::from_secs(1);
