//! The client's operations surface through the real binary: the admin
//! endpoint and `sixpath-client status`, a TLS server with the wrong
//! fingerprint, `--path` endpoints installed in a network namespace,
//! carrying bytes per interface, and removed on SIGTERM, and the reset of
//! connections still open at the end of SIGTERM's drain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sixpath_net::tls;
use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::{self, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_sixpath-client");
/// Generous bound for anything here, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);
/// Bytes downloaded over the two paths.
const LEN: usize = 8 << 20;

/// A loopback port nothing listens on (now).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sixpath-client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running client process; killed on drop if still running.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Self(Some(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    }

    /// SIGTERM, then the exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.0.take().unwrap();
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("client did not exit within {PATIENCE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A deterministic body of `len` bytes.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// The real server (and an HTTP origin serving `len` bytes) on a thread of
/// their own, inside namespace `ns` when given; stops on drop.
struct Upstream {
    server: SocketAddr,
    origin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(
        ns: Option<&str>,
        ip: &str,
        len: usize,
        tls_files: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        Self::start_with_users(ns, ip, len, tls_files, None)
    }

    /// [`Upstream::start`] with a server that requires the users of the
    /// users file `users`.
    fn start_with_users(
        ns: Option<&str>,
        ip: &str,
        len: usize,
        tls_files: Option<(PathBuf, PathBuf)>,
        users: Option<PathBuf>,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let work = move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let origin = origin(SocketAddr::new(ip, 0), body(len)).await;
                let mut settings = Settings::for_listeners(&[SocketAddr::new(ip, 0)]);
                settings.egress_rules = vec![
                    EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap(),
                    EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap(),
                ];
                settings.users = users;
                if let Some((cert, key)) = tls_files {
                    settings.listen[0].tls = true;
                    settings.tls =
                        Some(tls::ServerTls::load(&cert, &key, &[tls::ALPN_SIXPATH]).unwrap());
                }
                let server = Server::bind(settings).unwrap();
                let addr = server.local_addrs()[0];
                tokio::spawn(server.run(std::future::pending()));
                tx.send((addr, origin)).unwrap();
                let _ = stopped.await;
            });
        };
        let thread = match ns {
            Some(name) => netns::spawn_in(name, work),
            None => std::thread::spawn(work),
        };
        let (server, origin) = rx.recv_timeout(PATIENCE).unwrap();
        Self {
            server,
            origin,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP/1.1 origin answering any request with `body`, then closing.
async fn origin(bind: SocketAddr, body: Vec<u8>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let hdr = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(hdr.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// `sixpath-client status ARGS` (inside `ns` when given).
fn status(ns: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = match ns {
        Some(name) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", name, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.arg("status").args(args).output().unwrap()
}

/// Waits until the client's admin endpoint answers `status`.
fn wait_for_admin(ns: Option<&str>, admin: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = status(ns, &["--admin", admin, "--json"]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "admin endpoint never answered: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats_json(ns: Option<&str>, admin: &str) -> serde_json::Value {
    let out = status(ns, &["--admin", admin, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn status_without_a_running_client_exits_1_saying_so() {
    let admin = format!("127.0.0.1:{}", free_port());
    let out = status(None, &["--admin", &admin]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no sixpath-client admin endpoint at"), "{err}");
    let out = status(None, &["--admin", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin"));
}

#[test]
fn wrong_tls_fingerprint_answers_socks5_general_failure_logs_why_and_status_counts_it() {
    let dir = TempDir::new("tlsfp");
    let (cert, key, fp) = tls::generate_self_signed(&["localhost".to_owned()]).unwrap();
    let (c, k) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    let up = Upstream::start(None, "127.0.0.1", 100, Some((c, k)));
    let mut wrong = fp;
    wrong[0] ^= 0xff;
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let client = Proc::spawn(Command::new(BIN).args([
        "--server",
        &up.server.to_string(),
        "--tls",
        "--tls-fingerprint",
        &tls::format_fingerprint(&wrong),
        "--tls-server-name",
        "localhost",
        "--listen",
        &listen,
        "--admin",
        &admin,
    ]));
    wait_for_admin(None, &admin);

    let mut s = TcpStream::connect(&listen).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0]);
    let SocketAddr::V4(o) = up.origin else {
        panic!("v4 origin")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&o.ip().octets());
    req.extend_from_slice(&o.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..2], [5, 0x01], "SOCKS5 general failure");
    drop(s);
    let deadline = Instant::now() + PATIENCE;
    while stats_json(None, &admin)["connections_open"] != 0 {
        assert!(Instant::now() < deadline, "connection never ended");
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = status(None, &["--admin", &admin]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 accepted"), "{text}");
    assert!(text.contains("errors: tls 1"), "{text}");
    assert!(text.contains("paths: none configured"), "{text}");
    let json = stats_json(None, &admin);
    assert_eq!(json["errors"]["tls"], 1);
    assert_eq!(json["protocols"]["socks5"]["total"], 1);
    assert_eq!(json["connections_open"], 0);

    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    assert!(err.contains("TLS with server"), "{err}");
    assert!(err.contains("handshake failed"), "{err}");
}

#[test]
fn later_tls_connections_to_the_server_resume_and_stats_and_log_say_so() {
    let dir = TempDir::new("tlsresume");
    let (cert, key, fp) = tls::generate_self_signed(&["localhost".to_owned()]).unwrap();
    let (c, k) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    let up = Upstream::start(None, "127.0.0.1", 100, Some((c, k)));
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let client = Proc::spawn(Command::new(BIN).args([
        "--server",
        &up.server.to_string(),
        "--tls",
        "--tls-fingerprint",
        &tls::format_fingerprint(&fp),
        "--listen",
        &listen,
        "--admin",
        &admin,
    ]));
    wait_for_admin(None, &admin);
    for _ in 0..3 {
        let (code, mut s) = socks5_connect(&listen, up.origin);
        assert_eq!(code, 0, "SOCKS5 succeeded");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(&body(100)), "the whole body");
    }
    wait_idle(&admin);
    let json = stats_json(None, &admin);
    assert_eq!(json["tls_handshakes"]["full"], 1, "{json}");
    assert_eq!(json["tls_handshakes"]["resumed"], 2, "{json}");
    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    assert_eq!(err.matches("tls=\"full\"").count(), 1, "{err}");
    assert_eq!(err.matches("tls=\"resumed\"").count(), 2, "{err}");
}

/// A SOCKS5 CONNECT to `target` through `listen`: the reply code and the
/// stream.
fn socks5_connect(listen: &str, target: SocketAddr) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0]);
    let SocketAddr::V4(t) = target else {
        panic!("v4 target")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    (reply[1], s)
}

/// Waits until the client has no connection open.
fn wait_idle(admin: &str) {
    let deadline = Instant::now() + PATIENCE;
    while stats_json(None, admin)["connections_open"] != 0 {
        assert!(Instant::now() < deadline, "connections never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn failure_after_an_early_reply_is_logged_at_warn_and_listed_in_stats_and_status() {
    let up = Upstream::start(None, "127.0.0.1", 100, None);
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let client = Proc::spawn(Command::new(BIN).args([
        "--server",
        &up.server.to_string(),
        "--listen",
        &listen,
        "--admin",
        &admin,
    ]));
    wait_for_admin(None, &admin);

    // A success first: early replies start.
    let (code, mut s) = socks5_connect(&listen, up.origin);
    assert_eq!(code, 0);
    s.write_all(b"GET / HTTP/1.1\r\nHost: o\r\n\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got.ends_with(&body(100)));
    drop(s);

    // Told "connected" at once, then reset: the target's port is closed.
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (code, mut s) = socks5_connect(&listen, closed);
    assert_eq!(code, 0, "early success");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    drop(s);
    wait_idle(&admin);

    let json = stats_json(None, &admin);
    let failures = json["recent_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{json}");
    let f = &failures[0];
    assert_eq!(f["target"], closed.to_string());
    assert_eq!(f["protocol"], "socks5");
    assert_eq!(f["class"], "refused");
    assert_eq!(f["early"], true);
    assert!(
        f["cause"].as_str().unwrap().contains("CONNECTION_REFUSED"),
        "{f}"
    );
    assert!(f["unix_ms"].as_u64().unwrap() > 0);
    let out = status(None, &["--admin", &admin]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("recent failures (newest first):"), "{text}");
    assert!(
        text.lines().any(|l| l.contains(&closed.to_string())
            && l.contains("after early reply: server replied CONNECTION_REFUSED")),
        "{text}"
    );

    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    let warned = err
        .lines()
        .find(|l| l.contains("connection failed after an early reply"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(warned.contains("WARN"), "{warned}");
    assert!(warned.contains(&closed.to_string()), "{warned}");
    assert!(warned.contains("CONNECTION_REFUSED"), "{warned}");
}

#[test]
fn refused_credentials_are_logged_as_authentication_refused_not_server_unreachable() {
    let dir = TempDir::new("authrefused");
    let users = dir.0.join("users.json");
    std::fs::write(
        &users,
        r#"{"users": [{"username": "alice", "password": "wonderland"}]}"#,
    )
    .unwrap();
    let password = dir.0.join("password");
    std::fs::write(&password, "not wonderland\n").unwrap();
    let up = Upstream::start_with_users(None, "127.0.0.1", 100, None, Some(users));
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let client = Proc::spawn(Command::new(BIN).args([
        "--server",
        &up.server.to_string(),
        "--user",
        "alice",
        "--password-file",
        password.to_str().unwrap(),
        "--listen",
        &listen,
        "--admin",
        &admin,
    ]));
    wait_for_admin(None, &admin);
    for _ in 0..2 {
        let (code, _s) = socks5_connect(&listen, up.origin);
        assert_eq!(code, 0x01, "general failure, not an early success");
    }
    wait_idle(&admin);
    let json = stats_json(None, &admin);
    let cause = json["recent_failures"][0]["cause"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        cause.contains("authentication refused by server"),
        "{cause}"
    );

    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    assert!(!err.contains("server unreachable"), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("authentication refused by server"))
        .collect();
    assert_eq!(warnings.len(), 1, "said once: {err}");
}

#[test]
fn client_with_paths_installs_endpoints_counts_bytes_per_interface_and_removes_them_on_sigterm() {
    if !netns::can_run(
        "client_with_paths_installs_endpoints_counts_bytes_per_interface_and_removes_them_on_sigterm",
    ) {
        return;
    }
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!(
            "SKIP client_with_paths_installs_endpoints_counts_bytes_per_interface_and_removes_them_on_sigterm: no curl"
        );
        return;
    }
    let t = Topology::new("ops");
    // Data in the SYN both ways, so MPTCP does not fall back (see
    // `Upstream::check_syn_data`).
    t.phone.sysctl("net.ipv4.tcp_fastopen", "3");
    t.server.sysctl("net.ipv4.tcp_fastopen", "3");
    // Shape both downlinks so one subflow alone cannot carry the body.
    for dev in ["s_wlan", "s_lte"] {
        let out = t.server.exec(&[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "20mbit", "burst", "32kb",
            "latency", "50ms",
        ]);
        assert!(
            out.status.success(),
            "tc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let up = Upstream::start(Some(&t.server.name), "198.18.1.1", LEN, None);
    // Inside the phone namespace this test made: its ports are all free,
    // and no port of the host is touched.
    let listen = "127.0.0.1:41080";
    let admin = "127.0.0.1:41090";
    let client = Proc::spawn(Command::new("ip").args([
        "netns",
        "exec",
        &t.phone.name,
        BIN,
        "--server",
        &up.server.to_string(),
        "--listen",
        listen,
        "--admin",
        admin,
        "--path",
        "wlan0",
        "--path",
        "lte0",
        // No data in SYNs on either leg: the measured FIN loss of
        // fallen-back MPTCP+TFO connections (docs/client.md) stays out.
        "--no-tfo",
    ]));
    wait_for_admin(Some(&t.phone.name), admin);
    let eps = t.phone.endpoints();
    assert!(
        eps.iter().any(|l| l.starts_with("198.18.1.2 ")
            && l.contains("subflow")
            && l.ends_with("dev wlan0")),
        "{eps:?}"
    );
    assert!(
        eps.iter().any(|l| l.starts_with("198.18.2.2 ")
            && l.contains("subflow")
            && l.ends_with("dev lte0")),
        "{eps:?}"
    );

    let out = t.phone.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "60",
        "--socks5-hostname",
        listen,
        &format!("http://{}/", up.origin),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == body(LEN),
        "body differs ({} bytes)",
        out.stdout.len()
    );

    let json = stats_json(Some(&t.phone.name), admin);
    assert_eq!(json["upstream"]["mptcp"], 1, "{json}");
    assert!(json["subflows"].as_u64().unwrap() >= 2, "{json}");
    let ifaces = &json["interfaces"];
    let received = |i: &str| ifaces[i]["bytes_received"].as_u64().unwrap_or(0);
    assert!(received("wlan0") > 0, "{json}");
    assert!(received("lte0") > 0, "{json}");
    assert!(
        received("wlan0") + received("lte0") >= LEN as u64,
        "per-interface bytes cover the body: {json}"
    );
    let paths = json["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{json}");
    assert!(
        paths.iter().all(|p| p["endpoint_installed"] == true),
        "{json}"
    );
    let text = String::from_utf8(status(Some(&t.phone.name), &["--admin", admin]).stdout).unwrap();
    assert!(
        text.contains("wlan0") && text.contains("endpoint installed"),
        "{text}"
    );

    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    assert!(err.contains("endpoints removed"), "{err}");
    assert!(
        err.lines().any(|l| l.contains("connection closed")
            && l.contains("paths=wlan0:")
            && l.contains(",lte0:")
            || l.contains("paths=lte0:") && l.contains(",wlan0:")),
        "the log line has per-interface subflows, bytes and RTT: {err}"
    );
    assert!(
        json["interfaces"]["wlan0"]["rtt_us"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert!(t.phone.endpoints().is_empty(), "{:?}", t.phone.endpoints());
}

#[test]
fn single_policy_binds_server_connections_to_the_first_path() {
    if !netns::can_run("single_policy_binds_server_connections_to_the_first_path") {
        return;
    }
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP single_policy_binds_server_connections_to_the_first_path: no curl");
        return;
    }
    let t = Topology::new("ops1");
    t.phone.sysctl("net.ipv4.tcp_fastopen", "3");
    t.server.sysctl("net.ipv4.tcp_fastopen", "3");
    let up = Upstream::start(Some(&t.server.name), "198.18.1.1", 1 << 20, None);
    // Inside the phone namespace this test made: no host port is touched.
    let (listen, admin) = ("127.0.0.1:41080", "127.0.0.1:41090");
    // lte0 first: the default route is wlan0's, so only the binding can
    // put the connection on lte0.
    let client = Proc::spawn(Command::new("ip").args([
        "netns",
        "exec",
        &t.phone.name,
        BIN,
        "--server",
        &up.server.to_string(),
        "--listen",
        listen,
        "--admin",
        admin,
        "--path",
        "lte0",
        "--path",
        "wlan0",
        "--path-policy",
        "single",
        "--no-tfo",
    ]));
    wait_for_admin(Some(&t.phone.name), admin);
    assert!(t.phone.endpoints().is_empty(), "single installs nothing");
    let out = t.phone.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "60",
        "--socks5-hostname",
        listen,
        &format!("http://{}/", up.origin),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == body(1 << 20), "body differs");
    let json = stats_json(Some(&t.phone.name), admin);
    let ifaces = json["interfaces"].as_object().unwrap();
    assert_eq!(ifaces.keys().collect::<Vec<_>>(), ["lte0"], "{json}");
    assert!(
        ifaces["lte0"]["bytes_received"].as_u64().unwrap() >= 1 << 20,
        "{json}"
    );
    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    assert!(
        err.contains("server connections start on the primary path"),
        "{err}"
    );
}

#[test]
fn without_cap_net_admin_the_client_logs_the_ip_mptcp_commands_and_runs() {
    if !netns::can_run("without_cap_net_admin_the_client_logs_the_ip_mptcp_commands_and_runs") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!(
            "SKIP without_cap_net_admin_the_client_logs_the_ip_mptcp_commands_and_runs: no setpriv"
        );
        return;
    }
    let t = Topology::new("ops2");
    // In the phone namespace this test made: no host port is touched.
    let admin = "127.0.0.1:41090";
    let client = Proc::spawn(Command::new("ip").args([
        "netns",
        "exec",
        &t.phone.name,
        "setpriv",
        "--bounding-set",
        "-net_admin",
        "--inh-caps",
        "-net_admin",
        BIN,
        "--server",
        "198.18.1.1:1080",
        "--admin",
        admin,
        "--path",
        "wlan0",
        "--path",
        "lte0",
    ]));
    wait_for_admin(Some(&t.phone.name), admin);
    assert!(t.phone.endpoints().is_empty(), "{:?}", t.phone.endpoints());
    let json = stats_json(Some(&t.phone.name), admin);
    let paths = json["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{json}");
    assert!(
        paths.iter().all(|p| p["endpoint_installed"] == false),
        "{json}"
    );
    let (st, err) = client.terminate();
    assert!(st.success(), "exit {st}: {err}");
    assert!(
        err.contains("ip mptcp endpoint add 198.18.1.2 dev wlan0 subflow"),
        "{err}"
    );
}

/// How a blocking read on `s` ends: `Ok(n)` or the error kind.
fn read_end(s: &mut TcpStream) -> Result<usize, std::io::ErrorKind> {
    let mut b = [0u8; 64];
    s.read(&mut b).map_err(|e| e.kind())
}

#[test]
fn sigterm_resets_connections_still_open_at_the_drain_timeout_and_logs_them() {
    // The client resets both its connections at the end of the drain; the
    // server passes the reset of its client connection on to the origin.
    let up = Upstream::start(None, "127.0.0.1", 100, None);
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let client = Proc::spawn(Command::new(BIN).args([
        "--server",
        &up.server.to_string(),
        "--listen",
        &listen,
        "--admin",
        &admin,
        "--drain-timeout",
        "1",
    ]));
    wait_for_admin(None, &admin);
    let (code, mut app) = socks5_connect(&listen, origin.local_addr().unwrap());
    assert_eq!(code, 0);
    app.write_all(b"hello").unwrap();
    let (mut target, _) = origin.accept().unwrap();
    target.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut b = [0u8; 5];
    target.read_exact(&mut b).unwrap();
    // A SOCKS5 UDP association, open too.
    let mut udp_control = TcpStream::connect(&listen).unwrap();
    udp_control.set_read_timeout(Some(PATIENCE)).unwrap();
    udp_control
        .write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let mut reply = [0u8; 12];
    udp_control.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], [5, 0, 5, 0], "UDP ASSOCIATE succeeded");

    let sent = Instant::now();
    let (st, err) = client.terminate();
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "the connection had the drain timeout to finish first"
    );
    assert!(st.success(), "exit {st}: {err}");
    assert_eq!(
        read_end(&mut app),
        Err(std::io::ErrorKind::ConnectionReset),
        "the application's connection is reset, not closed"
    );
    assert_eq!(
        read_end(&mut target),
        Err(std::io::ErrorKind::ConnectionReset),
        "the origin's connection is reset through the server"
    );
    assert_eq!(
        read_end(&mut udp_control),
        Err(std::io::ErrorKind::ConnectionReset),
        "the UDP association's control connection is reset"
    );
    assert!(err.contains("ended by the drain (reset)"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("connection closed") && l.contains("protocol=\"socks5\""))
        .unwrap_or_else(|| panic!("no connection line:\n{err}"));
    assert!(line.contains("end=\"drained\""), "{line}");
    assert!(err.contains("drain timeout: resetting"), "{err}");
}
