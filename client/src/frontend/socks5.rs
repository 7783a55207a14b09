//! SOCKS5 (RFC 1928) CONNECT from applications, with RFC 1929
//! username/password when local credentials are configured. Domain names
//! go to the server unresolved (`socks5h` semantics), so DNS happens at the
//! server. UDP ASSOCIATE is served by [`crate::udp`]; BIND answers
//! "command not supported" (0x07).

use sixpath_protocol::socks5::{
    Command, Method, MethodRequest, MethodSelection, Reply, ReplyCode, Request, UserPassReply,
    UserPassRequest,
};
use tokio::net::TcpStream;

use super::{Answer, AppRequest, Context, Login, Refusal};
use sixpath_net::framed::{Framed, ReadError};

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    f(&mut v);
    v
}

/// Reads a SOCKS5 handshake up to the Request; the Reply is the caller's.
pub async fn handshake(f: &mut Framed<TcpStream>, cx: Context<'_>) -> Result<AppRequest, Refusal> {
    let methods = match f.next(MethodRequest::decode).await {
        Ok(m) => m,
        Err(ReadError::Invalid(e)) => {
            let bytes = e
                .method_selection()
                .map(|m| encode(|b| MethodSelection::new(m).encode(b)))
                .unwrap_or_default();
            return Err(Refusal::new(format!("bad method request: {e}"), bytes));
        }
        Err(e) => return Err(Refusal::read(&e)),
    };
    let method = if cx.local.is_some() {
        Method::USERNAME_PASSWORD
    } else {
        Method::NO_AUTHENTICATION
    };
    if !methods.offers(method) {
        let sel = MethodSelection::new(Method::NO_ACCEPTABLE_METHODS);
        return Err(Refusal::new(
            "no acceptable authentication method",
            encode(|b| sel.encode(b)),
        ));
    }
    f.send(&encode(|b| MethodSelection::new(method).encode(b)))
        .await
        .map_err(|e| Refusal::new(e.to_string(), Vec::new()))?;
    let mut user = None;
    if let Some(local) = cx.local {
        let creds = match f.next(UserPassRequest::decode).await {
            Ok(c) => c,
            Err(ReadError::Invalid(e)) => {
                let bytes = e
                    .userpass_status()
                    .map(|status| encode(|b| UserPassReply { status }.encode(b)))
                    .unwrap_or_default();
                return Err(Refusal::new(
                    format!("bad username/password request: {e}"),
                    bytes,
                ));
            }
            Err(e) => return Err(Refusal::read(&e)),
        };
        let name = String::from_utf8_lossy(creds.username()).into_owned();
        let login = local.check(creds.username(), creds.password());
        if login != Login::Accepted {
            return Err(Refusal::new(
                login.why(&name),
                encode(|b| UserPassReply::FAILURE.encode(b)),
            ));
        }
        f.send(&encode(|b| UserPassReply::SUCCESS.encode(b)))
            .await
            .map_err(|e| Refusal::new(e.to_string(), Vec::new()))?;
        user = Some(name);
    }
    let req = match f.next(Request::decode).await {
        Ok(r) => r,
        Err(ReadError::Invalid(e)) => {
            let bytes = e
                .reply()
                .map(|code| encode(|b| Reply::failure(code).encode(b)))
                .unwrap_or_default();
            return Err(Refusal::new(format!("bad request: {e}"), bytes));
        }
        Err(e) => return Err(Refusal::read(&e)),
    };
    if req.command == Command::UDP_ASSOCIATE {
        // The endpoint is where the application will send from.
        return Ok(AppRequest {
            protocol: "socks5-udp",
            target: req.endpoint,
            user,
            first: Vec::new(),
            answer: Answer::Socks5Udp,
        });
    }
    if req.command != Command::CONNECT {
        return Err(Refusal::new(
            format!("{:?} not supported", req.command),
            encode(|b| Reply::failure(ReplyCode::COMMAND_NOT_SUPPORTED).encode(b)),
        ));
    }
    Ok(AppRequest {
        protocol: "socks5",
        target: req.endpoint,
        user,
        first: Vec::new(),
        answer: Answer::Socks5,
    })
}
