//! Idempotence tokens and windows (draft -11 §8.5, spec digest §3.7 and
//! §4.5).
//!
//! Tokens are `u32` in modular space; the proxy grants one contiguous
//! window of them per session and the client spends each on one Request.
//! The options without a body (Accepted, Rejected) and those carrying one
//! number (Request, Expenditure) are plain variants of
//! [`SocksOption`](super::SocksOption); this module holds the window and
//! the token order.

use super::error::Error;

/// Largest window size: "Window sizes MUST be less than 2^31" (draft -11
/// §8.5.1).
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// True if token `x` comes before token `y`: "x is less than y if
/// 0 < (y - x) < 2^31 in unsigned 32-bit arithmetic" (draft -11 §8.5).
pub fn token_precedes(x: u32, y: u32) -> bool {
    let d = y.wrapping_sub(x);
    d != 0 && d < 1 << 31
}

/// A token window: `size` tokens starting at `base`, wrapping modulo 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    base: u32,
    size: u32,
}

impl Window {
    /// A window of `size` tokens from `base`. "Window sizes MUST NOT be 0"
    /// and must be below 2^31 (draft -11 §8.5.1).
    pub fn new(base: u32, size: u32) -> Result<Self, Error> {
        if !(1..=MAX_WINDOW_SIZE).contains(&size) {
            return Err(Error::WindowSize(size));
        }
        Ok(Self { base, size })
    }

    /// The first token.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// The number of tokens.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// True if `token` lies in the window.
    pub fn contains(&self, token: u32) -> bool {
        token.wrapping_sub(self.base) < self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_tokens_modulo_2_32() {
        assert!(token_precedes(1, 2));
        assert!(token_precedes(0xffff_fff0, 3));
        assert!(!token_precedes(3, 0xffff_fff0));
        assert!(!token_precedes(7, 7));
        assert!(!token_precedes(0, 1 << 31));
    }

    #[test]
    fn window_wraps_and_bounds_its_size() {
        let w = Window::new(0xffff_fff0, 0x20).expect("valid size");
        assert!(w.contains(0xffff_fff0));
        assert!(w.contains(0x0f));
        assert!(!w.contains(0x10));
        assert!(!w.contains(0xffff_ffef));
        assert_eq!(Window::new(0, 0), Err(Error::WindowSize(0)));
        assert_eq!(Window::new(0, 1 << 31), Err(Error::WindowSize(1 << 31)));
        assert!(Window::new(0, MAX_WINDOW_SIZE).is_ok());
    }
}
