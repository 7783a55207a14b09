//! `sixpath-client` operations against the real `sixpath-server`, both
//! in-process on loopback: curl through the client over TLS 1.3 to the
//! server's TLS listener (pinned certificate), a wrong pin, and the admin
//! endpoint's `/stats` and `/metrics` agreeing with what curl did.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::support::{PATIENCE, body, certificate, http_origin};
use sixpath_client::client::Client;
use sixpath_client::config::Options;
use sixpath_net::tls;
use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server with one TLS listener on loopback.
fn tls_server(cert: &Path, key: &Path) -> SocketAddr {
    let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.listen[0].tls = true;
    settings.tls = Some(tls::ServerTls::load(cert, key, &[tls::ALPN_SIXPATH]).unwrap());
    settings.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap()];
    let server = Server::bind(settings).unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// The real client, configured as from the command line: `--server`,
/// `--listen 127.0.0.1:0`, `--admin 127.0.0.1:0`, TLS pinned to `pin`.
/// Returns the front-end and admin addresses.
fn tls_client(server: SocketAddr, pin: &[u8; 32]) -> (SocketAddr, SocketAddr) {
    let options = Options {
        server: Some(server.to_string()),
        listen: vec!["127.0.0.1:0".into()],
        tls: true,
        tls_fingerprint: vec![tls::format_fingerprint(pin)],
        tls_server_name: Some("localhost".into()),
        admin: Some("127.0.0.1:0".into()),
        ..Options::default()
    };
    let client = Client::bind(options.resolve().unwrap()).unwrap();
    let addrs = (client.local_addrs()[0], client.admin_addr().unwrap());
    tokio::spawn(client.run(std::future::pending()));
    addrs
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

async fn curl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// GETs `path` from the admin endpoint: the body of a 200.
async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut s = tokio::time::timeout(PATIENCE, TcpStream::connect(admin))
        .await
        .unwrap()
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_owned()
}

/// The value of the Prometheus sample `name` (with its labels).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until no connection is open (the client counts a connection
/// when it ends).
async fn settle(admin: SocketAddr) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let stats: serde_json::Value =
            serde_json::from_str(&admin_get(admin, "/stats").await).unwrap();
        if stats["connections_open"] == 0 {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_client_over_tls_gets_identical_bodies_and_admin_pages_agree() {
    if !have("curl") {
        eprintln!(
            "SKIP curl_through_client_over_tls_gets_identical_bodies_and_admin_pages_agree: no curl"
        );
        return;
    }
    let (_dir, cert, key, fp) = certificate("client-tls");
    let server = tls_server(&cert, &key);
    let (small, large) = (body(1000), body(3 << 20));
    let o_small = http_origin(small.clone()).await;
    let o_large = http_origin(large.clone()).await;
    let (front, admin) = tls_client(server, &fp);

    for (o, want) in [(o_small, &small), (o_large, &large)] {
        let out = curl(vec![
            "--socks5-hostname".into(),
            front.to_string(),
            format!("http://{o}/"),
        ])
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == *want,
            "body differs ({} bytes)",
            out.stdout.len()
        );
    }

    let stats = settle(admin).await;
    let metrics = admin_get(admin, "/metrics").await;
    assert_eq!(stats["protocols"]["socks5"]["total"], 2, "{stats}");
    assert_eq!(
        metric(
            &metrics,
            "sixpath_client_connections_total{protocol=\"socks5\"}"
        ),
        2
    );
    let down = stats["bytes_down"].as_u64().unwrap();
    assert!(down >= (small.len() + large.len()) as u64, "{stats}");
    assert_eq!(
        metric(&metrics, "sixpath_client_bytes_total{direction=\"down\"}"),
        down
    );
    assert_eq!(
        metric(&metrics, "sixpath_client_bytes_total{direction=\"up\"}"),
        stats["bytes_up"].as_u64().unwrap()
    );
    let carried: u64 = ["mptcp", "fallback", "tcp"]
        .iter()
        .map(|t| stats["upstream"][t].as_u64().unwrap())
        .sum();
    assert_eq!(carried, 2, "{stats}");
    for t in ["mptcp", "fallback", "tcp"] {
        assert_eq!(
            metric(
                &metrics,
                &format!("sixpath_client_upstream_connections_total{{transport=\"{t}\"}}")
            ),
            stats["upstream"][t].as_u64().unwrap()
        );
    }
    assert_eq!(stats["errors"]["tls"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_gives_http_502_quickly_and_counts_a_tls_error() {
    let (_dir, cert, key, fp) = certificate("client-tls-pin");
    let server = tls_server(&cert, &key);
    let o = http_origin(body(10)).await;
    let mut wrong = fp;
    wrong[31] ^= 1;
    let (front, admin) = tls_client(server, &wrong);

    let mut s = TcpStream::connect(front).await.unwrap();
    s.write_all(format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut reply))
        .await
        .expect("an answer in time")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 502 "), "{reply}");
    let stats = settle(admin).await;
    assert_eq!(stats["errors"]["tls"], 1, "{stats}");
    assert_eq!(stats["protocols"]["http-connect"]["total"], 1, "{stats}");
}
