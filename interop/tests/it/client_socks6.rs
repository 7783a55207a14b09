//! `sixpath-client`'s SOCKS6 sessions, idempotence tokens and UDP against
//! the real `sixpath-server`, both in-process on loopback.
//!
//! Sessions and tokens are observed on the wire: a recording TCP relay
//! (the tap) sits between client and server and keeps the first bytes of
//! each connection in both directions, which are decoded as the client's
//! Request and the server's Authentication Reply. The tap can switch to
//! another server, which is how a server restart with another key is made.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::support::{PATIENCE, TempDir, read_msg};
use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use sixpath_client::client::Client;
use sixpath_client::config::{Credentials, Password, Settings as ClientSettings};
use sixpath_protocol::socks6::{
    AuthMethodAdvertisement, AuthReplyType, AuthenticationReply, Command, Method, OperationReply,
    OptionKind, ReplyCode, Request, SessionId, SocksOption,
};
use sixpath_protocol::{Decoded, Endpoint};
use sixpath_server::config::Settings as ServerSettings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::secret::Secret;
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Aborts a background task when the test ends, even on failure.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A users file with user `alice`, password `wonderland`.
fn users_file(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("sixpath-clisocks-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let users = serde_json::json!({"users": [{"username": "alice", "password": "wonderland"}]});
    std::fs::write(d.join("users.json"), users.to_string()).unwrap();
    TempDir(d)
}

/// The real server on loopback (a fresh random key each time), egress to
/// loopback allowed, requiring the users of `users` when given.
fn start_server(users: Option<&TempDir>) -> (SocketAddr, Task) {
    start_server_keyed(users, None)
}

/// [`start_server`] with the key `key` instead of a random one.
fn start_server_keyed(users: Option<&TempDir>, key: Option<&[u8]>) -> (SocketAddr, Task) {
    let mut settings = ServerSettings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap()];
    settings.users = users.map(|d| d.0.join("users.json"));
    if let Some(k) = key {
        settings.secret = Secret::from_bytes(k).unwrap();
    }
    let server = Server::bind(settings).unwrap();
    let addr = server.local_addrs()[0];
    (addr, Task(tokio::spawn(server.run(std::future::pending()))))
}

/// The real client with one mixed front-end on loopback.
fn start_client(server: SocketAddr, tweak: impl FnOnce(&mut ClientSettings)) -> (SocketAddr, Task) {
    let mut settings = ClientSettings::new(server, "127.0.0.1:0".parse().unwrap());
    tweak(&mut settings);
    let client = Client::bind(settings).unwrap();
    let addr = client.local_addrs()[0];
    (addr, Task(tokio::spawn(client.run(std::future::pending()))))
}

fn alice() -> Credentials {
    Credentials {
        username: "alice".into(),
        password: Password(b"wonderland".to_vec()),
    }
}

/// What the tap saw on one connection: the first bytes each way.
#[derive(Debug, Default, Clone)]
struct Seen {
    up: Vec<u8>,
    down: Vec<u8>,
}

/// A recording relay in front of a server that can be switched.
struct Tap {
    addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
    /// The next connection's request is first sent to the server on a
    /// connection of the tap's own (a copy that gets there first).
    replay_next: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
    _task: Task,
}

/// Bytes kept per direction: enough for the handshake.
const KEEP: usize = 4096;

async fn copy_recording(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Seen>>,
    up: bool,
) {
    let mut b = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut b).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut s = seen.lock().unwrap();
            let v = if up { &mut s.up } else { &mut s.down };
            let room = KEEP.saturating_sub(v.len()).min(n);
            v.extend_from_slice(&b[..room]);
        }
        if to.write_all(&b[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Tap {
    async fn start(backend: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let conns: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>> = Arc::default();
        let replay_next = Arc::new(AtomicBool::new(false));
        let (b, c, r) = (
            Arc::clone(&backend),
            Arc::clone(&conns),
            Arc::clone(&replay_next),
        );
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let to = *b.lock().unwrap();
                if r.swap(false, Ordering::SeqCst) {
                    // The copy: the request and its initial data, sent
                    // and answered before the original goes on.
                    let (first, copy) = replay_first(&mut s, to).await;
                    c.lock().unwrap().push(Arc::new(Mutex::new(copy)));
                    let seen = Arc::new(Mutex::new(Seen::default()));
                    c.lock().unwrap().push(Arc::clone(&seen));
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(to).await else {
                            return;
                        };
                        seen.lock().unwrap().up.extend_from_slice(&first);
                        if server.write_all(&first).await.is_err() {
                            return;
                        }
                        let (cr, cw) = s.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(
                            copy_recording(cr, sw, Arc::clone(&seen), true),
                            copy_recording(sr, cw, seen, false),
                        );
                    });
                    continue;
                }
                let seen = Arc::new(Mutex::new(Seen::default()));
                c.lock().unwrap().push(Arc::clone(&seen));
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (cr, cw) = s.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        copy_recording(cr, sw, Arc::clone(&seen), true),
                        copy_recording(sr, cw, seen, false),
                    );
                });
            }
        });
        Self {
            addr,
            backend,
            replay_next,
            conns,
            _task: Task(task),
        }
    }

    fn switch(&self, to: SocketAddr) {
        *self.backend.lock().unwrap() = to;
    }

    /// The Request and Authentication Reply of connection `i`, waiting for
    /// both to be complete.
    async fn exchange(&self, i: usize) -> (Request, Vec<u8>, AuthenticationReply) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let seen = self
                .conns
                .lock()
                .unwrap()
                .get(i)
                .map(|s| s.lock().unwrap().clone());
            if let Some(s) = seen
                && let Ok(Decoded::Complete { msg: req, len }) = Request::decode(&s.up)
                && let Ok(Decoded::Complete { msg: auth, .. }) =
                    AuthenticationReply::decode(&s.down)
            {
                let wire = s.up[..len + req.initial_data_len()].to_vec();
                return (req, wire, auth);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no complete exchange on tap connection {i}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// Reads a whole Request with its initial data from `app`, sends a copy
/// to `server` and reads the Authentication Reply; returns the bytes read
/// and what the copy's connection saw.
async fn replay_first(app: &mut TcpStream, server: SocketAddr) -> (Vec<u8>, Seen) {
    let mut up = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Ok(Decoded::Complete { msg, len }) = Request::decode(&up)
            && up.len() >= len + msg.initial_data_len()
        {
            break;
        }
        let n = tokio::time::timeout(PATIENCE, app.read(&mut b))
            .await
            .expect("request in time")
            .unwrap();
        assert!(n > 0, "the client closed before its request");
        up.extend_from_slice(&b[..n]);
    }
    let mut copy = TcpStream::connect(server).await.unwrap();
    copy.write_all(&up).await.unwrap();
    let mut down = Vec::new();
    let auth = read_msg(&mut copy, &mut down, AuthenticationReply::decode).await;
    let mut wire = Vec::new();
    auth.encode(&mut wire);
    let seen_up = up.clone();
    drop(copy);
    (
        up,
        Seen {
            up: seen_up,
            down: wire,
        },
    )
}

/// An echo server.
async fn echo() -> (SocketAddr, Task) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, Task(task))
}

/// A SOCKS6 application: CONNECT to `target` through the client with
/// `data` as 0-RTT initial data; returns the client's Operation Reply
/// code and the echo of `data`.
async fn socks6_echo(proxy: SocketAddr, target: SocketAddr, data: &[u8]) -> (ReplyCode, Vec<u8>) {
    socks6_echo_to(proxy, Endpoint::from(target), data).await
}

/// [`socks6_echo`] to any endpoint, a domain name included.
async fn socks6_echo_to(proxy: SocketAddr, target: Endpoint, data: &[u8]) -> (ReplyCode, Vec<u8>) {
    let mut req = Request::new(Command::CONNECT, target);
    let idl = u16::try_from(data.len()).unwrap();
    req.options
        .push(SocksOption::AuthMethodAdvertisement(
            AuthMethodAdvertisement::new(idl, []).unwrap(),
        ))
        .unwrap();
    let mut bytes = Vec::new();
    req.encode(&mut bytes);
    bytes.extend_from_slice(data);
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut buf = Vec::new();
    let auth = read_msg(&mut s, &mut buf, AuthenticationReply::decode).await;
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    let op = read_msg(&mut s, &mut buf, OperationReply::decode).await;
    if op.code != ReplyCode::SUCCESS {
        return (op.code, Vec::new());
    }
    while buf.len() < data.len() {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut b))
            .await
            .expect("echo in time")
            .unwrap();
        assert!(n > 0, "closed before the echo");
        buf.extend_from_slice(&b[..n]);
    }
    (op.code, buf)
}

fn has(opts: &sixpath_protocol::socks6::Options, kind: OptionKind) -> bool {
    opts.has(kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_request_carries_the_session_id_instead_of_credentials_and_spends_a_token() {
    let users = users_file("session");
    let (server, _server) = start_server(Some(&users));
    let tap = Tap::start(server).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| s.upstream_credentials = Some(alice()));

    let (code, got) = socks6_echo(proxy, target, b"first").await;
    assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, &b"first"[..]));
    let (req, _, auth) = tap.exchange(0).await;
    assert!(has(&req.options, OptionKind::SESSION_REQUEST), "{req:?}");
    assert_eq!(req.options.idempotence_request(), Some(256));
    assert!(
        req.options.auth_data(Method::USERNAME_PASSWORD).is_some(),
        "the first request authenticates"
    );
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    let id = auth
        .options
        .session_id()
        .expect("the server granted a session")
        .clone();
    let window = auth
        .options
        .idempotence_window()
        .expect("and a token window");

    let (code, got) = socks6_echo(proxy, target, b"second").await;
    assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, &b"second"[..]));
    let (req, wire, auth) = tap.exchange(1).await;
    assert_eq!(req.options.session_id(), Some(&id), "{req:?}");
    assert!(
        req.options.auth_data(Method::USERNAME_PASSWORD).is_none(),
        "no credentials inside the session: {req:?}"
    );
    assert!(!has(&req.options, OptionKind::SESSION_REQUEST));
    assert_eq!(
        req.options.idempotence_expenditure(),
        Some(window.base()),
        "the 0-RTT request spends the lowest token"
    );
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    assert!(has(&auth.options, OptionKind::SESSION_OK), "{auth:?}");
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
        "{auth:?}"
    );

    let (code, _) = socks6_echo(proxy, target, b"third").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    let (req, _, auth) = tap.exchange(2).await;
    assert_eq!(
        req.options.idempotence_expenditure(),
        Some(window.base().wrapping_add(1))
    );
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
        "{auth:?}"
    );
    assert_eq!(
        tap.count(),
        3,
        "one server connection per application connection"
    );

    // The second request replayed as is (a duplicated SYN): the server
    // refuses the spent token and does not perform the CONNECT.
    let mut replay = TcpStream::connect(server).await.unwrap();
    replay.write_all(&wire).await.unwrap();
    let mut buf = Vec::new();
    let auth = read_msg(&mut replay, &mut buf, AuthenticationReply::decode).await;
    assert_eq!(auth.reply_type, AuthReplyType::FAILURE);
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_REJECTED),
        "{auth:?}"
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, replay.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "no Operation Reply after the rejection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_invalid_after_a_server_restart_with_another_key_is_recovered() {
    let users = users_file("restart");
    let (first, first_task) = start_server(Some(&users));
    let tap = Tap::start(first).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| s.upstream_credentials = Some(alice()));
    for data in [&b"one"[..], b"two"] {
        let (code, got) = socks6_echo(proxy, target, data).await;
        assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, data));
    }
    let old = tap
        .exchange(0)
        .await
        .2
        .options
        .session_id()
        .cloned()
        .unwrap();
    assert_eq!(tap.exchange(1).await.0.options.session_id(), Some(&old));

    // "Restart": another server process, another random key.
    let (second, _second_task) = start_server(Some(&users));
    tap.switch(second);
    drop(first_task);
    let (code, got) = socks6_echo(proxy, target, b"three").await;
    assert_eq!(
        (code, got.as_slice()),
        (ReplyCode::SUCCESS, &b"three"[..]),
        "the application does not see the invalid session"
    );
    let (req, _, auth) = tap.exchange(2).await;
    assert_eq!(req.options.session_id(), Some(&old));
    assert_eq!(auth.reply_type, AuthReplyType::FAILURE);
    assert!(has(&auth.options, OptionKind::SESSION_INVALID), "{auth:?}");
    let (req, _, auth) = tap.exchange(3).await;
    assert!(req.options.session_id().is_none(), "{req:?}");
    assert!(has(&req.options, OptionKind::SESSION_REQUEST));
    assert!(req.options.auth_data(Method::USERNAME_PASSWORD).is_some());
    let new = auth.options.session_id().cloned().expect("a new session");
    assert_ne!(new, old);

    let (code, _) = socks6_echo(proxy, target, b"four").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    let (req, _, auth) = tap.exchange(4).await;
    assert_eq!(req.options.session_id(), Some(&new));
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
        "{auth:?}"
    );
    assert_eq!(tap.count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refused_by_a_restarted_server_with_the_same_key_gets_a_new_window_and_one_retry() {
    let users = users_file("samekey");
    let key = [0x5a_u8; 32];
    let (first, first_task) = start_server_keyed(Some(&users), Some(&key));
    let tap = Tap::start(first).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| s.upstream_credentials = Some(alice()));
    let (code, _) = socks6_echo(proxy, target, b"one").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    let id = tap
        .exchange(0)
        .await
        .2
        .options
        .session_id()
        .cloned()
        .unwrap();

    // Same key: the session survives (adopted), its token window does not.
    let (second, _second_task) = start_server_keyed(Some(&users), Some(&key));
    tap.switch(second);
    drop(first_task);
    let (code, got) = socks6_echo(proxy, target, b"two").await;
    assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, &b"two"[..]));
    let (req, _, auth) = tap.exchange(1).await;
    assert_eq!(req.options.session_id(), Some(&id));
    assert!(req.options.idempotence_expenditure().is_some());
    assert_eq!(auth.reply_type, AuthReplyType::FAILURE);
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_REJECTED),
        "{auth:?}"
    );
    assert!(auth.options.idempotence_window().is_none(), "{auth:?}");
    // The retry: same session, no token, a new window asked for.
    let (req, _, auth) = tap.exchange(2).await;
    assert_eq!(req.options.session_id(), Some(&id));
    assert_eq!(req.options.idempotence_expenditure(), None);
    assert_eq!(req.options.idempotence_request(), Some(256));
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    let window = auth.options.idempotence_window().expect("a new window");

    let (code, _) = socks6_echo(proxy, target, b"three").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    let (req, _, auth) = tap.exchange(3).await;
    assert_eq!(req.options.idempotence_expenditure(), Some(window.base()));
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
        "{auth:?}"
    );
    assert_eq!(tap.count(), 4, "exactly one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_whose_copy_got_there_first_fails_not_allowed_without_a_retry() {
    let users = users_file("replay");
    let (server, _server) = start_server(Some(&users));
    let tap = Tap::start(server).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| s.upstream_credentials = Some(alice()));
    let (code, _) = socks6_echo(proxy, target, b"one").await;
    assert_eq!(code, ReplyCode::SUCCESS);

    tap.replay_next.store(true, Ordering::SeqCst);
    let (code, got) = socks6_echo(proxy, target, b"two").await;
    assert_eq!(
        (code, got.as_slice()),
        (ReplyCode::CONNECTION_NOT_ALLOWED, &b""[..]),
        "the application is told its request was refused"
    );
    // The copy spent the token and was performed once.
    let (copy, _, auth) = tap.exchange(1).await;
    let token = copy.options.idempotence_expenditure().expect("a token");
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
        "{auth:?}"
    );
    // The original was refused, and not sent again.
    let (req, _, auth) = tap.exchange(2).await;
    assert_eq!(req.options.idempotence_expenditure(), Some(token));
    assert_eq!(auth.reply_type, AuthReplyType::FAILURE);
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_REJECTED),
        "{auth:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tap.count(), 3, "no retry of a replayed request");

    // The session goes on with the next token.
    let (code, _) = socks6_echo(proxy, target, b"three").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    let (req, _, auth) = tap.exchange(3).await;
    assert_eq!(
        req.options.idempotence_expenditure(),
        Some(token.wrapping_add(1))
    );
    assert!(
        has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
        "{auth:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_0rtt_requests_in_a_session_spend_distinct_tokens_all_accepted() {
    let users = users_file("tokens");
    let (server, _server) = start_server(Some(&users));
    let tap = Tap::start(server).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| s.upstream_credentials = Some(alice()));
    let (code, _) = socks6_echo(proxy, target, b"first").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    let apps: Vec<_> = (0..16)
        .map(|i| {
            tokio::spawn(
                async move { socks6_echo(proxy, target, format!("app {i}").as_bytes()).await },
            )
        })
        .collect();
    for (i, a) in apps.into_iter().enumerate() {
        let (code, got) = a.await.unwrap();
        assert_eq!(code, ReplyCode::SUCCESS);
        assert_eq!(got, format!("app {i}").as_bytes());
    }
    assert_eq!(tap.count(), 17, "no retries");
    let mut tokens = Vec::new();
    for i in 1..17 {
        let (req, _, auth) = tap.exchange(i).await;
        tokens.push(req.options.idempotence_expenditure().expect("a token"));
        assert!(
            has(&auth.options, OptionKind::IDEMPOTENCE_ACCEPTED),
            "{auth:?}"
        );
    }
    let base = tap
        .exchange(0)
        .await
        .2
        .options
        .idempotence_window()
        .unwrap()
        .base();
    tokens.sort_unstable_by_key(|t| t.wrapping_sub(base));
    let expected: Vec<u32> = (0..16).map(|k| base.wrapping_add(k)).collect();
    assert_eq!(tokens, expected, "the 16 lowest tokens, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sessions_sends_credentials_every_time_and_no_session_options() {
    let users = users_file("nosessions");
    let (server, _server) = start_server(Some(&users));
    let tap = Tap::start(server).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| {
        s.upstream_credentials = Some(alice());
        s.sessions = false;
    });
    for i in 0..2 {
        let (code, _) = socks6_echo(proxy, target, b"x").await;
        assert_eq!(code, ReplyCode::SUCCESS);
        let (req, _, _) = tap.exchange(i).await;
        assert!(req.options.auth_data(Method::USERNAME_PASSWORD).is_some());
        for kind in [
            OptionKind::SESSION_REQUEST,
            OptionKind::SESSION_ID,
            OptionKind::IDEMPOTENCE_REQUEST,
            OptionKind::IDEMPOTENCE_EXPENDITURE,
        ] {
            assert!(!has(&req.options, kind), "{kind:?} in {req:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_create_one_session() {
    let users = users_file("concurrent");
    let (server, _server) = start_server(Some(&users));
    let tap = Tap::start(server).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |s| s.upstream_credentials = Some(alice()));
    let apps: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(
                async move { socks6_echo(proxy, target, format!("app {i}").as_bytes()).await },
            )
        })
        .collect();
    for a in apps {
        assert_eq!(a.await.unwrap().0, ReplyCode::SUCCESS);
    }
    let mut requests = 0;
    for i in 0..tap.count() {
        if has(
            &tap.exchange(i).await.0.options,
            OptionKind::SESSION_REQUEST,
        ) {
            requests += 1;
        }
    }
    assert_eq!(requests, 1, "exactly one Session Request");
}

/// The real server with users `users` on `addr` exactly (a restart on the
/// same address, with a fresh random key as without `--secret-file`),
/// trying until the old listener is gone.
async fn restart_server_on(addr: SocketAddr, users: &TempDir) -> Task {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut settings = ServerSettings::for_listeners(&[addr]);
        settings.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap()];
        settings.users = Some(users.0.join("users.json"));
        match Server::bind(settings) {
            Ok(server) => return Task(tokio::spawn(server.run(std::future::pending()))),
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot listen on {addr} again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_without_a_secret_file_on_the_same_address_leaves_no_client_stuck() {
    let users = users_file("same-address");
    let (server, first) = start_server(Some(&users));
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(server, |s| s.upstream_credentials = Some(alice()));
    for data in [&b"before one"[..], b"before two"] {
        let (code, got) = socks6_echo(proxy, target, data).await;
        assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, data));
    }
    // Stopped and started again: its key, sessions and windows are new.
    drop(first);
    let _second = restart_server_on(server, &users).await;
    for data in [&b"after one"[..], b"after two", b"after three"] {
        let (code, got) = socks6_echo(proxy, target, data).await;
        assert_eq!(
            (code, got.as_slice()),
            (ReplyCode::SUCCESS, data),
            "after the restart"
        );
    }
    // SOCKS5 applications too, answered early again.
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut sel = [0u8; 2];
        s.read_exact(&mut sel).await.unwrap();
        let mut req = Vec::new();
        sixpath_protocol::socks5::Request::new(
            sixpath_protocol::socks5::Command::CONNECT,
            Endpoint::from(target),
        )
        .encode(&mut req);
        s.write_all(&req).await.unwrap();
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[1], 0, "SOCKS5 success");
        s.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        tokio::time::timeout(PATIENCE, s.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(&got, b"ping");
    }
}

/// A SOCKS6 server that grants Session IDs but keeps none: a request
/// carrying a Session ID gets a bare failed Authentication Reply (no
/// Session Invalid), everything else is served as an echo. Records every
/// Request.
async fn forgetful_server() -> (SocketAddr, Arc<Mutex<Vec<Request>>>, Task) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
    let log = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut serial = 0u32;
        while let Ok((mut s, _)) = l.accept().await {
            serial += 1;
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let req = read_msg(&mut s, &mut buf, Request::decode).await;
                while buf.len() < req.initial_data_len() {
                    let mut b = [0u8; 4096];
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0);
                    buf.extend_from_slice(&b[..n]);
                }
                log.lock().unwrap().push(req.clone());
                let mut out = Vec::new();
                if req.options.session_id().is_some() {
                    AuthenticationReply::new(AuthReplyType::FAILURE).encode(&mut out);
                    s.write_all(&out).await.unwrap();
                    let _ = s.shutdown().await;
                    return;
                }
                let mut auth = AuthenticationReply::new(AuthReplyType::SUCCESS);
                if has(&req.options, OptionKind::SESSION_REQUEST) {
                    let mut id = serial.to_be_bytes().to_vec();
                    id.extend_from_slice(&[0x5e; 4]);
                    auth.options
                        .push(SocksOption::SessionId(SessionId::new(id).unwrap()))
                        .unwrap();
                }
                auth.encode(&mut out);
                OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified()).encode(&mut out);
                out.extend_from_slice(&buf);
                s.write_all(&out).await.unwrap();
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, seen, Task(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_the_server_forgot_without_session_invalid_is_dropped_and_not_asked_for_again() {
    let (server, seen, _server) = forgetful_server().await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(server, |s| s.upstream_credentials = Some(alice()));
    for data in [&b"one"[..], b"two", b"three", b"four"] {
        let (code, got) = socks6_echo(proxy, target, data).await;
        assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, data));
    }
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 5, "one retry in all: {reqs:#?}");
    assert!(has(&reqs[0].options, OptionKind::SESSION_REQUEST));
    assert!(
        reqs[1].options.session_id().is_some(),
        "the granted ID is used"
    );
    for (i, r) in reqs.iter().enumerate().skip(2) {
        assert!(r.options.session_id().is_none(), "request {i}: {r:?}");
        assert!(
            !has(&r.options, OptionKind::SESSION_REQUEST),
            "request {i} asks for no session for a while: {r:?}"
        );
        assert!(
            r.options.auth_data(Method::USERNAME_PASSWORD).is_some(),
            "request {i} carries the credentials"
        );
    }
}

/// A SOCKS6 server that reads domain names the libsocks6msg way: the
/// length byte counts the name only, so a name with NULs counted in (the
/// counted style) is malformed and rejected as sixpath-server rejects a bad
/// address (failed Authentication Reply, Operation Reply 0x01, close).
/// Accepted requests are served as an echo. Records each Request's raw
/// bytes.
async fn libsocks6msg_server() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>, Task) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let log = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                // Our own (tolerant) decoder finds the end of the Request.
                let len = loop {
                    if let Ok(Decoded::Complete { msg, len }) = Request::decode(&buf)
                        && buf.len() >= len + msg.initial_data_len()
                    {
                        break len;
                    }
                    let mut b = [0u8; 4096];
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0, "closed before the request");
                    buf.extend_from_slice(&b[..n]);
                };
                log.lock().unwrap().push(buf[..len].to_vec());
                // Version, command, options length, port, padding, ATYP.
                let counted_nul = buf[7] == 3 && {
                    let l = usize::from(buf[8]);
                    buf[9..9 + l].contains(&0)
                };
                let mut out = Vec::new();
                if counted_nul {
                    AuthenticationReply::new(AuthReplyType::FAILURE).encode(&mut out);
                    OperationReply::new(ReplyCode::GENERAL_FAILURE, Endpoint::unspecified())
                        .encode(&mut out);
                    s.write_all(&out).await.unwrap();
                    let _ = s.shutdown().await;
                    return;
                }
                AuthenticationReply::new(AuthReplyType::SUCCESS).encode(&mut out);
                OperationReply::new(ReplyCode::SUCCESS, Endpoint::unspecified()).encode(&mut out);
                out.extend_from_slice(&buf[len..]);
                s.write_all(&out).await.unwrap();
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, seen, Task(task))
}

/// The domain-name length byte of a raw Request.
fn domain_length_byte(raw: &[u8]) -> u8 {
    assert_eq!(raw[7], 3, "a domain name: {raw:02x?}");
    raw[8]
}

fn name(n: &str, port: u16) -> Endpoint {
    Endpoint::new(
        sixpath_protocol::Address::Domain(sixpath_protocol::DomainName::new(n).unwrap()),
        port,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_padding_switches_to_uncounted_when_the_server_rejects_counted_names() {
    let (server, seen, _server) = libsocks6msg_server().await;
    let (proxy, _client) = start_client(server, |_| {});
    // "a.com": 5 bytes, 2 of padding; counted the length byte says 7.
    for data in [&b"one"[..], b"two"] {
        let (code, got) = socks6_echo_to(proxy, name("a.com", 80), data).await;
        assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, data));
    }
    let reqs = seen.lock().unwrap().clone();
    let lengths: Vec<u8> = reqs.iter().map(|r| domain_length_byte(r)).collect();
    assert_eq!(
        lengths,
        [7, 5, 5],
        "counted, retried uncounted, then uncounted from the start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_padding_given_on_the_command_line_is_used_from_the_first_request() {
    use sixpath_client::config::DomainPadding;
    let (server, seen, _server) = libsocks6msg_server().await;
    let (proxy, _client) = start_client(server, |s| s.domain_padding = DomainPadding::Uncounted);
    let (code, _) = socks6_echo_to(proxy, name("a.com", 80), b"x").await;
    assert_eq!(code, ReplyCode::SUCCESS);
    assert_eq!(domain_length_byte(&seen.lock().unwrap()[0]), 5);

    let (server, seen, _server2) = libsocks6msg_server().await;
    let (proxy, _client2) = start_client(server, |s| s.domain_padding = DomainPadding::Counted);
    let (code, _) = socks6_echo_to(proxy, name("a.com", 80), b"x").await;
    assert_eq!(
        code,
        ReplyCode::GENERAL_FAILURE,
        "counted, as told: refused"
    );
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1, "no switch when the style is given");
    assert_eq!(domain_length_byte(&reqs[0]), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixpath_server_keeps_counted_domain_padding() {
    let (server, _server) = start_server(None);
    let tap = Tap::start(server).await;
    let (target, _echo) = echo().await;
    let (proxy, _client) = start_client(tap.addr, |_| {});
    // A name the server resolves: its own host name is not needed, the
    // loopback literal written as a name is an address (no DNS).
    let (code, got) = socks6_echo_to(proxy, name("127.0.0.1", target.port()), b"hi").await;
    assert_eq!((code, got.as_slice()), (ReplyCode::SUCCESS, &b"hi"[..]));
    let (_, wire, _) = tap.exchange(0).await;
    assert_eq!(
        domain_length_byte(&wire),
        11,
        "\"127.0.0.1\" and 2 NULs, counted"
    );
    assert_eq!(tap.count(), 1);
}

// --- UDP ---------------------------------------------------------------

/// A UDP echo server that also records what it received.
struct UdpEcho {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    _task: Task,
}

impl UdpEcho {
    async fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                log.lock().unwrap().push(buf[..n].to_vec());
                let _ = sock.send_to(&buf[..n], from).await;
            }
        });
        Self {
            addr,
            seen,
            _task: Task(task),
        }
    }

    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

/// RSV FRAG ATYP=1 ADDR PORT DATA.
fn socks5_datagram(frag: u8, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(a) = to else {
        panic!("IPv4 expected")
    };
    let mut d = vec![0, 0, frag, 1];
    d.extend(a.ip().octets());
    d.extend(a.port().to_be_bytes());
    d.extend(payload);
    d
}

async fn recv_timeout(s: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, s.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// A SOCKS5 UDP ASSOCIATE through the client declaring `port` as the
/// application's source port; returns the control connection and the
/// relay address of the reply.
async fn socks5_associate(proxy: SocketAddr, port: u16) -> (TcpStream, SocketAddr) {
    let mut c = TcpStream::connect(proxy).await.unwrap();
    let mut req = vec![5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0];
    req.extend(port.to_be_bytes());
    c.write_all(&req).await.unwrap();
    let mut reply = [0u8; 12];
    tokio::time::timeout(PATIENCE, c.read_exact(&mut reply))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(
        reply[..10],
        [5, 0, 5, 0, 0, 1, 127, 0, 0, 1],
        "relay on loopback"
    );
    let relay = u16::from_be_bytes([reply[10], reply[11]]);
    assert_ne!(relay, 0);
    (c, SocketAddr::from(([127, 0, 0, 1], relay)))
}

/// A DNS server on loopback answering every A query with 198.18.0.7.
async fn dns_server() -> (SocketAddr, Task) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            for query in &q.queries {
                r.add_query(query.clone());
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A::new(198, 18, 0, 7)),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    (addr, Task(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_query_through_the_clients_udp_associate_gets_the_answer() {
    let users = users_file("dns");
    let (server, _server) = start_server(Some(&users));
    let (dns, _dns) = dns_server().await;
    let (proxy, _client) = start_client(server, |s| s.upstream_credentials = Some(alice()));
    let (_c, relay) = socks5_associate(proxy, 0).await;
    let app = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::A,
    ));
    let wire = query.to_vec().unwrap();
    app.send_to(&socks5_datagram(0, dns, &wire), relay)
        .await
        .unwrap();
    let (got, from) = recv_timeout(&app, PATIENCE).await.expect("DNS answer");
    assert_eq!(from, relay);
    let header = socks5_datagram(0, dns, b"");
    assert_eq!(
        got[..header.len()],
        header[..],
        "SOCKS5 header naming the DNS server"
    );
    let answer = Message::from_vec(&got[header.len()..]).unwrap();
    assert_eq!(answer.metadata.id, query.metadata.id);
    let ips: Vec<_> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(ips, [Ipv4Addr::new(198, 18, 0, 7)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_domain_destinations_pass_through_and_fragments_are_dropped() {
    let (server, _server) = start_server(None);
    let echo = UdpEcho::start().await;
    let (proxy, _client) = start_client(server, |_| {});
    let (_c, relay) = socks5_associate(proxy, 0).await;
    let app = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    app.send_to(&socks5_datagram(1, echo.addr, b"fragment"), relay)
        .await
        .unwrap();
    let mut d = vec![0, 0, 0, 3, 9];
    d.extend(b"localhost");
    d.extend(echo.addr.port().to_be_bytes());
    d.extend(b"by name");
    app.send_to(&d, relay).await.unwrap();
    let (got, _) = recv_timeout(&app, PATIENCE).await.expect("reply");
    // The server resolved the name; the answer names the source by
    // address.
    assert_eq!(got, socks5_datagram(0, echo.addr, b"by name"));
    assert_eq!(echo.seen(), [b"by name".to_vec()], "FRAG 1 was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_from_other_sources_are_ignored() {
    let (server, _server) = start_server(None);
    let echo = UdpEcho::start().await;
    let (proxy, _client) = start_client(server, |_| {});
    let app = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = app.local_addr().unwrap().port();
    let (_c, relay) = socks5_associate(proxy, port).await;
    let same_ip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other_ip = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    same_ip
        .send_to(&socks5_datagram(0, echo.addr, b"other port"), relay)
        .await
        .unwrap();
    other_ip
        .send_to(&socks5_datagram(0, echo.addr, b"other ip"), relay)
        .await
        .unwrap();
    app.send_to(&socks5_datagram(0, echo.addr, b"app"), relay)
        .await
        .unwrap();
    let (got, _) = recv_timeout(&app, PATIENCE).await.expect("reply");
    assert_eq!(got, socks5_datagram(0, echo.addr, b"app"));
    // Datagrams are relayed in order over the one TCP stream: had the
    // others been taken, the echo would have seen them first.
    assert_eq!(
        echo.seen(),
        [b"app".to_vec()],
        "only the application's datagram"
    );
    assert!(
        recv_timeout(&same_ip, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(
        recv_timeout(&other_ip, Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_association_ends_when_the_control_connection_closes() {
    let (server, _server) = start_server(None);
    let echo = UdpEcho::start().await;
    let (proxy, _client) = start_client(server, |_| {});
    let (c, relay) = socks5_associate(proxy, 0).await;
    let app = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    app.connect(relay).await.unwrap();
    app.send(&socks5_datagram(0, echo.addr, b"before"))
        .await
        .unwrap();
    assert!(recv_timeout(&app, PATIENCE).await.is_some());
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The relay socket is closed: datagrams to it draw ICMP port
    // unreachable, reported on the connected socket as ECONNREFUSED.
    let mut refused = false;
    for _ in 0..100 {
        let _ = app.send(&socks5_datagram(0, echo.addr, b"after")).await;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), app.recv(&mut buf)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            Ok(Ok(_)) => panic!("the association still relays"),
            _ => {}
        }
    }
    assert!(refused, "relay port still open");
    assert!(!echo.seen().contains(&b"after".to_vec()));
}
