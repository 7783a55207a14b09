//! SOCKS6 (draft-olteanu-intarea-socks-6-11) up to its command: the
//! Request with its 0-RTT Initial Data, 0-RTT username/password, sessions
//! and idempotence tokens, the Authentication Reply, and the request to
//! serve ([`Accepted`]: NOOP, CONNECT, BIND or UDP ASSOCIATE).
//!
//! The Request and its declared initial data are read first; the
//! Authentication Reply follows at once (fast path, no round trip), so the
//! CONNECT command can start the outbound connection with the initial data
//! as its first bytes, in the SYN when the client asked for TFO.
//!
//! Session and idempotence options are handled by [`crate::session`]
//! before the command runs: a request in a valid session skips
//! authentication, one with an invalid Session ID gets Session Invalid, and
//! a replayed token fails the Authentication Reply, so the command is never
//! performed. A new Session ID goes into the Authentication Reply and the
//! successful Operation Reply (digest §5.2).

use std::net::IpAddr;

use bytes::BytesMut;
use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Command, Method, OperationReply, OptionKind, ReplyCode,
    Request, SessionId, SocksOption, UsernamePassword, UsernamePasswordReply,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{EarlyData, Framed, ReadError, read_by};
use crate::session::{Admission, SessionCap};
use crate::state::{Outcome, Shared};

/// A SOCKS6 request past its Authentication Reply: the command to serve,
/// with what it needs. `new_session` is a session this request created:
/// its ID goes into the successful Operation Reply.
#[derive(Debug)]
pub enum Accepted {
    /// NOOP.
    Noop {
        /// The session the request created.
        new_session: Option<SessionId>,
    },
    /// CONNECT, with the Initial Data for the target.
    Connect {
        /// The Request.
        req: Request,
        /// The Initial Data.
        initial: BytesMut,
        /// The session the request created.
        new_session: Option<SessionId>,
    },
    /// BIND; `session` is the request's session (created or joined).
    Bind {
        /// The Request.
        req: Request,
        /// The request's session.
        session: Option<SessionId>,
        /// The session the request created.
        new_session: Option<SessionId>,
    },
    /// UDP ASSOCIATE.
    UdpAssociate {
        /// The Request.
        req: Request,
        /// The session the request created.
        new_session: Option<SessionId>,
    },
}

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
    source: Option<std::net::IpAddr>,
) -> Result<Option<String>, (String, AuthenticationReply)> {
    let data = req.options.auth_data(Method::USERNAME_PASSWORD);
    let creds = data.map(UsernamePassword::from_auth_data);
    match creds {
        Some(Ok(c)) => {
            let name = String::from_utf8_lossy(c.username()).into_owned();
            if shared.verify(source, c.username(), c.password()) {
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

/// Answers a SOCKS6 client that a connection cap refused, without reading
/// its Request: an Authentication Reply that lets the request through to
/// its Operation Reply, and that reply with 0x02 (connection not allowed by
/// ruleset), then a clean close. The credentials are neither read nor
/// checked; the refusal is the server's rules, not the client's password.
pub async fn refuse_over_cap<S>(f: Framed<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut bytes = encode(|b| AuthenticationReply::new(AuthReplyType::SUCCESS).encode(b));
    OperationReply::new(ReplyCode::CONNECTION_NOT_ALLOWED, Endpoint::unspecified())
        .encode(&mut bytes);
    f.reject(&bytes).await;
}

/// Counts and logs a session a cap kept from a request (which is served
/// without one, or, adopting an ID, answered Session Invalid).
fn session_refused(shared: &Shared, cap: SessionCap, user: Option<&str>, source: IpAddr) {
    shared.stats.session_refused(cap);
    tracing::debug!(
        %source,
        user = user.unwrap_or("-"),
        cap = cap.name(),
        "no session: session cap reached"
    );
}

/// True if authentication is required and `user` is no longer in the users
/// file (removed by a reload): the session ends with the user.
fn user_gone(shared: &Shared, user: Option<&str>) -> bool {
    match (&shared.users, user) {
        (Some(users), Some(name)) => !users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name.as_bytes()),
        _ => false,
    }
}

/// The handshake of a SOCKS6 client (first byte 6): the stream and the
/// request to serve, or `None` once the client has been answered (or is
/// gone) and `out` says why. Initial Data is kept for CONNECT only; for
/// other commands it is consumed and not forwarded (digest §5.3).
pub async fn serve<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<(Framed<S>, Accepted)>
where
    S: AsyncRead + AsyncWrite + EarlyData + Unpin + 'static,
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
    let (req, initial) = match read_by(deadline, out, read).await {
        Ok(r) => r,
        Err(Some(e)) => {
            out.reply = format!("bad request: {e}");
            let resp = e.response();
            f.reject(&encode(|b| resp.encode(b))).await;
            return None;
        }
        Err(None) => return None,
    };
    out.target = Some(req.endpoint.to_string());
    // Early data that may be a replay: served before the handshake
    // completes only if it spends a token (checked below, once spent).
    let unconfirmed = if f.is_early() {
        let token = req.options.session_id().is_some()
            && req.options.idempotence_expenditure().is_some()
            && !req.options.has(OptionKind::SESSION_TEARDOWN);
        if !token && !confirm_early(&mut f, shared, deadline, out).await {
            return None;
        }
        token
    } else {
        false
    };

    let mut auth = AuthenticationReply::new(AuthReplyType::SUCCESS);
    let source = out.source.unwrap_or(IpAddr::from([0; 4]));
    if let Some(store) = &shared.store {
        Box::pin(shared_teardown(shared, store, &req)).await;
    }
    let admission = match shared.sessions.admit(&req, shared.auth_required(), source) {
        Admission::Session(m) if user_gone(shared, m.user.as_deref()) => Admission::Invalid,
        Admission::OverCap(cap) => {
            session_refused(shared, cap, None, source);
            Admission::Invalid
        }
        a => a,
    };
    // Torn down on another instance (`--state`): ended here too.
    let admission = match (admission, &shared.store) {
        (Admission::Session(m), Some(store)) => {
            let key = shared.sessions.store_key(&m.id);
            let ended = match key {
                Some((key, _)) => Box::pin(store.session_ended(&key)).await.unwrap_or(false),
                None => false,
            };
            if ended {
                shared.sessions.end(&m);
                Admission::Invalid
            } else {
                Admission::Session(m)
            }
        }
        (a, _) => a,
    };
    let (user, member) = match admission {
        // "If the ID is invalid, the proxy replies Type 0x01 with Session
        // Invalid; no continuation is possible" (digest §4.3).
        Admission::Invalid | Admission::OverCap(_) => {
            out.reply = "session invalid".into();
            let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
            let _ = reply.options.push(SocksOption::SessionInvalid);
            f.reject(&encode(|b| reply.encode(b))).await;
            return None;
        }
        // "The proxy MUST silently ignore any authentication attempt in the
        // Request and MUST NOT require authentication" (digest §4.3).
        Admission::Session(m) => (m.user.clone(), Some(m)),
        Admission::Fresh => {
            let user = match authenticate(&req, shared, out.source) {
                Ok(u) => u,
                Err((why, reply)) => {
                    out.reply = why;
                    f.reject(&encode(|b| reply.encode(b))).await;
                    return None;
                }
            };
            if user.is_some() {
                let _ = auth.options.push(userpass_reply_option(true));
            }
            let member = if req.options.has(OptionKind::SESSION_REQUEST) {
                match shared.sessions.create(user.as_deref(), source) {
                    Ok(m) => m,
                    Err(cap) => {
                        session_refused(shared, cap, user.as_deref(), source);
                        None
                    }
                }
            } else {
                None
            };
            (user, member)
        }
    };
    out.user.clone_from(&user);
    if let Some(m) = &member {
        let options = match &shared.store {
            None => shared.sessions.reply_options(m, &req),
            Some(store) => Box::pin(shared.sessions.reply_options_shared(m, &req, store)).await,
        };
        match options {
            Ok(opts) => {
                for o in opts {
                    let _ = auth.options.push(o);
                }
            }
            // An ineligible token: "the Authentication Reply MUST indicate
            // failure" (digest §4.5); the command is not performed.
            Err(opts) => {
                out.reply = "idempotence token rejected".into();
                let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
                for o in opts {
                    let _ = reply.options.push(o);
                }
                f.reject(&encode(|b| reply.encode(b))).await;
                return None;
            }
        }
    }
    if unconfirmed {
        let spent = auth
            .options
            .iter()
            .any(|o| matches!(o, SocksOption::IdempotenceAccepted));
        if spent {
            shared.stats.early_data(crate::stats::EarlyResult::Token);
        } else if !confirm_early(&mut f, shared, deadline, out).await {
            // No token was spent after all (the session ended since it
            // was admitted): as any other request, it waits.
            return None;
        }
    }
    // A CONNECT's Authentication Reply goes out with its Operation Reply,
    // in one segment: the client needs both before it relays, and reads
    // them with one wake-up. The other commands answer at once.
    if req.command == Command::CONNECT {
        f.hold(&encode(|b| auth.encode(b)));
    } else if f.send(&encode(|b| auth.encode(b))).await.is_err() {
        out.reply = "client gone".into();
        return None;
    }
    let session = member.as_ref().map(|m| m.id.clone());
    let new_session = member.filter(|m| m.created).map(|m| m.id);
    if !shared.hold_user_slot(out) {
        let code = ReplyCode::CONNECTION_NOT_ALLOWED;
        out.reply = format!("{code:?}: per-user connection cap");
        let reply = OperationReply::new(code, Endpoint::unspecified());
        f.reject(&encode(|b| reply.encode(b))).await;
        return None;
    }

    let accepted = match req.command {
        Command::NOOP => Accepted::Noop { new_session },
        Command::CONNECT => Accepted::Connect {
            req,
            initial,
            new_session,
        },
        Command::BIND => Accepted::Bind {
            req,
            session,
            new_session,
        },
        Command::UDP_ASSOCIATE => Accepted::UdpAssociate { req, new_session },
        _ => {
            out.reply = format!("{:?}", ReplyCode::COMMAND_NOT_SUPPORTED);
            let reply =
                OperationReply::new(ReplyCode::COMMAND_NOT_SUPPORTED, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
            return None;
        }
    };
    Some((f, accepted))
}

/// Waits for the TLS handshake under a request that came as TLS 1.3
/// early data: whoever recorded the client's first flight can replay it
/// (RFC 8446 §8, §E.5), and a replayed flight never completes the
/// handshake (it lacks the keys of this connection's key exchange). Only a
/// request that spends an idempotence token in a session (draft -11 §8.5)
/// is served without waiting: the spend, in the token window shared by
/// every server with the same key and store, is its first effect, so a
/// copy cannot be served too. False once the connection is over (`out`
/// says why).
async fn confirm_early<S>(
    f: &mut Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> bool
where
    S: AsyncRead + AsyncWrite + EarlyData + Unpin + 'static,
{
    match tokio::time::timeout_at(deadline, f.confirm()).await {
        Ok(Ok(())) => {
            shared.stats.early_data(crate::stats::EarlyResult::Waited);
            true
        }
        Ok(Err(e)) => {
            out.reply = format!("TLS handshake failed: {e}");
            false
        }
        Err(_) => {
            out.reply = "TLS handshake timeout".into();
            false
        }
    }
}

/// With a shared store, a Session Teardown is recorded there so that every
/// instance ends the session; a store that fails leaves it to this
/// instance (the session then ends elsewhere when it idles out or its
/// lifetime does).
async fn shared_teardown(shared: &Shared, store: &crate::store::Store, req: &Request) {
    if !req.options.has(OptionKind::SESSION_TEARDOWN) {
        return;
    }
    let Some((key, not_after)) = req
        .options
        .session_id()
        .and_then(|id| shared.sessions.store_key(id))
    else {
        return;
    };
    let _ = store.end_session(&key, not_after).await;
}
