//! TLS 1.3 early data (RFC 8446 §2.3) between the real `sixpath-client`
//! and `sixpath-server`, in-process on loopback, with a forwarding proxy
//! between them that records each connection's first flight (the
//! `ClientHello` and the early data) and can replay it on a connection of
//! its own, as an attacker on the path would (RFC 8446 §8, §E.5).
//!
//! Replay safety is checked at the origin: every request reaches it once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::support::{PATIENCE, certificate};
use sixpath_client::client::Client;
use sixpath_client::config::Options;
use sixpath_net::tls;
use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server with one TLS listener taking `early` bytes of early data (0:
/// off) and an admin endpoint; short handshake deadline so that a replayed
/// flight waiting for a handshake that never completes ends soon.
fn server(cert: &Path, key: &Path, early: u32) -> (SocketAddr, SocketAddr) {
    let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.listen[0].tls = true;
    let options = tls::ServerTlsOptions {
        max_early_data: early,
        ..tls::ServerTlsOptions::default()
    };
    settings.tls =
        Some(tls::ServerTls::load_with(cert, key, &[tls::ALPN_SIXPATH], &options).unwrap());
    settings.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap()];
    settings.admin = Some("127.0.0.1:0".parse().unwrap());
    settings.handshake_timeout = Duration::from_secs(2);
    let server = Server::bind(settings).unwrap();
    let addrs = (server.local_addrs()[0], server.admin_addr().unwrap());
    tokio::spawn(server.run(std::future::pending()));
    addrs
}

/// The real client towards `server` over TLS pinned to `pin`, with
/// `extra` options applied: its SOCKS5 front-end and admin addresses.
fn client(server: SocketAddr, pin: &[u8; 32], extra: impl FnOnce(&mut Options)) -> SocketAddr {
    let mut options = Options {
        server: Some(server.to_string()),
        listen: vec!["127.0.0.1:0".into()],
        tls: true,
        tls_fingerprint: vec![tls::format_fingerprint(pin)],
        tls_server_name: Some("localhost".into()),
        ..Options::default()
    };
    extra(&mut options);
    let client = Client::bind(options.resolve().unwrap()).unwrap();
    let front = client.local_addrs()[0];
    tokio::spawn(client.run(std::future::pending()));
    front
}

/// An origin that answers every line it reads with `ok <line>` and
/// records the lines.
async fn origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut line = Vec::new();
                let mut b = [0u8; 256];
                while !line.ends_with(b"\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => line.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&line).trim().to_owned();
                log.lock().unwrap().push(text.clone());
                let _ = s.write_all(format!("ok {text}\n").as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, seen)
}

/// What the proxy does with each connection's first flight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Forward only.
    Never,
    /// Send the flight on a second connection of its own first, then
    /// forward the original: the replay reaches the server before it.
    First,
}

/// A TCP proxy to `server` recording each connection's first flight (the
/// client's bytes before the server's first byte); with
/// [`Replay::First`], the flight is also replayed before it is forwarded.
/// Returns its address, the flights, and the replayed connections' ends
/// (true: the server closed it without sending application data the
/// replay could use, i.e. within its handshake deadline).
async fn proxy(server: SocketAddr, mode: Arc<Mutex<Replay>>) -> (SocketAddr, Flights) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let flights: Flights = Arc::default();
    let rec = Arc::clone(&flights);
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let rec = Arc::clone(&rec);
            let mode = *mode.lock().unwrap();
            tokio::spawn(async move {
                let (mut cr, mut cw) = c.into_split();
                // The first flight: what the client writes before it needs
                // an answer (ClientHello and early data go in one write).
                let mut first = vec![0u8; 64 * 1024];
                let n = cr.read(&mut first).await.unwrap_or(0);
                first.truncate(n);
                let replayed = if mode == Replay::First && n > 0 {
                    let mut r = TcpStream::connect(server).await.unwrap();
                    r.write_all(&first).await.unwrap();
                    // The server's first answer (its ServerHello) means it
                    // has processed the replayed ClientHello: the ticket is
                    // taken and the early data in its hands.
                    let mut head = [0u8; 1];
                    let answered = tokio::time::timeout(PATIENCE, r.read(&mut head)).await;
                    assert!(
                        matches!(answered, Ok(Ok(1))),
                        "the server answers the replay"
                    );
                    Some(tokio::spawn(async move {
                        let mut sink = Vec::new();
                        let read = r.read_to_end(&mut sink);
                        tokio::time::timeout(PATIENCE, read).await.is_ok()
                    }))
                } else {
                    None
                };
                rec.lock().unwrap().push((first.clone(), replayed));
                let s = TcpStream::connect(server).await.unwrap();
                let (mut sr, mut sw) = s.into_split();
                sw.write_all(&first).await.unwrap();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
                let _ = up.await;
            });
        }
    });
    (addr, flights)
}

type Flights = Arc<Mutex<Vec<(Vec<u8>, Option<tokio::task::JoinHandle<bool>>)>>>;

/// A SOCKS5 CONNECT through the client's front-end to `target` sending
/// `line`: the reply line, or `None` when the request failed.
async fn request(front: SocketAddr, target: SocketAddr, line: &str) -> Option<String> {
    let go = async {
        let mut s = TcpStream::connect(front).await.ok()?;
        s.write_all(&[5, 1, 0]).await.ok()?;
        let mut hello = [0u8; 2];
        s.read_exact(&mut hello).await.ok()?;
        let SocketAddr::V4(t) = target else {
            return None;
        };
        let mut req = vec![5, 1, 0, 1];
        req.extend_from_slice(&t.ip().octets());
        req.extend_from_slice(&t.port().to_be_bytes());
        s.write_all(&req).await.ok()?;
        // The client may answer at once and send what follows as the
        // request's initial data.
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).await.ok()?;
        if reply[1] != 0 {
            return None;
        }
        s.write_all(format!("{line}\n").as_bytes()).await.ok()?;
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.ok()?;
        let text = String::from_utf8(back).ok()?;
        (!text.is_empty()).then(|| text.trim().to_owned())
    };
    tokio::time::timeout(PATIENCE, go).await.ok().flatten()
}

/// GETs `/metrics` from an admin endpoint.
async fn metrics(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    String::from_utf8(raw).unwrap()
}

fn early_count(metrics: &str, result: &str) -> u64 {
    let name = format!("sixpath_server_tls_early_data_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .parse()
        .unwrap()
}

fn resumed_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("sixpath_server_tls_handshakes_total{kind=\"resumed\"} "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_with_a_token_is_served_before_the_handshake_and_never_twice() {
    let (_dir, cert, key, fp) = certificate("early-token");
    let (server, admin) = server(&cert, &key, 16 * 1024);
    let mode = Arc::new(Mutex::new(Replay::Never));
    let (via, flights) = proxy(server, Arc::clone(&mode)).await;
    let front = client(via, &fp, |_| {});
    let (target, seen) = origin().await;
    // The first connection makes a full handshake and a session with a
    // token window; the later ones resume with early data carrying a
    // token each.
    for i in 0..4 {
        let line = format!("req {i}");
        assert_eq!(
            request(front, target, &line).await,
            Some(format!("ok {line}"))
        );
    }
    let m = metrics(admin).await;
    assert_eq!(resumed_count(&m), 3, "{m}");
    assert_eq!(early_count(&m, "accepted"), 3, "{m}");
    assert_eq!(early_count(&m, "token"), 3, "{m}");

    // A replay reaching the server before the original: whichever of the
    // two is served spends the token; the other is not served.
    *mode.lock().unwrap() = Replay::First;
    let _ = request(front, target, "req replayed").await;
    let replay = flights.lock().unwrap().pop().and_then(|(_, r)| r).unwrap();
    assert!(replay.await.unwrap(), "the replayed connection ends");
    // And a replay of a flight the server has seen (its ticket is spent):
    // not served.
    let old = flights.lock().unwrap()[2].0.clone();
    let mut r = TcpStream::connect(server).await.unwrap();
    r.write_all(&old).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, r.read_to_end(&mut sink)).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = seen.lock().unwrap().clone();
    for i in 0..4 {
        let n = seen.iter().filter(|l| **l == format!("req {i}")).count();
        assert_eq!(n, 1, "req {i} reached the origin {n} times: {seen:?}");
    }
    let n = seen.iter().filter(|l| *l == "req replayed").count();
    assert!(n <= 1, "the replayed request reached the origin {n} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_without_a_token_waits_for_the_handshake_and_a_replay_is_not_served() {
    let (_dir, cert, key, fp) = certificate("early-wait");
    let (server, admin) = server(&cert, &key, 16 * 1024);
    let mode = Arc::new(Mutex::new(Replay::Never));
    let (via, flights) = proxy(server, Arc::clone(&mode)).await;
    // Without sessions there are no tokens.
    let front = client(via, &fp, |o| o.no_sessions = true);
    let (target, seen) = origin().await;
    for i in 0..2 {
        let line = format!("req {i}");
        assert_eq!(
            request(front, target, &line).await,
            Some(format!("ok {line}"))
        );
    }
    let m = metrics(admin).await;
    assert_eq!(early_count(&m, "accepted"), 1, "{m}");
    assert_eq!(early_count(&m, "waited"), 1, "{m}");
    assert_eq!(early_count(&m, "token"), 0, "{m}");
    assert_eq!(early_count(&m, "rejected"), 0, "{m}");

    // The replay reaches the server first and takes the ticket: its early
    // data is accepted but it cannot complete the handshake, so it is
    // closed at the handshake deadline unserved. The original falls back
    // to a full handshake and is served once.
    *mode.lock().unwrap() = Replay::First;
    assert_eq!(
        request(front, target, "req 2").await,
        Some("ok req 2".to_owned())
    );
    let replay = flights.lock().unwrap().pop().and_then(|(_, r)| r).unwrap();
    assert!(replay.await.unwrap(), "the replayed connection is closed");
    let m = metrics(admin).await;
    assert_eq!(
        early_count(&m, "accepted"),
        2,
        "the replay's early data: {m}"
    );
    assert_eq!(early_count(&m, "waited"), 1, "{m}");
    assert_eq!(early_count(&m, "rejected"), 1, "the original's: {m}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["req 0", "req 1", "req 2"], "each request once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_early_data_serves_a_client_that_offers_it() {
    let (_dir, cert, key, fp) = certificate("early-off");
    let (server, admin) = server(&cert, &key, 0);
    let front = client(server, &fp, |_| {});
    let (target, seen) = origin().await;
    for i in 0..3 {
        let line = format!("req {i}");
        assert_eq!(
            request(front, target, &line).await,
            Some(format!("ok {line}"))
        );
    }
    let m = metrics(admin).await;
    assert_eq!(resumed_count(&m), 2, "{m}");
    assert_eq!(early_count(&m, "accepted"), 0, "{m}");
    // Its stateless tickets carry no early-data allowance: never offered.
    assert_eq!(early_count(&m, "rejected"), 0, "{m}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}
