//! The connection to the server: one socket per application connection,
//! Multipath TCP when the kernel allows (else TCP, reported in the log),
//! TCP Fast Open so the request and the application's first bytes ride in
//! the SYN, and the protocol spoken on it.
//!
//! - [`socks6`]: SOCKS6 CONNECT with 0-RTT initial data and credentials.
//! - [`convert`]: RFC 8803 Connect with the first bytes after the Convert
//!   message, and the converter's cookie.

pub mod convert;
pub mod session;
pub mod socks6;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use sixpath_net::sys;
use sixpath_protocol::Endpoint;
use sixpath_protocol::convert::Cookie;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Settings, UpstreamProtocol};
use crate::failure::{Failure, Kind};
use crate::framed::ReadError;

/// How long a resolved server name is used before it is resolved again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// A connection through the server, ready to relay.
#[derive(Debug)]
pub struct Opened {
    /// The stream to the server, past the handshake.
    pub stream: TcpStream,
    /// Bytes the server sent after its reply (target data for the app).
    pub from_server: BytesMut,
    /// The server's SOCKS6 Operation Reply (SOCKS6 upstream only), passed
    /// on to SOCKS6 applications.
    pub reply: Option<sixpath_protocol::socks6::OperationReply>,
    /// The server's address.
    pub server: SocketAddr,
    /// The SYN's data was acknowledged (TCP Fast Open worked).
    pub syn_data: bool,
}

/// Whether the server is known to answer. Early replies are given only
/// while the last connection through the server succeeded: after a failure
/// (or before the first success), applications wait for the server's
/// answer and get a proper error instead of a closed connection.
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

const UNKNOWN: u8 = 0;
const GOOD: u8 = 1;
const DOWN: u8 = 2;

impl Health {
    /// True when the last attempt reached the server.
    pub fn is_good(&self) -> bool {
        self.0.load(Ordering::Relaxed) == GOOD
    }

    /// Records an attempt that reached the server.
    pub fn good(&self) {
        if self.0.swap(GOOD, Ordering::Relaxed) == DOWN {
            tracing::info!("server reachable again: early replies resume");
        }
    }

    /// Records an attempt that could not reach the server.
    pub fn down(&self) {
        let was = self.0.swap(DOWN, Ordering::Relaxed);
        if was != DOWN {
            tracing::warn!(
                "server unreachable: applications now wait for the server's answer until it is back"
            );
        }
    }

    /// True before the first attempt.
    pub fn is_unknown(&self) -> bool {
        self.0.load(Ordering::Relaxed) == UNKNOWN
    }
}

/// Opens connections through the server.
#[derive(Debug)]
pub struct Upstream {
    settings: Settings,
    resolved: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
    /// Cookies converters gave us (Missing Cookie), per converter.
    cookies: Mutex<HashMap<SocketAddr, Cookie>>,
    /// Server reachability.
    pub health: Health,
    /// When cookie-less TCP Fast Open towards the server was found to break
    /// Multipath TCP (see [`Upstream::check_syn_data`]); retried after
    /// [`TFO_RETRY`].
    tfo_broken: Mutex<Option<Instant>>,
    /// SOCKS6 sessions and idempotence tokens, per server.
    sessions: session::Sessions,
}

/// How long cookie-less TCP Fast Open stays off after it made Multipath
/// TCP fall back.
const TFO_RETRY: Duration = Duration::from_secs(600);

impl Upstream {
    /// An upstream for `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            resolved: Mutex::new(None),
            cookies: Mutex::new(HashMap::new()),
            health: Health::default(),
            tfo_broken: Mutex::new(None),
            sessions: session::Sessions::new(),
        }
    }

    /// SOCKS6 sessions and idempotence tokens, per server.
    pub fn sessions(&self) -> &session::Sessions {
        &self.sessions
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The server's address: the literal, or the name resolved at most
    /// 30 s ago (the first address the system resolver gives).
    pub async fn server_addr(&self) -> Result<SocketAddr, Failure> {
        let server = &self.settings.server;
        if let Some(sa) = server.literal() {
            return Ok(sa);
        }
        {
            let cached = self
                .resolved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, addrs)) = cached.as_ref()
                && at.elapsed() < RESOLVE_TTL
                && let Some(first) = addrs.first()
            {
                return Ok(*first);
            }
        }
        match tokio::net::lookup_host((server.host.as_str(), server.port)).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                let first = addrs.first().copied();
                *self
                    .resolved
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), addrs));
                first.ok_or_else(|| {
                    let mut f = Failure::new(
                        Kind::HostUnreachable,
                        format!("server {server}: no address"),
                    );
                    f.server_fault = true;
                    f
                })
            }
            Err(e) => {
                // A stale answer beats none (e.g. DNS briefly unreachable
                // while roaming).
                let cached = self
                    .resolved
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .as_ref()
                    .and_then(|(_, a)| a.first().copied());
                cached.ok_or_else(|| {
                    let mut f = Failure::new(
                        Kind::HostUnreachable,
                        format!("server {server}: cannot resolve: {e}"),
                    );
                    f.server_fault = true;
                    f
                })
            }
        }
    }

    /// Opens a connection to `target` through the server, with `initial`
    /// as the first bytes for the target. `deadline` bounds the whole
    /// exchange with the server.
    pub async fn open(
        &self,
        target: &Endpoint,
        initial: &[u8],
        deadline: Instant,
    ) -> Result<Opened, Failure> {
        let attempt = async {
            match self.settings.upstream {
                UpstreamProtocol::Socks6 => socks6::open(self, target, initial, deadline).await,
                UpstreamProtocol::Convert => convert::open(self, target, initial, deadline).await,
            }
        };
        // Name resolution included: nothing may outlast the deadline.
        let result = tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::server_timeout(
                    &self.settings.server.to_string(),
                    "answer",
                ))
            });
        // A failure the server reported means it is up; the target is not.
        if result.as_ref().is_err_and(|f| f.server_fault) {
            self.health.down();
        } else {
            self.health.good();
        }
        result
    }

    /// Opens a socket to the server and writes `first` (request and
    /// initial data) in one write right after `connect`: with
    /// `TCP_FASTOPEN_CONNECT` the kernel puts it in the SYN.
    pub async fn dial(&self, server: SocketAddr, first: &[u8]) -> Result<TcpStream, Failure> {
        let name = server.to_string();
        let fail = |e: &io::Error| Failure::server(e, &name);
        let (sock, _) = sys::stream_socket(&server, self.settings.mptcp).map_err(|e| fail(&e))?;
        sock.set_nonblocking(true).map_err(|e| fail(&e))?;
        sock.set_tcp_nodelay(true).map_err(|e| fail(&e))?;
        if self.settings.tfo {
            // Data in every SYN (no cookie needed, 0-RTT from the first
            // connection); after a server dropped such data, only with a
            // cookie it handed out (see `check_syn_data`).
            let set = if self.cookieless_tfo() {
                sys::enable_connect_fastopen(&sock)
            } else {
                sys::enable_connect_fastopen_with_cookie(&sock)
            };
            if let Err(e) = set {
                tracing::debug!(error = %e, "TCP_FASTOPEN_CONNECT not available; request sent after the handshake");
            }
        }
        match sock.connect(&server.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(fail(&e)),
        }
        let mut stream =
            TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(|e| fail(&e))?;
        match tokio::time::timeout(self.settings.connect_timeout, stream.write_all(first)).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(fail(&e)),
            Err(_) => Err(Failure::server_timeout(&name, "connection")),
        }
    }

    fn cookieless_tfo(&self) -> bool {
        if !self.settings.tfo {
            return false;
        }
        let mut broken = self
            .tfo_broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *broken {
            Some(at) if at.elapsed() < TFO_RETRY => false,
            Some(_) => {
                *broken = None;
                true
            }
            None => true,
        }
    }

    /// Looks at a connection to the server once it answered: returns
    /// whether the SYN's data was acknowledged, and stops sending data in
    /// SYNs without a cookie for a while when the server did not take the
    /// data and Multipath TCP fell back to TCP because of it. Linux (6.18
    /// measured) does that when a server without TFO (`net.ipv4.tcp_fastopen`
    /// lacking 0x2) acknowledges only the SYN, and such a fallen-back
    /// connection can even miss the server's FIN; one round trip more beats
    /// losing every subflow.
    pub fn check_syn_data(&self, stream: &TcpStream) -> bool {
        let syn_data = sys::tcpi_options(stream).is_ok_and(|o| o & sys::TCPI_OPT_SYN_DATA != 0);
        if self.cookieless_tfo() && !syn_data && sys::transport(stream) == sys::Transport::Fallback
        {
            *self
                .tfo_broken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
            tracing::warn!(
                server = %self.settings.server,
                "the server did not accept data in the SYN and Multipath TCP fell back to TCP: \
                 for 10 minutes data rides in SYNs only with a TFO cookie. Fix on the server: \
                 sysctl -w net.ipv4.tcp_fastopen=3"
            );
        }
        syn_data
    }

    /// The cookie a converter gave us.
    pub fn cookie(&self, converter: SocketAddr) -> Option<Cookie> {
        self.cookies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&converter)
            .cloned()
    }

    /// Remembers a converter's cookie.
    pub fn remember_cookie(&self, converter: SocketAddr, cookie: Cookie) {
        self.cookies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(converter, cookie);
    }
}

/// A duplicate of the stream's descriptor, to look at the connection state
/// while a reader borrows the stream.
pub fn probe(stream: &TcpStream) -> Option<socket2::Socket> {
    socket2::SockRef::from(stream).try_clone().ok()
}

/// Waits for the server's reply with `read`, bounded by `deadline`; fails
/// early when the TCP connection is still not established after the
/// connect timeout (a server that does not answer SYNs).
pub async fn await_reply<T, E>(
    probe: Option<socket2::Socket>,
    connect_timeout: Duration,
    deadline: Instant,
    server: SocketAddr,
    read: impl Future<Output = Result<T, ReadError<E>>>,
) -> Result<T, ReplyError<E>> {
    let established = async {
        tokio::time::sleep(connect_timeout).await;
        loop {
            // getpeername fails with ENOTCONN until the handshake is done.
            match probe.as_ref().map(socket2::Socket::peer_addr) {
                Some(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => return,
                _ => std::future::pending::<()>().await,
            }
        }
    };
    let name = server.to_string();
    tokio::select! {
        r = tokio::time::timeout_at(deadline, read) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ReplyError::Read(e)),
            Err(_) => Err(ReplyError::Failed(Failure::server_timeout(&name, "reply"))),
        },
        () = established => Err(ReplyError::Failed(Failure::server_timeout(&name, "connection"))),
    }
}

/// Why waiting for a reply failed.
#[derive(Debug)]
pub enum ReplyError<E> {
    /// Reading or decoding failed.
    Read(ReadError<E>),
    /// Already classified.
    Failed(Failure),
}

impl<E: std::fmt::Display> ReplyError<E> {
    /// The failure, with a server that closed after `buffered` bytes (the
    /// SOCKS6 Version Mismatch Reply is one byte, 0x06, then EOF).
    pub fn into_failure(self, server: SocketAddr, protocol: &str) -> Failure {
        let name = server.to_string();
        let mut f = match self {
            Self::Failed(f) => return f,
            Self::Read(ReadError::Io(e)) => return Failure::server(&e, &name),
            Self::Read(ReadError::Eof) => Failure::new(
                Kind::General,
                format!("server {name} closed the connection without a {protocol} reply"),
            ),
            Self::Read(ReadError::TooLarge) => Failure::new(
                Kind::General,
                format!("server {name}: {protocol} reply too large"),
            ),
            Self::Read(ReadError::Invalid(e)) => Failure::new(
                Kind::General,
                format!("server {name}: bad {protocol} reply: {e}"),
            ),
        };
        f.server_fault = true;
        f
    }
}
