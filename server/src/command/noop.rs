//! SOCKS6 NOOP, whose address has "no meaning" (draft -11 §4): the command
//! answers success, with a new Session ID if the request created the
//! session, and closes; "After a NOOP Operation Reply, the client MUST
//! close" (draft -11 §7, digest §2.4).

use sixpath_net::framed::Framed;
use sixpath_protocol::Endpoint;
use sixpath_protocol::socks6::{OperationReply, ReplyCode, SessionId};
use tokio::io::{AsyncRead, AsyncWrite};

use super::push_session_id;
use crate::state::Outcome;

/// Serves a SOCKS6 NOOP after a successful Authentication Reply. A Session
/// ID the request created (`new_session`) goes into the Operation Reply.
pub async fn serve_socks6<S>(f: Framed<S>, new_session: Option<&SessionId>, out: &mut Outcome)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    out.reply = format!("{:?}", ReplyCode::SUCCESS);
    let mut reply = OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified());
    push_session_id(&mut reply, new_session);
    let mut bytes = Vec::with_capacity(64);
    reply.encode(&mut bytes);
    f.reject(&bytes).await;
}
