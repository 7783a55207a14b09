//! `--state redis://HOST:PORT/DB` (or `rediss://` over TLS): SOCKS6
//! idempotence windows kept in a
//! Redis or Valkey server that every instance of a fleet shares, so that a
//! token granted by one instance is spent on any instance, exactly once.
//!
//! A teardown is shared too: `sixpath:{HEX}:end` marks a session torn
//! down on any instance until its lifetime ends, and every instance checks
//! it before it serves a request in the session.
//!
//! `rediss://` verifies the store's certificate against `--state-ca` when
//! given, otherwise against the system's trust store; `--state-cert` and
//! `--state-key` present a client certificate. The handshake runs under
//! the same deadline as every operation, and a certificate that does not
//! verify is a store failure like any other (logged, tokens refused).
//!
//! Without `--state` nothing here runs: the windows live in each process
//! ([`crate::session`]), as they always did.
//!
//! # Keys and atomicity
//!
//! A session's window is two keys named after its issuer and serial (the
//! hash tag keeps them in one slot): `sixpath:{HEX}:w`, a hash with the
//! window's `base`, `size`, bitmap `slots` and remaining `travel`, and
//! `sixpath:{HEX}:b`, the spent-token bitmap (bit `token mod slots`). Both
//! expire when the session's lifetime ends. One Lua script
//! ([`WINDOW_SCRIPT`]) grants, spends and slides the window exactly as
//! [`crate::session::TokenWindow`] does, and Redis runs a script
//! atomically, so two instances spending the same token at once cannot
//! both succeed.
//!
//! # Failure
//!
//! Every operation has a deadline ([`DEADLINE`]); after a failure the
//! store is left alone for [`BACK_OFF`], so a hanging store delays one
//! request a second, not every one. A store that errors,
//! hangs or cannot be reached fails closed for tokens: an Expenditure is
//! answered Rejected (the client retries without the token, draft -11
//! §8.5), a window request is served without a window, and everything
//! else is served as usual. Errors are counted and logged at most once per
//! [`LOG_EVERY`]; the client reconnects by itself.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The most a store operation may take before it counts as failed.
pub const DEADLINE: Duration = Duration::from_millis(500);
/// Store failures are logged at most once per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// After a failure the store is not asked again for this long: requests
/// meanwhile fail at once (tokens refused) instead of each waiting out the
/// deadline.
pub const BACK_OFF: Duration = Duration::from_secs(1);

/// Grants (`ARGV[1]` > 0: size, with `ARGV[2]` base, `ARGV[3]` slots,
/// `ARGV[4]` travel) and spends (`ARGV[5]` ≥ 0: the token) in one step;
/// `ARGV[6]` is the session's end (Unix seconds) for the expiry. Answers
/// `{status, base, size}`: status -1 no window, 0 token rejected, 1 token
/// accepted, 2 no token spent.
pub const WINDOW_SCRIPT: &str = r"
local M = 4294967296
if tonumber(ARGV[1]) > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'base', ARGV[2], 'size', ARGV[1], 'slots', ARGV[3], 'travel', ARGV[4])
  redis.call('DEL', KEYS[2])
end
local w = redis.call('HMGET', KEYS[1], 'base', 'size', 'slots', 'travel')
if not w[1] then return {-1, 0, 0} end
local base, size, slots, travel = tonumber(w[1]), tonumber(w[2]), tonumber(w[3]), tonumber(w[4])
local token = tonumber(ARGV[5])
local status = 2
local function spent(t) return redis.call('GETBIT', KEYS[2], t % slots) == 1 end
local function advance(by)
  if by > travel then by = travel end
  if by <= 0 then return end
  if by >= size then
    redis.call('DEL', KEYS[2])
  else
    for i = 0, by - 1 do redis.call('SETBIT', KEYS[2], ((base + i) % M) % slots, 0) end
  end
  base = (base + by) % M
  travel = travel - by
end
if token >= 0 then
  local offset = (token - base) % M
  if offset >= size or spent(token) then
    status = 0
  else
    status = 1
    redis.call('SETBIT', KEYS[2], token % slots, 1)
    local half = math.floor(size / 2)
    if offset > half then advance(offset - half) end
    local run = 0
    while run < size and spent((base + run) % M) do run = run + 1 end
    advance(run)
    redis.call('HSET', KEYS[1], 'base', base, 'travel', travel)
  end
end
redis.call('EXPIREAT', KEYS[1], ARGV[6])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIREAT', KEYS[2], ARGV[6]) end
return {status, base, size}
";

/// TLS material for a `rediss://` store, as PEM bytes (already checked
/// by the caller that read the files).
#[derive(Clone, Default)]
pub struct StoreTls {
    /// Trust anchors (`--state-ca`); `None`: the system's trust store.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and key (`--state-cert`, `--state-key`).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for StoreTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTls")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

impl StoreTls {
    /// Whether anything is set (then the URL must be `rediss://`).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// What the store answered for one request's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// The window after the request, if the session has one.
    pub window: Option<(u32, u32)>,
    /// For an Expenditure: whether the token was accepted.
    pub spent: Option<bool>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store answered with an error, or the connection failed.
    #[error("state store: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within [`DEADLINE`].
    #[error("state store: no answer within {DEADLINE:?}")]
    Timeout,
    /// Failed within the last [`BACK_OFF`]; not asked.
    #[error("state store: failing, not asked for a moment")]
    BackingOff,
    /// An answer of the wrong shape.
    #[error("state store: unexpected answer {0:?}")]
    Answer(Vec<i64>),
}

/// Latency buckets of the store histogram, seconds.
const BUCKETS: [f64; 10] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

/// Counters behind `/metrics` for the store.
#[derive(Debug, Default)]
struct Metrics {
    /// Operations at most each bucket's bound (cumulative at render).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
}

/// The shared store (`--state`).
#[derive(Debug)]
pub struct Store {
    client: redis::Client,
    url: String,
    /// The live connection; made on first use and again after it fails.
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    metrics: Metrics,
    last_log: Mutex<Option<Instant>>,
    /// Until when the store is not asked, after a failure.
    quiet_until: Mutex<Option<Instant>>,
}

impl Store {
    /// A store at `url` (`redis://[:PASSWORD@]HOST:PORT/DB`,
    /// `rediss://…` over TLS with `tls`, `redis+unix:///PATH`); nothing is
    /// connected until first use.
    pub fn open(url: &str, tls: &StoreTls) -> Result<Self, String> {
        let client = if tls.is_set() {
            if !url.starts_with("rediss://") {
                return Err("a CA or client certificate needs a rediss:// URL".into());
            }
            let certs = redis::TlsCertificates {
                root_cert: tls.ca.clone(),
                client_tls: tls
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
            };
            redis::Client::build_with_tls(url, certs)
        } else {
            redis::Client::open(url)
        }
        .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: redact(url),
            conn: tokio::sync::Mutex::new(None),
            script: redis::Script::new(WINDOW_SCRIPT),
            metrics: Metrics::default(),
            last_log: Mutex::new(None),
            quiet_until: Mutex::new(None),
        })
    }

    /// The URL without its password, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Records that the session `key` was torn down, until its lifetime
    /// ends (`not_after`), for every instance to see.
    pub async fn end_session(&self, key: &str, not_after: u32) -> Result<(), StoreError> {
        self.timed(async {
            let mut conn = self.connection().await?;
            let r: Result<(), redis::RedisError> = redis::cmd("SET")
                .arg(format!("sixpath:{{{key}}}:end"))
                .arg(1)
                .arg("EXAT")
                .arg(not_after)
                .query_async(&mut conn)
                .await;
            self.checked(r)
        })
        .await
    }

    /// Whether the session `key` was torn down on any instance.
    pub async fn session_ended(&self, key: &str) -> Result<bool, StoreError> {
        self.timed(async {
            let mut conn = self.connection().await?;
            let r: Result<bool, redis::RedisError> = redis::cmd("EXISTS")
                .arg(format!("sixpath:{{{key}}}:end"))
                .query_async(&mut conn)
                .await;
            self.checked(r)
        })
        .await
    }

    /// Runs `op` under [`DEADLINE`] and records its latency and failure.
    async fn timed<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        {
            let mut quiet = self
                .quiet_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *quiet {
                Some(t) if started < t => return Err(StoreError::BackingOff),
                Some(_) => *quiet = None,
                None => {}
            }
        }
        let result = match tokio::time::timeout(DEADLINE, op).await {
            // The client's own connection or response timeout, which can
            // end first, is the same failure.
            Ok(Err(StoreError::Redis(e))) if e.is_timeout() => Err(StoreError::Timeout),
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        if result.is_err() {
            *self
                .quiet_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + BACK_OFF);
        }
        self.record(started.elapsed(), result.as_ref().err());
        result
    }

    /// Passes `r` on; a broken connection is dropped so that the next
    /// operation makes a new one.
    fn checked<T>(&self, r: Result<T, redis::RedisError>) -> Result<T, StoreError> {
        r.map_err(|e| {
            if (e.is_unrecoverable_error() || e.is_connection_dropped())
                && let Ok(mut slot) = self.conn.try_lock()
            {
                *slot = None;
            }
            StoreError::from(e)
        })
    }

    /// Grants a window of `grant` tokens (if the session has none) and
    /// spends `spend`, for the session `key` ending at `not_after`.
    pub async fn window(
        &self,
        key: &str,
        not_after: u32,
        grant: Option<(u32, u32)>,
        spend: Option<u32>,
    ) -> Result<WindowState, StoreError> {
        self.timed(self.run_window(key, not_after, grant, spend))
            .await
    }

    async fn run_window(
        &self,
        key: &str,
        not_after: u32,
        grant: Option<(u32, u32)>,
        spend: Option<u32>,
    ) -> Result<WindowState, StoreError> {
        let mut conn = self.connection().await?;
        let (base, size) = grant.unwrap_or((0, 0));
        let slots = size.next_power_of_two().max(64);
        let travel = (1u64 << 32) - u64::from(size);
        let answer: Result<Vec<i64>, redis::RedisError> = self
            .script
            .key(format!("sixpath:{{{key}}}:w"))
            .key(format!("sixpath:{{{key}}}:b"))
            .arg(size)
            .arg(base)
            .arg(slots)
            .arg(travel)
            .arg(spend.map_or(-1, i64::from))
            .arg(not_after)
            .invoke_async(&mut conn)
            .await;
        let answer = self.checked(answer)?;
        let [status, base, size] = answer[..] else {
            return Err(StoreError::Answer(answer));
        };
        let window = (status >= 0)
            .then(|| Some((u32::try_from(base).ok()?, u32::try_from(size).ok()?)))
            .flatten();
        let spent = match status {
            0 => Some(false),
            1 => Some(true),
            _ => spend.map(|_| false),
        };
        Ok(WindowState { window, spent })
    }

    /// The connection, made now if there is none (the caller's deadline
    /// bounds the attempt).
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // No retry inside the attempt: a refused connection or a
        // certificate that does not verify fails now, with its own error
        // in the log rather than a timeout; the next request after
        // [`BACK_OFF`] tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEADLINE))
            .set_response_timeout(Some(DEADLINE))
            .set_number_of_retries(0);
        let c = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn record(&self, took: Duration, error: Option<&StoreError>) {
        let m = &self.metrics;
        let secs = took.as_secs_f64();
        for (b, bound) in m.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        m.count.fetch_add(1, Ordering::Relaxed);
        m.sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let Some(e) = error else { return };
        if matches!(e, StoreError::Timeout) {
            m.timeouts.fetch_add(1, Ordering::Relaxed);
        } else {
            m.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                store = %self.url,
                error = %e,
                "state store failing: idempotence tokens are refused until it answers"
            );
        }
    }

    /// The store's lines of the `/metrics` page.
    pub fn prometheus(&self) -> String {
        let m = &self.metrics;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP sixpath_server_state_operation_seconds Latency of state store operations (--state), failures included."
        );
        let _ = writeln!(s, "# TYPE sixpath_server_state_operation_seconds histogram");
        for (b, bound) in m.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                s,
                "sixpath_server_state_operation_seconds_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = m.count.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "sixpath_server_state_operation_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        #[allow(clippy::cast_precision_loss)]
        let sum = m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "sixpath_server_state_operation_seconds_sum {sum}");
        let _ = writeln!(s, "sixpath_server_state_operation_seconds_count {count}");
        let _ = writeln!(
            s,
            "# HELP sixpath_server_state_errors_total State store operations that failed: an error answer or a lost connection (error), or no answer within the deadline (timeout)."
        );
        let _ = writeln!(s, "# TYPE sixpath_server_state_errors_total counter");
        let _ = writeln!(
            s,
            "sixpath_server_state_errors_total{{kind=\"error\"}} {}",
            m.errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "sixpath_server_state_errors_total{{kind=\"timeout\"}} {}",
            m.timeouts.load(Ordering::Relaxed)
        );
        s
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_open_without_connecting_and_malformed_ones_fail() {
        let none = StoreTls::default();
        assert!(Store::open("redis://127.0.0.1:1/0", &none).is_ok());
        assert!(Store::open("redis://:pw@127.0.0.1:6379/2", &none).is_ok());
        assert!(Store::open("rediss://:pw@127.0.0.1:6379/2", &none).is_ok());
        assert!(Store::open("http://127.0.0.1/", &none).is_err());
        assert!(Store::open("redis://", &none).is_err());
        assert!(Store::open("not a url", &none).is_err());
    }

    #[test]
    fn a_ca_needs_a_tls_url() {
        let ca = rcgen::generate_simple_self_signed(vec!["store".into()]).unwrap();
        let tls = StoreTls {
            ca: Some(ca.cert.pem().into_bytes()),
            client: None,
        };
        assert!(Store::open("rediss://127.0.0.1:6379/0", &tls).is_ok());
        let e = Store::open("redis://127.0.0.1:6379/0", &tls).unwrap_err();
        assert!(e.contains("rediss://"), "{e}");
    }

    #[test]
    fn passwords_are_kept_out_of_logs() {
        assert_eq!(
            redact("redis://:secret@10.0.0.5:6379/1"),
            "redis://:***@10.0.0.5:6379/1"
        );
        assert_eq!(redact("redis://app:secret@h:1/0"), "redis://app:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
