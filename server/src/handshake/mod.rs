//! Client handshakes, one module per protocol, on top of [`Framed`]: a
//! buffered reader that decodes messages incrementally with the protocol
//! crate and keeps the bytes that follow a handshake for the target.
//!
//! - [`convert`]: the 0-RTT TCP Convert protocol (RFC 8803).
//! - [`socks5`]: SOCKS5 (RFC 1928, RFC 1929) and SOCKS4/4a.
//! - [`socks6`]: SOCKS6 (draft -11) with 0-RTT initial data and
//!   username/password.

pub mod convert;
pub mod socks5;
pub mod socks6;

use crate::outbound::ConnectError;

pub use sixpath_net::framed::{Framed, MAX_HANDSHAKE, ReadError};

/// Runs a handshake read until `deadline`: the message, or `Err(Some(e))`
/// for an invalid one (the caller sends the protocol's answer), or
/// `Err(None)` when there is nothing to answer (the client closed, the
/// message is too large, a read failed, or the deadline passed); then `out`
/// already says why.
pub async fn read_by<T, E: std::fmt::Display>(
    deadline: tokio::time::Instant,
    out: &mut crate::conn::Outcome,
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

/// The SOCKS reply code (the same values in SOCKS5 and SOCKS6, 0x01–0x09)
/// for a failed outbound connection. SOCKS5 has no 0x09: `socks5` maps a
/// timeout to host unreachable (0x04) itself.
pub fn socks_reply_code(e: &ConnectError) -> u8 {
    match e {
        ConnectError::Denied { .. } => 0x02,
        ConnectError::NetworkUnreachable { .. } => 0x03,
        ConnectError::HostUnreachable { .. } | ConnectError::Dns { .. } => 0x04,
        ConnectError::Refused(_) => 0x05,
        ConnectError::TtlExpired(_) => 0x06,
        ConnectError::TimedOut(_) => 0x09,
        ConnectError::Resources(_) | ConnectError::Other(_) => 0x01,
    }
}
