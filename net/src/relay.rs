//! The relay: copies bytes both ways between a client and its target.
//!
//! Both directions run concurrently in one task. EOF on one side shuts down
//! the write half of the other side while the other direction keeps
//! flowing (half-close, as the shadowsocks-rust maintainers warn: a hard
//! timeout after the first FIN loses data). Only an idle timeout — no byte
//! in either direction for `idle_timeout` — or an error ends the relay
//! early. Byte counts come back for the connection's log line.
//!
//! An abnormal end is passed on as one ([`pass_on_end`]): when one side
//! fails (a reset, or any other read or write error) the other side's
//! connection is reset too, after the bytes already written to it have
//! been acknowledged (at most [`DELIVERY_BEFORE_RESET`]), so a truncated
//! transfer never looks like a complete one (a FIN) to the peer that is
//! still there. At the end of the shutdown drain ([`Cutoff`]) both sides
//! are reset at once.
//!
//! When both sides are plain [`tokio::net::TcpStream`]s on Linux the bytes
//! never enter user space: each direction moves them socket → pipe → socket
//! with `splice(2)` (module `splice`). Every other stream type (TLS, test
//! pipes) takes the buffered copy. [`RelayStats::path`] says which one ran;
//! [`RelayMode::Copy`] (or `SIXPATH_RELAY=copy` in the environment) forces
//! the copy, for comparison.
//!
//! Every idle relayed connection holds its relay's future for its whole
//! life, so the steps of the relay are plain functions returning `async`
//! blocks rather than `async fn`s: an `async fn` keeps each argument twice
//! in its state (as captured, and as moved into its body), a block uses
//! what it captured in place.
#![allow(clippy::manual_async_fn)]

use std::io;
use std::pin::{Pin, pin};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::framed::Reset;

#[cfg(target_os = "linux")]
mod splice;

/// Which relay implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// `splice(2)` when both sides are plain TCP streams on Linux, the
    /// buffered copy otherwise.
    #[default]
    Auto,
    /// Always the buffered copy.
    Copy,
}

impl RelayMode {
    /// The mode named by the `SIXPATH_RELAY` environment variable, read once
    /// per process: `copy` forces the buffered copy; `auto`, `splice`, unset
    /// or anything else means [`RelayMode::Auto`].
    pub fn from_env() -> Self {
        static MODE: OnceLock<RelayMode> = OnceLock::new();
        *MODE.get_or_init(|| match std::env::var("SIXPATH_RELAY").as_deref() {
            Ok("copy") => Self::Copy,
            _ => Self::Auto,
        })
    }
}

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Close after this long without a byte in either direction.
    pub idle_timeout: Duration,
    /// Buffer size per direction of the buffered copy.
    pub buffer_size: usize,
    /// `splice(2)` or the buffered copy; the default comes from
    /// [`RelayMode::from_env`].
    pub mode: RelayMode,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            buffer_size: 16 * 1024,
            mode: RelayMode::from_env(),
        }
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed their sending direction.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// Reading from or writing to the client failed (e.g. reset).
    ClientError,
    /// Reading from or writing to the target failed (e.g. reset).
    TargetError,
    /// The shutdown drain ended ([`Cutoff`]) with the connection open.
    Drained,
}

/// The end of the shutdown drain: relays still running when it is
/// [`cut`](Cutoff::cut) end at once with [`RelayEnd::Drained`], and both
/// of their connections are reset rather than closed with a FIN (the
/// transfer was cut short).
///
/// A flag and a [`Notify`] rather than a `watch` channel: every relay
/// holds its wait on the cut-off for its whole life, and a `Notified` is
/// less than half the size of a `watch` receiver's wait.
#[derive(Debug, Default)]
pub struct Cutoff {
    cut: AtomicBool,
    notify: Notify,
}

impl Cutoff {
    /// Not cut yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends every relay waiting on [`Cutoff::reached`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Completes once [`Cutoff::cut`] is called (at once if it was).
    pub fn reached(&self) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let mut notified = pin!(self.notify.notified());
            // Registered before the flag is read: a cut in between still
            // wakes this wait (`notify_waiters` wakes enabled waiters).
            notified.as_mut().enable();
            if !self.cut.load(Ordering::SeqCst) {
                notified.await;
            }
        }
    }
}

/// The longest an abnormal end waits for the bytes already written to the
/// surviving side to be acknowledged before resetting it.
pub const DELIVERY_BEFORE_RESET: Duration = Duration::from_secs(5);

/// How often the wait before a reset looks at the send queue.
const DELIVERY_POLL: Duration = Duration::from_millis(5);

/// Flushes `s`, waits until the peer has acknowledged every byte written
/// (at most [`DELIVERY_BEFORE_RESET`], or until `cutoff`), then makes its
/// close a reset. The caller drops `s` afterwards.
pub async fn reset_when_delivered<S>(s: &mut S, cutoff: &Cutoff)
where
    S: AsyncWrite + Reset + Unpin + ?Sized,
{
    let deliver = async {
        if s.flush().await.is_err() {
            return;
        }
        while s.unacknowledged().is_ok_and(|n| n > 0) {
            tokio::time::sleep(DELIVERY_POLL).await;
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(DELIVERY_BEFORE_RESET, deliver) => {}
        () = cutoff.reached() => {}
    }
    let _ = s.reset_on_close();
}

/// Passes an abnormal end of a relay on to the sides that are still there:
/// a failed target resets the client's connection, a failed client the
/// target's (each after [`reset_when_delivered`]); at the drain's
/// [`Cutoff`] both are reset at once. A normal end changes nothing: the
/// relay has already passed each FIN on. The caller drops both streams
/// afterwards.
pub async fn pass_on_end<C, T>(end: RelayEnd, client: &mut C, target: &mut T, cutoff: &Cutoff)
where
    C: AsyncWrite + Reset + Unpin + ?Sized,
    T: AsyncWrite + Reset + Unpin + ?Sized,
{
    match end {
        RelayEnd::Closed | RelayEnd::Idle => {}
        RelayEnd::TargetError => reset_when_delivered(client, cutoff).await,
        RelayEnd::ClientError => reset_when_delivered(target, cutoff).await,
        RelayEnd::Drained => {
            let _ = client.reset_on_close();
            let _ = target.reset_on_close();
        }
    }
}

/// Which implementation moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPath {
    /// `splice(2)` through a pipe moved bytes (a direction switches to it
    /// on its first read that fills a whole buffer; shorter transfers use
    /// read/write).
    Splice,
    /// Read/write through a buffer only: other stream types, transfers too
    /// short to switch, [`RelayMode::Copy`], or a kernel that refused
    /// `splice` for one of the sockets.
    Copy,
}

impl RelayPath {
    /// The name used in log lines: `splice` or `copy`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Splice => "splice",
            Self::Copy => "copy",
        }
    }
}

/// What a relay moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes from the client to the target.
    pub client_to_target: u64,
    /// Bytes from the target to the client.
    pub target_to_client: u64,
    /// Why it ended.
    pub end: RelayEnd,
    /// Which implementation ran.
    pub path: RelayPath,
}

/// Which side of a direction failed.
enum Side {
    Read,
    Write,
}

/// Progress shared by both directions of one relay: byte counts and the
/// time of the last transfer (milliseconds since `epoch`).
struct Meter {
    up: AtomicU64,
    down: AtomicU64,
    activity: AtomicU64,
    epoch: Instant,
}

impl Meter {
    fn new() -> Self {
        Self {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn moved(&self, count: &AtomicU64, n: usize) {
        count.fetch_add(n as u64, Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }

    /// Completes when nothing has moved for `timeout`.
    fn idle(&self, timeout: Duration) -> impl Future<Output = RelayEnd> + '_ {
        async move {
            loop {
                let last = Duration::from_millis(self.activity.load(Ordering::Relaxed));
                let deadline = last + timeout;
                match deadline.checked_sub(self.epoch.elapsed()) {
                    Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                    _ => return RelayEnd::Idle,
                }
            }
        }
    }
}

/// Runs both directions, the idle timer and the drain's cut-off; the first
/// error, the idle timeout or the cut-off ends the relay. An error in one
/// direction ends the relay: the other direction is dropped and the caller
/// passes the end on ([`pass_on_end`]).
///
/// The directions are pinned in the caller's frame and borrowed here: an
/// `async fn` that took them by value would keep a second copy of each in
/// its state, and every idle connection pays for its relay's state. For
/// the same reason this (like the other steps of the relay) is a plain
/// function returning an `async` block: an `async fn` keeps its arguments
/// twice, as captured and as moved into its body.
fn drive<'a, U, D>(
    meter: &'a Meter,
    upstream: Pin<&'a mut U>,
    downstream: Pin<&'a mut D>,
    idle_timeout: Duration,
    cutoff: &'a Cutoff,
) -> impl Future<Output = RelayEnd> + 'a
where
    U: Future<Output = Result<(), (Side, io::Error)>>,
    D: Future<Output = Result<(), (Side, io::Error)>>,
{
    async move {
        let both = async {
            // try_join: the first error ends both directions at once.
            let r = tokio::try_join!(
                async {
                    upstream.await.map_err(|(side, _)| match side {
                        Side::Read => RelayEnd::ClientError,
                        Side::Write => RelayEnd::TargetError,
                    })
                },
                async {
                    downstream.await.map_err(|(side, _)| match side {
                        Side::Read => RelayEnd::TargetError,
                        Side::Write => RelayEnd::ClientError,
                    })
                }
            );
            r.err().unwrap_or(RelayEnd::Closed)
        };
        tokio::select! {
            end = both => end,
            end = meter.idle(idle_timeout) => end,
            () = cutoff.reached() => RelayEnd::Drained,
        }
    }
}

/// Copy buffers shared by the connections of a thread. A direction takes
/// one only while bytes are in hand (from a read until they are written)
/// and gives it back after: an idle connection holds no buffer, and a busy
/// thread reuses a few instead of every connection keeping two.
mod pool {
    use std::cell::RefCell;

    /// Buffers kept per thread for reuse; more are freed when given back.
    const KEEP: usize = 64;

    thread_local! {
        static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `size` bytes, reused when the thread has one.
    pub(super) fn take(size: usize) -> Box<[u8]> {
        FREE.with(|f| {
            let mut free = f.borrow_mut();
            match free.iter().rposition(|b| b.len() == size) {
                Some(i) => free.swap_remove(i),
                None => vec![0u8; size].into_boxed_slice(),
            }
        })
    }

    /// How many buffers this thread keeps.
    #[cfg(test)]
    pub(super) fn kept() -> usize {
        FREE.with(|f| f.borrow().len())
    }

    /// Gives `buf` back for reuse.
    pub(super) fn give(buf: Box<[u8]>) {
        FREE.with(|f| {
            let mut free = f.borrow_mut();
            if free.len() < KEEP {
                free.push(buf);
            }
        });
    }
}

/// Reads into a pooled buffer of `size` bytes: the buffer and the count,
/// with the buffer back in the pool while nothing is readable.
fn read_pooled<R>(r: &mut R, size: usize) -> impl Future<Output = io::Result<(Box<[u8]>, usize)>>
where
    R: AsyncRead + Unpin,
{
    std::future::poll_fn(move |cx| {
        let mut buf = pool::take(size);
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut *r).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                Poll::Ready(Ok((buf, n)))
            }
            Poll::Ready(Err(e)) => {
                pool::give(buf);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                pool::give(buf);
                Poll::Pending
            }
        }
    })
}

/// Copies until EOF, then shuts down `w`, counting into `count`. Holds a
/// buffer only from a read until its bytes are written.
fn pump<'a, R, W>(
    mut r: R,
    mut w: W,
    size: usize,
    meter: &'a Meter,
    count: &'a AtomicU64,
) -> impl Future<Output = Result<(), (Side, io::Error)>> + 'a
where
    R: AsyncRead + Unpin + 'a,
    W: AsyncWrite + Unpin + 'a,
{
    let size = size.max(1);
    async move {
        loop {
            let (buf, n) = read_pooled(&mut r, size)
                .await
                .map_err(|e| (Side::Read, e))?;
            if n == 0 {
                pool::give(buf);
                // Half-close: the peer sees FIN, our other direction
                // continues. A peer that is already gone cannot be told;
                // that is not an error of this direction.
                let _ = w.shutdown().await;
                return Ok(());
            }
            let written = w.write_all(buf.get(..n).unwrap_or_default()).await;
            pool::give(buf);
            written.map_err(|e| (Side::Write, e))?;
            meter.moved(count, n);
        }
    }
}

/// Relays between `client` and `target` until both directions are closed,
/// the connection is idle for `opts.idle_timeout`, one side fails, or the
/// drain is `cutoff`; then passes an abnormal end on as a reset
/// ([`pass_on_end`]) and closes both.
///
/// Two plain [`tokio::net::TcpStream`]s are relayed with `splice(2)` on Linux unless
/// `opts.mode` is [`RelayMode::Copy`]; anything else is copied through a
/// buffer of `opts.buffer_size` per direction.
pub fn relay<C, T>(
    mut client: C,
    mut target: T,
    opts: RelayOptions,
    cutoff: &Cutoff,
) -> impl Future<Output = RelayStats> + '_
where
    C: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
    T: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    async move { relay_borrowed(&mut client, &mut target, opts, cutoff).await }
}

/// [`relay`] on borrowed streams, so the caller can still inspect them
/// afterwards (for example the MPTCP subflow count at the end).
pub fn relay_borrowed<'a, C, T>(
    client: &'a mut C,
    target: &'a mut T,
    opts: RelayOptions,
    cutoff: &'a Cutoff,
) -> impl Future<Output = RelayStats> + 'a
where
    C: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
    T: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    async move {
        let stats = relay_only(client, target, opts, cutoff).await;
        pass_on_end(stats.end, client, target, cutoff).await;
        stats
    }
}

/// The relay itself, without passing its end on.
fn relay_only<'a, C, T>(
    client: &'a mut C,
    target: &'a mut T,
    opts: RelayOptions,
    cutoff: &'a Cutoff,
) -> impl Future<Output = RelayStats> + 'a
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    async move {
        #[cfg(target_os = "linux")]
        if opts.mode == RelayMode::Auto {
            use std::any::Any;
            use tokio::net::TcpStream;
            let c = (&*client as &dyn Any).downcast_ref::<TcpStream>();
            let t = (&*target as &dyn Any).downcast_ref::<TcpStream>();
            if let (Some(c), Some(t)) = (c, t) {
                return splice::relay(c, t, opts, cutoff, &|_| {}).await;
            }
        }
        relay_copy(client, target, opts, cutoff).await
    }
}

/// One way through a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the target.
    Up,
    /// From the target to the client.
    Down,
}

/// What [`relay_splice`] tells its observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A direction moved bytes (one read or pipe-full written).
    Moved,
    /// A direction reached EOF; its FIN is passed on right after.
    Eof(Direction),
}

/// The `splice(2)` relay of two plain TCP streams (Linux), whatever
/// `opts.mode` says, telling `observe` of every transfer and of each
/// direction's EOF just before its FIN is passed on (the last moment the
/// connection is sure to be whole): a caller that samples socket
/// statistics does so on the relay's own progress, with no timer for an
/// idle connection. The streams are only borrowed shared, so `observe` may
/// look at them. It does not pass the end on: the caller calls
/// [`pass_on_end`] with the returned [`RelayStats::end`].
#[cfg(target_os = "linux")]
pub fn relay_splice<'a>(
    client: &'a tokio::net::TcpStream,
    target: &'a tokio::net::TcpStream,
    opts: RelayOptions,
    cutoff: &'a Cutoff,
    observe: &'a (dyn Fn(Progress) + Sync),
) -> impl Future<Output = RelayStats> + 'a {
    splice::relay(client, target, opts, cutoff, observe)
}

/// The buffered copy, whatever the stream types (no `'static` bound: for
/// wrapped or borrowed streams, which never take the `splice(2)` path).
/// It does not pass the end on: a caller with borrowed streams calls
/// [`pass_on_end`] with the returned [`RelayStats::end`].
pub fn relay_copy<C, T>(
    client: C,
    target: T,
    opts: RelayOptions,
    cutoff: &Cutoff,
) -> impl Future<Output = RelayStats>
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (tr, tw) = tokio::io::split(target);
    let (size, idle_timeout) = (opts.buffer_size, opts.idle_timeout);
    async move {
        let meter = Meter::new();
        let upstream = pin!(pump(cr, tw, size, &meter, &meter.up));
        let downstream = pin!(pump(tr, cw, size, &meter, &meter.down));
        let end = drive(&meter, upstream, downstream, idle_timeout, cutoff).await;
        RelayStats {
            client_to_target: meter.up.load(Ordering::Relaxed),
            target_to_client: meter.down.load(Ordering::Relaxed),
            end,
            path: RelayPath::Copy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::io::duplex;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    /// In-memory pipes have no reset: closing them is all there is.
    impl Reset for tokio::io::DuplexStream {
        fn reset_on_close(&self) -> io::Result<()> {
            Ok(())
        }

        fn unacknowledged(&self) -> io::Result<usize> {
            Ok(0)
        }
    }

    /// Runs [`relay`] in a task of its own, with a drain that never ends.
    fn spawn_relay<C, T>(client: C, target: T, opts: RelayOptions) -> JoinHandle<RelayStats>
    where
        C: AsyncRead + AsyncWrite + Reset + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Reset + Unpin + Send + 'static,
    {
        tokio::spawn(async move { relay(client, target, opts, &Cutoff::new()).await })
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_flowing() {
        let (client, mut app) = duplex(1024);
        let (target, mut origin) = duplex(1024);
        let task = spawn_relay(client, target, RelayOptions::default());

        app.write_all(b"request").await.expect("write");
        app.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        origin.read_to_end(&mut got).await.expect("origin sees EOF");
        assert_eq!(got, b"request");

        // The client has half-closed; the response must still arrive.
        answer_after_fin(&mut app, &mut origin).await;

        let stats = task.await.expect("relay");
        assert_eq!(stats.client_to_target, 7);
        assert_eq!(stats.target_to_client, 18);
        assert_eq!(stats.end, RelayEnd::Closed);
        assert_eq!(
            stats.path,
            RelayPath::Copy,
            "in-memory streams cannot splice"
        );
    }

    /// Every idle relayed connection holds its relay's future: both
    /// directions borrowed by `drive`, no buffer inside it, no waiter
    /// futures for readiness, no argument kept twice (1,128 bytes in a
    /// test build when this was written).
    #[tokio::test]
    async fn relay_state_of_two_tcp_streams_stays_under_1280_bytes() {
        fn size<F>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let (a, b) = tcp_pair().await;
        let (c, d) = tcp_pair().await;
        let cutoff = Cutoff::new();
        let relay_future = relay(a, c, RelayOptions::default(), &cutoff);
        assert!(size(&relay_future) < 1280, "{} bytes", size(&relay_future));
        let copy_future = relay_copy(b, d, RelayOptions::default(), &cutoff);
        assert!(size(&copy_future) < 1024, "{} bytes", size(&copy_future));
    }

    #[tokio::test]
    async fn copy_buffers_return_to_the_pool_after_each_transfer() {
        let (client, mut app) = duplex(1024);
        let (target, mut origin) = duplex(1024);
        assert_eq!(pool::kept(), 0);
        let task = spawn_relay(client, target, RelayOptions::default());
        app.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        origin.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        drop((app, origin));
        task.await.expect("relay");
        // The relay ran on this thread (current-thread runtime): the buffer
        // that carried "ping" is back, and the next take reuses it.
        assert_eq!(pool::kept(), 1);
        let b = pool::take(RelayOptions::default().buffer_size);
        assert_eq!(pool::kept(), 0);
        pool::give(b);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_ends_after_idle_timeout() {
        let (client, _app) = duplex(64);
        let (target, _origin) = duplex(64);
        let opts = RelayOptions {
            idle_timeout: Duration::from_secs(30),
            ..RelayOptions::default()
        };
        let stats = relay(client, target, opts, &Cutoff::new()).await;
        assert_eq!(stats.end, RelayEnd::Idle);
    }

    // The same behaviour over real loopback TCP, once through splice(2) and
    // once through the buffered copy.

    /// The origin answers after the application's FIN; the answer must
    /// reach the application, then EOF.
    async fn answer_after_fin<A, O>(app: &mut A, origin: &mut O)
    where
        A: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        origin
            .write_all(b"response after FIN")
            .await
            .expect("write");
        origin.shutdown().await.expect("shutdown");
        let mut resp = Vec::new();
        app.read_to_end(&mut resp).await.expect("read");
        assert_eq!(resp, b"response after FIN");
    }

    /// Bytes each way, how the relay ended and which path ran.
    fn outcome(stats: &RelayStats) -> (u64, u64, RelayEnd, RelayPath) {
        (
            stats.client_to_target,
            stats.target_to_client,
            stats.end,
            stats.path,
        )
    }

    /// A connected loopback pair.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// app ⇄ [client | relay | target] ⇄ origin.
    struct Rig {
        app: TcpStream,
        origin: TcpStream,
        task: JoinHandle<RelayStats>,
    }

    async fn rig(mode: RelayMode, idle_timeout: Duration) -> Rig {
        let (app, client) = tcp_pair().await;
        let (target, origin) = tcp_pair().await;
        let opts = RelayOptions {
            idle_timeout,
            mode,
            ..RelayOptions::default()
        };
        let task = spawn_relay(client, target, opts);
        Rig { app, origin, task }
    }

    const LONG: Duration = Duration::from_secs(120);

    async fn half_close_from_client(mode: RelayMode, path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        app.write_all(b"request").await.expect("write");
        app.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        origin.read_to_end(&mut got).await.expect("origin sees EOF");
        assert_eq!(got, b"request");
        answer_after_fin(&mut app, &mut origin).await;
        let stats = task.await.expect("relay");
        assert_eq!(outcome(&stats), (7, 18, RelayEnd::Closed, path));
    }

    async fn half_close_from_target(mode: RelayMode, path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        origin.write_all(b"banner").await.expect("write");
        origin.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        app.read_to_end(&mut got).await.expect("app sees EOF");
        assert_eq!(got, b"banner");
        app.write_all(b"request after FIN").await.expect("write");
        app.shutdown().await.expect("shutdown");
        let mut req = Vec::new();
        origin.read_to_end(&mut req).await.expect("read");
        assert_eq!(req, b"request after FIN");
        let stats = task.await.expect("relay");
        assert_eq!(outcome(&stats), (17, 6, RelayEnd::Closed, path));
    }

    /// A deterministic byte stream (xorshift64), so the receiver can check
    /// every byte without keeping a copy.
    struct Stream(u64);

    impl Stream {
        fn fill(&mut self, buf: &mut [u8]) {
            for chunk in buf.chunks_mut(8) {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                let bytes = self.0.to_le_bytes();
                chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or_default());
            }
        }
    }

    const BIG: usize = 64 << 20;
    const CHUNK: usize = 64 << 10;

    async fn send(mut w: tokio::net::tcp::OwnedWriteHalf, seed: u64) {
        let mut g = Stream(seed);
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..BIG / CHUNK {
            g.fill(&mut buf);
            w.write_all(&buf).await.expect("send");
        }
        w.shutdown().await.expect("shutdown");
    }

    /// Reads to EOF; returns how many bytes matched the stream before the
    /// first difference (all of them when the transfer is byte-identical).
    async fn receive(mut r: tokio::net::tcp::OwnedReadHalf, seed: u64) -> usize {
        let mut g = Stream(seed);
        let mut want = vec![0u8; CHUNK];
        let mut got = vec![0u8; CHUNK];
        let mut total = 0;
        loop {
            // Read exactly one generator chunk (or what is left before EOF).
            let mut have = 0;
            while have < CHUNK {
                let n = r.read(&mut got[have..]).await.expect("receive");
                if n == 0 {
                    break;
                }
                have += n;
            }
            if have == 0 {
                return total;
            }
            g.fill(&mut want);
            if got[..have] != want[..have] {
                return total;
            }
            total += have;
        }
    }

    async fn large_transfer_both_ways(mode: RelayMode, path: RelayPath) {
        let Rig { app, origin, task } = rig(mode, LONG).await;
        let (app_r, app_w) = app.into_split();
        let (origin_r, origin_w) = origin.into_split();
        let ((), (), up, down) = tokio::join!(
            send(app_w, 0x5158_5e55_0000_0001),
            send(origin_w, 0x5158_5e55_0000_0002),
            receive(origin_r, 0x5158_5e55_0000_0001),
            receive(app_r, 0x5158_5e55_0000_0002),
        );
        assert_eq!((up, down), (BIG, BIG), "bytes identical in both directions");
        let stats = task.await.expect("relay");
        assert_eq!(
            outcome(&stats),
            (BIG as u64, BIG as u64, RelayEnd::Closed, path)
        );
    }

    async fn idle_timeout_ends_a_silent_connection(mode: RelayMode, _path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, Duration::from_millis(300)).await;
        let stats = tokio::time::timeout(LONG, task)
            .await
            .expect("relay ends")
            .expect("relay");
        assert_eq!((stats.end, stats.client_to_target), (RelayEnd::Idle, 0));
        // Both sockets were closed by the relay.
        let mut b = [0u8; 1];
        assert_eq!(app.read(&mut b).await.expect("EOF"), 0);
        assert_eq!(origin.read(&mut b).await.expect("EOF"), 0);
    }

    /// Reads until the connection ends: the bytes read, and the error that
    /// ended it (`None` for a clean EOF).
    async fn read_to_end_or_error(s: &mut TcpStream) -> (Vec<u8>, Option<io::ErrorKind>) {
        let mut got = Vec::new();
        let mut b = vec![0u8; 64 << 10];
        loop {
            match tokio::time::timeout(LONG, s.read(&mut b))
                .await
                .expect("end in time")
            {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) => return (got, Some(e.kind())),
            }
        }
    }

    /// Resets `s` once the peer has acknowledged everything it sent.
    async fn reset_when_acknowledged(s: TcpStream) {
        while crate::sys::unacknowledged(&s).expect("SIOCOUTQ") > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        reset(s);
    }

    fn reset(s: TcpStream) {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s);
    }

    async fn target_reset_is_a_target_error(mode: RelayMode, path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        app.write_all(b"hello").await.expect("write");
        let mut b = [0u8; 5];
        origin.read_exact(&mut b).await.expect("read");
        reset(origin);
        let (got, err) = read_to_end_or_error(&mut app).await;
        assert_eq!(
            (got.len(), err),
            (0, Some(io::ErrorKind::ConnectionReset)),
            "the application sees the target's reset, not a FIN"
        );
        let stats = task.await.expect("relay");
        assert_eq!(
            (stats.end, stats.client_to_target, stats.path),
            (RelayEnd::TargetError, 5, path)
        );
    }

    async fn client_reset_is_a_client_error(mode: RelayMode, path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        origin.write_all(b"hello").await.expect("write");
        let mut b = [0u8; 5];
        app.read_exact(&mut b).await.expect("read");
        reset(app);
        let (got, err) = read_to_end_or_error(&mut origin).await;
        assert_eq!(
            (got.len(), err),
            (0, Some(io::ErrorKind::ConnectionReset)),
            "the target sees the application's reset, not a FIN"
        );
        let stats = task.await.expect("relay");
        assert_eq!(
            (stats.end, stats.target_to_client, stats.path),
            (RelayEnd::ClientError, 5, path)
        );
    }

    /// The target sends 4 MiB and resets: the application gets all of
    /// them, then the reset.
    async fn bytes_before_a_target_reset_arrive_then_the_reset(mode: RelayMode, path: RelayPath) {
        const N: usize = 4 << 20;
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        let mut data = vec![0u8; N];
        Stream(11).fill(&mut data);
        let sender = tokio::spawn(async move {
            origin.write_all(&data).await.expect("send");
            reset_when_acknowledged(origin).await;
            data
        });
        let (got, err) = read_to_end_or_error(&mut app).await;
        let data = sender.await.expect("sender");
        assert_eq!(got.len(), N, "every byte sent before the reset arrives");
        assert!(got == data, "bytes identical");
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset), "then the reset");
        let stats = task.await.expect("relay");
        assert_eq!(
            (stats.end, stats.target_to_client, stats.path),
            (RelayEnd::TargetError, N as u64, path)
        );
    }

    /// The drain's cut-off ends a busy relay: both sides see a reset.
    async fn cutoff_resets_both_sides(mode: RelayMode, path: RelayPath) {
        let (mut app, client) = tcp_pair().await;
        let (target, mut origin) = tcp_pair().await;
        let opts = RelayOptions {
            mode,
            ..RelayOptions::default()
        };
        let cutoff = std::sync::Arc::new(Cutoff::new());
        let c = std::sync::Arc::clone(&cutoff);
        let task = tokio::spawn(async move { relay(client, target, opts, &c).await });
        app.write_all(b"request").await.expect("write");
        let mut b = [0u8; 7];
        origin.read_exact(&mut b).await.expect("read");
        cutoff.cut();
        let stats = task.await.expect("relay");
        assert_eq!((stats.end, stats.path), (RelayEnd::Drained, path));
        for side in [&mut app, &mut origin] {
            let (_, err) = read_to_end_or_error(side).await;
            assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
        }
    }

    /// Sends `len` bytes of the stream with `seed` and checks them on the
    /// other side.
    async fn bulk(w: &mut TcpStream, r: &mut TcpStream, len: usize) {
        let mut data = vec![0u8; len];
        Stream(7).fill(&mut data);
        let mut got = vec![0u8; len];
        let (sent, read) = tokio::join!(w.write_all(&data), r.read_exact(&mut got));
        sent.expect("send");
        read.expect("receive");
        assert!(got == data, "bytes identical");
    }

    /// A connected Multipath TCP pair on loopback (`None` where the kernel
    /// has no MPTCP).
    async fn mptcp_pair() -> Option<(TcpStream, TcpStream)> {
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let (l, mptcp) = crate::sys::nonblocking_stream_socket(&addr, true).expect("socket");
        if !mptcp {
            return None;
        }
        l.bind(&addr.into()).expect("bind");
        l.listen(8).expect("listen");
        let l = TcpListener::from_std(std::net::TcpListener::from(l)).expect("listener");
        let to = l.local_addr().expect("addr");
        let (c, _) = crate::sys::nonblocking_stream_socket(&to, true).expect("socket");
        let _ = c.connect(&to.into());
        let c = TcpStream::from_std(std::net::TcpStream::from(c)).expect("stream");
        let (a, _) = l.accept().await.expect("accept");
        c.writable().await.expect("connected");
        Some((c, a))
    }

    /// 1 MiB from `app` to `origin` through a relay of `client` and
    /// `target`, then the exchange after the app's FIN; the relay's count.
    async fn bulk_up_through(
        client: TcpStream,
        target: TcpStream,
        mut app: TcpStream,
        mut origin: TcpStream,
    ) -> RelayStats {
        let opts = RelayOptions {
            idle_timeout: LONG,
            mode: RelayMode::Auto,
            ..RelayOptions::default()
        };
        let task = spawn_relay(client, target, opts);
        bulk(&mut app, &mut origin, 1 << 20).await;
        app.shutdown().await.expect("shutdown");
        answer_after_fin(&mut app, &mut origin).await;
        task.await.expect("relay")
    }

    #[tokio::test]
    async fn bulk_out_of_an_mptcp_socket_is_read_and_bulk_into_one_is_spliced() {
        let Some((app, client)) = mptcp_pair().await else {
            return;
        };
        assert!(crate::sys::is_mptcp_socket(&client));
        // app ==MPTCP==> relay -> origin: the bulk direction reads MPTCP.
        let (target, origin) = tcp_pair().await;
        let stats = bulk_up_through(client, target, app, origin).await;
        assert_eq!(
            outcome(&stats),
            (1 << 20, 18, RelayEnd::Closed, RelayPath::Copy),
            "out of MPTCP: read, not spliced"
        );
        // app -> relay ==MPTCP==> origin: the bulk direction reads TCP.
        let Some((target, origin)) = mptcp_pair().await else {
            return;
        };
        let (app, client) = tcp_pair().await;
        let stats = bulk_up_through(client, target, app, origin).await;
        assert_eq!(
            outcome(&stats),
            (1 << 20, 18, RelayEnd::Closed, RelayPath::Splice),
            "into MPTCP: spliced"
        );
    }

    /// Half-close after the upstream direction has switched to splice.
    async fn splice_half_close_from_client(mode: RelayMode, path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        bulk(&mut app, &mut origin, 1 << 20).await;
        app.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        origin
            .read_to_end(&mut rest)
            .await
            .expect("origin sees EOF");
        assert!(rest.is_empty());
        answer_after_fin(&mut app, &mut origin).await;
        let stats = task.await.expect("relay");
        assert_eq!(outcome(&stats), (1 << 20, 18, RelayEnd::Closed, path));
    }

    /// A reset from the target while the downstream direction splices.
    async fn splice_target_reset_is_a_target_error(mode: RelayMode, path: RelayPath) {
        let Rig {
            mut app,
            mut origin,
            task,
        } = rig(mode, LONG).await;
        bulk(&mut origin, &mut app, 1 << 20).await;
        reset(origin);
        let (got, err) = read_to_end_or_error(&mut app).await;
        assert_eq!((got.len(), err), (0, Some(io::ErrorKind::ConnectionReset)));
        let stats = task.await.expect("relay");
        assert_eq!(
            (stats.end, stats.target_to_client, stats.path),
            (RelayEnd::TargetError, 1 << 20, path)
        );
    }

    /// `relay_splice` reports transfers, and each direction's EOF before
    /// the peer sees the FIN: once for the target's, once for the
    /// client's.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_reports_transfers_and_each_eof_before_passing_it_on() {
        let (mut app, client) = tcp_pair().await;
        let (target, mut origin) = tcp_pair().await;
        let counts = std::sync::Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let seen = std::sync::Arc::clone(&counts);
        let task = tokio::spawn(async move {
            let observe = move |p: Progress| {
                let [moved, eofs] = &*seen;
                match p {
                    Progress::Moved => moved.fetch_add(1, Ordering::Relaxed),
                    Progress::Eof(_) => eofs.fetch_add(1, Ordering::Relaxed),
                };
            };
            let cutoff = Cutoff::new();
            relay_splice(&client, &target, RelayOptions::default(), &cutoff, &observe).await
        });
        let [moved, eofs] = &*counts;
        bulk(&mut origin, &mut app, 1 << 20).await;
        assert!(moved.load(Ordering::Relaxed) > 0, "transfers reported");
        assert_eq!(eofs.load(Ordering::Relaxed), 0);
        origin.shutdown().await.expect("shutdown");
        let (rest, err) = read_to_end_or_error(&mut app).await;
        assert_eq!((rest.len(), err), (0, None));
        assert_eq!(eofs.load(Ordering::Relaxed), 1, "target EOF reported");
        app.shutdown().await.expect("shutdown");
        let (rest, err) = read_to_end_or_error(&mut origin).await;
        assert_eq!((rest.len(), err), (0, None));
        assert_eq!(eofs.load(Ordering::Relaxed), 2, "client EOF reported");
        let stats = task.await.expect("relay");
        assert_eq!(
            outcome(&stats),
            (0, 1 << 20, RelayEnd::Closed, RelayPath::Splice)
        );
    }

    /// Runs a scenario in both modes. `$auto` is the path the automatic
    /// mode must report on Linux: `Splice` once a transfer is big enough to
    /// switch, `Copy` for short ones.
    macro_rules! both_modes {
        ($($name:ident => $auto:ident),* $(,)?) => {$(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn auto() {
                    let want = if cfg!(target_os = "linux") {
                        RelayPath::$auto
                    } else {
                        RelayPath::Copy
                    };
                    super::$name(RelayMode::Auto, want).await;
                }

                #[tokio::test]
                async fn copy() {
                    super::$name(RelayMode::Copy, RelayPath::Copy).await;
                }
            }
        )*};
    }

    both_modes!(
        half_close_from_client => Copy,
        half_close_from_target => Copy,
        large_transfer_both_ways => Splice,
        idle_timeout_ends_a_silent_connection => Copy,
        target_reset_is_a_target_error => Copy,
        client_reset_is_a_client_error => Copy,
        bytes_before_a_target_reset_arrive_then_the_reset => Splice,
        cutoff_resets_both_sides => Copy,
        splice_half_close_from_client => Splice,
        splice_target_reset_is_a_target_error => Splice,
    );
}
