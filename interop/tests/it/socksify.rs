//! Dante's SOCKS client library (`socksify`, Debian `dante-client`)
//! carrying an application's UDP through `sixpath-server`'s SOCKS5 UDP
//! ASSOCIATE, and through `sixpath-client` (SOCKS5 UDP ASSOCIATE carried
//! as SOCKS6 UDP ASSOCIATE to the server).
//!
//! Dante sends traffic to local networks directly, so the application runs
//! in a network namespace made for the test, joined to this one by a veth
//! pair with /32 addresses from 198.19.0.0/16 (198.18.0.0/15): the server
//! and a small DNS responder, both in this process, sit on the far end.
//! The application is a five-line Python program using `sendto` and
//! `recvfrom`, which Dante intercepts (`dig` sends with `sendmsg`, which
//! this Dante version passes through unproxied).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};

use sixpath_client::client::Client;
use sixpath_client::config::Settings as ClientSettings;
use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::net::UdpSocket;

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A network namespace with a veth pair to this one; removed on drop
/// (deleting the namespace deletes the pair).
struct Netns {
    name: String,
    outer: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.outer]);
    }
}

impl Netns {
    /// `here` on this side, `there` inside the namespace, routed to each
    /// other as /32 host routes.
    /// `tag` (one character) tells apart namespaces of tests running at
    /// the same time.
    fn create(here: Ipv4Addr, there: Ipv4Addr, tag: char) -> Option<Self> {
        let id = std::process::id();
        let ns = Self {
            name: format!("sixpath-udp-{id}{tag}"),
            outer: format!("sxu{}{tag}a", id % 100_000),
        };
        let inner = format!("sxu{}{tag}b", id % 100_000);
        let (h, t) = (format!("{here}/32"), format!("{there}/32"));
        let n = ns.name.as_str();
        let steps: [&[&str]; 10] = [
            &["netns", "add", n],
            &[
                "link", "add", &ns.outer, "type", "veth", "peer", "name", &inner,
            ],
            &["link", "set", &inner, "netns", n],
            &["addr", "add", &h, "dev", &ns.outer],
            &["link", "set", &ns.outer, "up"],
            &["route", "add", &t, "dev", &ns.outer],
            &["-n", n, "link", "set", "lo", "up"],
            &["-n", n, "addr", "add", &t, "dev", &inner],
            &["-n", n, "link", "set", &inner, "up"],
            &["-n", n, "route", "add", &h, "dev", &inner],
        ];
        steps.iter().all(|s| ip(s)).then_some(ns)
    }
}

/// A DNS responder answering every query with one A record, 198.18.0.7,
/// and recording where queries came from.
async fn dns_responder(addr: Ipv4Addr) -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let sock = UdpSocket::bind((addr, 0)).await.unwrap();
    let local = sock.local_addr().unwrap();
    let sources = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&sources);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            log.lock().unwrap().push(from);
            if let Some(answer) = dns_answer(&buf[..n]) {
                let _ = sock.send_to(&answer, from).await;
            }
        }
    });
    (local, sources)
}

/// The answer to a one-question query: same ID and question, flags
/// `81 80`, one A record pointing at the question's name.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let body = query.get(12..)?;
    let name_end = body.iter().position(|&b| b == 0)?;
    let question = body.get(..name_end + 5)?;
    let mut a = query.get(..2)?.to_vec();
    a.extend([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    a.extend(question);
    a.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 7]);
    Some(a)
}

/// A query for `example.test` A with ID 0x1234.
fn dns_query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7];
    q.extend(b"example");
    q.push(4);
    q.extend(b"test");
    q.extend([0, 0, 1, 0, 1]);
    q
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socksify_carries_a_dns_query_over_socks5_udp_associate() {
    let name = "socksify_carries_a_dns_query_over_socks5_udp_associate";
    for program in ["socksify", "python3", "ip"] {
        if !in_path(program) {
            println!("SKIP {name}: {program} not installed");
            return;
        }
    }
    let octet = (std::process::id() % 250) as u8 + 1;
    let here = Ipv4Addr::new(198, 19, octet, 1);
    let there = Ipv4Addr::new(198, 19, octet, 2);
    let Some(ns) = Netns::create(here, there, 's') else {
        println!("SKIP {name}: cannot create a network namespace (not root?)");
        return;
    };
    let (dns, sources) = dns_responder(here).await;
    let mut settings = Settings::for_listeners(&[SocketAddr::from((here, 0))]);
    settings.allow_anonymous = true;
    settings.egress_rules =
        vec![EgressRule::parse(RuleAction::Allow, &format!("{here}/32")).unwrap()];
    let server = Server::bind(settings).unwrap();
    let proxy = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));

    let out = socksify_query(&ns, proxy, dns, "server").await;
    let expected = format!(
        "{} {} {}\n",
        dns.ip(),
        dns.port(),
        hex(&dns_answer(&dns_query()).unwrap())
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // The query reached the responder from the server's relay socket, not
    // straight from the namespace.
    let from = sources.lock().unwrap().clone();
    assert_eq!(from.len(), 1, "{from:?}");
    assert_eq!(from[0].ip(), here, "relayed by the server");
    assert_ne!(from[0].port(), proxy.port());
    drop(ns);
}

/// Runs the Python sender under `socksify` in `ns`, through the SOCKS5
/// proxy at `proxy`, querying `dns`; returns its output.
async fn socksify_query(
    ns: &Netns,
    proxy: SocketAddr,
    dns: SocketAddr,
    tag: &str,
) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("sixpath-socksify-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = DirGuard(dir.clone());
    let conf = dir.join("dante.conf");
    std::fs::write(
        &conf,
        format!(
            "route {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0 via: {} port = {}\n  \
             proxyprotocol: socks_v5\n  command: connect udpassociate\n  method: none\n}}\n",
            proxy.ip(),
            proxy.port()
        ),
    )
    .unwrap();
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(10)\n\
         s.sendto(bytes.fromhex('{}'), ('{}', {}))\n\
         d, a = s.recvfrom(512)\n\
         print(a[0], a[1], d.hex())\n",
        hex(&dns_query()),
        dns.ip(),
        dns.port()
    );
    tokio::task::spawn_blocking({
        let ns = ns.name.clone();
        move || {
            Command::new("ip")
                .args(["netns", "exec", &ns, "env"])
                .arg(format!("SOCKS_CONF={}", conf.display()))
                .args(["timeout", "30", "socksify", "python3", "-c", &script])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socksify_carries_a_dns_query_through_the_client_over_socks6_udp() {
    let name = "socksify_carries_a_dns_query_through_the_client_over_socks6_udp";
    for program in ["socksify", "python3", "ip"] {
        if !in_path(program) {
            println!("SKIP {name}: {program} not installed");
            return;
        }
    }
    let octet = (std::process::id() % 250) as u8 + 1;
    let here = Ipv4Addr::new(198, 19, octet, 5);
    let there = Ipv4Addr::new(198, 19, octet, 6);
    let Some(ns) = Netns::create(here, there, 'c') else {
        println!("SKIP {name}: cannot create a network namespace (not root?)");
        return;
    };
    let (dns, sources) = dns_responder(here).await;
    // The server on loopback, the client's front-end facing the
    // namespace.
    let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
    settings.egress_rules =
        vec![EgressRule::parse(RuleAction::Allow, &format!("{here}/32")).unwrap()];
    let server = Server::bind(settings).unwrap();
    let server_addr = server.local_addrs()[0];
    let server_task = tokio::spawn(server.run(std::future::pending()));
    let mut cs = ClientSettings::new(server_addr, SocketAddr::from((here, 0)));
    cs.allow_anonymous = true;
    let client = Client::bind(cs).unwrap();
    let proxy = client.local_addrs()[0];
    let client_task = tokio::spawn(client.run(std::future::pending()));

    let out = socksify_query(&ns, proxy, dns, "client").await;
    client_task.abort();
    server_task.abort();
    assert!(
        out.status.success(),
        "socksify python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "{} {} {}\n",
        dns.ip(),
        dns.port(),
        hex(&dns_answer(&dns_query()).unwrap())
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // The query reached the responder from the server's relay socket (on
    // loopback's side of the routing: the host address), not from the
    // namespace.
    let from = sources.lock().unwrap().clone();
    assert_eq!(from.len(), 1, "{from:?}");
    assert_ne!(from[0].ip(), there, "relayed, not sent from the namespace");
    drop(ns);
}

struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
