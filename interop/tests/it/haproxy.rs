//! HAProxy (Debian `haproxy`) in TCP mode in front of a `sixpath-server`
//! listener marked `proxy`: with `send-proxy-v2` the server counts each
//! client by the address HAProxy accepted it from, not by HAProxy's own;
//! a backend that sends no header or the version 1 text header is closed
//! and counted in `/metrics`.
//!
//! Every client connects from its own loopback address (127.0.0.2,
//! 127.0.0.3) while HAProxy connects to the server from 127.0.0.1, so a
//! per-source cap of one tells the addresses apart.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::support::{PATIENCE, TempDir};

/// HAProxy, stopped on drop.
struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port from the OS (released for HAProxy to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts HAProxy with one TCP frontend per `(backend server options)`
/// entry, all forwarding to `server`; answers the frontends' addresses once
/// each accepts connections.
async fn haproxy(server: SocketAddr, backends: &[&str]) -> (Haproxy, Vec<SocketAddr>) {
    let dir = std::env::temp_dir().join(format!(
        "sixpath-haproxy-{}-{}",
        std::process::id(),
        server.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = String::from(
        "global\n  maxconn 256\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n",
    );
    let mut fronts = Vec::new();
    for (i, options) in backends.iter().enumerate() {
        let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let _ = write!(
            cfg,
            "\nfrontend f{i}\n  bind {front}\n  default_backend b{i}\n\
             \nbackend b{i}\n  server s{i} {server} {options}\n"
        );
        fronts.push(front);
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let h = Haproxy {
        child,
        _dir: TempDir(dir),
    };
    // Listening, seen with ss: a probe connection would reach the server.
    let ready = async {
        for f in &fronts {
            while !listening(*f) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(PATIENCE, ready)
        .await
        .expect("HAProxy listens");
    (h, fronts)
}

/// Whether a socket listens on `addr` (`ss`, iproute2).
fn listening(addr: SocketAddr) -> bool {
    Command::new("ss")
        .args(["-Hltn", &format!("src = {addr}")])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
}

/// A server on loopback whose listener is marked `proxy`, with a
/// per-source cap of one and an admin endpoint; its listener, admin
/// address and an echo target.
async fn server() -> (SocketAddr, SocketAddr, SocketAddr) {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.listen[0].proxy = true;
    settings.max_connections_per_source = 1;
    settings.admin = Some("127.0.0.1:0".parse().unwrap());
    settings.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap()];
    let server = Server::bind(settings).unwrap();
    let (addr, admin) = (server.local_addrs()[0], server.admin_addr().unwrap());
    tokio::spawn(server.run(std::future::pending()));
    (addr, admin, echo_addr)
}

/// A connection to `front` from the loopback address `from`.
async fn connect_from(from: [u8; 4], front: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(front).await.unwrap()
}

/// SOCKS5 CONNECT to `target` (no authentication): the reply code.
async fn socks5_connect(c: &mut TcpStream, target: SocketAddr) -> u8 {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 target")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    c.write_all(&req).await.unwrap();
    let mut reply = [0u8; 12];
    tokio::time::timeout(PATIENCE, c.read_exact(&mut reply))
        .await
        .expect("SOCKS5 reply")
        .unwrap();
    assert_eq!(reply[..2], [5, 0], "method selection");
    reply[3]
}

/// The value of an unlabelled counter on the server's `/metrics` page.
async fn metric(admin: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("sixpath_server_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {page}"))
}

fn have_haproxy(test: &str) -> bool {
    let ok = Command::new("haproxy").arg("-v").output().is_ok();
    if !ok {
        println!("SKIP {test}: haproxy not installed");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_send_proxy_v2_each_client_counts_by_its_own_address() {
    if !have_haproxy("behind_haproxy_send_proxy_v2_each_client_counts_by_its_own_address") {
        return;
    }
    let (server, admin, echo) = server().await;
    let (_haproxy, fronts) = haproxy(server, &["send-proxy-v2"]).await;
    let mut a = connect_from([127, 0, 0, 2], fronts[0]).await;
    assert_eq!(
        socks5_connect(&mut a, echo).await,
        0,
        "first from 127.0.0.2"
    );
    a.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    a.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"ping");
    // The same client again: over its per-source cap of one.
    let mut again = connect_from([127, 0, 0, 2], fronts[0]).await;
    assert_eq!(
        socks5_connect(&mut again, echo).await,
        2,
        "second from 127.0.0.2"
    );
    // Another client through the same HAProxy: its own source, served.
    let mut b = connect_from([127, 0, 0, 3], fronts[0]).await;
    assert_eq!(
        socks5_connect(&mut b, echo).await,
        0,
        "first from 127.0.0.3"
    );
    assert_eq!(metric(admin, "proxy_headers_refused_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_without_a_v2_header_connections_are_closed_and_counted() {
    if !have_haproxy("behind_haproxy_without_a_v2_header_connections_are_closed_and_counted") {
        return;
    }
    let (server, admin, echo) = server().await;
    // No header at all, then the version 1 text header.
    let (_haproxy, fronts) = haproxy(server, &["", "send-proxy"]).await;
    for (i, front) in fronts.iter().enumerate() {
        let mut c = connect_from([127, 0, 0, 4], *front).await;
        let req = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
        c.write_all(&req).await.unwrap();
        c.write_all(&echo.port().to_be_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(PATIENCE, c.read_to_end(&mut got))
            .await
            .expect("closed")
            .unwrap();
        assert_eq!(got, Vec::<u8>::new(), "no answer through frontend {i}");
        assert_eq!(
            metric(admin, "proxy_headers_refused_total").await,
            i as u64 + 1
        );
    }
}
