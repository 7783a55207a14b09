//! SIGTERM's drain through the real binary: connections still relaying
//! when `--drain-timeout` ends are reset on both sides (the client's
//! Multipath TCP connection and the target's), a UDP association's control
//! connection is reset, each is logged with `end="drained"`, a BIND still
//! waiting for its peer gets a failure reply, and the server exits 0.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sixpath_net::sys;

/// Generous bound for anything here.
const PATIENCE: Duration = Duration::from_secs(20);

/// A SOCKS5 CONNECT to `target` over Multipath TCP; the stream after a
/// successful reply.
fn socks5_connect_mptcp(server: SocketAddr, target: SocketAddr) -> TcpStream {
    let (sock, mptcp) = sys::stream_socket(&server, true).unwrap();
    assert!(mptcp, "the kernel refused Multipath TCP");
    sock.connect(&server.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel, [5, 0]);
    let SocketAddr::V4(t) = target else {
        panic!("v4 target")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "SOCKS5 success");
    s
}

/// How a blocking read on `s` ends: `Ok(n)` or the error kind.
fn read_end(s: &mut TcpStream) -> Result<usize, ErrorKind> {
    let mut b = [0u8; 64];
    s.read(&mut b).map_err(|e| e.kind())
}

#[test]
fn sigterm_resets_connections_still_open_at_the_drain_timeout_answers_a_waiting_bind_and_logs_them()
{
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sixpath-server"))
        .args(["--listen", "127.0.0.1:0", "--allow-egress", "127.0.0.0/8"])
        .args(["--drain-timeout", "1"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let keep = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("listening")
                && let Some(rest) = line.split("addr=").nth(1)
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_owned());
            }
            let mut all = keep.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let server: SocketAddr = rx.recv_timeout(PATIENCE).unwrap().parse().unwrap();

    let mut app = socks5_connect_mptcp(server, origin.local_addr().unwrap());
    // A SOCKS5 UDP association, open too.
    let mut udp_control = TcpStream::connect(server).unwrap();
    udp_control.set_read_timeout(Some(PATIENCE)).unwrap();
    udp_control
        .write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let mut reply = [0u8; 12];
    udp_control.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], [5, 0, 5, 0], "UDP ASSOCIATE succeeded");
    // A SOCKS5 BIND waiting for its peer.
    let mut bind = TcpStream::connect(server).unwrap();
    bind.set_read_timeout(Some(PATIENCE)).unwrap();
    bind.write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 0])
        .unwrap();
    let mut first = [0u8; 12];
    bind.read_exact(&mut first).unwrap();
    assert_eq!(first[..4], [5, 0, 5, 0], "BIND listening");
    app.write_all(b"hello").unwrap();
    let (mut target, _) = origin.accept().unwrap();
    target.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut b = [0u8; 5];
    target.read_exact(&mut b).unwrap();

    let sent = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        read_end(&mut app),
        Err(ErrorKind::ConnectionReset),
        "the client's connection is reset, not closed"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "the connection had the drain timeout to finish first"
    );
    assert_eq!(
        read_end(&mut target),
        Err(ErrorKind::ConnectionReset),
        "the target's connection is reset, not closed"
    );
    assert_eq!(
        read_end(&mut udp_control),
        Err(ErrorKind::ConnectionReset),
        "the UDP association's control connection is reset, not closed"
    );
    // The BIND gets its second reply, a general failure (REP 01), then the
    // end of the connection.
    let mut second = [0u8; 10];
    bind.read_exact(&mut second).unwrap();
    assert_eq!(second[..2], [5, 1], "BIND's second reply: general failure");
    assert_eq!(read_end(&mut bind), Ok(0), "closed after its answer");
    // Left open by this client: the server still logs the connection
    // before it exits.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit after the drain");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().unwrap();
    let log = log.lock().unwrap();
    assert!(status.success(), "exit {status}:\n{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection closed"))
        .collect();
    assert_eq!(lines.len(), 3, "a line for each connection:\n{log}");
    for line in lines {
        assert!(
            line.contains("end=\"drained\"") || line.contains("the server is shutting down"),
            "{line}"
        );
    }
    assert!(log.contains("drain timeout: resetting"), "{log}");
}
