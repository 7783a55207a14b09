//! SOCKS5 (RFC 1928) with username/password (RFC 1929), and SOCKS4/4a:
//! method selection, authentication and the request, up to the command it
//! names ([`Accepted`]). Every decode error gets the reply the protocol
//! crate names for it; a command this server does not serve is refused
//! here.

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks5::{
    Command, Method, MethodRequest, MethodSelection, Reply, ReplyCode, Request, Socks4Command,
    Socks4Reply, Socks4ReplyCode, Socks4Request, UserPassReply, UserPassRequest,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Framed, ReadError, read_by};
use crate::state::{Outcome, Shared};

/// A SOCKS5 or SOCKS4 request the handshake accepted: the command to serve
/// and the request's endpoint (DST.ADDR and DST.PORT; for SOCKS4 the
/// request, whose endpoint is DSTIP, or the 4A name, and DSTPORT).
#[derive(Debug)]
pub enum Accepted {
    /// SOCKS5 CONNECT to the endpoint.
    Connect(Endpoint),
    /// SOCKS5 BIND expecting a peer at the endpoint.
    Bind(Endpoint),
    /// SOCKS5 UDP ASSOCIATE; the endpoint is where the client says it will
    /// send from.
    UdpAssociate(Endpoint),
    /// SOCKS4 CONNECT to the request's endpoint.
    Socks4Connect(Socks4Request),
    /// SOCKS4 BIND expecting a peer at the request's endpoint.
    Socks4Bind(Socks4Request),
}

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    f(&mut v);
    v
}

/// The handshake of a SOCKS5 or SOCKS4 client (first byte 5 or 4): the
/// stream and the request to serve, or `None` once the client has been
/// answered (or is gone) and `out` says why.
pub async fn serve<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<(Framed<S>, Accepted)>
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
    let accepted = match req.command {
        Command::CONNECT => Accepted::Connect(req.endpoint),
        Command::BIND => Accepted::Bind(req.endpoint),
        Command::UDP_ASSOCIATE => Accepted::UdpAssociate(req.endpoint),
        _ => {
            out.reply = format!("{:?}", ReplyCode::COMMAND_NOT_SUPPORTED);
            f.reject(&encode(|b| {
                Reply::failure(ReplyCode::COMMAND_NOT_SUPPORTED).encode(b);
            }))
            .await;
            return None;
        }
    };
    Some((f, accepted))
}

/// Answers a SOCKS5 or SOCKS4 client (first byte 5 or 4) that a connection
/// cap refused, then closes. SOCKS4 gets 0x5B (rejected) at once. SOCKS5:
/// the method request is read by `deadline`; a client offering "no
/// authentication" gets it selected and, for the request it sends next,
/// REP 0x02 (connection not allowed by ruleset), both in one write; a
/// client offering only methods that need its credentials checked gets
/// "no acceptable methods". Nothing else is read or checked.
pub async fn refuse_over_cap<S>(mut f: Framed<S>, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    if f.peek_u8().await.ok() == Some(4) {
        let reply = Socks4Reply::unbound(Socks4ReplyCode::REJECTED_OR_FAILED);
        f.reject(&encode(|b| reply.encode(b))).await;
        return;
    }
    let selection = |m| encode(|b| MethodSelection::new(m).encode(b));
    let bytes = match tokio::time::timeout_at(deadline, f.next(MethodRequest::decode)).await {
        Ok(Ok(m)) if m.offers(Method::NO_AUTHENTICATION) => {
            let mut bytes = selection(Method::NO_AUTHENTICATION);
            Reply::failure(ReplyCode::CONNECTION_NOT_ALLOWED_BY_RULESET).encode(&mut bytes);
            bytes
        }
        Ok(Ok(_)) => selection(Method::NO_ACCEPTABLE_METHODS),
        Ok(Err(ReadError::Invalid(e))) => e.method_selection().map(selection).unwrap_or_default(),
        // Gone, or silent: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    f.reject(&bytes).await;
}

async fn serve_socks4<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<(Framed<S>, Accepted)>
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
        return Some((f, Accepted::Socks4Bind(req)));
    }
    if shared.auth_required() || req.command() != Socks4Command::CONNECT {
        out.reply = "rejected (authentication required or command not supported)".into();
        f.reject(&rejected(Socks4ReplyCode::REJECTED_OR_FAILED))
            .await;
        return None;
    }
    Some((f, Accepted::Socks4Connect(req)))
}
