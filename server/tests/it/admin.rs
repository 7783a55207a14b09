//! The admin endpoint read with curl: `/metrics` and `/stats` count the
//! connections the server has served; unknown paths are 404.

use std::process::Command;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{Harness, read_n, read_to_eof};

/// Runs curl with `args`; `None` (after a SKIP line) when curl is missing.
async fn curl(test: &str, args: &[&str]) -> Option<(String, String)> {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
    })
    .await
    .unwrap();
    let Ok(out) = out else {
        println!("SKIP {test}: curl is not installed (scripts/test installs it as root)");
        return None;
    };
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Some((code.to_owned(), body.to_owned()))
}

async fn admin_harness() -> Harness {
    Harness::start_custom(None, |s| {
        s.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// Two SOCKS5 connections relaying 4 bytes each way, one denied by the
/// egress policy.
async fn traffic(h: &Harness) {
    for _ in 0..2 {
        let mut c = h.connect().await;
        let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
        req.extend(h.echo.port().to_be_bytes());
        req.extend(b"ping");
        c.write_all(&req).await.unwrap();
        assert_eq!(read_n(&mut c, 4).await, [5, 0, 5, 0]);
        read_n(&mut c, 8).await;
        c.shutdown().await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, b"ping");
    }
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80])
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
    );
}

/// `/stats` once the server has counted `n` finished connections.
async fn stats_after(test: &str, url: &str, n: u64) -> Option<serde_json::Value> {
    for _ in 0..100 {
        let (code, body) = curl(test, &[url]).await?;
        assert_eq!(code, "200");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["connections"]["total"] == n {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server never counted {n} connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stats_and_metrics_count_proxied_connections() {
    const TEST: &str = "admin_stats_and_metrics_count_proxied_connections";
    let h = admin_harness().await;
    let base = format!("http://{}", h.admin.unwrap());
    traffic(&h).await;

    let Some(stats) = stats_after(TEST, &format!("{base}/stats"), 3).await else {
        return;
    };
    assert_eq!(stats["connections"]["by_protocol"]["socks5"], 3);
    assert_eq!(stats["connections"]["relayed"], 2);
    assert_eq!(stats["bytes"]["client_to_target"], 8);
    assert_eq!(stats["bytes"]["target_to_client"], 8);
    assert_eq!(stats["replies"]["socks5"]["success"], 2);
    assert_eq!(stats["replies"]["socks5"]["not_allowed"], 1);
    assert_eq!(stats["egress_denied"], 1);
    assert_eq!(stats["connections"]["open"], 0);
    let by_transport = stats["connections"]["by_transport"].as_object().unwrap();
    assert_eq!(
        by_transport
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        3
    );

    let (code, metrics) = curl(TEST, &[&format!("{base}/metrics")]).await.unwrap();
    assert_eq!(code, "200");
    for line in [
        "# TYPE sixpath_server_connections_total counter",
        "sixpath_server_connections_total{protocol=\"socks5\"} 3",
        "sixpath_server_connections_total{protocol=\"socks6\"} 0",
        "sixpath_server_connections_open 0",
        "sixpath_server_relayed_connections_total 2",
        "sixpath_server_bytes_total{direction=\"up\"} 8",
        "sixpath_server_bytes_total{direction=\"down\"} 8",
        "sixpath_server_replies_total{protocol=\"socks5\",reply=\"success\"} 2",
        "sixpath_server_replies_total{protocol=\"socks5\",reply=\"not_allowed\"} 1",
        "sixpath_server_egress_denied_total 1",
        "sixpath_server_handshake_timeouts_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_unknown_path_is_404_and_post_is_405() {
    const TEST: &str = "admin_unknown_path_is_404_and_post_is_405";
    let h = admin_harness().await;
    let base = format!("http://{}", h.admin.unwrap());
    let Some((code, _)) = curl(TEST, &[&format!("{base}/nope")]).await else {
        return;
    };
    assert_eq!(code, "404");
    let (code, _) = curl(TEST, &["-X", "POST", &format!("{base}/stats")])
        .await
        .unwrap();
    assert_eq!(code, "405");
}

#[test]
fn non_loopback_admin_without_the_flag_exits_2_naming_admin() {
    let out = Command::new(env!("CARGO_BIN_EXE_sixpath-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:9090",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: admin: "), "{err}");
    let ok = Command::new(env!("CARGO_BIN_EXE_sixpath-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:9090",
            "--admin-allow-remote",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_count_wrong_passwords_and_refused_logins() {
    const TEST: &str = "admin_metrics_count_wrong_passwords_and_refused_logins";
    let h = Harness::start_custom(Some(&[("alice", "secret")]), |s| {
        s.admin = Some("127.0.0.1:0".parse().unwrap());
        s.max_failed_logins = 2;
    })
    .await;
    let login = |pass: &'static str| {
        let h = &h;
        async move {
            let mut c = h.connect().await;
            let mut req = vec![5, 1, 2, 1, 5];
            req.extend(b"alice");
            req.push(pass.len() as u8);
            req.extend(pass.as_bytes());
            c.write_all(&req).await.unwrap();
            assert_eq!(read_to_eof(&mut c).await, [5, 2, 1, 1]);
        }
    };
    login("x").await;
    login("y").await;
    login("secret").await; // refused unchecked: the source is blocked
    let base = format!("http://{}", h.admin.unwrap());
    let Some(stats) = stats_after(TEST, &format!("{base}/stats"), 3).await else {
        return;
    };
    assert_eq!(stats["auth_failures"], 2);
    assert_eq!(stats["logins_refused"], 1);
    assert_eq!(stats["replies"]["socks5"]["auth_failed"], 3);
    let (_, metrics) = curl(TEST, &[&format!("{base}/metrics")]).await.unwrap();
    for line in [
        "sixpath_server_auth_failures_total 2",
        "sixpath_server_logins_refused_total 1",
        "sixpath_server_replies_total{protocol=\"socks5\",reply=\"auth_failed\"} 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_count_connections_refused_by_the_per_source_cap() {
    const TEST: &str = "admin_metrics_count_connections_refused_by_the_per_source_cap";
    let h = Harness::start_custom(None, |s| {
        s.admin = Some("127.0.0.1:0".parse().unwrap());
        s.max_connections_per_source = 1;
    })
    .await;
    let _idle = h.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = h.connect().await;
    assert_eq!(read_to_eof(&mut extra).await, Vec::<u8>::new());
    let base = format!("http://{}", h.admin.unwrap());
    let Some((_, metrics)) = curl(TEST, &[&format!("{base}/metrics")]).await else {
        return;
    };
    for line in [
        "sixpath_server_connections_refused_total{cap=\"per_source\"} 1",
        "sixpath_server_connections_refused_total{cap=\"total\"} 0",
        "sixpath_server_connections_open 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

/// One GET over a raw connection: the whole response.
pub(crate) async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    String::from_utf8(read_to_eof(&mut s).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_answer_within_seconds_while_a_thousand_idle_connections_are_open() {
    let h = admin_harness().await;
    let admin = h.admin.unwrap();
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(admin).await.unwrap());
    }
    let page = tokio::time::timeout(Duration::from_secs(5), raw_get(admin, "/metrics"))
        .await
        .expect("/metrics answered within 5 s despite 1000 idle connections");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("sixpath_server_connections_open 0\n"),
        "{page}"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_page_is_served_with_its_assets_and_refuses_foreign_host_names() {
    let h = admin_harness().await;
    let admin = h.admin.unwrap();
    for (path, kind) in [
        ("/", "text/html"),
        ("/status.js", "text/javascript"),
        ("/status.css", "text/css"),
    ] {
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let r = String::from_utf8(read_to_eof(&mut s).await).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {r}");
        assert!(r.contains(&format!("content-type: {kind}")), "{path}: {r}");
        assert!(
            r.contains("content-security-policy: default-src 'none'"),
            "{path}: {r}"
        );
    }
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: rebound.example:80\r\n\r\n")
        .await
        .unwrap();
    let r = String::from_utf8(read_to_eof(&mut s).await).unwrap();
    assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r}");
}
