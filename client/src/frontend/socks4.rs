//! SOCKS4 and `SOCKS4a` CONNECT from applications. SOCKS4 has no password,
//! so it is refused (0x5B) when local credentials are configured.

use sixpath_protocol::socks5::{Socks4Command, Socks4Reply, Socks4ReplyCode, Socks4Request};
use tokio::net::TcpStream;

use super::{Answer, AppRequest, Context, Refusal};
use sixpath_net::framed::{Framed, ReadError};

fn rejected(code: Socks4ReplyCode) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    Socks4Reply::unbound(code).encode(&mut v);
    v
}

/// Reads a SOCKS4/4a request; the reply is the caller's.
pub async fn handshake(f: &mut Framed<TcpStream>, cx: Context<'_>) -> Result<AppRequest, Refusal> {
    let req = match f.next(Socks4Request::decode).await {
        Ok(r) => r,
        Err(ReadError::Invalid(e)) => {
            let bytes = e.socks4_reply().map(rejected).unwrap_or_default();
            return Err(Refusal::new(format!("bad SOCKS4 request: {e}"), bytes));
        }
        Err(e) => return Err(Refusal::read(&e)),
    };
    if cx.local.is_some() {
        return Err(Refusal::new(
            "SOCKS4 refused: it carries no password and authentication is required",
            rejected(Socks4ReplyCode::REJECTED_OR_FAILED),
        ));
    }
    if req.command() != Socks4Command::CONNECT {
        return Err(Refusal::new(
            "SOCKS4 BIND not supported",
            rejected(Socks4ReplyCode::REJECTED_OR_FAILED),
        ));
    }
    let protocol = if req.is_socks4a() {
        "socks4a"
    } else {
        "socks4"
    };
    Ok(AppRequest {
        protocol,
        target: req.endpoint().clone(),
        user: Some(String::from_utf8_lossy(req.user_id()).into_owned()).filter(|u| !u.is_empty()),
        first: Vec::new(),
        answer: Answer::Socks4,
    })
}
