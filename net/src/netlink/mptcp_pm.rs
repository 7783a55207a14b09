//! The kernel's MPTCP path manager over generic netlink (family
//! `mptcp_pm`, what `ip mptcp` uses): endpoints, limits, endpoint flags.
//!
//! Message encoders and decoders are pure functions checked against the
//! byte layouts of `include/uapi/linux/mptcp_pm.h` and
//! `include/uapi/linux/mptcp.h` (the `mptcp_pm` family, `MPTCP_PM_ATTR_*`); [`MptcpPm`] sends
//! them. Reading needs no privilege; every change needs `CAP_NET_ADMIN` in
//! the network namespace's user namespace (`EPERM` otherwise, reported as
//! `io::ErrorKind::PermissionDenied`, "needs `CAP_NET_ADMIN`").

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::socket::NlSocket;
use super::wire::{self, Message, MsgWriter, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

/// `GENL_ID_CTRL`, the generic netlink controller's fixed family id.
pub const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// The family name.
pub const MPTCP_PM_NAME: &str = "mptcp_pm";
/// `MPTCP_PM_VER`.
pub const MPTCP_PM_VER: u8 = 1;

/// `mptcp_pm` commands (§3.3).
pub mod cmd {
    /// Add an endpoint.
    pub const ADD_ADDR: u8 = 1;
    /// Delete an endpoint.
    pub const DEL_ADDR: u8 = 2;
    /// Get one endpoint, or dump all.
    pub const GET_ADDR: u8 = 3;
    /// Delete every endpoint.
    pub const FLUSH_ADDRS: u8 = 4;
    /// Set the limits.
    pub const SET_LIMITS: u8 = 5;
    /// Get the limits.
    pub const GET_LIMITS: u8 = 6;
    /// Change an endpoint's backup/fullmesh flags (sends `MP_PRIO`).
    pub const SET_FLAGS: u8 = 7;
}

const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;
const ADDR_FAMILY: u16 = 1;
const ADDR_ID: u16 = 2;
const ADDR_ADDR4: u16 = 3;
const ADDR_ADDR6: u16 = 4;
const ADDR_PORT: u16 = 5;
const ADDR_FLAGS: u16 = 6;
const ADDR_IF_IDX: u16 = 7;

/// Whether this kernel's in-kernel path manager has `laminar` endpoints
/// (`MPTCP_PM_ADDR_FLAG_LAMINAR` in `include/uapi/linux/mptcp.h`, Linux
/// 6.18): subflows from them go to the addresses the peer announces. The
/// flag cannot be probed (older kernels store unknown flag bits and ignore
/// them), so this reads the release in `/proc/sys/kernel/osrelease`.
pub fn laminar_supported() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| release_at_least(&r, (6, 18)))
        .unwrap_or(false)
}

/// Whether a kernel release string (`6.18.4-arch1`) is at least `want`.
fn release_at_least(release: &str, want: (u32, u32)) -> Option<bool> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse::<u32>()
        .ok()?;
    Some((major, minor) >= want)
}

/// Endpoint flags (`MPTCP_PM_ADDR_FLAG_*`), an open set: unknown bits
/// survive a round trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EndpointFlags(pub u32);

impl EndpointFlags {
    /// `signal`: announce the address to the peer (`ADD_ADDR`).
    pub const SIGNAL: Self = Self(1);
    /// `subflow`: open an extra subflow from this address.
    pub const SUBFLOW: Self = Self(2);
    /// `backup`: subflows from here carry the backup priority (`MP_PRIO`).
    pub const BACKUP: Self = Self(4);
    /// `fullmesh`: one subflow per known peer address.
    pub const FULLMESH: Self = Self(8);
    /// `implicit`: created by the kernel for an address seen in a subflow.
    pub const IMPLICIT: Self = Self(16);
    /// `laminar` (6.18): subflows towards announced addresses.
    pub const LAMINAR: Self = Self(32);
    /// The flags `SET_FLAGS` can change on the in-kernel path manager.
    pub const CHANGEABLE: Self = Self(4 | 8);

    const NAMES: [(Self, &'static str); 6] = [
        (Self::SIGNAL, "signal"),
        (Self::SUBFLOW, "subflow"),
        (Self::BACKUP, "backup"),
        (Self::FULLMESH, "fullmesh"),
        (Self::IMPLICIT, "implicit"),
        (Self::LAMINAR, "laminar"),
    ];

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with `other`'s bits set or cleared.
    #[must_use]
    pub fn with(self, other: Self, on: bool) -> Self {
        if on {
            Self(self.0 | other.0)
        } else {
            Self(self.0 & !other.0)
        }
    }
}

impl std::ops::BitOr for EndpointFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Display for EndpointFlags {
    /// The flags as `ip mptcp` spells them, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EndpointFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointFlags({self})")
    }
}

/// One path-manager endpoint (`ip mptcp endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Endpoint id (1..=255); 0 in a request lets the kernel choose.
    pub id: u8,
    /// The local address.
    pub addr: IpAddr,
    /// Port (0 = none; only for `signal` endpoints).
    pub port: u16,
    /// Flags.
    pub flags: EndpointFlags,
    /// Interface index the endpoint's subflows are bound to (0 = none).
    pub ifindex: i32,
}

/// The in-kernel path manager's per-namespace limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Extra subflows per connection (`subflows`).
    pub subflows: u32,
    /// `ADD_ADDR` announcements accepted per connection (`add_addr_accepted`).
    pub add_addr_accepted: u32,
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subflows {} add_addr_accepted {}",
            self.subflows, self.add_addr_accepted
        )
    }
}

/// A resolved generic netlink family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The dynamic family id (the message type of its messages).
    pub id: u16,
    /// Multicast groups: name and id.
    pub groups: Vec<(String, u32)>,
}

fn genl(family: u16, flags: u16, seq: u32, command: u8, version: u8) -> MsgWriter {
    let mut w = MsgWriter::new(family, flags, seq);
    w.header(&[command, version, 0, 0]);
    w
}

/// `CTRL_CMD_GETFAMILY` for `name` (REQUEST|ACK).
pub fn encode_get_family(seq: u32, name: &str) -> Vec<u8> {
    let mut w = genl(
        GENL_ID_CTRL,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
    );
    let mut z = name.as_bytes().to_vec();
    z.push(0);
    w.attr(CTRL_ATTR_FAMILY_NAME, &z);
    w.finish()
}

/// Decodes the controller's answer to [`encode_get_family`].
pub fn decode_family(genl_payload: &[u8]) -> Option<Family> {
    let attrs = genl_payload.get(4..)?;
    let mut id = None;
    let mut groups = Vec::new();
    for (ty, p) in wire::attrs(attrs) {
        match ty {
            CTRL_ATTR_FAMILY_ID => id = wire::as_u16(p),
            CTRL_ATTR_MCAST_GROUPS => {
                for (_, grp) in wire::attrs(p) {
                    let mut name = None;
                    let mut gid = None;
                    for (t, v) in wire::attrs(grp) {
                        match t {
                            CTRL_ATTR_MCAST_GRP_NAME => name = wire::as_str(v),
                            CTRL_ATTR_MCAST_GRP_ID => gid = wire::as_u32(v),
                            _ => {}
                        }
                    }
                    if let (Some(n), Some(g)) = (name, gid) {
                        groups.push((n, g));
                    }
                }
            }
            _ => {}
        }
    }
    Some(Family { id: id?, groups })
}

fn put_endpoint(w: &mut MsgWriter, ep: &Endpoint) {
    let nest = w.begin_nest(ATTR_ADDR);
    match ep.addr {
        IpAddr::V4(a) => {
            w.attr_u16(ADDR_FAMILY, libc::AF_INET as u16);
            w.attr(ADDR_ADDR4, &a.octets());
        }
        IpAddr::V6(a) => {
            w.attr_u16(ADDR_FAMILY, libc::AF_INET6 as u16);
            w.attr(ADDR_ADDR6, &a.octets());
        }
    }
    if ep.id != 0 {
        w.attr_u8(ADDR_ID, ep.id);
    }
    if ep.port != 0 {
        // Requests carry the port in host order (§3.3).
        w.attr_u16(ADDR_PORT, ep.port);
    }
    w.attr_u32(ADDR_FLAGS, ep.flags.0);
    if ep.ifindex != 0 {
        w.attr(ADDR_IF_IDX, &ep.ifindex.to_ne_bytes());
    }
    w.end_nest(nest);
}

fn put_id(w: &mut MsgWriter, id: u8, flags: Option<EndpointFlags>) {
    let nest = w.begin_nest(ATTR_ADDR);
    w.attr_u8(ADDR_ID, id);
    if let Some(f) = flags {
        w.attr_u32(ADDR_FLAGS, f.0);
    }
    w.end_nest(nest);
}

/// `ADD_ADDR` (REQUEST|ACK). An `id` of 0 lets the kernel pick one.
pub fn encode_add_addr(family: u16, seq: u32, ep: &Endpoint) -> Vec<u8> {
    let mut w = genl(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        cmd::ADD_ADDR,
        MPTCP_PM_VER,
    );
    put_endpoint(&mut w, ep);
    w.finish()
}

/// `DEL_ADDR` by endpoint id (REQUEST|ACK).
pub fn encode_del_addr(family: u16, seq: u32, id: u8) -> Vec<u8> {
    let mut w = genl(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        cmd::DEL_ADDR,
        MPTCP_PM_VER,
    );
    put_id(&mut w, id, None);
    w.finish()
}

/// `GET_ADDR` for one endpoint id (REQUEST; one reply).
pub fn encode_get_addr(family: u16, seq: u32, id: u8) -> Vec<u8> {
    let mut w = genl(family, NLM_F_REQUEST, seq, cmd::GET_ADDR, MPTCP_PM_VER);
    put_id(&mut w, id, None);
    w.finish()
}

/// `GET_ADDR` dump of every endpoint (REQUEST|DUMP).
pub fn encode_dump_addrs(family: u16, seq: u32) -> Vec<u8> {
    genl(
        family,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        cmd::GET_ADDR,
        MPTCP_PM_VER,
    )
    .finish()
}

/// `SET_LIMITS` (REQUEST|ACK).
pub fn encode_set_limits(family: u16, seq: u32, limits: Limits) -> Vec<u8> {
    let mut w = genl(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        cmd::SET_LIMITS,
        MPTCP_PM_VER,
    );
    w.attr_u32(ATTR_RCV_ADD_ADDRS, limits.add_addr_accepted);
    w.attr_u32(ATTR_SUBFLOWS, limits.subflows);
    w.finish()
}

/// `GET_LIMITS` (REQUEST; one reply).
pub fn encode_get_limits(family: u16, seq: u32) -> Vec<u8> {
    genl(family, NLM_F_REQUEST, seq, cmd::GET_LIMITS, MPTCP_PM_VER).finish()
}

/// `SET_FLAGS` on endpoint `id` (REQUEST|ACK): the in-kernel path manager
/// takes the backup and fullmesh bits of `flags` (the others are ignored
/// and not sent) and sends `MP_PRIO` on live subflows when backup changes.
pub fn encode_set_flags(family: u16, seq: u32, id: u8, flags: EndpointFlags) -> Vec<u8> {
    let mut w = genl(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        cmd::SET_FLAGS,
        MPTCP_PM_VER,
    );
    put_id(
        &mut w,
        id,
        Some(EndpointFlags(flags.0 & EndpointFlags::CHANGEABLE.0)),
    );
    w.finish()
}

/// `FLUSH_ADDRS` (REQUEST|ACK): deletes every endpoint of the namespace.
pub fn encode_flush(family: u16, seq: u32) -> Vec<u8> {
    genl(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        cmd::FLUSH_ADDRS,
        MPTCP_PM_VER,
    )
    .finish()
}

/// Decodes the `ATTR_ADDR` nest of a `GET_ADDR` reply (genl header
/// included in `genl_payload`).
pub fn decode_endpoint(genl_payload: &[u8]) -> Option<Endpoint> {
    let (_, nest) = wire::attrs(genl_payload.get(4..)?).find(|(ty, _)| *ty == ATTR_ADDR)?;
    let mut id = 0;
    let mut addr = None;
    let mut port = 0;
    let mut flags = EndpointFlags::default();
    let mut ifindex = 0;
    for (ty, p) in wire::attrs(nest) {
        match ty {
            ADDR_ID => id = wire::as_u8(p)?,
            ADDR_ADDR4 => {
                let o: [u8; 4] = p.get(..4)?.try_into().ok()?;
                addr = Some(IpAddr::V4(Ipv4Addr::from(o)));
            }
            ADDR_ADDR6 => {
                let o: [u8; 16] = p.get(..16)?.try_into().ok()?;
                addr = Some(IpAddr::V6(Ipv6Addr::from(o)));
            }
            ADDR_PORT => port = wire::as_u16(p)?,
            ADDR_FLAGS => flags = EndpointFlags(wire::as_u32(p)?),
            ADDR_IF_IDX => ifindex = wire::as_u32(p)?.cast_signed(),
            _ => {}
        }
    }
    Some(Endpoint {
        id,
        addr: addr?,
        port,
        flags,
        ifindex,
    })
}

/// Decodes a `GET_LIMITS` reply (genl header included).
pub fn decode_limits(genl_payload: &[u8]) -> Option<Limits> {
    let mut limits = Limits::default();
    let (mut sub, mut rcv) = (false, false);
    for (ty, p) in wire::attrs(genl_payload.get(4..)?) {
        match ty {
            ATTR_SUBFLOWS => {
                limits.subflows = wire::as_u32(p)?;
                sub = true;
            }
            ATTR_RCV_ADD_ADDRS => {
                limits.add_addr_accepted = wire::as_u32(p)?;
                rcv = true;
            }
            _ => {}
        }
    }
    (sub && rcv).then_some(limits)
}

/// A connection to the kernel's `mptcp_pm` generic netlink family, in the
/// network namespace of the thread that opened it.
#[derive(Debug)]
pub struct MptcpPm {
    sock: NlSocket,
    family: Family,
}

fn bad_reply(op: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{op}: unexpected reply"),
    )
}

impl MptcpPm {
    /// Opens a generic netlink socket and resolves the `mptcp_pm` family.
    /// A kernel without MPTCP answers `ENOENT` ("no `mptcp_pm` family").
    pub fn open() -> io::Result<Self> {
        let mut sock = NlSocket::open(libc::NETLINK_GENERIC)?;
        let mut family = None;
        sock.transact(
            "resolve the mptcp_pm netlink family",
            |seq| encode_get_family(seq, MPTCP_PM_NAME),
            |m: &Message<'_>| family = decode_family(m.payload),
        )?;
        let family = family.ok_or_else(|| bad_reply("resolve the mptcp_pm family"))?;
        Ok(Self { sock, family })
    }

    /// The resolved family (id and multicast groups).
    pub fn family(&self) -> &Family {
        &self.family
    }

    /// Adds `ep` (`ip mptcp endpoint add`). An address that already has an
    /// endpoint fails with kind `AlreadyExists`.
    pub fn add_endpoint(&mut self, ep: &Endpoint) -> io::Result<()> {
        let fam = self.family.id;
        let op = format!("add MPTCP endpoint {}", ep.addr);
        self.sock
            .transact(&op, |seq| encode_add_addr(fam, seq, ep), |_| {})
    }

    /// Deletes endpoint `id` (`ip mptcp endpoint delete id N`).
    pub fn delete_endpoint(&mut self, id: u8) -> io::Result<()> {
        let fam = self.family.id;
        let op = format!("delete MPTCP endpoint id {id}");
        self.sock
            .transact(&op, |seq| encode_del_addr(fam, seq, id), |_| {})
    }

    /// Endpoint `id`, if it exists.
    pub fn endpoint(&mut self, id: u8) -> io::Result<Option<Endpoint>> {
        let fam = self.family.id;
        let mut out = None;
        let r = self.sock.transact(
            "get MPTCP endpoint",
            |seq| encode_get_addr(fam, seq, id),
            |m| out = decode_endpoint(m.payload),
        );
        match r {
            Ok(()) => Ok(out),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every endpoint (`ip mptcp endpoint show`).
    pub fn endpoints(&mut self) -> io::Result<Vec<Endpoint>> {
        let fam = self.family.id;
        let mut out = Vec::new();
        self.sock.transact(
            "list MPTCP endpoints",
            |seq| encode_dump_addrs(fam, seq),
            |m| out.extend(decode_endpoint(m.payload)),
        )?;
        Ok(out)
    }

    /// The limits (`ip mptcp limits show`).
    pub fn limits(&mut self) -> io::Result<Limits> {
        let fam = self.family.id;
        let mut out = None;
        self.sock.transact(
            "get MPTCP limits",
            |seq| encode_get_limits(fam, seq),
            |m| out = decode_limits(m.payload),
        )?;
        out.ok_or_else(|| bad_reply("get MPTCP limits"))
    }

    /// Sets the limits (`ip mptcp limits set`).
    pub fn set_limits(&mut self, limits: Limits) -> io::Result<()> {
        let fam = self.family.id;
        self.sock.transact(
            "set MPTCP limits",
            |seq| encode_set_limits(fam, seq, limits),
            |_| {},
        )
    }

    /// Sets endpoint `id`'s backup/fullmesh flags (`ip mptcp endpoint
    /// change id N backup|nobackup`); live subflows get `MP_PRIO`.
    pub fn set_flags(&mut self, id: u8, flags: EndpointFlags) -> io::Result<()> {
        let fam = self.family.id;
        let op = format!("change MPTCP endpoint id {id}");
        self.sock
            .transact(&op, |seq| encode_set_flags(fam, seq, id, flags), |_| {})
    }

    /// Deletes every endpoint (`ip mptcp endpoint flush`).
    pub fn flush(&mut self) -> io::Result<()> {
        let fam = self.family.id;
        self.sock.transact(
            "flush MPTCP endpoints",
            |seq| encode_flush(fam, seq),
            |_| {},
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laminar_needs_a_6_18_release() {
        for (r, want) in [
            ("6.18.44-fc-v1272\n", Some(true)),
            ("6.18", Some(true)),
            ("7.0.0", Some(true)),
            ("6.17.9-arch1-1", Some(false)),
            ("5.15.0-91-generic", Some(false)),
            ("6.6.0+", Some(false)),
            ("garbage", None),
        ] {
            assert_eq!(release_at_least(r, (6, 18)), want, "{r}");
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    #[test]
    fn get_family_matches_spec_bytes() {
        let want = hex("24 00 00 00 10 00 05 00 01 00 00 00 00 00 00 00
             03 01 00 00
             0d 00 02 00 6d 70 74 63 70 5f 70 6d 00 00 00 00");
        assert_eq!(encode_get_family(1, "mptcp_pm"), want);
    }

    #[test]
    fn add_addr_matches_spec_bytes() {
        let ep = Endpoint {
            id: 7,
            addr: "198.18.1.2".parse().expect("ip"),
            port: 0,
            flags: EndpointFlags::SUBFLOW | EndpointFlags::BACKUP,
            ifindex: 2,
        };
        let want = hex("40 00 00 00 1c 00 05 00 02 00 00 00 00 00 00 00
             01 01 00 00
             2c 00 01 80
             06 00 01 00 02 00 00 00
             08 00 03 00 c6 12 01 02
             05 00 02 00 07 00 00 00
             08 00 06 00 06 00 00 00
             08 00 07 00 02 00 00 00");
        assert_eq!(encode_add_addr(28, 2, &ep), want);
    }

    #[test]
    fn add_addr_ipv6_uses_family_10_and_a_16_byte_address() {
        let ep = Endpoint {
            id: 0,
            addr: "2001:db8::1".parse().expect("ip"),
            port: 0,
            flags: EndpointFlags::SUBFLOW,
            ifindex: 3,
        };
        let bytes = encode_add_addr(28, 9, &ep);
        let want_nest = hex("06 00 01 00 0a 00 00 00
             14 00 04 00 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
             08 00 06 00 02 00 00 00
             08 00 07 00 03 00 00 00");
        assert_eq!(&bytes[24..], &want_nest[..]);
        assert_eq!(&bytes[20..24], &[0x30, 0, 0x01, 0x80]);
    }

    #[test]
    fn del_addr_matches_spec_bytes() {
        let want = hex("20 00 00 00 1c 00 05 00 03 00 00 00 00 00 00 00
             02 01 00 00
             0c 00 01 80 05 00 02 00 07 00 00 00");
        assert_eq!(encode_del_addr(28, 3, 7), want);
    }

    #[test]
    fn set_limits_matches_spec_bytes() {
        let want = hex("24 00 00 00 1c 00 05 00 04 00 00 00 00 00 00 00
             05 01 00 00
             08 00 02 00 02 00 00 00
             08 00 03 00 02 00 00 00");
        let limits = Limits {
            subflows: 2,
            add_addr_accepted: 2,
        };
        assert_eq!(encode_set_limits(28, 4, limits), want);
    }

    #[test]
    fn get_limits_and_dump_match_spec_bytes() {
        assert_eq!(
            encode_get_limits(28, 5),
            hex("14 00 00 00 1c 00 01 00 05 00 00 00 00 00 00 00 06 01 00 00")
        );
        assert_eq!(
            encode_dump_addrs(28, 6),
            hex("14 00 00 00 1c 00 01 03 06 00 00 00 00 00 00 00 03 01 00 00")
        );
    }

    #[test]
    fn set_flags_sends_id_and_only_changeable_flags() {
        let bytes = encode_set_flags(28, 8, 2, EndpointFlags::SUBFLOW | EndpointFlags::BACKUP);
        let want = hex("28 00 00 00 1c 00 05 00 08 00 00 00 00 00 00 00
             07 01 00 00
             14 00 01 80 05 00 02 00 02 00 00 00 08 00 06 00 04 00 00 00");
        assert_eq!(bytes, want);
    }

    #[test]
    fn decodes_endpoint_and_limits_replies() {
        // genl header, then the ATTR_ADDR nest the kernel sends for
        // "198.18.2.2 id 2 subflow dev lte0(3)".
        let payload = hex("03 01 00 00
             2c 00 01 80
             06 00 01 00 02 00 00 00
             05 00 02 00 02 00 00 00
             08 00 03 00 c6 12 02 02
             08 00 06 00 02 00 00 00
             08 00 07 00 03 00 00 00
             06 00 05 00 00 00 00 00");
        assert_eq!(
            decode_endpoint(&payload),
            Some(Endpoint {
                id: 2,
                addr: "198.18.2.2".parse().expect("ip"),
                port: 0,
                flags: EndpointFlags::SUBFLOW,
                ifindex: 3,
            })
        );
        let limits = hex("06 01 00 00 08 00 02 00 00 00 00 00 08 00 03 00 02 00 00 00");
        assert_eq!(
            decode_limits(&limits),
            Some(Limits {
                subflows: 2,
                add_addr_accepted: 0
            })
        );
        assert_eq!(decode_limits(&limits[..12]), None, "subflows missing");
    }

    #[test]
    fn decodes_family_id_and_groups() {
        let payload = hex("01 02 00 00
             06 00 01 00 1c 00 00 00
             0d 00 02 00 6d 70 74 63 70 5f 70 6d 00 00 00 00
             34 00 07 80
               18 00 01 80 08 00 02 00 08 00 00 00 09 00 01 00 63 6d 64 73 00 00 00 00
               18 00 02 80 08 00 02 00 09 00 00 00 09 00 01 00 65 76 74 73 00 00 00 00");
        assert_eq!(
            decode_family(&payload),
            Some(Family {
                id: 28,
                groups: vec![("cmds".into(), 8), ("evts".into(), 9)]
            })
        );
    }

    #[test]
    fn flags_print_like_ip_mptcp() {
        assert_eq!(
            (EndpointFlags::SUBFLOW | EndpointFlags::BACKUP).to_string(),
            "subflow backup"
        );
        assert_eq!(EndpointFlags(2 | 0x100).to_string(), "subflow 0x100");
        assert_eq!(EndpointFlags::default().to_string(), "");
    }
}
