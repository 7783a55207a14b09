//! The converter side of the 0-RTT TCP Convert protocol (RFC 8803), up to
//! the Connect it asks for.
//!
//! The client's Convert message is read (usually straight out of the SYN,
//! thanks to the TFO listener), validated by the protocol crate, and
//! answered:
//!
//! - Info only: the Supported TCP Extensions TLV, then a graceful close.
//! - Connect: handed to the CONNECT command ([`Accepted`]), which opens the
//!   downstream connection and replies.
//! - Any failure: header + Error TLV, then FIN — "The Transport Converter
//!   MUST NOT send a RST immediately after the detection of an error"
//!   (RFC 8803 §5.2.8 / digest §2.9) — except a header with Total Length 0,
//!   which gets no answer and a reset: "the connection MUST be reset upon
//!   reception of a header with such total length" (digest §2.2).
//!
//! Convert carries no credentials, so a server that requires
//! authentication answers Not Authorized (32) to Convert clients.
//!
//! # Cookies
//!
//! With `--convert-cookies` every request must carry a Cookie TLV (RFC 8803
//! §5.2.5 / digest §2.8), proving that the client receives what is sent to
//! its address. A cookie is the first [`COOKIE_LEN`] bytes of
//! `HMAC-SHA256(server key, "convert-cookie", client IP, time bucket)`
//! ([`cookie_for`]); the bucket is [`COOKIE_BUCKET_SECS`] long and the
//! current and previous buckets are accepted, so a cookie lives one to two
//! buckets. Servers sharing `--secret-file` accept each other's cookies.
//!
//! - No Cookie TLV: Missing Cookie (3) carrying a fresh cookie, then close
//!   (digest §3.6 step 2).
//! - A Cookie TLV that does not check (another address, expired, forged):
//!   Not Authorized (32), then close: "If the Cookie is valid, the
//!   connection establishment procedure can continue. Otherwise, the
//!   Transport Converter MUST return an Error TLV set to 'Not Authorized'"
//!   (digest §2.8, N23). A client should drop such a cookie and reconnect
//!   without one to be issued a fresh cookie.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use sixpath_protocol::convert::{
    Connect, Cookie, ErrorTlv, Message, Request, SupportedTcpExtensions, TcpOptionKind, Tlv,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Framed, Reset, read_by};
use crate::secret::Secret;
use crate::state::{Outcome, Shared};

/// Length of an issued cookie: 128 bits of HMAC-SHA256, a multiple of 4
/// so that the padded Cookie TLV value is the cookie itself.
pub const COOKIE_LEN: usize = 16;
/// Length of a cookie time bucket in seconds. A cookie is accepted in the
/// bucket it was issued in and the next one.
pub const COOKIE_BUCKET_SECS: u64 = 3600;
/// The MAC domain of Convert cookies (see [`Secret::mac`]).
const COOKIE_DOMAIN: &str = "convert-cookie";

/// The cookie time bucket `now` falls in.
pub fn cookie_bucket(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / COOKIE_BUCKET_SECS)
}

/// The MAC input for `client`: its address (IPv4-mapped IPv6 as IPv4, so a
/// dual-stack listener issues the same cookie) and the bucket.
fn cookie_parts(client: IpAddr, bucket: u64) -> (Vec<u8>, [u8; 8]) {
    let ip = match client.to_canonical() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    (ip, bucket.to_be_bytes())
}

/// The cookie issued to `client` in time bucket `bucket`.
pub fn cookie_for(secret: &Secret, client: IpAddr, bucket: u64) -> Cookie {
    let (ip, b) = cookie_parts(client, bucket);
    let mac = secret.mac(COOKIE_DOMAIN, &[&ip, &b]);
    Cookie::new(mac.get(..COOKIE_LEN).unwrap_or_default())
}

/// Whether `cookie` was issued to `client` in the bucket of `now` or the
/// one before (compared in constant time).
pub fn cookie_is_valid(secret: &Secret, client: IpAddr, cookie: &Cookie, now: SystemTime) -> bool {
    let tag = cookie.as_bytes();
    if tag.len() != COOKIE_LEN {
        return false;
    }
    let current = cookie_bucket(now);
    [current, current.saturating_sub(1)].into_iter().any(|b| {
        let (ip, b) = cookie_parts(client, b);
        secret.verify(COOKIE_DOMAIN, &[&ip, &b], tag)
    })
}

/// The cookie check of a request in cookie mode: `None` to proceed, or the
/// reply refusing it and what the log line says.
fn check_cookie(shared: &Shared, client: IpAddr, req: &Request) -> Option<(Vec<u8>, String)> {
    if !shared.settings.convert_cookies {
        return None;
    }
    let now = SystemTime::now();
    match &req.cookie {
        Some(c) if cookie_is_valid(&shared.settings.secret, client, c, now) => None,
        Some(_) => Some((
            ErrorTlv::not_authorized().reply_bytes(),
            "Not Authorized: invalid or expired cookie".into(),
        )),
        None => {
            let fresh = cookie_for(&shared.settings.secret, client, cookie_bucket(now));
            // A 16-byte cookie always fits; refuse rather than let the
            // request through if it ever did not.
            let tlv =
                ErrorTlv::missing_cookie(&fresh).unwrap_or_else(|_| ErrorTlv::not_authorized());
            Some((tlv.reply_bytes(), "Missing Cookie: cookie issued".into()))
        }
    }
}

/// The retry delay, in seconds, a Convert client refused by a connection
/// cap is told to wait: the cap frees as other connections end.
pub const CAP_RETRY_SECS: u8 = 1;

/// Answers a Convert client that a connection cap refused, without reading
/// its message: Resource Exceeded (64) with a retry delay of
/// [`CAP_RETRY_SECS`], then a clean close. RFC 8803 §5.2.8 has no "not
/// allowed by ruleset"; Not Authorized (32) says the request itself is
/// refused, while Resource Exceeded ("the Transport Converter does not have
/// enough resources to perform the request") says try again later, which is
/// what a cap means.
pub async fn refuse_over_cap<S>(f: Framed<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    f.reject(&ErrorTlv::resource_exceeded(CAP_RETRY_SECS).reply_bytes())
        .await;
}

/// TCP options this converter can honour when a client lists them in an
/// Extended Connect, and announces in Supported TCP Extensions.
const SUPPORTED: [TcpOptionKind; 4] = [
    TcpOptionKind::SACK_PERMITTED,
    TcpOptionKind::TIMESTAMPS,
    TcpOptionKind::MPTCP,
    TcpOptionKind::FAST_OPEN,
];

/// A Convert request the handshake accepted: a Connect, for the CONNECT
/// command.
#[derive(Debug)]
pub struct Accepted {
    /// The Connect TLV: the destination and the TCP options asked for.
    pub connect: Connect,
    /// The Supported TCP Extensions TLV when the client also asked for
    /// Info: it goes first in the reply.
    pub info: Option<Tlv>,
}

/// The handshake of a Convert client (first byte 1): the stream and the
/// Connect to serve, or `None` once the client has been answered (or is
/// gone) and `out` says why.
pub async fn serve<S>(
    mut f: Framed<S>,
    shared: &Shared,
    deadline: Instant,
    out: &mut Outcome,
) -> Option<(Framed<S>, Accepted)>
where
    S: AsyncRead + AsyncWrite + Reset + Unpin + 'static,
{
    let req = match read_by(deadline, out, f.next(|b| Request::decode(b, &SUPPORTED))).await {
        Ok(r) => r,
        Err(Some(e)) => {
            out.reply = format!("bad Convert message: {e}");
            // None means the answer is a reset (Total Length 0).
            match e.reply_bytes(f.buffered()) {
                Some(bytes) => f.reject(&bytes).await,
                None => f.reset(),
            }
            return None;
        }
        Err(None) => return None,
    };
    // "A Transport Converter that has been configured to use the optional
    // Cookie TLV MUST verify the presence of this TLV" (digest §2.8).
    if let Some((reply, why)) =
        check_cookie(shared, out.source.unwrap_or(IpAddr::from([0; 4])), &req)
    {
        out.reply = why;
        f.reject(&reply).await;
        return None;
    }
    let supported = SupportedTcpExtensions::new(&SUPPORTED).map(Tlv::SupportedTcpExtensions);
    let Some(connect) = req.connect else {
        // Info only: capabilities, then a graceful close (digest §2.4).
        out.reply = "info".into();
        let msg = supported
            .ok()
            .and_then(|t| Message::new(vec![t]).ok())
            .unwrap_or_else(Message::header_only);
        f.reject(&msg.to_bytes()).await;
        return None;
    };
    let dest = connect.socket_addr();
    out.target = Some(dest.to_string());
    if shared.auth_required() {
        out.reply = "Not Authorized: Convert carries no credentials".into();
        f.reject(&ErrorTlv::not_authorized().reply_bytes()).await;
        return None;
    }
    // Info asked for with the Connect: the capabilities go first in the
    // reply the CONNECT command writes.
    let info = if req.info { supported.ok() } else { None };
    Some((f, Accepted { connect, info }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key() -> Secret {
        Secret::from_bytes(&[3; 32]).expect("key")
    }

    #[test]
    fn cookie_is_bound_to_address_and_bucket() {
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let c = cookie_for(&key(), a, 100);
        assert_eq!(c.as_bytes().len(), COOKIE_LEN);
        assert_eq!(c, cookie_for(&key(), mapped, 100), "dual-stack listeners");
        assert_ne!(c, cookie_for(&key(), "192.0.2.2".parse().expect("ip"), 100));
        assert_ne!(c, cookie_for(&key(), a, 101));
    }

    #[test]
    fn cookie_lives_one_to_two_buckets() {
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let t = UNIX_EPOCH + Duration::from_secs(COOKIE_BUCKET_SECS * 1000 + 5);
        let c = cookie_for(&key(), a, 1000);
        assert!(cookie_is_valid(&key(), a, &c, t));
        let next = t + Duration::from_secs(COOKIE_BUCKET_SECS);
        assert!(cookie_is_valid(&key(), a, &c, next));
        let later = next + Duration::from_secs(COOKIE_BUCKET_SECS);
        assert!(!cookie_is_valid(&key(), a, &c, later));
        assert!(!cookie_is_valid(
            &Secret::from_bytes(&[4; 32]).expect("key"),
            a,
            &c,
            t
        ));
        let short = Cookie::new(c.as_bytes().get(..8).unwrap_or_default());
        assert!(!cookie_is_valid(&key(), a, &short, t), "full length only");
    }
}
