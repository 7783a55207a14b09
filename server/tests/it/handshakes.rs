//! Handshakes of every served protocol: exact reply bytes.

use tokio::io::AsyncWriteExt;

use crate::{Harness, read_n, read_to_eof};

fn port_bytes(p: u16) -> [u8; 2] {
    p.to_be_bytes()
}

#[tokio::test]
async fn socks5_connect_relays_to_the_target() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0]).await.unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend(port_bytes(h.echo.port()));
    req.extend(b"ping");
    c.write_all(&req).await.unwrap();
    let reply = read_n(&mut c, 10).await;
    assert_eq!(reply[..4], [5, 0, 0, 1]);
    assert_eq!(reply[4..8], [127, 0, 0, 1]);
    c.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, b"ping");
}

#[tokio::test]
async fn socks5_refused_target_gets_reply_05() {
    let h = Harness::start(None).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut c = h.connect().await;
    let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    req.extend(port_bytes(port));
    c.write_all(&req).await.unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks5_denied_target_gets_reply_02() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // 127.0.0.1:9 is denied by the harness's first rule; 10.0.0.1 by default.
    for target in [[127, 0, 0, 1, 0, 9], [10, 0, 0, 1, 0, 80]] {
        let mut c2 = h.connect().await;
        let mut req = vec![5, 1, 0, 5, 1, 0, 1];
        req.extend(target);
        c2.write_all(&req).await.unwrap();
        assert_eq!(
            read_to_eof(&mut c2).await,
            [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }
    c.shutdown().await.unwrap();
}

#[tokio::test]
async fn socks5_unknown_address_type_gets_reply_08() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0, 5, 1, 0, 2, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks5_requires_password_when_users_are_configured() {
    let h = Harness::start(Some(&[("alice", "secret")])).await;
    // No-auth only: no acceptable method.
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0]).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, [5, 0xff]);
    // Wrong password: status 1 and close.
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 2, 1, 5, b'a', b'l', b'i', b'c', b'e', 1, b'x'])
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, [5, 2, 1, 1]);
    // Right password: CONNECT works.
    let mut c = h.connect().await;
    let mut bytes = vec![5, 1, 2, 1, 5];
    bytes.extend(b"alice");
    bytes.push(6);
    bytes.extend(b"secret");
    bytes.extend([5, 1, 0, 1, 127, 0, 0, 1]);
    bytes.extend(port_bytes(h.echo.port()));
    c.write_all(&bytes).await.unwrap();
    assert_eq!(read_n(&mut c, 4).await, [5, 2, 1, 0]);
    assert_eq!(read_n(&mut c, 4).await, [5, 0, 0, 1]);
}

#[tokio::test]
async fn socks4a_connect_by_name_reaches_localhost() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    let mut req = vec![4, 1];
    req.extend(port_bytes(h.echo.port()));
    req.extend([0, 0, 0, 1, b'u', 0]);
    req.extend(b"localhost\0");
    req.extend(b"hi");
    c.write_all(&req).await.unwrap();
    let reply = read_n(&mut c, 8).await;
    assert_eq!(reply[..2], [0, 90], "granted");
    c.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, b"hi");
}

#[tokio::test]
async fn socks6_connect_forwards_initial_data_first() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    // CONNECT 127.0.0.1:echo + Authentication Method Advertisement (IDL 5)
    // + TFO stack option, then 5 bytes of initial data and more data.
    let mut req = vec![6, 1, 0, 16];
    req.extend(port_bytes(h.echo.port()));
    req.extend([0, 1, 127, 0, 0, 1]);
    req.extend([0, 2, 0, 8, 0, 5, 0, 0]);
    req.extend([0, 1, 0, 8, 0x84, 1, 0, 0]);
    req.extend(b"hello");
    req.extend(b" world");
    c.write_all(&req).await.unwrap();
    assert_eq!(
        read_n(&mut c, 4).await,
        [6, 0, 0, 0],
        "authentication reply"
    );
    let op = read_n(&mut c, 12).await;
    assert_eq!(op[..2], [6, 0], "operation reply: success");
    let opts_len = u16::from_be_bytes([op[2], op[3]]) as usize;
    assert_eq!(
        read_n(&mut c, opts_len).await,
        [0, 1, 0, 8, 0x84, 1, 0, 0],
        "TFO echoed"
    );
    c.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, b"hello world");
}

#[tokio::test]
async fn socks6_noop_gets_success_and_close() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks6_bad_address_type_gets_reply_08() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[6, 1, 0, 0, 0, 80, 0, 2, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 0, 6, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks6_wrong_password_gets_failure_status() {
    let h = Harness::start(Some(&[("user", "pass")])).await;
    let mut c = h.connect().await;
    let mut req = vec![6, 1, 0, 24];
    req.extend(port_bytes(h.echo.port()));
    req.extend([0, 1, 127, 0, 0, 1]);
    req.extend([0, 2, 0, 8, 0, 0, 2, 0]);
    req.extend([
        0, 4, 0, 16, 2, 1, 4, b'u', b's', b'e', b'r', 4, b'p', b'a', b's', b'x',
    ]);
    c.write_all(&req).await.unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 8, 0, 4, 0, 8, 2, 1, 1, 0]
    );
}

#[tokio::test]
async fn socks6_right_password_connects() {
    let h = Harness::start(Some(&[("user", "pass")])).await;
    let mut c = h.connect().await;
    let mut req = vec![6, 1, 0, 24];
    req.extend(port_bytes(h.echo.port()));
    req.extend([0, 1, 127, 0, 0, 1]);
    req.extend([0, 2, 0, 8, 0, 2, 2, 0]);
    req.extend([
        0, 4, 0, 16, 2, 1, 4, b'u', b's', b'e', b'r', 4, b'p', b'a', b's', b's',
    ]);
    req.extend(b"ok");
    c.write_all(&req).await.unwrap();
    assert_eq!(
        read_n(&mut c, 12).await,
        [6, 0, 0, 8, 0, 4, 0, 8, 2, 1, 0, 0]
    );
    assert_eq!(read_n(&mut c, 4).await[..2], [6, 0]);
    c.shutdown().await.unwrap();
    let rest = read_to_eof(&mut c).await;
    assert_eq!(&rest[rest.len() - 2..], b"ok");
}

#[tokio::test]
async fn unknown_first_byte_gets_socks6_version_mismatch() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, [6]);
}

#[tokio::test]
async fn garbage_and_half_messages_do_not_stop_other_clients() {
    let h = Harness::start(None).await;
    let mut bad = Vec::new();
    for i in 0u8..50 {
        let mut c = h.connect().await;
        c.write_all(&[5, i % 4, 1, 2, 3][..=usize::from(i % 5)])
            .await
            .unwrap();
        bad.push(c);
    }
    let mut c = h.connect().await;
    let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    req.extend(port_bytes(h.echo.port()));
    c.write_all(&req).await.unwrap();
    assert_eq!(read_n(&mut c, 4).await, [5, 0, 5, 0]);
}
