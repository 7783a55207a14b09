//! The admin endpoint's HTTP/1.1 server (stats, metrics, status pages),
//! on hyper: one request per connection, GET and HEAD, and POST where the
//! handler takes it.
//!
//! Each connection gets [`HEAD_DEADLINE`] to send a request head of at most
//! [`MAX_HEAD`] bytes and [`DEADLINE`] in all, then one response with
//! `Connection: close`. The handler maps a [`Request`] (path without its
//! query string) to a [`Response`]; `None` is 404 for GET and HEAD and 405
//! for other methods. A bad head gets 400, an oversized one 431, a POST
//! body over [`MAX_BODY`] bytes 413; a connection whose head is not
//! complete in time is closed without an answer.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once. The listener
//! is always accepted from: when every slot is taken, the oldest connection
//! is dropped to make room for the new one, so idle connections (any local
//! process can open them) cannot keep a monitoring request waiting; each
//! one costs a slot for [`HEAD_DEADLINE`] at most, and a request that is
//! answered at once never ages into the oldest.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
pub use hyper::Method;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// Largest request head read, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body read (a POST's form), in bytes.
pub const MAX_BODY: usize = 16 * 1024;
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

/// A request as the handler sees it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `HEAD`, `POST`, ...
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// The query string (after `?`), empty when none.
    pub query: String,
    headers: hyper::HeaderMap,
    /// The body (empty but for POST).
    pub body: Bytes,
    /// Who sent it.
    pub peer: SocketAddr,
}

impl Request {
    /// The value of header `name` (the first one), if it is there and
    /// visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A request for tests: `method` `path`, `headers`, `body`.
    pub fn new(method: Method, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut map = hyper::HeaderMap::new();
        for (n, v) in headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                map.append(n, v);
            }
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: map,
            body: Bytes::copy_from_slice(body),
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further header fields.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with `body` of type `content_type`.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `status` with a one-line text body.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: format!("{body}\n").into_bytes(),
        }
    }

    /// 200 with a status page asset: [`PAGE_CSP`], no framing, no
    /// referrer, no type sniffing.
    pub fn page(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self::ok(content_type, body)
            .with_header("Content-Security-Policy", PAGE_CSP)
            .with_header("X-Frame-Options", "DENY")
            .with_header("Referrer-Policy", "no-referrer")
            .with_header("X-Content-Type-Options", "nosniff")
    }

    /// This response with header field `name: value` added.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Whether `Host` names this endpoint by address (or `localhost`), not by
/// a name that someone else's DNS could point here (DNS rebinding): pages
/// and APIs for browsers answer only then.
pub fn host_ok(host: Option<&str>) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: not a browser.
        return true;
    };
    if host.parse::<std::net::SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.rsplit_once(':').map_or(
        host,
        |(n, p)| {
            if p.parse::<u16>().is_ok() { n } else { host }
        },
    );
    name.eq_ignore_ascii_case("localhost")
}

/// The Content-Security-Policy of the status pages: their own compiled-in
/// assets only, no framing.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Serves `listener` forever with `handler`.
pub async fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&Request) -> Option<Response> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(false);
    let http = Arc::new(http);
    // The connections being served, oldest first.
    let mut open: VecDeque<AbortHandle> = VecDeque::with_capacity(MAX_CONNECTIONS);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                open.retain(|t| !t.is_finished());
                if open.len() >= MAX_CONNECTIONS
                    && let Some(oldest) = open.pop_front()
                {
                    oldest.abort();
                }
                let handler = Arc::clone(&handler);
                let http = Arc::clone(&http);
                let task = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(answer(req, peer, &*handler).await) }
                    });
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(DEADLINE, conn).await;
                });
                open.push_back(task.abort_handle());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The response to `req`.
async fn answer<H>(
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    handler: &H,
) -> hyper::Response<Full<Bytes>>
where
    H: Fn(&Request) -> Option<Response>,
{
    let (parts, body) = req.into_parts();
    let method = parts.method;
    let resp = if matches!(method, Method::GET | Method::HEAD | Method::POST) {
        let body = if method == Method::POST {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => Ok(b.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(Response::text(413, "request body too large"))
                }
                Err(_) => Err(Response::text(400, "request body incomplete")),
            }
        } else {
            Ok(Bytes::new())
        };
        match body {
            Ok(body) => {
                let request = Request {
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    method: method.clone(),
                    headers: parts.headers,
                    body,
                    peer,
                };
                handler(&request).unwrap_or_else(|| not_handled(&method))
            }
            Err(r) => r,
        }
    } else {
        not_handled(&method)
    };
    to_hyper(resp)
}

fn not_handled(method: &Method) -> Response {
    if matches!(*method, Method::GET | Method::HEAD) {
        Response::text(404, "not found")
    } else {
        Response::text(405, "method not allowed").with_header("Allow", "GET, HEAD")
    }
}

fn to_hyper(resp: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = out.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(resp.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.append(n, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve(l, |req: &Request| {
            match (&req.method, req.path.as_str()) {
                (&Method::GET | &Method::HEAD, "/hello") => Some(Response::ok("text/plain", "hi")),
                (&Method::POST, "/echo") => Some(
                    Response::ok("text/plain", req.body.to_vec())
                        .with_header("X-Token", req.header("x-token").unwrap_or("-")),
                ),
                _ => None,
            }
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

    #[test]
    fn host_must_be_an_address_or_localhost() {
        assert!(host_ok(Some("127.0.0.1:1090")));
        assert!(host_ok(Some("[::1]:1090")));
        assert!(host_ok(Some("localhost:1090")));
        assert!(host_ok(Some("LOCALHOST")));
        assert!(!host_ok(Some("evil.example:1090")));
        assert!(!host_ok(Some("localhost.evil.example")));
    }

    #[tokio::test]
    async fn serves_get_with_connection_close() {
        let addr = start().await;
        let r = request(addr, b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        for field in [
            "content-type: text/plain\r\n",
            "content-length: 2\r\n",
            "cache-control: no-store\r\n",
            "connection: close\r\n",
        ] {
            assert!(r.contains(field), "{field} missing in {r}");
        }
        assert!(r.ends_with("\r\n\r\nhi"), "{r}");
    }

    #[tokio::test]
    async fn head_has_no_body() {
        let addr = start().await;
        let r = request(addr, b"HEAD /hello HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("content-length: 2\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "no body: {r}");
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_post_is_405() {
        let addr = start().await;
        let r = request(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = request(addr, b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nallow: GET, HEAD\r\n"), "{r}");
        let r = request(addr, b"PUT /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    }

    #[tokio::test]
    async fn post_hands_body_and_headers_to_the_handler() {
        let addr = start().await;
        let r = request(
            addr,
            b"POST /echo HTTP/1.1\r\nX-Token: abc\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("x-token: abc\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nhello"), "{r}");
    }

    #[tokio::test]
    async fn oversized_post_body_is_413() {
        let addr = start().await;
        let head = format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let mut raw = head.into_bytes();
        raw.resize(raw.len() + MAX_BODY + 1, b'a');
        let r = request(addr, &raw).await;
        assert!(r.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{r}");
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
    async fn a_head_begun_and_not_finished_in_time_is_closed_within_seconds() {
        let addr = start().await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: a")
            .await
            .expect("write");
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut out))
            .await
            .expect("closed well before the 10 s deadline")
            .expect("read");
        assert!(out.is_empty(), "closed without an answer: {out:?}");
        assert!(started.elapsed() >= Duration::from_millis(500));
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
