//! The decode and encode vocabulary shared by every wire format.
//!
//! Every decoder in this crate reads only through [`Reader`], whose accessors
//! return `Result` instead of panicking, and answers with [`Decoded`]: a whole
//! message and the number of bytes it used, or the number of bytes still
//! missing. Malformed input is a typed error of the protocol module.
//!
//! Inside a decoder the two ways to stop are folded into [`Fail`], so `?`
//! works for both running out of input and finding it invalid; [`finish`]
//! turns the result into the public `Result<Decoded<T>, E>`.
//!
//! Encoders write into any [`Out`] buffer (`Vec<u8>`, `bytes::BytesMut`);
//! length fields are reserved first and back-filled with [`LengthSlot`].

use bytes::BufMut;

/// What a decoder found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole message: `msg`, which used the first `len` bytes of the input.
    /// Bytes after `len` belong to whatever follows (the application, for a
    /// handshake).
    Complete {
        /// The decoded message.
        msg: T,
        /// How many bytes of the input the message used.
        len: usize,
    },
    /// The input is a valid prefix of a message; at least this many more
    /// bytes are needed before decoding can finish (always at least 1).
    NeedMore(usize),
}

impl<T> Decoded<T> {
    /// Applies `f` to a complete message and keeps `NeedMore` as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decoded<U> {
        match self {
            Self::Complete { msg, len } => Decoded::Complete { msg: f(msg), len },
            Self::NeedMore(n) => Decoded::NeedMore(n),
        }
    }

    /// The message and its length, or `None` if more input is needed.
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Self::Complete { msg, len } => Some((msg, len)),
            Self::NeedMore(_) => None,
        }
    }

    /// True if the message is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete { .. })
    }
}

/// The input ended before a read could be satisfied: at least this many more
/// bytes are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incomplete(pub usize);

/// Why a decoder stopped before producing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail<E> {
    /// The input is a valid prefix; at least this many more bytes are needed.
    Incomplete(usize),
    /// The input is not a valid message.
    Invalid(E),
}

impl<E> From<Incomplete> for Fail<E> {
    fn from(i: Incomplete) -> Self {
        Self::Incomplete(i.0)
    }
}

impl<E> Fail<E> {
    /// Converts the invalid-input error with `f`, e.g. to wrap a sub-format's
    /// error in the caller's error type.
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> Fail<F> {
        match self {
            Self::Incomplete(n) => Fail::Incomplete(n),
            Self::Invalid(e) => Fail::Invalid(f(e)),
        }
    }
}

/// Turns a decoder's internal result into the public decode answer.
pub fn finish<T, E>(result: Result<(T, usize), Fail<E>>) -> Result<Decoded<T>, E> {
    match result {
        Ok((msg, len)) => Ok(Decoded::Complete { msg, len }),
        Err(Fail::Incomplete(n)) => Ok(Decoded::NeedMore(n.max(1))),
        Err(Fail::Invalid(e)) => Err(e),
    }
}

/// A checked cursor over a byte slice. No method panics; reading past the
/// end reports how many bytes were missing.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How many bytes have been consumed so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True if every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes, consumed.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Incomplete> {
        let left = self.remaining();
        if n > left {
            return Err(Incomplete(n - left));
        }
        let start = self.pos;
        self.pos += n;
        // In bounds: n <= remaining was checked above.
        Ok(self.buf.get(start..self.pos).unwrap_or_default())
    }

    /// Every byte that is left, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos;
        self.pos = self.buf.len();
        self.buf.get(start..).unwrap_or_default()
    }

    /// The next `n` bytes as a reader of their own, consumed from this one.
    /// Use it to decode a length-delimited field that must not read past its
    /// length.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, Incomplete> {
        self.take(n).map(Reader::new)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), Incomplete> {
        self.take(n).map(drop)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Incomplete> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// The next byte, not consumed.
    pub fn peek_u8(&self) -> Result<u8, Incomplete> {
        self.buf.get(self.pos).copied().ok_or(Incomplete(1))
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Incomplete> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Incomplete> {
        self.array().map(u16::from_be_bytes)
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Incomplete> {
        self.array().map(u32::from_be_bytes)
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, Incomplete> {
        self.array().map(u64::from_be_bytes)
    }
}

/// A buffer encoders can write into and patch afterwards (for back-filled
/// length fields). Implemented for `Vec<u8>` and `bytes::BytesMut`.
pub trait Out: BufMut + AsMut<[u8]> {}

impl<T: BufMut + AsMut<[u8]>> Out for T {}

/// A length field written as a placeholder and filled in once the bytes it
/// counts have been written.
#[derive(Debug)]
#[must_use = "a reserved length must be filled"]
pub struct LengthSlot {
    at: usize,
    width: usize,
}

impl LengthSlot {
    /// Reserves a one-byte length field at the current end of `buf`.
    pub fn u8<B: Out>(buf: &mut B) -> Self {
        Self::reserve(buf, 1)
    }

    /// Reserves a two-byte big-endian length field at the current end of `buf`.
    pub fn u16<B: Out>(buf: &mut B) -> Self {
        Self::reserve(buf, 2)
    }

    fn reserve<B: Out>(buf: &mut B, width: usize) -> Self {
        let at = buf.as_mut().len();
        buf.put_bytes(0, width);
        Self { at, width }
    }

    /// Where the slot starts in `buf`: the bytes written after
    /// `position() + width` are the ones most length fields count.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Bytes written to `buf` after the slot itself.
    pub fn written_after<B: Out>(&self, buf: &mut B) -> usize {
        buf.as_mut().len() - self.at - self.width
    }

    /// Writes `value` into the slot. The caller has checked that `value` fits
    /// the field (every format here bounds its lengths well below the field).
    pub fn fill<B: Out>(self, buf: &mut B, value: usize) {
        let bytes = (value as u64).to_be_bytes();
        let src = bytes.get(8 - self.width..).unwrap_or_default();
        if let Some(dst) = buf.as_mut().get_mut(self.at..self.at + self.width) {
            dst.copy_from_slice(src);
        }
    }
}

/// Number of zero bytes that pad `len` up to a multiple of 4.
pub const fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Declares an open code point: a newtype over an integer with named
/// constants, whose `Debug` prints the name for known values and the hex
/// value for others, so unknown code points survive a decode and re-encode.
///
/// ```
/// sixpath_protocol::code_point! {
///     /// A colour.
///     pub struct Colour(u8) {
///         /// Red.
///         RED = 1,
///         /// Blue.
///         BLUE = 2,
///     }
/// }
/// assert_eq!(format!("{:?}", Colour::RED), "RED");
/// assert_eq!(format!("{:?}", Colour(7)), "Colour(0x07)");
/// ```
#[macro_export]
macro_rules! code_point {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($int:ty) {
            $( $(#[$cmeta:meta])* $const:ident = $value:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* $vis const $const: Self = Self($value); )*

            /// The spec's name for this value, if it has one.
            $vis fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$const => Some(stringify!($const)), )*
                    _ => None,
                }
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(
                        f,
                        concat!(stringify!($name), "(0x{:0width$x})"),
                        self.0,
                        width = ::core::mem::size_of::<$int>() * 2
                    ),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(self, f)
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_missing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u32(), Err(Incomplete(3)));
        // A failed read consumes nothing.
        assert_eq!(r.u8(), Ok(3));
        assert_eq!(r.u8(), Err(Incomplete(1)));
        assert!(r.is_empty());
    }

    #[test]
    fn sub_reader_cannot_read_past_its_length() {
        let mut r = Reader::new(&[1, 2, 3, 4]);
        let mut s = r.sub(2).expect("two bytes");
        assert_eq!(s.u16(), Ok(0x0102));
        assert_eq!(s.u8(), Err(Incomplete(1)));
        assert_eq!(r.rest(), &[3, 4]);
    }

    #[test]
    fn finish_maps_incomplete_to_need_more() {
        let r: Result<(u8, usize), Fail<()>> = Err(Fail::Incomplete(0));
        assert_eq!(finish(r), Ok(Decoded::NeedMore(1)));
        let r: Result<(u8, usize), Fail<()>> = Err(Fail::Invalid(()));
        assert_eq!(finish(r), Err(()));
    }

    #[test]
    fn length_slot_back_fills_big_endian() {
        let mut buf = vec![0xaa];
        let slot = LengthSlot::u16(&mut buf);
        buf.extend_from_slice(&[1, 2, 3]);
        let n = slot.written_after(&mut buf);
        slot.fill(&mut buf, n);
        assert_eq!(buf, [0xaa, 0x00, 0x03, 1, 2, 3]);
    }

    #[test]
    fn pad4_rounds_up_to_words() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(pad4), [0, 3, 2, 1, 0, 3]);
    }

    code_point! {
        /// Test code point.
        struct Kind(u16) {
            /// One.
            ONE = 1,
        }
    }

    #[test]
    fn code_point_debug_names_known_and_hexes_unknown() {
        assert_eq!(format!("{:?}", Kind::ONE), "ONE");
        assert_eq!(format!("{:?}", Kind(0xfc00)), "Kind(0xfc00)");
    }
}
