//! Failed logins of applications (`--local-user`): after
//! `--max-failed-logins` wrong passwords from one source, its logins are
//! refused without the password being checked, in every front-end that
//! checks local credentials, and counted in `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use sixpath_client::client::Client;
use sixpath_client::config::{Credentials, Password, Settings};
use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Command, Request, UsernamePassword,
};
use sixpath_protocol::{Decoded, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A loopback port nothing listens on: the server is never reached here.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The client with local credentials alice/wonderland and `tweak`: its
/// mixed front-end and its admin endpoint.
fn start(tweak: impl FnOnce(&mut Settings)) -> (SocketAddr, SocketAddr) {
    let server = SocketAddr::from(([127, 0, 0, 1], closed_port()));
    let mut s = Settings::new(server, "127.0.0.1:0".parse().unwrap());
    s.local_credentials = Some(Credentials {
        username: "alice".into(),
        password: Password(b"wonderland".to_vec()),
    });
    s.admin = Some("127.0.0.1:0".parse().unwrap());
    tweak(&mut s);
    let client = Client::bind(s).unwrap();
    let addrs = (client.local_addrs()[0], client.admin_addr().unwrap());
    tokio::spawn(client.run(std::future::pending()));
    addrs
}

async fn connect_from(to: SocketAddr, from: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("the client closes")
        .unwrap();
    buf
}

/// A SOCKS5 greeting offering username/password and the RFC 1929 request:
/// the client's answers up to the password status (4 bytes).
async fn socks5_login(proxy: SocketAddr, from: &str, pass: &str) -> Vec<u8> {
    let mut c = connect_from(proxy, from).await;
    let mut req = vec![5, 1, 2, 1, 5];
    req.extend(b"alice");
    req.push(pass.len() as u8);
    req.extend(pass.as_bytes());
    c.write_all(&req).await.unwrap();
    let mut reply = vec![0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), c.read_exact(&mut reply))
        .await
        .expect("answered")
        .unwrap();
    reply
}

/// An HTTP proxy request with `Proxy-Authorization: Basic` for alice (or
/// none): the status line.
async fn http_login(proxy: SocketAddr, from: &str, pass: Option<&str>) -> String {
    let mut c = connect_from(proxy, from).await;
    let auth = pass.map_or_else(String::new, |p| {
        format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(format!("alice:{p}").as_bytes())
        )
    });
    c.write_all(
        format!("GET http://192.0.2.1/ HTTP/1.1\r\nHost: 192.0.2.1\r\n{auth}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let resp = String::from_utf8_lossy(&read_to_eof(&mut c).await).into_owned();
    resp.lines().next().unwrap_or_default().to_owned()
}

/// A SOCKS6 CONNECT with alice's username/password: the Authentication
/// Reply's type.
async fn socks6_login(proxy: SocketAddr, from: &str, pass: &str) -> AuthReplyType {
    let mut c = connect_from(proxy, from).await;
    let mut req = Request::new(
        Command::CONNECT,
        Endpoint::new(std::net::Ipv4Addr::new(192, 0, 2, 1), 80),
    );
    req.options
        .push(UsernamePassword::new("alice", pass).unwrap().to_option())
        .unwrap();
    let mut bytes = Vec::new();
    req.encode(&mut bytes);
    c.write_all(&bytes).await.unwrap();
    let mut buf = Vec::new();
    loop {
        if let Decoded::Complete { msg, .. } = AuthenticationReply::decode(&buf).unwrap() {
            return msg.reply_type;
        }
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut b))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(n, 1, "closed mid-reply after {buf:02x?}");
        buf.push(b[0]);
    }
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn metrics(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    String::from_utf8(read_to_eof(&mut s).await).unwrap()
}

const SOCKS5_PASSWORD_OK: [u8; 4] = [5, 2, 1, 0];
const SOCKS5_PASSWORD_FAILED: [u8; 4] = [5, 2, 1, 1];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_eleventh_login_from_a_source_is_refused_even_with_the_right_password() {
    let (proxy, admin) = start(|_| {});
    for _ in 0..10 {
        assert_eq!(
            socks5_login(proxy, "127.0.0.1", "guess").await,
            SOCKS5_PASSWORD_FAILED
        );
    }
    assert_eq!(
        socks5_login(proxy, "127.0.0.1", "wonderland").await,
        SOCKS5_PASSWORD_FAILED,
        "blocked: refused without checking the password"
    );
    assert_eq!(
        socks5_login(proxy, "127.0.0.2", "wonderland").await,
        SOCKS5_PASSWORD_OK,
        "another source is not affected"
    );
    let page = metrics(admin).await;
    for line in [
        "sixpath_client_auth_failures_total 10",
        "sixpath_client_logins_refused_total 1",
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "missing {line:?} in\n{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_login_after_max_failures_gets_407_and_a_missing_header_is_not_a_failure() {
    let (proxy, _) = start(|_| {});
    // Browsers ask without credentials first: not a failed login.
    for _ in 0..5 {
        let status = http_login(proxy, "127.0.0.1", None).await;
        assert!(status.starts_with("HTTP/1.1 407 "), "{status}");
    }
    for _ in 0..10 {
        let status = http_login(proxy, "127.0.0.1", Some("guess")).await;
        assert!(status.starts_with("HTTP/1.1 407 "), "{status}");
    }
    let status = http_login(proxy, "127.0.0.1", Some("wonderland")).await;
    assert!(status.starts_with("HTTP/1.1 407 "), "blocked: {status}");
    // Another source logs in (and then fails to reach the absent server).
    let status = http_login(proxy, "127.0.0.2", Some("wonderland")).await;
    assert!(!status.starts_with("HTTP/1.1 407 "), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks6_login_after_max_failures_gets_authentication_failure() {
    let (proxy, _) = start(|s| s.max_failed_logins = 3);
    for _ in 0..3 {
        assert_eq!(
            socks6_login(proxy, "127.0.0.1", "guess").await,
            AuthReplyType::FAILURE
        );
    }
    assert_eq!(
        socks6_login(proxy, "127.0.0.1", "wonderland").await,
        AuthReplyType::FAILURE,
        "blocked"
    );
    assert_eq!(
        socks6_login(proxy, "127.0.0.2", "wonderland").await,
        AuthReplyType::SUCCESS
    );
}
