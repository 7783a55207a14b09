//! Front-ends: what applications speak to the client. Each reads the
//! application's handshake with the protocol crate's decoders and returns
//! an [`AppRequest`]: the target, the bytes meant for it, and how to answer
//! the application ([`Answer`]).
//!
//! - [`socks5`]: SOCKS5 CONNECT (RFC 1928) with optional RFC 1929; domain
//!   names are passed to the server unresolved.
//! - [`socks4`]: SOCKS4 and `SOCKS4a` CONNECT.
//! - [`http`]: HTTP proxy: CONNECT tunnels, and absolute-form `http://`
//!   requests rewritten to origin-form (one request per connection).
//! - [`socks6`]: SOCKS6 from applications, re-originated towards the server.
//! - [`transparent`]: connections diverted by nftables REDIRECT or TPROXY.
//!
//! On the mixed port the first byte picks the protocol: 0x05 SOCKS5, 0x04
//! SOCKS4, 0x06 SOCKS6, an ASCII letter (an HTTP method) HTTP. Any other
//! byte gets the SOCKS6 Version Mismatch Reply (`06`) and a close, as on
//! the server.
//!
//! Local credentials (`--local-user`) are checked through [`LocalAuth`],
//! under the failed-login limit the server applies to its clients
//! (`sixpath_service::logins`): after `--max-failed-logins` wrong passwords
//! from one source within `--failed-login-window`, that source's logins are
//! refused without the password being checked, with the protocol's
//! authentication failure. A request without credentials is not a failed
//! login (browsers ask without them first).

pub mod http;
pub mod socks4;
pub mod socks5;
pub mod socks6;
pub mod transparent;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use sixpath_protocol::socks5::{Reply, ReplyCode, Socks4Reply, Socks4ReplyCode};
use sixpath_protocol::socks6::{OperationReply, VersionMismatchReply};
use sixpath_protocol::{Endpoint, http as httpwire};
use tokio::net::TcpStream;

use crate::config::{Credentials, FrontEnd};
use crate::failure::Failure;
use crate::stats::Stats;
use sixpath_net::framed::{Framed, ReadError};
use sixpath_service::logins::FailedLogins;

/// How the application gets its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A SOCKS5 Reply.
    Socks5,
    /// A SOCKS5 UDP ASSOCIATE: served by [`crate::udp`], which replies
    /// itself; `target` is where the application sends from.
    Socks5Udp,
    /// A SOCKS4 reply.
    Socks4,
    /// `200 Connection established`, or an error status.
    HttpConnect,
    /// Nothing on success (the origin answers the forwarded request); an
    /// error status otherwise.
    HttpForward,
    /// A SOCKS6 Operation Reply (the Authentication Reply was sent by the
    /// front-end).
    Socks6,
    /// Nothing: the application believes it is connected to the target. A
    /// failure resets the connection.
    Transparent,
}

impl Answer {
    /// The answer can be given before the server has answered.
    pub fn can_reply_early(self) -> bool {
        matches!(self, Self::Socks5 | Self::Socks4 | Self::HttpConnect)
    }

    /// After the answer (or right away), the application may send its
    /// first bytes, and it is worth waiting a moment for them.
    pub fn waits_for_data(self, early: bool) -> bool {
        early || self == Self::Transparent
    }

    /// The success answer. `reply` is the server's SOCKS6 Operation Reply
    /// when there is one; without it the bind address is `0.0.0.0:0`.
    pub fn success(self, reply: Option<&OperationReply>) -> Vec<u8> {
        let bind = reply.map_or_else(Endpoint::unspecified, |r| r.bind.clone());
        let mut out = Vec::with_capacity(64);
        match self {
            Self::Socks5 | Self::Socks5Udp => {
                Reply::new(ReplyCode::SUCCEEDED, bind).encode(&mut out);
            }
            Self::Socks4 => {
                let v4 = match bind.socket_addr() {
                    Some(SocketAddr::V4(a)) => a,
                    _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                };
                Socks4Reply::new(Socks4ReplyCode::GRANTED, v4).encode(&mut out);
            }
            Self::HttpConnect => httpwire::connection_established(&mut out),
            Self::Socks6 => match reply {
                Some(r) => r.encode(&mut out),
                None => OperationReply::new(
                    sixpath_protocol::socks6::ReplyCode::SUCCESS,
                    Endpoint::unspecified(),
                )
                .encode(&mut out),
            },
            Self::HttpForward | Self::Transparent => {}
        }
        out
    }

    /// The answer to a failure to reach `target` (see [`crate::failure`]
    /// for the table; HTTP says why in `Proxy-Status` and the body); `None`
    /// means the connection is reset instead.
    pub fn failure(self, f: &Failure, target: &Endpoint) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        match self {
            Self::Socks5 | Self::Socks5Udp => Reply::failure(f.socks5()).encode(&mut out),
            Self::Socks4 => {
                Socks4Reply::unbound(Socks4ReplyCode::REJECTED_OR_FAILED).encode(&mut out);
            }
            Self::HttpConnect | Self::HttpForward => return Some(f.http_response(target)),
            Self::Socks6 => {
                OperationReply::new(f.socks6(), Endpoint::unspecified()).encode(&mut out);
            }
            Self::Transparent => return None,
        }
        Some(out)
    }
}

/// What a front-end learned from the application.
#[derive(Debug)]
pub struct AppRequest {
    /// The protocol, for the log.
    pub protocol: &'static str,
    /// Where to connect.
    pub target: Endpoint,
    /// The user the application authenticated as.
    pub user: Option<String>,
    /// Bytes for the target ahead of anything still buffered (the
    /// rewritten HTTP request head, SOCKS6 initial data).
    pub first: Vec<u8>,
    /// How to answer.
    pub answer: Answer,
}

/// A refused handshake: why (for the log) and the bytes to send before
/// closing (maybe none).
#[derive(Debug)]
pub struct Refusal {
    /// For the log line.
    pub why: String,
    /// The answer.
    pub bytes: Vec<u8>,
}

impl Refusal {
    /// A refusal with an answer.
    pub fn new(why: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            why: why.into(),
            bytes,
        }
    }

    /// A refusal after a read error, with no answer.
    pub fn read<E: std::fmt::Display>(e: &ReadError<E>) -> Self {
        Self::new(e.to_string(), Vec::new())
    }
}

/// The credentials applications must give, and the failed-login limit
/// they are checked under, for one application connection.
#[derive(Debug, Clone, Copy)]
pub struct LocalAuth<'a> {
    /// The credentials (`--local-user`, `--local-password-file`).
    pub credentials: &'a Credentials,
    /// Failed logins per source.
    pub failed_logins: &'a FailedLogins,
    /// Where failures and refusals are counted.
    pub stats: &'a Stats,
    /// The application's address.
    pub source: IpAddr,
}

/// What a login came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The credentials match.
    Accepted,
    /// Wrong credentials; counted against the source.
    Failed,
    /// Not checked: the source has failed too often.
    Refused,
}

impl LocalAuth<'_> {
    /// Checks `username` and `password` from the application: refused
    /// unchecked when its source is blocked, else compared (in constant
    /// time) and a failure counted against the source; the failure that
    /// blocks the source is logged.
    pub fn check(&self, username: &[u8], password: &[u8]) -> Login {
        let now = Instant::now();
        if self.failed_logins.is_blocked(self.source, now) {
            self.stats.login_refused();
            return Login::Refused;
        }
        if self.credentials.matches(username, password) {
            return Login::Accepted;
        }
        self.stats.auth_failure();
        let n = self.failed_logins.record_failure(self.source, now);
        if n == self.failed_logins.max_failures() {
            tracing::warn!(
                source = %self.source,
                user = %String::from_utf8_lossy(username),
                failures = n,
                window_secs = self.failed_logins.window().as_secs(),
                "too many failed local logins: source refused for the rest of the window"
            );
        }
        Login::Failed
    }
}

impl Login {
    /// What the log line says about a login that was not accepted.
    pub fn why(self, username: &str) -> String {
        match self {
            Self::Refused => {
                format!("login refused for {username:?}: too many failed logins from this source")
            }
            Self::Accepted | Self::Failed => format!("authentication failed for {username:?}"),
        }
    }
}

/// What the front-ends share.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Credentials applications must give, if any.
    pub local: Option<LocalAuth<'a>>,
    /// The listener's own address (a transparent connection to it has no
    /// other destination).
    pub listener: SocketAddr,
}

/// Reads the application's handshake on a listener of `kind`.
pub async fn handshake(
    kind: FrontEnd,
    f: &mut Framed<TcpStream>,
    cx: Context<'_>,
) -> Result<AppRequest, Refusal> {
    match kind {
        FrontEnd::Transparent => transparent::handshake(f, cx),
        FrontEnd::Http => http::handshake(f, cx).await,
        FrontEnd::Mixed => {
            let first = f.peek_u8().await.map_err(|e| Refusal::read(&e))?;
            match first {
                0x05 => socks5::handshake(f, cx).await,
                0x04 => socks4::handshake(f, cx).await,
                0x06 => socks6::handshake(f, cx).await,
                b if b.is_ascii_alphabetic() => http::handshake(f, cx).await,
                // As the server does: the SOCKS6 Version Mismatch Reply,
                // one byte 0x06, then a clean close (draft -11 §5).
                b => Err(Refusal::new(
                    format!("unknown protocol (first byte 0x{b:02x}): version mismatch"),
                    VersionMismatchReply::BYTES.to_vec(),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Kind;

    #[test]
    fn early_success_answers_have_unspecified_bind() {
        assert_eq!(Answer::Socks5.success(None), [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Answer::Socks4.success(None), [0, 90, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Answer::HttpConnect.success(None),
            b"HTTP/1.1 200 Connection established\r\n\r\n"
        );
        assert!(Answer::HttpForward.success(None).is_empty());
        assert!(Answer::Transparent.success(None).is_empty());
    }

    #[test]
    fn socks_success_carries_the_servers_bind_address() {
        let bind = Endpoint::new(Ipv4Addr::new(192, 0, 2, 2), 49152);
        let reply = OperationReply::new(sixpath_protocol::socks6::ReplyCode::SUCCESS, bind);
        assert_eq!(
            Answer::Socks5.success(Some(&reply)),
            [5, 0, 0, 1, 192, 0, 2, 2, 0xc0, 0x00]
        );
        assert_eq!(
            Answer::Socks4.success(Some(&reply)),
            [0, 90, 0xc0, 0x00, 192, 0, 2, 2]
        );
        // SOCKS6 vector V21: the server's Operation Reply passed on.
        assert_eq!(
            Answer::Socks6.success(Some(&reply)),
            [6, 0, 0, 0, 0xc0, 0x00, 0, 1, 192, 0, 2, 2]
        );
    }

    #[test]
    fn failures_answer_in_each_protocol() {
        let refused = Failure::new(Kind::Refused, "x");
        let t = Endpoint::new(Ipv4Addr::new(192, 0, 2, 9), 80);
        assert_eq!(
            Answer::Socks5.failure(&refused, &t),
            Some(vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            Answer::Socks4.failure(&refused, &t),
            Some(vec![0, 91, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            Answer::Socks6.failure(&refused, &t),
            Some(vec![6, 5, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        );
        for answer in [Answer::HttpConnect, Answer::HttpForward] {
            let http = answer
                .failure(&Failure::new(Kind::TimedOut, "no answer"), &t)
                .expect("answer");
            let text = String::from_utf8(http).unwrap();
            assert!(
                text.starts_with(
                    "HTTP/1.1 504 Gateway Timeout\r\n\
                     Proxy-Status: sixpath; error=connection_timeout; details=\"no answer\"\r\n"
                ),
                "{text}"
            );
            assert!(text.ends_with("\r\n\r\nsixpath-client could not connect to 192.0.2.9:80: no answer (connection_timeout).\n"), "{text}");
        }
        assert_eq!(
            Answer::Transparent.failure(&refused, &t),
            None,
            "reset instead"
        );
    }

    #[test]
    fn only_socks5_socks4_and_http_connect_reply_early() {
        for a in [Answer::Socks5, Answer::Socks4, Answer::HttpConnect] {
            assert!(a.can_reply_early(), "{a:?}");
        }
        for a in [Answer::HttpForward, Answer::Socks6, Answer::Transparent] {
            assert!(!a.can_reply_early(), "{a:?}");
        }
        assert!(Answer::Transparent.waits_for_data(false));
        assert!(!Answer::Socks5.waits_for_data(false));
    }
}
