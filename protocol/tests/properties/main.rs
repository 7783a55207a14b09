//! Property tests for every decoder: round trips of arbitrary messages, and
//! arbitrary bytes fed whole and as every prefix.
#![allow(
    clippy::panic,
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::fmt::Debug;

use sixpath_protocol::Decoded;

mod convert;
mod http;
mod probe;
mod proxy;
mod socks5;
mod socks6;
mod socks6_udp;

/// Decodes `bytes` whole and as every prefix, and checks that the answers
/// agree with decoding it whole:
///
/// - a complete message of length `len` is `NeedMore(n)` with `n >= 1` and
///   `k + n <= len` for every shorter prefix `k`, and the same message for
///   every longer one;
/// - an error whole is, for every prefix, the same error or `NeedMore`;
/// - `NeedMore(n)` whole is `NeedMore(m)` with `k + m <= bytes.len() + n`
///   for every prefix.
///
/// Returns the whole-input result so callers can check more.
pub fn assert_incremental<T, E>(
    decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
    bytes: &[u8],
) -> Result<Decoded<T>, E>
where
    T: PartialEq + Debug,
    E: PartialEq + Debug,
{
    let whole = decode(bytes);
    for k in 0..=bytes.len() {
        let prefix = bytes.get(..k).expect("k <= len");
        let part = decode(prefix);
        match (&whole, &part) {
            (Ok(Decoded::Complete { len, .. }), Ok(Decoded::NeedMore(n))) if k < *len => {
                assert!(
                    *n >= 1 && k + n <= *len,
                    "prefix {k}: NeedMore({n}) overshoots message length {len}"
                );
            }
            (Ok(Decoded::Complete { len, .. }), _) if k < *len => {
                panic!("prefix {k} of a {len}-byte message gave {part:?}, expected NeedMore");
            }
            (Ok(Decoded::Complete { .. }), _) => {
                assert_eq!(
                    &part, &whole,
                    "prefix {k} decodes differently from the whole input"
                );
            }
            (Ok(Decoded::NeedMore(n)), Ok(Decoded::NeedMore(m))) => {
                assert!(
                    *m >= 1 && k + m <= bytes.len() + n,
                    "prefix {k}: NeedMore({m}) overshoots"
                );
            }
            (Ok(Decoded::NeedMore(_)), _) => {
                panic!("prefix {k} gave {part:?} but the whole input needs more");
            }
            (Err(_), Ok(Decoded::NeedMore(m))) => assert!(*m >= 1, "prefix {k}: NeedMore(0)"),
            (Err(e), Err(p)) => {
                assert_eq!(p, e, "prefix {k} fails differently from the whole input");
            }
            (Err(e), Ok(Decoded::Complete { .. })) => {
                panic!("prefix {k} decoded {part:?} but the whole input fails with {e:?}");
            }
        }
    }
    whole
}
