//! SOCKS6 (draft -11) towards the server: one CONNECT per application
//! connection, 0-RTT.
//!
//! The Request carries, as options: an Authentication Method Advertisement
//! with the Initial Data Length (and method 2 when credentials are
//! configured), the username/password as Authentication Data (0-RTT,
//! digest §3.5), and Stack options for the proxy-remote leg asking for
//! TCP Fast Open and Multipath TCP towards the target. The application's
//! first bytes follow as Initial Data, and Request plus data go out in one
//! write, in the SYN with TCP Fast Open. Then the Authentication Reply and
//! the Operation Reply are read; bytes after them are the target's.

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::{
    AuthMethodAdvertisement, AuthReplyType, AuthenticationReply, Availability, Command, Leg,
    Method, OperationReply, ReplyCode, Request, SocksOption, StackOption, StackValue,
    UsernamePassword,
};
use tokio::time::Instant;

use super::{Opened, Upstream, await_reply};
use crate::failure::{Failure, Kind};
use crate::framed::{Framed, ReadError};

/// Builds the Request for `target` with `initial_len` bytes of initial
/// data.
pub fn request(
    upstream: &Upstream,
    target: &Endpoint,
    initial_len: usize,
) -> Result<Request, Failure> {
    let s = upstream.settings();
    let mut req = Request::new(Command::CONNECT, target.clone());
    let bad = |e: &dyn std::fmt::Display| Failure::new(Kind::General, format!("request: {e}"));
    let idl = u16::try_from(initial_len).map_err(|e| bad(&e))?;
    let creds = s.upstream_credentials.as_ref();
    if idl > 0 || creds.is_some() {
        let methods = creds.map(|_| Method::USERNAME_PASSWORD);
        let adv = AuthMethodAdvertisement::new(idl, methods).map_err(|e| bad(&e))?;
        req.options
            .push(SocksOption::AuthMethodAdvertisement(adv))
            .map_err(|e| bad(&e))?;
    }
    if let Some(c) = creds {
        let up = UsernamePassword::new(c.username.as_bytes(), c.password.0.clone())
            .map_err(|e| bad(&e))?;
        req.options.push(up.to_option()).map_err(|e| bad(&e))?;
    }
    if s.tfo {
        req.options
            .push(SocksOption::Stack(StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::Tfo(0),
            )))
            .map_err(|e| bad(&e))?;
    }
    if s.mptcp {
        req.options
            .push(SocksOption::Stack(StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::Mptcp(Availability::AVAILABLE),
            )))
            .map_err(|e| bad(&e))?;
    }
    Ok(req)
}

/// CONNECT to `target` through the server with `initial` as Initial Data.
pub async fn open(
    upstream: &Upstream,
    target: &Endpoint,
    initial: &[u8],
    deadline: Instant,
) -> Result<Opened, Failure> {
    let server = upstream.server_addr().await?;
    let req = request(upstream, target, initial.len())?;
    let mut first = Vec::with_capacity(req.encoded_len() + initial.len());
    req.encode(&mut first);
    first.extend_from_slice(initial);
    let stream = upstream.dial(server, &first).await?;

    let mut f = Framed::new(stream);
    let probe = super::probe(f.get_ref());
    let connect_timeout = upstream.settings().connect_timeout;
    let read = async {
        let auth = f.next(AuthenticationReply::decode).await?;
        if auth.reply_type != AuthReplyType::SUCCESS {
            return Ok(Err(auth));
        }
        let op = f.next(OperationReply::decode).await?;
        Ok::<_, ReadError<sixpath_protocol::socks6::Error>>(Ok(op))
    };
    let replies = await_reply(probe, connect_timeout, deadline, server, read).await;
    let syn_data = upstream.check_syn_data(f.get_ref());
    let op = match replies {
        Ok(Ok(op)) => op,
        Ok(Err(auth)) => {
            let mut f = Failure::new(
                Kind::General,
                format!(
                    "server {server} refused the credentials{}",
                    if auth.options.auth_selection() == Some(Method::USERNAME_PASSWORD) {
                        " (it requires --user and --password-file)"
                    } else {
                        ""
                    }
                ),
            );
            f.server_fault = true;
            return Err(f);
        }
        Err(e) => return Err(e.into_failure(server, "SOCKS6")),
    };
    if op.code != ReplyCode::SUCCESS {
        return Err(Failure::from_socks6(op.code));
    }
    let (stream, from_server) = f.into_parts();
    Ok(Opened {
        stream,
        from_server,
        reply: Some(op),
        server,
        syn_data,
    })
}
