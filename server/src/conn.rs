//! One client connection, driven from accept to close: the connection
//! caps (a refused connection gets its protocol's "not allowed" and a
//! close), the handshake deadline (and TLS), protocol detection on the first
//! byte, the protocol's handshake, the command it asked for, the relay,
//! and one log line (and the counters) when it ends.
//!
//! It owns the order of those steps and nothing else: what a handshake or
//! a command does lives in [`handshake`] and [`command`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::command::{self, Handoff};
use crate::config::Protocol;
use crate::handshake::{self, EarlyData, Framed, Reset};
use crate::relay;
use crate::state::{Outcome, Shared};
use crate::sys::{self, Transport};
use sixpath_net::tls::TlsAcceptor;

/// Serves one accepted connection to the end; with `proxy`, the PROXY
/// protocol v2 header comes first and names the client that `peer` (the
/// balancer) forwards; with `tls`, the TLS 1.3 handshake comes next. All
/// of them are under one handshake deadline.
#[allow(clippy::manual_async_fn)] // Arguments kept once, not twice.
pub fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    protocols: Arc<[Protocol]>,
    proxy: bool,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) -> impl Future<Output = ()> + Send + 'static {
    // Not an `async fn`: the task holds this future for the connection's
    // whole life, and an `async fn` keeps its arguments twice (as captured
    // and as moved into its body); the block uses them in place.
    async move {
        let started = Instant::now();
        let deadline = started + shared.settings.handshake_timeout;
        let peer = if proxy {
            match proxied_client(&mut stream, peer, deadline).await {
                Ok(client) => client,
                Err(why) => {
                    shared.stats.proxy_header_refused();
                    tracing::warn!(%peer, error = %why, "connection closed: no valid PROXY header");
                    Framed::new(stream).reject(&[]).await;
                    return;
                }
            }
        } else {
            peer
        };
        let transport = sys::transport(&stream);
        let _permit = match shared.limits.acquire(peer.ip()) {
            Ok(p) => p,
            Err(cap) => {
                shared.stats.refused(cap);
                tracing::warn!(%peer, ?cap, "connection refused: connection limit reached");
                refuse(stream, &protocols, tls.is_some(), &shared).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut outcome = Outcome {
            source: Some(peer.ip()),
            ..Outcome::default()
        };
        if matches!(transport, Transport::Mptcp { .. }) {
            wait_handshake_end(&stream, deadline).await;
        }
        let local = stream.local_addr().ok();
        match tls {
            None => {
                serve_protocols(
                    stream,
                    (local, peer),
                    &protocols,
                    &shared,
                    deadline,
                    &mut outcome,
                )
                .await;
            }
            Some(acceptor) => {
                outcome.tls = true;
                // Boxed: the TLS state is large and would otherwise size the
                // task of every connection, TLS or not.
                Box::pin(serve_tls(
                    stream,
                    acceptor,
                    (local, peer),
                    &protocols,
                    &shared,
                    deadline,
                    &mut outcome,
                ))
                .await;
            }
        }
        outcome.record(&shared.stats, transport);
        log(peer, transport, started, &outcome);
    }
}

/// Reads the PROXY protocol v2 header (HAProxy `doc/proxy-protocol.txt`
/// §2.2) a balancer sends first, byte-exact (what follows stays in the
/// socket for TLS or the protocol), by `deadline`, and answers the client
/// it names: the header's source for PROXY, `peer` itself for LOCAL (the
/// balancer's own health check). A PROXY header without an IPv4 or IPv6
/// source, garbage, a version 1 header, a closed connection or the
/// deadline are errors.
async fn proxied_client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<SocketAddr, String> {
    use sixpath_protocol::Decoded;
    use sixpath_protocol::proxy::{self, Command};
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut buf = Vec::with_capacity(proxy::FIXED_LEN + 36);
        loop {
            match proxy::decode(&buf).map_err(|e| e.to_string())? {
                Decoded::Complete { msg, .. } => return Ok(msg),
                Decoded::NeedMore(n) => {
                    let start = buf.len();
                    buf.resize(start + n, 0);
                    let free = buf.get_mut(start..).unwrap_or_default();
                    let got = stream.read(free).await.map_err(|e| e.to_string())?;
                    if got == 0 {
                        return Err("closed before the end of the PROXY header".to_owned());
                    }
                    buf.truncate(start + got);
                }
            }
        }
    };
    let header = tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| "PROXY header timeout".to_owned())??;
    match (header.command, header.addresses) {
        (Command::Local, _) => Ok(peer),
        (Command::Proxy, Some(a)) => Ok(a.source),
        (Command::Proxy, None) => Err("PROXY header without an IPv4 or IPv6 source".to_owned()),
    }
}

/// How long a connection refused by a cap has to show its protocol: its
/// first message (a client sends it at once; with TFO, in the SYN).
const REFUSAL_READ: Duration = Duration::from_secs(1);
/// The most answering a refused connection takes, the drain of what the
/// client still sends included.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Answers a connection that a cap refused with its protocol's "not
/// allowed" ([`handshake::socks5::refuse_over_cap`],
/// [`handshake::socks6::refuse_over_cap`],
/// [`handshake::convert::refuse_over_cap`]), then closes; no handshake,
/// no authentication. Cheap by construction: at most [`REFUSAL_TIME`], at
/// most [`crate::limits::MAX_ANSWERED_REFUSALS`] at once (beyond them, and
/// on TLS listeners, where an answer would cost a TLS handshake, the
/// connection is closed at once), a client silent for [`REFUSAL_READ`] is
/// closed without an answer.
async fn refuse(stream: TcpStream, protocols: &[Protocol], tls: bool, shared: &Shared) {
    if tls {
        return;
    }
    let Some(_slot) = shared.limits.answer_slot() else {
        return;
    };
    let read_by = Instant::now() + REFUSAL_READ;
    let answer = async {
        let mut f = Framed::new(stream);
        let Ok(Ok(first)) = tokio::time::timeout_at(read_by, f.peek_u8()).await else {
            return;
        };
        match detect(first, protocols) {
            Some(Protocol::Socks5 | Protocol::Socks4) => {
                handshake::socks5::refuse_over_cap(f, read_by).await;
            }
            Some(Protocol::Socks6) => handshake::socks6::refuse_over_cap(f).await,
            Some(Protocol::Convert) => handshake::convert::refuse_over_cap(f).await,
            None => {}
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, answer).await;
}

/// The TLS 1.3 handshake, then the protocol's, under one deadline. With
/// early data allowed the handshake runs on the early-data stream
/// ([`sixpath_net::tls::early`]), otherwise on tokio-rustls'.
async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    addresses: (Option<SocketAddr>, SocketAddr),
    protocols: &[Protocol],
    shared: &Shared,
    deadline: Instant,
    outcome: &mut Outcome,
) {
    let config = acceptor.config();
    if config.max_early_data_size > 0 {
        let accept = sixpath_net::tls::early::accept(Arc::clone(config), stream, deadline);
        let accepted = tokio::time::timeout_at(deadline, accept).await;
        if let Ok(Ok(stream)) = &accepted {
            if stream.early_data_accepted() {
                shared.stats.early_data(crate::stats::EarlyResult::Accepted);
            } else if stream.early_data_rejected() {
                shared.stats.early_data(crate::stats::EarlyResult::Rejected);
            }
        }
        let handshake = |s: &sixpath_net::tls::early::EarlyTlsStream<TcpStream>| {
            sixpath_net::tls::Handshake::of(s.get_ref().1)
        };
        serve_handshaken(
            accepted, handshake, addresses, protocols, shared, deadline, outcome,
        )
        .await;
    } else {
        let accept = acceptor.accept(stream).into_fallible();
        let accepted = tokio::time::timeout_at(deadline, accept).await;
        let handshake = |s: &sixpath_net::tls::server::TlsStream<TcpStream>| {
            sixpath_net::tls::Handshake::of(s.get_ref().1)
        };
        serve_handshaken(
            accepted, handshake, addresses, protocols, shared, deadline, outcome,
        )
        .await;
    }
}

/// After a TLS accept that ended (`Ok`) or ran out of time (`Err`): the
/// protocol's handshake on the decrypted stream, or the failure recorded
/// and the connection closed without a reset (rustls has sent its alert).
async fn serve_handshaken<S, E: std::fmt::Display>(
    accepted: Result<Result<S, (E, TcpStream)>, tokio::time::error::Elapsed>,
    handshake: impl FnOnce(&S) -> Option<sixpath_net::tls::Handshake>,
    addresses: (Option<SocketAddr>, SocketAddr),
    protocols: &[Protocol],
    shared: &Shared,
    deadline: Instant,
    outcome: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Reset + EarlyData + Unpin + 'static,
{
    match accepted {
        Ok(Ok(stream)) => {
            count_handshake(handshake(&stream), shared, outcome);
            // Boxed: the TLS connection state is large, and the stream
            // moves through the handshake into the relay.
            let stream = Box::new(stream);
            serve_protocols(stream, addresses, protocols, shared, deadline, outcome).await;
        }
        Ok(Err((e, stream))) => {
            outcome.reply = format!("TLS handshake failed: {e}");
            Framed::new(stream).reject(&[]).await;
        }
        Err(_) => outcome.reply = "TLS handshake timeout".into(),
    }
}

/// Records which TLS handshake (full or resumed) a connection made.
fn count_handshake(
    kind: Option<sixpath_net::tls::Handshake>,
    shared: &Shared,
    outcome: &mut Outcome,
) {
    if let Some(kind) = kind {
        outcome.tls_handshake = Some(kind);
        shared.stats.tls_handshake(kind);
    }
}

/// Waits (polling every millisecond, at most until `deadline`) while an
/// MPTCP connection accepted with data in its SYN is still in `SYN_RECV`.
/// Linux 6.18 keeps what the server writes in that state queued until its
/// next write: a SOCKS6 reply written before the client's ACK arrived never
/// left (measured on the testbed, `docs/testbed.md`). With the wait the
/// reply leaves when the ACK arrives, as it would without Fast Open.
async fn wait_handshake_end(stream: &TcpStream, deadline: Instant) {
    while sys::tcp_state(stream).is_ok_and(|s| s == sys::TCP_SYN_RECV) && Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Protocol detection on the first byte and the protocol's handshake, on
/// the plain or decrypted stream.
#[allow(clippy::manual_async_fn)] // Arguments kept once, not twice.
fn serve_protocols<'a, S>(
    stream: S,
    (local, peer): (Option<SocketAddr>, SocketAddr),
    protocols: &'a [Protocol],
    shared: &'a Shared,
    deadline: Instant,
    outcome: &'a mut Outcome,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Reset + EarlyData + Unpin + 'static,
{
    async move {
        // The peek borrows `framed` inside `peek_first`: a local borrowed here
        // would keep its room in this future for the relay's whole life.
        let (mut framed, first) = peek_first(
            Framed::new(stream).with_addresses(local, Some(peer)),
            deadline,
        )
        .await;
        match first {
            Ok(Ok(first)) => match detect(first, protocols) {
                // TLS early data may be a replay (RFC 8446 §8): only a SOCKS6
                // request with an idempotence token is served before the
                // handshake completes (`handshake::socks6`); every other
                // protocol waits for it.
                Some(p) if p != Protocol::Socks6 && framed.is_early() => {
                    outcome.protocol = Some(p.name());
                    match tokio::time::timeout_at(deadline, framed.confirm()).await {
                        Ok(Ok(())) => {
                            shared.stats.early_data(crate::stats::EarlyResult::Waited);
                            Box::pin(serve_detected(framed, p, shared, deadline, outcome)).await;
                        }
                        Ok(Err(e)) => outcome.reply = format!("TLS handshake failed: {e}"),
                        Err(_) => outcome.reply = "TLS handshake timeout".into(),
                    }
                }
                Some(p) => serve_detected(framed, p, shared, deadline, outcome).await,
                None => {
                    // Unknown or not served here: the SOCKS6 Version Mismatch
                    // Reply, one byte 0x06, then a clean close (draft -11 §5).
                    outcome.reply =
                        format!("unsupported first byte 0x{first:02x}: version mismatch");
                    framed.reject(&[0x06]).await;
                }
            },
            Ok(Err(e)) => outcome.reply = e.to_string(),
            Err(_) => outcome.reply = "handshake timeout".into(),
        }
    }
}

/// The handshake of the detected protocol, its command and the relay.
#[allow(clippy::manual_async_fn)] // Arguments kept once, not twice.
fn serve_detected<'a, S>(
    framed: Framed<S>,
    protocol: Protocol,
    shared: &'a Shared,
    deadline: Instant,
    outcome: &'a mut Outcome,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Reset + EarlyData + Unpin + 'static,
{
    async move {
        // Each handshake and its command run boxed and return what the
        // relay needs, so their state is freed before the relay starts.
        match protocol {
            p @ (Protocol::Socks5 | Protocol::Socks4) => {
                outcome.protocol = Some(p.name());
                let h = Box::pin(socks5(framed, shared, deadline, outcome)).await;
                relay(h, shared, outcome).await;
            }
            Protocol::Socks6 => {
                outcome.protocol = Some("socks6");
                let h = Box::pin(socks6(framed, shared, deadline, outcome)).await;
                relay(h, shared, outcome).await;
            }
            Protocol::Convert => {
                outcome.protocol = Some("convert");
                let h = Box::pin(convert(framed, shared, deadline, outcome)).await;
                relay(h, shared, outcome).await;
            }
        }
    }
}

/// The first byte of `framed` (left in its buffer), by `deadline`, and
/// `framed` back.
async fn peek_first<S>(
    mut framed: Framed<S>,
    deadline: Instant,
) -> (
    Framed<S>,
    Result<
        Result<u8, sixpath_net::framed::ReadError<std::convert::Infallible>>,
        tokio::time::error::Elapsed,
    >,
)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = tokio::time::timeout_at(deadline, framed.peek_u8()).await;
    (framed, first)
}

/// A SOCKS5 or SOCKS4 handshake, then the command it accepted.
async fn socks5<S>(
    f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    use handshake::socks5::Accepted;
    let (f, req) = handshake::socks5::serve(f, shared, deadline, out).await?;
    match req {
        Accepted::Connect(target) => {
            return command::connect::serve_socks5(f, shared, &target, out).await;
        }
        Accepted::Bind(hint) => command::bind::serve_socks5(f, shared, &hint, out).await,
        Accepted::UdpAssociate(declared) => {
            command::udp::serve_socks5(f, shared, &declared, out).await;
        }
        Accepted::Socks4Connect(req) => {
            return command::connect::serve_socks4(f, shared, req.endpoint(), out).await;
        }
        Accepted::Socks4Bind(req) => {
            command::bind::serve_socks4(f, shared, req.endpoint(), out).await;
        }
    }
    None
}

/// A SOCKS6 handshake, then the command it accepted.
async fn socks6<S>(
    f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Reset + EarlyData + Unpin + 'static,
{
    use handshake::socks6::Accepted;
    let (f, req) = handshake::socks6::serve(f, shared, deadline, out).await?;
    match req {
        Accepted::Noop { new_session } => {
            command::noop::serve_socks6(f, new_session.as_ref(), out).await;
        }
        Accepted::Connect {
            req,
            initial,
            new_session,
        } => {
            let new = new_session.as_ref();
            return command::connect::serve_socks6(f, shared, &req, &initial, new, out).await;
        }
        Accepted::Bind {
            req,
            session,
            new_session,
        } => {
            let (s, new) = (session.as_ref(), new_session.as_ref());
            command::bind::serve_socks6(f, shared, &req, s, new, out).await;
        }
        Accepted::UdpAssociate { req, new_session } => {
            command::udp::serve_socks6(f, shared, &req, new_session.as_ref(), out).await;
        }
    }
    None
}

/// A Convert handshake, then its Connect.
async fn convert<S>(
    f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let (f, req) = handshake::convert::serve(f, shared, deadline, out).await?;
    command::connect::serve_convert(f, shared, &req.connect, req.info, out).await
}

/// Relays a handed-off connection, if the command got that far. Not an
/// `async fn`: that would keep `handoff` twice (as its argument and as
/// moved into its body); the `async` block relays it where it is.
#[allow(clippy::manual_async_fn)] // Arguments kept once, not twice.
fn relay<'a, S>(
    mut handoff: Option<Handoff<S>>,
    shared: &'a Shared,
    outcome: &'a mut Outcome,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    async move {
        if let Some(h) = &mut handoff {
            outcome.relay = Some(h.relay(shared.relay_options(), &shared.cutoff).await);
        }
    }
}

/// The protocol a first byte selects on a listener serving `protocols`. A
/// listener that serves Convert alone hands it every byte, so a client of
/// another Convert version gets Convert's Unsupported Version answer.
fn detect(first: u8, protocols: &[Protocol]) -> Option<Protocol> {
    if protocols == [Protocol::Convert] {
        return Some(Protocol::Convert);
    }
    Protocol::from_first_byte(first).filter(|p| protocols.contains(p))
}

fn log(peer: SocketAddr, transport: Transport, started: Instant, o: &Outcome) {
    let (up, down, end, path) = o.relay.map_or((0, 0, "none", "-"), |r| {
        (
            r.client_to_target,
            r.target_to_client,
            end_name(r.end),
            r.path.name(),
        )
    });
    tracing::info!(
        %peer,
        protocol = o.protocol.unwrap_or("-"),
        user = o.user.as_deref().unwrap_or("-"),
        target = o.target.as_deref().unwrap_or("-"),
        reply = %o.reply,
        tls = o.tls_name(),
        bytes_up = up,
        bytes_down = down,
        end,
        relay = path,
        duration_ms = started.elapsed().as_millis() as u64,
        transport = transport.name(),
        subflows = transport.subflows(),
        "connection closed"
    );
}

fn end_name(e: relay::RelayEnd) -> &'static str {
    match e {
        relay::RelayEnd::Closed => "closed",
        relay::RelayEnd::Idle => "idle-timeout",
        relay::RelayEnd::ClientError => "client-error",
        relay::RelayEnd::TargetError => "target-error",
        relay::RelayEnd::Drained => "drained",
    }
}
