//! One client connection: connection caps, the handshake deadline,
//! protocol detection on the first byte, the protocol's handshake, the
//! relay, and one log line when it ends.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Protocol, Settings};
use crate::handshake::{self, Framed};
use crate::limits::Limits;
use crate::outbound::Connector;
use crate::relay::{self, RelayOptions, RelayStats};
use crate::sys::{self, Transport};
use crate::users::Users;

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
}

impl Shared {
    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.users.is_some()
    }

    /// Checks credentials; true when no authentication is configured.
    pub fn verify(&self, username: &[u8], password: &[u8]) -> bool {
        match &self.users {
            None => true,
            Some(u) => u
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .verify(username, password),
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
}

/// Writes the leftover handshake bytes to the target, then relays.
pub async fn relay_with_leftover<S>(
    client: S,
    leftover: &[u8],
    mut target: TcpStream,
    opts: RelayOptions,
) -> RelayStats
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let pre = leftover.len() as u64;
    if !leftover.is_empty() && target.write_all(leftover).await.is_err() {
        return RelayStats {
            client_to_target: 0,
            target_to_client: 0,
            end: relay::RelayEnd::TargetError,
            path: relay::RelayPath::Copy,
        };
    }
    let mut stats = relay::relay(client, target, opts).await;
    stats.client_to_target += pre;
    stats
}

/// Serves one accepted connection to the end.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    protocols: Arc<[Protocol]>,
    shared: Arc<Shared>,
) {
    let started = Instant::now();
    let transport = sys::transport(&stream);
    let Ok(_permit) = shared.limits.acquire(peer.ip()) else {
        tracing::warn!(%peer, "connection refused: connection limit reached");
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut outcome = Outcome::default();
    let deadline = started + shared.settings.handshake_timeout;
    let mut framed = Framed::new(stream);

    match tokio::time::timeout_at(deadline, framed.peek_u8()).await {
        Ok(Ok(first)) => match detect(first, &protocols) {
            Some(p @ (Protocol::Socks5 | Protocol::Socks4)) => {
                outcome.protocol = Some(p.name());
                handshake::socks5::serve(framed, &shared, deadline, &mut outcome).await;
            }
            Some(Protocol::Socks6) => {
                outcome.protocol = Some("socks6");
                handshake::socks6::serve(framed, &shared, deadline, &mut outcome).await;
            }
            Some(Protocol::Convert) => {
                outcome.protocol = Some("convert");
                handshake::convert::serve(framed, &shared, deadline, &mut outcome).await;
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
    log(peer, transport, started, &outcome);
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
