//! The 32-bit fixed header that starts every Convert message (RFC 8803, spec digest
//! §2.2) and the options of its decoder.
//!
//! ```text
//! | Version (1) | Total Length (1) | Magic Number (2) |
//! ```
//!
//! Total Length counts 32-bit words of the whole Convert message, header
//! included, so a message is at most 255 words = 1020 bytes. The header is
//! checked in the order of the digest's parse procedure (§2.3): Total Length
//! 0 first (reset), then the Magic Number, then the Version.

use super::error::Error;
use crate::codec::{Fail, LengthSlot, Out, Reader};

/// The only Convert version (digest §2.2; version 0 is reserved).
pub const VERSION: u8 = 1;

/// The Magic Number of the published RFC, `22 63` on the wire (decimal 8803).
pub const MAGIC: u16 = 0x2263;

/// What drafts up to -16 sent in the Magic Number's place ("Unassigned, MUST
/// be set to zero"); accepted only with [`DecodeOptions::accept_draft_magic`].
pub const DRAFT_MAGIC: u16 = 0x0000;

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 4;

/// Longest Convert message: 255 words of 4 bytes, header included.
pub const MAX_MESSAGE_LEN: usize = 255 * 4;

/// Options of the Convert decoders. The default is strict: only the RFC's
/// Magic Number is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Also accept `00 00` in the Magic Number field, as sent by draft-era
    /// peers (libconvert before 2020-08-25, the Wireshark dissector's
    /// "Unassigned" field; spec digest §6.1 point 5 and §8).
    pub accept_draft_magic: bool,
}

impl DecodeOptions {
    /// Only the RFC's Magic Number (the default).
    pub const STRICT: Self = Self {
        accept_draft_magic: false,
    };

    /// The RFC's Magic Number or the draft-era `00 00`.
    pub const DRAFT_COMPATIBLE: Self = Self {
        accept_draft_magic: true,
    };

    fn accepts_magic(self, magic: u16) -> bool {
        magic == MAGIC || (self.accept_draft_magic && magic == DRAFT_MAGIC)
    }
}

/// Reads and checks the fixed header; returns the length in bytes of the
/// TLV area that follows it.
pub(crate) fn decode_header(
    r: &mut Reader<'_>,
    options: DecodeOptions,
) -> Result<usize, Fail<Error>> {
    let [version, total_length, magic_hi, magic_lo] = r.array::<4>()?;
    let magic = u16::from_be_bytes([magic_hi, magic_lo]);
    // §2.2: "A Total Length of zero is invalid and the connection MUST be
    // reset upon reception of a header with such total length."
    if total_length == 0 {
        return Err(Error::ZeroTotalLength.into());
    }
    if !options.accepts_magic(magic) {
        return Err(Error::BadMagic(magic).into());
    }
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version).into());
    }
    Ok(usize::from(total_length) * 4 - HEADER_LEN)
}

/// Writes Version and Magic Number around a reserved Total Length; the
/// caller writes the TLVs and then calls [`finish_header`].
pub(crate) fn start_header<B: Out>(buf: &mut B) -> LengthSlot {
    buf.put_u8(VERSION);
    let slot = LengthSlot::u8(buf);
    buf.put_u16(MAGIC);
    slot
}

/// Fills in the Total Length of a message started with [`start_header`].
/// The caller guarantees the message is word-aligned and at most
/// [`MAX_MESSAGE_LEN`] bytes.
pub(crate) fn finish_header<B: Out>(slot: LengthSlot, buf: &mut B) {
    // The slot is byte 1 of the message: the message is the version byte,
    // the slot and everything written after it.
    let len = 2 + slot.written_after(buf);
    debug_assert!(len.is_multiple_of(4) && len <= MAX_MESSAGE_LEN);
    slot.fill(buf, len / 4);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoded;
    use crate::codec::finish;
    use crate::convert::testing::{assert_splits, hex};

    fn decode(buf: &[u8], options: DecodeOptions) -> Result<Decoded<usize>, Error> {
        let mut r = Reader::new(buf);
        finish(decode_header(&mut r, options).map(|n| (n, r.consumed())))
    }

    fn strict(buf: &[u8]) -> Result<Decoded<usize>, Error> {
        decode(buf, DecodeOptions::STRICT)
    }

    #[test]
    fn reads_total_length_in_words_including_the_header() {
        assert_eq!(
            assert_splits(strict, &hex("01 01 22 63")),
            Ok(Decoded::Complete { msg: 0, len: 4 })
        );
        assert_eq!(
            strict(&hex("01 ff 22 63")),
            Ok(Decoded::Complete {
                msg: MAX_MESSAGE_LEN - HEADER_LEN,
                len: 4
            })
        );
    }

    #[test]
    fn rejects_zero_total_length_before_anything_else() {
        // Even with a bad magic and version, Total Length 0 means reset.
        assert_eq!(strict(&hex("01 00 22 63")), Err(Error::ZeroTotalLength));
        assert_eq!(strict(&hex("07 00 00 00")), Err(Error::ZeroTotalLength));
    }

    #[test]
    fn rejects_bad_magic_before_version() {
        assert_eq!(strict(&hex("01 01 63 22")), Err(Error::BadMagic(0x6322)));
        assert_eq!(strict(&hex("02 01 00 00")), Err(Error::BadMagic(0)));
    }

    #[test]
    fn rejects_draft_magic_by_default() {
        assert_eq!(strict(&hex("01 01 00 00")), Err(Error::BadMagic(0)));
        assert_eq!(DecodeOptions::default(), DecodeOptions::STRICT);
    }

    #[test]
    fn accepts_draft_magic_with_the_knob() {
        let knob = |b: &[u8]| decode(b, DecodeOptions::DRAFT_COMPATIBLE);
        assert_eq!(
            assert_splits(knob, &hex("01 02 00 00")),
            Ok(Decoded::Complete { msg: 4, len: 4 })
        );
        // The RFC magic stays accepted, other values do not.
        assert!(knob(&hex("01 01 22 63")).is_ok());
        assert_eq!(knob(&hex("01 01 00 01")), Err(Error::BadMagic(1)));
    }

    #[test]
    fn rejects_version_2_and_reserved_version_0() {
        assert_eq!(
            strict(&hex("02 01 22 63")),
            Err(Error::UnsupportedVersion(2))
        );
        assert_eq!(
            strict(&hex("00 01 22 63")),
            Err(Error::UnsupportedVersion(0))
        );
    }

    #[test]
    fn needs_the_whole_header() {
        assert_eq!(strict(&[]), Ok(Decoded::NeedMore(4)));
        assert_eq!(strict(&hex("01 00")), Ok(Decoded::NeedMore(2)));
    }

    #[test]
    fn writes_version_magic_and_back_filled_length() {
        let mut buf = vec![0xee];
        let slot = start_header(&mut buf);
        buf.extend_from_slice(&hex("01 01 00 00"));
        finish_header(slot, &mut buf);
        assert_eq!(buf, hex("ee 01 02 22 63 01 01 00 00"));
    }
}
