//! curl through `sixpath-server` as a one-hop SOCKS5/SOCKS4a proxy.

use std::net::SocketAddr;
use std::process::Command;

use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A deterministic body of `len` bytes.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A minimal HTTP/1.1 origin serving `body` for any request, then closing.
async fn origin(body: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = std::sync::Arc::clone(&body);
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
    let origin = origin(expected.clone()).await;
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
