//! SOCKS6 (draft-olteanu-intarea-socks-6-11): NOOP, CONNECT with 0-RTT
//! initial data and 0-RTT username/password, BIND and UDP ASSOCIATE (in
//! [`crate::bind`] and [`crate::udp`]), sessions, idempotence tokens and
//! Stack options.
//!
//! The Request and its declared initial data are read first; the
//! Authentication Reply follows at once (fast path, no round trip) and the
//! outbound connection starts with the initial data as its first bytes, in
//! the SYN when the client asked for TFO.
//!
//! Session and idempotence options are handled by [`crate::session`]
//! before the command runs: a request in a valid session skips
//! authentication, one with an invalid Session ID gets Session Invalid, and
//! a replayed token fails the Authentication Reply, so the command is never
//! performed. A new Session ID goes into the Authentication Reply and the
//! successful Operation Reply (digest §5.2).
//!
//! Stack options: TOS, TTL and No Fragmentation are set on the outbound
//! socket before its SYN, and on the client's socket for the client-proxy
//! leg; Happy Eyeballs, TFO and MPTCP shape the outbound connect. The
//! Operation Reply reports each one the kernel took, on the legs where it
//! took it; the others are left out ("the client sees that as the option's
//! absence", digest §3.2).

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Command, Method, OperationReply, OptionKind, ReplyCode,
    Request, SessionId, SocksOption, UsernamePassword, UsernamePasswordReply,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Framed, ReadError, read_by, socks_reply_code};
use crate::conn::{Handoff, Outcome, Shared};
use crate::session::Admission;

mod stack;

use stack::Stack;

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

/// Serves a SOCKS6 client (first byte 6).
pub async fn serve<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<Handoff<S>>
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

    let mut auth = AuthenticationReply::new(AuthReplyType::SUCCESS);
    let admission = match shared.sessions.admit(&req, shared.auth_required()) {
        Admission::Session(m) if user_gone(shared, m.user.as_deref()) => Admission::Invalid,
        a => a,
    };
    let (user, member) = match admission {
        // "If the ID is invalid, the proxy replies Type 0x01 with Session
        // Invalid; no continuation is possible" (digest §4.3).
        Admission::Invalid => {
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
                shared.sessions.create(user.as_deref())
            } else {
                None
            };
            (user, member)
        }
    };
    out.user.clone_from(&user);
    if let Some(m) = &member {
        match shared.sessions.reply_options(m, &req) {
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
    if f.send(&encode(|b| auth.encode(b))).await.is_err() {
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

    match req.command {
        Command::NOOP => {
            out.reply = format!("{:?}", ReplyCode::SUCCESS);
            let mut reply = OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified());
            push_session_id(&mut reply, new_session.as_ref());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
        Command::CONNECT => {
            return connect(f, shared, &req, &initial, new_session.as_ref(), out).await;
        }
        Command::BIND => {
            let (s, new) = (session.as_ref(), new_session.as_ref());
            crate::bind::serve_socks6(f, shared, &req, s, new, out).await;
        }
        Command::UDP_ASSOCIATE => {
            crate::udp::serve_socks6(f, shared, &req, new_session.as_ref(), out).await;
        }
        _ => {
            out.reply = format!("{:?}", ReplyCode::COMMAND_NOT_SUPPORTED);
            let reply =
                OperationReply::new(ReplyCode::COMMAND_NOT_SUPPORTED, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
    }
    None
}

/// A new Session ID goes into the successful Operation Reply too: "Session
/// ID Option in the successful Operation Reply" (-11 text; digest §5.2).
pub(crate) fn push_session_id(reply: &mut OperationReply, id: Option<&SessionId>) {
    if let Some(id) = id {
        let _ = reply.options.push(SocksOption::SessionId(id.clone()));
    }
}

async fn connect<S>(
    mut f: Framed<S>,
    shared: &Shared,
    req: &Request,
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
            let mut reply = OperationReply::new(ReplyCode::SUCCESS, bind);
            let client = stack.apply_client_leg(f.get_ref());
            let used_mptcp = matches!(
                crate::sys::transport(&c.stream),
                crate::sys::Transport::Mptcp { .. }
            );
            stack.report(c.applied, client, used_mptcp, &mut reply);
            push_session_id(&mut reply, new_session);
            if f.send(&encode(|b| reply.encode(b))).await.is_err() {
                out.reply = "client gone before reply".into();
                return None;
            }
            out.reply = format!("{:?}", ReplyCode::SUCCESS);
            Some(Handoff::new(f, c.stream, initial.len() as u64))
        }
        Err(e) => {
            let code = ReplyCode(socks_reply_code(&e));
            out.reply = format!("{code:?}: {e}");
            let reply = OperationReply::new(code, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
            None
        }
    }
}
