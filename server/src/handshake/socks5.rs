//! SOCKS5 (RFC 1928) with username/password (RFC 1929), and SOCKS4/4a.
//!
//! CONNECT is served here; BIND ([`crate::bind`]) and UDP ASSOCIATE
//! ([`crate::udp`]) are handed off after the request. Every decode error
//! gets the reply the protocol crate names for it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks5::{
    Command, Method, MethodRequest, MethodSelection, Reply, ReplyCode, Request, Socks4Command,
    Socks4Reply, Socks4ReplyCode, Socks4Request, UserPassReply, UserPassRequest,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Framed, ReadError, read_by, socks_reply_code};
use crate::conn::{Handoff, Outcome, Shared};
use crate::outbound::{ConnectError, ConnectOptions};

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    f(&mut v);
    v
}

/// Serves a SOCKS5 or SOCKS4 client (first byte 5 or 4).
pub async fn serve<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let first = f.peek_u8().await.unwrap_or_default();
    if first == 4 {
        return serve_socks4(f, shared, deadline, out).await;
    }
    let handshake = async {
        let methods = match f.next(MethodRequest::decode).await {
            Ok(m) => m,
            Err(ReadError::Invalid(e)) => {
                let bytes = e
                    .method_selection()
                    .map(|m| encode(|b| MethodSelection::new(m).encode(b)))
                    .unwrap_or_default();
                return Err((format!("bad method request: {e}"), bytes));
            }
            Err(e) => return Err((e.to_string(), Vec::new())),
        };
        let method = if shared.auth_required() {
            Method::USERNAME_PASSWORD
        } else {
            Method::NO_AUTHENTICATION
        };
        if !methods.offers(method) {
            let sel = MethodSelection::new(Method::NO_ACCEPTABLE_METHODS);
            return Err((
                "no acceptable authentication method".into(),
                encode(|b| sel.encode(b)),
            ));
        }
        f.send(&encode(|b| MethodSelection::new(method).encode(b)))
            .await
            .map_err(|e| (e.to_string(), Vec::new()))?;
        let mut user = None;
        if method == Method::USERNAME_PASSWORD {
            let creds = match f.next(UserPassRequest::decode).await {
                Ok(c) => c,
                Err(ReadError::Invalid(e)) => {
                    let bytes = e
                        .userpass_status()
                        .map(|status| encode(|b| UserPassReply { status }.encode(b)))
                        .unwrap_or_default();
                    return Err((format!("bad username/password request: {e}"), bytes));
                }
                Err(e) => return Err((e.to_string(), Vec::new())),
            };
            let name = String::from_utf8_lossy(creds.username()).into_owned();
            if !shared.verify(out.source, creds.username(), creds.password()) {
                return Err((
                    format!("authentication failed for {name:?}"),
                    encode(|b| UserPassReply::FAILURE.encode(b)),
                ));
            }
            f.send(&encode(|b| UserPassReply::SUCCESS.encode(b)))
                .await
                .map_err(|e| (e.to_string(), Vec::new()))?;
            user = Some(name);
        }
        match f.next(Request::decode).await {
            Ok(req) => Ok((req, user)),
            Err(ReadError::Invalid(e)) => {
                let bytes = e
                    .reply()
                    .map(|code| encode(|b| Reply::failure(code).encode(b)))
                    .unwrap_or_default();
                Err((format!("bad request: {e}"), bytes))
            }
            Err(e) => Err((e.to_string(), Vec::new())),
        }
    };
    let (req, user) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(r)) => r,
        Ok(Err((why, bytes))) => {
            out.reply = why;
            f.reject(&bytes).await;
            return None;
        }
        Err(_) => {
            out.reply = "handshake timeout".into();
            return None;
        }
    };
    out.user = user;
    out.target = Some(req.endpoint.to_string());
    if !shared.hold_user_slot(out) {
        let code = ReplyCode::CONNECTION_NOT_ALLOWED_BY_RULESET;
        out.reply = format!("{code:?}: per-user connection cap");
        f.reject(&encode(|b| Reply::failure(code).encode(b))).await;
        return None;
    }
    if req.command == Command::BIND {
        crate::bind::serve_socks5(f, shared, &req.endpoint, out).await;
        return None;
    }
    if req.command == Command::UDP_ASSOCIATE {
        crate::udp::serve_socks5(f, shared, &req.endpoint, out).await;
        return None;
    }
    if req.command != Command::CONNECT {
        out.reply = format!("{:?}", ReplyCode::COMMAND_NOT_SUPPORTED);
        f.reject(&encode(|b| {
            Reply::failure(ReplyCode::COMMAND_NOT_SUPPORTED).encode(b);
        }))
        .await;
        return None;
    }
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        ..ConnectOptions::default()
    };
    match shared
        .connector
        .connect(&req.endpoint.addr, req.endpoint.port, b"", &opts)
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

async fn serve_socks4<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<Handoff<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let rejected = |code| encode(|b| Socks4Reply::unbound(code).encode(b));
    let req = match read_by(deadline, out, f.next(Socks4Request::decode)).await {
        Ok(r) => r,
        Err(Some(e)) => {
            out.reply = format!("bad SOCKS4 request: {e}");
            let bytes = e.socks4_reply().map(rejected).unwrap_or_default();
            f.reject(&bytes).await;
            return None;
        }
        Err(None) => return None,
    };
    out.target = Some(req.endpoint().to_string());
    out.user = Some(String::from_utf8_lossy(req.user_id()).into_owned()).filter(|u| !u.is_empty());
    // SOCKS4 has no password: it is served only where no authentication
    // is configured.
    if !shared.auth_required() && req.command() == Socks4Command::BIND {
        crate::bind::serve_socks4(f, shared, req.endpoint(), out).await;
        return None;
    }
    if shared.auth_required() || req.command() != Socks4Command::CONNECT {
        out.reply = "rejected (authentication required or command not supported)".into();
        f.reject(&rejected(Socks4ReplyCode::REJECTED_OR_FAILED))
            .await;
        return None;
    }
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        ..ConnectOptions::default()
    };
    let ep = req.endpoint();
    match shared
        .connector
        .connect(&ep.addr, ep.port, b"", &opts)
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
