//! One client connection: connection caps, the handshake deadline,
//! protocol detection on the first byte, the protocol's handshake, the
//! relay, and one log line when it ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Protocol, Settings};
use crate::handshake::{self, Framed};
use crate::limits::Limits;
use crate::logins::{FailedLogins, UserCaps, UserSlot};
use crate::outbound::Connector;
use crate::relay::{self, RelayOptions, RelayStats};
use crate::stats::Stats;
use crate::sys::{self, Transport};
use crate::users::Users;
use sixpath_net::tls::TlsAcceptor;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub settings: Settings,
    /// Outbound connections under the egress policy.
    pub connector: Connector,
    /// Users, when authentication is required.
    pub users: Option<RwLock<Users>>,
    /// Connection caps.
    pub limits: Arc<Limits>,
    /// SOCKS6 sessions and their token windows.
    pub sessions: crate::session::Sessions,
    /// UDP associations.
    pub udp: crate::udp::Associations,
    /// Failed logins per source.
    pub failed_logins: FailedLogins,
    /// Concurrent connections per user.
    pub user_caps: Arc<UserCaps>,
    /// Counters for the admin endpoint.
    pub stats: Arc<Stats>,
}

impl Shared {
    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.users.is_some()
    }

    /// Checks credentials from `source`; true when no authentication is
    /// configured. A source with too many recent failures is refused
    /// without the password being checked; a failure is counted against
    /// the source.
    pub fn verify(&self, source: Option<IpAddr>, username: &[u8], password: &[u8]) -> bool {
        let Some(users) = &self.users else {
            return true;
        };
        let source = source.unwrap_or(IpAddr::from([0; 4]));
        let now = std::time::Instant::now();
        let user = String::from_utf8_lossy(username);
        if self.failed_logins.is_blocked(source, now) {
            tracing::warn!(%source, %user, "login refused: too many failed logins from this source");
            self.stats.login_refused();
            return false;
        }
        let ok = users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .verify(username, password);
        if !ok {
            self.stats.auth_failure();
            let n = self.failed_logins.record_failure(source, now);
            if n == self.failed_logins.max_failures() {
                tracing::warn!(
                    %source,
                    %user,
                    failures = n,
                    window_secs = self.failed_logins.window().as_secs(),
                    "too many failed logins: source refused for the rest of the window"
                );
            }
        }
        ok
    }

    /// Takes a connection slot for the authenticated user of `out` (kept in
    /// `out` for the life of the connection); false when the user is at
    /// `--max-connections-per-user`. True without a user.
    pub fn hold_user_slot(&self, out: &mut Outcome) -> bool {
        let Some(user) = &out.user else {
            return true;
        };
        if let Some(slot) = self.user_caps.acquire(user) {
            out.user_slot = Some(slot);
            true
        } else {
            tracing::warn!(%user, "connection refused: per-user connection cap reached");
            false
        }
    }

    /// Relay settings from the configuration.
    pub fn relay_options(&self) -> RelayOptions {
        RelayOptions {
            idle_timeout: self.settings.idle_timeout,
            ..RelayOptions::default()
        }
    }
}

/// What the log line of a finished connection says.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The protocol, once detected.
    pub protocol: Option<&'static str>,
    /// The authenticated user.
    pub user: Option<String>,
    /// The requested target.
    pub target: Option<String>,
    /// The reply sent (protocol-specific code), or why the handshake ended.
    pub reply: String,
    /// The relay's counts, if the connection got that far.
    pub relay: Option<RelayStats>,
    /// The client's address (always set by [`serve`]).
    pub source: Option<IpAddr>,
    /// The user's connection slot, held until the connection ends.
    pub user_slot: Option<UserSlot>,
    /// Whether the connection came in on a TLS listener.
    pub tls: bool,
}

/// What a successful CONNECT hands to the relay: the client stream, the
/// bytes the client sent past its request (for the target), the connected
/// target, and how many bytes already reached the target with the
/// connection (Initial Data in the SYN). The handshake returns it, so its
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

    /// Writes the leftover bytes to the target, frees them, then relays.
    pub async fn relay(self, opts: RelayOptions) -> RelayStats {
        let Self {
            client,
            leftover,
            target,
            delivered,
        } = self;
        let mut stats = relay_with_leftover(client, leftover, target, opts).await;
        stats.client_to_target += delivered;
        stats
    }
}

/// Writes the leftover handshake bytes to the target, frees them, then
/// relays.
pub async fn relay_with_leftover<S>(
    client: S,
    leftover: impl AsRef<[u8]>,
    mut target: TcpStream,
    opts: RelayOptions,
) -> RelayStats
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let pre = leftover.as_ref().len() as u64;
    if pre > 0 && target.write_all(leftover.as_ref()).await.is_err() {
        return RelayStats {
            client_to_target: 0,
            target_to_client: 0,
            end: relay::RelayEnd::TargetError,
            path: relay::RelayPath::Copy,
        };
    }
    drop(leftover);
    let mut stats = relay::relay(client, target, opts).await;
    stats.client_to_target += pre;
    stats
}

/// Serves one accepted connection to the end; with `tls`, the TLS 1.3
/// handshake comes first, under the same deadline as the protocol's.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    protocols: Arc<[Protocol]>,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let started = Instant::now();
    let transport = sys::transport(&stream);
    let _permit = match shared.limits.acquire(peer.ip()) {
        Ok(p) => p,
        Err(cap) => {
            shared.stats.refused(cap);
            tracing::warn!(%peer, ?cap, "connection refused: connection limit reached");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut outcome = Outcome {
        source: Some(peer.ip()),
        ..Outcome::default()
    };
    let deadline = started + shared.settings.handshake_timeout;
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
    shared.stats.record(transport, &outcome);
    log(peer, transport, started, &outcome);
}

/// The TLS 1.3 handshake, then the protocol's, under one deadline.
async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    addresses: (Option<SocketAddr>, SocketAddr),
    protocols: &[Protocol],
    shared: &Shared,
    deadline: Instant,
    outcome: &mut Outcome,
) {
    let accept = acceptor.accept(stream).into_fallible();
    match tokio::time::timeout_at(deadline, accept).await {
        Ok(Ok(stream)) => {
            // Boxed: the TLS connection state is large, and the stream
            // moves through the handshake into the relay.
            let stream = Box::new(stream);
            serve_protocols(stream, addresses, protocols, shared, deadline, outcome).await;
        }
        Ok(Err((e, stream))) => {
            // rustls has sent its alert; close without a reset.
            outcome.reply = format!("TLS handshake failed: {e}");
            Framed::new(stream).reject(&[]).await;
        }
        Err(_) => outcome.reply = "TLS handshake timeout".into(),
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
async fn serve_protocols<S>(
    stream: S,
    (local, peer): (Option<SocketAddr>, SocketAddr),
    protocols: &[Protocol],
    shared: &Shared,
    deadline: Instant,
    outcome: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut framed = Framed::new(stream).with_addresses(local, Some(peer));
    match tokio::time::timeout_at(deadline, framed.peek_u8()).await {
        Ok(Ok(first)) => match detect(first, protocols) {
            // Each handshake runs boxed and returns what the relay needs,
            // so its state is freed before the relay starts.
            Some(p @ (Protocol::Socks5 | Protocol::Socks4)) => {
                outcome.protocol = Some(p.name());
                let h = Box::pin(handshake::socks5::serve(framed, shared, deadline, outcome)).await;
                relay(h, shared, outcome).await;
            }
            Some(Protocol::Socks6) => {
                outcome.protocol = Some("socks6");
                let h = Box::pin(handshake::socks6::serve(framed, shared, deadline, outcome)).await;
                relay(h, shared, outcome).await;
            }
            Some(Protocol::Convert) => {
                outcome.protocol = Some("convert");
                let h =
                    Box::pin(handshake::convert::serve(framed, shared, deadline, outcome)).await;
                relay(h, shared, outcome).await;
            }
            None => {
                // Unknown or not served here: the SOCKS6 Version Mismatch
                // Reply, one byte 0x06, then a clean close (draft -11 §5).
                outcome.reply = format!("unsupported first byte 0x{first:02x}: version mismatch");
                framed.reject(&[0x06]).await;
            }
        },
        Ok(Err(e)) => outcome.reply = e.to_string(),
        Err(_) => outcome.reply = "handshake timeout".into(),
    }
}

/// Relays a handed-off connection, if the handshake got that far.
async fn relay<S>(handoff: Option<Handoff<S>>, shared: &Shared, outcome: &mut Outcome)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    if let Some(h) = handoff {
        outcome.relay = Some(h.relay(shared.relay_options()).await);
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
        tls = o.tls,
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
    }
}
