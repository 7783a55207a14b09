//! Interfaces and their addresses over rtnetlink (`NETLINK_ROUTE`): a dump
//! of links (index ↔ name) and of addresses, and a watch on address
//! changes (`RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`) for roaming and on
//! link state (`RTMGRP_LINK`: carrier, up/down) for path health.
//!
//! Netlink, not `/sys/class/net`: sysfs shows the namespace it was mounted
//! in, while a netlink socket sees the namespace of the thread that opened
//! it.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socket2::Socket;
use tokio::io::unix::AsyncFd;

use super::socket::{self, NlSocket};
use super::wire::{self, Message, MsgWriter, NLM_F_DUMP, NLM_F_REQUEST};

/// `RTM_NEWLINK`.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR`.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`.
pub const RTM_DELADDR: u16 = 21;
/// `RTM_GETADDR`.
pub const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFF_UP: u32 = 0x1;
/// `IFF_LOWER_UP`: the driver signals carrier (link layer up).
const IFF_LOWER_UP: u32 = 0x1_0000;
/// `RTM_DELLINK`.
pub const RTM_DELLINK: u16 = 17;
/// `RTMGRP_LINK` (group `RTNLGRP_LINK` = 1): link state changes.
const RTMGRP_LINK: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
/// `RTMGRP_IPV4_IFADDR` (group `RTNLGRP_IPV4_IFADDR` = 5).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// `RTMGRP_IPV6_IFADDR` (group `RTNLGRP_IPV6_IFADDR` = 9).
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// `IFA_F_SECONDARY` / `IFA_F_TEMPORARY`.
pub const IFA_F_SECONDARY: u32 = 0x01;
/// `IFA_F_DADFAILED`.
pub const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_DEPRECATED`.
pub const IFA_F_DEPRECATED: u32 = 0x20;
/// `IFA_F_TENTATIVE`: IPv6 duplicate address detection still running.
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// `RT_SCOPE_UNIVERSE`.
pub const RT_SCOPE_UNIVERSE: u8 = 0;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name (`wlan0`).
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`): up and able to pass packets at
    /// the link layer.
    pub carrier: bool,
    /// The loopback interface.
    pub loopback: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Interface index.
    pub ifindex: u32,
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Scope (`RT_SCOPE_UNIVERSE` = 0 for global addresses).
    pub scope: u8,
    /// `IFA_F_*` flags.
    pub flags: u32,
}

impl Address {
    /// Whether subflows can use this address: global scope, not loopback
    /// or link-local, and (IPv6) past duplicate address detection and not
    /// deprecated.
    pub fn usable(&self) -> bool {
        let special = match self.addr {
            IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified(),
            IpAddr::V6(a) => {
                a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        self.scope == RT_SCOPE_UNIVERSE
            && !special
            && self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED) == 0
    }
}

/// A change the address watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrEvent {
    /// An address was added or changed (`RTM_NEWADDR`).
    New(Address),
    /// An address was removed (`RTM_DELADDR`).
    Del(Address),
    /// A link changed state (`RTM_NEWLINK`), or went away
    /// (`RTM_DELLINK`: reported with `up` and `carrier` false).
    Link(Link),
    /// The socket overran (`ENOBUFS`): events were lost; dump again.
    Resync,
}

/// `RTM_GETLINK` dump.
pub fn encode_dump_links(seq: u32) -> Vec<u8> {
    let mut w = MsgWriter::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    w.header(&[0u8; 16]);
    w.finish()
}

/// `RTM_GETADDR` dump of both families.
pub fn encode_dump_addrs(seq: u32) -> Vec<u8> {
    let mut w = MsgWriter::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
    // struct ifaddrmsg: family (AF_UNSPEC), prefixlen, flags, scope, index.
    w.header(&[0u8; 8]);
    w.finish()
}

/// Decodes an `RTM_NEWLINK` payload.
pub fn decode_link(payload: &[u8]) -> Option<Link> {
    let index = wire::as_u32(payload.get(4..8)?)?;
    let flags = wire::as_u32(payload.get(8..12)?)?;
    let name = wire::attrs(payload.get(16..)?)
        .find(|(ty, _)| *ty == IFLA_IFNAME)
        .and_then(|(_, p)| wire::as_str(p))?;
    Some(Link {
        index,
        name,
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
    })
}

fn ip_from(family: u8, p: &[u8]) -> Option<IpAddr> {
    match i32::from(family) {
        libc::AF_INET => {
            let o: [u8; 4] = p.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        libc::AF_INET6 => {
            let o: [u8; 16] = p.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// Decodes an `RTM_NEWADDR`/`RTM_DELADDR` payload. For IPv4 the local
/// address is `IFA_LOCAL` (`IFA_ADDRESS` is the peer on point-to-point
/// links); IPv6 has only `IFA_ADDRESS` unless point-to-point.
pub fn decode_address(payload: &[u8]) -> Option<Address> {
    let family = *payload.first()?;
    let prefix_len = *payload.get(1)?;
    let mut flags = u32::from(*payload.get(2)?);
    let scope = *payload.get(3)?;
    let ifindex = wire::as_u32(payload.get(4..8)?)?;
    let (mut local, mut address) = (None, None);
    for (ty, p) in wire::attrs(payload.get(8..)?) {
        match ty {
            IFA_LOCAL => local = ip_from(family, p),
            IFA_ADDRESS => address = ip_from(family, p),
            IFA_FLAGS => flags = wire::as_u32(p)?,
            _ => {}
        }
    }
    Some(Address {
        ifindex,
        addr: local.or(address)?,
        prefix_len,
        scope,
        flags,
    })
}

/// Decodes one rtnetlink message into an address event, if it is one.
pub fn decode_event(msg: &Message<'_>) -> Option<AddrEvent> {
    match msg.ty {
        RTM_NEWADDR => decode_address(msg.payload).map(AddrEvent::New),
        RTM_DELADDR => decode_address(msg.payload).map(AddrEvent::Del),
        RTM_NEWLINK => decode_link(msg.payload).map(AddrEvent::Link),
        RTM_DELLINK => decode_link(msg.payload).map(|l| {
            AddrEvent::Link(Link {
                up: false,
                carrier: false,
                ..l
            })
        }),
        _ => None,
    }
}

/// A snapshot of the interfaces and their addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interfaces {
    /// Every interface.
    pub links: Vec<Link>,
    /// Every address.
    pub addresses: Vec<Address>,
}

impl Interfaces {
    /// The name of interface `index`.
    pub fn name_of(&self, index: u32) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.as_str())
    }

    /// The interface that holds local address `addr` (to name the
    /// interface of an MPTCP subflow).
    pub fn iface_of(&self, addr: IpAddr) -> Option<&str> {
        let a = self.addresses.iter().find(|a| a.addr == addr)?;
        self.name_of(a.ifindex)
    }
}

/// A request/reply rtnetlink socket in the opener's network namespace.
#[derive(Debug)]
pub struct RouteSocket {
    sock: NlSocket,
}

impl RouteSocket {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            sock: NlSocket::open(libc::NETLINK_ROUTE)?,
        })
    }

    /// Every interface.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        self.sock
            .transact("list interfaces", encode_dump_links, |m| {
                if m.ty == RTM_NEWLINK {
                    out.extend(decode_link(m.payload));
                }
            })?;
        Ok(out)
    }

    /// Every address of every interface.
    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut out = Vec::new();
        self.sock
            .transact("list addresses", encode_dump_addrs, |m| {
                if m.ty == RTM_NEWADDR {
                    out.extend(decode_address(m.payload));
                }
            })?;
        Ok(out)
    }

    /// Interfaces and addresses, read now.
    pub fn snapshot(&mut self) -> io::Result<Interfaces> {
        Ok(Interfaces {
            links: self.links()?,
            addresses: self.addresses()?,
        })
    }

    /// The interface called `name`.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// The name of interface `index`.
    pub fn link_name(&mut self, index: u32) -> io::Result<Option<String>> {
        Ok(self
            .links()?
            .into_iter()
            .find(|l| l.index == index)
            .map(|l| l.name))
    }
}

/// A subscription to IPv4 and IPv6 address changes and link state
/// changes (carrier, up/down).
#[derive(Debug)]
pub struct AddrWatch {
    fd: AsyncFd<Socket>,
    buf: Vec<u8>,
}

impl AddrWatch {
    /// Subscribes in the caller's network namespace. Needs a tokio runtime.
    pub fn open() -> io::Result<Self> {
        let sock = socket::open_raw(libc::NETLINK_ROUTE)?;
        socket::bind_groups(&sock, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)?;
        // Roaming can bring bursts of changes; lost events force a resync.
        let _ = sock.set_recv_buffer_size(1 << 20);
        sock.set_nonblocking(true)?;
        Ok(Self {
            fd: socket::register(sock)?,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits for the next batch of address events.
    pub async fn next(&mut self) -> io::Result<Vec<AddrEvent>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|fd| fd.get_ref().read(&mut self.buf));
            match res {
                Ok(Ok(n)) => {
                    let data = self.buf.get(..n).unwrap_or_default();
                    let events: Vec<_> = wire::messages(data)
                        .filter_map(Result::ok)
                        .filter_map(|m| decode_event(&m))
                        .collect();
                    if !events.is_empty() {
                        return Ok(events);
                    }
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Ok(vec![AddrEvent::Resync]);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    #[test]
    fn dump_requests_have_the_rtnetlink_layout() {
        assert_eq!(
            encode_dump_addrs(7),
            hex("18 00 00 00 16 00 01 03 07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
        );
        assert_eq!(encode_dump_links(7).len(), 32);
        assert_eq!(&encode_dump_links(7)[4..8], &[0x12, 0, 1, 3]);
    }

    #[test]
    fn decodes_ipv4_address_using_ifa_local() {
        // ifaddrmsg: AF_INET /24 flags 0x80 scope 0 index 3; IFA_ADDRESS
        // (peer) 198.18.2.1, IFA_LOCAL 198.18.2.2, IFA_FLAGS 0x80.
        let p = hex("02 18 80 00 03 00 00 00
             08 00 01 00 c6 12 02 01
             08 00 02 00 c6 12 02 02
             08 00 08 00 80 00 00 00");
        let a = decode_address(&p).expect("address");
        assert_eq!(a.addr, "198.18.2.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            (a.ifindex, a.prefix_len, a.scope, a.flags),
            (3, 24, 0, 0x80)
        );
        assert!(a.usable());
    }

    #[test]
    fn tentative_and_link_local_ipv6_are_not_usable() {
        let mut p = hex("0a 40 40 00 02 00 00 00
             14 00 01 00 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02");
        let a = decode_address(&p).expect("address");
        assert_eq!(a.addr, "2001:db8::2".parse::<IpAddr>().expect("ip"));
        assert!(!a.usable(), "tentative");
        p[2] = 0;
        assert!(decode_address(&p).expect("address").usable());
        p[8 + 4] = 0xfe;
        p[8 + 5] = 0x80;
        p[3] = 253; // RT_SCOPE_LINK
        assert!(!decode_address(&p).expect("address").usable());
    }

    #[test]
    fn interfaces_name_the_holder_of_an_address() {
        let p = hex("02 18 80 00 03 00 00 00 08 00 02 00 c6 12 02 02");
        let snap = Interfaces {
            links: vec![Link {
                index: 3,
                name: "lte0".into(),
                up: true,
                carrier: true,
                loopback: false,
            }],
            addresses: vec![decode_address(&p).expect("address")],
        };
        assert_eq!(
            snap.iface_of("198.18.2.2".parse().expect("ip")),
            Some("lte0")
        );
        assert_eq!(snap.iface_of("198.18.1.2".parse().expect("ip")), None);
    }

    #[test]
    fn decodes_link_name_and_flags() {
        let p = hex("00 00 01 00 05 00 00 00 43 10 01 00 00 00 00 00
             09 00 03 00 6c 74 65 30 00 00 00 00");
        assert_eq!(
            decode_link(&p),
            Some(Link {
                index: 5,
                name: "lte0".into(),
                up: true,
                carrier: true,
                loopback: false
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)
        ) {
            for msg in wire::messages(&bytes).flatten() {
                let _ = decode_event(&msg);
                let _ = decode_link(msg.payload);
            }
            let _ = decode_address(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_well_framed_garbage(
            ty in proptest::sample::select(vec![wire::NLMSG_ERROR, 20, 21, 16]),
            flags in proptest::prelude::any::<u16>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)
        ) {
            let mut w = MsgWriter::new(ty, flags, 1);
            w.header(&payload);
            let bytes = w.finish();
            let msg = wire::messages(&bytes).next().expect("one message").expect("framed");
            let _ = decode_event(&msg);
            let _ = decode_link(msg.payload);
        }
    }
}
