//! SOCKS6 from applications, re-originated: the application's Request is
//! decoded and checked against the local credentials, and the client sends
//! its own Request to the server (its own credentials, its Multipath TCP and
//! TCP Fast Open Stack options) with the application's Initial Data. The
//! application gets its Authentication Reply at once (authentication is
//! local) and the server's Operation Reply, code, bind address and Stack
//! options, when it comes.
//!
//! Re-originating rather than forwarding the bytes keeps one policy for
//! every front-end: local authentication, the server credentials on the
//! client only, and a multipath socket per connection. CONNECT is served;
//! NOOP is answered locally; BIND and UDP ASSOCIATE get "command not
//! supported". Session and idempotence options of the application are
//! ignored, which -11 allows ("a proxy that cannot or will not create a
//! session silently omits the Session ID").

use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Command, Method, OperationReply, ReplyCode, Request,
    SocksOption, UsernamePassword, UsernamePasswordReply,
};
use tokio::net::TcpStream;

use super::{Answer, AppRequest, Context, Login, Refusal};
use sixpath_net::framed::{Framed, ReadError};

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    f(&mut v);
    v
}

fn userpass_reply(ok: bool) -> SocksOption {
    let reply = if ok {
        UsernamePasswordReply::SUCCESS
    } else {
        UsernamePasswordReply::FAILURE
    };
    reply.to_option()
}

/// Reads a SOCKS6 Request and its Initial Data, authenticates it locally
/// and sends the Authentication Reply.
pub async fn handshake(f: &mut Framed<TcpStream>, cx: Context<'_>) -> Result<AppRequest, Refusal> {
    let req = match f.next(Request::decode).await {
        Ok(r) => r,
        Err(ReadError::Invalid(e)) => {
            let resp = e.response();
            return Err(Refusal::new(
                format!("bad SOCKS6 request: {e}"),
                encode(|b| resp.encode(b)),
            ));
        }
        Err(e) => return Err(Refusal::read(&e)),
    };
    let initial = f
        .take(req.initial_data_len())
        .await
        .map_err(|e| Refusal::read(&e))?;

    let mut user = None;
    let mut auth = AuthenticationReply::new(AuthReplyType::SUCCESS);
    if let Some(local) = cx.local {
        let creds = req
            .options
            .auth_data(Method::USERNAME_PASSWORD)
            .map(UsernamePassword::from_auth_data);
        let failed = |why: String| {
            let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
            let _ = reply.options.push(userpass_reply(false));
            Refusal::new(why, encode(|b| reply.encode(b)))
        };
        match creds {
            Some(Ok(c)) => {
                let name = String::from_utf8_lossy(c.username()).into_owned();
                let login = local.check(c.username(), c.password());
                if login != Login::Accepted {
                    return Err(failed(login.why(&name)));
                }
                user = Some(name);
                let _ = auth.options.push(userpass_reply(true));
            }
            Some(Err(e)) => return Err(failed(format!("bad username/password data: {e}"))),
            None => {
                // Digest §3.5: select method 2 only to say credentials are
                // required, in a failure reply without continuation.
                let mut reply = AuthenticationReply::new(AuthReplyType::FAILURE);
                let _ = reply
                    .options
                    .push(SocksOption::AuthMethodSelection(Method::USERNAME_PASSWORD));
                return Err(Refusal::new(
                    "credentials required",
                    encode(|b| reply.encode(b)),
                ));
            }
        }
    }
    let auth_bytes = encode(|b| auth.encode(b));
    if req.command != Command::CONNECT {
        let code = if req.command == Command::NOOP {
            ReplyCode::SUCCESS
        } else {
            ReplyCode::COMMAND_NOT_SUPPORTED
        };
        let mut bytes = auth_bytes;
        OperationReply::new(code, Endpoint::unspecified()).encode(&mut bytes);
        return Err(Refusal::new(format!("{:?}: {code:?}", req.command), bytes));
    }
    f.send(&auth_bytes)
        .await
        .map_err(|e| Refusal::new(e.to_string(), Vec::new()))?;
    Ok(AppRequest {
        protocol: "socks6",
        target: req.endpoint,
        user,
        first: initial.to_vec(),
        answer: Answer::Socks6,
    })
}
