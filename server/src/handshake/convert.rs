//! The converter side of the 0-RTT TCP Convert protocol (RFC 8803).
//!
//! The client's Convert message is read (usually straight out of the SYN,
//! thanks to the TFO listener), validated by the protocol crate, and
//! answered:
//!
//! - Info only: the Supported TCP Extensions TLV, then a graceful close.
//! - Connect: the downstream connection is opened with the bytes after the
//!   Convert message as its first data; on success the reply (header only,
//!   or with an Extended TCP Header for an Extended Connect) is written
//!   before any byte from the server, then the relay runs.
//! - Any failure: header + Error TLV, then FIN — "The Transport Converter
//!   MUST NOT send a RST immediately after the detection of an error"
//!   (RFC 8803 §5.2.8 / digest §2.9).
//!
//! Convert carries no credentials, so a server that requires
//! authentication answers Not Authorized (32) to Convert clients. Cookies
//! are not issued yet.

use sixpath_protocol::convert::{
    ErrorTlv, ExtendedTcpHeader, Message, Request, SupportedTcpExtensions, TcpOptionKind, Tlv,
};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Framed, ReadError};
use crate::conn::{Outcome, Shared, relay_with_leftover};
use crate::outbound::{ConnectError, ConnectOptions};
use crate::sys;

/// TCP options this converter can honour when a client lists them in an
/// Extended Connect, and announces in Supported TCP Extensions.
const SUPPORTED: [TcpOptionKind; 4] = [
    TcpOptionKind::SACK_PERMITTED,
    TcpOptionKind::TIMESTAMPS,
    TcpOptionKind::MPTCP,
    TcpOptionKind::FAST_OPEN,
];

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

/// Serves a Convert client (first byte 1).
pub async fn serve<S>(mut f: Framed<S>, shared: &Shared, deadline: Instant, out: &mut Outcome)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let req =
        match tokio::time::timeout_at(deadline, f.next(|b| Request::decode(b, &SUPPORTED))).await {
            Ok(Ok(r)) => r,
            Ok(Err(ReadError::Invalid(e))) => {
                out.reply = format!("bad Convert message: {e}");
                // None means the answer is a reset (Total Length 0): close
                // without a reply.
                let bytes = e.reply_bytes(f.buffered()).unwrap_or_default();
                f.reject(&bytes).await;
                return;
            }
            Ok(Err(e)) => {
                out.reply = e.to_string();
                return;
            }
            Err(_) => {
                out.reply = "handshake timeout".into();
                return;
            }
        };
    let supported = SupportedTcpExtensions::new(&SUPPORTED).map(Tlv::SupportedTcpExtensions);
    let Some(connect) = req.connect else {
        // Info only: capabilities, then a graceful close (digest §2.4).
        out.reply = "info".into();
        let msg = supported
            .ok()
            .and_then(|t| Message::new(vec![t]).ok())
            .unwrap_or_else(Message::header_only);
        f.reject(&msg.to_bytes()).await;
        return;
    };
    let dest = connect.socket_addr();
    out.target = Some(dest.to_string());
    if shared.auth_required() {
        out.reply = "Not Authorized: Convert carries no credentials".into();
        f.reject(&ErrorTlv::not_authorized().reply_bytes()).await;
        return;
    }
    let wants = |k: TcpOptionKind| connect.requested_tcp_options().any(|o| o.kind() == k);
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        mptcp: wants(TcpOptionKind::MPTCP),
        fast_open: wants(TcpOptionKind::FAST_OPEN),
        ..ConnectOptions::default()
    };
    // The bytes after the Convert message are the client's first data.
    let client_first = f.buffered().to_vec();
    let host = sixpath_protocol::Address::from(dest.ip());
    match shared
        .connector
        .connect(&host, dest.port(), &client_first, &opts)
        .await
    {
        Ok(c) => {
            let mut tlvs = Vec::new();
            if req.info
                && let Ok(t) = SupportedTcpExtensions::new(&SUPPORTED)
            {
                tlvs.push(Tlv::SupportedTcpExtensions(t));
            }
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
                return;
            }
            out.reply = "connected".into();
            let relay_opts = shared.relay_options();
            let (client, _) = f.into_parts();
            let mut stats = relay_with_leftover(client, &[], c.stream, relay_opts).await;
            stats.client_to_target += client_first.len() as u64;
            out.relay = Some(stats);
        }
        Err(e) => {
            let tlv = error_tlv(&e);
            out.reply = format!("{:?}: {e}", tlv.code());
            f.reject(&tlv.reply_bytes()).await;
        }
    }
}
