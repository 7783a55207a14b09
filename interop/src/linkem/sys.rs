//! The system calls of the delay line: a `NETLINK_NETFILTER` socket,
//! waiting on it with a nanosecond timeout (`ppoll`), and SIGINT/SIGTERM as
//! a readable file descriptor (`signalfd`) so shutdown is handled in the
//! same loop.
//!
//! The only module of the link emulator with `unsafe` code: each block is
//! one system call on a descriptor this module owns, with buffers or
//! structures that live across the call and whose exact size is passed.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::msg::NETLINK_NETFILTER;

const SOL_NETLINK: i32 = 270;
const NETLINK_NO_ENOBUFS: i32 = 5;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    let len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: `value` lives for the call and `len` is its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    })
    .map(drop)
}

/// A netlink socket to `nfnetlink_queue`.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    /// Opens and binds the socket, with a receive buffer of `rcvbuf` bytes
    /// (forced past `rmem_max` when permitted) and `ENOBUFS` reports off: a
    /// notice the kernel cannot deliver costs that one packet, like a full
    /// queue would.
    pub fn open(rcvbuf: i32) -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked and owned at once.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
            setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf)?;
        }
        setsockopt_int(&fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)?;
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `sa` lives for the call and `len` is its size.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&sa).cast::<libc::sockaddr>(),
                len,
            )
        })?;
        Ok(Self { fd })
    }

    /// Sends one request to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is valid for `msg.len()` bytes during the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram without blocking; `Ok(None)` when none is
    /// waiting.
    pub fn try_recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<Option<&'b [u8]>> {
        // SAFETY: `buf` is valid and writable for `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(buf.get(..n.unsigned_abs()))
    }
}

/// SIGINT and SIGTERM, blocked and delivered through a descriptor.
#[derive(Debug)]
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks SIGINT and SIGTERM for this (single-threaded) process and
    /// opens a signalfd for them.
    pub fn open() -> io::Result<Self> {
        // SAFETY: sigset_t is plain old data, initialised by sigemptyset
        // before use; every call gets a pointer to it that is valid for the
        // call.
        let raw = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGINT);
            libc::sigaddset(&raw mut set, libc::SIGTERM);
            check(libc::sigprocmask(
                libc::SIG_BLOCK,
                &raw const set,
                std::ptr::null_mut(),
            ))?;
            check(libc::signalfd(
                -1,
                &raw const set,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?
        };
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }
}

/// What woke [`wait`] up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The netlink socket has data.
    pub netlink: bool,
    /// A termination signal arrived.
    pub signal: bool,
}

/// Waits until the socket is readable, a signal arrives or `timeout`
/// passes (`None`: no timeout).
pub fn wait(nl: &Netlink, sig: &Signals, timeout: Option<Duration>) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd {
            fd: nl.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: sig.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos()),
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `fds` (2 entries, as passed) and `ts` live across the call.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, tsp, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(Ready {
                netlink: false,
                signal: false,
            });
        }
        return Err(e);
    }
    let [a, b] = fds;
    Ok(Ready {
        netlink: a.revents != 0,
        signal: b.revents != 0,
    })
}
