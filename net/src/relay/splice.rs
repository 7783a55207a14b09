//! The zero-copy relay between two plain TCP sockets: each direction moves
//! bytes socket → pipe → socket with `splice(2)`, so they are never copied
//! into user space.
//!
//! Both calls are nonblocking (`SPLICE_F_NONBLOCK`, and both sockets are
//! nonblocking under tokio) and driven by the streams' own readiness:
//! `poll_read_ready`/`poll_write_ready` wait, `try_io` runs the call and clears the
//! readiness on `EAGAIN`. A direction fills its pipe from the source, then
//! drains the pipe into the destination before reading again, so at most
//! one pipe's worth (256 KiB) is in flight per direction, as with a buffer.
//!
//! A direction starts with plain read/write through a buffer that exists
//! only while bytes are in hand, and switches to splice on the first read
//! that fills the buffer: short requests and responses do not pay the five
//! system calls of a pipe, and idle connections hold neither pipe nor
//! buffer.
//!
//! When the kernel refuses `splice` for a socket (`EINVAL`, `ENOSYS`: a
//! socket family without `splice_read`) or no pipe can be made, that
//! direction stays on read/write, and the relay reports
//! [`RelayPath::Copy`]. A direction whose source is a Multipath TCP
//! socket stays on read/write too, with 64 KiB reads: splicing out of one
//! stalls the connection on Linux 6.18 (`docs/benchmarks.md`). A direction
//! into one is spliced, and when it turns bulk a socket on a path of less
//! than a millisecond gets a 512 KiB send buffer instead of up to the
//! kernel's 4 MiB ([`crate::sys::fit_mptcp_send_buffer`]): one connection
//! through the chain on loopback moved twice as much. Written 16 KiB at a
//! time instead it moved half again, but at twice the CPU per byte and
//! with less throughput over eight connections.
//!
//! This is the only module of the crate besides `sys` with `unsafe` code:
//! `pipe2`, `fcntl(F_SETPIPE_SZ)` and `splice` on descriptors this module
//! owns (the pipe) or borrows for the call (the sockets).
#![allow(unsafe_code)]

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{Cutoff, Direction, Meter, Progress, RelayOptions, RelayPath, RelayStats, Side, drive};

/// Pipe capacity per direction: the most bytes in flight inside the relay.
/// 256 KiB moved more per system call than the 64 KiB default in
/// `scripts/bench` (docs/benchmarks.md); only bulk directions make a pipe,
/// and its pages hold only bytes in flight.
const PIPE_SIZE: usize = 256 * 1024;
/// Read size of a bulk direction out of a Multipath TCP socket (which is
/// copied, not spliced): fewer reads per byte than the relay's usual
/// buffer, and at most a few such buffers kept per thread.
const MPTCP_READ_SIZE: usize = 64 * 1024;
/// [`PIPE_SIZE`] as the `int` that `fcntl` takes.
const PIPE_SIZE_INT: libc::c_int = 256 * 1024;

/// A nonblocking pipe; both ends close on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let mut fds: [RawFd; 2] = [-1, -1];
        // SAFETY: `fds` is a valid array of two descriptors for the kernel to
        // fill; nothing else is passed.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let [r, w] = fds;
        // SAFETY: pipe2 succeeded, so `r` and `w` are open descriptors that
        // nothing else owns; each OwnedFd takes sole ownership of one.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) };
        // Bound what one direction holds. A failure (pipe-max-size lowered,
        // or the user over fs.pipe-user-pages-soft) keeps the kernel's size,
        // which splice copes with: it moves at most what the pipe takes.
        // SAFETY: F_SETPIPE_SZ takes an int argument; `write` is open.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE_INT) };
        Ok(Self { read, write })
    }
}

/// One nonblocking `splice` call, without offsets.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the
    // caller borrows their owners); null offsets mean "use the file
    // position", which is what pipes and sockets require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether `e` says splice cannot work for these descriptors at all.
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// Shuts down the sending direction of `s`: the peer sees FIN. A peer that
/// is already gone cannot be told; that is not an error of this direction.
fn half_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
}

/// How one direction moves bytes at the moment.
enum Mode {
    /// Nothing big seen yet: read/write through a buffer that lives only
    /// for one transfer. A pipe costs five system calls to make, size and
    /// close, more than a short request or response saves.
    Small,
    /// Bulk: socket → pipe → socket.
    Splice(Pipe),
    /// The kernel refused splice or a pipe: read/write to the end.
    Copy,
}

/// What both directions of one relay share besides the [`Meter`].
struct Shared<'a> {
    meter: &'a Meter,
    /// Splice moved bytes in some direction.
    spliced: AtomicBool,
    /// Splice could not be used in some direction.
    fell_back: AtomicBool,
    /// Told of each transfer, and of each direction's EOF before the FIN
    /// is passed on.
    observe: &'a (dyn Fn(Progress) + Sync),
}

/// Waits until `s` is readable, without a future of its own: the
/// stream's read waker slot holds the waiter (`readable()` would keep a
/// 152-byte waiter in every idle direction).
fn readable(s: &TcpStream) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| s.poll_read_ready(cx))
}

/// Waits until `s` is writable, in the stream's write waker slot.
fn writable(s: &TcpStream) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| s.poll_write_ready(cx))
}

/// Moves everything `src` sends to `dst` until EOF, then half-closes `dst`.
/// Starts with read/write; the first read that fills the whole buffer
/// switches to splice. Sets `spliced` once splice moved bytes, `fell_back`
/// if splice could not be used. Tells the observer of the EOF with
/// `direction`, the way this is.
///
/// Only `src` reads and only `dst` writes here, and the other direction
/// the other way round, so each stream's read and write waker slots
/// ([`readable`], [`writable`]) have one waiter each.
fn pump<'a>(
    src: &'a TcpStream,
    dst: &'a TcpStream,
    direction: Direction,
    shared: &'a Shared<'a>,
    count: &'a AtomicU64,
    buffer_size: usize,
) -> impl Future<Output = Result<(), (Side, io::Error)>> + 'a {
    let mut size = buffer_size.max(1);
    async move {
        let read_err = |e| (Side::Read, e);
        let write_err = |e| (Side::Write, e);
        let mut mode = Mode::Small;
        let mut spliced = false;
        loop {
            readable(src).await.map_err(read_err)?;
            let pipe = match &mode {
                Mode::Splice(pipe) => pipe,
                Mode::Small | Mode::Copy => {
                    let mut buf = super::pool::take(size);
                    let n = match src.try_read(&mut buf) {
                        Ok(0) => {
                            super::pool::give(buf);
                            (shared.observe)(Progress::Eof(direction));
                            half_close(dst);
                            return Ok(());
                        }
                        Ok(n) => n,
                        Err(e) => {
                            super::pool::give(buf);
                            if e.kind() == io::ErrorKind::WouldBlock {
                                continue;
                            }
                            return Err(read_err(e));
                        }
                    };
                    let written =
                        write_all(dst, buf.get(..n).unwrap_or_default(), shared.meter, count).await;
                    super::pool::give(buf);
                    written?;
                    (shared.observe)(Progress::Moved);
                    if n == size && matches!(mode, Mode::Small) {
                        mode = if crate::sys::is_mptcp_socket(src) {
                            // splice(2) out of a Multipath TCP socket
                            // stalls the connection on Linux 6.18 (one
                            // download through the chain: 2.9 Gbit/s
                            // spliced, 5.5 read; docs/benchmarks.md):
                            // bulk from one is read, not spliced.
                            size = MPTCP_READ_SIZE;
                            Mode::Copy
                        } else if let Ok(pipe) = Pipe::new() {
                            // Bulk into `dst`: a Multipath TCP socket on a
                            // short path gets a send buffer it cannot
                            // overrun its reader with.
                            let _ = crate::sys::fit_mptcp_send_buffer(dst);
                            Mode::Splice(pipe)
                        } else {
                            shared.fell_back.store(true, Ordering::Relaxed);
                            Mode::Copy
                        };
                    }
                    continue;
                }
            };
            let n = match src.try_io(Interest::READABLE, || {
                splice(src.as_raw_fd(), pipe.write.as_raw_fd(), PIPE_SIZE)
            }) {
                Ok(0) => {
                    (shared.observe)(Progress::Eof(direction));
                    half_close(dst);
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if !spliced && unsupported(&e) => {
                    // The pipe is empty: nothing is lost by switching.
                    shared.fell_back.store(true, Ordering::Relaxed);
                    mode = Mode::Copy;
                    continue;
                }
                Err(e) => return Err(read_err(e)),
            };
            spliced = true;
            shared.spliced.store(true, Ordering::Relaxed);
            let mut left = n;
            while left > 0 {
                writable(dst).await.map_err(write_err)?;
                match dst.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
                }) {
                    Ok(m) => {
                        left = left.saturating_sub(m);
                        shared.meter.moved(count, m);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(write_err(e)),
                }
            }
            (shared.observe)(Progress::Moved);
        }
    }
}

/// Writes all of `chunk` to `dst`, counting as it goes.
fn write_all<'a>(
    dst: &'a TcpStream,
    mut chunk: &'a [u8],
    meter: &'a Meter,
    count: &'a AtomicU64,
) -> impl Future<Output = Result<(), (Side, io::Error)>> + 'a {
    async move {
        while !chunk.is_empty() {
            writable(dst).await.map_err(|e| (Side::Write, e))?;
            match dst.try_write(chunk) {
                Ok(m) => {
                    chunk = chunk.get(m..).unwrap_or_default();
                    meter.moved(count, m);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err((Side::Write, e)),
            }
        }
        Ok(())
    }
}

/// Relays between two plain TCP streams with `splice(2)`, telling `observe`
/// of each transfer and of each direction's EOF.
pub(super) fn relay<'a>(
    client: &'a TcpStream,
    target: &'a TcpStream,
    opts: RelayOptions,
    cutoff: &'a Cutoff,
    observe: &'a (dyn Fn(Progress) + Sync),
) -> impl Future<Output = RelayStats> + 'a {
    let (size, idle_timeout) = (opts.buffer_size, opts.idle_timeout);
    async move {
        let meter = Meter::new();
        let shared = Shared {
            meter: &meter,
            spliced: AtomicBool::new(false),
            fell_back: AtomicBool::new(false),
            observe,
        };
        let upstream = pin!(pump(
            client,
            target,
            Direction::Up,
            &shared,
            &meter.up,
            size
        ));
        let downstream = pin!(pump(
            target,
            client,
            Direction::Down,
            &shared,
            &meter.down,
            size
        ));
        let end = drive(&meter, upstream, downstream, idle_timeout, cutoff).await;
        RelayStats {
            client_to_target: meter.up.load(Ordering::Relaxed),
            target_to_client: meter.down.load(Ordering::Relaxed),
            end,
            path: if shared.spliced.load(Ordering::Relaxed)
                && !shared.fell_back.load(Ordering::Relaxed)
            {
                RelayPath::Splice
            } else {
                RelayPath::Copy
            },
        }
    }
}
