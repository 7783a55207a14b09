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
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use sixpath_net::sys;
use sixpath_net::tls::{TlsConnector, client};
use sixpath_protocol::Endpoint;
use sixpath_protocol::convert::Cookie;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Settings, UpstreamProtocol};
use crate::failure::{Failure, Fault, Kind};
use sixpath_net::framed::ReadError;

/// How long a resolved server name is used before it is resolved again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
/// How long an attempt to open a connection may go unanswered before a
/// change of path (see [`Upstream::open`]) makes it start again on the new
/// path.
const STUCK: Duration = Duration::from_millis(300);

/// The start of the log detail of a failed TLS handshake with the server
/// (the statistics count these as class `tls`).
pub const TLS_FAILURE: &str = "TLS with server";

/// The connection to the server: plain TCP, or TLS 1.3 over it. Derefs
/// to the TCP stream for socket-level questions (transport, `TCP_INFO`,
/// subflows).
#[derive(Debug)]
pub enum ServerStream {
    /// Plain TCP (or MPTCP).
    Plain(TcpStream),
    /// TLS 1.3 over TCP (or MPTCP); true if the request was sent as early
    /// data.
    Tls(Box<client::TlsStream<TcpStream>>, bool),
}

impl ServerStream {
    /// The kind of TLS handshake made (`None` over plain TCP).
    pub fn tls_handshake(&self) -> Option<sixpath_net::tls::Handshake> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(s, _) => sixpath_net::tls::Handshake::of(s.get_ref().1),
        }
    }

    /// Whether the server took the request sent as TLS early data (`None`
    /// over plain TCP or when none was sent).
    pub fn early_data(&self) -> Option<bool> {
        match self {
            Self::Tls(s, true) => Some(s.get_ref().1.is_early_data_accepted()),
            _ => None,
        }
    }
}

impl Deref for ServerStream {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s, _) => s.get_ref().0,
        }
    }
}

impl sixpath_net::framed::Reset for ServerStream {
    fn reset_on_close(&self) -> io::Result<()> {
        (**self).set_zero_linger()
    }

    fn unacknowledged(&self) -> io::Result<usize> {
        sixpath_net::sys::unacknowledged(&**self)
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection through the server, ready to relay.
#[derive(Debug)]
pub struct Opened {
    /// The stream to the server, past the handshake.
    pub stream: ServerStream,
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
/// while the last connection through the server succeeded: after the
/// server could not be reached or broke the exchange (or before the first
/// success), applications wait for the server's answer and get a proper
/// error instead of a closed connection.
///
/// What each failure does ([`Health::failed`], by [`Fault`]):
///
/// - the target's (the server answered): the server is up;
/// - unreachable: "server unreachable", early replies stop until a
///   connection succeeds;
/// - a broken exchange (closed without a reply, a reply that does not
///   decode, TLS): said as such, early replies stop the same way;
/// - credentials refused: "authentication refused by server", once until
///   a connection succeeds; early replies are left as they are (the server
///   is reachable; a configuration error is not an outage).
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    /// The server refused the credentials since the last success.
    auth_refused: std::sync::atomic::AtomicBool,
}

const UNKNOWN: u8 = 0;
const GOOD: u8 = 1;
const DOWN: u8 = 2;
const BROKEN: u8 = 3;

impl Health {
    /// True when the last attempt reached the server.
    pub fn is_good(&self) -> bool {
        self.state.load(Ordering::Relaxed) == GOOD
    }

    /// Records an attempt that reached the server.
    pub fn good(&self) {
        self.auth_refused.store(false, Ordering::Relaxed);
        match self.state.swap(GOOD, Ordering::Relaxed) {
            DOWN => tracing::info!("server reachable again: early replies resume"),
            BROKEN => tracing::info!("server answers properly again: early replies resume"),
            _ => {}
        }
    }

    /// Records a failed attempt (see the type's documentation).
    pub fn failed(&self, f: &Failure) {
        match f.fault {
            Fault::Target => self.good(),
            Fault::Unreachable => {
                if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
                    tracing::warn!(
                        detail = %f.detail,
                        "server unreachable: applications now wait for the server's answer until it is back"
                    );
                }
            }
            Fault::Protocol => {
                if self.state.swap(BROKEN, Ordering::Relaxed) != BROKEN {
                    tracing::warn!(
                        detail = %f.detail,
                        "the server was reached but the exchange with it broke (not an outage): \
                         applications now wait for the server's answer until a connection succeeds"
                    );
                }
            }
            Fault::AuthRefused => {
                if !self.auth_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        detail = %f.detail,
                        "authentication refused by server: check --user and --password-file"
                    );
                }
            }
        }
    }

    /// True before the first attempt.
    pub fn is_unknown(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UNKNOWN
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
    /// How SOCKS6 domain names are written, as configured or detected.
    padding: socks6::Padding,
    /// The interface the server connection's first subflow is bound to
    /// (`backup` and `single` path policies).
    device: Mutex<Option<String>>,
    /// Bumped (and `device_moved` notified) whenever `device` changes.
    device_generation: std::sync::atomic::AtomicU64,
    device_moved: tokio::sync::Notify,
}

/// The receive buffer of a Multipath TCP server connection that uses TCP
/// Fast Open (see [`Upstream::dial`]).
const TFO_MPTCP_RCVBUF: usize = 4 << 20;

/// How long cookie-less TCP Fast Open stays off after it made Multipath
/// TCP fall back.
const TFO_RETRY: Duration = Duration::from_secs(600);

impl Upstream {
    /// An upstream for `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            resolved: Mutex::new(None),
            cookies: Mutex::new(HashMap::new()),
            health: Health::default(),
            tfo_broken: Mutex::new(None),
            sessions: session::Sessions::new(),
            padding: socks6::Padding::new(settings.domain_padding),
            device: Mutex::new(None),
            device_generation: std::sync::atomic::AtomicU64::new(0),
            device_moved: tokio::sync::Notify::new(),
            settings,
        }
    }

    /// How SOCKS6 domain names are written towards the server.
    pub fn padding(&self) -> &socks6::Padding {
        &self.padding
    }

    /// SOCKS6 sessions and idempotence tokens, per server.
    pub fn sessions(&self) -> &session::Sessions {
        &self.sessions
    }

    /// Binds every new server connection to interface `device`
    /// (`SO_BINDTODEVICE`), or to none.
    pub fn set_device(&self, device: Option<String>) {
        let mut current = self
            .device
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current != device {
            *current = device;
            self.device_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            self.device_moved.notify_waiters();
        }
    }

    /// Completes once the interface for new server connections has
    /// changed since generation `since`.
    async fn device_moved_since(&self, since: u64) {
        loop {
            let moved = self.device_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self
                .device_generation
                .load(std::sync::atomic::Ordering::Acquire)
                != since
            {
                return;
            }
            moved.await;
        }
    }

    /// The interface server connections are bound to.
    pub fn device(&self) -> Option<String> {
        self.device
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
                    Failure::new(
                        Kind::HostUnreachable,
                        format!("server {server}: no address"),
                    )
                    .with_fault(Fault::Unreachable)
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
                    Failure::new(
                        Kind::HostUnreachable,
                        format!("server {server}: cannot resolve: {e}"),
                    )
                    .with_fault(Fault::Unreachable)
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
        let attempt = || async {
            match self.settings.upstream {
                UpstreamProtocol::Socks6 => socks6::open(self, target, initial, deadline).await,
                UpstreamProtocol::Convert => convert::open(self, target, initial, deadline).await,
            }
        };
        let since = self
            .device_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let started = Instant::now();
        let mut first = Box::pin(attempt());
        // Name resolution included: nothing may outlast the deadline.
        let result = tokio::time::timeout_at(deadline, async {
            // The path manager moved new connections to another path (the
            // one this attempt is bound to went down) while the server had
            // not answered after STUCK: the SYN most likely went into the
            // dead path and would wait for it to come back. One new attempt
            // on the new path. (A SYN that did reach the server is reset
            // when this one is dropped.)
            tokio::select! {
                r = &mut first => return r,
                () = self.device_moved_since(since) => {}
            }
            // A quick attempt is not stuck: let it finish.
            let stuck_at = started + STUCK;
            if Instant::now() < stuck_at {
                tokio::select! {
                    r = &mut first => return r,
                    () = tokio::time::sleep_until(stuck_at) => {}
                }
            }
            // The stuck attempt's socket closes before the new one opens.
            drop(first);
            tracing::info!(
                target = %target,
                device = self.device().as_deref().unwrap_or("(routing)"),
                "the path of a connection being opened went down: opening it again on the new path"
            );
            attempt().await
        })
        .await
        .unwrap_or_else(|_| {
            Err(Failure::server_timeout(
                &self.settings.server.to_string(),
                "answer",
            ))
        });
        match &result {
            Ok(_) => self.health.good(),
            Err(f) => self.health.failed(f),
        }
        result
    }

    /// Opens a socket to the server and writes `first` (request and
    /// initial data) in one write right after `connect`: with
    /// `TCP_FASTOPEN_CONNECT` the kernel puts it in the SYN. With TLS the
    /// `ClientHello` is that first write (and rides in the SYN), and `first`
    /// goes after the handshake.
    pub async fn dial(&self, server: SocketAddr, first: &[u8]) -> Result<ServerStream, Failure> {
        let name = server.to_string();
        let fail = |e: &io::Error| Failure::server(e, &name);
        // An IPv6 socket even to an IPv4 server, so that the connection
        // can have IPv6 subflows (an IPv6-only LTE, an announced IPv6
        // address of the server); logs keep naming `server`.
        let (sock, mptcp, connect_to) =
            sys::nonblocking_dual_stack_stream_socket(&server, self.settings.mptcp)
                .map_err(|e| fail(&e))?;
        sock.set_tcp_nodelay(true).map_err(|e| fail(&e))?;
        if let Some(device) = self.device() {
            sock.bind_device(Some(device.as_bytes())).map_err(|e| {
                Failure::new(
                    Kind::NetworkUnreachable,
                    format!("server {name}: cannot bind to interface {device}: {e}"),
                )
            })?;
        }
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
            if mptcp {
                // Linux 6.18: on a Multipath TCP connection whose SYN
                // carried data, once a second subflow joins, the receive
                // window the server sees disagrees with ours (the client
                // counts NoDSSInWindow, the server MPTCPRetrans) and
                // downloads crawl at about 1 Mbit/s. A fixed receive
                // buffer, set before connect, avoids it (measured: 0.9 →
                // 37 Mbit/s over two 20 Mbit/s paths). It is a limit, not
                // an allocation; the kernel caps it at net.core.rmem_max.
                let _ = sock.set_recv_buffer_size(TFO_MPTCP_RCVBUF);
            }
        }
        match sock.connect(&connect_to.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(fail(&e)),
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(|e| fail(&e))?;
        let mut stream = match &self.settings.tls {
            None => ServerStream::Plain(stream),
            Some(tls) => {
                // With early data, `connect` returns before the handshake
                // when the session allows it: `first` then goes with the
                // ClientHello, and the flush below completes the handshake
                // (writing `first` again if the server refused it).
                let connector =
                    TlsConnector::from(Arc::clone(&tls.config)).early_data(tls.early_data);
                // Boxed: the TLS handshake's state would otherwise size
                // every connection's handshake future, TLS or not.
                let handshake = Box::pin(connector.connect(tls.server_name.clone(), stream));
                match tokio::time::timeout(self.settings.connect_timeout, handshake).await {
                    Ok(Ok(s)) => {
                        // Still handshaking: the session allows early data
                        // and `first` goes as such.
                        let early = s.get_ref().1.is_handshaking();
                        ServerStream::Tls(Box::new(s), early)
                    }
                    Ok(Err(e)) => {
                        return Err(Failure::new(
                            Kind::General,
                            format!("{TLS_FAILURE} {name}: handshake failed: {e}"),
                        )
                        .with_fault(Fault::Protocol));
                    }
                    Err(_) => return Err(Failure::server_timeout(&name, "TLS handshake")),
                }
            }
        };
        let write = async {
            stream.write_all(first).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.settings.connect_timeout, write).await {
            Ok(Ok(())) => Ok(stream),
            // The TLS handshake may have run in that write.
            Ok(Err(e)) if matches!(stream, ServerStream::Tls(..)) => Err(Failure::new(
                Kind::General,
                format!("{TLS_FAILURE} {name}: {e}"),
            )
            .with_fault(Fault::Protocol)),
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
        if !self.settings.tfo {
            // No data rode in the SYN: nothing to ask the kernel.
            return false;
        }
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

/// The stream's descriptor, to look at the connection state while a reader
/// borrows the stream (no duplicate: the stream, in the caller's `Framed`,
/// outlives every use in [`await_reply`]).
pub fn probe(stream: &TcpStream) -> std::os::fd::RawFd {
    std::os::fd::AsRawFd::as_raw_fd(stream)
}

/// Waits for the server's reply with `read`, bounded by `deadline`; fails
/// early when the TCP connection is still not established after the
/// connect timeout (a server that does not answer SYNs).
pub async fn await_reply<T, E>(
    probe: std::os::fd::RawFd,
    connect_timeout: Duration,
    deadline: Instant,
    server: SocketAddr,
    read: impl Future<Output = Result<T, ReadError<E>>>,
) -> Result<T, ReplyError<E>> {
    let established = async {
        tokio::time::sleep(connect_timeout).await;
        if !sys::handshake_pending(probe) {
            std::future::pending::<()>().await;
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
        let f = match self {
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
        // It answered, but not in the protocol: not unreachable.
        f.with_fault(Fault::Protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(fault: Fault) -> Failure {
        Failure::new(Kind::General, "x").with_fault(fault)
    }

    #[test]
    fn refused_credentials_keep_early_replies_an_outage_or_a_broken_exchange_stops_them() {
        let h = Health::default();
        assert!(h.is_unknown());
        h.failed(&failure(Fault::AuthRefused));
        assert!(h.is_unknown(), "no early replies before a success either");
        h.good();
        h.failed(&failure(Fault::AuthRefused));
        assert!(h.is_good(), "credentials refused: the server is up");
        h.failed(&failure(Fault::Target));
        assert!(h.is_good(), "the target's failure: the server is up");
        h.failed(&failure(Fault::Protocol));
        assert!(!h.is_good());
        h.good();
        h.failed(&failure(Fault::Unreachable));
        assert!(!h.is_good());
        h.failed(&failure(Fault::Target));
        assert!(h.is_good(), "the server answered again");
    }

    #[test]
    fn a_server_that_closes_or_answers_garbage_is_a_protocol_fault_not_unreachable() {
        let server: SocketAddr = "192.0.2.1:1080".parse().unwrap();
        let eof = ReplyError::<sixpath_protocol::socks6::Error>::Read(ReadError::Eof)
            .into_failure(server, "SOCKS6");
        assert_eq!(eof.fault, Fault::Protocol);
        assert_eq!(
            eof.detail,
            "server 192.0.2.1:1080 closed the connection without a SOCKS6 reply"
        );
        let bad = ReplyError::Read(ReadError::Invalid(
            sixpath_protocol::socks6::Error::UnsupportedVersion(5),
        ))
        .into_failure(server, "SOCKS6");
        assert_eq!(bad.fault, Fault::Protocol);
        let refused = ReplyError::<sixpath_protocol::socks6::Error>::Read(ReadError::Io(
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
        ))
        .into_failure(server, "SOCKS6");
        assert_eq!(refused.fault, Fault::Unreachable);
    }
}
