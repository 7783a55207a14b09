//! SOCKS6 (draft-olteanu-intarea-socks-6-11): NOOP and CONNECT with 0-RTT
//! initial data and 0-RTT username/password, sessions, idempotence tokens
//! and Stack options.
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

use std::any::Any;

use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Availability, Command, Leg, Method, OperationReply,
    OptionKind, ReplyCode, Request, SessionId, SocksOption, StackOption, StackValue,
    UsernamePassword, UsernamePasswordReply,
};
use sixpath_protocol::{Address, Endpoint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Framed, ReadError, socks_reply_code};
use crate::conn::{Outcome, Shared, relay_with_leftover};
use crate::outbound::{Applied, ConnectOptions};
use crate::session::Admission;

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
            return;
        }
        // "The proxy MUST silently ignore any authentication attempt in the
        // Request and MUST NOT require authentication" (digest §4.3).
        Admission::Session(m) => (m.user.clone(), Some(m)),
        Admission::Fresh => {
            let user = match authenticate(&req, shared) {
                Ok(u) => u,
                Err((why, reply)) => {
                    out.reply = why;
                    f.reject(&encode(|b| reply.encode(b))).await;
                    return;
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
                return;
            }
        }
    }
    if f.send(&encode(|b| auth.encode(b))).await.is_err() {
        out.reply = "client gone".into();
        return;
    }
    let new_session = member.filter(|m| m.created).map(|m| m.id);

    match req.command {
        Command::NOOP => {
            out.reply = format!("{:?}", ReplyCode::SUCCESS);
            let mut reply = OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified());
            push_session_id(&mut reply, new_session.as_ref());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
        Command::CONNECT => connect(f, shared, &req, &initial, new_session.as_ref(), out).await,
        _ => {
            out.reply = format!("{:?}", ReplyCode::COMMAND_NOT_SUPPORTED);
            let reply =
                OperationReply::new(ReplyCode::COMMAND_NOT_SUPPORTED, Endpoint::unspecified());
            f.reject(&encode(|b| reply.encode(b))).await;
        }
    }
}

/// A new Session ID goes into the successful Operation Reply too: "Session
/// ID Option in the successful Operation Reply" (-11 text; digest §5.2).
fn push_session_id(reply: &mut OperationReply, id: Option<&SessionId>) {
    if let Some(id) = id {
        let _ = reply.options.push(SocksOption::SessionId(id.clone()));
    }
}

/// The Stack options of a request, as this server acts on them.
#[derive(Debug, Default)]
struct Stack {
    /// TOS, TTL and No Fragmentation asked for, with their legs.
    tos: Option<(Leg, u8)>,
    ttl: Option<(Leg, u8)>,
    no_frag: Option<(Leg, Availability)>,
    /// Happy Eyeballs as asked (only for a domain-name target).
    happy_eyeballs: Option<Availability>,
    tfo: Option<u16>,
    mptcp: Option<Availability>,
}

impl Stack {
    fn of(req: &Request) -> Self {
        let mut s = Self::default();
        let remote = |leg: Leg| leg.overlaps(Leg::PROXY_REMOTE);
        for o in req.options.stack() {
            match o.value {
                StackValue::Tos(v) => s.tos = Some((o.leg, v)),
                StackValue::Ttl(v) => s.ttl = Some((o.leg, v)),
                StackValue::NoFragmentation(a) => s.no_frag = Some((o.leg, a)),
                // "Meaningful only when the Request address is a Domain
                // Name; otherwise the proxy MUST silently ignore it."
                StackValue::HappyEyeballs(a)
                    if remote(o.leg) && matches!(req.endpoint.addr, Address::Domain(_)) =>
                {
                    s.happy_eyeballs = Some(a);
                }
                StackValue::Tfo(n) if remote(o.leg) => s.tfo = Some(n),
                StackValue::Mptcp(a) if remote(o.leg) => s.mptcp = Some(a),
                _ => {}
            }
        }
        s
    }

    fn on_remote<T: Copy>(x: Option<(Leg, T)>) -> Option<T> {
        x.filter(|(l, _)| l.overlaps(Leg::PROXY_REMOTE))
            .map(|(_, v)| v)
    }

    fn connect_options(&self, shared: &Shared) -> ConnectOptions {
        ConnectOptions {
            timeout: shared.settings.connect_timeout,
            // Without the option the proxy "SHOULD NOT enable MPTCP" for
            // CONNECT (§3.2).
            mptcp: self.mptcp == Some(Availability::AVAILABLE),
            // "If absent, the proxy MUST NOT" attempt TFO (§3.2 TFO row).
            fast_open: self.tfo.is_some(),
            happy_eyeballs: self.happy_eyeballs != Some(Availability::UNAVAILABLE),
            tos: Self::on_remote(self.tos),
            ttl: Self::on_remote(self.ttl),
            no_fragmentation: Self::on_remote(self.no_frag) == Some(Availability::AVAILABLE),
            ..ConnectOptions::default()
        }
    }

    /// Applies the client-proxy leg options to the client's socket, when it
    /// is a TCP socket; reports what the kernel took.
    fn apply_client_leg(&self, client: &dyn Any) -> Applied {
        let on_client = |leg: Leg| leg.overlaps(Leg::CLIENT_PROXY);
        let Some(sock) = client.downcast_ref::<TcpStream>() else {
            return Applied::default();
        };
        // A v4-mapped client on an IPv6 listener sends IPv4 packets: the
        // IPv4 options apply.
        let v6 = sock.local_addr().is_ok_and(|a| match a.ip() {
            std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped().is_none(),
            std::net::IpAddr::V4(_) => false,
        });
        let pick = |x: Option<(Leg, u8)>| x.filter(|(l, _)| on_client(*l)).map(|(_, v)| v);
        let no_frag = self
            .no_frag
            .is_some_and(|(l, a)| on_client(l) && a == Availability::AVAILABLE);
        crate::outbound::apply_ip_options(
            &socket2::SockRef::from(sock),
            v6,
            pick(self.tos),
            pick(self.ttl),
            no_frag,
        )
    }

    /// The Stack options of the Operation Reply: "A proxy MUST report every
    /// Stack option it supports that the client sent" (§3.2), each on the
    /// legs where it took effect.
    fn report(
        &self,
        remote: Applied,
        client: Applied,
        used_mptcp: bool,
        reply: &mut OperationReply,
    ) {
        let legs = |r: bool, c: bool| match (r, c) {
            (true, true) => Some(Leg::BOTH),
            (true, false) => Some(Leg::PROXY_REMOTE),
            (false, true) => Some(Leg::CLIENT_PROXY),
            (false, false) => None,
        };
        let mut push = |leg: Leg, value: StackValue| {
            let _ = reply
                .options
                .push(SocksOption::Stack(StackOption { leg, value }));
        };
        if let Some((_, v)) = self.tos
            && let Some(leg) = legs(remote.tos, client.tos)
        {
            push(leg, StackValue::Tos(v));
        }
        if let Some((_, v)) = self.ttl
            && let Some(leg) = legs(remote.ttl, client.ttl)
        {
            push(leg, StackValue::Ttl(v));
        }
        if let Some((asked, _)) = self.no_frag {
            // Enforced where it took effect; "not enforced" on the other
            // legs asked for.
            let on = legs(remote.no_fragmentation, client.no_fragmentation);
            if let Some(leg) = on {
                push(leg, StackValue::NoFragmentation(Availability::AVAILABLE));
            }
            let off = Leg(asked.0 & !on.map_or(0, |l| l.0));
            if off.0 != 0 {
                push(off, StackValue::NoFragmentation(Availability::UNAVAILABLE));
            }
        }
        if let Some(he) = self.happy_eyeballs {
            push(Leg::PROXY_REMOTE, StackValue::HappyEyeballs(he));
        }
        if let Some(size) = self.tfo {
            push(Leg::PROXY_REMOTE, StackValue::Tfo(size));
        }
        if self.mptcp.is_some() {
            let avail = if used_mptcp {
                Availability::AVAILABLE
            } else {
                Availability::UNAVAILABLE
            };
            push(Leg::PROXY_REMOTE, StackValue::Mptcp(avail));
        }
    }
}

async fn connect<S>(
    mut f: Framed<S>,
    shared: &Shared,
    req: &Request,
    initial: &[u8],
    new_session: Option<&SessionId>,
    out: &mut Outcome,
) where
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
