//! CONNECT for SOCKS5 (RFC 1928 §4), SOCKS4 ("CONNECT" section), SOCKS6
//! (draft -11 §7.1) and Convert (RFC 8803): opens the outbound
//! connection, answers in the client's protocol and hands the connection
//! to the relay ([`Handoff`]).
//!
//! - **SOCKS6.** The outbound connection starts with the Initial Data as
//!   its first bytes, in the SYN when the client asked for TFO; the Stack
//!   options shape it and are reported in the Operation Reply (the
//!   `stack` module), with a new Session ID if the request created one.
//! - **Convert.** The downstream connection is opened with the bytes after
//!   the Convert message as its first data; on success the reply (header
//!   only, or with an Extended TCP Header for an Extended Connect) is
//!   written before any byte from the server. A failure is answered with
//!   its Error TLV, then FIN: "The Transport Converter MUST NOT send a RST
//!   immediately after the detection of an error" (RFC 8803 §5.2.8 /
//!   digest §2.9).
//!
//! Every failed connection gets the reply code its error maps to
//! ([`super::socks_reply_code`], or the Convert Error TLV).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bytes::BytesMut;
use sixpath_net::framed::Framed;
use sixpath_protocol::convert::{
    Connect, ErrorTlv, ExtendedTcpHeader, Message, TcpOptionKind, Tlv,
};
use sixpath_protocol::socks5::{Reply, ReplyCode, Socks4Reply, Socks4ReplyCode};
use sixpath_protocol::socks6::{
    OperationReply, ReplyCode as Socks6ReplyCode, Request as Socks6Request, SessionId,
};
use sixpath_protocol::{Address, Endpoint};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Handoff, push_session_id, socks_reply_code};
use crate::outbound::{ConnectError, ConnectOptions};
use crate::state::{Outcome, Shared};
use crate::sys;

mod stack;

use stack::Stack;

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    f(&mut v);
    v
}

/// Serves a SOCKS5 CONNECT to `target`.
pub async fn serve_socks5<S>(
    mut f: Framed<S>,
    shared: &Shared,
    target: &Endpoint,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        ..ConnectOptions::default()
    };
    match shared
        .connector
        .connect(&target.addr, target.port, b"", &opts)
        .await
    {
        Ok(c) => {
            let bind = c
                .stream
                .local_addr()
                .map_or_else(|_| Endpoint::unspecified(), Endpoint::from);
            if f.send(&encode(|b| {
                Reply::new(ReplyCode::SUCCEEDED, bind).encode(b);
            }))
            .await
            .is_err()
            {
                out.reply = "client gone before reply".into();
                return None;
            }
            out.reply = format!("{:?}", ReplyCode::SUCCEEDED);
            Some(Handoff::new(f, c.stream, 0))
        }
        Err(e) => {
            let code = socks5_code(&e);
            out.reply = format!("{code:?}: {e}");
            f.reject(&encode(|b| Reply::failure(code).encode(b))).await;
            None
        }
    }
}

/// SOCKS5 has no "timed out" code; a timeout is reported as host
/// unreachable (0x04).
fn socks5_code(e: &ConnectError) -> ReplyCode {
    match socks_reply_code(e) {
        0x09 => ReplyCode::HOST_UNREACHABLE,
        c => ReplyCode(c),
    }
}

/// Serves a SOCKS4 CONNECT to `target` (DSTIP, or the 4A name, and
/// DSTPORT).
pub async fn serve_socks4<S>(
    mut f: Framed<S>,
    shared: &Shared,
    target: &Endpoint,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let rejected = |code| encode(|b| Socks4Reply::unbound(code).encode(b));
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        ..ConnectOptions::default()
    };
    match shared
        .connector
        .connect(&target.addr, target.port, b"", &opts)
        .await
    {
        Ok(c) => {
            let bind = match c.stream.local_addr() {
                Ok(SocketAddr::V4(a)) => a,
                _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            };
            let reply = encode(|b| Socks4Reply::new(Socks4ReplyCode::GRANTED, bind).encode(b));
            if f.send(&reply).await.is_err() {
                return None;
            }
            out.reply = "GRANTED".into();
            Some(Handoff::new(f, c.stream, 0))
        }
        Err(e) => {
            out.reply = format!("REJECTED_OR_FAILED: {e}");
            f.reject(&rejected(Socks4ReplyCode::REJECTED_OR_FAILED))
                .await;
            None
        }
    }
}

/// Serves a SOCKS6 CONNECT after a successful Authentication Reply:
/// `initial` is the request's Initial Data, the outbound connection's first
/// bytes. A Session ID the request created (`new_session`) goes into the
/// successful Operation Reply.
pub async fn serve_socks6<S>(
    mut f: Framed<S>,
    shared: &Shared,
    req: &Socks6Request,
    initial: &[u8],
    new_session: Option<&SessionId>,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let stack = Stack::of(req);
    let opts = stack.connect_options(shared);
    match shared
        .connector
        .connect(&req.endpoint.addr, req.endpoint.port, initial, &opts)
        .await
    {
        Ok(c) => {
            let bind = c
                .stream
                .local_addr()
                .map_or_else(|_| Endpoint::unspecified(), Endpoint::from);
            let mut reply = OperationReply::new(Socks6ReplyCode::SUCCESS, bind);
            let client = stack.apply_client_leg(f.get_ref());
            stack.report(c.applied, client, c.mptcp, &mut reply);
            push_session_id(&mut reply, new_session);
            if f.send(&encode(|b| reply.encode(b))).await.is_err() {
                out.reply = "client gone before reply".into();
                return None;
            }
            out.reply = format!("{:?}", Socks6ReplyCode::SUCCESS);
            Some(Handoff::new(f, c.stream, initial.len() as u64))
        }
        Err(e) => {
            let code = Socks6ReplyCode(socks_reply_code(&e));
            out.reply = format!("{code:?}: {e}");
            let reply = OperationReply::new(code, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
            None
        }
    }
}

/// The Error TLV for a failed downstream connection (digest §2.9 mapping).
fn error_tlv(e: &ConnectError) -> ErrorTlv {
    match e {
        ConnectError::Refused(_) => ErrorTlv::connection_reset(),
        ConnectError::HostUnreachable { icmp_code, .. } => {
            ErrorTlv::destination_unreachable(icmp_code.unwrap_or(1))
        }
        ConnectError::NetworkUnreachable { icmp_code, .. } => {
            ErrorTlv::destination_unreachable(icmp_code.unwrap_or(0))
        }
        ConnectError::Denied { .. } => ErrorTlv::not_authorized(),
        ConnectError::Resources(_) => ErrorTlv::resource_exceeded(0),
        ConnectError::TimedOut(_)
        | ConnectError::TtlExpired(_)
        | ConnectError::Dns { .. }
        | ConnectError::Other(_) => ErrorTlv::network_failure(0),
    }
}

/// What the downstream SYN+ACK negotiated, rebuilt from `TCP_INFO` and
/// `TCP_MAXSEG` (a userspace converter cannot read the SYN+ACK itself):
/// MSS, SACK-permitted, timestamps, window scale; MPTCP when the
/// downstream connection is Multipath TCP.
fn negotiated_options(stream: &TcpStream) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    if let Ok(mss) = SockRef::from(stream).tcp_mss() {
        out.extend([2, 4]);
        out.extend((mss.min(u32::from(u16::MAX)) as u16).to_be_bytes());
    }
    let opts = sys::tcpi_options(stream).unwrap_or(0);
    if opts & 0x2 != 0 {
        out.extend([4, 2]); // SACK-permitted
    }
    if opts & 0x1 != 0 {
        out.extend([8, 10, 0, 0, 0, 0, 0, 0, 0, 0]); // timestamps (values not kept)
    }
    if matches!(sys::transport(stream), sys::Transport::Mptcp { .. }) {
        out.extend([30, 2]);
    }
    out
}

/// Serves a Convert Connect. `info` is the Supported TCP Extensions TLV
/// when the client also asked for Info: it goes first in the reply.
pub async fn serve_convert<S>(
    mut f: Framed<S>,
    shared: &Shared,
    connect: &Connect,
    info: Option<Tlv>,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let dest = connect.socket_addr();
    let wants = |k: TcpOptionKind| connect.requested_tcp_options().any(|o| o.kind() == k);
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        mptcp: wants(TcpOptionKind::MPTCP),
        fast_open: wants(TcpOptionKind::FAST_OPEN),
        ..ConnectOptions::default()
    };
    // The bytes after the Convert message are the client's first data.
    let client_first = f.buffered().to_vec();
    let host = Address::from(dest.ip());
    match shared
        .connector
        .connect(&host, dest.port(), &client_first, &opts)
        .await
    {
        Ok(c) => {
            let mut tlvs = Vec::new();
            tlvs.extend(info);
            // "A Transport Converter MUST return this TLV if the Client sent
            // an Extended Connect TLV and the connection was accepted."
            if connect.is_extended() {
                tlvs.push(Tlv::ExtendedTcpHeader(ExtendedTcpHeader::new(
                    negotiated_options(&c.stream),
                )));
            }
            let reply = Message::new(tlvs).unwrap_or_else(|_| Message::header_only());
            // The reply goes out in one write, before any server byte.
            if f.send(&reply.to_bytes()).await.is_err() {
                out.reply = "client gone before reply".into();
                return None;
            }
            out.reply = "connected".into();
            // The client's first bytes went out with the connection.
            let (client, _) = f.into_parts();
            let sent = client_first.len() as u64;
            Some(Handoff::from_parts(client, BytesMut::new(), c.stream, sent))
        }
        Err(e) => {
            let tlv = error_tlv(&e);
            out.reply = format!("{:?}: {e}", tlv.code());
            f.reject(&tlv.reply_bytes()).await;
            None
        }
    }
}
