//! Users for username/password authentication, read from a JSON file:
//!
//! ```json
//! {"users": [{"username": "alice", "password": "correct horse"}]}
//! ```
//!
//! Passwords are compared in constant time (SHA-256 of both sides, then a
//! branch-free comparison of the digests), so timing does not reveal how
//! much of a guess was right. The file is re-read on SIGHUP.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use sixpath_service::config::{ConfigError, json_error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    password: String,
}

/// The user database.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<Vec<u8>, [u8; 32]>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.by_name.len())
            .finish()
    }
}

impl Users {
    /// Reads and validates a users file. Names and passwords must be 1 to
    /// 255 bytes (what RFC 1929 and SOCKS6 can carry) and names unique.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("users", format!("cannot read {}: {e}", path.display()))
        })?;
        let file: UsersFile =
            serde_json::from_str(&text).map_err(|e| json_error("users", path, &e))?;
        let mut users = Self::default();
        for (i, u) in file.users.into_iter().enumerate() {
            let field = |what: &str| format!("users[{i}].{what}");
            for (what, v) in [("username", &u.username), ("password", &u.password)] {
                if v.is_empty() || v.len() > 255 {
                    return Err(ConfigError::new(field(what), "must be 1 to 255 bytes"));
                }
            }
            if users.by_name.contains_key(u.username.as_bytes()) {
                return Err(ConfigError::new(
                    field("username"),
                    format!("duplicate user {:?}", u.username),
                ));
            }
            users.insert(u.username.as_bytes(), u.password.as_bytes());
        }
        Ok(users)
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, username: &[u8], password: &[u8]) {
        self.by_name
            .insert(username.to_vec(), Sha256::digest(password).into());
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True if there are no users.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// True if `username` is a user (SOCKS6 sessions end with their user).
    pub fn contains(&self, username: &[u8]) -> bool {
        self.by_name.contains_key(username)
    }

    /// Checks a username and password. Unknown users cost the same as a
    /// wrong password.
    pub fn verify(&self, username: &[u8], password: &[u8]) -> bool {
        let given: [u8; 32] = Sha256::digest(password).into();
        let (stored, known) = match self.by_name.get(username) {
            Some(d) => (*d, true),
            None => ([0u8; 32], false),
        };
        let diff = stored
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Non-short-circuiting on purpose: no branch on which check failed.
        #[allow(clippy::needless_bitwise_bool)]
        let ok = known & (diff == 0);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_passwords() {
        let mut u = Users::default();
        u.insert(b"alice", b"secret");
        assert!(u.verify(b"alice", b"secret"));
        assert!(!u.verify(b"alice", b"secreT"));
        assert!(!u.verify(b"bob", b"secret"));
    }

    #[test]
    fn rejects_bad_files_naming_the_entry() {
        let dir = std::env::temp_dir().join(format!("sixpath-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("u.json");
        std::fs::write(&p, r#"{"users": [{"username": "a", "password": "x"}, {"username": "a", "password": "y"}]}"#)
            .expect("write");
        assert_eq!(Users::load(&p).expect_err("dup").field, "users[1].username");
        std::fs::write(&p, r#"{"users": [{"username": "a", "pasword": "x"}]}"#).expect("write");
        let e = Users::load(&p).expect_err("typo");
        assert!(e.message.contains("pasword"), "{e}");
        std::fs::write(&p, r#"{"users": [{"username": "a", "password": "ok"}]}"#).expect("write");
        assert_eq!(Users::load(&p).expect("valid").len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
