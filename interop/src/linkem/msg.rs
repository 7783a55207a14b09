//! `nfnetlink_queue` messages: the configuration request that binds a queue,
//! the batch verdict that releases packets, and the parser for what the
//! kernel sends back (queued-packet notices and acknowledgements).
//!
//! Layout (`include/uapi/linux/netfilter/nfnetlink_queue.h`): `nlmsghdr` (host order) + `nfgenmsg`
//! (`u8 family, u8 version, be16 res_id` = queue number) + attributes
//! (`u16 len, u16 type` in host order, payload big-endian, padded to 4).

/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
/// The attribute type bits (without `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
/// Copy only packet metadata to userspace, never the payload.
const NFQNL_COPY_META: u8 = 1;
/// Queue GSO packets unsegmented.
pub const NFQA_CFG_F_GSO: u32 = 4;
/// `NF_ACCEPT`.
pub const NF_ACCEPT: u32 = 1;

/// Netlink message type of an `nfnetlink_queue` message `msg`.
const fn msg_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_QUEUE << 8) | msg
}

/// Pads `n` up to the netlink alignment (4).
const fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one `nfnetlink_queue` message with its attributes.
struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn new(msg: u16, flags: u16, seq: u32, queue: u16) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&msg_type(msg).to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        buf.push(0); // family AF_UNSPEC
        buf.push(0); // NFNETLINK_V0
        buf.extend_from_slice(&queue.to_be_bytes());
        Self { buf }
    }

    fn attr(mut self, kind: u16, payload: &[u8]) -> Self {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() as u32).to_ne_bytes();
        if let Some(head) = self.buf.get_mut(..4) {
            head.copy_from_slice(&len);
        }
        self.buf
    }
}

/// The request that binds `queue` to this socket in metadata-only copy mode
/// with room for `maxlen` parked packets and GSO packets left whole; the
/// kernel acknowledges it (`NLM_F_ACK`) with sequence number `seq`.
pub fn bind_request(queue: u16, maxlen: u32, seq: u32) -> Vec<u8> {
    let mut params = [0u8; 5];
    // copy_range (0: nothing beyond the metadata), then the copy mode.
    if let Some(mode) = params.get_mut(4) {
        *mode = NFQNL_COPY_META;
    }
    Builder::new(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue)
        .attr(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])
        .attr(NFQA_CFG_PARAMS, &params)
        .attr(NFQA_CFG_QUEUE_MAXLEN, &maxlen.to_be_bytes())
        .attr(NFQA_CFG_FLAGS, &NFQA_CFG_F_GSO.to_be_bytes())
        .attr(NFQA_CFG_MASK, &NFQA_CFG_F_GSO.to_be_bytes())
        .finish()
}

/// The batch verdict `NF_ACCEPT` for every packet of `queue` with an id up
/// to and including `id`.
pub fn accept_through(queue: u16, id: u32) -> Vec<u8> {
    let hdr = [NF_ACCEPT.to_be_bytes(), id.to_be_bytes()].concat();
    Builder::new(NFQNL_MSG_VERDICT_BATCH, NLM_F_REQUEST, 0, queue)
        .attr(NFQA_VERDICT_HDR, &hdr)
        .finish()
}

/// One message from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A packet was parked on `queue` with this `id`.
    Packet {
        /// Queue number.
        queue: u16,
        /// The kernel's packet id (per queue, increasing).
        id: u32,
    },
    /// The answer to request `seq`: `errno` 0 is success.
    Ack {
        /// The request's sequence number.
        seq: u32,
        /// 0 or a positive errno.
        errno: i32,
    },
    /// Anything else (ignored).
    Other,
}

/// Malformed input from the kernel (never expected; reported, not fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a datagram from the kernel into its netlink messages and decodes
/// each one.
pub fn parse(datagram: &[u8]) -> Result<Vec<Event>, Malformed> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let len = u32_at(rest, 0).ok_or(Malformed)? as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Malformed);
        }
        let kind = u16_at(rest, 4).ok_or(Malformed)?;
        let msg = rest.get(..len).ok_or(Malformed)?;
        out.push(parse_one(kind, msg)?);
        rest = rest.get(align(len).min(rest.len())..).unwrap_or_default();
    }
    Ok(out)
}

fn parse_one(kind: u16, msg: &[u8]) -> Result<Event, Malformed> {
    if kind == NLMSG_ERROR {
        // payload: i32 error (negative errno or 0), then the request header.
        let err = u32_at(msg, NLMSG_HDRLEN).ok_or(Malformed)?.cast_signed();
        let seq = u32_at(msg, NLMSG_HDRLEN + 4 + 8).ok_or(Malformed)?;
        return Ok(Event::Ack {
            seq,
            errno: err.checked_neg().ok_or(Malformed)?,
        });
    }
    if kind != msg_type(NFQNL_MSG_PACKET) {
        return Ok(Event::Other);
    }
    let res = msg
        .get(NLMSG_HDRLEN + 2..NLMSG_HDRLEN + 4)
        .ok_or(Malformed)?;
    let queue = u16::from_be_bytes(res.try_into().map_err(|_| Malformed)?);
    let mut attrs = msg.get(NLMSG_HDRLEN + NFGENMSG_LEN..).ok_or(Malformed)?;
    while attrs.len() >= NLA_HDRLEN {
        let alen = u16_at(attrs, 0).ok_or(Malformed)? as usize;
        let akind = u16_at(attrs, 2).ok_or(Malformed)? & NLA_TYPE_MASK;
        if alen < NLA_HDRLEN || alen > attrs.len() {
            return Err(Malformed);
        }
        if akind == NFQA_PACKET_HDR {
            let id = attrs.get(NLA_HDRLEN..NLA_HDRLEN + 4).ok_or(Malformed)?;
            let id = u32::from_be_bytes(id.try_into().map_err(|_| Malformed)?);
            return Ok(Event::Packet { queue, id });
        }
        attrs = attrs
            .get(align(alen).min(attrs.len())..)
            .unwrap_or_default();
    }
    Err(Malformed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        use std::fmt::Write;
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    }

    #[test]
    fn bind_request_has_cmd_params_maxlen_flags_mask_in_order() {
        let m = bind_request(11, 20_000, 7);
        // 16 nlmsghdr + 4 nfgenmsg + 8 cmd + 12 params + 8 maxlen + 8 flags + 8 mask
        assert_eq!(m.len(), 64);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 64);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x0302);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x5);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(hex(&m[16..20]), "0000000b");
        let attrs = &m[20..];
        let ne = |v: u16| hex(&v.to_ne_bytes());
        let expect = [
            format!("{}{}01000000", ne(8), ne(1)),
            format!("{}{}000000000100_0000", ne(9), ne(2)).replace('_', ""),
            format!("{}{}00004e20", ne(8), ne(3)),
            format!("{}{}00000004", ne(8), ne(5)),
            format!("{}{}00000004", ne(8), ne(4)),
        ]
        .concat();
        assert_eq!(hex(attrs), expect);
    }

    #[test]
    fn accept_through_is_a_batch_verdict_for_the_queue_and_id() {
        let m = accept_through(22, 0x0102_0304);
        assert_eq!(m.len(), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x0303);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x1);
        assert_eq!(hex(&m[16..20]), "00000016");
        assert_eq!(u16::from_ne_bytes(m[20..22].try_into().unwrap()), 12);
        assert_eq!(u16::from_ne_bytes(m[22..24].try_into().unwrap()), 2);
        assert_eq!(hex(&m[24..32]), "0000000101020304");
    }

    /// A packet notice as the kernel sends it in META mode: packet header,
    /// then other metadata attributes we skip.
    fn packet_msg(queue: u16, id: u32, hdr_first: bool) -> Vec<u8> {
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(1); // NF_INET_LOCAL_IN
        let b = Builder::new(NFQNL_MSG_PACKET, 0, 0, queue);
        let b = if hdr_first {
            b.attr(NFQA_PACKET_HDR, &hdr).attr(5, &3u32.to_be_bytes())
        } else {
            b.attr(5, &3u32.to_be_bytes())
                .attr(9 | 0x4000, &[1, 2, 3])
                .attr(NFQA_PACKET_HDR, &hdr)
        };
        b.finish()
    }

    #[test]
    fn parse_reads_every_packet_id_in_a_datagram() {
        let mut d = packet_msg(11, 1, true);
        d.extend(packet_msg(12, 0xdead_beef, false));
        assert_eq!(
            parse(&d).unwrap(),
            vec![
                Event::Packet { queue: 11, id: 1 },
                Event::Packet {
                    queue: 12,
                    id: 0xdead_beef
                }
            ]
        );
    }

    #[test]
    fn parse_reads_ack_and_error() {
        let mut d = Vec::new();
        for (err, seq) in [(0i32, 5u32), (-libc::EPERM, 6)] {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&err.to_ne_bytes());
            // echoed request header
            m.extend_from_slice(&64u32.to_ne_bytes());
            m.extend_from_slice(&0x0302u16.to_ne_bytes());
            m.extend_from_slice(&5u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            d.extend(m);
        }
        assert_eq!(
            parse(&d).unwrap(),
            vec![
                Event::Ack { seq: 5, errno: 0 },
                Event::Ack {
                    seq: 6,
                    errno: libc::EPERM
                }
            ]
        );
    }

    #[test]
    fn parse_rejects_truncated_and_overlong_messages() {
        let d = packet_msg(11, 1, true);
        assert_eq!(parse(&d[..d.len() - 1]), Err(Malformed));
        assert_eq!(parse(&d[..10]), Err(Malformed));
        let mut bad = d.clone();
        bad[20..22].copy_from_slice(&200u16.to_ne_bytes()); // attribute longer than message
        assert_eq!(parse(&bad), Err(Malformed));
        let mut zero = d;
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(parse(&zero), Err(Malformed));
        assert_eq!(parse(&[]), Ok(vec![]));
    }
}
