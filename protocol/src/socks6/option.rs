//! Options: the `Kind, Length, Data` records at the end of Requests,
//! Authentication Replies and Operation Replies (draft -11 §8, spec digest
//! §3).
//!
//! # Reading an options area
//!
//! [`Options::decode`] follows the digest's "Robust parsing" (§3.1), the
//! behaviour of the author's libsocks6msg, with two tolerances for
//! studentmain:
//!
//! - An area longer than 16384 bytes is an error ("MUST NOT exceed").
//! - An option whose Length is below 4 or not a multiple of 4 ends parsing;
//!   it and the bytes after it are ignored. So is an option whose Length
//!   runs past the area, and a tail shorter than an option header.
//! - Exception: an Authentication Data option (kind 4) with a Length that
//!   is not a multiple of 4 is accepted, as studentmain sends them
//!   unpadded (`00 04 00 07 02 01 00`). Its data is read as if the missing
//!   zero padding were there, so it equals the padded form.
//! - Because of that exception, an area whose total length is not a
//!   multiple of 4 is **accepted** (libsocks6msg rejects it): studentmain's
//!   Authentication Reply `06 00 00 0f ...` has a 15-byte area. Nothing
//!   after the area depends on its alignment.
//! - A known kind whose body does not have the layout the draft gives
//!   (wrong length, non-zero padding, a window size of 0, leg 0) is kept as
//!   [`SocksOption::Raw`], which re-encodes unchanged and which the typed
//!   accessors ignore. Unknown, experimental (`0xFC00`–`0xFFFF`), legacy
//!   (Session Untrusted, 7) and stale (16–18) kinds are kept raw too.
//! - An Initial Data Length above 16384 is an error, not a malformed body:
//!   the digest (§4.9) makes it a protocol violation that closes the
//!   connection.
//!
//! Duplicates are kept in order. The accessors apply "first wins": the
//! first Authentication Data option of a method, the first Advertisement,
//! and among Stack options that set the same level and code on overlapping
//! legs, the first.
//!
//! # Writing
//!
//! [`Options::push`] is the only way to add an option, and refuses what
//! the strict writer must not send: more than 16384 bytes in all, a second
//! Authentication Data option for a method, contradicting Stack options.
//! Every option is written zero-padded to a multiple of 4.

use core::fmt;

use super::auth::{AuthMethodAdvertisement, Method};
use super::error::Error;
use super::idempotence::Window;
use super::session::SessionId;
use super::stack::StackOption;
use crate::codec::{Fail, LengthSlot, Out, Reader, pad4};

/// "The total length of all options MUST NOT exceed 16 KB" (draft -11 §4).
pub const MAX_OPTIONS_LEN: usize = 16384;

/// Kind and Length.
const HEADER_LEN: usize = 4;

crate::code_point! {
    /// An option kind (draft -11 §15, spec digest §0).
    pub struct OptionKind(u16) {
        /// Stack option.
        STACK = 1,
        /// Authentication Method Advertisement.
        AUTHENTICATION_METHOD_ADVERTISEMENT = 2,
        /// Authentication Method Selection.
        AUTHENTICATION_METHOD_SELECTION = 3,
        /// Authentication Data.
        AUTHENTICATION_DATA = 4,
        /// Session Request.
        SESSION_REQUEST = 5,
        /// Session ID.
        SESSION_ID = 6,
        /// Session Untrusted: -09 and earlier; read as unknown.
        SESSION_UNTRUSTED = 7,
        /// Session OK.
        SESSION_OK = 8,
        /// Session Invalid.
        SESSION_INVALID = 9,
        /// Session Teardown.
        SESSION_TEARDOWN = 10,
        /// Idempotence Request.
        IDEMPOTENCE_REQUEST = 11,
        /// Idempotence Window.
        IDEMPOTENCE_WINDOW = 12,
        /// Idempotence Expenditure.
        IDEMPOTENCE_EXPENDITURE = 13,
        /// Idempotence Accepted.
        IDEMPOTENCE_ACCEPTED = 14,
        /// Idempotence Rejected.
        IDEMPOTENCE_REJECTED = 15,
        /// Resolution Request: a stale IANA entry (removed in -08); unknown.
        RESOLUTION_REQUEST = 16,
        /// IPv4 Resolution: a stale IANA entry; unknown.
        IPV4_RESOLUTION = 17,
        /// IPv6 Resolution: a stale IANA entry; unknown.
        IPV6_RESOLUTION = 18,
    }
}

impl OptionKind {
    /// True for the experimental range `0xFC00`–`0xFFFF` (draft -11 §15;
    /// "Vendor-specific" up to -10).
    pub fn is_experimental(self) -> bool {
        self.0 >= 0xfc00
    }
}

/// One option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocksOption {
    /// Stack option (kind 1).
    Stack(StackOption),
    /// Authentication Method Advertisement (kind 2), with the Initial Data
    /// Length.
    AuthMethodAdvertisement(AuthMethodAdvertisement),
    /// Authentication Method Selection (kind 3).
    AuthMethodSelection(Method),
    /// Authentication Data (kind 4). `data` is what follows the method
    /// byte, including the zero padding: as read it always pads the option
    /// to a multiple of 4 (padding the sender left out is added), and
    /// [`Options::push`] pads it the same way.
    AuthData {
        /// The method the data belongs to.
        method: Method,
        /// Method-specific data and padding.
        data: Vec<u8>,
    },
    /// Session Request (kind 5).
    SessionRequest,
    /// Session ID (kind 6).
    SessionId(SessionId),
    /// Session OK (kind 8).
    SessionOk,
    /// Session Invalid (kind 9).
    SessionInvalid,
    /// Session Teardown (kind 10).
    SessionTeardown,
    /// Idempotence Request (kind 11): the window size asked for.
    IdempotenceRequest(u32),
    /// Idempotence Window (kind 12).
    IdempotenceWindow(Window),
    /// Idempotence Expenditure (kind 13): the token spent. Length 8 (the
    /// -11 figure's "Length = 4" is an erratum; its text says 8).
    IdempotenceExpenditure(u32),
    /// Idempotence Accepted (kind 14).
    IdempotenceAccepted,
    /// Idempotence Rejected (kind 15).
    IdempotenceRejected,
    /// An option kept as read: unknown, experimental, legacy or stale kinds,
    /// and known kinds with a malformed body. `data` follows the header;
    /// [`Options::push`] zero-pads it to a multiple of 4.
    Raw {
        /// The kind.
        kind: OptionKind,
        /// The bytes after Kind and Length.
        data: Vec<u8>,
    },
}

impl SocksOption {
    /// The option's kind.
    pub fn kind(&self) -> OptionKind {
        match self {
            Self::Stack(_) => OptionKind::STACK,
            Self::AuthMethodAdvertisement(_) => OptionKind::AUTHENTICATION_METHOD_ADVERTISEMENT,
            Self::AuthMethodSelection(_) => OptionKind::AUTHENTICATION_METHOD_SELECTION,
            Self::AuthData { .. } => OptionKind::AUTHENTICATION_DATA,
            Self::SessionRequest => OptionKind::SESSION_REQUEST,
            Self::SessionId(_) => OptionKind::SESSION_ID,
            Self::SessionOk => OptionKind::SESSION_OK,
            Self::SessionInvalid => OptionKind::SESSION_INVALID,
            Self::SessionTeardown => OptionKind::SESSION_TEARDOWN,
            Self::IdempotenceRequest(_) => OptionKind::IDEMPOTENCE_REQUEST,
            Self::IdempotenceWindow(_) => OptionKind::IDEMPOTENCE_WINDOW,
            Self::IdempotenceExpenditure(_) => OptionKind::IDEMPOTENCE_EXPENDITURE,
            Self::IdempotenceAccepted => OptionKind::IDEMPOTENCE_ACCEPTED,
            Self::IdempotenceRejected => OptionKind::IDEMPOTENCE_REJECTED,
            Self::Raw { kind, .. } => *kind,
        }
    }

    /// Bytes the option writes, header and padding included.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        HEADER_LEN + body + pad4(body)
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Stack(_) => StackOption::BODY_LEN,
            Self::AuthMethodAdvertisement(a) => a.body_len(),
            Self::AuthData { data, .. } => 1 + data.len(),
            Self::SessionId(id) => id.as_bytes().len(),
            Self::AuthMethodSelection(_)
            | Self::IdempotenceRequest(_)
            | Self::IdempotenceExpenditure(_) => 4,
            Self::IdempotenceWindow(_) => 8,
            Self::Raw { data, .. } => data.len(),
            Self::SessionRequest
            | Self::SessionOk
            | Self::SessionInvalid
            | Self::SessionTeardown
            | Self::IdempotenceAccepted
            | Self::IdempotenceRejected => 0,
        }
    }

    /// Writes header, body and zero padding. The Length fits because
    /// [`Options`] keeps every option within 16384 bytes.
    fn encode<B: Out>(&self, buf: &mut B) {
        buf.put_u16(self.kind().0);
        let slot = LengthSlot::u16(buf);
        match self {
            Self::Stack(s) => s.encode_body(buf),
            Self::AuthMethodAdvertisement(a) => a.encode_body(buf),
            Self::AuthMethodSelection(m) => {
                buf.put_u8(m.0);
                buf.put_bytes(0, 3);
            }
            Self::AuthData { method, data } => {
                buf.put_u8(method.0);
                buf.put_slice(data);
            }
            Self::SessionId(id) => buf.put_slice(id.as_bytes()),
            Self::IdempotenceRequest(n) | Self::IdempotenceExpenditure(n) => buf.put_u32(*n),
            Self::IdempotenceWindow(w) => {
                buf.put_u32(w.base());
                buf.put_u32(w.size());
            }
            Self::Raw { data, .. } => buf.put_slice(data),
            Self::SessionRequest
            | Self::SessionOk
            | Self::SessionInvalid
            | Self::SessionTeardown
            | Self::IdempotenceAccepted
            | Self::IdempotenceRejected => {}
        }
        let body = slot.written_after(buf);
        buf.put_bytes(0, pad4(body));
        slot.fill(buf, HEADER_LEN + body + pad4(body));
    }

    /// The option a `kind` with this `body` decodes to: typed if the body
    /// has the draft's layout, raw otherwise.
    fn from_wire(kind: OptionKind, body: &[u8]) -> Result<Self, Error> {
        let raw = || Self::Raw {
            kind,
            data: body.to_vec(),
        };
        let empty = body.is_empty();
        let word = <[u8; 4]>::try_from(body).ok();
        Ok(match kind {
            OptionKind::STACK => word
                .and_then(StackOption::from_body)
                .map_or_else(raw, Self::Stack),
            OptionKind::AUTHENTICATION_METHOD_ADVERTISEMENT => {
                AuthMethodAdvertisement::from_body(body)?
                    .map_or_else(raw, Self::AuthMethodAdvertisement)
            }
            OptionKind::AUTHENTICATION_METHOD_SELECTION => match word {
                Some([m, 0, 0, 0]) => Self::AuthMethodSelection(Method(m)),
                _ => raw(),
            },
            OptionKind::AUTHENTICATION_DATA => match body.split_first() {
                Some((&method, data)) => Self::AuthData {
                    method: Method(method),
                    data: data.to_vec(),
                }
                .padded(),
                None => raw(),
            },
            OptionKind::SESSION_ID => SessionId::new(body).map_or_else(|_| raw(), Self::SessionId),
            OptionKind::IDEMPOTENCE_REQUEST => {
                word.map_or_else(raw, |w| Self::IdempotenceRequest(u32::from_be_bytes(w)))
            }
            OptionKind::IDEMPOTENCE_EXPENDITURE => {
                word.map_or_else(raw, |w| Self::IdempotenceExpenditure(u32::from_be_bytes(w)))
            }
            OptionKind::IDEMPOTENCE_WINDOW => {
                let mut r = Reader::new(body);
                match (r.u32(), r.u32(), r.is_empty()) {
                    (Ok(base), Ok(size), true) => {
                        Window::new(base, size).map_or_else(|_| raw(), Self::IdempotenceWindow)
                    }
                    _ => raw(),
                }
            }
            OptionKind::SESSION_REQUEST if empty => Self::SessionRequest,
            OptionKind::SESSION_OK if empty => Self::SessionOk,
            OptionKind::SESSION_INVALID if empty => Self::SessionInvalid,
            OptionKind::SESSION_TEARDOWN if empty => Self::SessionTeardown,
            OptionKind::IDEMPOTENCE_ACCEPTED if empty => Self::IdempotenceAccepted,
            OptionKind::IDEMPOTENCE_REJECTED if empty => Self::IdempotenceRejected,
            _ => raw(),
        })
    }

    /// Pads the data of Authentication Data and raw options to the 4-byte
    /// boundary the writer uses, so an option reads back as it was pushed.
    fn padded(mut self) -> Self {
        match &mut self {
            // The method byte comes before the data.
            Self::AuthData { data, .. } => data.resize(data.len() + pad4(1 + data.len()), 0),
            Self::Raw { data, .. } => data.resize(data.len() + pad4(data.len()), 0),
            _ => {}
        }
        self
    }
}

/// The options of one message, in order.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Options {
    list: Vec<SocksOption>,
    /// Encoded length of `list`.
    len: usize,
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `opt`, zero-padding the data of Authentication Data and raw
    /// options. Refuses an option that would take the total past 16384
    /// bytes, a second Authentication Data option for the same method
    /// ("Clients MUST only place one Authentication Data option per
    /// authentication method", draft -11 §8.3), a Stack option that sets
    /// the same level and code as an earlier one on an overlapping leg
    /// ("MUST NOT contradict or duplicate each other", §8.1), and a Stack
    /// option whose leg or level does not fit its bits.
    pub fn push(&mut self, opt: SocksOption) -> Result<(), Error> {
        let opt = opt.padded();
        match &opt {
            SocksOption::Stack(s) => {
                if !s.is_writable() {
                    return Err(Error::StackFieldOutOfRange {
                        leg: s.leg,
                        level: s.level(),
                    });
                }
                if self.all_stack().any(|o| o.conflicts_with(*s)) {
                    return Err(Error::DuplicateOption(OptionKind::STACK));
                }
            }
            SocksOption::AuthData { method, .. } if self.auth_data(*method).is_some() => {
                return Err(Error::DuplicateOption(OptionKind::AUTHENTICATION_DATA));
            }
            _ => {}
        }
        let len = self.len + opt.encoded_len();
        if len > MAX_OPTIONS_LEN {
            return Err(Error::OptionsTooLong(len));
        }
        self.len = len;
        self.list.push(opt);
        Ok(())
    }

    /// `self` with `opt` appended (see [`Options::push`]).
    pub fn with(mut self, opt: SocksOption) -> Result<Self, Error> {
        self.push(opt)?;
        Ok(self)
    }

    /// The options in order.
    pub fn iter(&self) -> core::slice::Iter<'_, SocksOption> {
        self.list.iter()
    }

    /// The options as a slice.
    pub fn as_slice(&self) -> &[SocksOption] {
        &self.list
    }

    /// Number of options.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are no options.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// True if a well-formed option of `kind` is present (raw options, which
    /// are ignored, do not count).
    pub fn has(&self, kind: OptionKind) -> bool {
        self.iter()
            .any(|o| !matches!(o, SocksOption::Raw { .. }) && o.kind() == kind)
    }

    /// The first Authentication Method Advertisement.
    pub fn auth_advertisement(&self) -> Option<&AuthMethodAdvertisement> {
        self.iter().find_map(|o| match o {
            SocksOption::AuthMethodAdvertisement(a) => Some(a),
            _ => None,
        })
    }

    /// The Initial Data Length of the first Advertisement; 0 without one.
    pub fn initial_data_len(&self) -> usize {
        self.auth_advertisement()
            .map_or(0, |a| usize::from(a.initial_data_len()))
    }

    /// The method of the first Authentication Method Selection.
    pub fn auth_selection(&self) -> Option<Method> {
        self.iter().find_map(|o| match o {
            SocksOption::AuthMethodSelection(m) => Some(*m),
            _ => None,
        })
    }

    /// The data (with its padding) of the first Authentication Data option
    /// of `method`.
    pub fn auth_data(&self, method: Method) -> Option<&[u8]> {
        self.iter().find_map(|o| match o {
            SocksOption::AuthData { method: m, data } if *m == method => Some(data.as_slice()),
            _ => None,
        })
    }

    /// The first Session ID.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.iter().find_map(|o| match o {
            SocksOption::SessionId(id) => Some(id),
            _ => None,
        })
    }

    /// The window size of the first Idempotence Request.
    pub fn idempotence_request(&self) -> Option<u32> {
        self.iter().find_map(|o| match o {
            SocksOption::IdempotenceRequest(n) => Some(*n),
            _ => None,
        })
    }

    /// The first Idempotence Window.
    pub fn idempotence_window(&self) -> Option<Window> {
        self.iter().find_map(|o| match o {
            SocksOption::IdempotenceWindow(w) => Some(*w),
            _ => None,
        })
    }

    /// The token of the first Idempotence Expenditure.
    pub fn idempotence_expenditure(&self) -> Option<u32> {
        self.iter().find_map(|o| match o {
            SocksOption::IdempotenceExpenditure(t) => Some(*t),
            _ => None,
        })
    }

    /// The Stack options in effect: all of them, except one that sets the
    /// same level and code as an earlier one on an overlapping leg (first
    /// wins).
    pub fn stack(&self) -> impl Iterator<Item = &StackOption> {
        let mut kept: Vec<&StackOption> = Vec::new();
        self.all_stack().filter(move |s| {
            let fresh = !kept.iter().any(|k| k.conflicts_with(**s));
            if fresh {
                kept.push(s);
            }
            fresh
        })
    }

    fn all_stack(&self) -> impl Iterator<Item = &StackOption> {
        self.iter().filter_map(|o| match o {
            SocksOption::Stack(s) => Some(s),
            _ => None,
        })
    }

    /// Decodes a whole options area (its length comes from the enclosing
    /// message's Options Length), following the rules in the
    /// [module documentation](self).
    pub fn decode(area: &[u8]) -> Result<Self, Error> {
        if area.len() > MAX_OPTIONS_LEN {
            return Err(Error::OptionsTooLong(area.len()));
        }
        let mut r = Reader::new(area);
        let mut out = Self::new();
        while let Ok([k0, k1, l0, l1]) = r.array::<4>() {
            let kind = OptionKind(u16::from_be_bytes([k0, k1]));
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            // "If one option's Length is below 4 or not a multiple of 4,
            // stop parsing and ignore the remaining options" (§3.1), except
            // studentmain's unpadded Authentication Data.
            let length_ok = len % 4 == 0 || kind == OptionKind::AUTHENTICATION_DATA;
            if len < HEADER_LEN || !length_ok {
                break;
            }
            // "Never trust an option Length beyond the Options Length
            // boundary" (§3.1).
            let Ok(body) = r.take(len - HEADER_LEN) else {
                break;
            };
            let opt = SocksOption::from_wire(kind, body)?;
            out.len += opt.encoded_len();
            out.list.push(opt);
        }
        // Padding unpadded Authentication Data can make the options longer
        // than the area; refuse rather than hold options we cannot send.
        if out.len > MAX_OPTIONS_LEN {
            return Err(Error::OptionsTooLong(out.len));
        }
        Ok(out)
    }

    /// Reads an options area of `len` bytes (already checked against the
    /// limit by the caller).
    pub(crate) fn read(r: &mut Reader<'_>, len: usize) -> Result<Self, Fail<Error>> {
        let area = r.take(len)?;
        Ok(Self::decode(area)?)
    }

    /// Writes every option. At most 16384 bytes, by construction.
    pub fn encode<B: Out>(&self, buf: &mut B) {
        for opt in &self.list {
            opt.encode(buf);
        }
    }

    /// Bytes [`Options::encode`] writes (at most 16384).
    pub fn encoded_len(&self) -> usize {
        self.len
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}

impl<'a> IntoIterator for &'a Options {
    type Item = &'a SocksOption;
    type IntoIter = core::slice::Iter<'a, SocksOption>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl TryFrom<Vec<SocksOption>> for Options {
    type Error = Error;
    /// Pushes each option in turn (see [`Options::push`]).
    fn try_from(list: Vec<SocksOption>) -> Result<Self, Error> {
        list.into_iter().try_fold(Self::new(), Self::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks6::stack::{Availability, Leg, StackValue};
    use crate::socks6::tests::hex;

    fn one(bytes: &[u8]) -> SocksOption {
        let opts = Options::decode(bytes).expect("valid area");
        assert_eq!(opts.len(), 1, "{opts:?}");
        opts.iter().next().cloned().expect("one option")
    }

    fn encode(opts: &Options) -> Vec<u8> {
        let mut buf = Vec::new();
        opts.encode(&mut buf);
        assert_eq!(buf.len(), opts.encoded_len());
        buf
    }

    /// Decodes `bytes` as one option, compares, and re-encodes byte for
    /// byte.
    fn vector(bytes: &str, expected: SocksOption) {
        let bytes = hex(bytes);
        let opt = one(&bytes);
        assert_eq!(opt, expected, "{bytes:02x?}");
        assert_eq!(opt.encoded_len(), bytes.len());
        let opts = Options::new().with(expected).expect("within limits");
        assert_eq!(encode(&opts), bytes);
    }

    fn stack(leg: Leg, value: StackValue) -> SocksOption {
        SocksOption::Stack(StackOption::new(leg, value))
    }

    #[test]
    fn auth_vectors_v8_to_v12() {
        let adv = |idl, m: &[u8]| {
            SocksOption::AuthMethodAdvertisement(
                AuthMethodAdvertisement::new(idl, m.iter().copied().map(Method)).expect("valid"),
            )
        };
        vector("00 02 00 08 00 05 00 00", adv(5, &[]));
        vector("00 02 00 08 00 00 02 00", adv(0, &[2]));
        vector("00 02 00 0c 00 00 01 02 03 00 00 00", adv(0, &[1, 2, 3]));
        vector(
            "00 04 00 10 02 01 04 75 73 65 72 04 70 61 73 73",
            SocksOption::AuthData {
                method: Method::USERNAME_PASSWORD,
                data: b"\x01\x04user\x04pass".to_vec(),
            },
        );
        vector(
            "00 03 00 08 02 00 00 00",
            SocksOption::AuthMethodSelection(Method::USERNAME_PASSWORD),
        );
        vector(
            "00 04 00 08 02 01 00 00",
            SocksOption::AuthData {
                method: Method::USERNAME_PASSWORD,
                data: vec![1, 0, 0],
            },
        );
    }

    #[test]
    fn session_vectors_v13() {
        vector("00 05 00 04", SocksOption::SessionRequest);
        vector(
            "00 06 00 0c 01 02 03 04 05 06 07 08",
            SocksOption::SessionId(SessionId::new([1, 2, 3, 4, 5, 6, 7, 8]).expect("valid")),
        );
        vector("00 08 00 04", SocksOption::SessionOk);
        vector("00 09 00 04", SocksOption::SessionInvalid);
        vector("00 0a 00 04", SocksOption::SessionTeardown);
    }

    #[test]
    fn idempotence_vectors_v14() {
        vector(
            "00 0b 00 08 00 00 00 10",
            SocksOption::IdempotenceRequest(16),
        );
        vector(
            "00 0c 00 0c ff ff ff f0 00 00 00 10",
            SocksOption::IdempotenceWindow(Window::new(0xffff_fff0, 16).expect("valid")),
        );
        vector(
            "00 0d 00 08 ff ff ff f0",
            SocksOption::IdempotenceExpenditure(0xffff_fff0),
        );
        vector("00 0e 00 04", SocksOption::IdempotenceAccepted);
        vector("00 0f 00 04", SocksOption::IdempotenceRejected);
    }

    #[test]
    fn stack_vectors_v15_to_v18() {
        use StackValue as V;
        let pr = Leg::PROXY_REMOTE;
        let yes = Availability::AVAILABLE;
        vector(
            "00 01 00 08 41 01 10 00",
            stack(Leg::CLIENT_PROXY, V::Tos(0x10)),
        );
        vector("00 01 00 08 c1 01 10 00", stack(Leg::BOTH, V::Tos(0x10)));
        vector("00 01 00 08 81 02 02 00", stack(pr, V::HappyEyeballs(yes)));
        vector("00 01 00 08 81 03 40 00", stack(pr, V::Ttl(64)));
        vector(
            "00 01 00 08 81 04 02 00",
            stack(pr, V::NoFragmentation(yes)),
        );
        vector("00 01 00 08 84 01 05 78", stack(pr, V::Tfo(1400)));
        vector("00 01 00 08 84 02 02 00", stack(pr, V::Mptcp(yes)));
        vector("00 01 00 08 84 03 00 0a", stack(pr, V::ListenBacklog(10)));
        vector("00 01 00 08 85 01 02 00", stack(pr, V::UdpError(yes)));
        vector(
            "00 01 00 08 85 02 01 01",
            stack(
                pr,
                V::PortParity {
                    parity: crate::socks6::stack::Parity::EVEN,
                    reserve: true,
                },
            ),
        );
        // sixtysocks' unsolicited MPTCP option, read with the draft's values.
        vector(
            "00 01 00 08 84 02 01 00",
            stack(pr, V::Mptcp(Availability::UNAVAILABLE)),
        );
    }

    #[test]
    fn accepts_unpadded_auth_data() {
        // studentmain's password reply: Length 7, no padding.
        let opts = Options::decode(&hex("00 04 00 07 02 01 00 00 08 00 04")).expect("lenient");
        assert_eq!(
            opts.as_slice(),
            [
                SocksOption::AuthData {
                    method: Method::USERNAME_PASSWORD,
                    data: vec![1, 0, 0],
                },
                SocksOption::SessionOk,
            ]
        );
        // Written padded, and equal to the padded form once read back.
        let padded = hex("00 04 00 08 02 01 00 00 00 08 00 04");
        assert_eq!(encode(&opts), padded);
        assert_eq!(Options::decode(&padded), Ok(opts));
    }

    #[test]
    fn stops_at_option_with_length_two() {
        let opts = Options::decode(&hex("00 05 00 04 00 08 00 02 00 09 00 04")).expect("robust");
        assert_eq!(opts.as_slice(), [SocksOption::SessionRequest]);
    }

    #[test]
    fn stops_at_unaligned_length_of_other_kinds() {
        let opts =
            Options::decode(&hex("00 05 00 04 00 0b 00 07 00 00 10 00 09 00 04")).expect("robust");
        assert_eq!(opts.as_slice(), [SocksOption::SessionRequest]);
    }

    #[test]
    fn stops_at_length_past_the_area_and_at_a_short_tail() {
        let opts = Options::decode(&hex("00 05 00 04 00 09 00 08 00 00")).expect("robust");
        assert_eq!(opts.as_slice(), [SocksOption::SessionRequest]);
        let opts = Options::decode(&hex("00 05 00 04 00 09")).expect("robust");
        assert_eq!(opts.as_slice(), [SocksOption::SessionRequest]);
    }

    #[test]
    fn keeps_unknown_option_raw_and_re_encodes_it() {
        for bytes in [
            "00 10 00 08 de ad be ef", // stale Resolution Request
            "00 07 00 04",             // legacy Session Untrusted
            "00 00 00 04",             // unassigned 0
            "12 34 00 0c 01 02 03 04 05 06 07 08",
        ] {
            let b = hex(bytes);
            let opt = one(&b);
            assert!(matches!(opt, SocksOption::Raw { .. }), "{opt:?}");
            let opts = Options::decode(&b).expect("valid");
            assert!(!opts.has(opt.kind()));
            assert_eq!(encode(&opts), b);
        }
    }

    #[test]
    fn ignores_experimental_kind_but_keeps_it() {
        let b = hex("fc 00 00 08 01 02 03 04 00 05 00 04");
        let opts = Options::decode(&b).expect("valid");
        let first = opts.iter().next().expect("two options");
        assert!(first.kind().is_experimental());
        assert!(matches!(first, SocksOption::Raw { .. }));
        assert!(opts.has(OptionKind::SESSION_REQUEST));
        assert_eq!(encode(&opts), b);
        assert!(!OptionKind(0xfbff).is_experimental());
    }

    #[test]
    fn keeps_malformed_known_options_raw() {
        for bytes in [
            "00 0d 00 04",                         // Expenditure with the erratum's Length 4
            "00 0c 00 0c 00 00 00 01 00 00 00 00", // window size 0
            "00 0c 00 0c 00 00 00 01 80 00 00 00", // window size 2^31
            "00 01 00 08 01 01 10 00",             // Stack leg 0
            "00 01 00 0c 81 01 10 00 00 00 00 00", // Stack Length 12
            "00 03 00 08 02 01 00 00",             // Selection with non-zero padding
            "00 05 00 08 00 00 00 00",             // Session Request with a body
            "00 06 00 04",                         // empty Session ID
            "00 02 00 04",                         // Advertisement without IDL
            "00 04 00 04",                         // Authentication Data without method
        ] {
            let b = hex(bytes);
            let opts = Options::decode(&b).expect("valid area");
            let opt = opts.iter().next().expect("one option");
            assert!(matches!(opt, SocksOption::Raw { .. }), "{bytes}: {opt:?}");
            assert_eq!(encode(&opts), b);
        }
    }

    #[test]
    fn rejects_initial_data_length_over_16384() {
        assert_eq!(
            Options::decode(&hex("00 02 00 08 40 01 00 00")),
            Err(Error::InitialDataTooLong(16385))
        );
    }

    #[test]
    fn rejects_area_over_16384() {
        let area = vec![0u8; MAX_OPTIONS_LEN + 1];
        assert_eq!(Options::decode(&area), Err(Error::OptionsTooLong(16385)));
        // Exactly the limit is fine: 4096 empty options of kind 0.
        let area: Vec<u8> = (0..4096).flat_map(|_| [0, 0, 0, 4]).collect();
        assert_eq!(Options::decode(&area).map(|o| o.len()), Ok(4096));
    }

    #[test]
    fn rejects_unpadded_auth_data_that_grows_past_the_limit() {
        // 2340 unpadded options of Length 7 fill 16380 bytes; padded they
        // need 18720.
        let area: Vec<u8> = (0..2340)
            .flat_map(|_| hex("00 04 00 07 02 01 00"))
            .collect();
        assert_eq!(Options::decode(&area), Err(Error::OptionsTooLong(18720)));
    }

    #[test]
    fn first_auth_data_per_method_wins() {
        let opts = Options::decode(&hex("00 04 00 08 02 01 00 00 00 04 00 08 02 01 01 00"))
            .expect("tolerant");
        assert_eq!(opts.len(), 2);
        assert_eq!(
            opts.auth_data(Method::USERNAME_PASSWORD),
            Some(&[1, 0, 0][..])
        );
    }

    #[test]
    fn first_contradicting_stack_option_wins() {
        // TOS leg 1, TOS leg 3 (contradicts), TOS leg 2 (kept: the leg-3
        // option was dropped), TTL leg 3.
        let opts = Options::decode(&hex("00 01 00 08 41 01 10 00 00 01 00 08 c1 01 20 00 \
             00 01 00 08 81 01 30 00 00 01 00 08 c1 03 40 00"))
        .expect("tolerant");
        let values: Vec<_> = opts.stack().map(|s| (s.leg, s.value)).collect();
        assert_eq!(
            values,
            [
                (Leg::CLIENT_PROXY, StackValue::Tos(0x10)),
                (Leg::PROXY_REMOTE, StackValue::Tos(0x30)),
                (Leg::BOTH, StackValue::Ttl(0x40)),
            ]
        );
    }

    #[test]
    fn rejects_duplicate_auth_data_and_contradicting_stack_on_push() {
        let up = SocksOption::AuthData {
            method: Method::USERNAME_PASSWORD,
            data: vec![1, 0],
        };
        let mut opts = Options::new().with(up.clone()).expect("first");
        assert_eq!(
            opts.push(up),
            Err(Error::DuplicateOption(OptionKind::AUTHENTICATION_DATA))
        );
        opts.push(stack(Leg::BOTH, StackValue::Ttl(1)))
            .expect("first TTL");
        assert_eq!(
            opts.push(stack(Leg::PROXY_REMOTE, StackValue::Ttl(2))),
            Err(Error::DuplicateOption(OptionKind::STACK))
        );
        assert_eq!(
            opts.push(stack(Leg(0), StackValue::Tos(1))),
            Err(Error::StackFieldOutOfRange {
                leg: Leg(0),
                level: crate::socks6::stack::Level::IP
            })
        );
    }

    #[test]
    fn push_pads_data_and_bounds_the_total() {
        let opts = Options::new()
            .with(SocksOption::AuthData {
                method: Method::USERNAME_PASSWORD,
                data: vec![1, 0],
            })
            .expect("fits");
        assert_eq!(
            opts.auth_data(Method::USERNAME_PASSWORD),
            Some(&[1, 0, 0][..])
        );
        let big = SocksOption::Raw {
            kind: OptionKind(0xfc00),
            data: vec![0; MAX_OPTIONS_LEN - 4],
        };
        let mut full = Options::new().with(big).expect("exactly the limit");
        assert_eq!(full.encoded_len(), MAX_OPTIONS_LEN);
        assert_eq!(
            full.push(SocksOption::SessionOk),
            Err(Error::OptionsTooLong(MAX_OPTIONS_LEN + 4))
        );
    }
}
