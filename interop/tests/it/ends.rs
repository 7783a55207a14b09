//! How connections end, through the chain (`sixpath-client` →
//! `sixpath-server` over Multipath TCP on loopback, SOCKS6 plain and over
//! TLS, and Convert) and through the server alone (an application speaking
//! SOCKS5 or SOCKS6 to it over Multipath TCP):
//!
//! - an origin that resets after sending reaches the application as every
//!   byte, then a reset (`ECONNRESET`), never as a clean end;
//! - an application that resets reaches the origin as a reset;
//! - many short transfers with half-close in both orders deliver every
//!   byte and the FIN, each way.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::support::{PATIENCE, TempDir, certificate, in_netns, read_msg};
use sixpath_client::client::Client;
use sixpath_client::config::Options;
use sixpath_net::{sys, tls};
use sixpath_protocol::Endpoint;
use sixpath_protocol::socks5;
use sixpath_protocol::socks6::{
    AuthMethodAdvertisement, AuthenticationReply, Command as Socks6Command, OperationReply,
    ReplyCode, Request as Socks6Request, SocksOption,
};
use sixpath_server::config::Settings as ServerSettings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// How the application reaches the origin.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// SOCKS5 to the client, SOCKS6 from the client to the server.
    ChainSocks6,
    /// The same with TLS 1.3 between client and server.
    ChainSocks6Tls,
    /// SOCKS5 to the client, RFC 8803 Convert to the server. The client
    /// refuses loopback destinations for Convert: this route runs in a
    /// network namespace of its own with the origin on 198.18.0.2.
    ChainConvert,
    /// SOCKS5 straight to the server, over Multipath TCP.
    ServerSocks5,
    /// SOCKS6 straight to the server, over Multipath TCP.
    ServerSocks6,
}

/// A running route: where the application connects, and the certificate
/// files the route's TLS listener loaded (removed at the end).
struct Proxy {
    at: Entry,
    _certificate: Option<TempDir>,
}

impl Route {
    /// Where the origin listens.
    fn origin_ip(self) -> Ipv4Addr {
        match self {
            Self::ChainConvert => Ipv4Addr::new(198, 18, 0, 2),
            _ => Ipv4Addr::LOCALHOST,
        }
    }
}

/// Where and how the application connects.
#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: SocketAddr,
    route: Route,
}

/// The real server on loopback (egress to loopback allowed), TLS with
/// `tls` (certificate and key files).
fn server(tls_files: Option<(&std::path::Path, &std::path::Path)>) -> SocketAddr {
    let mut settings = ServerSettings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.egress_rules = vec![
        EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap(),
        EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap(),
    ];
    if let Some((cert, key)) = tls_files {
        settings.listen[0].tls = true;
        settings.tls = Some(tls::ServerTls::load(cert, key, &[tls::ALPN_SIXPATH]).unwrap());
    }
    let server = Server::bind(settings).unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// The real client in front of `server`, configured as from its command
/// line.
fn client(options: Options) -> SocketAddr {
    let client = Client::bind(options.resolve().unwrap()).unwrap();
    let addr = client.local_addrs()[0];
    tokio::spawn(client.run(std::future::pending()));
    addr
}

fn client_options(server: SocketAddr) -> Options {
    Options {
        server: Some(server.to_string()),
        listen: vec!["127.0.0.1:0".into()],
        ..Options::default()
    }
}

fn proxy(route: Route) -> Proxy {
    let mut cert = None;
    let addr = match route {
        Route::ChainSocks6 => client(client_options(server(None))),
        Route::ChainSocks6Tls => {
            let (dir, c, k, fp) = certificate("ends");
            let s = server(Some((&c, &k)));
            cert = Some(dir);
            client(Options {
                tls: true,
                tls_fingerprint: vec![tls::format_fingerprint(&fp)],
                tls_server_name: Some("localhost".into()),
                ..client_options(s)
            })
        }
        Route::ChainConvert => client(Options {
            upstream: Some("convert".into()),
            ..client_options(server(None))
        }),
        Route::ServerSocks5 | Route::ServerSocks6 => server(None),
    };
    Proxy {
        at: Entry { addr, route },
        _certificate: cert,
    }
}

/// A connection to `addr`, Multipath TCP when `mptcp`.
async fn connect(addr: SocketAddr, mptcp: bool) -> TcpStream {
    let (sock, is_mptcp) = sys::stream_socket(&addr, mptcp).unwrap();
    assert_eq!(is_mptcp, mptcp, "the kernel refused Multipath TCP");
    sock.set_nonblocking(true).unwrap();
    let std: std::net::TcpStream = sock.into();
    TcpSocket::from_std_stream(std).connect(addr).await.unwrap()
}

impl Entry {
    /// Opens a connection to `target` through the route; returns it with
    /// any target bytes read along with the replies.
    async fn open(&self, target: SocketAddr) -> (TcpStream, Vec<u8>) {
        let target = Endpoint::from(target);
        let mut buf = Vec::new();
        if matches!(self.route, Route::ServerSocks6) {
            let mut s = connect(self.addr, true).await;
            let mut req = Socks6Request::new(Socks6Command::CONNECT, target);
            req.options
                .push(SocksOption::AuthMethodAdvertisement(
                    AuthMethodAdvertisement::new(0, []).unwrap(),
                ))
                .unwrap();
            let mut bytes = Vec::new();
            req.encode(&mut bytes);
            s.write_all(&bytes).await.unwrap();
            read_msg(&mut s, &mut buf, AuthenticationReply::decode).await;
            let op = read_msg(&mut s, &mut buf, OperationReply::decode).await;
            assert_eq!(op.code, ReplyCode::SUCCESS, "{:?}", self.route);
            (s, buf)
        } else {
            let mptcp = matches!(self.route, Route::ServerSocks5);
            let mut s = connect(self.addr, mptcp).await;
            s.write_all(&[5, 1, 0]).await.unwrap();
            let mut sel = [0u8; 2];
            s.read_exact(&mut sel).await.unwrap();
            assert_eq!(sel, [5, 0], "method selection");
            let mut req = Vec::new();
            socks5::Request::new(socks5::Command::CONNECT, target).encode(&mut req);
            s.write_all(&req).await.unwrap();
            let reply = read_msg(&mut s, &mut buf, socks5::Reply::decode).await;
            assert_eq!(reply.code, socks5::ReplyCode::SUCCEEDED, "{:?}", self.route);
            (s, buf)
        }
    }
}

/// Reads until the connection ends: the bytes read (after `first`), and
/// the error that ended it (`None` for a clean EOF).
async fn read_to_end_or_error(
    s: &mut TcpStream,
    first: Vec<u8>,
) -> (Vec<u8>, Option<io::ErrorKind>) {
    let mut got = first;
    let mut b = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut b))
            .await
            .expect("the connection ends in time")
        {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

/// A deterministic pattern: byte `i` of a stream with `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed.wrapping_mul(17))
        .collect()
}

/// Makes closing `s` send a reset, and drops it.
fn reset(s: TcpStream) {
    s.set_zero_linger().unwrap();
    drop(s);
}

/// Resets `s` once its peer has acknowledged every byte sent.
async fn reset_when_acknowledged(s: TcpStream) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sys::unacknowledged(&s).unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    reset(s);
}

/// Bytes the resetting origin sends before its reset.
const BEFORE_RESET: usize = 1 << 20;

/// An origin that sends [`BEFORE_RESET`] bytes to each connection and,
/// once they are acknowledged, resets it (`SO_LINGER` 0, then close).
async fn resetting_origin(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                s.write_all(&pattern(1, BEFORE_RESET)).await.unwrap();
                reset_when_acknowledged(s).await;
            });
        }
    });
    addr
}

async fn origin_reset_reaches_the_application(route: Route) {
    let origin = resetting_origin(route.origin_ip()).await;
    let p = proxy(route);
    let (mut app, first) = p.at.open(origin).await;
    let (got, err) = read_to_end_or_error(&mut app, first).await;
    assert_eq!(
        got.len(),
        BEFORE_RESET,
        "{route:?}: every byte sent before the reset arrives"
    );
    assert!(
        got == pattern(1, BEFORE_RESET),
        "{route:?}: bytes identical"
    );
    assert_eq!(
        err,
        Some(io::ErrorKind::ConnectionReset),
        "{route:?}: the application sees the origin's reset, not a clean end"
    );
}

/// An origin that reads 5 bytes, answers `ready`, then reads to the end and
/// reports how the connection ended.
async fn watching_origin(ip: Ipv4Addr) -> (SocketAddr, mpsc::Receiver<Option<io::ErrorKind>>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut hello = [0u8; 5];
                s.read_exact(&mut hello).await.unwrap();
                s.write_all(b"ready").await.unwrap();
                let (_, err) = read_to_end_or_error(&mut s, Vec::new()).await;
                let _ = tx.send(err).await;
            });
        }
    });
    (addr, rx)
}

async fn application_reset_reaches_the_origin(route: Route) {
    let (origin, mut ended) = watching_origin(route.origin_ip()).await;
    let p = proxy(route);
    let (mut app, mut first) = p.at.open(origin).await;
    app.write_all(b"hello").await.unwrap();
    while first.len() < 5 {
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(PATIENCE, app.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{route:?}: closed before the origin's answer");
        first.extend_from_slice(&b[..n]);
    }
    assert_eq!(first, b"ready");
    reset(app);
    let err = tokio::time::timeout(PATIENCE, ended.recv())
        .await
        .expect("the origin's connection ends in time")
        .unwrap();
    assert_eq!(
        err,
        Some(io::ErrorKind::ConnectionReset),
        "{route:?}: the origin sees the application's reset, not a clean end"
    );
}

/// An origin that reads [`BEFORE_RESET`] bytes of an upload, then closes
/// its socket with more still arriving (as an iperf3 server does at the
/// end of a test): the kernel resets or FINs, whichever the timing gives.
async fn closing_origin(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = vec![0u8; BEFORE_RESET];
                let _ = s.read_exact(&mut b).await;
            });
        }
    });
    addr
}

/// The application uploads without pause; the origin closes mid-upload.
/// The application's connection must end (an error on write or read)
/// within [`PATIENCE`], not stay open with its bytes going nowhere.
async fn origin_closing_mid_upload_ends_the_application_connection(route: Route) {
    let origin = closing_origin(route.origin_ip()).await;
    let p = proxy(route);
    let (app, _) = p.at.open(origin).await;
    let (mut from_origin, mut to_origin) = app.into_split();
    let chunk = pattern(3, 64 << 10);
    let upload = async {
        loop {
            if let Err(e) = to_origin.write_all(&chunk).await {
                return e.kind();
            }
        }
    };
    let watch = async {
        let mut b = [0u8; 1024];
        loop {
            match from_origin.read(&mut b).await {
                Ok(0) => std::future::pending::<()>().await,
                Ok(_) => {}
                Err(e) => return e.kind(),
            }
        }
    };
    let err = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            e = upload => e,
            e = watch => e,
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("{route:?}: the upload still runs {PATIENCE:?} after the origin closed")
    });
    assert!(
        matches!(
            err,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "{route:?}: {err:?}"
    );
}

/// One short transfer: who closes first and how much goes each way.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    /// The application sends and half-closes first; otherwise the origin.
    app_first: bool,
    up: u32,
    down: u32,
    seed: u8,
}

/// An origin for [`Transfer`]s: reads the 10-byte header (who first,
/// seed, down length), then plays its part; reports the bytes it received
/// after the header and whether they ended with a FIN.
async fn half_close_origin(ip: Ipv4Addr) -> (SocketAddr, mpsc::Receiver<(u8, Vec<u8>, bool)>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 10];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let app_first = head[0] == 1;
                let seed = head[1];
                let down = u32::from_be_bytes(head[2..6].try_into().unwrap()) as usize;
                let data = pattern(seed.wrapping_add(1), down);
                if !app_first {
                    s.write_all(&data).await.unwrap();
                    s.shutdown().await.unwrap();
                }
                let (up, err) = read_to_end_or_error(&mut s, Vec::new()).await;
                if app_first && err.is_none() {
                    s.write_all(&data).await.unwrap();
                    s.shutdown().await.unwrap();
                }
                let _ = tx.send((seed, up, err.is_none())).await;
            });
        }
    });
    (addr, rx)
}

/// Runs one transfer through `p`; panics with what went wrong.
async fn transfer(p: Entry, origin: SocketAddr, t: Transfer) {
    let (mut app, first) = p.open(origin).await;
    let mut head = vec![u8::from(t.app_first), t.seed];
    head.extend_from_slice(&t.down.to_be_bytes());
    head.extend_from_slice(&t.up.to_be_bytes());
    let up = pattern(t.seed, t.up as usize);
    let want_down = pattern(t.seed.wrapping_add(1), t.down as usize);
    let (down, err) = if t.app_first {
        app.write_all(&head).await.unwrap();
        app.write_all(&up).await.unwrap();
        app.shutdown().await.unwrap();
        read_to_end_or_error(&mut app, first).await
    } else {
        app.write_all(&head).await.unwrap();
        let got = read_to_end_or_error(&mut app, first).await;
        app.write_all(&up).await.unwrap();
        app.shutdown().await.unwrap();
        got
    };
    assert_eq!(
        err, None,
        "{:?} {t:?}: the application saw an error",
        p.route
    );
    assert_eq!(
        down.len(),
        want_down.len(),
        "{:?} {t:?}: bytes down before the FIN",
        p.route
    );
    assert!(
        down == want_down,
        "{:?} {t:?}: bytes down identical",
        p.route
    );
}

/// Transfers per route: sizes from nothing to several splice pipes'
/// worth, both half-close orders, four at a time.
async fn short_transfers_deliver_every_byte_and_the_fin(route: Route) {
    const SIZES: [u32; 6] = [0, 1, 1400, 16_384, 70_000, 600_000];
    const ROUNDS: usize = 96;
    let (origin, mut seen) = half_close_origin(route.origin_ip()).await;
    let p = proxy(route);
    let transfers: Vec<Transfer> = (0..ROUNDS)
        .map(|i| Transfer {
            app_first: i % 2 == 0,
            up: SIZES[i % SIZES.len()],
            down: SIZES[(i / 2 + 3) % SIZES.len()],
            seed: i as u8,
        })
        .collect();
    for batch in transfers.chunks(4) {
        let mut runs = tokio::task::JoinSet::new();
        for t in batch {
            runs.spawn(transfer(p.at, origin, *t));
        }
        while let Some(r) = runs.join_next().await {
            if let Err(e) = r {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
    let mut reports = Vec::new();
    for _ in 0..ROUNDS {
        let r = tokio::time::timeout(PATIENCE, seen.recv())
            .await
            .expect("every origin connection ends in time")
            .unwrap();
        reports.push(r);
    }
    for t in &transfers {
        let (_, up, fin) = reports
            .iter()
            .find(|(seed, _, _)| *seed == t.seed)
            .expect("the origin saw every transfer");
        assert!(*fin, "{route:?} {t:?}: the origin got the FIN");
        assert_eq!(up.len(), t.up as usize, "{route:?} {t:?}: bytes up");
        assert!(
            *up == pattern(t.seed, t.up as usize),
            "{route:?} {t:?}: bytes up identical"
        );
    }
}

/// Puts [`Route::ChainConvert`]'s origin address on `lo` (inside the
/// test's own namespace).
fn add_origin_address() {
    let ok = std::process::Command::new("ip")
        .args(["addr", "add", "198.18.0.2/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(ok.success());
}

macro_rules! every_route {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::Route;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn chain_socks6() {
                super::$name(Route::ChainSocks6).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn chain_socks6_tls() {
                super::$name(Route::ChainSocks6Tls).await;
            }

            #[test]
            fn chain_convert() {
                let ran = super::in_netns(|| async {
                    super::add_origin_address();
                    super::$name(Route::ChainConvert).await;
                });
                if ran.is_none() {
                    println!("SKIP {}::chain_convert: needs root", stringify!($name));
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_socks5() {
                super::$name(Route::ServerSocks5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_socks6() {
                super::$name(Route::ServerSocks6).await;
            }
        }
    )*};
}

every_route!(
    origin_reset_reaches_the_application,
    application_reset_reaches_the_origin,
    origin_closing_mid_upload_ends_the_application_connection,
    short_transfers_deliver_every_byte_and_the_fin,
);
