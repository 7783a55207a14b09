//! Netlink framing shared by the generic netlink (`mptcp_pm`) and rtnetlink
//! code (the client's): message headers, attributes, error messages. Pure functions over
//! byte slices; layouts in `include/uapi/linux/netlink.h` and
//! `include/uapi/linux/genetlink.h`. Header fields are in host byte order.

use std::fmt;

/// Length of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Length of an attribute header (`struct nlattr`).
pub const NLA_HDRLEN: usize = 4;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// In an `NLMSG_ERROR`: the original message was not echoed in full.
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an `NLMSG_ERROR`: extended-ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR` (payload: `s32 error`, 0 = ACK).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`, the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`.
pub const NLMSG_OVERRUN: u16 = 4;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// `NLMSGERR_ATTR_MSG`: the extended-ack text.
const NLMSGERR_ATTR_MSG: u16 = 1;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one netlink message: header, a fixed family header, attributes.
/// The length field is back-filled by [`MsgWriter::finish`].
#[derive(Debug)]
pub struct MsgWriter {
    buf: Vec<u8>,
}

impl MsgWriter {
    /// Starts a message of type `ty` with `flags` and sequence number `seq`.
    pub fn new(ty: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Self { buf }
    }

    /// Appends a fixed header (`genlmsghdr`, `ifaddrmsg`, ...), padded to 4.
    pub fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let padded = align4(self.buf.len());
        self.buf.resize(padded, 0);
    }

    /// Appends an attribute with a raw payload.
    pub fn attr(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(NLA_HDRLEN + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Appends a `u8` attribute.
    pub fn attr_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.attr(ty, &[v])
    }

    /// Appends a `u16` attribute (host order).
    pub fn attr_u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// Appends a `u32` attribute (host order).
    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// Opens a nested attribute (`NLA_F_NESTED` is added); close it with
    /// [`MsgWriter::end_nest`] and the returned position.
    pub fn begin_nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Closes the nest opened at `start`, back-filling its length.
    pub fn end_nest(&mut self, start: usize) -> &mut Self {
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        if let Some(slot) = self.buf.get_mut(start..start + 2) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message with its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        if let Some(slot) = self.buf.get_mut(0..4) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
        self.buf
    }
}

/// One received netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Everything after the 16-byte header, up to `nlmsg_len`.
    pub payload: &'a [u8],
}

/// A netlink datagram that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed netlink message")
    }
}

impl std::error::Error for Malformed {}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Splits a datagram into its messages. A header whose length is shorter
/// than a header or longer than what remains ends the walk with an error.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>, Malformed>> {
    let mut rest = buf;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let parsed = (|| {
            let len = u32_at(rest, 0)? as usize;
            if len < NLMSG_HDRLEN || len > rest.len() {
                return None;
            }
            let msg = Message {
                ty: u16_at(rest, 4)?,
                flags: u16_at(rest, 6)?,
                seq: u32_at(rest, 8)?,
                pid: u32_at(rest, 12)?,
                payload: rest.get(NLMSG_HDRLEN..len)?,
            };
            Some((msg, align4(len).min(rest.len())))
        })();
        if let Some((msg, next)) = parsed {
            rest = rest.get(next..).unwrap_or_default();
            Some(Ok(msg))
        } else {
            failed = true;
            Some(Err(Malformed))
        }
    })
}

/// Iterates the attributes in `buf` as `(type, payload)`, the type without
/// the `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER` bits. Stops at the first
/// attribute whose length does not fit.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, 0)?);
        let ty = u16_at(rest, 2)? & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
        if len < NLA_HDRLEN {
            return None;
        }
        let payload = rest.get(NLA_HDRLEN..len)?;
        rest = rest.get(align4(len).min(rest.len())..).unwrap_or_default();
        Some((ty, payload))
    })
}

/// Reads a `u8` attribute payload.
pub fn as_u8(p: &[u8]) -> Option<u8> {
    p.first().copied()
}

/// Reads a `u16` attribute payload (host order).
pub fn as_u16(p: &[u8]) -> Option<u16> {
    u16_at(p, 0)
}

/// Reads a `u32` attribute payload (host order).
pub fn as_u32(p: &[u8]) -> Option<u32> {
    u32_at(p, 0)
}

/// Reads a NUL-terminated string attribute payload.
pub fn as_str(p: &[u8]) -> Option<String> {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8(p.get(..end)?.to_vec()).ok()
}

/// An `NLMSG_ERROR` that is not an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    /// The positive errno (`EPERM`, `EEXIST`, ...).
    pub errno: i32,
    /// The kernel's extended-ack text, when it sent one.
    pub message: Option<String>,
}

/// Parses an `NLMSG_ERROR` payload: `Ok(())` for an ACK (error 0), the
/// error otherwise.
pub fn parse_error(msg: &Message<'_>) -> Result<(), NlError> {
    let Some(code) = u32_at(msg.payload, 0).map(u32::cast_signed) else {
        return Err(NlError {
            errno: libc::EIO,
            message: Some("truncated NLMSG_ERROR".into()),
        });
    };
    if code == 0 {
        return Ok(());
    }
    let mut message = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // After the error code: the original header, and its payload
        // unless NLM_F_CAPPED.
        let echoed = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32_at(msg.payload, 4).map_or(NLMSG_HDRLEN, |l| l as usize)
        };
        if let Some(tlvs) = msg.payload.get(4 + align4(echoed)..) {
            message = attrs(tlvs)
                .find(|(ty, _)| *ty == NLMSGERR_ATTR_MSG)
                .and_then(|(_, p)| as_str(p));
        }
    }
    Err(NlError {
        errno: code.saturating_neg(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_pads_attributes_and_back_fills_lengths() {
        let mut w = MsgWriter::new(0x1c, NLM_F_REQUEST, 9);
        w.header(&[1, 1, 0, 0]);
        let nest = w.begin_nest(1);
        w.attr_u8(2, 7);
        w.end_nest(nest);
        let bytes = w.finish();
        assert_eq!(
            bytes,
            [
                0x20, 0, 0, 0, 0x1c, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, //
                1, 1, 0, 0, //
                0x0c, 0, 0x01, 0x80, 5, 0, 2, 0, 7, 0, 0, 0
            ]
        );
    }

    #[test]
    fn messages_splits_a_datagram_and_rejects_bad_lengths() {
        let a = MsgWriter::new(3, 0, 1).finish();
        let mut b = MsgWriter::new(20, 2, 2);
        b.attr_u8(1, 1);
        let mut dgram = a.clone();
        dgram.extend_from_slice(&b.finish());
        let got: Vec<_> = messages(&dgram).collect::<Result<_, _>>().expect("parse");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ty, 3);
        assert_eq!(got[1].ty, 20);
        assert_eq!(got[1].payload, &[5, 0, 1, 0, 1, 0, 0, 0]);

        let mut bad = a;
        bad[0] = 200;
        assert_eq!(messages(&bad).next(), Some(Err(Malformed)));
        bad[0] = 4;
        assert_eq!(messages(&bad).next(), Some(Err(Malformed)));
    }

    #[test]
    fn attrs_stops_at_truncated_attribute() {
        let buf = [8, 0, 1, 0, 1, 2, 3, 4, 12, 0, 2, 0, 1];
        let got: Vec<_> = attrs(&buf).collect();
        assert_eq!(got, vec![(1, &[1u8, 2, 3, 4][..])]);
    }

    #[test]
    fn parse_error_reads_errno_and_extended_ack_text() {
        // error -22, capped echo of a 20-byte request, then MSG "bad id".
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-22i32).to_ne_bytes());
        payload.extend_from_slice(&MsgWriter::new(0x1c, 5, 4).finish());
        payload.extend_from_slice(&[11, 0, 1, 0, b'b', b'a', b'd', b' ', b'i', b'd', 0, 0]);
        let msg = Message {
            ty: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 4,
            pid: 0,
            payload: &payload,
        };
        assert_eq!(
            parse_error(&msg),
            Err(NlError {
                errno: 22,
                message: Some("bad id".into())
            })
        );
        let ack = 0i32.to_ne_bytes();
        let msg = Message {
            payload: &ack,
            flags: 0,
            ..msg
        };
        assert_eq!(parse_error(&msg), Ok(()));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)
        ) {
            use crate::netlink::mptcp_pm as netlink;
            for msg in messages(&bytes).flatten() {
                let _ = parse_error(&msg);
                let _ = netlink::decode_endpoint(msg.payload);
                let _ = netlink::decode_limits(msg.payload);
                let _ = netlink::decode_family(msg.payload);
            }
            for (_, p) in attrs(&bytes) {
                let _ = (as_u8(p), as_u16(p), as_u32(p), as_str(p));
            }
            let _ = netlink::decode_endpoint(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_well_framed_garbage(
            ty in proptest::sample::select(vec![NLMSG_ERROR, 20, 21, 16, 0x1c]),
            flags in proptest::prelude::any::<u16>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)
        ) {
            use crate::netlink::mptcp_pm as netlink;
            let mut w = MsgWriter::new(ty, flags, 1);
            w.header(&payload);
            let bytes = w.finish();
            let msg = messages(&bytes).next().expect("one message").expect("framed");
            proptest::prop_assert_eq!(msg.payload.len(), align4(payload.len()));
            let _ = parse_error(&msg);
            let _ = netlink::decode_endpoint(msg.payload);
            let _ = netlink::decode_limits(msg.payload);
            let _ = netlink::decode_family(msg.payload);
        }
    }
}
