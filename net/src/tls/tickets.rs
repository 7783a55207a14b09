//! Session-ticket keys shared by a fleet: every process given the same
//! secret encrypts and decrypts the same tickets (RFC 8446 §4.6.1 leaves
//! the ticket's format to the server; RFC 5077 §4 describes the usual
//! key-name, IV, sealed-state layout used here).
//!
//! The key of each [`PERIOD`]-long period is derived from the secret with
//! HKDF-SHA256 (RFC 5869) under its own label, with the period's number as
//! the `info`; a ticket is accepted under the current period's key and the
//! previous one's, as rustls' own `TicketRotator` does, so it lives between
//! one and two periods and the advertised lifetime is two. The AEAD is
//! AES-256-GCM from `ring` with a random 96-bit nonce per ticket.
//!
//! Ticket layout: period number (8 bytes, big-endian, also the AEAD's
//! associated data) ‖ nonce (12 bytes) ‖ sealed session state ‖ tag.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::server::ProducesTickets;
use sha2::Sha256;

/// How long one ticket key encrypts new tickets, in seconds (6 hours).
pub(crate) const PERIOD: u64 = 6 * 60 * 60;

/// The HKDF salt: keys derived for tickets never equal keys derived from
/// the same secret for anything else.
const SALT: &[u8] = b"sixpath TLS 1.3 session ticket keys v1";

/// The largest ticket decrypted: the session state rustls seals is a few
/// hundred bytes; anything much larger is not ours.
const MAX_TICKET: usize = 4096;

const HEADER: usize = 8 + NONCE_LEN;

/// A [`ProducesTickets`] whose keys follow from a shared secret and the
/// clock. `Debug` prints no key.
pub struct FleetTicketer {
    /// The HKDF pseudorandom key (RFC 5869 §2.2).
    prk: [u8; 32],
    /// Seconds since the Unix epoch.
    now: fn() -> u64,
}

impl std::fmt::Debug for FleetTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTicketer").finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl FleetTicketer {
    /// Ticket keys derived from `secret` (the input keying material; at
    /// least 32 bytes of it should be secret and random).
    pub fn new(secret: &[u8]) -> Self {
        Self::with_clock(secret, unix_now)
    }

    fn with_clock(secret: &[u8], now: fn() -> u64) -> Self {
        // HKDF-Extract(salt, IKM) = HMAC-Hash(salt, IKM).
        Self {
            prk: hmac(SALT, &[secret]),
            now,
        }
    }

    fn period(&self) -> u64 {
        (self.now)() / PERIOD
    }

    /// The key of `period`: HKDF-Expand(PRK, info = period, 32), a single
    /// block T(1) = HMAC-Hash(PRK, info ‖ 0x01).
    fn key(&self, period: u64) -> LessSafeKey {
        let okm = hmac(&self.prk, &[&period.to_be_bytes(), &[1]]);
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &okm)
                .unwrap_or_else(|_| unreachable!("32 bytes is an AES-256 key")),
        )
    }

    fn seal(&self, period: u64, message: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom(&mut nonce)?;
        let head = period.to_be_bytes();
        let mut out = Vec::with_capacity(HEADER + message.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&head);
        out.extend_from_slice(&nonce);
        let mut body = message.to_vec();
        self.key(period)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(head),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open(&self, current: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET {
            return None;
        }
        let head: [u8; 8] = ticket.get(..8)?.try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = ticket.get(8..HEADER)?.try_into().ok()?;
        let period = u64::from_be_bytes(head);
        if period != current && Some(period) != current.checked_sub(1) {
            return None;
        }
        let mut body = ticket.get(HEADER..)?.to_vec();
        let plain = self
            .key(period)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(head),
                &mut body,
            )
            .ok()?
            .len();
        body.truncate(plain);
        Some(body)
    }
}

fn getrandom(buf: &mut [u8]) -> Option<()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new().fill(buf).ok()
}

impl ProducesTickets for FleetTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        (2 * PERIOD) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(self.period(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(self.period(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_decrypts_the_others_tickets_other_secret_does_not() {
        let a = FleetTicketer::new(&[7; 32]);
        let b = FleetTicketer::new(&[7; 32]);
        let c = FleetTicketer::new(&[8; 32]);
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"session state"[..]));
        assert_eq!(c.decrypt(&t), None);
        let again = a.encrypt(b"session state").unwrap();
        assert_ne!(t, again, "a fresh nonce per ticket");
    }

    #[test]
    fn tickets_live_through_the_next_period_and_not_after() {
        let t = FleetTicketer::new(&[1; 40]);
        let sealed = t.seal(100, b"x").unwrap();
        assert!(t.open(100, &sealed).is_some());
        assert!(t.open(101, &sealed).is_some(), "previous period accepted");
        assert!(t.open(102, &sealed).is_none(), "two periods old");
        assert!(t.open(99, &sealed).is_none(), "from the future");
        assert_eq!(t.lifetime(), 12 * 60 * 60);
    }

    #[test]
    fn tampered_relabelled_short_and_oversized_tickets_are_refused() {
        let t = FleetTicketer::new(&[2; 32]);
        let sealed = t.seal(5, b"state").unwrap();
        for i in [0, 7, 8, 19, 20, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                t.open(5, &bad).is_none() && t.open(6, &bad).is_none(),
                "{i}"
            );
        }
        // The period is authenticated: moving a ticket to another period's
        // key fails.
        let mut moved = sealed.clone();
        moved[..8].copy_from_slice(&6u64.to_be_bytes());
        assert!(t.open(6, &moved).is_none());
        for n in 0..=HEADER + 15 {
            assert!(t.open(5, &sealed[..n]).is_none(), "{n}");
        }
        assert!(t.open(5, &vec![0; MAX_TICKET + 1]).is_none());
    }

    #[test]
    fn clock_picks_the_period() {
        let t = FleetTicketer::with_clock(&[3; 32], || 10 * PERIOD + 5);
        let sealed = t.encrypt(b"s").unwrap();
        assert_eq!(sealed[..8], 10u64.to_be_bytes());
    }
}
