//! `--state`: idempotence windows and teardowns in a real `redis-server`
//! (Debian `redis-server`) shared by three servers with one key: a token
//! granted by one is spent on another exactly once, a session torn down on
//! one is invalid on all; a store that is down or hangs gets
//! tokens refused while other requests are served, and a store that comes
//! back is used again. Without `redis-server` the tests print `SKIP`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sixpath_protocol::socks6::{AuthReplyType, AuthenticationReply, SocksOption, Window};
use sixpath_server::secret::Secret;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::admin::raw_get;
use crate::sessions::{auth_reply, noop, open_session};
use crate::{Harness, TempDir};

/// A `redis-server` on a loopback port, without persistence; killed on
/// drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one on `port` (0: a free port from the OS); `None` when
    /// `redis-server` is not installed.
    async fn start(port: u16) -> Option<Self> {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let r = Self { child, port };
        for _ in 0..250 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(r);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key file every server of the test loads.
pub(crate) fn key(tag: &str) -> (TempDir, Secret) {
    let d = std::env::temp_dir().join(format!("sixpath-it-state-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("fleet.key");
    std::fs::write(&path, [0x42; 32]).unwrap();
    let secret = Secret::load(&path).unwrap();
    (TempDir(d), secret)
}

async fn server(secret: &Secret, state: &str) -> Harness {
    let (secret, state) = (secret.clone(), state.to_owned());
    Harness::start_custom(None, move |s| {
        s.secret = secret;
        s.state = Some(state);
        s.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// A NOOP to `server` in session `auth`'s session spending `token` (and asking for
/// a window with `window`): the Authentication Reply.
pub(crate) async fn spend(
    server: SocketAddr,
    auth: &AuthenticationReply,
    token: Option<u32>,
    window: Option<u32>,
) -> AuthenticationReply {
    let mut opts = vec![SocksOption::SessionId(
        auth.options.session_id().unwrap().clone(),
    )];
    opts.extend(token.map(SocksOption::IdempotenceExpenditure));
    opts.extend(window.map(SocksOption::IdempotenceRequest));
    let mut c = TcpStream::connect(server).await.unwrap();
    c.write_all(&noop(opts)).await.unwrap();
    auth_reply(&mut c).await.0
}

pub(crate) fn accepted(a: &AuthenticationReply) -> bool {
    a.reply_type == AuthReplyType::SUCCESS
        && a.options
            .iter()
            .any(|o| matches!(o, SocksOption::IdempotenceAccepted))
}

pub(crate) fn rejected(a: &AuthenticationReply) -> bool {
    a.reply_type == AuthReplyType::FAILURE
        && a.options
            .iter()
            .any(|o| matches!(o, SocksOption::IdempotenceRejected))
}

fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("sixpath_server_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_granted_by_one_instance_is_spent_on_another_exactly_once() {
    let Some(redis) = Redis::start(0).await else {
        println!(
            "SKIP a_token_granted_by_one_instance_is_spent_on_another_exactly_once: redis-server not installed"
        );
        return;
    };
    let (_dir, secret) = key("fleet");
    let a = server(&secret, &redis.url()).await;
    let b = server(&secret, &redis.url()).await;
    let c = server(&secret, &redis.url()).await;
    let auth = open_session(&a, vec![SocksOption::IdempotenceRequest(8)]).await;
    let window: Window = auth.options.idempotence_window().expect("window from A");
    assert_eq!(window.size(), 8);
    let token = window.base().wrapping_add(2);

    let on_b = spend(b.server, &auth, Some(token), None).await;
    assert!(accepted(&on_b), "B accepts A's token: {on_b:?}");
    assert_eq!(on_b.options.idempotence_window(), Some(window));
    let on_c = spend(c.server, &auth, Some(token), None).await;
    assert!(rejected(&on_c), "C refuses the replay: {on_c:?}");
    let on_a = spend(a.server, &auth, Some(token), None).await;
    assert!(rejected(&on_a), "A refuses it too: {on_a:?}");
    // The lowest tokens slide the shared window as in one process.
    let low = spend(c.server, &auth, Some(window.base()), None).await;
    assert!(accepted(&low));
    assert_eq!(
        low.options.idempotence_window(),
        Some(Window::new(window.base().wrapping_add(1), 8).unwrap())
    );

    // Eight spends of one fresh token at once, on three servers: one wins.
    let next = window.base().wrapping_add(5);
    let mut tasks = Vec::new();
    for h in [&a, &b, &c, &a, &b, &c, &a, &b] {
        let (addr, auth) = (h.server, auth.clone());
        tasks.push(tokio::spawn(async move {
            accepted(&spend(addr, &auth, Some(next), None).await)
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(
        wins, 1,
        "exactly one of eight concurrent spends is accepted"
    );
    let page = raw_get(a.admin.unwrap(), "/metrics").await;
    assert!(metric(&page, "state_operation_seconds_count") >= 3);
    assert_eq!(metric(&page, "state_errors_total{kind=\"error\"}"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_torn_down_on_one_instance_is_invalid_on_every_instance() {
    let Some(redis) = Redis::start(0).await else {
        println!(
            "SKIP a_session_torn_down_on_one_instance_is_invalid_on_every_instance: redis-server not installed"
        );
        return;
    };
    let (_dir, secret) = key("teardown");
    let first = server(&secret, &redis.url()).await;
    let second = server(&secret, &redis.url()).await;
    let third = server(&secret, &redis.url()).await;
    let auth = open_session(&first, vec![]).await;
    let id = auth.options.session_id().unwrap().clone();
    // In use on the third (adopted there), then torn down on the second.
    let on_c = spend(third.server, &auth, None, None).await;
    assert_eq!(on_c.reply_type, AuthReplyType::SUCCESS);
    let mut t = TcpStream::connect(second.server).await.unwrap();
    t.write_all(&noop(vec![
        SocksOption::SessionId(id.clone()),
        SocksOption::SessionTeardown,
    ]))
    .await
    .unwrap();
    let _ = crate::read_to_eof(&mut t).await;
    for h in [&first, &third, &second] {
        let r = spend(h.server, &auth, None, None).await;
        assert_eq!(r.reply_type, AuthReplyType::FAILURE, "{}: {r:?}", h.server);
        assert!(
            r.options
                .iter()
                .any(|o| matches!(o, SocksOption::SessionInvalid)),
            "Session Invalid from {}: {r:?}",
            h.server
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_down_tokens_are_refused_the_rest_is_served_and_it_recovers() {
    let Some(redis) = Redis::start(0).await else {
        println!(
            "SKIP with_the_store_down_tokens_are_refused_the_rest_is_served_and_it_recovers: redis-server not installed"
        );
        return;
    };
    let (_dir, secret) = key("down");
    let h = server(&secret, &redis.url()).await;
    let auth = open_session(&h, vec![SocksOption::IdempotenceRequest(8)]).await;
    let window = auth.options.idempotence_window().expect("window");

    let port = redis.stop();
    let down = spend(h.server, &auth, Some(window.base()), None).await;
    assert!(rejected(&down), "fail closed: {down:?}");
    let plain = spend(h.server, &auth, None, None).await;
    assert_eq!(
        plain.reply_type,
        AuthReplyType::SUCCESS,
        "served: {plain:?}"
    );
    let fresh = open_session(&h, vec![]).await;
    assert!(fresh.options.session_id().is_some(), "new sessions served");
    let page = raw_get(h.admin.unwrap(), "/metrics").await;
    assert!(metric(&page, "state_errors_total{kind=\"error\"}") >= 1);

    // Back, empty (no persistence): once the server asks again (after its
    // back-off), a new window is granted and its tokens spent.
    let _redis = Redis::start(port).await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let w = loop {
        let renewed = spend(h.server, &auth, None, Some(8)).await;
        if let Some(w) = renewed.options.idempotence_window() {
            break w;
        }
        assert!(std::time::Instant::now() < until, "recovers: {renewed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let again = spend(h.server, &auth, Some(w.base()), None).await;
    assert!(accepted(&again), "recovered: {again:?}");
}

#[tokio::test]
async fn a_store_that_never_answers_gets_tokens_refused_within_the_deadline() {
    // Accepts and reads, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (_dir, secret) = key("hang");
    let h = server(&secret, &format!("redis://{addr}/0")).await;
    let auth = open_session(&h, vec![SocksOption::IdempotenceRequest(8)]).await;
    assert_eq!(
        auth.options.idempotence_window(),
        None,
        "no window without a store"
    );
    let refused = spend(h.server, &auth, Some(1), None).await;
    assert!(rejected(&refused), "{refused:?}");
    let plain = spend(h.server, &auth, None, None).await;
    assert_eq!(plain.reply_type, AuthReplyType::SUCCESS);
    let page = raw_get(h.admin.unwrap(), "/metrics").await;
    assert!(metric(&page, "state_errors_total{kind=\"timeout\"}") >= 1);
}
