//! RFC 8803 Convert towards a Transport Converter.
//!
//! Convert carries IP addresses only, so names are resolved on this host
//! (the system resolver, first address). The Convert message is an
//! Extended Connect asking the converter for Multipath TCP and TCP Fast
//! Open towards the destination (when enabled), plus the converter's
//! cookie once it has given us one. The application's first bytes follow
//! the message and ride in the SYN with it ("If the initial SYN message
//! contains user data in its payload ... that data MUST be placed right
//! after the Convert TLVs", digest §2.1). The converter's reply is read
//! before anything is relayed.
//!
//! Errors: "Upon reception of an Error TLV, a Client MUST reset the
//! associated connection" (digest §2.9), so every refused connection is closed
//! with a reset. A Missing Cookie error carries the cookie to use: it is
//! remembered for this converter and the connection retried once with it
//! (§3.6 of the digest). A Missing Cookie without a cookie fails the
//! connection: a retry with an empty Cookie TLV could only be refused again.

use std::net::SocketAddr;

use sixpath_protocol::convert::{
    Connect, Error, ErrorCode, Reply, Request, TcpOption, TcpOptionKind,
};
use sixpath_protocol::{Address, Endpoint};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Opened, Upstream, await_reply, probe};
use crate::failure::{Failure, Fault, Kind};
use sixpath_net::framed::Framed;

/// The destination as an IP address: literals as they are, names through
/// the system resolver.
async fn resolve(target: &Endpoint) -> Result<SocketAddr, Failure> {
    if let Some(sa) = target.socket_addr() {
        return Ok(sa);
    }
    let Address::Domain(name) = &target.addr else {
        return Err(Failure::new(Kind::AddressTypeNotSupported, "no address"));
    };
    let unreachable = |why: String| {
        Failure::new(
            Kind::HostUnreachable,
            format!("cannot resolve {name}: {why}"),
        )
    };
    let mut addrs = tokio::net::lookup_host((name.as_str(), target.port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    addrs.next().ok_or_else(|| unreachable("no address".into()))
}

/// The Convert message for `dest`, with the converter's cookie if known.
pub fn request(upstream: &Upstream, dest: SocketAddr, converter: SocketAddr) -> Request {
    let s = upstream.settings();
    let mut options = Vec::new();
    if s.mptcp_to_targets
        && let Ok(o) = TcpOption::new(TcpOptionKind::MPTCP, Vec::new())
    {
        options.push(o);
    }
    if s.tfo
        && let Ok(o) = TcpOption::new(TcpOptionKind::FAST_OPEN, Vec::new())
    {
        options.push(o);
    }
    let mut req = Request::connect(Connect::new(dest).with_tcp_options(options));
    req.cookie = upstream.cookie(converter);
    req
}

/// Ends a refused connection with a reset, as the client MUST.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Connects to `target` through the converter with `initial` as the first
/// bytes.
pub async fn open(
    upstream: &Upstream,
    target: &Endpoint,
    initial: &[u8],
    deadline: Instant,
) -> Result<Opened, Failure> {
    let dest = resolve(target).await?;
    let converter = upstream.server_addr().await?;
    let mut retried = false;
    loop {
        let req = request(upstream, dest, converter);
        let mut first = Vec::with_capacity(req.encoded_len() + initial.len());
        req.encode(&mut first)
            .map_err(|e| Failure::new(Kind::General, format!("Convert message: {e}")))?;
        first.extend_from_slice(initial);
        let stream = upstream.dial(converter, &first).await?;
        let mut f = Framed::new(stream);
        let probe = probe(f.get_ref());
        let connect_timeout = upstream.settings().connect_timeout;
        let read = f.next(Reply::decode);
        let replied = await_reply(probe, connect_timeout, deadline, converter, read).await;
        let syn_data = upstream.check_syn_data(f.get_ref());
        match replied {
            Ok(_reply) => {
                let (stream, from_server) = f.into_parts();
                return Ok(Opened {
                    stream,
                    from_server,
                    reply: None,
                    server: converter,
                    syn_data,
                });
            }
            Err(super::ReplyError::Read(sixpath_net::framed::ReadError::Invalid(
                Error::Refused(e),
            ))) => {
                reset(f.get_ref());
                if e.code() == ErrorCode::MISSING_COOKIE {
                    // Only zero bytes after the code: no cookie at all (a
                    // cookie cannot be told from its padding).
                    let cookie = e.cookie().filter(|c| !c.trimmed().is_empty());
                    match cookie {
                        Some(cookie) if !retried => {
                            tracing::debug!(%converter, "converter asked for a cookie; retrying with it");
                            upstream.remember_cookie(converter, cookie);
                            retried = true;
                            continue;
                        }
                        Some(_) => {}
                        None => {
                            return Err(Failure::new(
                                Kind::General,
                                format!(
                                    "converter {converter} answered Missing Cookie without a \
                                     cookie to send: not retried"
                                ),
                            )
                            .with_fault(Fault::Protocol));
                        }
                    }
                }
                return Err(Failure::from_convert(&e));
            }
            Err(e) => {
                reset(f.get_ref());
                return Err(e.into_failure(converter, "Convert"));
            }
        }
    }
}
