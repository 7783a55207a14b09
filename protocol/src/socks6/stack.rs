//! Stack options (kind 1): per-leg IP, TCP and UDP settings (draft -11
//! §8.1, spec digest §3.2).
//!
//! The option body is four bytes: `(leg << 6) | level`, code, and two data
//! bytes. Every option -11 defines has a typed [`StackValue`]; other
//! (level, code) pairs, and known ones whose data bytes do not fit the typed
//! layout (non-zero padding, a Reserve byte above 1), are kept as
//! [`StackValue::Other`] so they re-encode unchanged.

use bytes::BufMut;

crate::code_point! {
    /// Which leg of the proxied connection a Stack option applies to (the
    /// top two bits of byte 4). The values are bit masks: `BOTH` is
    /// `CLIENT_PROXY | PROXY_REMOTE`.
    pub struct Leg(u8) {
        /// Between client and proxy.
        CLIENT_PROXY = 1,
        /// Between proxy and remote host.
        PROXY_REMOTE = 2,
        /// Both legs.
        BOTH = 3,
    }
}

impl Leg {
    /// True if the two legs share a leg (`BOTH` overlaps either).
    pub fn overlaps(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

crate::code_point! {
    /// The protocol level a Stack option applies to (the low six bits of
    /// byte 4).
    pub struct Level(u8) {
        /// IPv4 or IPv6.
        IP = 1,
        /// IPv4 only (no codes defined).
        IPV4 = 2,
        /// IPv6 only (no codes defined).
        IPV6 = 3,
        /// TCP.
        TCP = 4,
        /// UDP.
        UDP = 5,
    }
}

crate::code_point! {
    /// The Availability byte of Happy Eyeballs, No Fragmentation, Multipath
    /// and UDP Error. In a Request it says whether the client wants the
    /// feature; in an Operation Reply whether the proxy performs it. These
    /// are the draft's values; libsocks6msg inverts them for Multipath.
    pub struct Availability(u8) {
        /// Not desired (client) / not performed or available (proxy).
        UNAVAILABLE = 0x01,
        /// Desired (client) / performed or available (proxy).
        AVAILABLE = 0x02,
    }
}

crate::code_point! {
    /// The Parity byte of the Port Parity option (values of -11; -10 used
    /// 0 for even and 1 for odd).
    pub struct Parity(u8) {
        /// No particular parity.
        NONE = 0x00,
        /// An even port.
        EVEN = 0x01,
        /// An odd port.
        ODD = 0x02,
    }
}

/// What a Stack option sets, with its level and code implied by the
/// variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StackValue {
    /// IP TOS (level 1, code 1).
    Tos(u8),
    /// Happy Eyeballs (level 1, code 2); meaningful only for a domain-name
    /// Request address.
    HappyEyeballs(Availability),
    /// IP TTL or hop limit (level 1, code 3).
    Ttl(u8),
    /// No Fragmentation (level 1, code 4).
    NoFragmentation(Availability),
    /// TCP Fast Open (level 4, code 1): the largest SYN payload the proxy
    /// may send, 0 for any size.
    Tfo(u16),
    /// Multipath TCP (level 4, code 2).
    Mptcp(Availability),
    /// Listen Backlog for BIND in a session (level 4, code 3).
    ListenBacklog(u16),
    /// Opt in to UDP Error messages (level 5, code 1).
    UdpError(Availability),
    /// Port Parity for UDP ASSOCIATE (level 5, code 2).
    PortParity {
        /// The wanted parity.
        parity: Parity,
        /// Whether to reserve the counterpart port.
        reserve: bool,
    },
    /// Any other level and code, or a known one whose data bytes do not
    /// match the layout above; kept as read.
    Other {
        /// The level (six bits).
        level: Level,
        /// The code.
        code: u8,
        /// The two data bytes.
        data: [u8; 2],
    },
}

/// A Stack option: a value and the leg it applies to.
///
/// The level and code are derived from [`StackValue`] rather than stored
/// next to it, so they cannot disagree with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StackOption {
    /// The leg.
    pub leg: Leg,
    /// The value, which implies level and code.
    pub value: StackValue,
}

impl StackOption {
    /// Length of the option body (every -11 Stack option has Length 8).
    pub(crate) const BODY_LEN: usize = 4;

    /// A Stack option for `leg`.
    pub fn new(leg: Leg, value: StackValue) -> Self {
        Self { leg, value }
    }

    /// The protocol level.
    pub fn level(&self) -> Level {
        self.parts().0
    }

    /// The code within the level.
    pub fn code(&self) -> u8 {
        self.parts().1
    }

    /// True if leg and level fit their bits and the leg is not 0, i.e. the
    /// option can be written.
    pub(crate) fn is_writable(self) -> bool {
        (1..=3).contains(&self.leg.0) && self.level().0 <= 0x3f
    }

    fn parts(self) -> (Level, u8, [u8; 2]) {
        use StackValue as V;
        match self.value {
            V::Tos(v) => (Level::IP, 1, [v, 0]),
            V::HappyEyeballs(a) => (Level::IP, 2, [a.0, 0]),
            V::Ttl(v) => (Level::IP, 3, [v, 0]),
            V::NoFragmentation(a) => (Level::IP, 4, [a.0, 0]),
            V::Tfo(n) => (Level::TCP, 1, n.to_be_bytes()),
            V::Mptcp(a) => (Level::TCP, 2, [a.0, 0]),
            V::ListenBacklog(n) => (Level::TCP, 3, n.to_be_bytes()),
            V::UdpError(a) => (Level::UDP, 1, [a.0, 0]),
            V::PortParity { parity, reserve } => (Level::UDP, 2, [parity.0, u8::from(reserve)]),
            V::Other { level, code, data } => (level, code, data),
        }
    }

    /// Reads a four-byte option body. `None` for leg 0, which names no leg:
    /// the caller keeps such an option raw.
    pub(crate) fn from_body(body: [u8; 4]) -> Option<Self> {
        use StackValue as V;
        let [leg_level, code, d0, d1] = body;
        let leg = Leg(leg_level >> 6);
        if leg.0 == 0 {
            return None;
        }
        let level = Level(leg_level & 0x3f);
        let value = match (level, code, d1) {
            (Level::IP, 1, 0) => V::Tos(d0),
            (Level::IP, 2, 0) => V::HappyEyeballs(Availability(d0)),
            (Level::IP, 3, 0) => V::Ttl(d0),
            (Level::IP, 4, 0) => V::NoFragmentation(Availability(d0)),
            (Level::TCP, 1, _) => V::Tfo(u16::from_be_bytes([d0, d1])),
            (Level::TCP, 2, 0) => V::Mptcp(Availability(d0)),
            (Level::TCP, 3, _) => V::ListenBacklog(u16::from_be_bytes([d0, d1])),
            (Level::UDP, 1, 0) => V::UdpError(Availability(d0)),
            (Level::UDP, 2, 0 | 1) => V::PortParity {
                parity: Parity(d0),
                reserve: d1 == 1,
            },
            _ => V::Other {
                level,
                code,
                data: [d0, d1],
            },
        };
        Some(Self { leg, value })
    }

    /// Writes the four-byte option body. Only the low two bits of the leg
    /// and six bits of the level are written; [`Options::push`] refuses
    /// options where that would lose bits.
    ///
    /// [`Options::push`]: super::Options::push
    pub(crate) fn encode_body<B: BufMut>(self, buf: &mut B) {
        let (level, code, data) = self.parts();
        buf.put_u8(((self.leg.0 & 0x03) << 6) | (level.0 & 0x3f));
        buf.put_u8(code);
        buf.put_slice(&data);
    }

    /// True if `self` and `other` set the same thing on overlapping legs,
    /// which the draft forbids ("MUST NOT contradict or duplicate each
    /// other", §8.1).
    pub(crate) fn conflicts_with(self, other: Self) -> bool {
        self.level() == other.level() && self.code() == other.code() && self.leg.overlaps(other.leg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(o: StackOption) -> [u8; 4] {
        let mut buf = Vec::new();
        o.encode_body(&mut buf);
        buf.try_into().expect("four bytes")
    }

    #[test]
    fn every_option_of_the_draft_round_trips() {
        use StackValue as V;
        let cases = [
            ([0x41, 0x01, 0x10, 0x00], Leg::CLIENT_PROXY, V::Tos(0x10)),
            ([0xc1, 0x01, 0x10, 0x00], Leg::BOTH, V::Tos(0x10)),
            (
                [0x81, 0x02, 0x02, 0x00],
                Leg::PROXY_REMOTE,
                V::HappyEyeballs(Availability::AVAILABLE),
            ),
            ([0x81, 0x03, 0x40, 0x00], Leg::PROXY_REMOTE, V::Ttl(64)),
            (
                [0x81, 0x04, 0x02, 0x00],
                Leg::PROXY_REMOTE,
                V::NoFragmentation(Availability::AVAILABLE),
            ),
            ([0x84, 0x01, 0x05, 0x78], Leg::PROXY_REMOTE, V::Tfo(1400)),
            (
                [0x84, 0x02, 0x02, 0x00],
                Leg::PROXY_REMOTE,
                V::Mptcp(Availability::AVAILABLE),
            ),
            (
                [0x84, 0x03, 0x00, 0x0a],
                Leg::PROXY_REMOTE,
                V::ListenBacklog(10),
            ),
            (
                [0x85, 0x01, 0x02, 0x00],
                Leg::PROXY_REMOTE,
                V::UdpError(Availability::AVAILABLE),
            ),
            (
                [0x85, 0x02, 0x01, 0x01],
                Leg::PROXY_REMOTE,
                V::PortParity {
                    parity: Parity::EVEN,
                    reserve: true,
                },
            ),
        ];
        for (bytes, leg, value) in cases {
            let o = StackOption::from_body(bytes).expect("leg is set");
            assert_eq!(o, StackOption::new(leg, value), "{bytes:02x?}");
            assert_eq!(body(o), bytes);
        }
    }

    #[test]
    fn reads_mptcp_with_the_draft_values() {
        // sixtysocks' unsolicited option means "available" to libsocks6msg,
        // but 1 is "not available" in the draft.
        let o = StackOption::from_body([0x84, 0x02, 0x01, 0x00]).expect("leg 2");
        assert_eq!(o.value, StackValue::Mptcp(Availability::UNAVAILABLE));
    }

    #[test]
    fn keeps_unknown_and_nonconforming_data_raw() {
        for bytes in [
            [0x82, 0x01, 0xaa, 0xbb], // level 2 defines no codes
            [0x81, 0x01, 0x10, 0x01], // TOS with non-zero padding
            [0x85, 0x02, 0x01, 0x02], // Reserve above 1
            [0xbf, 0xff, 0x00, 0x00], // level 63
        ] {
            let o = StackOption::from_body(bytes).expect("leg is set");
            assert!(matches!(o.value, StackValue::Other { .. }), "{bytes:02x?}");
            assert_eq!(body(o), bytes);
        }
    }

    #[test]
    fn rejects_leg_zero() {
        assert_eq!(StackOption::from_body([0x01, 0x01, 0x10, 0x00]), None);
    }

    #[test]
    fn overlapping_legs_conflict() {
        let a = StackOption::new(Leg::CLIENT_PROXY, StackValue::Tos(1));
        let b = StackOption::new(Leg::BOTH, StackValue::Tos(2));
        let c = StackOption::new(Leg::PROXY_REMOTE, StackValue::Tos(2));
        assert!(a.conflicts_with(b));
        assert!(!a.conflicts_with(c));
        assert!(!a.conflicts_with(StackOption::new(Leg::CLIENT_PROXY, StackValue::Ttl(1))));
    }
}
