//! SOCKS6 (draft-olteanu-intarea-socks-6-11): NOOP and CONNECT with 0-RTT
//! initial data and 0-RTT username/password.
//!
//! The Request and its declared initial data are read first; the
//! Authentication Reply follows at once (fast path, no round trip) and the
//! outbound connection starts with the initial data as its first bytes, in
//! the SYN when the client asked for TFO. Sessions, idempotence tokens,
//! BIND and UDP ASSOCIATE are not served yet: session options are ignored
//! (a proxy "that cannot or will not create a session silently omits the
//! Session ID", §4.3) and the commands get "command not supported".

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Availability, Command, Leg, Method, OperationReply,
    ReplyCode, Request, SocksOption, StackOption, StackValue, UsernamePassword,
    UsernamePasswordReply,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Framed, ReadError, socks_reply_code};
use crate::conn::{Outcome, Shared, relay_with_leftover};
use crate::outbound::ConnectOptions;

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    f(&mut v);
    v
}

/// The Authentication Data option answering a username/password attempt.
fn userpass_reply_option(ok: bool) -> SocksOption {
    let reply = if ok {
        UsernamePasswordReply::SUCCESS
    } else {
        UsernamePasswordReply::FAILURE
    };
    SocksOption::AuthData {
        method: Method::USERNAME_PASSWORD,
        data: encode(|b| reply.encode(b)),
    }
}

/// Authenticates the request: `Ok(user)` or the Authentication Reply that
/// refuses it.
fn authenticate(
    req: &Request,
    shared: &Shared,
) -> Result<Option<String>, (String, AuthenticationReply)> {
    let data = req.options.auth_data(Method::USERNAME_PASSWORD);
    let creds = data.map(UsernamePassword::from_auth_data);
    match creds {
        Some(Ok(c)) => {
            let name = String::from_utf8_lossy(c.username()).into_owned();
            if shared.verify(c.username(), c.password()) {
                Ok(Some(name))
            } else {
                let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
                let _ = reply.options.push(userpass_reply_option(false));
                Err((format!("authentication failed for {name:?}"), reply))
            }
        }
        Some(Err(e)) => {
            let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
            let _ = reply.options.push(userpass_reply_option(false));
            Err((format!("bad username/password data: {e}"), reply))
        }
        None if shared.auth_required() => {
            // Digest §3.5: select method 2 only to say credentials are
            // required, in a failure reply without continuation.
            let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
            let _ = reply
                .options
                .push(SocksOption::AuthMethodSelection(Method::USERNAME_PASSWORD));
            Err(("credentials required".into(), reply))
        }
        None => Ok(None),
    }
}

/// Serves a SOCKS6 client (first byte 6).
pub async fn serve<S>(mut f: Framed<S>, shared: &Shared, deadline: Instant, out: &mut Outcome)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let read = async {
        let req = f.next(Request::decode).await?;
        // "Exactly Initial Data Length bytes of application data follow the
        // Request on the stream immediately" (§4.1); for other commands
        // they are consumed and not forwarded (digest §5.3).
        let initial = f.take(req.initial_data_len()).await.map_err(|e| match e {
            ReadError::Eof => ReadError::Eof,
            ReadError::TooLarge => ReadError::TooLarge,
            ReadError::Io(e) => ReadError::Io(e),
            ReadError::Invalid(never) => match never {},
        })?;
        Ok::<_, ReadError<sixpath_protocol::socks6::Error>>((req, initial))
    };
    let (req, initial) = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(ReadError::Invalid(e))) => {
            out.reply = format!("bad request: {e}");
            let resp = e.response();
            f.reject(&encode(|b| resp.encode(b))).await;
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
    out.target = Some(req.endpoint.to_string());

    let user = match authenticate(&req, shared) {
        Ok(u) => u,
        Err((why, reply)) => {
            out.reply = why;
            f.reject(&encode(|b| reply.encode(b))).await;
            return;
        }
    };
    out.user.clone_from(&user);
    let mut auth = AuthenticationReply::new(AuthReplyType::SUCCESS);
    if user.is_some() {
        let _ = auth.options.push(userpass_reply_option(true));
    }
    if f.send(&encode(|b| auth.encode(b))).await.is_err() {
        out.reply = "client gone".into();
        return;
    }

    match req.command {
        Command::NOOP => {
            out.reply = format!("{:?}", ReplyCode::SUCCESS);
            let reply = OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
        Command::CONNECT => connect(f, shared, &req, &initial, out).await,
        _ => {
            out.reply = format!("{:?}", ReplyCode::COMMAND_NOT_SUPPORTED);
            let reply =
                OperationReply::new(ReplyCode::COMMAND_NOT_SUPPORTED, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
    }
}

async fn connect<S>(
    mut f: Framed<S>,
    shared: &Shared,
    req: &Request,
    initial: &[u8],
    out: &mut Outcome,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // Stack options for the proxy-remote leg that this server honours.
    let remote = |s: &&StackOption| s.leg.0 & Leg::PROXY_REMOTE.0 != 0;
    let tfo = req
        .options
        .stack()
        .filter(remote)
        .find_map(|s| match s.value {
            StackValue::Tfo(size) => Some(size),
            _ => None,
        });
    let mptcp = req
        .options
        .stack()
        .filter(remote)
        .any(|s| s.value == StackValue::Mptcp(Availability::AVAILABLE));
    let opts = ConnectOptions {
        timeout: shared.settings.connect_timeout,
        mptcp,
        // "If absent, the proxy MUST NOT" attempt TFO (§3.2 TFO row).
        fast_open: tfo.is_some(),
        ..ConnectOptions::default()
    };
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
            let mut reply = OperationReply::new(ReplyCode::SUCCESS, bind);
            // "A proxy MUST report every Stack option it supports that the
            // client sent" (§3.2).
            if mptcp {
                let used = crate::sys::transport(&c.stream);
                let avail = if matches!(used, crate::sys::Transport::Mptcp { .. }) {
                    Availability::AVAILABLE
                } else {
                    Availability::UNAVAILABLE
                };
                let _ = reply.options.push(SocksOption::Stack(StackOption {
                    leg: Leg::PROXY_REMOTE,
                    value: StackValue::Mptcp(avail),
                }));
            }
            if let Some(size) = tfo {
                let _ = reply.options.push(SocksOption::Stack(StackOption {
                    leg: Leg::PROXY_REMOTE,
                    value: StackValue::Tfo(size),
                }));
            }
            if f.send(&encode(|b| reply.encode(b))).await.is_err() {
                out.reply = "client gone before reply".into();
                return;
            }
            out.reply = format!("{:?}", ReplyCode::SUCCESS);
            let opts = shared.relay_options();
            let (client, leftover) = f.into_parts();
            let mut stats = relay_with_leftover(client, &leftover, c.stream, opts).await;
            stats.client_to_target += initial.len() as u64;
            out.relay = Some(stats);
        }
        Err(e) => {
            let code = ReplyCode(socks_reply_code(&e));
            out.reply = format!("{code:?}: {e}");
            let reply = OperationReply::new(code, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
    }
}
