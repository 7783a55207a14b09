//! SOCKS6 sessions and idempotence tokens on the client side (draft -11
//! §8.4–§8.5, spec digest §3.6, §3.7, §4.3, §4.5).
//!
//! # Sessions
//!
//! The first request to a server carries a Session Request (with the
//! username/password when configured) and an Idempotence Request. The
//! server answers with a Session ID (in the Authentication Reply or the
//! Operation Reply, digest §5.2) which is kept per server address; later
//! requests carry the ID instead of credentials.
//!
//! Only one request at a time asks for a session. Requests that start
//! while it is in flight do not wait: they authenticate with credentials
//! (0-RTT, so this costs no round trip), and use the session once it
//! exists. A server that grants no session is asked again only after
//! [`RETRY_AFTER`].
//!
//! When a server answers Session Invalid (it restarted with another key,
//! the session idled out or its lifetime ended), the ID is dropped and the
//! request is sent once more with credentials and a new Session Request.
//! That is always safe: Session Invalid comes in the Authentication Reply,
//! before the server performs the command, and the only application bytes
//! sent so far are the initial data the client still holds.
//!
//! A server that does not keep sessions may answer a request carrying a
//! Session ID with a failed Authentication Reply and no Session Invalid
//! (nor Session OK). That, too, ends the session: the ID is dropped, the
//! request is sent once more with credentials, and the server is not asked
//! for a session again for [`GIVE_UP_FOR`]. Keeping the ID would fail
//! every later connection to that server.
//!
//! # Idempotence tokens
//!
//! The window advertised in every successful Authentication Reply of the
//! session is tracked (an advertisement whose base precedes the last one
//! is ignored, digest §4.5). Every request that carries initial data
//! spends one token, lowest first; each token is handed out once, under a
//! lock, whatever the concurrency. Without a usable token (no window yet,
//! or all of it handed out and not yet shifted) the request goes without
//! one.
//!
//! Idempotence Rejected fails the Authentication Reply, so the command was
//! not performed. The client looks at the window in that reply:
//!
//! - the token lies inside the advertised window, or at most half a window
//!   behind the next token to hand out with the base just past it: the
//!   server has seen it spent (it moves the base past spent tokens at the
//!   bottom), so a copy of this request got there first. It is not retried
//!   (that would perform the request twice); the application gets "not
//!   allowed" (SOCKS5 0x02, SOCKS6 0x02, HTTP 403).
//! - otherwise the window moved on without it (the server gives up unspent
//!   tokens more than half a window behind a spent one), the window is one
//!   this client never used, or the reply has no window (another process,
//!   which has none for this session): the window is resynchronised (or
//!   asked for again) and the request is retried once with a fresh token.
//!
//! A failed Authentication Reply with Session OK but neither Idempotence
//! Rejected nor any other reason, to a request that spent a token, means
//! the server lost the window: it is asked for again, as above.
//!
//! A server whose token handling is broken must not fail connections for
//! good: when a token handed out after a rejection is rejected too, before
//! any token was accepted, no tokens are spent towards that server for
//! [`GIVE_UP_FOR`]. A stale one's request is then sent once more without a
//! token; one that looks replayed still is not (its copy may have been
//! performed), but the next ones go without a token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use sixpath_protocol::socks6::idempotence::token_precedes;
use sixpath_protocol::socks6::{AuthReplyType, AuthenticationReply, OptionKind, SessionId, Window};
use tokio::time::Instant;

/// Tokens asked for in an Idempotence Request (the server may grant
/// fewer).
pub const WINDOW_REQUEST: u32 = 256;

/// How long after a request that got no session the next one asks again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a server that dropped a session without Session Invalid is
/// not asked for sessions, and a server that keeps rejecting tokens gets
/// none.
pub const GIVE_UP_FOR: Duration = Duration::from_secs(600);

/// How long a Session Request may stay in flight before another request
/// may ask for a session instead (its connection may have died).
const CREATE_TIMEOUT: Duration = Duration::from_secs(20);

/// What one request carries, decided by [`Sessions::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No session: authenticate (credentials when configured).
    Plain,
    /// Authenticate and ask for a session (and a token window).
    Create,
    /// Use the session: its ID, maybe a token to spend, maybe an
    /// Idempotence Request (the session has no window yet).
    Use {
        /// The Session ID.
        id: SessionId,
        /// The token this request spends.
        token: Option<u32>,
        /// Ask for a window.
        want_window: bool,
        /// The token rejections seen when the token was handed out (tells
        /// a token handed out after a rejection from an older one).
        epoch: u32,
    },
}

/// What the server said about a request's session and token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (success, or a failure unrelated to sessions).
    Fine,
    /// Session Invalid: the ID was dropped; retry with credentials.
    SessionInvalid,
    /// The token was refused because the window moved (or the server has
    /// none): resynchronised; retry with a fresh token.
    TokenStale,
    /// The token was refused as already spent: a copy of the request got
    /// there first.
    TokenReplayed,
    /// A failed Authentication Reply to a request in the session, without
    /// Session Invalid or Session OK: the server does not keep the session.
    /// The ID was dropped and sessions with the server are off for
    /// [`GIVE_UP_FOR`]; retry with credentials.
    SessionLost,
    /// The server rejected a token handed out after it had rejected
    /// another: tokens are off towards it for [`GIVE_UP_FOR`]; retry
    /// without one.
    TokensOff,
}

#[derive(Debug, Default)]
struct Server {
    id: Option<SessionId>,
    /// A Session Request is in flight since then.
    creating: Option<Instant>,
    /// The last request that asked got no session.
    refused_at: Option<Instant>,
    /// The last advertised window.
    window: Option<Window>,
    /// The lowest token not handed out yet.
    next: u32,
    /// An Idempotence Request is in flight (or the server ignored one).
    window_asked: bool,
    /// Token rejections so far (see [`Plan::Use`]'s `epoch`).
    epoch: u32,
    /// A token was rejected and none accepted since.
    rejecting: bool,
    /// Since then the server gets no Session Request.
    sessions_off: Option<Instant>,
    /// Since then the server gets no tokens.
    tokens_off: Option<Instant>,
}

/// Sessions and token windows, per server address.
#[derive(Debug, Default)]
pub struct Sessions {
    servers: Mutex<HashMap<SocketAddr, Server>>,
}

impl Sessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, server: SocketAddr, f: impl FnOnce(&mut Server) -> T) -> T {
        let mut map = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(server).or_default())
    }

    /// What the next request to `server` carries; `spend` when it has
    /// initial data (and so needs a token).
    pub fn plan(&self, server: SocketAddr, spend: bool) -> Plan {
        let now = Instant::now();
        let recent = |at: Option<Instant>, within: Duration| {
            at.is_some_and(|at| now.duration_since(at) < within)
        };
        self.with(server, |s| {
            if let Some(id) = s.id.clone() {
                let tokens_off = recent(s.tokens_off, GIVE_UP_FOR);
                let token = if spend && !tokens_off {
                    s.take_token()
                } else {
                    None
                };
                let want_window = s.window.is_none() && !s.window_asked && !tokens_off;
                if want_window {
                    s.window_asked = true;
                }
                return Plan::Use {
                    id,
                    token,
                    want_window,
                    epoch: s.epoch,
                };
            }
            let creating = recent(s.creating, CREATE_TIMEOUT);
            let refused = recent(s.refused_at, RETRY_AFTER);
            if creating || refused || recent(s.sessions_off, GIVE_UP_FOR) {
                return Plan::Plain;
            }
            s.creating = Some(now);
            Plan::Create
        })
    }

    /// Learns from the server's replies to a request sent with `plan`:
    /// `auth` is the Authentication Reply, `op_id` the Session ID of the
    /// Operation Reply if any.
    pub fn learn(
        &self,
        server: SocketAddr,
        plan: &Plan,
        auth: Option<&AuthenticationReply>,
        op_id: Option<&SessionId>,
    ) -> Verdict {
        self.with(server, |s| {
            // The next token before this reply's window moves it.
            let handed_out = s.next;
            let opts = auth.map(|a| &a.options);
            if let Some(w) = opts.and_then(sixpath_protocol::socks6::Options::idempotence_window) {
                s.advertised(w);
            }
            match plan {
                Plan::Plain => Verdict::Fine,
                Plan::Create => {
                    s.creating = None;
                    let id = opts.and_then(|o| o.session_id()).or(op_id).cloned();
                    match id {
                        Some(id) => {
                            tracing::debug!(%server, "session established");
                            s.id = Some(id);
                            s.refused_at = None;
                            // The window came with the session, or the
                            // server issues none.
                            s.window_asked = true;
                        }
                        // A reply that never came (auth None) says
                        // nothing; a complete one without an ID means no
                        // session for now.
                        None if auth.is_some() => s.refused_at = Some(Instant::now()),
                        None => {}
                    }
                    Verdict::Fine
                }
                Plan::Use {
                    id, token, epoch, ..
                } => {
                    let Some(a) = auth else {
                        return Verdict::Fine;
                    };
                    let o = &a.options;
                    if o.has(OptionKind::SESSION_INVALID) {
                        if s.id.as_ref() == Some(id) {
                            tracing::info!(%server, "session no longer valid: authenticating again");
                            *s = Server {
                                sessions_off: s.sessions_off,
                                tokens_off: s.tokens_off,
                                ..Server::default()
                            };
                        }
                        return Verdict::SessionInvalid;
                    }
                    if o.has(OptionKind::IDEMPOTENCE_REJECTED) {
                        let verdict = match (*token, o.idempotence_window()) {
                            (None, _) => Verdict::TokenReplayed,
                            (Some(t), Some(w)) if looks_replayed(handed_out, t, w) => {
                                Verdict::TokenReplayed
                            }
                            (Some(_), Some(_)) => Verdict::TokenStale,
                            (Some(_), None) => {
                                // The server has no window for the
                                // session: ask again.
                                s.forget_window();
                                Verdict::TokenStale
                            }
                        };
                        return s.token_rejected(server, *epoch, verdict);
                    }
                    if a.reply_type == AuthReplyType::SUCCESS {
                        if o.has(OptionKind::IDEMPOTENCE_ACCEPTED) {
                            s.rejecting = false;
                        }
                        return Verdict::Fine;
                    }
                    if o.has(OptionKind::SESSION_OK) && token.is_some() {
                        // The session holds but the spent token failed the
                        // request without a word: the window is gone.
                        s.forget_window();
                        return s.token_rejected(server, *epoch, Verdict::TokenStale);
                    }
                    // A failure without Session OK: the server no longer
                    // has (or never kept) the session.
                    if s.id.as_ref() == Some(id) {
                        tracing::warn!(
                            %server,
                            "the server failed a request in a session without saying Session Invalid: \
                             session dropped; no Session Requests to it for {} minutes",
                            GIVE_UP_FOR.as_secs() / 60
                        );
                        *s = Server {
                            sessions_off: Some(Instant::now()),
                            tokens_off: s.tokens_off,
                            ..Server::default()
                        };
                    }
                    Verdict::SessionLost
                }
            }
        })
    }

    /// Forgets a Session Request that will get no answer (its request was
    /// cancelled), so the next request may ask again at once.
    pub fn abandon(&self, server: SocketAddr) {
        self.with(server, |s| s.creating = None);
    }

    /// The session's current window, for the log and tests.
    pub fn window(&self, server: SocketAddr) -> Option<Window> {
        self.with(server, |s| s.window)
    }

    /// The current Session ID, for tests and the log.
    pub fn session_id(&self, server: SocketAddr) -> Option<SessionId> {
        self.with(server, |s| s.id.clone())
    }
}

/// True if the server's refusal of token `t`, with window `w` advertised,
/// means it saw `t` spent; `next` is the lowest token not handed out. `t`
/// is in the window (its bit is set), or just below it: the server moves
/// the base past spent tokens at the bottom, so a replayed lowest token
/// ends up just below. It also gives up unspent tokens when one in the
/// upper half of the window is spent, which leaves them more than half a
/// window behind the newest token handed out. A base beyond every token
/// handed out is a window this client never used (another process): not
/// a replay.
fn looks_replayed(next: u32, t: u32, w: Window) -> bool {
    if w.contains(t) {
        return true;
    }
    let ours = !token_precedes(next, w.base());
    let below = token_precedes(t, w.base());
    ours && below && next.wrapping_sub(t) <= w.size() / 2
}

impl Server {
    /// The server has no window for the session: ask for one again.
    fn forget_window(&mut self) {
        self.window = None;
        self.window_asked = false;
    }

    /// Books a token rejection that gave `verdict`, of a token handed out
    /// at `epoch`: a token handed out after an earlier rejection, with no
    /// token accepted since, switches tokens off.
    fn token_rejected(&mut self, server: SocketAddr, epoch: u32, verdict: Verdict) -> Verdict {
        if epoch != self.epoch {
            // Handed out before the last rejection: nothing new.
            return verdict;
        }
        if !self.rejecting {
            self.rejecting = true;
            self.epoch = self.epoch.wrapping_add(1);
            return verdict;
        }
        self.rejecting = false;
        self.epoch = self.epoch.wrapping_add(1);
        self.tokens_off = Some(Instant::now());
        tracing::warn!(
            %server,
            "the server keeps rejecting idempotence tokens: none spent towards it for {} minutes",
            GIVE_UP_FOR.as_secs() / 60
        );
        match verdict {
            Verdict::TokenStale => Verdict::TokensOff,
            v => v,
        }
    }

    fn take_token(&mut self) -> Option<u32> {
        let w = self.window?;
        if !w.contains(self.next) {
            return None;
        }
        let t = self.next;
        self.next = t.wrapping_add(1);
        Some(t)
    }

    fn advertised(&mut self, w: Window) {
        match self.window {
            // Out of order: older than the last one seen.
            Some(old) if token_precedes(w.base(), old.base()) => return,
            Some(_) => {}
            None => self.next = w.base(),
        }
        if !w.contains(self.next) && token_precedes(self.next, w.base()) {
            self.next = w.base();
        }
        self.window = Some(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixpath_protocol::socks6::{AuthReplyType, SocksOption};

    fn addr() -> SocketAddr {
        "192.0.2.1:1080".parse().unwrap()
    }

    fn reply(ok: bool, opts: Vec<SocksOption>) -> AuthenticationReply {
        let mut r = AuthenticationReply::new(if ok {
            AuthReplyType::SUCCESS
        } else {
            AuthReplyType::FAILURE
        });
        for o in opts {
            r.options.push(o).unwrap();
        }
        r
    }

    fn id() -> SessionId {
        SessionId::new([1, 2, 3, 4, 5, 6, 7, 8]).unwrap()
    }

    fn established(s: &Sessions, base: u32, size: u32) {
        let p = s.plan(addr(), false);
        assert_eq!(p, Plan::Create);
        let w = Window::new(base, size).unwrap();
        let r = reply(
            true,
            vec![
                SocksOption::SessionId(id()),
                SocksOption::IdempotenceWindow(w),
            ],
        );
        assert_eq!(s.learn(addr(), &p, Some(&r), None), Verdict::Fine);
    }

    #[test]
    fn one_request_creates_the_session_the_others_go_plain_meanwhile() {
        let s = Sessions::new();
        let first = s.plan(addr(), true);
        assert_eq!(first, Plan::Create);
        assert_eq!(s.plan(addr(), true), Plan::Plain);
        let r = reply(true, vec![SocksOption::SessionId(id())]);
        s.learn(addr(), &first, Some(&r), None);
        assert!(
            matches!(s.plan(addr(), false), Plan::Use { ref id, token: None, .. } if *id == self::id())
        );
    }

    #[test]
    fn abandoned_session_request_lets_the_next_request_ask() {
        let s = Sessions::new();
        assert_eq!(s.plan(addr(), false), Plan::Create);
        assert_eq!(s.plan(addr(), false), Plan::Plain);
        s.abandon(addr());
        assert_eq!(s.plan(addr(), false), Plan::Create);
    }

    #[test]
    fn session_id_from_the_operation_reply_is_accepted() {
        let s = Sessions::new();
        let p = s.plan(addr(), false);
        s.learn(addr(), &p, Some(&reply(true, vec![])), Some(&id()));
        assert_eq!(s.session_id(addr()), Some(id()));
    }

    #[test]
    fn no_session_granted_backs_off() {
        let s = Sessions::new();
        let p = s.plan(addr(), false);
        s.learn(addr(), &p, Some(&reply(true, vec![])), None);
        assert_eq!(s.plan(addr(), false), Plan::Plain);
    }

    #[test]
    fn tokens_are_handed_out_once_lowest_first_within_the_window() {
        let s = Sessions::new();
        established(&s, 0xffff_fffe, 3);
        let tokens: Vec<_> = (0..4)
            .map(|_| match s.plan(addr(), true) {
                Plan::Use { token, .. } => token,
                p => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(
            tokens,
            [Some(0xffff_fffe), Some(0xffff_ffff), Some(0), None]
        );
        // The server shifts the window: tokens flow again.
        let p = s.plan(addr(), false);
        let w = Window::new(1, 3).unwrap();
        s.learn(
            addr(),
            &p,
            Some(&reply(
                true,
                vec![SocksOption::SessionOk, SocksOption::IdempotenceWindow(w)],
            )),
            None,
        );
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use { token: Some(1), .. }
        ));
        // An older advertisement is ignored.
        let old = Window::new(0xffff_fffe, 3).unwrap();
        s.learn(
            addr(),
            &p,
            Some(&reply(true, vec![SocksOption::IdempotenceWindow(old)])),
            None,
        );
        assert_eq!(s.window(addr()), Some(w));
    }

    #[test]
    fn tokens_are_unique_across_threads() {
        let s = std::sync::Arc::new(Sessions::new());
        established(&s, 100, 4000);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..500)
                        .filter_map(|_| match s.plan(addr(), true) {
                            Plan::Use { token, .. } => token,
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!((n, all.len()), (4000, 4000));
    }

    /// A plan spending token 10, as handed out before any rejection.
    fn p10() -> Plan {
        Plan::Use {
            id: id(),
            token: Some(10),
            want_window: false,
            epoch: 0,
        }
    }

    #[test]
    fn rejected_token_inside_the_window_is_a_replay_outside_is_stale() {
        let s = Sessions::new();
        established(&s, 10, 4);
        let p = s.plan(addr(), true);
        let w = Window::new(10, 4).unwrap();
        let rejected = |w: Option<Window>| {
            let mut o = vec![SocksOption::SessionOk];
            o.extend(w.map(SocksOption::IdempotenceWindow));
            o.push(SocksOption::IdempotenceRejected);
            reply(false, o)
        };
        // Another request's token accepted in between: each rejection here
        // is the first in a row (see `tokens_rejected_twice_in_a_row_...`).
        let accepted = || {
            let ok = reply(
                true,
                vec![SocksOption::SessionOk, SocksOption::IdempotenceAccepted],
            );
            assert_eq!(s.learn(addr(), &p10(), Some(&ok), None), Verdict::Fine);
        };
        assert_eq!(
            s.learn(addr(), &p, Some(&rejected(Some(w))), None),
            Verdict::TokenReplayed
        );
        accepted();
        // The token spent (by a copy) and the base moved just past it.
        let p = s.plan(addr(), true);
        assert!(matches!(
            p,
            Plan::Use {
                token: Some(11),
                ..
            }
        ));
        let shifted = Window::new(12, 4).unwrap();
        assert_eq!(
            s.learn(addr(), &p, Some(&rejected(Some(shifted))), None),
            Verdict::TokenReplayed
        );
        accepted();
        // Given up unspent: more than half a window behind.
        for _ in 0..2 {
            s.plan(addr(), true);
        }
        assert_eq!(
            s.learn(
                addr(),
                &p10(),
                Some(&rejected(Some(Window::new(13, 4).unwrap()))),
                None
            ),
            Verdict::TokenStale
        );
        accepted();
        // A window beyond anything handed out: another lineage, resync.
        let moved = Window::new(20, 4).unwrap();
        assert_eq!(
            s.learn(addr(), &p, Some(&rejected(Some(moved))), None),
            Verdict::TokenStale
        );
        accepted();
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use {
                token: Some(20),
                ..
            }
        ));
        // No window at all (another process): ask for one again.
        assert_eq!(
            s.learn(addr(), &p, Some(&rejected(None)), None),
            Verdict::TokenStale
        );
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use {
                token: None,
                want_window: true,
                ..
            }
        ));
    }

    #[test]
    fn failure_without_session_ok_drops_the_session_and_stops_asking_for_one() {
        let s = Sessions::new();
        established(&s, 0, 4);
        let p = s.plan(addr(), true);
        // A server that keeps no sessions: a bare failure.
        let bare = reply(false, vec![]);
        assert_eq!(s.learn(addr(), &p, Some(&bare), None), Verdict::SessionLost);
        assert_eq!(s.session_id(addr()), None);
        assert_eq!(s.window(addr()), None);
        // The retry and later requests authenticate, and ask for no
        // session for a while.
        assert_eq!(s.plan(addr(), true), Plan::Plain);
        assert_eq!(s.plan(addr(), false), Plan::Plain);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_are_asked_for_again_after_giving_up() {
        let s = Sessions::new();
        established(&s, 0, 4);
        let p = s.plan(addr(), false);
        // Credentials required: the session is gone too.
        let r = reply(
            false,
            vec![SocksOption::AuthMethodSelection(
                sixpath_protocol::socks6::Method::USERNAME_PASSWORD,
            )],
        );
        assert_eq!(s.learn(addr(), &p, Some(&r), None), Verdict::SessionLost);
        tokio::time::advance(Duration::from_secs(GIVE_UP_FOR.as_secs() - 1)).await;
        assert_eq!(s.plan(addr(), false), Plan::Plain);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(s.plan(addr(), false), Plan::Create);
    }

    #[test]
    fn unexplained_failure_with_session_ok_and_a_token_asks_for_the_window_again() {
        let s = Sessions::new();
        established(&s, 0, 4);
        let p = s.plan(addr(), true);
        let r = reply(false, vec![SocksOption::SessionOk]);
        assert_eq!(s.learn(addr(), &p, Some(&r), None), Verdict::TokenStale);
        assert_eq!(s.session_id(addr()), Some(id()), "the session holds");
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use {
                token: None,
                want_window: true,
                ..
            }
        ));
    }

    #[test]
    fn tokens_rejected_twice_in_a_row_are_switched_off() {
        let s = Sessions::new();
        established(&s, 0, 8);
        let stale = |base| {
            reply(
                false,
                vec![
                    SocksOption::SessionOk,
                    SocksOption::IdempotenceWindow(Window::new(base, 8).unwrap()),
                    SocksOption::IdempotenceRejected,
                ],
            )
        };
        // Three requests in flight with tokens 0, 1, 2: all refused (a
        // window this client never used). Only the first counts; the
        // others were handed out before it.
        let plans: Vec<Plan> = (0..3).map(|_| s.plan(addr(), true)).collect();
        for p in &plans {
            assert_eq!(
                s.learn(addr(), p, Some(&stale(100)), None),
                Verdict::TokenStale
            );
        }
        // The retry's token, from the new window, is refused too.
        let retry = s.plan(addr(), true);
        assert!(
            matches!(
                retry,
                Plan::Use {
                    token: Some(100),
                    ..
                }
            ),
            "{retry:?}"
        );
        assert_eq!(
            s.learn(addr(), &retry, Some(&stale(200)), None),
            Verdict::TokensOff
        );
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use {
                token: None,
                want_window: false,
                ..
            }
        ));
        assert_eq!(s.session_id(addr()), Some(id()), "the session holds");
    }

    #[test]
    fn an_accepted_token_between_two_rejections_keeps_tokens_on() {
        let s = Sessions::new();
        established(&s, 0, 8);
        let w = Window::new(0, 8).unwrap();
        let replayed = reply(
            false,
            vec![
                SocksOption::SessionOk,
                SocksOption::IdempotenceWindow(w),
                SocksOption::IdempotenceRejected,
            ],
        );
        let p = s.plan(addr(), true);
        assert_eq!(
            s.learn(addr(), &p, Some(&replayed), None),
            Verdict::TokenReplayed
        );
        let p = s.plan(addr(), true);
        let ok = reply(
            true,
            vec![SocksOption::SessionOk, SocksOption::IdempotenceAccepted],
        );
        assert_eq!(s.learn(addr(), &p, Some(&ok), None), Verdict::Fine);
        let p = s.plan(addr(), true);
        assert_eq!(
            s.learn(addr(), &p, Some(&replayed), None),
            Verdict::TokenReplayed
        );
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use { token: Some(_), .. }
        ));
        // Replayed twice in a row: the second is still not retried, but
        // tokens go off.
        let p = s.plan(addr(), true);
        assert_eq!(
            s.learn(addr(), &p, Some(&replayed), None),
            Verdict::TokenReplayed
        );
        assert!(matches!(
            s.plan(addr(), true),
            Plan::Use { token: None, .. }
        ));
    }

    #[test]
    fn session_invalid_drops_the_id() {
        let s = Sessions::new();
        established(&s, 0, 4);
        let p = s.plan(addr(), true);
        let r = reply(false, vec![SocksOption::SessionInvalid]);
        assert_eq!(s.learn(addr(), &p, Some(&r), None), Verdict::SessionInvalid);
        assert_eq!(s.session_id(addr()), None);
        assert_eq!(s.window(addr()), None);
        assert_eq!(s.plan(addr(), true), Plan::Create);
    }
}
