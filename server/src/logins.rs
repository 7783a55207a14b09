//! Limits on logins: failed attempts per source, and concurrent
//! connections per user.
//!
//! - [`FailedLogins`]: failed logins per source, the limiter in
//!   `sixpath_service::logins` (re-exported here).
//! - [`UserCaps`]: concurrent connections per authenticated user. A
//!   [`UserSlot`] is taken after a successful login and held for the life
//!   of the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub use sixpath_service::logins::{FailedLogins, MAX_TRACKED_SOURCES};

/// Concurrent connections per user.
#[derive(Debug)]
pub struct UserCaps {
    max_per_user: usize,
    state: Mutex<HashMap<String, usize>>,
}

/// A held per-user connection slot, released on drop.
#[derive(Debug)]
pub struct UserSlot {
    caps: Arc<UserCaps>,
    user: String,
}

impl UserCaps {
    /// At most `max_per_user` concurrent connections per user.
    pub fn new(max_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            max_per_user,
            state: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `user`, or `None` when the user is at the cap.
    pub fn acquire(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let n = s.entry(user.to_owned()).or_insert(0);
        if *n >= self.max_per_user {
            if *n == 0 {
                s.remove(user);
            }
            return None;
        }
        *n += 1;
        Some(UserSlot {
            caps: Arc::clone(self),
            user: user.to_owned(),
        })
    }

    /// Connections `user` holds now.
    pub fn active(&self, user: &str) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut s = self
            .caps
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = s.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_cap_refuses_over_cap_and_releases_on_drop() {
        let c = UserCaps::new(2);
        let a = c.acquire("alice").expect("first");
        let _b = c.acquire("alice").expect("second");
        assert!(c.acquire("alice").is_none());
        let _bob = c.acquire("bob").expect("other user");
        drop(a);
        assert_eq!(c.active("alice"), 1);
        assert!(c.acquire("alice").is_some());
    }
}
