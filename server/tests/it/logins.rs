//! Failed-login limiting per source and per-user connection caps: exact
//! replies.

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::{Harness, read_n, read_to_eof};

async fn connect_from(h: &Harness, from: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(h.server).await.unwrap()
}

/// SOCKS5 greeting offering username/password, then the RFC 1929 request.
fn socks5_login(user: &str, pass: &str) -> Vec<u8> {
    let mut v = vec![5, 1, 2, 1, user.len() as u8];
    v.extend(user.as_bytes());
    v.push(pass.len() as u8);
    v.extend(pass.as_bytes());
    v
}

/// SOCKS5 CONNECT to `port` on 127.0.0.1.
fn socks5_connect(port: u16) -> Vec<u8> {
    let mut v = vec![5, 1, 0, 1, 127, 0, 0, 1];
    v.extend(port.to_be_bytes());
    v
}

/// A SOCKS6 CONNECT to 127.0.0.1:`port` with 4-byte username and password.
fn socks6_login(port: u16, user: [u8; 4], pass: [u8; 4]) -> Vec<u8> {
    let mut req = vec![6, 1, 0, 24];
    req.extend(port.to_be_bytes());
    req.extend([0, 1, 127, 0, 0, 1]);
    req.extend([0, 2, 0, 8, 0, 0, 2, 0]);
    req.extend([0, 4, 0, 16, 2, 1, 4]);
    req.extend(user);
    req.push(4);
    req.extend(pass);
    req
}

/// SOCKS6 Authentication Reply: failure, with the username/password
/// failure status.
const SOCKS6_AUTH_FAILURE: [u8; 12] = [6, 1, 0, 8, 0, 4, 0, 8, 2, 1, 1, 0];

#[tokio::test]
async fn socks5_eleventh_login_from_a_source_is_refused_even_with_the_right_password() {
    let h = Harness::start_custom(Some(&[("alice", "secret")]), |s| {
        s.max_failed_logins = 10;
        s.failed_login_window = std::time::Duration::from_secs(60);
    })
    .await;
    for _ in 0..10 {
        let mut c = h.connect().await;
        c.write_all(&socks5_login("alice", "guess")).await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, [5, 2, 1, 1]);
    }
    // The 11th attempt from 127.0.0.1, with the right password: refused.
    let mut c = h.connect().await;
    c.write_all(&socks5_login("alice", "secret")).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, [5, 2, 1, 1]);
    // Another source logs in, and its success does not clear 127.0.0.1.
    let mut other = connect_from(&h, "127.0.0.2").await;
    other
        .write_all(&socks5_login("alice", "secret"))
        .await
        .unwrap();
    assert_eq!(read_n(&mut other, 4).await, [5, 2, 1, 0]);
    let mut again = h.connect().await;
    again
        .write_all(&socks5_login("alice", "secret"))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut again).await, [5, 2, 1, 1]);
}

#[tokio::test]
async fn socks6_login_after_max_failures_gets_authentication_failure() {
    let h = Harness::start_custom(Some(&[("user", "pass")]), |s| s.max_failed_logins = 3).await;
    for _ in 0..3 {
        let mut c = h.connect().await;
        c.write_all(&socks6_login(h.echo.port(), *b"user", *b"oops"))
            .await
            .unwrap();
        assert_eq!(read_to_eof(&mut c).await, SOCKS6_AUTH_FAILURE);
    }
    let mut c = h.connect().await;
    c.write_all(&socks6_login(h.echo.port(), *b"user", *b"pass"))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SOCKS6_AUTH_FAILURE);
    // Another source is not affected.
    let mut other = connect_from(&h, "127.0.0.3").await;
    other
        .write_all(&socks6_login(h.echo.port(), *b"user", *b"pass"))
        .await
        .unwrap();
    assert_eq!(
        read_n(&mut other, 12).await,
        [6, 0, 0, 8, 0, 4, 0, 8, 2, 1, 0, 0]
    );
}

#[tokio::test]
async fn socks5_per_user_cap_refuses_the_extra_connection_with_0x02_until_one_closes() {
    let h = Harness::start_custom(Some(&[("alice", "secret"), ("bob", "pw")]), |s| {
        s.max_connections_per_user = 2;
    })
    .await;
    let open = |user: &'static str, pass: &'static str| {
        let h = &h;
        async move {
            let mut c = h.connect().await;
            let mut req = socks5_login(user, pass);
            req.extend(socks5_connect(h.echo.port()));
            c.write_all(&req).await.unwrap();
            assert_eq!(read_n(&mut c, 4).await, [5, 2, 1, 0]);
            c
        }
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = open("alice", "secret").await;
        assert_eq!(read_n(&mut c, 4).await, [5, 0, 0, 1], "relayed");
        read_n(&mut c, 6).await;
        held.push(c);
    }
    // The third concurrent connection of alice: not allowed by ruleset.
    let mut third = open("alice", "secret").await;
    assert_eq!(
        read_to_eof(&mut third).await,
        [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    // bob has his own cap.
    let mut bob = open("bob", "pw").await;
    assert_eq!(read_n(&mut bob, 4).await, [5, 0, 0, 1]);
    // One of alice's connections closes: she is admitted again.
    let mut first = held.remove(0);
    first.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut first).await, Vec::<u8>::new());
    drop(first);
    let mut admitted = None;
    for _ in 0..50 {
        let mut c = open("alice", "secret").await;
        let reply = read_n(&mut c, 4).await;
        if reply == [5, 0, 0, 1] {
            admitted = Some(c);
            break;
        }
        // The server may not have torn the closed relay down yet.
        assert_eq!(reply, [5, 2, 0, 1]);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        admitted.is_some(),
        "alice admitted after one connection closed"
    );
}

#[tokio::test]
async fn socks6_per_user_cap_refuses_with_connection_not_allowed() {
    let h = Harness::start_custom(Some(&[("user", "pass")]), |s| {
        s.max_connections_per_user = 1;
    })
    .await;
    let mut held = h.connect().await;
    held.write_all(&socks6_login(h.echo.port(), *b"user", *b"pass"))
        .await
        .unwrap();
    assert_eq!(
        read_n(&mut held, 12).await,
        [6, 0, 0, 8, 0, 4, 0, 8, 2, 1, 0, 0]
    );
    assert_eq!(read_n(&mut held, 2).await, [6, 0], "connected");
    let mut extra = h.connect().await;
    extra
        .write_all(&socks6_login(h.echo.port(), *b"user", *b"pass"))
        .await
        .unwrap();
    let mut expected = vec![6, 0, 0, 8, 0, 4, 0, 8, 2, 1, 0, 0];
    expected.extend([6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(read_to_eof(&mut extra).await, expected);
}
