//! Per-subflow statistics of a Multipath TCP connection: for each subflow
//! its local and remote address, bytes sent, acknowledged and received,
//! and RTT, from `MPTCP_FULL_INFO` (Linux 6.5+) or, on older kernels,
//! `MPTCP_TCPINFO` + `MPTCP_SUBFLOW_ADDRS` (5.16+). Layouts:
//! `include/uapi/linux/mptcp.h` (`struct mptcp_info`,
//! `struct mptcp_full_info`, `struct mptcp_subflow_addrs`).
//!
//! The parsers are pure functions over the bytes the kernel returns; only
//! [`subflows`] touches the socket. Its `getsockopt` calls hand the kernel
//! user-space pointers inside the option buffer, which is why this module
//! allows `unsafe` (one documented call).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

const SOL_MPTCP: i32 = 284;
const MPTCP_TCPINFO: i32 = 2;
const MPTCP_SUBFLOW_ADDRS: i32 = 3;
const MPTCP_FULL_INFO: i32 = 4;

/// `struct mptcp_subflow_data` header size.
const SUBFLOW_DATA_LEN: usize = 16;
/// `struct mptcp_subflow_addrs`: two `sockaddr_storage`.
const SUBFLOW_ADDRS_LEN: usize = 256;
/// `struct mptcp_subflow_info`: `u32 id`, pad, addrs at offset 8.
const SUBFLOW_INFO_LEN: usize = 264;
/// The part of `struct tcp_info` read here (through `tcpi_bytes_retrans`,
/// Linux 4.19+); the kernel copies `min(ours, its)` bytes per element.
const TCP_INFO_LEN: usize = 216;
/// `struct mptcp_full_info` through `mptcp_info` (40 + 96 on 6.18).
const FULL_INFO_LEN: usize = 136;
/// Subflows read at most (the in-kernel path manager allows 8 extra).
const MAX_SUBFLOWS: usize = 32;
/// Subflows read on the stack first: the in-kernel path manager's limit
/// (`ip mptcp limits`, at most 8); more are read again into the heap.
const FEW_SUBFLOWS: usize = 8;

/// `tcp_info` offsets (`include/uapi/linux/tcp.h`).
const TCPI_RTT: usize = 68;
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_BYTES_SENT: usize = 200;

/// One subflow of an MPTCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubflowStats {
    /// The kernel's subflow id (`MPTCP_FULL_INFO` only).
    pub id: Option<u32>,
    /// Local address and port.
    pub local: Option<SocketAddr>,
    /// Remote address and port.
    pub remote: Option<SocketAddr>,
    /// `tcpi_bytes_sent`: payload bytes sent, retransmissions included
    /// (0 before Linux 4.19).
    pub bytes_sent: u64,
    /// `tcpi_bytes_acked`: payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`: payload bytes received.
    pub bytes_received: u64,
    /// Smoothed RTT in microseconds (`tcpi_rtt`).
    pub rtt_us: u32,
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// Parses a `sockaddr_in`/`sockaddr_in6` at the start of a
/// `sockaddr_storage` (family in host order, port and IPv4 address in
/// network order).
pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32_at(b, 24)?;
            // An IPv4 subflow of an `AF_INET6` socket is reported
            // IPv4-mapped: it is an IPv4 address.
            if let Some(v4) = Ipv6Addr::from(ip).to_ipv4_mapped() {
                return Some(SocketAddr::V4(SocketAddrV4::new(v4, port)));
            }
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Parses `struct mptcp_subflow_addrs` (local, then remote).
pub fn parse_subflow_addrs(b: &[u8]) -> (Option<SocketAddr>, Option<SocketAddr>) {
    (
        b.get(..128).and_then(parse_sockaddr),
        b.get(128..256).and_then(parse_sockaddr),
    )
}

/// Fills the counters of `s` from a (possibly short) `struct tcp_info`.
pub fn apply_tcp_info(s: &mut SubflowStats, ti: &[u8]) {
    s.rtt_us = u32_at(ti, TCPI_RTT).unwrap_or(0);
    s.bytes_acked = u64_at(ti, TCPI_BYTES_ACKED).unwrap_or(0);
    s.bytes_received = u64_at(ti, TCPI_BYTES_RECEIVED).unwrap_or(0);
    s.bytes_sent = u64_at(ti, TCPI_BYTES_SENT).unwrap_or(0);
}

/// The counts `MPTCP_FULL_INFO` returns in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullInfoHeader {
    /// `size_tcpinfo_kernel` (280 on 6.18).
    pub size_tcpinfo_kernel: u32,
    /// `size_sfinfo_kernel` (264 on 6.18).
    pub size_sfinfo_kernel: u32,
    /// `num_subflows`: how many subflows the connection has (may exceed
    /// what fitted in the arrays).
    pub num_subflows: u32,
}

/// Parses the output fields of `struct mptcp_full_info`.
pub fn parse_full_info_header(b: &[u8]) -> Option<FullInfoHeader> {
    Some(FullInfoHeader {
        size_tcpinfo_kernel: u32_at(b, 0)?,
        size_sfinfo_kernel: u32_at(b, 8)?,
        num_subflows: u32_at(b, 16)?,
    })
}

/// Builds the `MPTCP_FULL_INFO` request header: element sizes, array
/// length, and the user addresses of the two arrays.
pub fn full_info_request(sfinfo_addr: u64, tcpinfo_addr: u64, elements: u32) -> [u8; 40] {
    let mut b = [0u8; 40];
    let mut put = |at: usize, v: &[u8]| {
        if let Some(slot) = b.get_mut(at..at + v.len()) {
            slot.copy_from_slice(v);
        }
    };
    put(4, &(TCP_INFO_LEN as u32).to_ne_bytes());
    put(12, &(SUBFLOW_INFO_LEN as u32).to_ne_bytes());
    put(20, &elements.to_ne_bytes());
    put(24, &sfinfo_addr.to_ne_bytes());
    put(32, &tcpinfo_addr.to_ne_bytes());
    b
}

/// Parses `MPTCP_FULL_INFO` output: header `full`, the subflow-info array
/// and the `tcp_info` array (element sizes as requested): the subflows
/// that fitted in the arrays.
pub fn parse_full_info(full: &[u8], sfinfo: &[u8], tcpinfo: &[u8]) -> Option<Vec<SubflowStats>> {
    let h = parse_full_info_header(full)?;
    let n = (h.num_subflows as usize)
        .min(sfinfo.len() / SUBFLOW_INFO_LEN)
        .min(tcpinfo.len() / TCP_INFO_LEN);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let sf = sfinfo.get(i * SUBFLOW_INFO_LEN..(i + 1) * SUBFLOW_INFO_LEN)?;
        let ti = tcpinfo.get(i * TCP_INFO_LEN..(i + 1) * TCP_INFO_LEN)?;
        let (local, remote) = parse_subflow_addrs(sf.get(8..)?);
        let mut s = SubflowStats {
            id: u32_at(sf, 0),
            local,
            remote,
            bytes_sent: 0,
            bytes_acked: 0,
            bytes_received: 0,
            rtt_us: 0,
        };
        apply_tcp_info(&mut s, ti);
        out.push(s);
    }
    Some(out)
}

/// Parses `struct mptcp_subflow_data` output: `(num_subflows,
/// size_kernel, size_user)`.
pub fn parse_subflow_data(b: &[u8]) -> Option<(u32, u32, u32)> {
    Some((u32_at(b, 4)?, u32_at(b, 8)?, u32_at(b, 12)?))
}

/// Reads `getsockopt(SOL_MPTCP, name)` into `buf`; returns the length the
/// kernel reported.
///
/// # Safety
///
/// Any user-space pointer written inside `buf` (for `MPTCP_FULL_INFO`)
/// must point at a live, writable buffer of the size stated next to it,
/// with no Rust reference to it in use during the call.
unsafe fn getsockopt_raw(fd: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `buf` is valid for `len` bytes; the caller vouches for the
    // pointers inside it.
    let rc =
        unsafe { libc::getsockopt(fd, SOL_MPTCP, name, buf.as_mut_ptr().cast(), &raw mut len) };
    if rc == 0 {
        Ok((len as usize).min(buf.len()))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `MPTCP_FULL_INFO` into arrays on the stack, sized for the subflows the
/// in-kernel path manager allows (this runs at each sample of every
/// connection: no allocation), and again into the heap when the kernel
/// says there are more.
fn full_info(fd: i32) -> io::Result<Vec<SubflowStats>> {
    let mut sfinfo = [0u8; SUBFLOW_INFO_LEN * FEW_SUBFLOWS];
    let mut tcpinfo = [0u8; TCP_INFO_LEN * FEW_SUBFLOWS];
    let (subflows, total) = full_info_into(fd, &mut sfinfo, &mut tcpinfo)?;
    if total <= FEW_SUBFLOWS {
        return Ok(subflows);
    }
    let mut sfinfo = vec![0u8; SUBFLOW_INFO_LEN * MAX_SUBFLOWS];
    let mut tcpinfo = vec![0u8; TCP_INFO_LEN * MAX_SUBFLOWS];
    full_info_into(fd, &mut sfinfo, &mut tcpinfo).map(|(subflows, _)| subflows)
}

/// `MPTCP_FULL_INFO` with the arrays `sfinfo` and `tcpinfo` (whole
/// elements of [`SUBFLOW_INFO_LEN`] and [`TCP_INFO_LEN`] bytes): the
/// subflows that fitted, and how many the connection has.
fn full_info_into(
    fd: i32,
    sfinfo: &mut [u8],
    tcpinfo: &mut [u8],
) -> io::Result<(Vec<SubflowStats>, usize)> {
    let elements = (sfinfo.len() / SUBFLOW_INFO_LEN).min(tcpinfo.len() / TCP_INFO_LEN);
    let mut full = [0u8; FULL_INFO_LEN];
    let req = full_info_request(
        sfinfo.as_mut_ptr() as u64,
        tcpinfo.as_mut_ptr() as u64,
        u32::try_from(elements).unwrap_or(0),
    );
    full.get_mut(..40)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
        .copy_from_slice(&req);
    // SAFETY: the two pointers in `full` come from `as_mut_ptr` of the two
    // arrays borrowed mutably here, which outlive the call and hold at
    // least `elements` elements of the sizes written next to them; nothing
    // reads or writes them during the call.
    let n = unsafe { getsockopt_raw(fd, MPTCP_FULL_INFO, &mut full) }?;
    let full = full.get(..n).unwrap_or_default();
    let total = parse_full_info_header(full).map_or(0, |h| h.num_subflows as usize);
    parse_full_info(full, sfinfo, tcpinfo)
        .map(|subflows| (subflows, total))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short MPTCP_FULL_INFO"))
}

/// Reads an `MPTCP_TCPINFO`/`MPTCP_SUBFLOW_ADDRS` array: header then
/// elements of `elem` bytes. Returns the elements.
fn subflow_array(fd: i32, name: i32, elem: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; SUBFLOW_DATA_LEN + elem * MAX_SUBFLOWS];
    // In: header size, 0, 0, element size.
    let mut header = [0u8; SUBFLOW_DATA_LEN];
    header[..4].copy_from_slice(&(SUBFLOW_DATA_LEN as u32).to_ne_bytes());
    header[12..].copy_from_slice(&(elem as u32).to_ne_bytes());
    if let Some(h) = buf.get_mut(..SUBFLOW_DATA_LEN) {
        h.copy_from_slice(&header);
    }
    // SAFETY: the header carries sizes only, no pointers.
    let n = unsafe { getsockopt_raw(fd, name, &mut buf) }?;
    let (num, _, size_user) = parse_subflow_data(&buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short mptcp_subflow_data"))?;
    let size = (size_user as usize).clamp(1, elem);
    let n = n.min(buf.len());
    Ok((0..(num as usize).min(MAX_SUBFLOWS))
        .filter_map(|i| {
            let at = SUBFLOW_DATA_LEN + i * size;
            buf.get(at..(at + size).min(n)).map(<[u8]>::to_vec)
        })
        .collect())
}

/// Per-subflow statistics of the MPTCP connection on `sock`:
/// `MPTCP_FULL_INFO` where the kernel has it (6.5+), else `MPTCP_TCPINFO`
/// and `MPTCP_SUBFLOW_ADDRS` (two calls, paired by position). Fails with
/// `EOPNOTSUPP` on a connection that fell back to TCP, and on kernels
/// without these options.
pub fn subflows(sock: &impl AsRawFd) -> io::Result<Vec<SubflowStats>> {
    let fd = sock.as_raw_fd();
    match full_info(fd) {
        Ok(v) => return Ok(v),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOPROTOOPT | libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    subflows_pre_6_5(fd)
}

/// `MPTCP_TCPINFO` + `MPTCP_SUBFLOW_ADDRS`, for kernels 5.16 to 6.4.
fn subflows_pre_6_5(fd: i32) -> io::Result<Vec<SubflowStats>> {
    let infos = subflow_array(fd, MPTCP_TCPINFO, TCP_INFO_LEN)?;
    let addrs = subflow_array(fd, MPTCP_SUBFLOW_ADDRS, SUBFLOW_ADDRS_LEN)?;
    Ok(infos
        .iter()
        .enumerate()
        .map(|(i, ti)| {
            let (local, remote) = addrs
                .get(i)
                .map_or((None, None), |a| parse_subflow_addrs(a));
            let mut s = SubflowStats {
                id: None,
                local,
                remote,
                bytes_sent: 0,
                bytes_acked: 0,
                bytes_received: 0,
                rtt_us: 0,
            };
            apply_tcp_info(&mut s, ti);
            s
        })
        .collect())
}

/// The addresses a peer sends from over one connection, for checking the
/// source of its datagrams (a SOCKS5 or SOCKS6 UDP association): the
/// connection's peer address and, on Multipath TCP, the remote address of
/// every subflow ([`subflows`]), so datagrams a phone sends over its other
/// path are the client's too. Subflows join and leave during the
/// connection: a source not known yet makes one look-up (one `getsockopt`,
/// the same order of cost as receiving the datagram), and is refused if it
/// is still not among them. Addresses of subflows that left stay admitted.
#[derive(Debug)]
pub struct PeerAddresses {
    /// A duplicate of the connection's descriptor, for the look-ups.
    sock: Option<std::os::fd::OwnedFd>,
    known: Vec<IpAddr>,
}

impl PeerAddresses {
    /// The most addresses kept.
    const MAX: usize = 2 * MAX_SUBFLOWS;

    /// The addresses of the peer of `sock` (whose address is `peer`); with
    /// no socket (not a TCP connection), `peer` alone.
    pub fn new(sock: Option<std::os::fd::BorrowedFd<'_>>, peer: IpAddr) -> Self {
        let mut me = Self {
            sock: sock.and_then(|s| s.try_clone_to_owned().ok()),
            known: vec![peer.to_canonical()],
        };
        me.look_up();
        me
    }

    /// The addresses known so far.
    pub fn known(&self) -> &[IpAddr] {
        &self.known
    }

    /// Whether `ip` is one of the peer's addresses; looks the subflows up
    /// again when it is not known yet.
    pub fn admits(&mut self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.known.contains(&ip) {
            return true;
        }
        self.look_up();
        self.known.contains(&ip)
    }

    fn look_up(&mut self) {
        let Some(sock) = &self.sock else { return };
        let Ok(list) = subflows(sock) else { return };
        for remote in list.iter().filter_map(|s| s.remote) {
            let ip = remote.ip().to_canonical();
            if !self.known.contains(&ip) && self.known.len() < Self::MAX {
                self.known.push(ip);
            }
        }
    }
}

/// Subflow statistics summed per local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name, or the local address when it is unknown.
    pub iface: String,
    /// Subflows over it.
    pub subflows: usize,
    /// Bytes sent (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Lowest RTT among its subflows, in microseconds.
    pub min_rtt_us: u32,
}

/// Sums `subflows` per local interface, `iface_of` naming the interface
/// of a local address (e.g. from an rtnetlink address dump). Interfaces
/// keep the order of their first subflow.
pub fn by_interface(
    subflows: &[SubflowStats],
    iface_of: impl Fn(IpAddr) -> Option<String>,
) -> Vec<InterfaceStats> {
    let mut out: Vec<InterfaceStats> = Vec::new();
    for s in subflows {
        let name = s.local.map_or_else(
            || "?".to_owned(),
            |l| iface_of(l.ip()).unwrap_or_else(|| l.ip().to_string()),
        );
        let entry = if let Some(i) = out.iter().position(|e| e.iface == name) {
            out.get_mut(i)
        } else {
            out.push(InterfaceStats {
                iface: name,
                subflows: 0,
                bytes_sent: 0,
                bytes_acked: 0,
                bytes_received: 0,
                min_rtt_us: u32::MAX,
            });
            out.last_mut()
        };
        if let Some(e) = entry {
            e.subflows += 1;
            e.bytes_sent += s.bytes_sent;
            e.bytes_acked += s.bytes_acked;
            e.bytes_received += s.bytes_received;
            e.min_rtt_us = e.min_rtt_us.min(s.rtt_us);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b
    }

    #[test]
    fn parses_ipv4_and_ipv6_sockaddrs() {
        let b = sockaddr_in([198, 18, 1, 2], 37298);
        assert_eq!(
            parse_sockaddr(&b),
            Some("198.18.1.2:37298".parse().expect("addr"))
        );
        let mut b6 = vec![0u8; 128];
        b6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        b6[2..4].copy_from_slice(&7000u16.to_be_bytes());
        b6[8..24].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().expect("v6").octets());
        assert_eq!(
            parse_sockaddr(&b6),
            Some("[2001:db8::9]:7000".parse().expect("addr"))
        );
        b6[8..24].copy_from_slice(
            &"::ffff:198.18.1.2"
                .parse::<Ipv6Addr>()
                .expect("v6")
                .octets(),
        );
        assert_eq!(
            parse_sockaddr(&b6),
            Some("198.18.1.2:7000".parse().expect("addr")),
            "an IPv4-mapped address is IPv4"
        );
        assert_eq!(parse_sockaddr(&[0u8; 128]), None, "AF_UNSPEC");
    }

    #[test]
    fn full_info_request_places_sizes_and_pointers_at_spec_offsets() {
        let b = full_info_request(0x1122_3344_5566_7788, 0x99, 32);
        assert_eq!(u32_at(&b, 4), Some(216), "size_tcpinfo_user");
        assert_eq!(u32_at(&b, 12), Some(264), "size_sfinfo_user");
        assert_eq!(u32_at(&b, 20), Some(32), "size_arrays_user");
        assert_eq!(u64_at(&b, 24), Some(0x1122_3344_5566_7788), "subflow_info");
        assert_eq!(u64_at(&b, 32), Some(0x99), "tcp_info");
    }

    #[test]
    fn parses_full_info_output() {
        // Header as measured on 6.18: 280, _, 264, _, 2 subflows.
        let mut full = vec![0u8; 136];
        full[0..4].copy_from_slice(&280u32.to_ne_bytes());
        full[8..12].copy_from_slice(&264u32.to_ne_bytes());
        full[16..20].copy_from_slice(&2u32.to_ne_bytes());
        let mut sf = vec![0u8; 2 * SUBFLOW_INFO_LEN];
        for (i, (local, port)) in [([198, 18, 1, 2], 37298), ([198, 18, 2, 2], 60697)]
            .into_iter()
            .enumerate()
        {
            let at = i * SUBFLOW_INFO_LEN;
            sf[at..at + 4].copy_from_slice(&(i as u32 + 1).to_ne_bytes());
            sf[at + 8..at + 136].copy_from_slice(&sockaddr_in(local, port));
            sf[at + 136..at + 264].copy_from_slice(&sockaddr_in([198, 18, 9, 2], 7000));
        }
        let mut ti = vec![0u8; 2 * TCP_INFO_LEN];
        ti[TCPI_RTT..TCPI_RTT + 4].copy_from_slice(&5773u32.to_ne_bytes());
        ti[TCPI_BYTES_SENT..TCPI_BYTES_SENT + 8].copy_from_slice(&1000u64.to_ne_bytes());
        let b = TCP_INFO_LEN;
        ti[b + TCPI_RTT..b + TCPI_RTT + 4].copy_from_slice(&45u32.to_ne_bytes());
        ti[b + TCPI_BYTES_RECEIVED..b + TCPI_BYTES_RECEIVED + 8]
            .copy_from_slice(&77u64.to_ne_bytes());
        ti[b + TCPI_BYTES_ACKED..b + TCPI_BYTES_ACKED + 8].copy_from_slice(&5u64.to_ne_bytes());
        // Arrays of one element while the connection has two: the one
        // that fitted (the caller reads again with room for all).
        let fitted = parse_full_info(&full, &sf[..SUBFLOW_INFO_LEN], &ti[..TCP_INFO_LEN]);
        assert_eq!(fitted.expect("parse").len(), 1);
        let got = parse_full_info(&full, &sf, &ti).expect("parse");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, Some(1));
        assert_eq!(got[0].local, Some("198.18.1.2:37298".parse().expect("a")));
        assert_eq!(got[0].remote, Some("198.18.9.2:7000".parse().expect("a")));
        assert_eq!((got[0].rtt_us, got[0].bytes_sent), (5773, 1000));
        assert_eq!(got[1].id, Some(2));
        assert_eq!(
            (got[1].rtt_us, got[1].bytes_received, got[1].bytes_acked),
            (45, 77, 5)
        );

        let per_if = by_interface(&got, |ip| {
            Some(
                if ip == IpAddr::from([198, 18, 1, 2]) {
                    "wlan0"
                } else {
                    "lte0"
                }
                .to_owned(),
            )
        });
        assert_eq!(per_if.len(), 2);
        assert_eq!(per_if[0].iface, "wlan0");
        assert_eq!(per_if[0].bytes_sent, 1000);
        assert_eq!(per_if[1].iface, "lte0");
        assert_eq!(per_if[1].bytes_received, 77);
    }

    #[test]
    fn subflow_data_header_reads_counts() {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&16u32.to_ne_bytes());
        h[4..8].copy_from_slice(&2u32.to_ne_bytes());
        h[8..12].copy_from_slice(&280u32.to_ne_bytes());
        h[12..16].copy_from_slice(&256u32.to_ne_bytes());
        assert_eq!(parse_subflow_data(&h), Some((2, 280, 256)));
    }

    #[test]
    fn loopback_mptcp_connection_reports_one_subflow_with_its_bytes() {
        use std::io::{Read, Write};
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let (listener, is_mptcp) = sys::stream_socket(&addr, true).expect("socket");
        if !is_mptcp {
            eprintln!(
                "SKIP loopback_mptcp_connection_reports_one_subflow_with_its_bytes: no MPTCP"
            );
            return;
        }
        listener.bind(&addr.into()).expect("bind");
        listener.listen(1).expect("listen");
        let local = listener
            .local_addr()
            .expect("local")
            .as_socket()
            .expect("inet");
        let (client, _) = sys::stream_socket(&local, true).expect("socket");
        client.connect(&local.into()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let mut client = std::net::TcpStream::from(client);
        let mut server = std::net::TcpStream::from(server);
        client.write_all(&[7u8; 10_000]).expect("write");
        let mut got = vec![0u8; 10_000];
        server.read_exact(&mut got).expect("read");
        server.write_all(b"pong").expect("write");
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).expect("read");

        let c = subflows(&client).expect("client subflows");
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].local, Some(client.local_addr().expect("local")));
        assert_eq!(c[0].remote, Some(local));
        assert_eq!(c[0].bytes_sent, 10_000);
        assert_eq!(c[0].bytes_received, 4);
        let s = subflows(&server).expect("server subflows");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].bytes_received, 10_000);
        assert_eq!(s[0].bytes_sent, 4);

        // The pre-6.5 pair of options reports the same subflow.
        let old = subflows_pre_6_5(client.as_raw_fd()).expect("TCPINFO + SUBFLOW_ADDRS");
        assert_eq!(old.len(), 1);
        assert_eq!((old[0].local, old[0].remote), (c[0].local, c[0].remote));
        assert_eq!((old[0].id, old[0].bytes_sent), (None, 10_000));

        // A plain TCP connection has no subflows to report.
        let (tcp, _) = sys::stream_socket(&local, false).expect("socket");
        tcp.connect(&local.into()).expect("connect");
        assert!(subflows(&tcp).is_err());
    }
}
