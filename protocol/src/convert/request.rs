//! A client's Convert message as a converter validates it (RFC 8803, spec
//! digest §2.3-§2.8, §4.2).
//!
//! On top of the structural parse of [`Message`], a converter requires:
//!
//! - only Info, Connect and Cookie TLVs; any other type, unknown or meant
//!   for the other direction, is answered with Unsupported Message (2);
//! - a Connect TLV, unless the message asks for Info only (§2.4);
//! - a Connect address that is not loopback, multicast, broadcast or
//!   unspecified (§2.6: "it MUST reply with a Malformed Message Error TLV");
//! - Extended Connect options the converter supports: TCP-AO is always
//!   refused, kinds 0, 1, 2, 3 and 5 are ignored, others must be in the set
//!   the caller passes (§2.6, §4.2); the rest gets Unsupported TCP Option
//!   (33) listing them.
//!
//! Cookie validation needs the converter's secrets and stays with the caller.

use super::connect::{Connect, TcpOptionKind};
use super::error::{EncodeError, Error};
use super::header::DecodeOptions;
use super::message::Message;
use super::tlv::{Cookie, Tlv};
use crate::Decoded;
use crate::codec::Out;

/// A validated client request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Request {
    /// An Info TLV was present: the client wants the Supported TCP
    /// Extensions TLV. With no Connect, the converter replies and closes
    /// (digest §2.4 design choice).
    pub info: bool,
    /// The Connect TLV; `None` only for an Info-only request.
    pub connect: Option<Connect>,
    /// The Cookie TLV, for the caller to validate (§2.8).
    pub cookie: Option<Cookie>,
}

impl Request {
    /// A request to connect to `connect`.
    pub fn connect(connect: Connect) -> Self {
        Self {
            info: false,
            connect: Some(connect),
            cookie: None,
        }
    }

    /// Decodes and validates a request with the strict [`DecodeOptions`];
    /// `supported_tcp_options` are the option kinds the converter can put
    /// in its SYN on a client's request (see [`Request::from_message`]).
    pub fn decode(
        buf: &[u8],
        supported_tcp_options: &[TcpOptionKind],
    ) -> Result<Decoded<Self>, Error> {
        Self::decode_with(buf, DecodeOptions::STRICT, supported_tcp_options)
    }

    /// Decodes and validates a request with `options`.
    pub fn decode_with(
        buf: &[u8],
        options: DecodeOptions,
        supported_tcp_options: &[TcpOptionKind],
    ) -> Result<Decoded<Self>, Error> {
        match Message::decode_with(buf, options)? {
            Decoded::Complete { msg, len } => Ok(Decoded::Complete {
                msg: Self::from_message(msg, supported_tcp_options)?,
                len,
            }),
            Decoded::NeedMore(n) => Ok(Decoded::NeedMore(n)),
        }
    }

    /// Applies the converter's rules to a decoded message, in wire order:
    /// each TLV's type, then the Connect address, then its options; then
    /// the presence of Connect or Info.
    ///
    /// Options in an Extended Connect: kinds the converter "MUST ignore"
    /// (0, 1, 2, 3, 5) pass whatever `supported_tcp_options` says; TCP-AO
    /// (29) is refused even if listed ("except if the TCP-AO-NAT option is
    /// used", which this crate does not support); any other kind must be in
    /// `supported_tcp_options`.
    pub fn from_message(
        msg: Message,
        supported_tcp_options: &[TcpOptionKind],
    ) -> Result<Self, Error> {
        let mut request = Self::default();
        for tlv in msg.into_tlvs() {
            match tlv {
                Tlv::Info => request.info = true,
                Tlv::Connect(c) => {
                    check_connect(&c, supported_tcp_options)?;
                    request.connect = Some(c);
                }
                Tlv::Cookie(c) => request.cookie = Some(c),
                other => return Err(Error::UnsupportedTlv(other.tlv_type())),
            }
        }
        if request.connect.is_none() && !request.info {
            return Err(Error::MissingConnect);
        }
        Ok(request)
    }

    /// True if the client only asked for the converter's capabilities.
    pub fn is_info_only(&self) -> bool {
        self.info && self.connect.is_none()
    }

    /// The message a client sends: Info, Connect, Cookie, in this order
    /// (libconvert puts the Cookie after the Connect). Refuses what a client
    /// must not send: no Connect and no Info, a forbidden destination
    /// (N11), or more than 1020 bytes.
    pub fn to_message(&self) -> Result<Message, EncodeError> {
        if self.connect.is_none() && !self.info {
            return Err(EncodeError::EmptyRequest);
        }
        let mut tlvs = Vec::with_capacity(3);
        if self.info {
            tlvs.push(Tlv::Info);
        }
        if let Some(c) = &self.connect {
            if c.has_forbidden_destination() {
                return Err(EncodeError::ForbiddenDestination(c.ip()));
            }
            tlvs.push(Tlv::Connect(c.clone()));
        }
        if let Some(c) = &self.cookie {
            tlvs.push(Tlv::Cookie(c.clone()));
        }
        Message::new(tlvs)
    }

    /// Bytes [`encode`](Self::encode) writes (whether or not it succeeds).
    pub fn encoded_len(&self) -> usize {
        let connect = self.connect.clone().map(Tlv::Connect);
        let cookie = self.cookie.clone().map(Tlv::Cookie);
        let info = self.info.then_some(Tlv::Info);
        [info, connect, cookie]
            .iter()
            .flatten()
            .fold(4usize, |n, t| n.saturating_add(t.encoded_len()))
    }

    /// Writes the request (see [`to_message`](Self::to_message)); on error
    /// nothing is written. Application data goes right after it: "that data
    /// MUST be placed right after the Convert TLVs" (§2.1).
    pub fn encode<B: Out>(&self, buf: &mut B) -> Result<(), EncodeError> {
        self.to_message()?.encode(buf);
        Ok(())
    }
}

/// The Connect rules of a converter (§2.6, §4.2).
fn check_connect(c: &Connect, supported: &[TcpOptionKind]) -> Result<(), Error> {
    // §2.6: "Remote Peer IP address field MUST NOT include multicast,
    // broadcast, and host loopback addresses ... If a Converter receives a
    // Connect TLV with such invalid addresses, it MUST reply with a
    // Malformed Message Error TLV".
    if c.has_forbidden_destination() {
        return Err(Error::ForbiddenDestination(c.ip()));
    }
    // §2.6: the converter "first checks whether it supports the TCP Options
    // listed in the 'TCP Options' field. If not, it returns an error
    // message". At most 256 distinct kinds.
    let mut unsupported: Vec<TcpOptionKind> = Vec::new();
    for kind in c
        .requested_tcp_options()
        .map(super::connect::TcpOption::kind)
    {
        let refused = kind == TcpOptionKind::TCP_AO || !supported.contains(&kind);
        if refused && !unsupported.contains(&kind) {
            unsupported.push(kind);
        }
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(Error::UnsupportedTcpOptions(unsupported))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::convert::testing::{assert_splits, hex};
    use crate::convert::{ErrorTlv, ExtendedTcpHeader, TcpOption, TlvType};

    const CONNECT_T1: &str = "0a 05 1f 90 00 00 00 00 00 00 00 00 00 00 ff ff 0a 01 01 01";
    const SUPPORTED: &[TcpOptionKind] = &[TcpOptionKind::MPTCP, TcpOptionKind::FAST_OPEN];

    fn decode(buf: &[u8]) -> Result<Decoded<Request>, Error> {
        Request::decode(buf, SUPPORTED)
    }

    fn t1_target() -> Connect {
        Connect::new("10.1.1.1:8080".parse().unwrap())
    }

    /// Decodes a valid request whole and at every split, and re-encodes it
    /// byte for byte.
    fn accepts(bytes: &[u8]) -> Request {
        let Ok(Decoded::Complete { msg, len }) = assert_splits(decode, bytes) else {
            panic!("{bytes:02x?} refused");
        };
        assert_eq!(len, bytes.len());
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(msg.encoded_len(), bytes.len());
        msg
    }

    /// Decodes an invalid request and checks the error and the exact reply.
    fn refuses(bytes: &[u8], error: &Error, reply: Option<&[u8]>) {
        assert_eq!(assert_splits(decode, bytes).as_ref(), Err(error));
        assert_eq!(error.reply_bytes(bytes).as_deref(), reply);
    }

    #[test]
    fn t1_accepts_connect() {
        let r = accepts(&hex(&format!("01 06 22 63 {CONNECT_T1}")));
        assert_eq!(r, Request::connect(t1_target()));
    }

    #[test]
    fn t2_t3_accept_connect_with_cookie() {
        let r = accepts(&hex(&format!(
            "01 09 22 63 {CONNECT_T1} 16 03 00 00 63 6f 6f 6b 69 65 00 00"
        )));
        assert_eq!(r.cookie, Some(Cookie::new(*b"cookie")));
        let r = accepts(&hex(&format!("01 07 22 63 {CONNECT_T1} 16 01 00 00")));
        assert_eq!(r.cookie, Some(Cookie::new([])));
        assert_eq!(r.connect, Some(t1_target()));
    }

    #[test]
    fn t4_accepts_ipv6_connect() {
        let r = accepts(&hex(
            "01 06 22 63 0a 05 1f 90 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01",
        ));
        let target: SocketAddr = "[fd00::1]:8080".parse().unwrap();
        assert_eq!(r.connect.unwrap().socket_addr(), target);
    }

    #[test]
    fn t9_accepts_info_only() {
        let r = accepts(&hex("01 02 22 63 01 01 00 00"));
        assert!(r.is_info_only());
        assert_eq!(r.cookie, None);
    }

    #[test]
    fn accepts_info_with_connect() {
        let r = accepts(&hex(&format!("01 07 22 63 01 01 00 00 {CONNECT_T1}")));
        assert!(r.info && !r.is_info_only());
    }

    #[test]
    fn t14_accepts_supported_extended_connect() {
        let r = accepts(&hex(&format!(
            "01 07 22 63 0a 06 {} 22 02 1e 02",
            &CONNECT_T1[6..]
        )));
        let c = r.connect.unwrap();
        assert!(c.is_extended());
        assert_eq!(c.tcp_options.len(), 2);
    }

    #[test]
    fn t15_resets_on_zero_total_length() {
        refuses(&hex("01 00 22 63"), &Error::ZeroTotalLength, None);
    }

    #[test]
    fn t16_rejects_ipv4_mapped_loopback_with_echo() {
        let received =
            hex("01 06 22 63 0a 05 00 50 00 00 00 00 00 00 00 00 00 00 ff ff 7f 00 00 01");
        let reply = hex("01 08 22 63 1e 07 01 00
             01 06 22 63 0a 05 00 50 00 00 00 00 00 00 00 00 00 00 ff ff 7f 00 00 01");
        refuses(
            &received,
            &Error::ForbiddenDestination("127.0.0.1".parse().unwrap()),
            Some(&reply),
        );
    }

    #[test]
    fn rejects_native_loopback_multicast_and_broadcast() {
        for ip in [
            "::1",
            "ff02::1",
            "::ffff:255.255.255.255",
            "::ffff:224.0.0.1",
            "::",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let msg =
                Message::new(vec![Tlv::Connect(Connect::new(SocketAddr::new(ip, 80)))]).unwrap();
            let bytes = msg.to_bytes();
            let Err(e) = decode(&bytes) else {
                panic!("{ip} accepted");
            };
            assert!(matches!(e, Error::ForbiddenDestination(_)), "{ip}: {e:?}");
            let tlv = e.to_error_tlv(&bytes).unwrap();
            assert_eq!(tlv, ErrorTlv::malformed_message(&bytes));
        }
    }

    #[test]
    fn t17_rejects_duplicate_connect_with_echo() {
        let received = hex(&format!("01 0b 22 63 {CONNECT_T1} {CONNECT_T1}"));
        let mut reply = hex("01 0d 22 63 1e 0c 01 00");
        reply.extend_from_slice(&received);
        refuses(
            &received,
            &Error::DuplicateTlv(TlvType::CONNECT),
            Some(&reply),
        );
    }

    #[test]
    fn rejects_version_2_with_unsupported_version() {
        refuses(
            &hex("02 01 22 63"),
            &Error::UnsupportedVersion(2),
            Some(&hex("01 02 22 63 1e 01 00 01")),
        );
    }

    #[test]
    fn rejects_bad_magic_with_malformed() {
        let received = hex(&format!("01 06 63 22 {CONNECT_T1}"));
        let mut reply = hex("01 08 22 63 1e 07 01 00");
        reply.extend_from_slice(&received);
        refuses(&received, &Error::BadMagic(0x6322), Some(&reply));
    }

    #[test]
    fn accepts_draft_magic_only_with_the_knob() {
        let received = hex(&format!("01 06 00 00 {CONNECT_T1}"));
        assert_eq!(decode(&received), Err(Error::BadMagic(0)));
        let r = assert_splits(
            |b| Request::decode_with(b, DecodeOptions::DRAFT_COMPATIBLE, SUPPORTED),
            &received,
        );
        assert_eq!(
            r,
            Ok(Decoded::Complete {
                msg: Request::connect(t1_target()),
                len: 24
            })
        );
    }

    #[test]
    fn rejects_tlv_length_zero_and_overrun_with_malformed() {
        let received = hex(&format!("01 07 22 63 {CONNECT_T1} 16 00 00 00"));
        let mut reply = hex("01 09 22 63 1e 08 01 00");
        reply.extend_from_slice(&received);
        refuses(
            &received,
            &Error::ZeroTlvLength(TlvType::COOKIE),
            Some(&reply),
        );

        let received = hex(&format!("01 07 22 63 {CONNECT_T1} 16 02 00 00"));
        let mut reply = hex("01 09 22 63 1e 08 01 00");
        reply.extend_from_slice(&received);
        refuses(
            &received,
            &Error::TlvPastTotalLength(TlvType::COOKIE),
            Some(&reply),
        );
    }

    #[test]
    fn rejects_type_0_with_unsupported_message() {
        let received = hex(&format!("01 07 22 63 {CONNECT_T1} 00 01 00 00"));
        let mut reply = hex("01 09 22 63 1e 08 02 00");
        reply.extend_from_slice(&received);
        refuses(&received, &Error::ReservedTlvType, Some(&reply));
    }

    #[test]
    fn rejects_unknown_type_with_unsupported_message() {
        let received = hex(&format!("01 07 22 63 {CONNECT_T1} 2a 01 00 00"));
        let mut reply = hex("01 09 22 63 1e 08 02 00");
        reply.extend_from_slice(&received);
        refuses(&received, &Error::UnsupportedTlv(TlvType(42)), Some(&reply));
    }

    #[test]
    fn rejects_converter_only_tlvs_with_unsupported_message() {
        for tlv in ["1e 01 60 00", "14 01 00 00", "15 02 00 00 1e 00 00 00"] {
            let received = hex(&format!(
                "01 {:02x} 22 63 {CONNECT_T1} {tlv}",
                6 + hex(tlv).len() / 4
            ));
            let Err(e) = decode(&received) else {
                panic!("{tlv} accepted");
            };
            assert!(matches!(e, Error::UnsupportedTlv(_)), "{tlv}: {e:?}");
            let tlv = e.to_error_tlv(&received).unwrap();
            assert_eq!(tlv, ErrorTlv::unsupported_message(&received));
        }
    }

    #[test]
    fn rejects_missing_connect_with_malformed() {
        let received = hex("01 02 22 63 16 01 00 00");
        let reply = hex("01 04 22 63 1e 03 01 00 01 02 22 63 16 01 00 00");
        refuses(&received, &Error::MissingConnect, Some(&reply));
        refuses(
            &hex("01 01 22 63"),
            &Error::MissingConnect,
            Some(&hex("01 03 22 63 1e 02 01 00 01 01 22 63")),
        );
    }

    #[test]
    fn rejects_tcp_ao_with_unsupported_tcp_option() {
        // TCP-AO with a 2-byte value, plus MPTCP (supported).
        let received = hex(&format!(
            "01 08 22 63 0a 07 {} 1d 04 01 02 1e 02 00 00",
            &CONNECT_T1[6..]
        ));
        refuses(
            &received,
            &Error::UnsupportedTcpOptions(vec![TcpOptionKind::TCP_AO]),
            Some(&hex("01 02 22 63 1e 01 21 1d")),
        );
        // Even when the caller claims to support it.
        let with_ao = [TcpOptionKind::TCP_AO, TcpOptionKind::MPTCP];
        assert_eq!(
            Request::decode(&received, &with_ao),
            Err(Error::UnsupportedTcpOptions(vec![TcpOptionKind::TCP_AO]))
        );
    }

    #[test]
    fn lists_every_unsupported_option_once() {
        let c = t1_target().with_tcp_options(vec![
            TcpOption::new(TcpOptionKind::TIMESTAMPS, []).unwrap(),
            TcpOption::new(TcpOptionKind::TCP_AO, []).unwrap(),
            TcpOption::new(TcpOptionKind::TIMESTAMPS, []).unwrap(),
            TcpOption::new(TcpOptionKind::MPTCP, []).unwrap(),
        ]);
        let bytes = Message::new(vec![Tlv::Connect(c)]).unwrap().to_bytes();
        refuses(
            &bytes,
            &Error::UnsupportedTcpOptions(vec![TcpOptionKind::TIMESTAMPS, TcpOptionKind::TCP_AO]),
            Some(&hex("01 03 22 63 1e 02 21 08 1d 00 00 00")),
        );
    }

    #[test]
    fn ignores_mss_window_scale_and_sack() {
        let c = t1_target().with_tcp_options(vec![
            TcpOption::new(TcpOptionKind::MSS, [5, 0xb4]).unwrap(),
            TcpOption::new(TcpOptionKind::WINDOW_SCALE, [7]).unwrap(),
            TcpOption::new(TcpOptionKind::SACK, []).unwrap(),
        ]);
        let bytes = Message::new(vec![Tlv::Connect(c.clone())])
            .unwrap()
            .to_bytes();
        let r = accepts(&bytes);
        assert_eq!(r.connect, Some(c.clone()));
        // Nothing supported at all: still accepted.
        assert!(Request::decode(&bytes, &[]).is_ok());
        assert_eq!(c.requested_tcp_options().count(), 0);
    }

    #[test]
    fn to_message_refuses_what_a_client_must_not_send() {
        assert_eq!(
            Request::default().to_message(),
            Err(EncodeError::EmptyRequest)
        );
        let loopback = Request::connect(Connect::new("127.0.0.1:80".parse().unwrap()));
        assert_eq!(
            loopback.to_message(),
            Err(EncodeError::ForbiddenDestination(
                "127.0.0.1".parse().unwrap()
            ))
        );
        let mut buf = Vec::new();
        assert!(loopback.encode(&mut buf).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn encodes_info_connect_cookie_in_order() {
        let r = Request {
            info: true,
            connect: Some(t1_target()),
            cookie: Some(Cookie::new(*b"ab")),
        };
        let msg = r.to_message().unwrap();
        let types: Vec<_> = msg.tlvs().iter().map(Tlv::tlv_type).collect();
        assert_eq!(types, [TlvType::INFO, TlvType::CONNECT, TlvType::COOKIE]);
        assert_eq!(r.encoded_len(), msg.encoded_len());
        // A reply TLV in a request is refused, not silently dropped.
        let bad = Message::new(vec![
            Tlv::Connect(t1_target()),
            Tlv::ExtendedTcpHeader(ExtendedTcpHeader::default()),
        ])
        .unwrap();
        assert_eq!(
            Request::from_message(bad, SUPPORTED),
            Err(Error::UnsupportedTlv(TlvType::EXTENDED_TCP_HEADER))
        );
    }
}
