//! Socket options and kernel facts that need `libc`: Multipath TCP socket
//! creation with fallback, TCP Fast Open, MPTCP introspection
//! (`MPTCP_INFO`, `SO_PROTOCOL`), the ICMP error queue, the host's own
//! addresses, the open-file limit.
//!
//! This is the only module of the crate with `unsafe` code. Every unsafe
//! block is a single `getsockopt`/`setsockopt`/`recvmsg`/`getifaddrs` call on
//! a file descriptor the caller owns, with a buffer whose length is passed
//! alongside it. Constants come from the kernel uapi headers
//! (`include/uapi/linux/mptcp.h`, `include/uapi/linux/tcp.h`, `in.h`).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// `IPPROTO_MPTCP`.
pub const IPPROTO_MPTCP: i32 = 262;
const SOL_MPTCP: i32 = 284;
const MPTCP_INFO: i32 = 1;
const TCP_FASTOPEN: i32 = 23;
const TCP_FASTOPEN_CONNECT: i32 = 30;
const TCP_FASTOPEN_NO_COOKIE: i32 = 34;
/// `tcp_info.tcpi_options` bit: the SYN's data was acknowledged.
pub const TCPI_OPT_SYN_DATA: u8 = 0x20;

/// Creates a stream socket for `addr`'s family, Multipath TCP if the kernel
/// allows it. Returns the socket and whether it is MPTCP. The kernel refuses
/// with `ENOPROTOOPT` (`net.mptcp.enabled=0`), `EPROTONOSUPPORT` (not built
/// in) or `EINVAL` (older than 5.6); then a TCP socket is returned instead.
pub fn stream_socket(addr: &SocketAddr, mptcp: bool) -> io::Result<(Socket, bool)> {
    new_stream_socket(addr, mptcp, Type::STREAM)
}

/// [`stream_socket`], non-blocking from the start (`SOCK_NONBLOCK`, no
/// `fcntl` round trip afterwards): for sockets handed to tokio.
pub fn nonblocking_stream_socket(addr: &SocketAddr, mptcp: bool) -> io::Result<(Socket, bool)> {
    new_stream_socket(addr, mptcp, Type::STREAM.nonblocking())
}

fn new_stream_socket(addr: &SocketAddr, mptcp: bool, ty: Type) -> io::Result<(Socket, bool)> {
    let domain = Domain::for_address(*addr);
    if mptcp {
        match Socket::new(domain, ty, Some(Protocol::from(IPPROTO_MPTCP))) {
            Ok(s) => return Ok((s, true)),
            Err(e) if mptcp_unavailable(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((Socket::new(domain, ty, Some(Protocol::TCP))?, false))
}

/// A client stream socket to `addr` that can have subflows of both
/// families: for an IPv4 `addr` and `mptcp`, an `AF_INET6` Multipath TCP
/// socket with `IPV6_V6ONLY` off, to be connected to the IPv4-mapped
/// address (RFC 4291 §2.5.5.2) it returns. The subflows of an MPTCP
/// connection are of its socket's family, and an `AF_INET6` socket's
/// subflows may be IPv4 (mapped) or IPv6, so only such a connection can
/// add an IPv6 path, or join an IPv6 address the server announces, to an
/// IPv4 server. Without IPv6 in the kernel (`EAFNOSUPPORT`), or for an
/// IPv6 `addr` or without `mptcp`, as [`stream_socket`] (and `addr`).
pub fn dual_stack_stream_socket(
    addr: &SocketAddr,
    mptcp: bool,
) -> io::Result<(Socket, bool, SocketAddr)> {
    new_dual_stack_stream_socket(addr, mptcp, Type::STREAM)
}

/// [`dual_stack_stream_socket`], non-blocking from the start
/// (`SOCK_NONBLOCK`): for sockets handed to tokio.
pub fn nonblocking_dual_stack_stream_socket(
    addr: &SocketAddr,
    mptcp: bool,
) -> io::Result<(Socket, bool, SocketAddr)> {
    new_dual_stack_stream_socket(addr, mptcp, Type::STREAM.nonblocking())
}

fn new_dual_stack_stream_socket(
    addr: &SocketAddr,
    mptcp: bool,
    ty: Type,
) -> io::Result<(Socket, bool, SocketAddr)> {
    if let (SocketAddr::V4(v4), true) = (addr, mptcp) {
        match Socket::new(Domain::IPV6, ty, Some(Protocol::from(IPPROTO_MPTCP))) {
            Ok(s) => {
                s.set_only_v6(false)?;
                let mapped = SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port());
                return Ok((s, true, mapped));
            }
            Err(e) if mptcp_unavailable(&e) || e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
            Err(e) => return Err(e),
        }
    }
    let (s, mptcp) = new_stream_socket(addr, mptcp, ty)?;
    Ok((s, mptcp, *addr))
}

/// True for the errors that mean "this kernel has no MPTCP for us".
pub fn mptcp_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOPROTOOPT | libc::EPROTONOSUPPORT | libc::EINVAL)
    )
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    let len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: `value` lives for the call and `len` is its size.
    let rc = unsafe { libc::setsockopt(fd, level, name, std::ptr::from_ref(&value).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads a socket option into `buf`; returns how many bytes the kernel wrote.
fn getsockopt_buf(fd: RawFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `buf` is valid for writes of `len` bytes; the kernel writes at
    // most `len` bytes and stores the written length in `len`.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &raw mut len) };
    if rc == 0 {
        Ok((len as usize).min(buf.len()))
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut buf = [0u8; 4];
    getsockopt_buf(fd, level, name, &mut buf)?;
    Ok(i32::from_ne_bytes(buf))
}

/// Whether the TCP handshake of the socket `fd` is still under way:
/// `getpeername(2)` fails with `ENOTCONN` until it completes (a connect
/// that sent its SYN, or its data in the SYN, and has no answer yet). The
/// caller keeps `fd` open across the call.
pub fn handshake_pending(fd: RawFd) -> bool {
    let mut addr = [0u8; 128];
    let mut len = libc::socklen_t::try_from(addr.len()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `addr` is valid for writes of `len` bytes (a
    // `sockaddr_storage`); the kernel writes at most `len` bytes there and
    // the address's length in `len`.
    let rc = unsafe { libc::getpeername(fd, addr.as_mut_ptr().cast(), &raw mut len) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
}

/// Enables TCP Fast Open on a listener with a queue of `qlen` pending
/// 0-RTT connections, and accepts data in the SYN without a cookie
/// (`TCP_FASTOPEN_NO_COOKIE`), which sixpath clients and Convert clients
/// rely on. The host still needs bit 0x2 of `net.ipv4.tcp_fastopen`.
pub fn enable_listener_fastopen(sock: &impl AsRawFd, qlen: i32) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_TCP, TCP_FASTOPEN, qlen)?;
    setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        TCP_FASTOPEN_NO_COOKIE,
        1,
    )
}

/// Enables TCP Fast Open on a listener the RFC 7413 way: data in a SYN is
/// accepted only with a valid cookie, and SYNs asking for a cookie get one
/// (`TCP_FASTOPEN` without `TCP_FASTOPEN_NO_COOKIE`), as ordinary TFO
/// servers on the Internet do.
pub fn enable_listener_fastopen_with_cookies(sock: &impl AsRawFd, qlen: i32) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_TCP, TCP_FASTOPEN, qlen)
}

/// Lets an outgoing SYN carry data without a TFO cookie
/// (`TCP_FASTOPEN_NO_COOKIE`, Linux 4.15+; MPTCP 6.2+).
pub fn enable_connect_fastopen_no_cookie(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        TCP_FASTOPEN_NO_COOKIE,
        1,
    )
}

/// Makes `connect()` defer the SYN until the first write, which then rides
/// in the SYN (`TCP_FASTOPEN_CONNECT`), without waiting for a cookie
/// (`TCP_FASTOPEN_NO_COOKIE`). Only for connections that have data to send
/// at once: otherwise the SYN waits for the application.
pub fn enable_connect_fastopen(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)?;
    // Older kernels lack per-socket no-cookie; TFO then needs a cookie first.
    let _ = setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        TCP_FASTOPEN_NO_COOKIE,
        1,
    );
    Ok(())
}

/// How a connection is carried, as far as the kernel tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Multipath TCP with this many subflows (the initial one included).
    Mptcp {
        /// Subflows now, the initial one included.
        subflows: u8,
    },
    /// An MPTCP socket whose connection fell back to plain TCP.
    Fallback,
    /// A plain TCP socket.
    Tcp,
}

impl Transport {
    /// Short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mptcp { .. } => "mptcp",
            Self::Fallback => "tcp-fallback",
            Self::Tcp => "tcp",
        }
    }

    /// Subflow count (1 for TCP).
    pub fn subflows(self) -> u8 {
        match self {
            Self::Mptcp { subflows } => subflows,
            Self::Fallback | Self::Tcp => 1,
        }
    }
}

/// Kernel `struct mptcp_info` fields sixpath reads (layout in
/// `include/uapi/linux/mptcp.h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MptcpInfo {
    /// Subflows including the initial one (`subflows_total`, 6.8+), or
    /// `subflows + 1` on older kernels.
    pub subflows_total: u8,
    /// `mptcpi_flags`.
    pub flags: u32,
    /// Bytes sent (6.5+; 0 before).
    pub bytes_sent: u64,
    /// Bytes received (6.5+; 0 before).
    pub bytes_received: u64,
}

/// Reads `MPTCP_INFO`; fails with `EOPNOTSUPP` on a socket that fell back.
pub fn mptcp_info(sock: &impl AsRawFd) -> io::Result<MptcpInfo> {
    let mut buf = [0u8; 128];
    let n = getsockopt_buf(sock.as_raw_fd(), SOL_MPTCP, MPTCP_INFO, &mut buf)?;
    let u8_at = |i: usize| buf.get(i).copied().unwrap_or(0);
    let u32_at = |i: usize| {
        buf.get(i..i + 4)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
    };
    let u64_at = |i: usize| {
        buf.get(i..i + 8)
            .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
    };
    let subflows_total = if n > 80 {
        u8_at(80)
    } else {
        u8_at(0).saturating_add(1)
    };
    Ok(MptcpInfo {
        subflows_total: subflows_total.max(1),
        flags: u32_at(8),
        bytes_sent: if n >= 64 { u64_at(56) } else { 0 },
        bytes_received: if n >= 72 { u64_at(64) } else { 0 },
    })
}

/// Whether `sock` is a Multipath TCP socket (`SO_PROTOCOL`), in fallback
/// or not.
pub fn is_mptcp_socket(sock: &impl AsRawFd) -> bool {
    getsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL)
        .is_ok_and(|p| p == IPPROTO_MPTCP)
}

/// Round trips shorter than this (microseconds) make a short path: the same
/// host, a LAN.
const SHORT_PATH_RTT_US: u32 = 1000;
/// `SO_SNDBUF` of a Multipath TCP socket on a short path. The kernel
/// doubles it (socket(7)): 512 KiB of send buffer, 4 Gbit/s at a 1 ms
/// round trip.
const SHORT_PATH_SNDBUF: i32 = 256 * 1024;

/// Whether a smoothed round trip of `rtt_us` microseconds (`tcpi_rtt`; 0:
/// no sample yet) is a short path, for [`fit_mptcp_send_buffer`].
pub fn short_path(rtt_us: u32) -> bool {
    rtt_us > 0 && rtt_us < SHORT_PATH_RTT_US
}

/// `tcp_info.tcpi_rtt` (`include/uapi/linux/tcp.h`): the smoothed round
/// trip in microseconds; on a Multipath TCP socket, its first subflow's.
pub fn tcpi_rtt(sock: &impl AsRawFd) -> io::Result<u32> {
    let (buf, written) = tcp_info::<72>(sock)?;
    if written < 72 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "tcp_info too short for tcpi_rtt",
        ));
    }
    let [.., b68, b69, b70, b71] = buf;
    Ok(u32::from_ne_bytes([b68, b69, b70, b71]))
}

/// Gives a Multipath TCP socket on a short path ([`short_path`]) a fixed
/// 512 KiB send buffer; returns whether it did. The kernel's autotuning
/// sizes the send buffer from the congestion window and segment size, up
/// to `net.ipv4.tcp_wmem`'s maximum (4 MiB; on loopback's 64 KiB segments
/// from the first one), and a nonblocking writer that fills that much on
/// a round trip of microseconds overruns the reader of a Multipath TCP
/// connection: zero windows, then Multipath TCP retransmissions after
/// timeouts, with the CPU idle meanwhile (`docs/benchmarks.md`). Other
/// sockets, and longer paths, keep the kernel's sizing, which a long path
/// needs for its bandwidth-delay product.
pub fn fit_mptcp_send_buffer(sock: &impl AsRawFd) -> io::Result<bool> {
    if !is_mptcp_socket(sock) || !short_path(tcpi_rtt(sock)?) {
        return Ok(false);
    }
    setsockopt_int(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        SHORT_PATH_SNDBUF,
    )?;
    Ok(true)
}

/// What carries the connection on `sock`: `MPTCP_INFO` answers only on a
/// Multipath TCP socket that has not fallen back (the kernel hands every
/// option of a fallen-back one to its TCP subflow, which has no
/// `SOL_MPTCP`), so one system call says so for the common case; only when
/// it fails does `SO_PROTOCOL` tell plain TCP from a fallback
/// (`include/uapi/linux/mptcp.h`, `net/mptcp/sockopt.c`).
pub fn transport(sock: &impl AsRawFd) -> Transport {
    if let Ok(info) = mptcp_info(sock) {
        return Transport::Mptcp {
            subflows: info.subflows_total,
        };
    }
    if is_mptcp_socket(sock) {
        Transport::Fallback
    } else {
        Transport::Tcp
    }
}

/// What carries the connection on `sock` now, when [`transport`] said
/// `before` earlier: a TCP socket stays TCP (no system call), and a
/// Multipath TCP socket is asked `MPTCP_INFO` alone (for the subflow
/// count), which fails once it has fallen back, since the kernel then
/// hands every socket option to the one TCP subflow.
pub fn transport_now(sock: &impl AsRawFd, before: Transport) -> Transport {
    if before == Transport::Tcp {
        return Transport::Tcp;
    }
    match mptcp_info(sock) {
        Ok(info) => Transport::Mptcp {
            subflows: info.subflows_total,
        },
        Err(_) => Transport::Fallback,
    }
}

/// The first `N` bytes of `struct tcp_info` (`TCP_INFO`, tcp(7)), zeros
/// past what the kernel wrote, and how many it wrote.
fn tcp_info<const N: usize>(sock: &impl AsRawFd) -> io::Result<([u8; N], usize)> {
    let mut buf = [0u8; N];
    let n = getsockopt_buf(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        &mut buf,
    )?;
    Ok((buf, n))
}

/// `tcp_info.tcpi_options` (byte 5 of `struct tcp_info`), e.g. to see
/// [`TCPI_OPT_SYN_DATA`].
pub fn tcpi_options(sock: &impl AsRawFd) -> io::Result<u8> {
    let (buf, _) = tcp_info::<8>(sock)?;
    Ok(buf[5])
}

/// `tcp_info.tcpi_state` (byte 0 of `struct tcp_info`): the TCP state, e.g.
/// [`TCP_SYN_RECV`] for a connection accepted with data in its SYN whose
/// handshake has not finished.
pub fn tcp_state(sock: &impl AsRawFd) -> io::Result<u8> {
    let (buf, _) = tcp_info::<8>(sock)?;
    Ok(buf[0])
}

/// Bytes in the socket's send queue not yet acknowledged by the peer
/// (`ioctl(SIOCOUTQ)`, tcp(7); a Multipath TCP socket answers for the
/// whole connection, `mptcp_ioctl` in the kernel's net/mptcp/protocol.c).
pub fn unacknowledged(sock: &impl AsRawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points to
    // `n` for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if rc == 0 {
        Ok(usize::try_from(n).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `tcpi_state` of a connection accepted with TCP Fast Open data before the
/// client's ACK arrived.
pub const TCP_SYN_RECV: u8 = 3;

/// Asks the kernel to queue ICMP errors for this socket (`IP_RECVERR` /
/// `IPV6_RECVERR`), so a failed connect can report the ICMP code.
pub fn enable_recverr(sock: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
}

/// An ICMP error the kernel queued for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// `ee_origin`: `SO_EE_ORIGIN_ICMP` (2) or `SO_EE_ORIGIN_ICMP6` (3).
    pub origin: u8,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Where the packet the error is about was going (the error queue
    /// message's `msg_name`, ip(7) `IP_RECVERR`).
    pub destination: Option<SocketAddr>,
    /// The host that sent the ICMP error (`SO_EE_OFFENDER`).
    pub reporter: Option<IpAddr>,
}

/// A `sockaddr_in` or `sockaddr_in6` in `b` (unmapped), if it is one.
fn sockaddr_from(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::from(ip), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::from(ip).to_canonical(), port))
        }
        _ => None,
    }
}

/// Reads one ICMP error from the socket's error queue, if there is one.
pub fn take_icmp_error(sock: &impl AsRawFd) -> Option<IcmpError> {
    let mut control = [0u64; 64];
    let mut data = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let mut name = [0u8; 32];
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = 32;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // size_t with glibc, socklen_t with musl; 512 fits both.
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the stated sizes.
    let rc = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &raw mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        return None;
    }
    // SAFETY: CMSG_* walk the control buffer the kernel filled, bounded by
    // msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and inside the control buffer.
        let (level, ty) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        let is_err = (level == libc::IPPROTO_IP && ty == libc::IP_RECVERR)
            || (level == libc::IPPROTO_IPV6 && ty == libc::IPV6_RECVERR);
        if is_err {
            // SAFETY: for these cmsg types the data is a sock_extended_err;
            // read_unaligned copes with the control buffer's alignment.
            let ee: libc::sock_extended_err =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            // SO_EE_OFFENDER: the sockaddr right after the
            // sock_extended_err, inside the same cmsg (linux/errqueue.h).
            // SAFETY: cmsg is non-null and inside the control buffer; its
            // data starts at CMSG_DATA within the same cmsg.
            let (cmsg_len, header) = unsafe {
                (
                    (*cmsg).cmsg_len as usize,
                    libc::CMSG_DATA(cmsg) as usize - cmsg as usize,
                )
            };
            let data_len = cmsg_len.saturating_sub(header);
            let after = size_of::<libc::sock_extended_err>();
            let mut offender = [0u8; 28];
            let avail = data_len.saturating_sub(after).min(offender.len());
            // SAFETY: `avail` bytes after the sock_extended_err lie inside
            // this cmsg's data, which the kernel wrote.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    libc::CMSG_DATA(cmsg).add(after),
                    offender.as_mut_ptr(),
                    avail,
                );
            }
            let namelen = (msg.msg_namelen as usize).min(name.len());
            return Some(IcmpError {
                origin: ee.ee_origin,
                icmp_type: ee.ee_type,
                code: ee.ee_code,
                destination: sockaddr_from(name.get(..namelen).unwrap_or_default()),
                reporter: sockaddr_from(offender.get(..avail).unwrap_or_default()).map(|a| a.ip()),
            });
        }
        // SAFETY: advancing within the same control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    None
}

/// This host's interface addresses (`getifaddrs`).
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says its type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family is AF_INET, so this is a sockaddr_in.
                let sin =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: family is AF_INET6, so this is a sockaddr_in6.
                let sin6 =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in6>()) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Reads an integer sysctl such as `net/ipv4/tcp_fastopen`.
pub fn sysctl_int(path: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Forbids fragmentation of outgoing packets: path MTU discovery with the
/// Don't Fragment bit enforced (`IP_MTU_DISCOVER` / `IPV6_MTU_DISCOVER` =
/// `IP_PMTUDISC_DO`); sends larger than the path MTU fail instead of being
/// fragmented.
pub fn set_no_fragmentation(sock: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        setsockopt_int(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    }
}

/// True if fragmentation is forbidden on the socket (see
/// [`set_no_fragmentation`]).
pub fn no_fragmentation(sock: &impl AsRawFd, ipv6: bool) -> io::Result<bool> {
    Ok(if ipv6 {
        getsockopt_int(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
        )? == libc::IPV6_PMTUDISC_DO
    } else {
        getsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)?
            == libc::IP_PMTUDISC_DO
    })
}

/// Like [`enable_connect_fastopen`], but data rides in the SYN only once
/// the server has handed out a TFO cookie (RFC 7413): the first connection
/// asks for one, and a server without TFO never gets data in a SYN. Use it
/// for Multipath TCP: when a server acknowledges only the SYN of a SYN with
/// data, Linux (6.18 measured) falls back to TCP, and such fallen-back
/// connections can miss the peer's FIN.
pub fn enable_connect_fastopen_with_cookie(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
}

/// The destination an application originally dialled, for a connection
/// that an `nft`/`iptables` `REDIRECT` rule sent to a local listener
/// (`SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`, read from conntrack).
/// Fails with `ENOENT` when the connection was not redirected.
pub fn original_dst(sock: &impl std::os::fd::AsFd, ipv6: bool) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(sock);
    let addr = if ipv6 {
        sock.original_dst_v6()?
    } else {
        sock.original_dst_v4()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))
}

/// Sets `IP_TRANSPARENT` (`IPV6_TRANSPARENT`) on a listener so that it
/// accepts connections a `TPROXY` rule diverts to it; the accepted socket's
/// local address is then the original destination. Needs `CAP_NET_ADMIN`.
pub fn set_transparent(sock: &Socket, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        sock.set_ip_transparent_v6(true)
    } else {
        sock.set_ip_transparent_v4(true)
    }
}

/// The open-file limit (`RLIMIT_NOFILE`) after raising the soft limit to the
/// hard limit: `(soft, hard)`. Every client connection and every outbound
/// connection costs a file descriptor, and the usual soft default (1024)
/// would refuse connections long before memory runs short.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively
    // borrowed struct passed to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the `rlimit` it is given, which
        // lives for the duration of the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    #[allow(
        clippy::useless_conversion,
        reason = "rlim_t is u64 on 64-bit targets, u32 on 32-bit glibc"
    )]
    Ok((lim.rlim_cur.into(), lim.rlim_max.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on 127.0.0.1 asked for as Multipath TCP: the socket, its
    /// address, and whether the kernel made it Multipath TCP.
    fn loopback_listener() -> (Socket, SocketAddr, bool) {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let (listener, is_mptcp) = stream_socket(&addr, true).expect("socket");
        listener.bind(&addr.into()).expect("bind");
        listener.listen(8).expect("listen");
        let local = listener
            .local_addr()
            .expect("local")
            .as_socket()
            .expect("inet");
        (listener, local, is_mptcp)
    }

    #[test]
    fn handshake_is_pending_while_the_syn_is_unanswered_and_not_once_connected() {
        // A listener whose accept queue is full drops further SYNs: the
        // second client's connect stays in SYN_SENT.
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let (listener, _) = stream_socket(&addr, false).expect("socket");
        listener.bind(&addr.into()).expect("bind");
        listener.listen(0).expect("listen");
        let local = listener.local_addr().expect("local");
        let (first, _) = stream_socket(&addr, false).expect("socket");
        first.connect(&local).expect("connect");
        assert!(!handshake_pending(first.as_raw_fd()), "connected");
        let (second, _) = stream_socket(&addr, false).expect("socket");
        second.set_nonblocking(true).expect("nonblocking");
        let _ = second.connect(&local); // EINPROGRESS
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(handshake_pending(second.as_raw_fd()), "SYN unanswered");
    }

    /// A connection from a new client socket (MPTCP if `mptcp`) to
    /// `listener` at `to`: the client and the accepted end.
    fn connect_to(listener: &Socket, to: &SocketAddr, mptcp: bool) -> (Socket, Socket) {
        let (client, _) = stream_socket(to, mptcp).expect("socket");
        client.connect(&(*to).into()).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        (client, accepted)
    }

    #[test]
    fn own_addresses_include_loopback() {
        assert!(own_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn mptcp_loopback_connection_reports_its_transport() {
        let (listener, local, is_mptcp) = loopback_listener();
        let (_client, accepted) = connect_to(&listener, &local, true);
        let t = transport(&accepted);
        if is_mptcp {
            assert_eq!(t, Transport::Mptcp { subflows: 1 }, "MPTCP on both ends");
        } else {
            assert_eq!(t, Transport::Tcp);
        }
        assert_eq!(transport_now(&accepted, t), t, "asked again");
        let (_tcp_client, accepted) = connect_to(&listener, &local, false);
        assert_eq!(transport(&accepted), Transport::Tcp, "plain TCP client");
        if is_mptcp {
            // An MPTCP client towards a TCP-only listener falls back.
            let tcp_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let to = tcp_listener.local_addr().expect("local");
            let (client, _) = stream_socket(&to, true).expect("socket");
            client.connect(&to.into()).expect("connect");
            let t = transport(&client);
            assert_eq!(t, Transport::Fallback);
            assert_eq!(transport_now(&client, t), Transport::Fallback);
            assert_eq!(
                transport_now(&client, Transport::Mptcp { subflows: 1 }),
                Transport::Fallback,
                "MPTCP_INFO alone tells a fallen-back socket"
            );
        }
    }

    #[test]
    fn short_path_is_a_measured_round_trip_under_a_millisecond() {
        assert!(short_path(30));
        assert!(short_path(999));
        assert!(!short_path(1000), "a millisecond is not short");
        assert!(!short_path(25_000));
        assert!(!short_path(0), "no sample yet");
    }

    #[test]
    fn mptcp_socket_on_loopback_gets_a_512_kib_send_buffer_and_tcp_keeps_its_own() {
        let (listener, local, is_mptcp) = loopback_listener();
        let (_client, accepted) = connect_to(&listener, &local, true);
        let rtt = tcpi_rtt(&accepted).expect("tcp_info");
        assert!(rtt > 0 && rtt < 1000, "loopback round trip {rtt} us");
        let before = accepted.send_buffer_size().expect("SO_SNDBUF");
        let fitted = fit_mptcp_send_buffer(&accepted).expect("fit");
        let after = accepted.send_buffer_size().expect("SO_SNDBUF");
        if is_mptcp {
            assert!(fitted, "an MPTCP socket on loopback is on a short path");
            // The kernel doubles SO_SNDBUF (socket(7)).
            assert_eq!(after, 512 * 1024, "was {before}");
            assert!(before > after, "the kernel's size ({before}) was larger");
        }
        let (_tcp_client, tcp) = connect_to(&listener, &local, false);
        let before = tcp.send_buffer_size().expect("SO_SNDBUF");
        assert!(!fit_mptcp_send_buffer(&tcp).expect("fit"), "plain TCP");
        assert_eq!(tcp.send_buffer_size().expect("SO_SNDBUF"), before);
    }

    #[test]
    fn nonblocking_stream_socket_is_nonblocking_and_of_the_asked_protocol() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        for want in [true, false] {
            let (sock, mptcp) = nonblocking_stream_socket(&addr, want).expect("socket");
            assert!(sock.nonblocking().expect("flags"), "O_NONBLOCK set");
            let proto = getsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL)
                .expect("SO_PROTOCOL");
            let expect = if mptcp {
                IPPROTO_MPTCP
            } else {
                libc::IPPROTO_TCP
            };
            assert_eq!(proto, expect);
            assert!(want || !mptcp, "TCP when MPTCP is not asked for");
            let (blocking, _) = stream_socket(&addr, want).expect("socket");
            assert!(!blocking.nonblocking().expect("flags"));
        }
    }

    #[test]
    fn a_dual_stack_socket_reaches_an_ipv4_server_as_mptcp_from_an_ipv6_socket() {
        let (listener, local, is_mptcp) = loopback_listener();
        let (client, mptcp, to) = dual_stack_stream_socket(&local, true).expect("socket");
        assert_eq!(mptcp, is_mptcp);
        if is_mptcp {
            assert_eq!(client.domain().expect("domain"), Domain::IPV6);
            assert!(!client.only_v6().expect("v6only"), "IPV6_V6ONLY off");
            let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", local.port())
                .parse()
                .expect("addr");
            assert_eq!(to, mapped);
        }
        client.connect(&to.into()).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        assert!(
            peer.as_socket().expect("inet").is_ipv4(),
            "the server sees IPv4"
        );
        if is_mptcp {
            assert_eq!(transport(&accepted), Transport::Mptcp { subflows: 1 });
        }
        for want in [true, false] {
            let (nb, _, _) = nonblocking_dual_stack_stream_socket(&local, want).expect("socket");
            assert!(nb.nonblocking().expect("flags"), "O_NONBLOCK set");
        }
        // An IPv6 server, or plain TCP: the address's own family.
        let (tcp, mptcp, to) = dual_stack_stream_socket(&local, false).expect("socket");
        assert!(!mptcp);
        assert_eq!((tcp.domain().expect("domain"), to), (Domain::IPV4, local));
    }

    #[test]
    fn no_fragmentation_is_set_and_read_back() {
        for (addr, v6) in [("127.0.0.1:1", false), ("[::1]:1", true)] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let (sock, _) = stream_socket(&addr, false).expect("socket");
            assert!(!no_fragmentation(&sock, v6).expect("get"));
            set_no_fragmentation(&sock, v6).expect("set");
            assert!(no_fragmentation(&sock, v6).expect("get"));
        }
    }

    #[test]
    fn nofile_soft_limit_is_raised_to_the_hard_limit() {
        let (soft, hard) = raise_nofile_limit().expect("rlimit");
        assert_eq!(soft, hard);
        assert_eq!(
            raise_nofile_limit().expect("rlimit"),
            (hard, hard),
            "idempotent"
        );
    }
}
