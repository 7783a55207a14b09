//! SOCKS6 session state: sessions, idempotence tokens (draft -11
//! §8.4–§8.5, spec digest §3.6, §3.7, §4.3, §4.5) and the listeners a
//! session's Listen Backlogs keep open.
//!
//! # Session IDs
//!
//! A Session ID is self-authenticating: it carries who the session belongs
//! to and until when, under an HMAC-SHA256 tag made with the server key
//! ([`Secret`], `--secret-file`):
//!
//! ```text
//! 0..4    issuer: random number drawn by the process at start-up
//! 4..12   serial: per-process counter (u64, big-endian)
//! 12..16  not-after: end of the session's lifetime, Unix seconds (u32)
//! 16      user length L (0: the session is anonymous)
//! 17..    user name (L bytes), zero padding to a multiple of 4
//! last 16 HMAC-SHA256("socks6-session", everything before), truncated
//! ```
//!
//! An anonymous ID is 36 bytes; one for user `alice` is 40.
//!
//! # State, and what happens across processes
//!
//! Each process keeps a bounded table of the sessions it serves (at most
//! `--max-sessions`): when each was last used and its token window. A
//! session ends when the client tears it down, when it has been idle for
//! `--session-timeout`, or when its lifetime (`--session-lifetime`, fixed in
//! the ID) is over.
//!
//! So that one client cannot take every place (and with it everyone
//! else's replay protection), the table also holds at most
//! `--max-sessions-per-user` sessions of one authenticated user and
//! `--max-sessions-per-source` sessions created or adopted from one source
//! (an IPv4 address or an IPv6 /64, as failed logins count them; anonymous
//! sessions are held by the source cap alone). A request beyond any cap is
//! served without a session ([`Sessions::create`] says which cap,
//! [`SessionCap`], for the counters); an ID beyond a cap is not adopted.
//!
//! Processes that share the key (a fleet behind a load balancer, or one
//! process after a restart) accept each other's IDs: a valid ID this
//! process did not issue is *adopted* into its table on first use, for the
//! user the ID names. What stays per process:
//!
//! - a teardown reaches only the process that receives it; another process
//!   accepts the ID until it idles out there or its lifetime ends;
//! - the idempotence window lives in the process that granted it. Another
//!   process has no window for the session and rejects every token, so a
//!   replay sent to another instance is still refused; a client that asks
//!   that process for a window gets a new one there.
//!
//! A server that requires authentication refuses anonymous session IDs, so
//! an open (loopback) server sharing the key cannot mint sessions for it.
//!
//! # Idempotence
//!
//! [`TokenWindow`] is a bitmap of one bit per token, sized to the granted
//! window (at most `--token-window`), so a session's memory is bounded
//! whatever the client asks for.
//!
//! # Listen Backlogs
//!
//! A SOCKS6 BIND with Listen Backlog inside a session keeps its listener
//! open for further BINDs of the same session ([`Backlogs`]); the BIND
//! command opens, offers and closes them, the session state only keeps
//! them findable by session and address.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sixpath_protocol::socks6::idempotence::MAX_WINDOW_SIZE;
use sixpath_protocol::socks6::{OptionKind, Request, SessionId, SocksOption, Window};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::secret::Secret;
use crate::store::{Store, WindowState};
use sixpath_service::logins::source_key;

/// The MAC domain of Session IDs.
const ID_DOMAIN: &str = "socks6-session";
/// Bytes of the truncated tag.
const TAG_LEN: usize = 16;
/// Bytes before the user length: issuer, serial, not-after.
const HEAD_LEN: usize = 16;
/// How long the table may go without a sweep of idle sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often a full table may be swept to make room, so a flood of
/// requests at the cap does not rescan it each time.
const FORCED_SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The part of an ID that names a session in the table: issuer and serial.
type Key = [u8; 12];

/// A window of idempotence tokens and which of them are spent.
///
/// Bit `t mod R` records token `t`, where `R`, a power of two at least the
/// window size, divides 2^32, so the mapping stays consistent when tokens
/// wrap. Only tokens inside the window have bits set. The window never
/// moves more than 2^32 − size tokens in total, so a spent token can never
/// come back into it.
#[derive(Debug, Clone)]
pub struct TokenWindow {
    base: u32,
    size: u32,
    bits: Vec<u64>,
    /// Tokens the base may still move forward.
    travel_left: u64,
}

impl TokenWindow {
    /// A window of `size` tokens from `base` (`size` is clamped to
    /// 1..=2^31 − 1). Memory: `size` rounded up to a power of two, in bits.
    pub fn new(base: u32, size: u32) -> Self {
        let size = size.clamp(1, MAX_WINDOW_SIZE);
        let slots = size.next_power_of_two().max(64) as usize;
        Self {
            base,
            size,
            bits: vec![0; slots / 64],
            travel_left: (1u64 << 32) - u64::from(size),
        }
    }

    /// The window as advertised (always `Some`: the size is valid by
    /// construction).
    pub fn window(&self) -> Option<Window> {
        Window::new(self.base, self.size).ok()
    }

    /// The first token of the window.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// Bytes of the spent-token bitmap.
    pub fn bitmap_bytes(&self) -> usize {
        self.bits.len() * 8
    }

    fn slot(&self, token: u32) -> (usize, u64) {
        let i = token as usize & (self.bits.len() * 64 - 1);
        (i / 64, 1 << (i % 64))
    }

    fn is_spent(&self, token: u32) -> bool {
        let (w, m) = self.slot(token);
        self.bits.get(w).is_some_and(|b| b & m != 0)
    }

    fn set(&mut self, token: u32, on: bool) {
        let (w, m) = self.slot(token);
        if let Some(b) = self.bits.get_mut(w) {
            if on {
                *b |= m;
            } else {
                *b &= !m;
            }
        }
    }

    /// Spends `token`: true if it lies in the window and was not spent
    /// before ("Accepted"), false otherwise ("Rejected"). Then shifts the
    /// window: past the spent tokens at its bottom, and, when a token in
    /// the upper half is spent, far enough to keep that token in the
    /// middle, giving up the unspent tokens below ("It SHOULD shift the
    /// window when the lowest token is spent and when a sufficiently high
    /// token is spent", draft -11 §8.5.2).
    pub fn spend(&mut self, token: u32) -> bool {
        let offset = token.wrapping_sub(self.base);
        if offset >= self.size || self.is_spent(token) {
            return false;
        }
        self.set(token, true);
        let half = self.size / 2;
        if offset > half {
            self.advance(offset - half);
        }
        let mut run = 0;
        while run < self.size && self.is_spent(self.base.wrapping_add(run)) {
            run += 1;
        }
        self.advance(run);
        true
    }

    fn advance(&mut self, by: u32) {
        let by = by.min(u32::try_from(self.travel_left).unwrap_or(u32::MAX));
        if by == 0 {
            return;
        }
        if by >= self.size {
            self.bits.fill(0);
        } else {
            for i in 0..by {
                self.set(self.base.wrapping_add(i), false);
            }
        }
        self.base = self.base.wrapping_add(by);
        self.travel_left -= u64::from(by);
    }
}

/// Session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most sessions in the table at once.
    pub max_sessions: usize,
    /// Most sessions of one authenticated user.
    pub max_per_user: usize,
    /// Most sessions created or adopted from one source (an IPv4 address
    /// or an IPv6 /64).
    pub max_per_source: usize,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after it began, however busy.
    pub lifetime: Duration,
    /// Largest idempotence window granted.
    pub max_window: u32,
}

#[derive(Debug)]
struct Live {
    user: Option<String>,
    /// The source it is counted against ([`source_key`]).
    source: IpAddr,
    last_used: Instant,
    not_after: u32,
    window: Option<TokenWindow>,
    requests: u64,
}

#[derive(Debug)]
struct Table {
    live: HashMap<Key, Live>,
    /// Sessions in `live` per authenticated user.
    per_user: HashMap<String, usize>,
    /// Sessions in `live` per source.
    per_source: HashMap<IpAddr, usize>,
    /// Adopted sessions that ended here, until their lifetime ends, so the
    /// ID is not adopted again.
    ended: HashMap<Key, u32>,
    last_sweep: Instant,
}

/// Which cap kept a request from a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCap {
    /// `--max-sessions`.
    Total,
    /// `--max-sessions-per-user`.
    PerUser,
    /// `--max-sessions-per-source`.
    PerSource,
}

impl SessionCap {
    /// Every cap, in the order of the counters.
    pub const ALL: [Self; 3] = [Self::Total, Self::PerUser, Self::PerSource];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerUser => "per_user",
            Self::PerSource => "per_source",
        }
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(k);
        }
    }
}

impl Table {
    /// Adds a session, counting it against its user and source.
    fn insert(&mut self, key: Key, live: Live) {
        if let Some(u) = &live.user {
            *self.per_user.entry(u.clone()).or_insert(0) += 1;
        }
        *self.per_source.entry(live.source).or_insert(0) += 1;
        if let Some(old) = self.live.insert(key, live) {
            self.uncount(&old);
        }
    }

    /// Removes a session and its counts.
    fn remove(&mut self, key: &Key) -> Option<Live> {
        let live = self.live.remove(key)?;
        self.uncount(&live);
        Some(live)
    }

    fn uncount(&mut self, live: &Live) {
        if let Some(u) = &live.user {
            decrement(&mut self.per_user, u);
        }
        decrement(&mut self.per_source, &live.source);
    }

    /// The cap a new session of `user` from `source` would break, if any.
    fn over_cap(
        &self,
        limits: &SessionLimits,
        user: Option<&str>,
        source: IpAddr,
    ) -> Option<SessionCap> {
        let count = |n: Option<&usize>| n.copied().unwrap_or(0);
        if self.live.len() >= limits.max_sessions {
            Some(SessionCap::Total)
        } else if user.is_some_and(|u| count(self.per_user.get(u)) >= limits.max_per_user) {
            Some(SessionCap::PerUser)
        } else if count(self.per_source.get(&source)) >= limits.max_per_source {
            Some(SessionCap::PerSource)
        } else {
            None
        }
    }
}

/// The sessions of this process.
#[derive(Debug)]
pub struct Sessions {
    secret: Secret,
    issuer: [u8; 4],
    serial: AtomicU64,
    limits: SessionLimits,
    table: Mutex<Table>,
    backlogs: Backlogs,
}

/// A request's place in a session, once [`Sessions::admit`] has read its
/// session options.
#[derive(Debug)]
pub enum Admission {
    /// The request carries no (usable) Session ID: authenticate it as
    /// usual. This includes a tearing-down request, which "MUST treat
    /// ... as not part of any session" (draft -11 §8.4).
    Fresh,
    /// A valid session: no authentication; the session's user applies.
    Session(Member),
    /// The Session ID is not valid (forged, expired, ended or unknown):
    /// answer Session Invalid.
    Invalid,
    /// A valid ID this process would adopt, beyond a cap: answer Session
    /// Invalid too (the client then asks again with its credentials).
    OverCap(SessionCap),
}

/// A request that belongs to a session.
#[derive(Debug, Clone)]
pub struct Member {
    key: Key,
    /// End of the session's lifetime (Unix seconds), from its ID.
    not_after: u32,
    /// The session's ID.
    pub id: SessionId,
    /// The user the session was created for.
    pub user: Option<String>,
    /// Whether this request created the session.
    pub created: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A session's table key in hex, as the shared store names it.
fn hex_key(key: &Key) -> String {
    key.iter().fold(String::new(), |mut k, b| {
        let _ = write!(k, "{b:02x}");
        k
    })
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl Sessions {
    /// An empty table issuing IDs under `secret`.
    ///
    /// # Panics
    ///
    /// If the operating system's random source fails.
    pub fn new(secret: Secret, limits: SessionLimits) -> Self {
        let mut issuer = [0u8; 4];
        // Same reasoning as `Secret::random`: without randomness, two
        // processes could share an issuer number.
        getrandom::fill(&mut issuer).expect("the OS random number generator failed");
        Self {
            secret,
            issuer,
            serial: AtomicU64::new(0),
            limits,
            table: Mutex::new(Table {
                live: HashMap::new(),
                per_user: HashMap::new(),
                per_source: HashMap::new(),
                ended: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            backlogs: Backlogs::default(),
        }
    }

    /// BIND listeners kept open for the sessions' Listen Backlogs.
    pub fn backlogs(&self) -> &Backlogs {
        &self.backlogs
    }

    /// Whether the session `id` is alive here: in the table and not idle
    /// past `--session-timeout`. Does not count as a use of the session.
    pub fn is_live(&self, id: &SessionId) -> bool {
        let Some((key, _, _)) = self.check(id) else {
            return false;
        };
        let idle = self.limits.idle_timeout;
        self.table()
            .live
            .get(&key)
            .is_some_and(|l| l.last_used.elapsed() < idle)
    }

    /// Like [`Sessions::is_live`], and a live session counts as used now:
    /// a client that probes its paths (`docs/probe.md`) keeps its session
    /// from idling out while its connections are long-lived.
    pub fn keep_alive(&self, id: &SessionId) -> bool {
        let Some((key, _, _)) = self.check(id) else {
            return false;
        };
        let idle = self.limits.idle_timeout;
        let mut table = self.table();
        match table.live.get_mut(&key) {
            Some(l) if l.last_used.elapsed() < idle => {
                l.last_used = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sessions alive in this process.
    pub fn len(&self) -> usize {
        self.table().live.len()
    }

    /// True if no session is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the Session ID and Session Teardown options of a request from
    /// `source` (a Session Request is for [`Sessions::create`], once the
    /// request is authenticated). With `auth_required`, anonymous sessions
    /// are refused.
    pub fn admit(&self, req: &Request, auth_required: bool, source: IpAddr) -> Admission {
        let Some(id) = req.options.session_id() else {
            return Admission::Fresh;
        };
        if req.options.has(OptionKind::SESSION_TEARDOWN) {
            self.teardown(id);
            return Admission::Fresh;
        }
        let Some((key, user, not_after)) = self.check(id) else {
            return Admission::Invalid;
        };
        if auth_required && user.is_none() {
            return Admission::Invalid;
        }
        let now = Instant::now();
        let mut t = self.table();
        self.sweep(&mut t, now, false);
        let idle = self.limits.idle_timeout;
        if t.live
            .get(&key)
            .is_some_and(|l| now.duration_since(l.last_used) >= idle)
        {
            // Idle too long, the sweep just has not come round yet.
            t.remove(&key);
            if key.get(..4) != Some(&self.issuer[..]) {
                Self::remember_ended(&mut t, key, not_after, self.limits.max_sessions);
            }
            return Admission::Invalid;
        }
        if let Some(live) = t.live.get_mut(&key) {
            live.last_used = now;
            live.requests += 1;
            return Admission::Session(Member {
                key,
                not_after,
                id: id.clone(),
                user,
                created: false,
            });
        }
        // Not in the table: ended here if this process issued it, or ended
        // after adoption; otherwise another process issued it.
        if key.get(..4) == Some(&self.issuer[..]) || t.ended.contains_key(&key) {
            return Admission::Invalid;
        }
        let source = source_key(source);
        if let Some(cap) = self.room(&mut t, user.as_deref(), source, now) {
            return Admission::OverCap(cap);
        }
        tracing::debug!(user = user.as_deref().unwrap_or("-"), "session adopted");
        t.insert(
            key,
            Live {
                user: user.clone(),
                source,
                last_used: now,
                not_after,
                window: None,
                requests: 1,
            },
        );
        Admission::Session(Member {
            key,
            not_after,
            id: id.clone(),
            user,
            created: false,
        })
    }

    /// The cap a new session of `user` from `source` (a [`source_key`])
    /// would break, after idle sessions made what room they can.
    fn room(
        &self,
        t: &mut Table,
        user: Option<&str>,
        source: IpAddr,
        now: Instant,
    ) -> Option<SessionCap> {
        t.over_cap(&self.limits, user, source)?;
        self.sweep(t, now, true);
        t.over_cap(&self.limits, user, source)
    }

    /// A new session for `user`, requested from `source`, or the cap that
    /// refuses it ("A proxy that cannot or will not create a session
    /// silently omits the Session ID", digest §4.3). `Ok(None)` only for a
    /// user name too long for an ID (more than 255 bytes, which neither
    /// SOCKS6 nor SOCKS5 can carry).
    pub fn create(&self, user: Option<&str>, source: IpAddr) -> Result<Option<Member>, SessionCap> {
        let user_bytes = user.map_or(&[][..], str::as_bytes);
        let Ok(ulen) = u8::try_from(user_bytes.len()) else {
            return Ok(None);
        };
        let now = Instant::now();
        let source = source_key(source);
        let mut t = self.table();
        if let Some(cap) = self.room(&mut t, user, source, now) {
            return Err(cap);
        }
        Ok(self.issue(&mut t, user, ulen, source, now))
    }

    /// Issues an ID and enters the session in the table.
    fn issue(
        &self,
        t: &mut Table,
        user: Option<&str>,
        ulen: u8,
        source: IpAddr,
        now: Instant,
    ) -> Option<Member> {
        let user_bytes = user.map_or(&[][..], str::as_bytes);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let not_after = unix_now()
            .saturating_add(self.limits.lifetime.as_secs())
            .min(u64::from(u32::MAX)) as u32;
        let mut body = Vec::with_capacity(HEAD_LEN + 4 + user_bytes.len() + TAG_LEN);
        body.extend_from_slice(&self.issuer);
        body.extend_from_slice(&serial.to_be_bytes());
        body.extend_from_slice(&not_after.to_be_bytes());
        body.push(ulen);
        body.extend_from_slice(user_bytes);
        body.resize(body.len() + pad4(body.len()), 0);
        let tag = self.secret.mac(ID_DOMAIN, &[&body]);
        body.extend_from_slice(tag.get(..TAG_LEN)?);
        let id = SessionId::new(body).ok()?;
        let mut key = [0u8; 12];
        key.copy_from_slice(id.as_bytes().get(..12)?);
        t.insert(
            key,
            Live {
                user: user.map(ToOwned::to_owned),
                source,
                last_used: now,
                not_after,
                window: None,
                requests: 1,
            },
        );
        tracing::debug!(user = user.unwrap_or("-"), "session created");
        Some(Member {
            key,
            not_after,
            id,
            user: user.map(ToOwned::to_owned),
            created: true,
        })
    }

    /// Checks an ID's tag, layout and lifetime: its key, user and
    /// not-after time.
    fn check(&self, id: &SessionId) -> Option<(Key, Option<String>, u32)> {
        let b = id.as_bytes();
        let signed = b.get(..b.len().checked_sub(TAG_LEN)?)?;
        let tag = b.get(signed.len()..)?;
        let ulen = usize::from(*signed.get(HEAD_LEN)?);
        let user_end = HEAD_LEN + 1 + ulen;
        if signed.len() != user_end + pad4(user_end) {
            return None;
        }
        if !self.secret.verify(ID_DOMAIN, &[signed], tag) {
            return None;
        }
        if signed.get(user_end..)?.iter().any(|&p| p != 0) {
            return None;
        }
        let not_after = u32::from_be_bytes(signed.get(12..16)?.try_into().ok()?);
        if u64::from(not_after) <= unix_now() {
            return None;
        }
        let user = match ulen {
            0 => None,
            _ => Some(String::from_utf8_lossy(signed.get(HEAD_LEN + 1..user_end)?).into_owned()),
        };
        let key: Key = signed.get(..12)?.try_into().ok()?;
        Some((key, user, not_after))
    }

    /// The store key (issuer and serial, hex) and lifetime end of a valid
    /// ID, for the shared store (`--state`).
    pub fn store_key(&self, id: &SessionId) -> Option<(String, u32)> {
        let (key, _, not_after) = self.check(id)?;
        Some((hex_key(&key), not_after))
    }

    /// Ends `member`'s session here (it was torn down on another instance).
    pub fn end(&self, member: &Member) {
        self.teardown(&member.id);
    }

    /// Ends the session `id` names, if it is valid.
    fn teardown(&self, id: &SessionId) {
        let Some((key, user, not_after)) = self.check(id) else {
            return;
        };
        let mut t = self.table();
        t.remove(&key);
        if key.get(..4) != Some(&self.issuer[..]) {
            Self::remember_ended(&mut t, key, not_after, self.limits.max_sessions);
        }
        tracing::debug!(user = user.as_deref().unwrap_or("-"), "session torn down");
    }

    /// Records that an adopted session ended. The list is capped at four
    /// times the session cap; when full, the entry closest to the end of
    /// its lifetime is forgotten (that ID could then be adopted again).
    fn remember_ended(t: &mut Table, key: Key, not_after: u32, cap: usize) {
        let cap = cap.saturating_mul(4).max(16);
        if t.ended.len() >= cap {
            let now = unix_now();
            t.ended.retain(|_, &mut na| u64::from(na) > now);
            if t.ended.len() >= cap
                && let Some(k) = t.ended.iter().min_by_key(|(_, na)| **na).map(|(k, _)| *k)
            {
                t.ended.remove(&k);
            }
        }
        t.ended.insert(key, not_after);
    }

    /// Ends idle and expired sessions; at most once per [`SWEEP_EVERY`],
    /// or [`FORCED_SWEEP_EVERY`] when `force`d by a full table.
    fn sweep(&self, t: &mut Table, now: Instant, force: bool) {
        let every = if force {
            FORCED_SWEEP_EVERY
        } else {
            SWEEP_EVERY
        };
        if now.duration_since(t.last_sweep) < every {
            return;
        }
        t.last_sweep = now;
        let unix = unix_now();
        let idle = self.limits.idle_timeout;
        let gone: Vec<Key> = t
            .live
            .iter()
            .filter(|(_, s)| {
                now.duration_since(s.last_used) >= idle || u64::from(s.not_after) <= unix
            })
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            let Some(s) = t.remove(&k) else {
                continue;
            };
            tracing::debug!(
                user = s.user.as_deref().unwrap_or("-"),
                requests = s.requests,
                "session expired"
            );
            if k.get(..4) != Some(&self.issuer[..]) && u64::from(s.not_after) > unix {
                Self::remember_ended(t, k, s.not_after, self.limits.max_sessions);
            }
        }
        t.ended.retain(|_, &mut na| u64::from(na) > unix);
    }

    /// The session options of the Authentication Reply for `member`'s
    /// request, after its idempotence options are handled: `Ok` for a
    /// successful reply, `Err` when the token is ineligible ("the
    /// Authentication Reply MUST indicate failure", digest §4.5).
    ///
    /// A new session gets its Session ID, a continuing one Session OK. An
    /// Idempotence Request gets a window if the session has none (at most
    /// `--token-window` tokens from a random base); the current window
    /// goes into every reply once it exists; an Expenditure is answered
    /// Accepted or Rejected.
    pub fn reply_options(
        &self,
        member: &Member,
        req: &Request,
    ) -> Result<Vec<SocksOption>, Vec<SocksOption>> {
        let mut opts = Vec::with_capacity(3);
        opts.push(if member.created {
            SocksOption::SessionId(member.id.clone())
        } else {
            SocksOption::SessionOk
        });
        let mut t = self.table();
        let Some(live) = t.live.get_mut(&member.key) else {
            // Torn down or expired by a concurrent request since admission:
            // the request still runs, without idempotence.
            return Ok(opts);
        };
        if let Some(size) = req.options.idempotence_request()
            && live.window.is_none()
            && size > 0
        {
            let mut base = [0u8; 4];
            if getrandom::fill(&mut base).is_ok() {
                let size = size.min(self.limits.max_window);
                live.window = Some(TokenWindow::new(u32::from_be_bytes(base), size));
            }
        }
        let spent = req
            .options
            .idempotence_expenditure()
            .map(|token| live.window.as_mut().is_some_and(|w| w.spend(token)));
        if let Some(w) = live.window.as_ref().and_then(TokenWindow::window) {
            opts.push(SocksOption::IdempotenceWindow(w));
        }
        match spent {
            Some(true) => opts.push(SocksOption::IdempotenceAccepted),
            Some(false) => {
                opts.push(SocksOption::IdempotenceRejected);
                return Err(opts);
            }
            None => {}
        }
        Ok(opts)
    }
}

impl Sessions {
    /// As [`Sessions::reply_options`], with the idempotence window kept in
    /// the shared `store` (`--state`) instead of this process. A store
    /// that fails rejects an Expenditure (fail closed) and grants no
    /// window; the request is otherwise served.
    pub async fn reply_options_shared(
        &self,
        member: &Member,
        req: &Request,
        store: &Store,
    ) -> Result<Vec<SocksOption>, Vec<SocksOption>> {
        let mut opts = Vec::with_capacity(3);
        opts.push(if member.created {
            SocksOption::SessionId(member.id.clone())
        } else {
            SocksOption::SessionOk
        });
        let grant = req
            .options
            .idempotence_request()
            .filter(|&size| size > 0)
            .and_then(|size| {
                let mut base = [0u8; 4];
                getrandom::fill(&mut base).ok()?;
                let size = size.clamp(1, self.limits.max_window.min(MAX_WINDOW_SIZE));
                Some((u32::from_be_bytes(base), size))
            });
        let spend = req.options.idempotence_expenditure();
        let key = hex_key(&member.key);
        let state = store
            .window(&key, member.not_after, grant, spend)
            .await
            .unwrap_or(WindowState {
                window: None,
                spent: spend.map(|_| false),
            });
        if let Some(w) = state.window.and_then(|(b, n)| Window::new(b, n).ok()) {
            opts.push(SocksOption::IdempotenceWindow(w));
        }
        match state.spent {
            Some(true) => opts.push(SocksOption::IdempotenceAccepted),
            Some(false) => {
                opts.push(SocksOption::IdempotenceRejected);
                return Err(opts);
            }
            None => {}
        }
        Ok(opts)
    }
}

/// Listeners kept open by SOCKS6 BINDs with Listen Backlog, by session and
/// advertised address. Entries are weak: the initial BIND connection owns
/// its listener, and further BINDs borrow it while they wait for a peer.
#[derive(Debug, Default)]
pub struct Backlogs {
    map: Mutex<BacklogMap>,
}

/// Session ID bytes and advertised address → the listener.
type BacklogMap = HashMap<(Vec<u8>, SocketAddr), Weak<TcpListener>>;

impl Backlogs {
    fn map(&self) -> std::sync::MutexGuard<'_, BacklogMap> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers `listener`, advertised at `addr`, to further BINDs of
    /// `session`.
    pub fn insert(&self, session: &SessionId, addr: SocketAddr, listener: &Arc<TcpListener>) {
        let key = (session.as_bytes().to_vec(), addr);
        let mut map = self.map();
        map.retain(|_, l| l.strong_count() > 0);
        map.insert(key, Arc::downgrade(listener));
    }

    /// Stops offering the listener of `session` at `addr`.
    pub fn remove(&self, session: &SessionId, addr: SocketAddr) {
        self.map().remove(&(session.as_bytes().to_vec(), addr));
    }

    /// The backlog listener of `session` at `addr`, if it is still open.
    pub fn find(&self, session: &SessionId, addr: SocketAddr) -> Option<Arc<TcpListener>> {
        self.map()
            .get(&(session.as_bytes().to_vec(), addr))
            .and_then(Weak::upgrade)
    }

    /// Open backlog listeners.
    pub fn len(&self) -> usize {
        self.map().values().filter(|l| l.strong_count() > 0).count()
    }

    /// Whether no backlog listener is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sixpath_protocol::Endpoint;
    use sixpath_protocol::socks6::{Command, Options};

    fn sessions(max: usize) -> Sessions {
        Sessions::new(
            Secret::from_bytes(&[9; 32]).expect("key"),
            SessionLimits {
                max_sessions: max,
                max_per_user: max,
                max_per_source: max,
                idle_timeout: Duration::from_secs(60),
                lifetime: Duration::from_secs(3600),
                max_window: 16,
            },
        )
    }

    /// 192.0.2.`n`.
    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn capped(total: usize, per_user: usize, per_source: usize) -> Sessions {
        Sessions::new(
            Secret::from_bytes(&[9; 32]).expect("key"),
            SessionLimits {
                max_sessions: total,
                max_per_user: per_user,
                max_per_source: per_source,
                idle_timeout: Duration::from_secs(60),
                lifetime: Duration::from_secs(3600),
                max_window: 16,
            },
        )
    }

    #[test]
    fn caps_sessions_per_user_and_per_source_and_frees_them_on_teardown() {
        let s = capped(100, 2, 3);
        let a = s.create(Some("alice"), ip(1)).expect("room").expect("id");
        s.create(Some("alice"), ip(2)).expect("room").expect("id");
        assert_eq!(
            s.create(Some("alice"), ip(3)).err(),
            Some(SessionCap::PerUser)
        );
        s.create(Some("bob"), ip(1)).expect("room").expect("id");
        s.create(None, ip(1)).expect("room").expect("id");
        assert_eq!(s.create(None, ip(1)).err(), Some(SessionCap::PerSource));
        assert_eq!(
            s.create(Some("carol"), ip(1)).err(),
            Some(SessionCap::PerSource)
        );
        // An IPv6 source is its /64.
        let v6 = |x: &str| x.parse::<IpAddr>().expect("ip");
        let six = capped(100, 100, 1);
        six.create(None, v6("2001:db8:1:2::1")).expect("room");
        assert_eq!(
            six.create(None, v6("2001:db8:1:2::99")).err(),
            Some(SessionCap::PerSource)
        );
        assert!(six.create(None, v6("2001:db8:1:3::1")).is_ok());
        // A teardown frees the user's and the source's place.
        let tear = request(&[SocksOption::SessionId(a.id), SocksOption::SessionTeardown]);
        assert!(matches!(s.admit(&tear, true, ip(9)), Admission::Fresh));
        assert!(s.create(Some("alice"), ip(3)).is_ok());
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn adopting_an_id_counts_against_the_caps() {
        let key = Secret::from_bytes(&[3; 32]).expect("key");
        let limits = |per_user| SessionLimits {
            max_sessions: 100,
            max_per_user: per_user,
            max_per_source: 100,
            idle_timeout: Duration::from_secs(60),
            lifetime: Duration::from_secs(60),
            max_window: 4,
        };
        let issuer = Sessions::new(key.clone(), limits(10));
        let adopter = Sessions::new(key, limits(1));
        let one = issuer.create(Some("u"), ip(1)).expect("room").expect("id");
        let two = issuer.create(Some("u"), ip(1)).expect("room").expect("id");
        let use_one = request(&[SocksOption::SessionId(one.id)]);
        let use_two = request(&[SocksOption::SessionId(two.id)]);
        assert!(matches!(
            adopter.admit(&use_one, true, ip(1)),
            Admission::Session(_)
        ));
        assert!(matches!(
            adopter.admit(&use_two, true, ip(1)),
            Admission::OverCap(SessionCap::PerUser)
        ));
        assert_eq!(adopter.len(), 1);
    }

    fn request(opts: &[SocksOption]) -> Request {
        let mut o = Options::new();
        for x in opts {
            o.push(x.clone()).expect("fits");
        }
        let mut r = Request::new(Command::NOOP, Endpoint::unspecified());
        r.options = o;
        r
    }

    #[test]
    fn window_accepts_each_token_once_and_slides() {
        let mut w = TokenWindow::new(0xffff_fffe, 4);
        assert!(w.spend(0xffff_fffe));
        assert!(!w.spend(0xffff_fffe), "replay");
        assert_eq!(w.base(), 0xffff_ffff, "slid past the spent base");
        assert!(w.spend(1));
        assert!(!w.spend(1));
        assert!(w.spend(0xffff_ffff));
        assert_eq!(w.base(), 0, "stops at the lowest unspent token");
        assert!(w.spend(0));
        assert_eq!(w.base(), 2, "and past the spent 1");
        assert!(!w.spend(0), "below the window after sliding");
        assert!(!w.spend(6), "above the window");
        assert!(w.spend(5));
    }

    #[test]
    fn window_high_token_shifts_to_the_middle() {
        let mut w = TokenWindow::new(100, 8);
        assert!(w.spend(107));
        assert_eq!(w.base(), 103);
        assert!(!w.spend(102), "forfeited");
        assert!(!w.spend(107));
        assert!(w.spend(103));
        assert_eq!(w.base(), 104);
    }

    #[test]
    fn window_memory_is_the_granted_size() {
        assert_eq!(TokenWindow::new(0, 1).bitmap_bytes(), 8);
        assert_eq!(TokenWindow::new(0, 1000).bitmap_bytes(), 128);
    }

    proptest! {
        #[test]
        fn window_never_accepts_a_token_twice(
            base in any::<u32>(),
            size in 1u32..200,
            offsets in proptest::collection::vec(0u32..400, 1..400),
        ) {
            let mut w = TokenWindow::new(base, size);
            let bytes = w.bitmap_bytes();
            let mut accepted = std::collections::HashSet::new();
            for off in offsets {
                let t = w.base().wrapping_add(off).wrapping_sub(50);
                if w.spend(t) {
                    prop_assert!(accepted.insert(t), "token {t} accepted twice");
                }
                prop_assert_eq!(w.bitmap_bytes(), bytes);
                prop_assert_eq!(w.window().map(|x| x.size()), Some(size));
            }
            // The base is never spent: it is always spendable.
            let b = w.base();
            if !accepted.contains(&b) {
                prop_assert!(w.spend(b));
            }
        }
    }

    #[test]
    fn window_stops_before_tokens_could_come_back() {
        let mut w = TokenWindow::new(0, 2);
        w.travel_left = 3;
        assert!(w.spend(0));
        assert!(w.spend(1));
        assert!(w.spend(2));
        assert_eq!(w.base(), 3);
        assert!(w.spend(3));
        assert!(!w.spend(3));
        assert_eq!(w.base(), 3, "no travel left");
        assert!(w.spend(4));
        assert!(!w.spend(5), "window exhausted");
    }

    #[test]
    fn ids_round_trip_and_resist_tampering() {
        let s = sessions(4);
        let m = s.create(Some("alice"), ip(1)).expect("room").expect("id");
        assert_eq!(m.id.as_bytes().len(), 40);
        let req = request(&[SocksOption::SessionId(m.id.clone())]);
        let Admission::Session(again) = s.admit(&req, true, ip(1)) else {
            panic!("valid ID refused");
        };
        assert_eq!(again.user.as_deref(), Some("alice"));
        for i in 0..m.id.as_bytes().len() {
            let mut b = m.id.as_bytes().to_vec();
            b[i] ^= 0x01;
            let req = request(&[SocksOption::SessionId(SessionId::new(b).expect("len"))]);
            assert!(
                matches!(s.admit(&req, true, ip(1)), Admission::Invalid),
                "bit flip at {i}"
            );
        }
    }

    #[test]
    fn anonymous_ids_are_refused_when_auth_is_required() {
        let s = sessions(4);
        let m = s.create(None, ip(1)).expect("room").expect("id");
        assert_eq!(m.id.as_bytes().len(), 36);
        let req = request(&[SocksOption::SessionId(m.id)]);
        assert!(matches!(s.admit(&req, true, ip(1)), Admission::Invalid));
        assert!(matches!(s.admit(&req, false, ip(1)), Admission::Session(_)));
    }

    #[test]
    fn adopted_session_stays_ended_after_teardown() {
        let key = Secret::from_bytes(&[3; 32]).expect("key");
        let limits = SessionLimits {
            max_sessions: 2,
            max_per_user: 2,
            max_per_source: 2,
            idle_timeout: Duration::from_secs(60),
            lifetime: Duration::from_secs(60),
            max_window: 4,
        };
        let a = Sessions::new(key.clone(), limits);
        let b = Sessions::new(key, limits);
        let m = a.create(Some("u"), ip(1)).expect("room").expect("id");
        let use_it = request(&[SocksOption::SessionId(m.id.clone())]);
        assert!(matches!(
            b.admit(&use_it, true, ip(1)),
            Admission::Session(_)
        ));
        let tear = request(&[SocksOption::SessionId(m.id), SocksOption::SessionTeardown]);
        assert!(matches!(b.admit(&tear, true, ip(1)), Admission::Fresh));
        assert!(matches!(b.admit(&use_it, true, ip(1)), Admission::Invalid));
        assert!(
            matches!(a.admit(&use_it, true, ip(1)), Admission::Session(_)),
            "a teardown is per process"
        );
    }

    #[tokio::test]
    async fn idle_sessions_end_and_free_their_place() {
        tokio::time::pause();
        let s = sessions(1);
        let m = s.create(None, ip(1)).expect("room").expect("id");
        assert_eq!(
            s.create(None, ip(1)).err(),
            Some(SessionCap::Total),
            "cap of one"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        let req = request(&[SocksOption::SessionId(m.id)]);
        assert!(matches!(s.admit(&req, false, ip(1)), Admission::Invalid));
        assert!(s.create(None, ip(1)).is_ok(), "the idle session made room");
        assert_eq!(s.len(), 1);
    }
}
