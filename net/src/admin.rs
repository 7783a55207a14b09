//! A small HTTP/1.1 server for admin endpoints (stats, metrics): GET and
//! HEAD only, one request per connection.
//!
//! Each connection gets [`HEAD_DEADLINE`] to send a request head of at most
//! [`MAX_HEAD`] bytes (parsed with `httparse`) and [`DEADLINE`] in all,
//! then one response with `Connection: close`. The handler maps a path
//! (query string removed) to a [`Response`]; `None` is 404. Other methods
//! get 405 with `Allow`, a bad head 400, an oversized one 431, a head begun
//! and not finished in time 408 (a connection that sent nothing is closed
//! without an answer).
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once. The listener
//! is always accepted from: when every slot is taken, the oldest connection
//! is dropped to make room for the new one, so idle connections (any local
//! process can open them) cannot keep a monitoring request waiting; each
//! one costs a slot for [`HEAD_DEADLINE`] at most, and a request that is
//! answered at once never ages into the oldest.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Largest request head read, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a connection has to send its request head (a local client sends it
/// in one segment, at once).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// Time a connection has in all: its request, the response, and the drain
/// of what it still sends.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; beyond, the oldest is dropped.
pub const MAX_CONNECTIONS: usize = 256;
/// Header fields accepted in a request head.
const MAX_HEADERS: usize = 64;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with `body` of type `content_type`.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n").into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Serves `listener` forever with `handler`.
pub async fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&str) -> Option<Response> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    // The connections being served, oldest first.
    let mut open: VecDeque<AbortHandle> = VecDeque::with_capacity(MAX_CONNECTIONS);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                open.retain(|t| !t.is_finished());
                if open.len() >= MAX_CONNECTIONS
                    && let Some(oldest) = open.pop_front()
                {
                    oldest.abort();
                }
                let handler = Arc::clone(&handler);
                let task = tokio::spawn(async move {
                    let _ = tokio::time::timeout(DEADLINE, serve_one(stream, &*handler)).await;
                });
                open.push_back(task.abort_handle());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What a request head asks for.
enum Parsed {
    /// GET or HEAD of a path.
    Get { path: String, head: bool },
    /// Answer this at once.
    Refuse(Response, &'static [(&'static str, &'static str)]),
    /// Read more.
    Partial,
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(Response::text(431, "too many header fields"), &[]);
        }
        Err(e) => return Parsed::Refuse(Response::text(400, &e.to_string()), &[]),
    }
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => {
            return Parsed::Refuse(
                Response::text(405, "only GET and HEAD"),
                &[("Allow", "GET, HEAD")],
            );
        }
    };
    let target = req.path.unwrap_or("/");
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Parsed::Get {
        path: path.to_owned(),
        head,
    }
}

async fn serve_one<H>(mut stream: TcpStream, handler: &H) -> io::Result<()>
where
    H: Fn(&str) -> Option<Response>,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read_head = async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            match parse(&buf) {
                Parsed::Get { path, head } => {
                    let resp = handler(&path).unwrap_or_else(|| Response::text(404, "not found"));
                    return Ok(Some((resp, &[][..], head)));
                }
                Parsed::Refuse(resp, extra) => return Ok(Some((resp, extra, false))),
                Parsed::Partial if buf.len() >= MAX_HEAD => {
                    return Ok(Some((
                        Response::text(431, "request head too large"),
                        &[][..],
                        false,
                    )));
                }
                Parsed::Partial => {}
            }
        }
    };
    let (resp, extra, head) = match tokio::time::timeout(HEAD_DEADLINE, read_head).await {
        Ok(Ok(Some(answer))) => answer,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        // Nothing sent: nothing to answer.
        Err(_) if buf.is_empty() => return Ok(()),
        Err(_) => (
            Response::text(408, "request head not received in time"),
            &[][..],
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head {
        bytes.extend_from_slice(&resp.body);
    }
    stream.write_all(&bytes).await?;
    stream.shutdown().await?;
    // Drain what the client still sends (a body, the rest of an oversized
    // head) so that closing does not reset the connection under the
    // response. The caller's deadline bounds this.
    let mut total = 0usize;
    while let Ok(n) = stream.read(&mut chunk).await {
        total += n;
        if n == 0 || total > 1 << 20 {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve(l, |path| {
            (path == "/hello").then(|| Response::ok("text/plain", "hi"))
        }));
        addr
    }

    async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(raw).await.expect("write");
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .expect("closes")
            .expect("read");
        out
    }

    #[tokio::test]
    async fn serves_get_with_connection_close() {
        let addr = start().await;
        let r = request(addr, b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\nhi"
        );
    }

    #[tokio::test]
    async fn head_has_no_body() {
        let addr = start().await;
        let r = request(addr, b"HEAD /hello HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.ends_with(
                "Content-Length: 2\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            ),
            "{r}"
        );
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_post_is_405() {
        let addr = start().await;
        let r = request(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = request(addr, b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_within_seconds_while_a_thousand_idle_connections_are_open() {
        let addr = start().await;
        let mut idle = Vec::with_capacity(1000);
        for _ in 0..1000 {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            request(addr, b"GET /hello HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("answered within 5 s despite 1000 idle connections");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        drop(idle);
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_head_is_closed_within_seconds() {
        let addr = start().await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut out))
            .await
            .expect("closed well before the old 10 s deadline")
            .expect("read");
        assert!(out.is_empty(), "nothing sent, nothing answered: {out:?}");
        assert!(started.elapsed() >= Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_head_begun_and_not_finished_in_time_gets_408() {
        let addr = start().await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: a")
            .await
            .expect("write");
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(6), s.read_to_string(&mut out))
            .await
            .expect("answered")
            .expect("read");
        assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    }

    #[tokio::test]
    async fn garbage_is_400_and_endless_head_is_431() {
        let addr = start().await;
        let r = request(addr, b"\x00\x01 nonsense\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        let mut big = b"GET /hello HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD + 100 {
            big.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let r = request(addr, &big).await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    }
}
