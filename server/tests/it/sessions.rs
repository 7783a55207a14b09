//! SOCKS6 sessions, idempotence tokens, Stack options and Operation Reply
//! codes: real servers on loopback, requests built with the protocol
//! crate's encoders, exact reply bytes.

#![allow(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sixpath_protocol::socks6::{
    AuthMethodAdvertisement, AuthReplyType, AuthenticationReply, Availability, Command, Leg,
    Method, OperationReply, ReplyCode, Request, SessionId, SocksOption, StackOption, StackValue,
    UsernamePassword, Window,
};
use sixpath_protocol::{Decoded, DomainName, Endpoint};
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Harness, TempDir, read_to_eof};

const USERS: &[(&str, &str)] = &[("user", "pass")];

pub(crate) fn request(command: Command, target: Endpoint, opts: Vec<SocksOption>) -> Request {
    let mut r = Request::new(command, target);
    for o in opts {
        r.options.push(o).unwrap();
    }
    r
}

pub(crate) fn bytes(r: &Request) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode(&mut v);
    v
}

pub(crate) fn noop(opts: Vec<SocksOption>) -> Vec<u8> {
    bytes(&request(Command::NOOP, Endpoint::unspecified(), opts))
}

fn credentials() -> Vec<SocksOption> {
    vec![
        SocksOption::AuthMethodAdvertisement(
            AuthMethodAdvertisement::new(0, [Method::USERNAME_PASSWORD]).unwrap(),
        ),
        UsernamePassword::new("user", "pass").unwrap().to_option(),
    ]
}

fn echo_target(h: &Harness) -> Endpoint {
    Endpoint::new(Ipv4Addr::LOCALHOST, h.echo.port())
}

/// Reads one message decoded by `decode`, byte by byte so nothing after it
/// is consumed; returns it with its wire bytes.
pub(crate) async fn read_msg<T, E: std::fmt::Debug>(
    s: &mut TcpStream,
    decode: impl Fn(&[u8]) -> Result<Decoded<T>, E>,
) -> (T, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Decoded::Complete { msg, len } = decode(&buf).unwrap() {
            assert_eq!(len, buf.len());
            return (msg, buf);
        }
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("reply in time")
            .unwrap();
        assert_eq!(n, 1, "closed mid-message after {buf:02x?}");
        buf.push(b[0]);
    }
}

pub(crate) async fn auth_reply(s: &mut TcpStream) -> (AuthenticationReply, Vec<u8>) {
    read_msg(s, AuthenticationReply::decode).await
}

pub(crate) async fn op_reply(s: &mut TcpStream) -> (OperationReply, Vec<u8>) {
    read_msg(s, OperationReply::decode).await
}

/// Sends a NOOP with a Session Request (and `extra` options) and returns
/// the Authentication Reply.
pub(crate) async fn open_session(h: &Harness, extra: Vec<SocksOption>) -> AuthenticationReply {
    let mut c = h.connect().await;
    let mut opts = vec![SocksOption::SessionRequest];
    opts.extend(extra);
    c.write_all(&noop(opts)).await.unwrap();
    let (auth, _) = auth_reply(&mut c).await;
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);
    auth
}

fn option_bytes(o: &SocksOption) -> Vec<u8> {
    let mut opts = sixpath_protocol::socks6::Options::new();
    opts.push(o.clone()).unwrap();
    let mut v = Vec::new();
    opts.encode(&mut v);
    v
}

/// `06 01 00 04 | 00 09 00 04`: failure with Session Invalid, then close.
const SESSION_INVALID: [u8; 8] = [6, 1, 0, 4, 0, 9, 0, 4];

#[tokio::test]
async fn session_request_gets_an_id_in_both_replies() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&noop(vec![SocksOption::SessionRequest]))
        .await
        .unwrap();
    let (auth, wire) = auth_reply(&mut c).await;
    let id = auth.options.session_id().expect("Session ID").clone();
    assert_eq!(id.as_bytes().len(), 36, "anonymous ID layout");
    // 06 00 00 28 | 00 06 00 28 <36-byte ID>
    assert_eq!(wire[..8], [6, 0, 0, 0x28, 0, 6, 0, 0x28]);
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);
    assert_eq!(
        op.options.session_id(),
        Some(&id),
        "copy in the Operation Reply"
    );
    assert_eq!(read_to_eof(&mut c).await, b"", "NOOP closes");
}

#[tokio::test]
async fn session_id_skips_authentication_on_a_password_server() {
    let h = Harness::start(Some(USERS)).await;
    let mut opts = credentials();
    opts.push(SocksOption::SessionRequest);
    let mut c = h.connect().await;
    c.write_all(&bytes(&request(Command::CONNECT, echo_target(&h), opts)))
        .await
        .unwrap();
    let (auth, _) = auth_reply(&mut c).await;
    let id = auth.options.session_id().expect("Session ID").clone();
    assert_eq!(id.as_bytes().len(), 40, "ID naming user `user`");
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.options.session_id(), Some(&id));
    drop(c);

    // No credentials, no advertisement: the session's user applies.
    let mut c = h.connect().await;
    let req = request(
        Command::CONNECT,
        echo_target(&h),
        vec![SocksOption::SessionId(id.clone())],
    );
    c.write_all(&bytes(&req)).await.unwrap();
    c.write_all(b"in session").await.unwrap();
    let (_, wire) = auth_reply(&mut c).await;
    assert_eq!(wire, [6, 0, 0, 4, 0, 8, 0, 4], "success with Session OK");
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);
    assert!(op.options.session_id().is_none(), "only a new session's ID");
    c.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, b"in session");

    // Without the session, the same request needs credentials.
    let mut c = h.connect().await;
    let req = request(Command::CONNECT, echo_target(&h), vec![]);
    c.write_all(&bytes(&req)).await.unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 8, 0, 3, 0, 8, 2, 0, 0, 0],
        "credentials required"
    );
}

#[tokio::test]
async fn forged_or_modified_session_id_gets_session_invalid() {
    let h = Harness::start(None).await;
    let auth = open_session(&h, vec![]).await;
    let id = auth.options.session_id().unwrap().clone();
    let mut flipped = id.as_bytes().to_vec();
    flipped[5] ^= 0x80;
    let mut truncated_tag = id.as_bytes().to_vec();
    truncated_tag.truncate(32);
    for bad in [
        flipped,
        truncated_tag,
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        vec![0; 36],
    ] {
        let mut c = h.connect().await;
        let req = request(
            Command::CONNECT,
            echo_target(&h),
            vec![SocksOption::SessionId(SessionId::new(bad).unwrap())],
        );
        c.write_all(&bytes(&req)).await.unwrap();
        c.write_all(b"must not arrive").await.unwrap();
        assert_eq!(read_to_eof(&mut c).await, SESSION_INVALID);
    }
}

#[tokio::test]
async fn teardown_ends_the_session() {
    let h = Harness::start(None).await;
    let auth = open_session(&h, vec![]).await;
    let id = auth.options.session_id().unwrap().clone();
    let mut c = h.connect().await;
    c.write_all(&noop(vec![
        SocksOption::SessionId(id.clone()),
        SocksOption::SessionTeardown,
    ]))
    .await
    .unwrap();
    // The tearing-down request is "not part of any session": no Session OK.
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    let mut c = h.connect().await;
    c.write_all(&noop(vec![SocksOption::SessionId(id)]))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SESSION_INVALID);
}

#[tokio::test]
async fn session_cap_reached_serves_the_request_without_a_session() {
    let h = Harness::start_custom(None, |s| s.sessions.max_sessions = 1).await;
    let first = open_session(&h, vec![]).await;
    assert!(first.options.session_id().is_some());
    let mut c = h.connect().await;
    c.write_all(&noop(vec![SocksOption::SessionRequest]))
        .await
        .unwrap();
    // "A proxy that cannot or will not create a session silently omits the
    // Session ID."
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    // The first session still works.
    let mut c = h.connect().await;
    let id = first.options.session_id().unwrap().clone();
    c.write_all(&noop(vec![SocksOption::SessionId(id)]))
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 0, 0, 4, 0, 8, 0, 4, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

fn key_file(dir: &TempDir, name: &str, byte: u8) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, [byte; 32]).unwrap();
    path
}

fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("sixpath-it-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

#[tokio::test]
async fn servers_sharing_a_secret_file_accept_each_others_session_ids() {
    let dir = temp_dir("shared-key");
    let shared = key_file(&dir, "fleet.key", 0x5a);
    let other = key_file(&dir, "other.key", 0xa5);
    // The key as `--secret-file` gives it.
    let with_key = |p: PathBuf| {
        move |s: &mut sixpath_server::config::Settings| {
            let opts = sixpath_server::config::Options {
                listen: vec!["127.0.0.1:0".into()],
                secret_file: Some(p),
                ..Default::default()
            };
            s.secret = opts.resolve().unwrap().secret;
        }
    };
    let a = Harness::start_custom(Some(USERS), with_key(shared.clone())).await;
    let b = Harness::start_custom(Some(USERS), with_key(shared)).await;
    let c = Harness::start_custom(Some(USERS), with_key(other)).await;

    let mut s = a.connect().await;
    let mut opts = credentials();
    opts.push(SocksOption::SessionRequest);
    s.write_all(&noop(opts)).await.unwrap();
    let (auth, _) = auth_reply(&mut s).await;
    let id = auth.options.session_id().expect("Session ID").clone();

    let use_id = noop(vec![SocksOption::SessionId(id)]);
    for (h, expected) in [
        (
            &b,
            &[6, 0, 0, 4, 0, 8, 0, 4, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0][..],
        ),
        (
            &a,
            &[6, 0, 0, 4, 0, 8, 0, 4, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0][..],
        ),
        (&c, &SESSION_INVALID[..]),
    ] {
        let mut s = h.connect().await;
        s.write_all(&use_id).await.unwrap();
        assert_eq!(read_to_eof(&mut s).await, expected, "server {}", h.server);
    }
}

#[tokio::test]
async fn anonymous_session_ids_are_refused_by_a_password_server_with_the_same_key() {
    let dir = temp_dir("anon-key");
    let key = key_file(&dir, "fleet.key", 0x33);
    let k1 = key.clone();
    let open = Harness::start_custom(None, move |s| s.secret = Secret::load(&k1).unwrap()).await;
    let closed =
        Harness::start_custom(Some(USERS), move |s| s.secret = Secret::load(&key).unwrap()).await;
    let auth = open_session(&open, vec![]).await;
    let id = auth.options.session_id().unwrap().clone();
    let mut s = closed.connect().await;
    s.write_all(&noop(vec![SocksOption::SessionId(id)]))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut s).await, SESSION_INVALID);
}

/// A target that records what each accepted connection sends.
async fn recording_target() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let i = {
                    let mut v = log.lock().unwrap();
                    v.push(Vec::new());
                    v.len() - 1
                };
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    log.lock().unwrap()[i].extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn token_window_is_advertised_and_a_replayed_token_is_refused() {
    let h = Harness::start(None).await;
    let auth = open_session(&h, vec![SocksOption::IdempotenceRequest(8)]).await;
    let id = auth.options.session_id().unwrap().clone();
    let window = auth.options.idempotence_window().expect("window granted");
    assert_eq!(window.size(), 8);

    let (target, seen) = recording_target().await;
    let spend = request(
        Command::CONNECT,
        Endpoint::from(target),
        vec![
            SocksOption::AuthMethodAdvertisement(AuthMethodAdvertisement::new(5, []).unwrap()),
            SocksOption::SessionId(id),
            // Not the lowest token: the window stays, only the bitmap
            // remembers the token.
            SocksOption::IdempotenceExpenditure(window.base().wrapping_add(2)),
        ],
    );
    let mut wire = bytes(&spend);
    wire.extend(b"first");

    let mut c = h.connect().await;
    c.write_all(&wire).await.unwrap();
    let (_, got) = auth_reply(&mut c).await;
    let mut expected = vec![6, 0, 0, 0x14, 0, 8, 0, 4];
    expected.extend(option_bytes(&SocksOption::IdempotenceWindow(window)));
    expected.extend([0, 0x0e, 0, 4]);
    assert_eq!(got, expected, "Session OK, window, Accepted");
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);

    // The same bytes again, as a replayed TFO SYN would carry them.
    let mut r = h.connect().await;
    r.write_all(&wire).await.unwrap();
    let mut expected = vec![6, 1, 0, 0x14, 0, 8, 0, 4];
    expected.extend(option_bytes(&SocksOption::IdempotenceWindow(window)));
    expected.extend([0, 0x0f, 0, 4]);
    assert_eq!(read_to_eof(&mut r).await, expected, "failure with Rejected");

    // Spending the lowest tokens slides the window past every spent one.
    for (token, new_base) in [(0, 1), (1, 3)] {
        let mut n = h.connect().await;
        n.write_all(&noop(vec![
            SocksOption::SessionId(auth.options.session_id().unwrap().clone()),
            SocksOption::IdempotenceExpenditure(window.base().wrapping_add(token)),
        ]))
        .await
        .unwrap();
        let slid = Window::new(window.base().wrapping_add(new_base), 8).unwrap();
        let mut expected = vec![6, 0, 0, 0x14, 0, 8, 0, 4];
        expected.extend(option_bytes(&SocksOption::IdempotenceWindow(slid)));
        expected.extend([0, 0x0e, 0, 4]);
        assert_eq!(
            read_to_eof(&mut n).await[..24],
            expected,
            "token base+{token}"
        );
    }

    c.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, b"");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![b"first".to_vec()],
        "the replay never reached the target"
    );
}

#[tokio::test]
async fn tokens_outside_a_session_are_ignored_and_without_a_window_rejected() {
    let h = Harness::start(None).await;
    // Outside a session: "the proxy MUST silently ignore them".
    let mut c = h.connect().await;
    c.write_all(&noop(vec![SocksOption::IdempotenceExpenditure(7)]))
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    // In a session without a window every token is ineligible.
    let auth = open_session(&h, vec![]).await;
    let id = auth.options.session_id().unwrap().clone();
    let mut c = h.connect().await;
    c.write_all(&noop(vec![
        SocksOption::SessionId(id),
        SocksOption::IdempotenceExpenditure(7),
    ]))
    .await
    .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 8, 0, 8, 0, 4, 0, 0x0f, 0, 4]
    );
}

// TCP_SAVE_SYN / TCP_SAVED_SYN (Linux 4.2+): the listener keeps each SYN's
// IP and TCP headers for the accepted socket, which shows the TOS, TTL and
// DF bit the proxy's outbound socket put on the wire.
const TCP_SAVE_SYN: libc::c_int = 27;
const TCP_SAVED_SYN: libc::c_int = 28;

fn save_syn(l: &TcpListener) {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_SAVE_SYN,
            std::ptr::from_ref(&one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_SAVE_SYN: {}", std::io::Error::last_os_error());
}

fn saved_syn(s: &TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes; the kernel writes at most that
    // and stores the written length in `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_SAVED_SYN,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_SAVED_SYN: {}", std::io::Error::last_os_error());
    buf.truncate(len as usize);
    buf
}

pub(crate) fn stack(leg: Leg, value: StackValue) -> SocksOption {
    SocksOption::Stack(StackOption::new(leg, value))
}

#[tokio::test]
async fn stack_options_are_applied_to_the_outbound_syn_and_echoed() {
    let h = Harness::start(None).await;
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    save_syn(&target);
    let req = request(
        Command::CONNECT,
        Endpoint::from(target.local_addr().unwrap()),
        vec![
            stack(Leg::PROXY_REMOTE, StackValue::Tos(0x28)),
            stack(Leg::PROXY_REMOTE, StackValue::Ttl(9)),
            stack(
                Leg::PROXY_REMOTE,
                StackValue::NoFragmentation(Availability::AVAILABLE),
            ),
            // An IP address target: Happy Eyeballs "MUST" be ignored.
            stack(
                Leg::PROXY_REMOTE,
                StackValue::HappyEyeballs(Availability::UNAVAILABLE),
            ),
        ],
    );
    let mut c = h.connect().await;
    c.write_all(&bytes(&req)).await.unwrap();
    let (accepted, _) = target.accept().await.unwrap();
    let (_, auth) = auth_reply(&mut c).await;
    assert_eq!(auth, [6, 0, 0, 0]);
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);
    let mut echoed = Vec::new();
    op.options.encode(&mut echoed);
    assert_eq!(
        echoed,
        [
            0, 1, 0, 8, 0x81, 1, 0x28, 0, // TOS 0x28, proxy-remote
            0, 1, 0, 8, 0x81, 3, 9, 0, // TTL 9
            0, 1, 0, 8, 0x81, 4, 2, 0, // No Fragmentation enforced
        ]
    );
    let syn = saved_syn(&accepted);
    assert_eq!(syn[0] >> 4, 4, "IPv4 header");
    assert_eq!(syn[1] & 0xfc, 0x28, "TOS (DSCP bits) on the SYN");
    assert_eq!(syn[8], 9, "TTL on the SYN");
    assert_eq!(syn[6] & 0x40, 0x40, "Don't Fragment on the SYN");
}

#[tokio::test]
async fn without_stack_options_the_syn_has_default_tos_and_ttl() {
    let h = Harness::start(None).await;
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    save_syn(&target);
    let req = request(
        Command::CONNECT,
        Endpoint::from(target.local_addr().unwrap()),
        vec![],
    );
    let mut c = h.connect().await;
    c.write_all(&bytes(&req)).await.unwrap();
    let (accepted, _) = target.accept().await.unwrap();
    let _ = auth_reply(&mut c).await;
    let (op, _) = op_reply(&mut c).await;
    assert!(op.options.is_empty(), "nothing to report");
    let syn = saved_syn(&accepted);
    assert_eq!(syn[1] & 0xfc, 0);
    let default_ttl = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl")
        .map_or(64, |s| s.trim().parse().unwrap());
    assert_eq!(syn[8], default_ttl);
}

#[tokio::test]
async fn both_leg_stack_options_report_the_legs_that_took_them() {
    let h = Harness::start(None).await;
    let req = request(
        Command::CONNECT,
        echo_target(&h),
        vec![
            stack(Leg::BOTH, StackValue::Tos(0x10)),
            stack(Leg::CLIENT_PROXY, StackValue::Ttl(33)),
            stack(
                Leg::CLIENT_PROXY,
                StackValue::NoFragmentation(Availability::UNAVAILABLE),
            ),
        ],
    );
    let mut c = h.connect().await;
    c.write_all(&bytes(&req)).await.unwrap();
    let _ = auth_reply(&mut c).await;
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(op.code, ReplyCode::SUCCESS);
    let opts: Vec<_> = op.options.stack().copied().collect();
    // TOS is set on both sockets (Linux takes IP_TOS on TCP and MPTCP
    // sockets); fragmentation allowed is reported as not enforced.
    assert!(
        opts.contains(&StackOption::new(Leg::BOTH, StackValue::Tos(0x10))),
        "{opts:?}"
    );
    assert!(opts.contains(&StackOption::new(
        Leg::CLIENT_PROXY,
        StackValue::NoFragmentation(Availability::UNAVAILABLE)
    )));
    // TTL on the client leg: reported exactly when the client socket took
    // it; then the client sees it on the server's packets.
    if opts.contains(&StackOption::new(Leg::CLIENT_PROXY, StackValue::Ttl(33))) {
        assert_eq!(opts.len(), 3);
    } else {
        assert_eq!(opts.len(), 2, "{opts:?}");
    }
}

#[tokio::test]
async fn happy_eyeballs_is_reported_for_a_domain_name_target() {
    let h = Harness::start(None).await;
    for he in [Availability::AVAILABLE, Availability::UNAVAILABLE] {
        let req = request(
            Command::CONNECT,
            Endpoint::new(DomainName::new("localhost").unwrap(), h.echo.port()),
            vec![stack(Leg::PROXY_REMOTE, StackValue::HappyEyeballs(he))],
        );
        let mut c = h.connect().await;
        c.write_all(&bytes(&req)).await.unwrap();
        let _ = auth_reply(&mut c).await;
        let (op, _) = op_reply(&mut c).await;
        assert_eq!(op.code, ReplyCode::SUCCESS);
        let mut echoed = Vec::new();
        op.options.encode(&mut echoed);
        assert_eq!(echoed, [0, 1, 0, 8, 0x81, 2, he.0, 0]);
    }
}

/// Sends a CONNECT to `target` and returns the whole answer.
pub(crate) async fn connect_answer(h: &Harness, target: Endpoint) -> Vec<u8> {
    let mut c = h.connect().await;
    c.write_all(&bytes(&request(Command::CONNECT, target, vec![])))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), read_to_eof(&mut c))
        .await
        .expect("answer in time")
}

pub(crate) fn failure(code: u8) -> [u8; 16] {
    [6, 0, 0, 0, 6, code, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
}

#[tokio::test]
async fn connect_failures_get_the_draft_reply_codes() {
    let h = Harness::start_custom(None, |s| {
        s.connect_timeout = Duration::from_secs(1);
        s.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "224.0.0.0/4").unwrap()];
    })
    .await;
    // 0x02: the egress policy (the harness denies 127.0.0.1:9; 10/8 is
    // private).
    for denied in [
        Endpoint::new(Ipv4Addr::LOCALHOST, 9),
        Endpoint::new(Ipv4Addr::new(10, 0, 0, 1), 80),
    ] {
        assert_eq!(connect_answer(&h, denied).await, failure(0x02));
    }
    // 0x03: the kernel has no unicast route (TCP to multicast).
    assert_eq!(
        connect_answer(&h, Endpoint::new(Ipv4Addr::new(224, 0, 0, 1), 80)).await,
        failure(0x03)
    );
    // 0x04: the name does not resolve (RFC 6761 `.invalid`).
    assert_eq!(
        connect_answer(
            &h,
            Endpoint::new(DomainName::new("no-such-host.invalid").unwrap(), 80)
        )
        .await,
        failure(0x04)
    );
    // 0x05: nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        connect_answer(&h, Endpoint::new(Ipv4Addr::LOCALHOST, port)).await,
        failure(0x05)
    );
    // 0x09: the SYN is never answered (a listener whose accept queue is
    // full drops it).
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let _queued = std::net::TcpStream::connect(addr).unwrap();
    assert_eq!(
        connect_answer(&h, Endpoint::from(addr)).await,
        failure(0x09)
    );
}

#[tokio::test]
async fn malformed_requests_get_07_08_and_01() {
    let h = Harness::start(None).await;
    let mut c = h.connect().await;
    c.write_all(&[6, 9, 0, 0, 0, 80, 0, 1, 127, 0, 0, 1])
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 0, 6, 7, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    let mut c = h.connect().await;
    c.write_all(&[6, 1, 0, 0, 0, 80, 0, 7, 127, 0, 0, 1])
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 0, 6, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
    // A domain name with a NUL inside: a malformed address, general failure.
    let mut c = h.connect().await;
    c.write_all(&[
        6, 1, 0, 0, 0, 80, 0, 3, 7, b'a', 0, b'b', b'.', b'c', b'o', b'm',
    ])
    .await
    .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 1, 0, 0, 6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn idle_session_expires_after_the_session_timeout() {
    let h = Harness::start_custom(None, |s| {
        s.sessions.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let auth = open_session(&h, vec![]).await;
    let id = auth.options.session_id().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut c = h.connect().await;
    c.write_all(&noop(vec![SocksOption::SessionId(id)]))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SESSION_INVALID);
}

/// A router in a network namespace this test creates, reached from the
/// host over a veth pair, for ICMP errors the kernel really sends:
/// `198.18.K.0/24` is routed to it; inside, `.0/26` is on a stub link
/// (reachable, so a TTL of 1 expires on the router), `.64/26` is an
/// `unreachable` route (ICMP host unreachable) and the rest has no route
/// (ICMP network unreachable). Removed on drop. Each router of the test
/// process gets its own names and `K`, so tests can run side by side.
pub(crate) struct Router {
    ns: String,
    host_if: String,
    k: u8,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Router {
    /// Builds the router; on failure whatever was made is removed (by
    /// `Drop` of the half-built value).
    pub(crate) fn create() -> Result<Self, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let k = ((pid + n * 67) % 251) as u8;
        let pid = format!("{pid}x{n}");
        let r = Self {
            ns: format!("spx-rt{pid}"),
            host_if: format!("spx-h{pid}"),
            k,
        };
        ip(&["netns", "add", &r.ns])?;
        let peer = format!("spx-p{pid}");
        let link = format!("198.19.{k}");
        let net = format!("198.18.{k}");
        let ns = r.ns.as_str();
        ip(&[
            "link", "add", &r.host_if, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", ns])?;
        ip(&["addr", "add", &format!("{link}.1/30"), "dev", &r.host_if])?;
        ip(&["link", "set", &r.host_if, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{link}.2/30"),
            "dev",
            &peer,
        ])?;
        ip(&["-n", ns, "link", "set", &peer, "up"])?;
        // A stub link (a veth pair, both ends inside) for the reachable part.
        ip(&[
            "-n", ns, "link", "add", "s0", "type", "veth", "peer", "name", "s1",
        ])?;
        ip(&["-n", ns, "addr", "add", &format!("{net}.1/26"), "dev", "s0"])?;
        ip(&["-n", ns, "link", "set", "s0", "up"])?;
        ip(&["-n", ns, "link", "set", "s1", "up"])?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "unreachable",
            &format!("{net}.64/26"),
        ])?;
        ip(&[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        // Every probe gets its ICMP error, however fast tests send them.
        ip(&[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.icmp_ratelimit=0",
        ])?;
        ip(&[
            "route",
            "add",
            &format!("{net}.0/24"),
            "via",
            &format!("{link}.2"),
        ])?;
        Ok(r)
    }

    pub(crate) fn target(&self, host: u8) -> Endpoint {
        Endpoint::new(self.ip(host), 80)
    }

    /// The address of `host` in the router's `198.18.K.0/24`.
    pub(crate) fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.k, host)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        // Deleting one end of the veth pair deletes both and the route.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

#[tokio::test]
async fn icmp_errors_from_a_router_get_reply_codes_03_04_and_06() {
    let router = match Router::create() {
        Ok(r) => r,
        Err(why) => {
            eprintln!(
                "SKIP icmp_errors_from_a_router_get_reply_codes_03_04_and_06: needs root and ip netns ({why})"
            );
            return;
        }
    };
    let h = Harness::start_custom(None, |s| {
        s.connect_timeout = Duration::from_secs(5);
        s.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap()];
    })
    .await;
    // 0x06: TTL 1 (Stack option) expires on the router: ICMP time exceeded.
    let mut c = h.connect().await;
    let req = request(
        Command::CONNECT,
        router.target(10),
        vec![stack(Leg::PROXY_REMOTE, StackValue::Ttl(1))],
    );
    c.write_all(&bytes(&req)).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, failure(0x06));
    // 0x04: ICMP host unreachable.
    assert_eq!(connect_answer(&h, router.target(70)).await, failure(0x04));
    // 0x03: ICMP network unreachable.
    assert_eq!(connect_answer(&h, router.target(130)).await, failure(0x03));
}

#[tokio::test]
async fn mptcp_stack_option_reports_what_the_outbound_connection_uses() {
    let h = Harness::start(None).await;
    let any: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    let (sock, is_mptcp) = sixpath_server::sys::stream_socket(&any, true).unwrap();
    sock.bind(&any.into()).unwrap();
    sock.listen(16).unwrap();
    sock.set_nonblocking(true).unwrap();
    let target = TcpListener::from_std(sock.into()).unwrap();
    let addr = target.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = target.accept().await {
            held.push(s);
        }
    });
    let cases = [
        // Not desired: plain TCP, reported as not available.
        (Availability::UNAVAILABLE, Availability::UNAVAILABLE),
        // Desired: MPTCP end to end when the kernel has it.
        (
            Availability::AVAILABLE,
            if is_mptcp {
                Availability::AVAILABLE
            } else {
                eprintln!("SKIP mptcp part: the kernel has no MPTCP (net.mptcp.enabled=0?)");
                Availability::UNAVAILABLE
            },
        ),
    ];
    for (asked, reported) in cases {
        let req = request(
            Command::CONNECT,
            Endpoint::from(addr),
            vec![stack(Leg::PROXY_REMOTE, StackValue::Mptcp(asked))],
        );
        let mut c = h.connect().await;
        c.write_all(&bytes(&req)).await.unwrap();
        let _ = auth_reply(&mut c).await;
        let (op, _) = op_reply(&mut c).await;
        assert_eq!(op.code, ReplyCode::SUCCESS);
        let mut echoed = Vec::new();
        op.options.encode(&mut echoed);
        assert_eq!(
            echoed,
            [0, 1, 0, 8, 0x84, 2, reported.0, 0],
            "asked {asked:?}"
        );
    }
}

/// The TCP option kinds of a saved IPv4 SYN.
fn tcp_option_kinds(syn: &[u8]) -> Vec<u8> {
    let ihl = usize::from(syn[0] & 0x0f) * 4;
    let doff = usize::from(syn[ihl + 12] >> 4) * 4;
    let mut opts = &syn[ihl + 20..ihl + doff];
    let mut kinds = Vec::new();
    while let [kind, rest @ ..] = opts {
        match kind {
            0 => break,
            1 => opts = rest,
            _ => {
                kinds.push(*kind);
                let len = usize::from(rest[0]).max(2);
                opts = &opts[len.min(opts.len())..];
            }
        }
    }
    kinds
}

#[tokio::test]
async fn a_target_that_answered_mptcp_with_tcp_gets_plain_tcp_next_time() {
    const MPTCP_OPTION: u8 = 30;
    let any: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    if !sixpath_server::sys::stream_socket(&any, true).unwrap().1 {
        eprintln!("SKIP: the kernel has no MPTCP (net.mptcp.enabled=0?)");
        return;
    }
    let h = Harness::start(None).await;
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    save_syn(&target);
    let req = request(
        Command::CONNECT,
        Endpoint::from(target.local_addr().unwrap()),
        vec![stack(
            Leg::PROXY_REMOTE,
            StackValue::Mptcp(Availability::AVAILABLE),
        )],
    );
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let mut c = h.connect().await;
        c.write_all(&bytes(&req)).await.unwrap();
        let (accepted, _) = target.accept().await.unwrap();
        let _ = auth_reply(&mut c).await;
        let (op, _) = op_reply(&mut c).await;
        assert_eq!(op.code, ReplyCode::SUCCESS);
        let mut echoed = Vec::new();
        op.options.encode(&mut echoed);
        assert_eq!(echoed, [0, 1, 0, 8, 0x84, 2, 1, 0], "MPTCP not in use");
        kinds.push(tcp_option_kinds(&saved_syn(&accepted)));
    }
    assert!(
        kinds[0].contains(&MPTCP_OPTION),
        "the first SYN asks for MPTCP: {:?}",
        kinds[0]
    );
    assert!(
        !kinds[1].contains(&MPTCP_OPTION),
        "the second SYN is plain TCP: {:?}",
        kinds[1]
    );
}

#[tokio::test]
async fn session_ends_when_its_user_is_removed_from_the_users_file() {
    let dir = temp_dir("removed-user");
    let users = dir.0.join("users.json");
    let write_users = |names: &[&str]| {
        let list: Vec<_> = names
            .iter()
            .map(|n| serde_json::json!({"username": n, "password": "pass"}))
            .collect();
        std::fs::write(&users, serde_json::json!({ "users": list }).to_string()).unwrap();
    };
    write_users(&["user", "other"]);
    let mut settings =
        sixpath_server::config::Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.users = Some(users.clone());
    let server = sixpath_server::server::Server::bind(settings).unwrap();
    let addr = server.local_addrs()[0];
    let reload = server.reload_handle();
    tokio::spawn(server.run(std::future::pending()));

    let mut opts = credentials();
    opts.push(SocksOption::SessionRequest);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&noop(opts)).await.unwrap();
    let (auth, _) = auth_reply(&mut c).await;
    let id = auth.options.session_id().expect("Session ID").clone();
    let use_id = noop(vec![SocksOption::SessionId(id)]);

    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&use_id).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await[..8], [6, 0, 0, 4, 0, 8, 0, 4]);

    write_users(&["other"]);
    reload.reload_users();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&use_id).await.unwrap();
    assert_eq!(read_to_eof(&mut c).await, SESSION_INVALID);
}

/// A NOOP with a Session Request (and `extra` options) from `from`: the
/// Session ID the server granted, if any; the request itself must succeed.
async fn session_from(h: &Harness, from: &str, extra: Vec<SocksOption>) -> Option<SessionId> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(h.server).await.unwrap();
    let mut opts = extra;
    opts.push(SocksOption::SessionRequest);
    c.write_all(&noop(opts)).await.unwrap();
    let (auth, _) = auth_reply(&mut c).await;
    assert_eq!(auth.reply_type, AuthReplyType::SUCCESS);
    let (op, _) = op_reply(&mut c).await;
    assert_eq!(
        op.code,
        ReplyCode::SUCCESS,
        "served, with or without a session"
    );
    auth.options.session_id().cloned()
}

/// The admin endpoint's `/metrics` page.
async fn metrics(h: &Harness) -> String {
    let mut s = TcpStream::connect(h.admin.unwrap()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    String::from_utf8(read_to_eof(&mut s).await).unwrap()
}

fn credentials_of(user: &str, pass: &str) -> Vec<SocksOption> {
    vec![UsernamePassword::new(user, pass).unwrap().to_option()]
}

#[tokio::test]
async fn one_user_beyond_64_sessions_is_served_without_one_and_other_users_still_get_theirs() {
    let h = Harness::start_custom(Some(&[("user", "pass"), ("zed", "word")]), |s| {
        s.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    for i in 0..64 {
        assert!(
            session_from(&h, "127.0.0.1", credentials_of("user", "pass"))
                .await
                .is_some(),
            "session {i} of 64"
        );
    }
    // The 65th of the same user, from another address: served, no session.
    assert_eq!(
        session_from(&h, "127.0.0.2", credentials_of("user", "pass")).await,
        None
    );
    // Another user still gets one.
    assert!(
        session_from(&h, "127.0.0.1", credentials_of("zed", "word"))
            .await
            .is_some()
    );
    let page = metrics(&h).await;
    for line in [
        "sixpath_server_sessions_refused_total{cap=\"per_user\"} 1",
        "sixpath_server_sessions_refused_total{cap=\"per_source\"} 0",
        "sixpath_server_sessions_refused_total{cap=\"total\"} 0",
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "missing {line:?} in\n{page}"
        );
    }
}

#[tokio::test]
async fn one_source_beyond_256_sessions_is_served_without_one_and_other_sources_still_get_theirs() {
    let h = Harness::start_custom(None, |s| {
        s.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    for i in 0..256 {
        assert!(
            session_from(&h, "127.0.0.1", vec![]).await.is_some(),
            "session {i} of 256"
        );
    }
    assert_eq!(session_from(&h, "127.0.0.1", vec![]).await, None);
    assert!(session_from(&h, "127.0.0.2", vec![]).await.is_some());
    let page = metrics(&h).await;
    assert!(
        page.lines()
            .any(|l| l == "sixpath_server_sessions_refused_total{cap=\"per_source\"} 1"),
        "{page}"
    );
}
