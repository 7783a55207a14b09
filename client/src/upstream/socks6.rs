//! SOCKS6 (draft -11) towards the server: one CONNECT per application
//! connection, 0-RTT.
//!
//! The Request carries, as options: an Authentication Method Advertisement
//! with the Initial Data Length (and method 2 when credentials are
//! configured), the username/password as Authentication Data (0-RTT,
//! digest §3.5), and Stack options for the proxy-remote leg asking for
//! TCP Fast Open and Multipath TCP towards the target. The application's
//! first bytes follow as Initial Data, and Request plus data go out in one
//! write, in the SYN with TCP Fast Open. Then the Authentication Reply and
//! the Operation Reply are read; bytes after them are the target's.
//!
//! Domain names are written as [`Padding`] says (`--socks6-domain-padding`):
//! by default counted, and uncounted for good once the server has rejected
//! a counted domain-name request as malformed (a failed Authentication
//! Reply without options followed by an Operation Reply with "general
//! failure" or "address type not supported", digest §4.9) and accepted the
//! same request uncounted. The server performed nothing when it rejected the
//! request, so sending it again is safe.
//!
//! Inside a session ([`super::session`]) the Request carries the Session
//! ID instead of the credentials, and an Idempotence Expenditure when it
//! carries initial data. A Session Invalid, a session the server dropped
//! without saying so, or a stale token is retried once (the command was not
//! performed; the initial data is still here).

use sixpath_protocol::socks6::{
    AuthMethodAdvertisement, AuthReplyType, AuthenticationReply, Availability, Command,
    DomainStyle, Leg, Method, OperationReply, OptionKind, ReplyCode, Request, SocksOption,
    StackOption, StackValue, UsernamePassword,
};
use sixpath_protocol::{Address, Endpoint};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use crate::config::DomainPadding;

use super::session::{Plan, Verdict, WINDOW_REQUEST};
use super::{Opened, Upstream, await_reply};
use crate::failure::{Failure, Fault, Kind};
use sixpath_net::framed::{Framed, ReadError};

/// How SOCKS6 domain names are written towards the server, and what was
/// learned about it (see the module documentation).
#[derive(Debug)]
pub struct Padding(AtomicU8);

/// Counted, and a rejection may start a trial of uncounted.
const OPEN: u8 = 0;
/// Uncounted, on trial.
const TRYING: u8 = 1;
/// Uncounted, for good.
const UNCOUNTED: u8 = 2;
/// Counted, for good.
const COUNTED: u8 = 3;

/// How long the Operation Reply that follows a rejecting Authentication
/// Reply is waited for (the server sends both at once, then closes).
const REJECTION_WAIT: Duration = Duration::from_secs(1);

impl Padding {
    /// The state for `--socks6-domain-padding`.
    pub fn new(configured: DomainPadding) -> Self {
        Self(AtomicU8::new(match configured {
            DomainPadding::Detect => OPEN,
            DomainPadding::Counted => COUNTED,
            DomainPadding::Uncounted => UNCOUNTED,
        }))
    }

    /// The style to write domain names in now.
    pub fn style(&self) -> DomainStyle {
        match self.0.load(Ordering::Relaxed) {
            TRYING | UNCOUNTED => DomainStyle::Libsocks6msg,
            _ => DomainStyle::Padded,
        }
    }

    /// Starts a trial of the uncounted style after the server rejected a
    /// counted domain-name request; false when detection is not open (the
    /// style was configured, or already found, or another request is on
    /// trial).
    fn try_uncounted(&self) -> bool {
        self.0
            .compare_exchange(OPEN, TRYING, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Ends the trial: the server understood the uncounted request
    /// (`Some(true)`), rejected it too (`Some(false)`), or its answer said
    /// nothing (`None`: detection stays open).
    fn trial_ended(&self, server: SocketAddr, understood: Option<bool>) {
        let to = match understood {
            Some(true) => UNCOUNTED,
            Some(false) => COUNTED,
            None => OPEN,
        };
        if self
            .0
            .compare_exchange(TRYING, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        match understood {
            Some(true) => tracing::info!(
                %server,
                "the server reads SOCKS6 domain-name lengths without the padding (libsocks6msg): \
                 writing them so from now on (--socks6-domain-padding uncounted)"
            ),
            Some(false) => tracing::warn!(
                %server,
                "the server rejected a domain-name request with either padding convention: \
                 keeping --socks6-domain-padding counted"
            ),
            None => {}
        }
    }
}

/// Builds the Request for `target` with `initial_len` bytes of initial
/// data, outside any session.
pub fn request(
    upstream: &Upstream,
    target: &Endpoint,
    initial_len: usize,
) -> Result<Request, Failure> {
    request_in(
        upstream,
        Command::CONNECT,
        target,
        initial_len,
        &Plan::Plain,
    )
}

/// Builds a Request for `command` to `target` with `initial_len` bytes of
/// initial data, carrying what `plan` says about the session.
pub fn request_in(
    upstream: &Upstream,
    command: Command,
    target: &Endpoint,
    initial_len: usize,
    plan: &Plan,
) -> Result<Request, Failure> {
    let s = upstream.settings();
    let mut req = Request::new(command, target.clone());
    let bad = |e: &dyn std::fmt::Display| Failure::new(Kind::General, format!("request: {e}"));
    let idl = u16::try_from(initial_len).map_err(|e| bad(&e))?;
    // Inside a session the server ignores credentials: none are sent.
    let creds = match plan {
        Plan::Use { .. } => None,
        Plan::Plain | Plan::Create => s.upstream_credentials.as_ref(),
    };
    let mut session = Vec::with_capacity(3);
    match plan {
        Plan::Plain => {}
        Plan::Create => {
            session.push(SocksOption::SessionRequest);
            session.push(SocksOption::IdempotenceRequest(WINDOW_REQUEST));
        }
        Plan::Use {
            id,
            token,
            want_window,
            ..
        } => {
            session.push(SocksOption::SessionId(id.clone()));
            if *want_window {
                session.push(SocksOption::IdempotenceRequest(WINDOW_REQUEST));
            }
            if let Some(t) = token {
                session.push(SocksOption::IdempotenceExpenditure(*t));
            }
        }
    }
    for o in session {
        req.options.push(o).map_err(|e| bad(&e))?;
    }
    if idl > 0 || creds.is_some() {
        let methods = creds.map(|_| Method::USERNAME_PASSWORD);
        let adv = AuthMethodAdvertisement::new(idl, methods).map_err(|e| bad(&e))?;
        req.options
            .push(SocksOption::AuthMethodAdvertisement(adv))
            .map_err(|e| bad(&e))?;
    }
    if let Some(c) = creds {
        let up = UsernamePassword::new(c.username.as_bytes(), c.password.0.clone())
            .map_err(|e| bad(&e))?;
        req.options.push(up.to_option()).map_err(|e| bad(&e))?;
    }
    if s.tfo && command == Command::CONNECT {
        req.options
            .push(SocksOption::Stack(StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::Tfo(0),
            )))
            .map_err(|e| bad(&e))?;
    }
    if s.mptcp_to_targets && command == Command::CONNECT {
        req.options
            .push(SocksOption::Stack(StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::Mptcp(Availability::AVAILABLE),
            )))
            .map_err(|e| bad(&e))?;
    }
    Ok(req)
}

/// CONNECT to `target` through the server with `initial` as Initial Data.
pub async fn open(
    upstream: &Upstream,
    target: &Endpoint,
    initial: &[u8],
    deadline: Instant,
) -> Result<Opened, Failure> {
    let server = upstream.server_addr().await?;
    let (opened, _) = exchange(
        upstream,
        server,
        Command::CONNECT,
        target,
        initial,
        deadline,
    )
    .await?;
    Ok(opened)
}

/// Sends a Request for `command` and reads the replies, in the session
/// when there is one; retries once after Session Invalid, a session the
/// server dropped or a stale token (and once more without a token when the
/// server keeps rejecting them). Returns the connection past the Operation Reply and the plan
/// the successful request went with.
pub async fn exchange(
    upstream: &Upstream,
    server: SocketAddr,
    command: Command,
    target: &Endpoint,
    initial: &[u8],
    deadline: Instant,
) -> Result<(Opened, Plan), Failure> {
    let sessions = upstream.settings().sessions.then(|| upstream.sessions());
    let mut retried = false;
    // One more, without a token, once tokens are switched off.
    let mut last_chance = false;
    // This attempt tries the uncounted domain-name style.
    let mut padding_trial = false;
    let domain = matches!(target.addr, Address::Domain(_));
    loop {
        let plan = sessions.map_or(Plan::Plain, |s| s.plan(server, !initial.is_empty()));
        // Cancelled by the caller's deadline, a Session Request must not
        // keep others from asking.
        let mut guard = Abandon(
            sessions
                .filter(|_| plan == Plan::Create)
                .map(|s| (s, server)),
        );
        let attempt = once(upstream, server, command, target, initial, deadline, &plan).await;
        guard.0 = None;
        let (auth, op_id) = match &attempt {
            Ok(o) => (
                o.auth.as_ref(),
                o.reply.as_ref().and_then(|r| r.options.session_id()),
            ),
            Err(e) => (e.auth.as_ref(), None),
        };
        let verdict = sessions.map_or(Verdict::Fine, |s| s.learn(server, &plan, auth, op_id));
        let malformed = domain
            && attempt.as_ref().err().is_some_and(|e| {
                e.rejected.is_some_and(|c| {
                    c == ReplyCode::GENERAL_FAILURE || c == ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED
                })
            });
        if padding_trial {
            padding_trial = false;
            let understood = match &attempt {
                Ok(_) => Some(true),
                Err(_) if malformed => Some(false),
                Err(e) => e.auth.is_some().then_some(true),
            };
            upstream.padding().trial_ended(server, understood);
        } else if malformed && upstream.padding().try_uncounted() {
            tracing::debug!(%server, "domain-name request rejected as malformed: trying it uncounted");
            padding_trial = true;
            continue;
        }
        match (attempt, verdict) {
            (Ok(o), _) => return Ok((o.opened, plan)),
            // The Authentication Reply failed: nothing was performed, and
            // the initial data is still here.
            (Err(_), Verdict::SessionInvalid | Verdict::SessionLost | Verdict::TokenStale)
                if !retried =>
            {
                tracing::debug!(%server, ?verdict, "retrying the request once");
                retried = true;
            }
            (Err(_), Verdict::TokensOff) if !last_chance => {
                tracing::debug!(%server, "retrying the request without a token");
                retried = true;
                last_chance = true;
            }
            // The server is up and performed nothing; a copy of this
            // request got there first, so sending it again would perform
            // it twice.
            (Err(_), Verdict::TokenReplayed) => {
                return Err(Failure::new(
                    Kind::NotAllowed,
                    format!(
                        "server {server} refused the idempotence token as already spent \
                         (a replayed request); not retried"
                    ),
                ));
            }
            (Err(e), _) => return Err(e.failure),
        }
    }
}

/// Forgets an unanswered Session Request when dropped (the request was
/// cancelled); disarmed (emptied) once the request has ended.
struct Abandon<'a>(Option<(&'a super::session::Sessions, SocketAddr)>);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some((s, server)) = self.0 {
            s.abandon(server);
        }
    }
}

/// A request that got through the Operation Reply.
struct Done {
    opened: Opened,
    auth: Option<AuthenticationReply>,
    reply: Option<OperationReply>,
}

/// A request that failed, with the Authentication Reply if one came.
struct Failed {
    failure: Failure,
    auth: Option<AuthenticationReply>,
    /// The server could not read the request: the code of the Operation
    /// Reply that followed its failed Authentication Reply.
    rejected: Option<ReplyCode>,
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            auth: None,
            rejected: None,
        }
    }
}

/// The failure for a failed Authentication Reply to a request sent with
/// `plan`: a session or token refusal (the server answered), or the
/// credentials refused (see [`Fault::AuthRefused`]).
fn auth_failure(
    upstream: &Upstream,
    server: SocketAddr,
    plan: &Plan,
    auth: &AuthenticationReply,
) -> Failure {
    let session = auth.options.has(OptionKind::SESSION_INVALID)
        || auth.options.has(OptionKind::IDEMPOTENCE_REJECTED);
    if session {
        return Failure::new(
            Kind::General,
            format!("server {server} refused the session or its idempotence token"),
        );
    }
    if matches!(plan, Plan::Use { .. }) {
        return Failure::new(
            Kind::General,
            format!("server {server} failed the request in the session without saying why"),
        );
    }
    let detail = if upstream.settings().upstream_credentials.is_some() {
        format!("authentication refused by server {server}: check --user and --password-file")
    } else if auth.options.auth_selection() == Some(Method::USERNAME_PASSWORD) {
        format!("server {server} requires credentials: give --user and --password-file")
    } else {
        format!("authentication refused by server {server}")
    };
    Failure::new(Kind::General, detail).with_fault(Fault::AuthRefused)
}

async fn once(
    upstream: &Upstream,
    server: SocketAddr,
    command: Command,
    target: &Endpoint,
    initial: &[u8],
    deadline: Instant,
    plan: &Plan,
) -> Result<Done, Failed> {
    let req = request_in(upstream, command, target, initial.len(), plan)?;
    let mut first = Vec::with_capacity(req.encoded_len() + initial.len());
    req.encode_with_style(upstream.padding().style(), &mut first);
    first.extend_from_slice(initial);
    let stream = upstream.dial(server, &first).await?;

    let mut f = Framed::new(stream);
    let probe = super::probe(f.get_ref());
    let connect_timeout = upstream.settings().connect_timeout;
    let read = async {
        let auth = f.next(AuthenticationReply::decode).await?;
        if auth.reply_type != AuthReplyType::SUCCESS {
            return Ok(Err(auth));
        }
        let op = f.next(OperationReply::decode).await?;
        Ok::<_, ReadError<sixpath_protocol::socks6::Error>>(Ok((auth, op)))
    };
    let replies = await_reply(probe, connect_timeout, deadline, server, read).await;
    let syn_data = upstream.check_syn_data(f.get_ref());
    let (auth, op) = match replies {
        Ok(Ok(r)) => r,
        Ok(Err(auth)) => {
            // A server that could not read the Request answers a failed
            // Authentication Reply without options, then an Operation
            // Reply with the code, and closes (digest §4.9). That says
            // nothing about the session: the server never got that far.
            let code = if auth.options.is_empty() {
                let wait = REJECTION_WAIT.min(deadline.saturating_duration_since(Instant::now()));
                match tokio::time::timeout(wait, f.next(OperationReply::decode)).await {
                    Ok(Ok(op)) if op.code != ReplyCode::SUCCESS => Some(op.code),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(code) = code {
                let mut failure = Failure::from_socks6(code).with_fault(Fault::Protocol);
                failure.detail = format!("server {server} could not read the request ({code:?})");
                return Err(Failed {
                    failure,
                    auth: None,
                    rejected: Some(code),
                });
            }
            return Err(Failed {
                failure: auth_failure(upstream, server, plan, &auth),
                auth: Some(auth),
                rejected: None,
            });
        }
        Err(e) => return Err(e.into_failure(server, "SOCKS6").into()),
    };
    if op.code != ReplyCode::SUCCESS {
        return Err(Failed {
            failure: Failure::from_socks6(op.code),
            auth: Some(auth),
            rejected: None,
        });
    }
    let (stream, from_server) = f.into_parts();
    Ok(Done {
        opened: Opened {
            stream,
            from_server,
            reply: Some(op.clone()),
            server,
            syn_data,
        },
        auth: Some(auth),
        reply: Some(op),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddr {
        "192.0.2.1:1080".parse().unwrap()
    }

    #[test]
    fn detection_tries_uncounted_once_and_keeps_what_the_server_understood() {
        let p = Padding::new(DomainPadding::Detect);
        assert_eq!(p.style(), DomainStyle::Padded);
        assert!(p.try_uncounted());
        assert_eq!(p.style(), DomainStyle::Libsocks6msg, "on trial");
        assert!(!p.try_uncounted(), "one trial at a time");
        p.trial_ended(server(), Some(true));
        assert_eq!(p.style(), DomainStyle::Libsocks6msg);
        assert!(!p.try_uncounted(), "settled");
    }

    #[test]
    fn detection_keeps_counted_when_both_styles_are_rejected() {
        let p = Padding::new(DomainPadding::Detect);
        assert!(p.try_uncounted());
        p.trial_ended(server(), Some(false));
        assert_eq!(p.style(), DomainStyle::Padded);
        assert!(!p.try_uncounted(), "settled");
    }

    #[test]
    fn detection_stays_open_when_the_trial_said_nothing() {
        let p = Padding::new(DomainPadding::Detect);
        assert!(p.try_uncounted());
        p.trial_ended(server(), None);
        assert_eq!(p.style(), DomainStyle::Padded);
        assert!(p.try_uncounted(), "may try again");
    }

    #[test]
    fn a_configured_style_is_never_switched() {
        for (configured, style) in [
            (DomainPadding::Counted, DomainStyle::Padded),
            (DomainPadding::Uncounted, DomainStyle::Libsocks6msg),
        ] {
            let p = Padding::new(configured);
            assert_eq!(p.style(), style);
            assert!(!p.try_uncounted());
        }
    }

    fn asks_mptcp_towards_the_target(settings: crate::config::Settings) -> bool {
        let upstream = Upstream::new(settings);
        let target = Endpoint::new(Address::Ipv4([198, 18, 0, 1].into()), 80);
        let req = request(&upstream, &target, 0).unwrap();
        req.options.iter().any(|o| {
            matches!(o, SocksOption::Stack(s)
                if s.leg == Leg::PROXY_REMOTE && matches!(s.value, StackValue::Mptcp(_)))
        })
    }

    #[test]
    fn the_server_is_asked_for_mptcp_towards_targets_only_when_configured() {
        let mut s = crate::config::Settings::new(server(), "127.0.0.1:0".parse().unwrap());
        assert!(s.mptcp, "MPTCP to the server by default");
        assert!(
            !asks_mptcp_towards_the_target(s.clone()),
            "not asked by default"
        );
        s.mptcp_to_targets = true;
        assert!(asks_mptcp_towards_the_target(s));
    }
}
