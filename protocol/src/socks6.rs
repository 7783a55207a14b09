//! SOCKS Protocol Version 6, draft-olteanu-intarea-socks-6-11.
//!
//! A client sends a [`Request`] (and any Initial Data it declares); the
//! proxy answers with one or two [`AuthenticationReply`] messages and an
//! [`OperationReply`], or with the one-byte [`VersionMismatchReply`].
//! Options ([`Options`], [`SocksOption`]) carry authentication, sessions,
//! idempotence tokens and per-leg stack settings. Decode errors
//! ([`Error`]) tell the server what the peer must get
//! ([`Error::response`]).
//!
//! The reader is tolerant and the writer strict, following the spec
//! digest: both domain-name padding conventions and studentmain's unpadded
//! Authentication Data are read; the -12 padding and 4-byte aligned options
//! are written.
//!
//! # Layout
//!
//! - [`address`]: address bodies, with both domain-name padding conventions.
//! - [`request`]: the [`Request`], [`Command`], Initial Data Length.
//! - [`reply`]: [`VersionMismatchReply`], [`AuthenticationReply`],
//!   [`OperationReply`] and their codes.
//! - [`option`]: [`Options`], [`SocksOption`], [`OptionKind`], and the
//!   robust parsing rules.
//! - [`stack`]: [`StackOption`] and its typed values.
//! - [`auth`]: [`Method`], the Authentication Method Advertisement, and
//!   0-RTT username/password data.
//! - [`session`]: session IDs ([`SessionId`]).
//! - [`idempotence`]: token [`Window`] and token order.
//! - [`error`]: [`Error`] and its wire answer, [`ErrorResponse`].
//! - [`udp`]: UDP association messages, over the TCP stream and UDP/DTLS.

pub mod address;
pub mod auth;
pub mod error;
pub mod idempotence;
pub mod option;
pub mod reply;
pub mod request;
pub mod session;
pub mod stack;
pub mod udp;

pub use address::DomainStyle;
pub use auth::{AuthMethodAdvertisement, Method, UsernamePassword, UsernamePasswordReply};
pub use error::{Error, ErrorResponse};
pub use idempotence::Window;
pub use option::{MAX_OPTIONS_LEN, OptionKind, Options, SocksOption};
pub use reply::{
    AuthReplyType, AuthenticationReply, OperationReply, ReplyCode, VersionMismatchReply,
};
pub use request::{Command, MAX_INITIAL_DATA_LEN, Request, VERSION};
pub use session::SessionId;
pub use stack::{Availability, Leg, Level, Parity, StackOption, StackValue};

#[cfg(test)]
pub(crate) mod tests {
    /// Bytes from spec-style hex (`"06 01 00 00"`).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    }
}
