//! curl through `sixpath-server` as a one-hop SOCKS5/SOCKS4a proxy.

use std::net::SocketAddr;
use std::process::Command;

use super::support::{body, http_origin};
use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;

fn server() -> SocketAddr {
    let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap()];
    let server = Server::bind(settings).unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_identical_bodies_through_socks5h_and_socks4a() {
    if !have("curl") {
        println!("SKIP curl_gets_identical_bodies_through_socks5h_and_socks4a: curl not installed");
        return;
    }
    let expected = body(1 << 20);
    let origin = http_origin(expected.clone()).await;
    let proxy = server();
    for (flag, url) in [
        (
            "--socks5-hostname",
            format!("http://localhost:{}/big", origin.port()),
        ),
        (
            "--socks5",
            format!("http://127.0.0.1:{}/big", origin.port()),
        ),
        (
            "--socks4a",
            format!("http://localhost:{}/big", origin.port()),
        ),
    ] {
        let out = tokio::task::spawn_blocking({
            let proxy = proxy.to_string();
            move || {
                Command::new("curl")
                    .args(["-sS", "--max-time", "20", flag, &proxy, &url])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "curl {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), expected.len(), "curl {flag}: body length");
        assert!(out.stdout == expected, "curl {flag}: body differs");
    }
}
