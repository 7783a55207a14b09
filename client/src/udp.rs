//! SOCKS5 UDP ASSOCIATE from applications, carried as one SOCKS6 UDP
//! ASSOCIATE over one Multipath TCP connection to the server, datagrams
//! over the TCP stream (draft -11 §7.3, spec digest §2.5).
//!
//! - The client opens a UDP socket for the application on the address the
//!   application reached the front-end on, and answers the SOCKS5 request
//!   with that socket's address, once the server has accepted the
//!   association (a refusal gets the SOCKS5 code of the failure).
//! - Datagrams are taken only from the application's host (the control
//!   connection's peer address) and, when the request named one, its
//!   port; otherwise the first datagram fixes the port. Others are
//!   dropped, as are fragments (FRAG ≠ 0, RFC 1928 §7) and malformed
//!   headers.
//! - Each datagram goes to the server as a SOCKS6 Datagram message with
//!   its destination as given (domain names pass through, resolved by the
//!   server). Datagrams from the server go back with the SOCKS5 header
//!   naming their source.
//! - Towards the server, at most [`QUEUE`] datagrams wait for the TCP
//!   stream; more are dropped (UDP semantics: a slow uplink loses
//!   datagrams instead of growing memory).
//! - The association ends when the application's control connection
//!   closes (or sends anything: RFC 1928 gives it no further messages), or
//!   when the server closes its connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use bytes::{Buf, BytesMut};
use sixpath_protocol::socks5::{Reply, ReplyCode, UdpHeader};
use sixpath_protocol::socks6::Command;
use sixpath_protocol::socks6::udp::{Datagram, UdpMessage};
use sixpath_protocol::{Decoded, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::conn::{Outcome, Shared};
use crate::failure::{Failure, Kind};
use crate::upstream::socks6;
use sixpath_net::framed::Framed;
use sixpath_net::relay::Cutoff;

/// Why an association ended, when the shutdown drain cut it short.
const DRAINED: &str = "ended by the drain (reset)";

/// Datagrams waiting for the stream to the server, per association.
pub const QUEUE: usize = 256;

/// Largest UDP datagram read from the application or written to it.
const MAX_DATAGRAM: usize = 65_535;

/// Serves a SOCKS5 UDP ASSOCIATE: `f` is the control connection past the
/// request, `from` the address the application said it sends from.
pub async fn serve(mut f: Framed<TcpStream>, from: Endpoint, shared: &Shared, out: &mut Outcome) {
    let settings = shared.upstream.settings();
    let local = f.get_ref().local_addr().ok();
    let peer = f.get_ref().peer_addr().ok();
    let (Some(local), Some(peer)) = (local, peer) else {
        out.reply = "control connection gone".into();
        return;
    };
    // A dual-stack listener sees IPv4 applications as ::ffff:a.b.c.d; they
    // get a plain IPv4 address to send to.
    let socket = match UdpSocket::bind(SocketAddr::new(local.ip().to_canonical(), 0)).await {
        Ok(s) => s,
        Err(e) => {
            out.reply = format!("cannot open the UDP socket: {e}").into();
            let mut b = Vec::new();
            Reply::failure(ReplyCode::GENERAL_SOCKS_SERVER_FAILURE).encode(&mut b);
            f.reject(&b).await;
            return;
        }
    };
    let deadline = Instant::now() + settings.handshake_timeout;
    let opened = match open(shared, deadline).await {
        Ok(o) => o,
        Err(failure) => {
            out.reply = failure.detail.clone().into();
            let mut b = Vec::new();
            Reply::failure(failure.socks5()).encode(&mut b);
            f.reject(&b).await;
            return;
        }
    };
    out.server = Some(opened.server);
    let Ok(bound) = socket.local_addr() else {
        out.reply = "UDP socket gone".into();
        return;
    };
    let mut b = Vec::new();
    Reply::new(ReplyCode::SUCCEEDED, Endpoint::from(bound)).encode(&mut b);
    if f.send(&b).await.is_err() {
        out.reply = "application gone before the reply".into();
        return;
    }
    out.reply = "associated".into();
    let app = App::new(peer.ip(), &from);
    let (control, _) = f.into_parts();
    relay(control, opened, &socket, &app, &shared.cutoff, out).await;
}

/// The association through the server: the stream past the Association
/// Initialization, and its ID.
struct Association {
    stream: crate::upstream::ServerStream,
    buf: BytesMut,
    id: u64,
    server: SocketAddr,
}

async fn open(shared: &Shared, deadline: Instant) -> Result<Association, Failure> {
    let upstream = &shared.upstream;
    if upstream.settings().upstream != crate::config::UpstreamProtocol::Socks6 {
        return Err(Failure::new(
            Kind::CommandNotSupported,
            "UDP needs the SOCKS6 upstream",
        ));
    }
    let attempt = async {
        let server = upstream.server_addr().await?;
        let any = Endpoint::unspecified();
        let (opened, _) = socks6::exchange(
            upstream,
            server,
            Command::UDP_ASSOCIATE,
            &any,
            &[],
            deadline,
        )
        .await?;
        let mut stream = opened.stream;
        let mut buf = opened.from_server;
        // The Association Initialization follows the Operation Reply.
        let id = loop {
            match UdpMessage::decode(&buf) {
                Ok(Decoded::Complete { msg, len }) => {
                    buf.advance(len);
                    match msg {
                        UdpMessage::AssociationInit { id } => break id,
                        m => {
                            return Err(Failure::new(
                                Kind::General,
                                format!(
                                    "server {server}: expected Association Initialization, got {:?}",
                                    m.message_type()
                                ),
                            ));
                        }
                    }
                }
                Ok(Decoded::NeedMore(_)) => {}
                Err(e) => {
                    return Err(Failure::new(
                        Kind::General,
                        format!("server {server}: bad UDP association message: {e}"),
                    ));
                }
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| Failure::server(&e, &server.to_string()))?;
            if n == 0 {
                return Err(Failure::new(
                    Kind::General,
                    format!("server {server} closed before the Association Initialization"),
                ));
            }
        };
        Ok(Association {
            stream,
            buf,
            id,
            server,
        })
    };
    tokio::time::timeout_at(deadline, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::server_timeout(
                &upstream.settings().server.to_string(),
                "answer",
            ))
        })
}

/// Who may send datagrams into the association.
struct App {
    ip: IpAddr,
    /// The application's source, once known.
    addr: Mutex<Option<SocketAddr>>,
}

impl App {
    fn new(ip: IpAddr, from: &Endpoint) -> Self {
        // The request's address, if it names a port (RFC 1928: "the
        // address and port that the client expects to use to send UDP
        // datagrams"); its IP, if any, is taken from the control
        // connection, which it must match anyway.
        let addr = (from.port != 0).then(|| SocketAddr::new(ip, from.port));
        Self {
            ip,
            addr: Mutex::new(addr),
        }
    }

    /// True if `src` is the application: its host, and its port once
    /// known (the first datagram fixes it).
    fn admit(&self, src: SocketAddr) -> bool {
        if !same_ip(src.ip(), self.ip) {
            return false;
        }
        let mut a = self
            .addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = *a {
            return known.port() == src.port();
        }
        *a = Some(src);
        true
    }

    fn addr(&self) -> Option<SocketAddr> {
        *self
            .addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

async fn relay(
    mut control: TcpStream,
    assoc: Association,
    socket: &UdpSocket,
    app: &App,
    cutoff: &Cutoff,
    out: &mut Outcome,
) {
    let Association {
        mut stream,
        mut buf,
        id,
        server,
    } = assoc;
    let (mut rd, mut wr) = tokio::io::split(&mut stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let mut up = 0u64;
    let mut down = 0u64;
    let mut dropped = 0u64;

    let end = {
        let control_closed = async {
            let mut b = [0u8; 512];
            // EOF, an error, or bytes RFC 1928 does not define: the end.
            let _ = control.read(&mut b).await;
        };
        let from_app = async {
            let mut b = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok((n, src)) = socket.recv_from(&mut b).await else {
                    return;
                };
                if !app.admit(src) {
                    tracing::debug!(%src, "UDP datagram from another source dropped");
                    continue;
                }
                let data = b.get(..n).unwrap_or_default();
                let Ok((header, offset)) = UdpHeader::decode_datagram(data) else {
                    continue;
                };
                let payload = data.get(offset..).unwrap_or_default();
                if payload.len() > Datagram::max_payload_len(&header.endpoint) {
                    continue;
                }
                let msg = UdpMessage::Datagram(Datagram {
                    id,
                    endpoint: header.endpoint,
                    payload: payload.to_vec(),
                });
                let mut enc = Vec::with_capacity(msg.encoded_len());
                if msg.encode(&mut enc).is_err() {
                    continue;
                }
                match tx.try_send(enc) {
                    Ok(()) => up += payload.len() as u64,
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        };
        let to_server = async {
            while let Some(m) = rx.recv().await {
                if wr.write_all(&m).await.is_err() {
                    return;
                }
            }
        };
        let from_server = async {
            let mut out_buf = Vec::with_capacity(MAX_DATAGRAM);
            loop {
                match UdpMessage::decode(&buf) {
                    Ok(Decoded::Complete { msg, len }) => {
                        buf.advance(len);
                        if msg.id() != id {
                            continue;
                        }
                        if let UdpMessage::Datagram(d) = msg
                            && let Some(to) = app.addr()
                        {
                            out_buf.clear();
                            UdpHeader::new(d.endpoint).encode(&mut out_buf);
                            out_buf.extend_from_slice(&d.payload);
                            if socket.send_to(&out_buf, to).await.is_ok() {
                                down += d.payload.len() as u64;
                            }
                        }
                        // Confirmation, Error (not asked for), unknown types:
                        // nothing to do.
                        continue;
                    }
                    Ok(Decoded::NeedMore(_)) => {}
                    Err(e) => {
                        tracing::debug!(%server, error = %e, "bad UDP association message: closing");
                        return "bad message from the server";
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return "server closed",
                    Ok(_) => {}
                }
            }
        };
        let end: &str = tokio::select! {
            () = control_closed => "application closed",
            () = from_app => "UDP socket error",
            () = to_server => "server gone",
            why = from_server => why,
            () = cutoff.reached() => DRAINED,
        };
        end
    };
    if end == DRAINED {
        // Cut short by the shutdown drain: both connections end with a
        // reset, not a FIN.
        let _ = control.set_zero_linger();
        let _ = stream.set_zero_linger();
    }
    tracing::debug!(
        %server,
        up,
        down,
        dropped,
        "UDP association ended: {end}"
    );
    out.reply = format!("associated; {end}").into();
}
