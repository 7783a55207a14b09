//! The status page and its JSON API on the admin endpoint, and the guard
//! of `POST /api/policy` against cross-site requests.

use std::net::SocketAddr;
use std::time::Duration;

use sixpath_client::client::Client;
use sixpath_client::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client (its server never reached) with an admin endpoint on
/// loopback: the admin address.
fn start() -> SocketAddr {
    start_on("127.0.0.1:0")
}

/// The same with the admin endpoint on `admin` (the address to reach it
/// on loopback).
fn start_on(admin: &str) -> SocketAddr {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = unused.local_addr().unwrap();
    drop(unused);
    let mut s = Settings::new(server, "127.0.0.1:0".parse().unwrap());
    s.admin = Some(admin.parse().unwrap());
    let client = Client::bind(s).unwrap();
    let port = client.admin_addr().unwrap().port();
    tokio::spawn(client.run(std::future::pending()));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends `head` (and `body`) and returns the status code, the head and
/// the body of the answer.
async fn exchange(admin: SocketAddr, head: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(admin).await.unwrap();
    let raw = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (h, b) = text.split_once("\r\n\r\n").unwrap();
    let code = h.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, h.to_ascii_lowercase(), b.to_owned())
}

/// The token the page embeds.
fn token_of(page: &str) -> String {
    let at = page.find("name=\"sixpath-token\" content=\"").unwrap() + 30;
    page[at..at + 32].to_owned()
}

#[tokio::test]
async fn status_page_embeds_a_token_and_serves_its_assets_under_a_strict_csp() {
    let admin = start();
    let host = format!("Host: {admin}");
    let (code, head, page) = exchange(admin, &format!("GET / HTTP/1.1\r\n{host}"), "").await;
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    let token = token_of(&page);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    // Another process draws another token.
    let (_, _, page2) = exchange(start(), &format!("GET / HTTP/1.1\r\n{host}"), "").await;
    assert_ne!(token_of(&page2), token);
    for (path, kind) in [
        ("/status.js", "text/javascript"),
        ("/status.css", "text/css"),
    ] {
        let (code, head, body) =
            exchange(admin, &format!("GET {path} HTTP/1.1\r\n{host}"), "").await;
        assert_eq!(code, 200, "{path}: {head}");
        assert!(head.contains(kind), "{path}: {head}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
}

#[tokio::test]
async fn api_status_reports_paths_connections_and_policy_switch() {
    let admin = start();
    let (code, head, body) = exchange(
        admin,
        &format!("GET /api/status HTTP/1.1\r\nHost: {admin}"),
        "",
    )
    .await;
    assert_eq!(code, 200, "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["policies"],
        serde_json::json!(["aggregate", "backup", "single", "handover"])
    );
    assert!(v["paths"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["connections"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["relaying"], 0);
    // No --path: no policy, nothing to switch.
    assert!(v["policy"].is_null(), "{v}");
    assert_eq!(v["policy_switch"], false);
}

#[tokio::test]
async fn every_path_statistics_included_refuses_a_foreign_host_name() {
    let admin = start();
    // A foreign name for this address (DNS rebinding) gets nothing, not
    // even the statistics (recent failures name targets); an address or
    // localhost gets everything.
    for path in ["/", "/api/status", "/stats", "/metrics"] {
        let (code, _, why) = exchange(
            admin,
            &format!("GET {path} HTTP/1.1\r\nHost: evil.example"),
            "",
        )
        .await;
        assert_eq!(code, 403, "{path}: {why}");
        for host in [admin.to_string(), format!("localhost:{}", admin.port())] {
            let (code, _, _) =
                exchange(admin, &format!("GET {path} HTTP/1.1\r\nHost: {host}"), "").await;
            assert_eq!(code, 200, "{path} with Host {host}");
        }
    }
}

#[tokio::test]
async fn policy_post_without_token_or_from_another_origin_is_403() {
    let admin = start();
    let host = format!("Host: {admin}");
    let (_, _, page) = exchange(admin, &format!("GET / HTTP/1.1\r\n{host}"), "").await;
    let token = token_of(&page);
    let body = r#"{"policy":"backup"}"#;
    let post = |extra: String| format!("POST /api/policy HTTP/1.1\r\n{host}{extra}");
    let refused = [
        String::new(),
        "\r\nX-Sixpath-Token: 00000000000000000000000000000000".to_owned(),
        format!("\r\nX-Sixpath-Token: {token}\r\nOrigin: http://evil.example"),
        format!("\r\nX-Sixpath-Token: {token}\r\nOrigin: null"),
        format!("\r\nX-Sixpath-Token: {token}\r\nSec-Fetch-Site: cross-site"),
    ];
    for extra in refused {
        let (code, head, why) = exchange(admin, &post(extra.clone()), body).await;
        assert_eq!(code, 403, "{extra:?}: {head}\n{why}");
    }
    // A foreign name for this address (DNS rebinding) gets nothing at all.
    let (code, _, _) = exchange(
        admin,
        &format!("POST /api/policy HTTP/1.1\r\nHost: evil.example\r\nX-Sixpath-Token: {token}"),
        body,
    )
    .await;
    assert_eq!(code, 403);
    // The page's own request passes the guard; without --path there is
    // nothing to switch.
    let (code, head, why) = exchange(
        admin,
        &post(format!(
            "\r\nX-Sixpath-Token: {token}\r\nOrigin: http://{admin}\r\nSec-Fetch-Site: same-origin"
        )),
        body,
    )
    .await;
    assert_eq!(code, 409, "{head}\n{why}");
    assert!(why.contains("no paths configured"), "{why}");
    let (code, _, _) = exchange(
        admin,
        &post(format!("\r\nX-Sixpath-Token: {token}")),
        r#"{"policy":"sideways"}"#,
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn policy_switch_is_off_when_the_admin_endpoint_is_not_on_loopback() {
    // All addresses (as with --admin-allow-remote), reached over loopback.
    let admin = start_on("0.0.0.0:0");
    let host = format!("Host: {admin}");
    let (_, _, page) = exchange(admin, &format!("GET / HTTP/1.1\r\n{host}"), "").await;
    let token = token_of(&page);
    let (_, _, body) = exchange(admin, &format!("GET /api/status HTTP/1.1\r\n{host}"), "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["policy_switch"], false);
    assert!(
        v["policy_switch_note"]
            .as_str()
            .unwrap()
            .contains("not on a loopback address"),
        "{v}"
    );
    let (code, _, why) = exchange(
        admin,
        &format!(
            "POST /api/policy HTTP/1.1\r\n{host}\r\nX-Sixpath-Token: {token}\r\nOrigin: http://{admin}"
        ),
        r#"{"policy":"backup"}"#,
    )
    .await;
    assert_eq!(code, 403, "{why}");
    assert!(why.contains("not on a loopback address"), "{why}");
}
