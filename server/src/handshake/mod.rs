//! Client handshakes, one module per protocol, on top of [`Framed`]: a
//! buffered reader that decodes messages incrementally with the protocol
//! crate and keeps the bytes that follow a handshake for the target.
//!
//! A handshake owns everything before the command: it decodes the
//! client's messages, answers the invalid ones with the reply the protocol
//! crate names, authenticates, takes the user's connection slot, and
//! returns a typed request (`Accepted`) for the connection driver to hand
//! to its command. It serves no command and knows no command module.
//!
//! - [`convert`]: the 0-RTT TCP Convert protocol (RFC 8803).
//! - [`socks5`]: SOCKS5 (RFC 1928, RFC 1929) and SOCKS4/4a.
//! - [`socks6`]: SOCKS6 (draft -11) with 0-RTT initial data and
//!   username/password.

pub mod convert;
pub mod socks5;
pub mod socks6;

use crate::state::Outcome;

pub use sixpath_net::framed::{EarlyData, Framed, MAX_HANDSHAKE, ReadError, Reset};

/// Runs a handshake read until `deadline`: the message, or `Err(Some(e))`
/// for an invalid one (the caller sends the protocol's answer), or
/// `Err(None)` when there is nothing to answer (the client closed, the
/// message is too large, a read failed, or the deadline passed); then `out`
/// already says why.
pub async fn read_by<T, E: std::fmt::Display>(
    deadline: tokio::time::Instant,
    out: &mut Outcome,
    read: impl Future<Output = Result<T, ReadError<E>>>,
) -> Result<T, Option<E>> {
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(ReadError::Invalid(e))) => Err(Some(e)),
        Ok(Err(e)) => {
            out.reply = e.to_string();
            Err(None)
        }
        Err(_) => {
            out.reply = "handshake timeout".into();
            Err(None)
        }
    }
}
