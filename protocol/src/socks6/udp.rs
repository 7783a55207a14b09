//! SOCKS6 UDP association messages (draft -11 §7.3, spec digest §2.5).
//!
//! After a successful UDP ASSOCIATE Operation Reply the proxy and the client
//! exchange these messages: Association Initialization and Association
//! Confirmation over the TCP control connection, Datagrams over that same
//! connection or over plain UDP / DTLS, and (only if the client opted in with
//! the UDP Error Stack option) Error messages from the proxy.
//!
//! Every message starts with the same 12-byte header:
//!
//! ```text
//! | Version = 6 | Message Type | Message Length (u16, includes the header) |
//! | Association ID (u64)                                                   |
//! ```
//!
//! Datagram and Error messages then carry `Address Type, Padding, Port` and
//! the address (note the field order: the Request has `Port, pad, ATYP`).
//!
//! Two decoders:
//!
//! - [`UdpMessage::decode`] for the TCP stream, where messages are
//!   self-delimiting by Message Length and may arrive in pieces;
//! - [`UdpMessage::decode_datagram`] for one UDP or DTLS datagram, which
//!   ignores trailing padding after Message Length and reports a datagram
//!   shorter than its Message Length as [`Error::LengthExceedsDatagram`].
//!
//! Domain names in Datagram headers are written -12 style (the length byte
//! counts the NUL padding) and read with the tolerant rule of digest §5.1,
//! cross-checked against Message Length: the payload is what follows the
//! address inside Message Length, and an address running past Message Length
//! is [`Error::AddressOverrun`].
//!
//! Message types other than the four defined ones decode into
//! [`UdpMessage::Unknown`] with their body kept raw (the message is
//! length-delimited, so a stream reader can step over it) and re-encode
//! byte-identically; a receiver ignores them, as -11 asks of everything
//! unknown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use super::address::{
    AddressError, DomainStyle, address_encoded_len, decode_address, encode_address,
};
use crate::addr::{AddressType, Endpoint};
use crate::codec::{self, Decoded, Fail, Out, Reader};

/// The version byte of every UDP association message.
pub const VERSION: u8 = 6;

/// Length of the common header: version, type, Message Length, Association ID.
pub const HEADER_LEN: usize = 12;

/// Length of the header of a Datagram or Error message up to its address:
/// the common header plus `Address Type, Padding, Port`.
pub const ADDRESSED_HEADER_LEN: usize = HEADER_LEN + 4;

/// The largest Message Length the u16 field can state.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

crate::code_point! {
    /// The Message Type byte of a UDP association message.
    pub struct UdpMessageType(u8) {
        /// Association Initialization, proxy to client over TCP.
        ASSOCIATION_INIT = 0x01,
        /// Association Confirmation, proxy to client over TCP.
        ASSOCIATION_CONFIRMATION = 0x02,
        /// A datagram, both directions, over TCP, UDP or DTLS.
        DATAGRAM = 0x03,
        /// An ICMP error report, proxy to client.
        ERROR = 0x04,
    }
}

crate::code_point! {
    /// The Error Code of an Error message.
    pub struct UdpErrorCode(u8) {
        /// ICMP network unreachable.
        NETWORK_UNREACHABLE = 0x01,
        /// ICMP host unreachable.
        HOST_UNREACHABLE = 0x02,
        /// ICMP TTL (hop limit) expired.
        TTL_EXPIRED = 0x03,
        /// `ICMPv6` Packet Too Big (IPv6 only; added in -10).
        DATAGRAM_TOO_BIG = 0x04,
    }
}

/// A UDP association message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpMessage {
    /// Association Initialization: the proxy announces the association ID
    /// over TCP after the Operation Reply.
    AssociationInit {
        /// The Association ID.
        id: u64,
    },
    /// Association Confirmation: the proxy has mapped the association to the
    /// channel the client's first datagram arrived on.
    AssociationConfirmation {
        /// The Association ID.
        id: u64,
    },
    /// A datagram, with its destination (client to proxy) or source (proxy
    /// to client).
    Datagram(Datagram),
    /// An ICMP error report, proxy to client.
    Error(UdpErrorMessage),
    /// A message of a type this crate does not know, kept raw. Receivers
    /// ignore it.
    Unknown {
        /// The Message Type.
        message_type: UdpMessageType,
        /// The Association ID.
        id: u64,
        /// The bytes after the 12-byte header, up to Message Length.
        body: Vec<u8>,
    },
}

/// A Datagram message (type 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The Association ID.
    pub id: u64,
    /// Client to proxy: the destination. Proxy to client: the source. An
    /// all-zero `0.0.0.0:0` with an empty payload asks for a Confirmation
    /// before any traffic (proxying UDP servers, draft §7.3.1).
    pub endpoint: Endpoint,
    /// The UDP payload. At most [`Datagram::max_payload_len`] bytes can be
    /// encoded.
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The largest payload a Datagram to or from `endpoint` can carry: what
    /// is left of the u16 Message Length after the header and the address.
    pub fn max_payload_len(endpoint: &Endpoint) -> usize {
        MAX_MESSAGE_LEN - ADDRESSED_HEADER_LEN - address_encoded_len(&endpoint.addr)
    }
}

/// An Error message (type 4): the proxy relays an ICMP error about a
/// datagram it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpErrorMessage {
    /// The Association ID.
    pub id: u64,
    /// Destination IP and UDP port of the packet quoted in the ICMP payload.
    /// The wire has no IPv6 flow label or scope id: they are not written,
    /// and read as 0.
    pub destination: SocketAddr,
    /// What went wrong.
    pub code: UdpErrorCode,
    /// The host that sent the ICMP error.
    pub reporter: IpAddr,
}

/// Why a UDP association message could not be decoded.
///
/// There is no error reply on the UDP channel. Per digest §4.9 ("UDP: Message
/// Length > datagram payload: silently ignore the message"; "valid
/// Association ID on the wrong channel: silently drop"), **every decode error
/// means: drop the message silently** when it arrived as a UDP or DTLS
/// datagram. On the TCP control connection a malformed message leaves the
/// stream without trustworthy framing, so the connection (and with it the
/// association, which lives as long as the TCP connection) is closed. See
/// [`Error::disposition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Error {
    /// The version byte is not 6.
    #[error("UDP association message version {0}, expected 6")]
    UnsupportedVersion(u8),
    /// Message Length is smaller than the 12-byte header.
    #[error("Message Length {0} is shorter than the 12-byte header")]
    LengthBelowHeader(u16),
    /// Message Length does not match the fixed size of the message type
    /// (12 for Initialization and Confirmation; the size its address types
    /// give for an Error message).
    #[error("Message Length {length} does not fit a {message_type} message")]
    LengthMismatch {
        /// The message type.
        message_type: UdpMessageType,
        /// The Message Length found.
        length: u16,
    },
    /// The address of a Datagram (or the fields before it) runs past
    /// Message Length.
    #[error("the datagram's address runs past Message Length")]
    AddressOverrun,
    /// The address of a Datagram is malformed or of an unknown type.
    #[error("bad datagram address: {0}")]
    Address(AddressError),
    /// An Error message uses an address type other than IPv4 or IPv6 for the
    /// destination or the reporter (only 0x01 and 0x04 are allowed).
    #[error("address type {0} in an Error message, only IPv4 or IPv6 allowed")]
    NonIpAddressType(AddressType),
    /// The UDP/DTLS datagram ends before the message does (Message Length is
    /// larger than the datagram, or the datagram is too short to hold the
    /// header). "If Message Length is larger than the payload, the message
    /// MUST be silently ignored" (§2.5). Only [`UdpMessage::decode_datagram`]
    /// returns it.
    #[error("Message Length exceeds the datagram")]
    LengthExceedsDatagram,
}

/// Which channel a UDP association message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The TCP (or TLS) control connection.
    Stream,
    /// A plain UDP or DTLS datagram.
    Datagram,
}

/// What the receiver does with a message that failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Drop the message and send nothing.
    DropSilently,
    /// Close the TCP control connection (ending the association).
    CloseConnection,
}

impl Error {
    /// What the receiver must do, given the channel the bad message came on.
    ///
    /// - [`Channel::Datagram`]: every error is [`Disposition::DropSilently`]:
    ///   the UDP channel has no error reply, and §4.9 says to silently
    ///   ignore bad and mis-routed datagrams.
    /// - [`Channel::Stream`]: every error is [`Disposition::CloseConnection`]:
    ///   the draft defines no error message for the control connection, and
    ///   after a malformed message the rest of the stream cannot be trusted
    ///   to be framed. (A message of unknown type is not an error: it decodes
    ///   as [`UdpMessage::Unknown`] and is skipped.)
    pub fn disposition(&self, channel: Channel) -> Disposition {
        match channel {
            Channel::Datagram => Disposition::DropSilently,
            Channel::Stream => Disposition::CloseConnection,
        }
    }
}

impl From<Error> for Fail<Error> {
    fn from(e: Error) -> Self {
        Self::Invalid(e)
    }
}

/// A message too long for the u16 Message Length field (a Datagram whose
/// payload exceeds [`Datagram::max_payload_len`]). Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("UDP association message of {0} bytes exceeds the 65535-byte Message Length")]
pub struct MessageTooLong(pub usize);

impl UdpMessage {
    /// The Association ID.
    pub fn id(&self) -> u64 {
        match self {
            Self::AssociationInit { id }
            | Self::AssociationConfirmation { id }
            | Self::Datagram(Datagram { id, .. })
            | Self::Error(UdpErrorMessage { id, .. })
            | Self::Unknown { id, .. } => *id,
        }
    }

    /// The Message Type.
    pub fn message_type(&self) -> UdpMessageType {
        match self {
            Self::AssociationInit { .. } => UdpMessageType::ASSOCIATION_INIT,
            Self::AssociationConfirmation { .. } => UdpMessageType::ASSOCIATION_CONFIRMATION,
            Self::Datagram(_) => UdpMessageType::DATAGRAM,
            Self::Error(_) => UdpMessageType::ERROR,
            Self::Unknown { message_type, .. } => *message_type,
        }
    }

    /// Decodes one message from the front of the TCP control stream.
    ///
    /// Messages are self-delimiting by Message Length; bytes after `len`
    /// are the next message.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, Error> {
        let mut r = Reader::new(buf);
        codec::finish(decode_inner(&mut r).map(|m| (m, r.consumed())))
    }

    /// Decodes the message carried by one UDP or DTLS datagram payload.
    ///
    /// "Implementations MUST ignore the padding" (§2.5): bytes after
    /// Message Length are discarded. A datagram shorter than its Message
    /// Length is [`Error::LengthExceedsDatagram`] ("the message MUST be
    /// silently ignored"). Which types may arrive this way (Datagram from the
    /// client; Datagram or Error from the proxy) is for the caller to check.
    pub fn decode_datagram(payload: &[u8]) -> Result<Self, Error> {
        match Self::decode(payload)? {
            Decoded::Complete { msg, .. } => Ok(msg),
            Decoded::NeedMore(_) => Err(Error::LengthExceedsDatagram),
        }
    }

    /// Bytes [`UdpMessage::encode`] writes (may exceed 65535 for an
    /// oversized Datagram, which `encode` then refuses).
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::AssociationInit { .. } | Self::AssociationConfirmation { .. } => HEADER_LEN,
            Self::Datagram(d) => {
                ADDRESSED_HEADER_LEN + address_encoded_len(&d.endpoint.addr) + d.payload.len()
            }
            Self::Error(e) => {
                ADDRESSED_HEADER_LEN + ip_len(e.destination.ip()) + 4 + ip_len(e.reporter)
            }
            Self::Unknown { body, .. } => HEADER_LEN + body.len(),
        }
    }

    /// Writes the message. Domain names are written -12 style (length byte
    /// counts the padding), padding bytes are zero.
    ///
    /// Only a Datagram with a payload over [`Datagram::max_payload_len`] (or
    /// an `Unknown` body over 65523 bytes) can be too long; such a message is
    /// refused with [`MessageTooLong`] before anything is written.
    pub fn encode<B: Out>(&self, buf: &mut B) -> Result<(), MessageTooLong> {
        // The length is checked against the u16 field before writing, so it
        // is computed up front and written directly rather than back-filled.
        let len = self.encoded_len();
        let Ok(len16) = u16::try_from(len) else {
            return Err(MessageTooLong(len));
        };
        buf.put_u8(VERSION);
        buf.put_u8(self.message_type().0);
        buf.put_u16(len16);
        buf.put_u64(self.id());
        match self {
            Self::AssociationInit { .. } | Self::AssociationConfirmation { .. } => {}
            Self::Datagram(d) => {
                buf.put_u8(d.endpoint.addr.address_type().0);
                buf.put_u8(0);
                buf.put_u16(d.endpoint.port);
                encode_address(&d.endpoint.addr, DomainStyle::Padded, buf);
                buf.put_slice(&d.payload);
            }
            Self::Error(e) => {
                buf.put_u8(ip_type(e.destination.ip()).0);
                buf.put_u8(0);
                buf.put_u16(e.destination.port());
                put_ip(e.destination.ip(), buf);
                buf.put_u8(ip_type(e.reporter).0);
                buf.put_u8(e.code.0);
                buf.put_u16(0);
                put_ip(e.reporter, buf);
            }
            Self::Unknown { body, .. } => buf.put_slice(body),
        }
        Ok(())
    }
}

fn decode_inner(r: &mut Reader<'_>) -> Result<UdpMessage, Fail<Error>> {
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version).into());
    }
    let message_type = UdpMessageType(r.u8()?);
    let length = r.u16()?;
    let body_len = usize::from(length)
        .checked_sub(HEADER_LEN)
        .ok_or(Error::LengthBelowHeader(length))?;
    let fixed_size_mismatch = matches!(
        message_type,
        UdpMessageType::ASSOCIATION_INIT | UdpMessageType::ASSOCIATION_CONFIRMATION
    ) && body_len != 0;
    if fixed_size_mismatch {
        return Err(Error::LengthMismatch {
            message_type,
            length,
        }
        .into());
    }
    let id = r.u64()?;
    // The body is bounded by the u16 Message Length, and nothing below reads
    // past it: running out inside the body is an error, not `NeedMore`.
    let mut body = r.sub(body_len)?;
    match message_type {
        UdpMessageType::ASSOCIATION_INIT => Ok(UdpMessage::AssociationInit { id }),
        UdpMessageType::ASSOCIATION_CONFIRMATION => Ok(UdpMessage::AssociationConfirmation { id }),
        UdpMessageType::DATAGRAM => decode_datagram_body(&mut body, id)
            .map(UdpMessage::Datagram)
            .map_err(|f| overrun_as(f, Error::AddressOverrun)),
        UdpMessageType::ERROR => {
            let mismatch = Error::LengthMismatch {
                message_type,
                length,
            };
            let e = decode_error_body(&mut body, id).map_err(|f| overrun_as(f, mismatch))?;
            if body.is_empty() {
                Ok(UdpMessage::Error(e))
            } else {
                Err(mismatch.into())
            }
        }
        other => Ok(UdpMessage::Unknown {
            message_type: other,
            id,
            body: body.rest().to_vec(),
        }),
    }
}

/// Inside a body read from a sub-reader, running out of bytes means a field
/// runs past Message Length: an error, never `NeedMore`.
fn overrun_as(f: Fail<Error>, e: Error) -> Fail<Error> {
    match f {
        Fail::Incomplete(_) => Fail::Invalid(e),
        invalid @ Fail::Invalid(_) => invalid,
    }
}

fn decode_datagram_body(r: &mut Reader<'_>, id: u64) -> Result<Datagram, Fail<Error>> {
    let atyp = AddressType(r.u8()?);
    let _padding = r.u8()?; // Tolerant reader: "Padding = 0" is not checked.
    let port = r.u16()?;
    let addr = decode_address(r, atyp).map_err(|f| f.map_err(Error::Address))?;
    Ok(Datagram {
        id,
        endpoint: Endpoint { addr, port },
        payload: r.rest().to_vec(),
    })
}

fn decode_error_body(r: &mut Reader<'_>, id: u64) -> Result<UdpErrorMessage, Fail<Error>> {
    let atyp = AddressType(r.u8()?);
    let _padding = r.u8()?;
    let port = r.u16()?;
    let destination = SocketAddr::new(decode_ip(r, atyp)?, port);
    let reporter_type = AddressType(r.u8()?);
    let code = UdpErrorCode(r.u8()?);
    let _padding = r.u16()?;
    let reporter = decode_ip(r, reporter_type)?;
    Ok(UdpErrorMessage {
        id,
        destination,
        code,
        reporter,
    })
}

/// An IP address of an Error message: "ATYP is 0x01 or 0x04 only" (§2.5).
fn decode_ip(r: &mut Reader<'_>, atyp: AddressType) -> Result<IpAddr, Fail<Error>> {
    match atyp {
        AddressType::IPV4 => Ok(IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))),
        AddressType::IPV6 => Ok(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
        other => Err(Error::NonIpAddressType(other).into()),
    }
}

fn ip_type(ip: IpAddr) -> AddressType {
    match ip {
        IpAddr::V4(_) => AddressType::IPV4,
        IpAddr::V6(_) => AddressType::IPV6,
    }
}

fn ip_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

fn put_ip<B: Out>(ip: IpAddr, buf: &mut B) {
    match ip {
        IpAddr::V4(a) => buf.put_slice(&a.octets()),
        IpAddr::V6(a) => buf.put_slice(&a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Address, DomainName};

    const ID: u64 = 0x0102_0304_0506_0708;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    }

    fn encode(msg: &UdpMessage) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut buf).expect("fits");
        assert_eq!(buf.len(), msg.encoded_len());
        buf
    }

    /// Decodes `bytes` whole (checking `msg` and that it re-encodes to the
    /// same bytes), as every prefix (`NeedMore` within the message), and as
    /// a datagram.
    fn check_vector(bytes: &[u8], msg: &UdpMessage) {
        assert_eq!(
            UdpMessage::decode(bytes),
            Ok(Decoded::Complete {
                msg: msg.clone(),
                len: bytes.len()
            })
        );
        assert_eq!(encode(msg), bytes);
        for k in 0..bytes.len() {
            match UdpMessage::decode(&bytes[..k]) {
                Ok(Decoded::NeedMore(n)) => assert!(n >= 1 && k + n <= bytes.len(), "prefix {k}"),
                other => panic!("prefix {k}: {other:?}"),
            }
        }
        let mut followed = bytes.to_vec();
        followed.extend_from_slice(&[0x06, 0x01]);
        assert_eq!(
            UdpMessage::decode(&followed),
            Ok(Decoded::Complete {
                msg: msg.clone(),
                len: bytes.len()
            })
        );
        assert_eq!(UdpMessage::decode_datagram(bytes), Ok(msg.clone()));
    }

    fn datagram(endpoint: Endpoint, payload: &[u8]) -> UdpMessage {
        UdpMessage::Datagram(Datagram {
            id: ID,
            endpoint,
            payload: payload.to_vec(),
        })
    }

    #[test]
    fn v22_association_init_and_confirmation() {
        check_vector(
            &hex("06 01 00 0c 01 02 03 04 05 06 07 08"),
            &UdpMessage::AssociationInit { id: ID },
        );
        check_vector(
            &hex("06 02 00 0c 01 02 03 04 05 06 07 08"),
            &UdpMessage::AssociationConfirmation { id: ID },
        );
    }

    #[test]
    fn v23_datagram_to_ipv4() {
        check_vector(
            &hex("06 03 00 17 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 61 62 63"),
            &datagram(Endpoint::new(Ipv4Addr::new(192, 0, 2, 9), 53), b"abc"),
        );
    }

    #[test]
    fn v24_empty_datagram_for_udp_server_mode() {
        check_vector(
            &hex("06 03 00 14 01 02 03 04 05 06 07 08 01 00 00 00 00 00 00 00"),
            &datagram(Endpoint::unspecified(), b""),
        );
    }

    #[test]
    fn v25_error_host_unreachable() {
        check_vector(
            &hex(
                "06 04 00 1c 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 \
                 01 02 00 00 c6 33 64 01",
            ),
            &UdpMessage::Error(UdpErrorMessage {
                id: ID,
                destination: "192.0.2.9:53".parse().expect("addr"),
                code: UdpErrorCode::HOST_UNREACHABLE,
                reporter: "198.51.100.1".parse().expect("addr"),
            }),
        );
    }

    #[test]
    fn error_with_ipv6_addresses_round_trips() {
        let msg = UdpMessage::Error(UdpErrorMessage {
            id: 7,
            destination: "[2001:db8::9]:4500".parse().expect("addr"),
            code: UdpErrorCode::DATAGRAM_TOO_BIG,
            reporter: "2001:db8::1".parse().expect("addr"),
        });
        let bytes = encode(&msg);
        assert_eq!(bytes.len(), 16 + 16 + 4 + 16);
        assert_eq!(&bytes[2..4], &[0, 52]);
        check_vector(&bytes, &msg);
    }

    #[test]
    fn observed_studentmain_udp_exchange() {
        let id = 0x8a10_372e_2318_c26f;
        check_vector(
            &hex("06 01 00 0c 8a 10 37 2e 23 18 c2 6f"),
            &UdpMessage::AssociationInit { id },
        );
        let bytes = hex(
            "06 03 00 1f 8a 10 37 2e 23 18 c2 6f 01 00 45 71 7f 00 00 01 \
             75 64 70 2d 70 61 79 6c 6f 61 64",
        );
        assert_eq!(bytes.len(), 31);
        check_vector(
            &bytes,
            &UdpMessage::Datagram(Datagram {
                id,
                endpoint: Endpoint::new(Ipv4Addr::LOCALHOST, 17777),
                payload: b"udp-payload".to_vec(),
            }),
        );
        check_vector(
            &hex("06 02 00 0c 8a 10 37 2e 23 18 c2 6f"),
            &UdpMessage::AssociationConfirmation { id },
        );
    }

    #[test]
    fn stream_of_messages_decodes_one_at_a_time() {
        let init = hex("06 01 00 0c 8a 10 37 2e 23 18 c2 6f");
        let dgram = hex(
            "06 03 00 1f 8a 10 37 2e 23 18 c2 6f 01 00 45 71 7f 00 00 01 \
             75 64 70 2d 70 61 79 6c 6f 61 64",
        );
        let stream = [init.clone(), dgram.clone()].concat();
        let (first, len) = UdpMessage::decode(&stream)
            .expect("valid")
            .complete()
            .expect("complete");
        assert_eq!(len, 12);
        assert_eq!(first.message_type(), UdpMessageType::ASSOCIATION_INIT);
        let (second, len) = UdpMessage::decode(&stream[len..])
            .expect("valid")
            .complete()
            .expect("complete");
        assert_eq!(len, 31);
        assert_eq!(second.id(), 0x8a10_372e_2318_c26f);
    }

    #[test]
    fn datagram_to_domain_is_written_padded() {
        let msg = datagram(
            Endpoint::new(DomainName::new("a.com").expect("valid"), 80),
            b"hi",
        );
        let bytes = encode(&msg);
        assert_eq!(
            bytes,
            hex("06 03 00 1a 01 02 03 04 05 06 07 08 03 00 00 50 07 61 2e 63 6f 6d 00 00 68 69")
        );
        check_vector(&bytes, &msg);
    }

    #[test]
    fn accepts_libsocks6msg_style_domain_in_datagram() {
        let bytes =
            hex("06 03 00 1a 01 02 03 04 05 06 07 08 03 00 00 50 05 61 2e 63 6f 6d 00 00 68 69");
        let msg = datagram(
            Endpoint::new(DomainName::new("a.com").expect("valid"), 80),
            b"hi",
        );
        assert_eq!(
            UdpMessage::decode(&bytes),
            Ok(Decoded::Complete { msg, len: 26 })
        );
    }

    #[test]
    fn accepts_datagram_with_trailing_padding() {
        let mut bytes = hex("06 03 00 17 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 61 62 63");
        bytes.extend_from_slice(&[0xaa; 9]);
        assert_eq!(
            UdpMessage::decode_datagram(&bytes),
            Ok(datagram(
                Endpoint::new(Ipv4Addr::new(192, 0, 2, 9), 53),
                b"abc"
            ))
        );
    }

    #[test]
    fn rejects_length_larger_than_datagram() {
        let bytes = hex("06 03 00 18 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 61 62 63");
        assert_eq!(
            UdpMessage::decode_datagram(&bytes),
            Err(Error::LengthExceedsDatagram)
        );
        assert_eq!(UdpMessage::decode(&bytes), Ok(Decoded::NeedMore(1)));
        assert_eq!(
            UdpMessage::decode_datagram(&[0x06, 0x03]),
            Err(Error::LengthExceedsDatagram)
        );
        assert_eq!(
            Error::LengthExceedsDatagram.disposition(Channel::Datagram),
            Disposition::DropSilently
        );
    }

    #[test]
    fn rejects_length_below_header() {
        let bytes = hex("06 03 00 0b 01 02 03 04 05 06 07");
        assert_eq!(
            UdpMessage::decode(&bytes),
            Err(Error::LengthBelowHeader(11))
        );
        // Known as soon as the length field is complete.
        assert_eq!(
            UdpMessage::decode(&bytes[..4]),
            Err(Error::LengthBelowHeader(11))
        );
        assert_eq!(
            UdpMessage::decode_datagram(&bytes),
            Err(Error::LengthBelowHeader(11))
        );
        assert_eq!(
            Error::LengthBelowHeader(11).disposition(Channel::Stream),
            Disposition::CloseConnection
        );
    }

    #[test]
    fn rejects_init_with_a_body() {
        let bytes = hex("06 01 00 10 01 02 03 04 05 06 07 08 00 00 00 00");
        let err = Error::LengthMismatch {
            message_type: UdpMessageType::ASSOCIATION_INIT,
            length: 16,
        };
        assert_eq!(UdpMessage::decode(&bytes), Err(err));
        assert_eq!(UdpMessage::decode_datagram(&bytes), Err(err));
    }

    #[test]
    fn rejects_domain_overrunning_message_length() {
        // Length byte 7 claims 7 name bytes but Message Length ends after 4.
        let bytes = hex("06 03 00 15 01 02 03 04 05 06 07 08 03 00 00 50 07 61 2e 63 6f 6d 00 00");
        assert_eq!(UdpMessage::decode(&bytes), Err(Error::AddressOverrun));
        assert_eq!(
            UdpMessage::decode_datagram(&bytes),
            Err(Error::AddressOverrun)
        );
        // Message Length shorter than the address header itself.
        let short = hex("06 03 00 0e 01 02 03 04 05 06 07 08 01 00");
        assert_eq!(UdpMessage::decode(&short), Err(Error::AddressOverrun));
        // An IPv6 address that does not fit.
        let v6 = hex("06 03 00 14 01 02 03 04 05 06 07 08 04 00 00 35 20 01 0d b8");
        assert_eq!(UdpMessage::decode(&v6), Err(Error::AddressOverrun));
    }

    #[test]
    fn rejects_bad_datagram_address_type() {
        let bytes = hex("06 03 00 14 01 02 03 04 05 06 07 08 02 00 00 35 c0 00 02 09");
        assert_eq!(
            UdpMessage::decode(&bytes),
            Err(Error::Address(AddressError::UnsupportedType(AddressType(
                2
            ))))
        );
    }

    #[test]
    fn rejects_domain_name_in_error_message() {
        let bytes = hex(
            "06 04 00 20 01 02 03 04 05 06 07 08 03 00 00 35 07 61 2e 63 6f 6d 00 00 \
             01 02 00 00 c6 33 64 01",
        );
        assert_eq!(
            UdpMessage::decode(&bytes),
            Err(Error::NonIpAddressType(AddressType::DOMAIN_NAME))
        );
        let reporter = hex(
            "06 04 00 1c 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 \
             03 02 00 00 c6 33 64 01",
        );
        assert_eq!(
            UdpMessage::decode(&reporter),
            Err(Error::NonIpAddressType(AddressType::DOMAIN_NAME))
        );
    }

    #[test]
    fn rejects_error_message_with_wrong_length() {
        let mismatch = |length| {
            Err(Error::LengthMismatch {
                message_type: UdpMessageType::ERROR,
                length,
            })
        };
        // One byte short of V25.
        let short = hex(
            "06 04 00 1b 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 \
             01 02 00 00 c6 33 64",
        );
        assert_eq!(UdpMessage::decode(&short), mismatch(0x1b));
        // V25 with an extra byte inside Message Length.
        let long = hex(
            "06 04 00 1d 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 \
             01 02 00 00 c6 33 64 01 00",
        );
        assert_eq!(UdpMessage::decode(&long), mismatch(0x1d));
    }

    #[test]
    fn rejects_wrong_version() {
        let bytes = hex("05 01 00 0c 01 02 03 04 05 06 07 08");
        assert_eq!(
            UdpMessage::decode(&bytes),
            Err(Error::UnsupportedVersion(5))
        );
        assert_eq!(
            UdpMessage::decode(&bytes[..1]),
            Err(Error::UnsupportedVersion(5))
        );
    }

    #[test]
    fn keeps_unknown_message_type_raw() {
        let bytes = hex("06 09 00 10 01 02 03 04 05 06 07 08 de ad be ef");
        check_vector(
            &bytes,
            &UdpMessage::Unknown {
                message_type: UdpMessageType(9),
                id: ID,
                body: hex("de ad be ef"),
            },
        );
        assert_eq!(format!("{:?}", UdpMessageType(9)), "UdpMessageType(0x09)");
    }

    #[test]
    fn keeps_unknown_error_code() {
        let bytes = hex(
            "06 04 00 1c 01 02 03 04 05 06 07 08 01 00 00 35 c0 00 02 09 \
             01 7f 00 00 c6 33 64 01",
        );
        let (msg, _) = UdpMessage::decode(&bytes)
            .expect("valid")
            .complete()
            .expect("complete");
        let UdpMessage::Error(e) = &msg else {
            panic!("not an Error: {msg:?}");
        };
        assert_eq!(e.code, UdpErrorCode(0x7f));
        assert_eq!(encode(&msg), bytes);
    }

    #[test]
    fn refuses_to_encode_oversized_datagram() {
        let endpoint = Endpoint::new(Ipv4Addr::LOCALHOST, 53);
        let max = Datagram::max_payload_len(&endpoint);
        assert_eq!(max, 65535 - 20);
        let ok = datagram(endpoint.clone(), &vec![0; max]);
        let bytes = encode(&ok);
        assert_eq!(&bytes[2..4], &[0xff, 0xff]);
        assert_eq!(UdpMessage::decode_datagram(&bytes), Ok(ok));
        let too_long = datagram(endpoint, &vec![0; max + 1]);
        let mut buf = Vec::new();
        assert_eq!(too_long.encode(&mut buf), Err(MessageTooLong(65536)));
        assert!(buf.is_empty());
    }

    #[test]
    fn ipv6_datagram_round_trips() {
        check_vector(
            &hex("06 03 00 22 01 02 03 04 05 06 07 08 04 00 01 bb \
                 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 78 79"),
            &datagram(
                Endpoint::new(Address::Ipv6("2001:db8::1".parse().expect("v6")), 443),
                b"xy",
            ),
        );
    }
}
