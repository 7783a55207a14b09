//! The Connect TLV, type 10 (RFC 8803, spec digest §2.6 and §4.2).
//!
//! ```text
//! | Type=0x0A | Length | Remote Peer Port (2) |
//! | Remote Peer IP Address (16, IPv4 as ::ffff:a.b.c.d)  |
//! | TCP Options (Extended Connect only), zero-padded      |
//! ```
//!
//! A Length of 5 words is a base Connect; more is an Extended Connect whose
//! TCP Options field is a sequence of `Kind, Length (>= 2), Value` entries
//! ending in zero padding. The reader stops at a zero Kind (padding) and
//! skips the one-byte NOP (kind 1), which the converter "MUST ignore".

use core::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::error::{EncodeError, Error};
use super::tlv::TlvType;
use crate::codec::{Out, Reader, pad4};

crate::code_point! {
    /// A TCP option Kind (IANA "TCP Parameters"), as carried in a Connect
    /// TLV, a Supported TCP Extensions TLV and Unsupported TCP Option errors.
    /// Named: the kinds RFC 8803 discusses (digest §4.2).
    pub struct TcpOptionKind(u8) {
        /// End of Option List; zero padding.
        EOL = 0,
        /// No-Operation.
        NOP = 1,
        /// Maximum Segment Size.
        MSS = 2,
        /// Window Scale.
        WINDOW_SCALE = 3,
        /// SACK-Permitted.
        SACK_PERMITTED = 4,
        /// SACK.
        SACK = 5,
        /// Timestamps.
        TIMESTAMPS = 8,
        /// TCP Authentication Option: a converter must refuse it.
        TCP_AO = 29,
        /// Multipath TCP.
        MPTCP = 30,
        /// TCP Fast Open.
        FAST_OPEN = 34,
    }
}

impl TcpOptionKind {
    /// Kinds a converter "MUST ignore" in a Connect TLV: EOL, NOP, MSS,
    /// Window Scale, SACK (digest §4.2, N21). They are never refused.
    pub fn ignored_in_connect(self) -> bool {
        matches!(self.0, 0 | 1 | 2 | 3 | 5)
    }

    /// False for the kinds a Supported TCP Extensions TLV "MUST NOT"
    /// announce: 0, 1, 2, 3, 5 and TCP-AO (digest §2.5, N20).
    pub fn may_be_announced(self) -> bool {
        !matches!(self.0, 0 | 1 | 2 | 3 | 5 | 29)
    }
}

/// Longest Value of a TCP option: its Length byte counts Kind and Length.
pub const MAX_TCP_OPTION_VALUE_LEN: usize = 255 - 2;

/// One entry of an Extended Connect's TCP Options field.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TcpOption {
    kind: TcpOptionKind,
    value: Vec<u8>,
}

impl TcpOption {
    /// An option of `kind` with `value` (empty: "A length of two indicates
    /// the absence of the Value field", e.g. `1e 02` for MPTCP, `22 02` for
    /// a TFO cookie request). Refuses EOL and NOP ("option types 0 (EOL) and
    /// 1 (NOP) MUST NOT be placed inside the TCP options field", §2.6) and
    /// values longer than a Length byte can describe.
    pub fn new(kind: TcpOptionKind, value: impl Into<Vec<u8>>) -> Result<Self, EncodeError> {
        if matches!(kind, TcpOptionKind::EOL | TcpOptionKind::NOP) {
            return Err(EncodeError::ForbiddenTcpOptionKind(kind));
        }
        let value = value.into();
        if value.len() > MAX_TCP_OPTION_VALUE_LEN {
            return Err(EncodeError::TcpOptionTooLong {
                kind,
                len: value.len(),
            });
        }
        Ok(Self { kind, value })
    }

    /// The Kind.
    pub fn kind(&self) -> TcpOptionKind {
        self.kind
    }

    /// The Value (empty when the Length is 2).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Bytes on the wire: Kind, Length, Value.
    pub fn encoded_len(&self) -> usize {
        2 + self.value.len()
    }
}

impl fmt::Debug for TcpOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if !self.value.is_empty() {
            f.write_str("=")?;
            for b in &self.value {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// A Connect TLV: the destination (or, for incoming connections, the remote
/// source) and the TCP options the client wants in the converter's SYN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connect {
    /// Remote Peer Port.
    pub port: u16,
    /// Remote Peer IP Address as on the wire: "MUST be encoded as an IPv6
    /// address. IPv4 addresses MUST be encoded using the IPv4-Mapped IPv6
    /// Address format" (§2.6). See [`Connect::ip`].
    pub addr: Ipv6Addr,
    /// TCP options; non-empty makes this an Extended Connect.
    pub tcp_options: Vec<TcpOption>,
}

impl Connect {
    /// A base Connect to `target`, IPv4 addresses mapped to `::ffff:a.b.c.d`.
    pub fn new(target: SocketAddr) -> Self {
        let addr = match target.ip() {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        Self {
            port: target.port(),
            addr,
            tcp_options: Vec::new(),
        }
    }

    /// The same Connect with `tcp_options` (an Extended Connect if any).
    #[must_use]
    pub fn with_tcp_options(mut self, tcp_options: Vec<TcpOption>) -> Self {
        self.tcp_options = tcp_options;
        self
    }

    /// The destination address, IPv4-mapped addresses unmapped.
    pub fn ip(&self) -> IpAddr {
        match self.addr.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(self.addr),
        }
    }

    /// The destination address and port, IPv4-mapped addresses unmapped.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }

    /// True for an Extended Connect (a TCP Options field is present), to
    /// which a converter "MUST return" an Extended TCP Header TLV (N17).
    pub fn is_extended(&self) -> bool {
        !self.tcp_options.is_empty()
    }

    /// The options a converter acts on: all but the kinds it "MUST ignore"
    /// (MSS, Window Scale, SACK; see [`TcpOptionKind::ignored_in_connect`]).
    pub fn requested_tcp_options(&self) -> impl Iterator<Item = &TcpOption> + '_ {
        self.tcp_options
            .iter()
            .filter(|o| !o.kind.ignored_in_connect())
    }

    /// True if the destination is one §2.6 forbids: "Remote Peer IP address
    /// field MUST NOT include multicast, broadcast, and host loopback
    /// addresses" (see [`is_forbidden_destination`]).
    pub fn has_forbidden_destination(&self) -> bool {
        is_forbidden_destination(self.ip())
    }

    /// Bytes after Type and Length: port, address, options (unpadded).
    pub(crate) fn body_len(&self) -> usize {
        self.tcp_options
            .iter()
            .fold(18usize, |n, o| n.saturating_add(o.encoded_len()))
    }

    /// Writes port, address and options; the TLV writer pads.
    pub(crate) fn encode_body<B: Out>(&self, buf: &mut B) {
        buf.put_u16(self.port);
        buf.put_slice(&self.addr.octets());
        for o in &self.tcp_options {
            buf.put_u8(o.kind.0);
            // At most 255: checked by TcpOption::new.
            buf.put_u8((2 + o.value.len()) as u8);
            buf.put_slice(&o.value);
        }
        debug_assert!(pad4(2 + self.body_len()) < 4);
    }

    /// Parses the body of a Connect TLV (after Type and Length).
    pub(crate) fn parse_body(body: &[u8]) -> Result<Self, Error> {
        let too_short = |_| Error::TlvTooShort(TlvType::CONNECT);
        let mut r = Reader::new(body);
        let port = r.u16().map_err(too_short)?;
        let addr = Ipv6Addr::from(r.array::<16>().map_err(too_short)?);
        // Bounded by the TLV: at most 498 two-byte options in 1016 bytes.
        let mut tcp_options = Vec::new();
        while let Ok(kind) = r.u8() {
            match TcpOptionKind(kind) {
                // "The TCP options field always ends on a 32-bit boundary
                // after being padded with zeros": a zero Kind is padding.
                TcpOptionKind::EOL => break,
                // NOP is one byte in TCP; the converter "MUST ignore" it.
                TcpOptionKind::NOP => continue,
                _ => {}
            }
            let past = |_| Error::TcpOptionPastTlv { kind };
            let len = r.u8().map_err(past)?;
            // "minimum value for the TCP option Length is 2".
            if len < 2 {
                return Err(Error::TcpOptionTooShort { kind, len });
            }
            let value = r.take(usize::from(len) - 2).map_err(past)?;
            tcp_options.push(TcpOption {
                kind: TcpOptionKind(kind),
                value: value.to_vec(),
            });
        }
        Ok(Self {
            port,
            addr,
            tcp_options,
        })
    }
}

impl From<SocketAddr> for Connect {
    fn from(target: SocketAddr) -> Self {
        Self::new(target)
    }
}

/// True for the destinations a converter answers with Malformed Message:
/// loopback (127.0.0.0/8, `::1`), multicast (224.0.0.0/4, `ff00::/8`), the
/// limited broadcast 255.255.255.255 (§2.6, N12), and the unspecified
/// 0.0.0.0 and `::` ("not listed, but rejecting them as Malformed is
/// sensible", digest §2.6). IPv4-mapped addresses are checked as IPv4, so
/// `::ffff:127.0.0.1` is forbidden too.
pub fn is_forbidden_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_unspecified()
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_forbidden_destination(IpAddr::V4(v4)),
            None => a.is_loopback() || a.is_multicast() || a.is_unspecified(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::Decoded;
    use crate::convert::testing::{assert_splits, hex};
    use crate::convert::{Message, Tlv};

    fn only_connect(bytes: &[u8]) -> Connect {
        let Ok(Decoded::Complete { msg, len }) = assert_splits(Message::decode, bytes) else {
            panic!("{bytes:02x?} does not decode");
        };
        assert_eq!(len, bytes.len());
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, bytes, "re-encoding");
        let [Tlv::Connect(c)] = msg.tlvs() else {
            panic!("not one Connect TLV: {msg:?}");
        };
        c.clone()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn t1_connect_to_ipv4_mapped() {
        let c = only_connect(&hex(
            "01 06 22 63 0a 05 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01",
        ));
        assert_eq!(c, Connect::new(sa("10.1.1.1:8080")));
        assert_eq!(c.port, 8080);
        assert_eq!(c.addr, "::ffff:10.1.1.1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(c.ip(), IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)));
        assert_eq!(c.socket_addr(), sa("10.1.1.1:8080"));
        assert!(!c.is_extended());
        assert!(!c.has_forbidden_destination());
    }

    #[test]
    fn t4_connect_to_ipv6() {
        let c = only_connect(&hex(
            "01 06 22 63 0a 05 1f 90 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01",
        ));
        assert_eq!(c, Connect::new(sa("[fd00::1]:8080")));
        assert_eq!(c.ip(), "fd00::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn libconvert_connect_vector() {
        // check_convert_util.c: ::1:5ee:bad:c0de port 12345.
        let c = only_connect(&hex(
            "01 06 22 63 0a 05 30 39 00 00 00 00 00 00 00 00 00 01 05 ee 0b ad c0 de",
        ));
        assert_eq!(c, Connect::new(sa("[::1:5ee:bad:c0de]:12345")));
    }

    #[test]
    fn t14_extended_connect_tfo_request_and_mptcp() {
        let c = only_connect(&hex(
            "01 07 22 63 0a 06 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01 22 02 1e 02",
        ));
        let expected = Connect::new(sa("10.1.1.1:8080")).with_tcp_options(vec![
            TcpOption::new(TcpOptionKind::FAST_OPEN, []).unwrap(),
            TcpOption::new(TcpOptionKind::MPTCP, []).unwrap(),
        ]);
        assert_eq!(c, expected);
        assert!(c.is_extended());
        assert_eq!(format!("{:?}", c.tcp_options), "[FAST_OPEN, MPTCP]");
    }

    #[test]
    fn extended_connect_pads_options_with_zeros() {
        // TFO with a 6-byte cookie (8 bytes), MSS (4), Window Scale (3):
        // 15 option bytes, padded with one zero to 9 words.
        let c = Connect::new(sa("10.1.1.1:80")).with_tcp_options(vec![
            TcpOption::new(TcpOptionKind::FAST_OPEN, hex("01 02 03 04 05 06")).unwrap(),
            TcpOption::new(TcpOptionKind::MSS, hex("05 b4")).unwrap(),
            TcpOption::new(TcpOptionKind::WINDOW_SCALE, hex("07")).unwrap(),
        ]);
        let msg = Message::new(vec![Tlv::Connect(c.clone())]).unwrap();
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(
            out[4..],
            hex("0a 09 00 50 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01
                 22 08 01 02 03 04 05 06 02 04 05 b4 03 03 07 00")[..]
        );
        assert_eq!(only_connect(&out), c);
        // MSS and Window Scale are ignored by a converter.
        assert_eq!(
            c.requested_tcp_options()
                .map(TcpOption::kind)
                .collect::<Vec<_>>(),
            [TcpOptionKind::FAST_OPEN]
        );
    }

    #[test]
    fn skips_nop_and_stops_at_padding() {
        let bytes = hex(
            "01 08 22 63 0a 07 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01
             01 1e 02 00 07 07 07 07",
        );
        let (msg, len) = Message::decode(&bytes).unwrap().complete().unwrap();
        assert_eq!(len, bytes.len());
        let [Tlv::Connect(c)] = msg.tlvs() else {
            panic!("{msg:?}");
        };
        assert_eq!(
            c.tcp_options,
            [TcpOption::new(TcpOptionKind::MPTCP, []).unwrap()]
        );
    }

    #[test]
    fn rejects_connect_shorter_than_5_words() {
        let bytes = hex("01 05 22 63 0a 04 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff");
        assert_eq!(
            assert_splits(Message::decode, &bytes),
            Err(Error::TlvTooShort(TlvType::CONNECT))
        );
    }

    #[test]
    fn rejects_tcp_option_length_below_2() {
        let bytes = hex(
            "01 07 22 63 0a 06 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01 22 01 00 00",
        );
        assert_eq!(
            assert_splits(Message::decode, &bytes),
            Err(Error::TcpOptionTooShort { kind: 0x22, len: 1 })
        );
    }

    #[test]
    fn rejects_tcp_option_past_the_tlv() {
        let bytes = hex(
            "01 07 22 63 0a 06 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01 22 0a 01 02",
        );
        assert_eq!(
            assert_splits(Message::decode, &bytes),
            Err(Error::TcpOptionPastTlv { kind: 0x22 })
        );
    }

    #[test]
    fn tcp_option_refuses_eol_nop_and_long_values() {
        assert_eq!(
            TcpOption::new(TcpOptionKind::EOL, []),
            Err(EncodeError::ForbiddenTcpOptionKind(TcpOptionKind::EOL))
        );
        assert_eq!(
            TcpOption::new(TcpOptionKind::NOP, []),
            Err(EncodeError::ForbiddenTcpOptionKind(TcpOptionKind::NOP))
        );
        assert!(TcpOption::new(TcpOptionKind(99), vec![0; 253]).is_ok());
        assert_eq!(
            TcpOption::new(TcpOptionKind(99), vec![0; 254]),
            Err(EncodeError::TcpOptionTooLong {
                kind: TcpOptionKind(99),
                len: 254
            })
        );
    }

    #[test]
    fn forbids_loopback_multicast_broadcast_unspecified_in_both_forms() {
        let forbidden = [
            "127.0.0.1",
            "127.255.0.9",
            "224.0.0.1",
            "239.255.255.255",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "ff02::1",
            "ff0e::1234",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:224.0.0.251",
            "::ffff:255.255.255.255",
            "::ffff:0.0.0.0",
        ];
        for ip in forbidden {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_forbidden_destination(ip), "{ip}");
            assert!(
                Connect::new(SocketAddr::new(ip, 80)).has_forbidden_destination(),
                "{ip}"
            );
        }
        let allowed = [
            "10.1.1.1",
            "8.8.8.8",
            "223.255.255.255",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ];
        for ip in allowed {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_forbidden_destination(ip), "{ip}");
        }
    }

    #[test]
    fn maps_and_unmaps_ipv4() {
        let c = Connect::from(sa("192.0.2.7:443"));
        assert_eq!(c.addr.octets()[10..], [0xff, 0xff, 192, 0, 2, 7]);
        assert_eq!(c.socket_addr(), sa("192.0.2.7:443"));
        // IPv4-compatible (::a.b.c.d, deprecated) addresses stay IPv6.
        let compat = Connect {
            port: 1,
            addr: "::10.1.1.1".parse().unwrap(),
            tcp_options: Vec::new(),
        };
        assert!(compat.ip().is_ipv6());
    }
}
