//! `--state rediss://…`: the shared store over TLS, with a real
//! `redis-server` serving TLS only (Debian's is built with it) and
//! certificates made here: a private CA (`--state-ca`) and a client
//! certificate the store requires (`--state-cert`, `--state-key`). A token
//! granted by one server is spent on another exactly once; a server that
//! does not trust the store's certificate, or has no client certificate,
//! finds the store unreachable: tokens refused, the rest served, and the
//! reason logged. Without a TLS-capable `redis-server` the tests print
//! `SKIP`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sixpath_protocol::socks6::{AuthReplyType, SocksOption};
use sixpath_server::secret::Secret;
use sixpath_server::store::StoreTls;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::sessions::{auth_reply, noop, op_reply, open_session};
use crate::state::{accepted, key, rejected, spend};
use crate::{Harness, TempDir};

/// A CA: its PEM certificate and the issuer that signs with it.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` signed by this CA: (certificate, key).
    fn sign(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The PEM files of a test, removed on drop.
struct Files(TempDir);

impl Files {
    fn new(tag: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("sixpath-it-state-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Self(TempDir(d))
    }

    fn write(&self, name: &str, pem: &str) -> PathBuf {
        let p = self.0.0.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    }
}

/// A `redis-server` serving only TLS on a loopback port, requiring a
/// client certificate signed by `ca`; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    /// `None` when `redis-server` is missing or cannot serve TLS.
    async fn start(files: &Files, ca: &Ca) -> Option<Self> {
        let (cert, key) = ca.sign(&["127.0.0.1"]);
        let cert = files.write("store.pem", &cert);
        let key = files.write("store.key", &key);
        let ca = files.write("store-ca.pem", &ca.pem());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &path(&cert)])
            .args(["--tls-key-file", &path(&key)])
            .args(["--tls-ca-cert-file", &path(&ca)])
            .args(["--tls-auth-clients", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..250 {
            if child.try_wait().unwrap().is_some() {
                // Exited at once: a build without TLS rejects --tls-port.
                return None;
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(Self { child, port });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on TLS port {port}");
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn server(secret: &Secret, url: &str, tls: StoreTls) -> Harness {
    let (secret, url) = (secret.clone(), url.to_owned());
    Harness::start_custom(None, move |s| {
        s.secret = secret;
        s.state = Some(url);
        s.state_tls = tls;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_token_granted_by_one_instance_is_spent_on_another_exactly_once() {
    let files = Files::new("fleet");
    let ca = Ca::new("store CA");
    let Some(redis) = TlsRedis::start(&files, &ca).await else {
        println!(
            "SKIP over_tls_a_token_granted_by_one_instance_is_spent_on_another_exactly_once: redis-server missing or built without TLS"
        );
        return;
    };
    let (client_cert, client_key) = ca.sign(&["sixpath-server"]);
    let tls = StoreTls {
        ca: Some(ca.pem().into_bytes()),
        client: Some((client_cert.into_bytes(), client_key.into_bytes())),
    };
    let (_dir, secret) = key("tls-fleet");
    let a = server(&secret, &redis.url(), tls.clone()).await;
    let b = server(&secret, &redis.url(), tls.clone()).await;
    let auth = open_session(&a, vec![SocksOption::IdempotenceRequest(8)]).await;
    let window = auth
        .options
        .idempotence_window()
        .expect("window from A, kept in the store over TLS");
    let token = window.base().wrapping_add(3);
    let on_b = spend(b.server, &auth, Some(token), None).await;
    assert!(accepted(&on_b), "B accepts A's token: {on_b:?}");
    let again = spend(a.server, &auth, Some(token), None).await;
    assert!(rejected(&again), "A refuses the replay: {again:?}");
    let on_b = spend(b.server, &auth, Some(token), None).await;
    assert!(rejected(&on_b), "B refuses it too: {on_b:?}");

    // The store requires a client certificate: without one it is
    // unreachable, and that server refuses tokens of a window it cannot see.
    let no_cert = StoreTls {
        ca: tls.ca.clone(),
        client: None,
    };
    let c = server(&secret, &redis.url(), no_cert).await;
    let fresh = window.base().wrapping_add(4);
    let on_c = spend(c.server, &auth, Some(fresh), None).await;
    assert!(rejected(&on_c), "C cannot reach the store: {on_c:?}");
    let on_a = spend(a.server, &auth, Some(fresh), None).await;
    assert!(accepted(&on_a), "C spent nothing: {on_a:?}");
}

/// A `sixpath-server` process whose stderr is collected.
struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
    addr: std::net::SocketAddr,
}

impl Process {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sixpath-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening")
                    && let Some(rest) = line.split("addr=").nth(1)
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut all = keep.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listening")
            .parse()
            .unwrap();
        Self { child, log, addr }
    }

    /// Waits (up to 5 s) for a log line containing every one of `parts`.
    fn wait_for_line(&self, parts: &[&str]) -> String {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some(l) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return l.to_owned();
            }
            assert!(Instant::now() < until, "no line with {parts:?} in:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_certificate_from_another_ca_makes_the_store_unreachable_and_is_logged() {
    let files = Files::new("wrong-ca");
    let ca = Ca::new("store CA");
    let Some(redis) = TlsRedis::start(&files, &ca).await else {
        println!(
            "SKIP a_store_certificate_from_another_ca_makes_the_store_unreachable_and_is_logged: redis-server missing or built without TLS"
        );
        return;
    };
    let other = Ca::new("another CA");
    let wrong = files.write("wrong-ca.pem", &other.pem());
    let (cert, key) = ca.sign(&["sixpath-server"]);
    let cert = files.write("client.pem", &cert);
    let key = files.write("client.key", &key);
    let url = redis.url();
    let s = Process::start(&[
        "--state",
        &url,
        "--state-ca",
        wrong.to_str().unwrap(),
        "--state-cert",
        cert.to_str().unwrap(),
        "--state-key",
        key.to_str().unwrap(),
    ]);

    // A session is served, without a window: the store cannot be reached.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&noop(vec![
        SocksOption::SessionRequest,
        SocksOption::IdempotenceRequest(8),
    ]))
    .await
    .unwrap();
    let (auth, _) = auth_reply(&mut c).await;
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS, "{auth:?}");
    assert_eq!(auth.options.idempotence_window(), None, "{auth:?}");
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, sixpath_protocol::socks6::ReplyCode::SUCCESS);
    drop(c);

    let refused = spend(s.addr, &auth, Some(1), None).await;
    assert!(rejected(&refused), "token refused: {refused:?}");
    let plain = spend(s.addr, &auth, None, None).await;
    assert_eq!(
        plain.reply_type,
        AuthReplyType::SUCCESS,
        "served: {plain:?}"
    );
    let line = s.wait_for_line(&["state store failing", "rediss://127.0.0.1"]);
    println!("logged: {line}");
    assert!(
        line.contains("invalid peer certificate: UnknownIssuer"),
        "the log names the certificate problem: {line}"
    );
}
