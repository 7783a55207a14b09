//! Path probes (`docs/probe.md`, codec in `sixpath_protocol::probe`): a
//! client holding a SOCKS6 session sends a small echo over each of its
//! paths to the listener's UDP port to judge the path's health.
//!
//! The server answers a probe only when its source is within the rate
//! limits ([`crate::probes`]), it decodes as an Echo Request, and its token
//! is a live Session ID this server (or one sharing its `--secret-file`)
//! granted. Everything else gets nothing back. The Reply (22 bytes) is
//! shorter than any valid Request, so a forged source cannot be sent more
//! than was sent in its name.

use std::net::SocketAddr;
use std::time::Instant;

use sixpath_protocol::probe::{self, ProbeKind};
use sixpath_protocol::socks6::SessionId;
use tokio::net::UdpSocket;

use crate::state::Shared;
use crate::stats::ProbeResult;

/// Answers, or drops, one datagram that starts with the probe magic,
/// received on `socket` from `from`. Never waits: a reply that does not fit
/// in the socket's buffer right now is dropped like a lost packet.
pub fn answer(socket: &UdpSocket, datagram: &[u8], from: SocketAddr, shared: &Shared) {
    let result = judge(datagram, from, shared, socket);
    shared.stats.probe(result);
}

fn judge(datagram: &[u8], from: SocketAddr, shared: &Shared, socket: &UdpSocket) -> ProbeResult {
    // A look at the source's bucket first (a table lookup; the session
    // check costs an HMAC), but tokens are taken only by probes with a
    // live session: a sender forging someone's address without a session
    // cannot use up that client's probes.
    let now = Instant::now();
    if !shared.probe_limits.may(from.ip(), now) {
        return ProbeResult::RateLimited;
    }
    let Ok(p) = probe::decode(datagram) else {
        return ProbeResult::Malformed;
    };
    if p.kind != ProbeKind::Request {
        return ProbeResult::Malformed;
    }
    // An answered probe counts as a use of the session, so a client with
    // long-lived connections keeps it while it probes.
    let live = SessionId::new(p.token.clone()).is_ok_and(|id| shared.sessions.keep_alive(&id));
    if !live {
        return ProbeResult::NoSession;
    }
    if !shared.probe_limits.allow(from.ip(), now) {
        return ProbeResult::RateLimited;
    }
    let mut reply = Vec::with_capacity(probe::REPLY_LEN);
    p.reply().encode(&mut reply);
    match socket.try_send_to(&reply, from) {
        Ok(_) => ProbeResult::Answered,
        Err(e) => {
            tracing::debug!(%from, error = %e, "probe reply not sent");
            ProbeResult::Unsent
        }
    }
}
