//! The server key: the HMAC-SHA256 key behind SOCKS6 session IDs,
//! idempotence tokens and Convert cookies.
//!
//! Anything the server hands out and later checks is a MAC under this key,
//! so every process holding the same key (a fleet behind a load balancer)
//! accepts the others' IDs, tokens and cookies, and resumes the others'
//! TLS session tickets (their keys are derived from it too). The key comes from
//! `--secret-file` (at least 32 bytes, e.g. `head -c 32 /dev/urandom`);
//! without it a random key is drawn at start-up and what this process hands
//! out is valid only until it restarts.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use sixpath_service::config::ConfigError;

/// The smallest key accepted from a file, in bytes.
pub const MIN_KEY_LEN: usize = 32;
/// The largest key file read, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// An HMAC-SHA256 key. `Debug` does not print it.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh random key.
    ///
    /// # Panics
    ///
    /// If the operating system's random source fails.
    pub fn random() -> Self {
        let mut key = vec![0u8; MIN_KEY_LEN];
        // The OS random source failing is not recoverable in a way that
        // keeps tokens unforgeable; a zero key would be worse than exiting.
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        Self { key }
    }

    /// A key given directly (at least [`MIN_KEY_LEN`] bytes).
    pub fn from_bytes(key: &[u8]) -> Result<Self, ConfigError> {
        if key.len() < MIN_KEY_LEN || key.len() > MAX_KEY_LEN {
            return Err(ConfigError::new(
                "secret-file",
                format!(
                    "the key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes, got {}",
                    key.len()
                ),
            ));
        }
        Ok(Self { key: key.to_vec() })
    }

    /// Reads the key file: its bytes (trailing whitespace removed) are the
    /// key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::new(
                "secret-file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let trimmed = bytes.trim_ascii_end();
        Self::from_bytes(trimmed).map_err(|e| {
            ConfigError::new("secret-file", format!("{}: {}", path.display(), e.message))
        })
    }

    /// HMAC-SHA256 over `parts`, each length-prefixed, under a `domain`
    /// label so a MAC made for one purpose (say, a session ID) never checks
    /// as another (a cookie).
    pub fn mac(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.hmac();
        m.update(&(domain.len() as u64).to_be_bytes());
        m.update(domain.as_bytes());
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Whether `tag` (possibly truncated, at least 8 bytes) is the MAC of
    /// `parts` under `domain`, compared in constant time.
    pub fn verify(&self, domain: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        let full = self.mac(domain, parts);
        if tag.len() < 8 || tag.len() > full.len() {
            return false;
        }
        let mut diff = 0u8;
        for (a, b) in full.iter().zip(tag) {
            diff |= a ^ b;
        }
        diff == 0
    }

    /// Input keying material for the TLS session-ticket keys
    /// (`sixpath_net::tls::FleetTicketer`), under its own domain so it is
    /// unrelated to every MAC made for anything else.
    pub fn tls_ticket_material(&self) -> [u8; 32] {
        self.mac("tls session ticket keys", &[])
    }

    #[allow(clippy::missing_panics_doc)]
    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_depends_on_domain_and_part_boundaries() {
        let s = Secret::from_bytes(&[7; 32]).expect("key");
        let a = s.mac("session", &[b"ab", b"c"]);
        assert_ne!(a, s.mac("cookie", &[b"ab", b"c"]));
        assert_ne!(a, s.mac("session", &[b"a", b"bc"]));
        assert_eq!(a, s.mac("session", &[b"ab", b"c"]));
    }

    #[test]
    fn verify_accepts_truncated_tag_and_rejects_tampering() {
        let s = Secret::from_bytes(&[1; 40]).expect("key");
        let tag = s.mac("t", &[b"x"]);
        assert!(s.verify("t", &[b"x"], &tag));
        assert!(s.verify("t", &[b"x"], &tag[..16]));
        assert!(!s.verify("t", &[b"x"], &tag[..4]), "too short to be safe");
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!s.verify("t", &[b"x"], &bad));
        assert!(
            !Secret::from_bytes(&[1; 32])
                .expect("key")
                .verify("t", &[b"x"], &tag)
        );
    }

    #[test]
    fn rejects_short_key_naming_the_field() {
        let e = Secret::from_bytes(&[0; 16]).expect_err("short");
        assert_eq!(e.field, "secret-file");
    }

    #[test]
    fn random_keys_differ() {
        let a = Secret::random().mac("d", &[]);
        assert_ne!(a, Secret::random().mac("d", &[]));
    }
}
