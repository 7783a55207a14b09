//! HTTP proxy front-end (RFC 9110, RFC 9112).
//!
//! - `CONNECT host:port`: a tunnel; `200 Connection established` (at once
//!   with early reply, else after the server's answer), then bytes flow.
//! - Absolute-form `GET http://host/path` (any method): the head is
//!   rewritten to origin-form by the protocol crate (new `Host`, hop-by-hop
//!   fields dropped, `Connection: close`) and becomes the first bytes for
//!   the origin; the body follows as the application sends it. One request
//!   per application connection: the origin closes after its response
//!   (`Connection: close`), the client passes that on, and the application
//!   opens a new connection for its next request, which may go to another
//!   host. Keep-alive towards the application is thus not offered; each
//!   request gets its own multipath connection.
//!
//! With local credentials, `Proxy-Authorization: Basic` must match, else
//! `407` with a `Proxy-Authenticate` challenge.

use sixpath_protocol::http::{self, RequestHead};
use tokio::net::TcpStream;

use super::{Answer, AppRequest, Context, Login, Refusal};
use sixpath_net::framed::{Framed, ReadError};

/// Reads an HTTP proxy request head.
pub async fn handshake(f: &mut Framed<TcpStream>, cx: Context<'_>) -> Result<AppRequest, Refusal> {
    let head = match f.next(RequestHead::decode).await {
        Ok(h) => h,
        Err(ReadError::Invalid(e)) => {
            let mut bytes = Vec::new();
            e.write_response(&mut bytes);
            return Err(Refusal::new(format!("bad HTTP request: {e}"), bytes));
        }
        Err(e) => return Err(Refusal::read(&e)),
    };
    let mut user = None;
    if let Some(local) = cx.local {
        // No Proxy-Authorization is a question, not a failed login:
        // browsers ask without credentials first.
        let why = match &head.proxy_authorization {
            Some(c) => match local.check(c.username.as_bytes(), c.password.as_bytes()) {
                Login::Accepted => None,
                login => Some(login.why(&c.username)),
            },
            None => Some("proxy authentication required".into()),
        };
        if let Some(why) = why {
            let mut bytes = Vec::new();
            http::proxy_auth_required(&mut bytes);
            return Err(Refusal::new(why, bytes));
        }
        user = head
            .proxy_authorization
            .as_ref()
            .map(|c| c.username.clone());
    }
    let target = head.target.endpoint().clone();
    if head.is_connect() {
        return Ok(AppRequest {
            protocol: "http-connect",
            target,
            user,
            first: Vec::new(),
            answer: Answer::HttpConnect,
        });
    }
    let mut first = Vec::with_capacity(head.encoded_len() + 32);
    head.encode_origin_form(&mut first)
        .map_err(|e| Refusal::new(e.to_string(), Vec::new()))?;
    Ok(AppRequest {
        protocol: "http",
        target,
        user,
        first,
        answer: Answer::HttpForward,
    })
}
