//! OpenSSL's `s_client`, a TLS 1.3 stack that is not rustls, speaking
//! SOCKS5 through a TLS listener of `sixpath-server`; and OpenSSL's idea of
//! a certificate fingerprint against the one sixpath prints.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use super::support::{certificate, http_origin};
use sixpath_net::tls;
use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;

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

fn have_openssl() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

/// What the origin serves.
const BODY: &[u8] = b"through TLS 1.3 and SOCKS5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_speaks_socks5_through_a_tls_listener() {
    if !have_openssl() {
        println!(
            "SKIP openssl_s_client_speaks_socks5_through_a_tls_listener: openssl not installed"
        );
        return;
    }
    let (_dir, cert, key, _) = certificate("s-client");
    let origin = http_origin(BODY.to_vec()).await;
    let proxy = tls_server(&cert, &key);

    // Greeting, CONNECT 127.0.0.1:origin and an HTTP request, all at once;
    // `-ign_eof` keeps s_client reading until the server closes.
    let mut input = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    input.extend(origin.port().to_be_bytes());
    input.extend(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("timeout")
            .args(["20", "openssl", "s_client", "-quiet", "-ign_eof", "-tls1_3"])
            .args(["-alpn", "sixpath", "-servername", "localhost"])
            .arg("-connect")
            .arg(proxy.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = &out.stdout;
    assert!(
        stdout.len() > 12,
        "s_client printed {stdout:?}; stderr: {stderr}"
    );
    assert_eq!(stdout[..2], [5, 0], "method reply; stderr: {stderr}");
    assert_eq!(stdout[2..10], [5, 0, 0, 1, 127, 0, 0, 1], "CONNECT reply");
    let http = &stdout[12..];
    assert!(
        http.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(http)
    );
    assert!(http.ends_with(BODY), "{:?}", String::from_utf8_lossy(http));
}

#[test]
fn openssl_fingerprint_is_the_one_sixpath_pins() {
    if !have_openssl() {
        println!("SKIP openssl_fingerprint_is_the_one_sixpath_pins: openssl not installed");
        return;
    }
    let (_dir, cert, _, fp) = certificate("fingerprint");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    // OpenSSL prints `sha256 Fingerprint=AB:CD:...`; both forms read back
    // to the same digest, and the hex after `=` is what sixpath prints.
    assert_eq!(tls::parse_fingerprint(&line), Ok(fp), "{line}");
    let hex = line.trim().rsplit('=').next().unwrap();
    assert_eq!(tls::format_fingerprint(&fp), format!("sha256:{hex}"));
}
