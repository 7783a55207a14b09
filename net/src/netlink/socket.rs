//! A netlink socket talking to the kernel: send one request, read its
//! replies up to the acknowledgement or the end of the dump.
//!
//! The socket is a raw `AF_NETLINK` socket that is never bound: the first
//! send auto-binds it to a unique port id, and messages without a
//! destination go to the kernel. Sockets belong to the network namespace
//! they were created in.
//!
//! This is the only module of the path manager with `unsafe` code: the
//! `setsockopt(SOL_NETLINK, ...)` calls with an `int` argument, which
//! socket2 does not wrap, and the registration of a socket with tokio's
//! reactor.
#![allow(unsafe_code)]

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::wire::{self, Message, NLM_F_ACK, NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR, NlError};

const SOL_NETLINK: i32 = 270;
const NETLINK_EXT_ACK: i32 = 11;
/// How long a request waits for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer: large enough for any dump datagram (the kernel fills
/// at most 32 KiB per dump skb).
const RECV_BUF: usize = 64 * 1024;

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    let len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: `value` lives for the duration of the call and `len` is its
    // size; the kernel only reads that many bytes.
    let rc = unsafe { libc::setsockopt(fd, level, name, std::ptr::from_ref(&value).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens a raw netlink socket of `protocol` (`NETLINK_GENERIC`,
/// `NETLINK_ROUTE`).
pub fn open_raw(protocol: i32) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(protocol)),
    )?;
    sock.set_cloexec(true)?;
    // Best effort: the kernel then explains refusals in words.
    let _ = setsockopt_int(sock.as_raw_fd(), SOL_NETLINK, NETLINK_EXT_ACK, 1);
    Ok(sock)
}

/// Binds `sock` to a kernel-chosen port id, subscribed to the multicast
/// groups in the `groups` mask (`RTMGRP_*`). Subscribing an unbound
/// socket with `NETLINK_ADD_MEMBERSHIP` delivered no notifications on
/// 6.18; binding with the group mask does.
pub fn bind_groups(sock: &Socket, groups: u32) -> io::Result<()> {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_nl` is smaller than `sockaddr_storage`, whose
    // alignment suits it, and all-zero bytes are a valid `sockaddr_nl`.
    let nl: &mut libc::sockaddr_nl = unsafe { storage.view_as() };
    nl.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    nl.nl_groups = groups;
    let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `storage` holds an initialised `sockaddr_nl` of `len` bytes.
    let addr = unsafe { SockAddr::new(storage, len) };
    sock.bind(&addr)
}

/// Registers a non-blocking netlink socket with the tokio reactor for
/// reading. Must run inside a tokio runtime.
pub fn register(sock: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its file descriptor: it stays open and is the
    // same descriptor until the `AsyncFd` (which now owns the `Socket`) is
    // dropped, and `as_raw_fd` always returns it.
    Ok(unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }?)
}

/// Converts a kernel refusal of `op` into an `io::Error`: `EPERM` says
/// `CAP_NET_ADMIN` is needed, `EEXIST` has kind `AlreadyExists`.
pub fn to_io_error(op: &str, e: &NlError) -> io::Error {
    let base = io::Error::from_raw_os_error(e.errno);
    let detail = e
        .message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    match e.errno {
        libc::EPERM | libc::EACCES => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{op}: needs CAP_NET_ADMIN ({base})"),
        ),
        libc::EEXIST => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{op}: already present{detail}"),
        ),
        _ => io::Error::new(base.kind(), format!("{op}: {base}{detail}")),
    }
}

/// A synchronous request/reply netlink socket.
#[derive(Debug)]
pub struct NlSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NlSocket {
    /// Opens a socket of netlink `protocol` in the caller's namespace.
    pub fn open(protocol: i32) -> io::Result<Self> {
        let sock = open_raw(protocol)?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Self {
            sock,
            // Any start works; the kernel echoes what we send.
            seq: 1,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends the message `build(seq)` makes and calls `on_reply` with each
    /// data message answering it. Returns after the acknowledgement
    /// (`NLM_F_ACK`), the end of the dump (`NLM_F_DUMP`), or the first
    /// reply (neither). Kernel errors become `io::Error`s naming `op`.
    pub fn transact(
        &mut self,
        op: &str,
        build: impl FnOnce(u32) -> Vec<u8>,
        mut on_reply: impl FnMut(&Message<'_>),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = build(seq);
        let flags = req
            .get(6..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_ne_bytes);
        let (ack, dump) = (flags & NLM_F_ACK != 0, flags & NLM_F_DUMP == NLM_F_DUMP);
        let sent = self.sock.send(&req)?;
        if sent != req.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{op}: short netlink send"),
            ));
        }
        loop {
            let n = match (&self.sock).read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{op}: no answer from the kernel"),
                    ));
                }
                Err(e) => return Err(e),
            };
            let data = self.buf.get(..n).unwrap_or_default();
            for msg in wire::messages(data) {
                let msg = msg.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if msg.seq != seq {
                    continue; // a late answer to an earlier request
                }
                match msg.ty {
                    NLMSG_ERROR => {
                        return wire::parse_error(&msg).map_err(|e| to_io_error(op, &e));
                    }
                    NLMSG_DONE if dump => {
                        // A dump that failed half-way carries the error here.
                        return match wire::as_u32(msg.payload).map(u32::cast_signed) {
                            Some(code) if code < 0 => Err(to_io_error(
                                op,
                                &NlError {
                                    errno: code.saturating_neg(),
                                    message: None,
                                },
                            )),
                            _ => Ok(()),
                        };
                    }
                    wire::NLMSG_NOOP | wire::NLMSG_OVERRUN => {}
                    _ => {
                        on_reply(&msg);
                        if !ack && !dump {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}
