//! A fleet: three `sixpath-server` instances behind one service address.
//!
//! On the testbed (without its own server) the operator namespace becomes
//! a layer-4 balancer: nftables DNATs 198.18.0.1 on the instances' port
//! (the kernel's pick for the first instance, which the others share) to
//! one of three instance namespaces by a hash of the client's address and
//! port, so two subflows of one connection would land on different
//! instances. Each instance (`<tb>-iN`, veth to the operator) has the
//! address the balancer forwards to, 198.18.1N.2, and its own advertised
//! address 198.18.2N.2 (`--advertise`); all share `--secret-file` and a
//! `redis-server` in the operator namespace (`--state`). The phone's
//! endpoints are `fullmesh`, so it joins an announced address from Wi-Fi
//! and LTE.
//!
//! Asserted: every connection's extra subflows (from Wi-Fi and LTE) end on
//! one advertised address, and the instance behind it is the one whose
//! `/stats` holds the connection; none joins the service address; a 0-RTT
//! token granted by one instance is accepted once on a second and refused
//! on a third; killing one instance ends only its own connections.
//! Then `sixpath-client` itself on the phone (`--path wlan0 --path lte0`,
//! its own `subflow laminar` endpoints), over two IPv4 paths and with
//! IPv6-only LTE: a download through it keeps its bytes, its LTE subflow
//! joins one instance's advertised address and carries a real share.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sixpath_protocol::socks6::{
    AuthReplyType, AuthenticationReply, Command as Socks6Command, Request, SocksOption,
};
use sixpath_protocol::{Decoded, Endpoint};

use crate::bed::{self, Ns, ORIGIN, PHONE_WLAN, SERVER, Testbed};
use crate::netns::{free_port, spawn_in};

const INSTANCES: u8 = 3;
const CONNECTIONS: usize = 9;

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether every program the fleet needs is installed; prints SKIP if
/// not.
fn have_all(test: &str) -> bool {
    for program in ["redis-server", "nft", "curl", "python3"] {
        if !have(program) {
            println!("SKIP {test}: {program} not installed");
            return false;
        }
    }
    true
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The instance namespaces and their processes; gone on drop.
struct Fleet {
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: std::path::PathBuf,
    /// The port every instance listens on, and the balancer forwards.
    port: u16,
    /// Each instance's admin endpoint (in its namespace).
    admins: Vec<SocketAddr>,
    /// The echo origin in the internet namespace.
    echo: SocketAddr,
}

impl Fleet {
    /// The service address: the balancer in the operator namespace.
    fn service(&self) -> SocketAddr {
        SocketAddr::new(SERVER.parse().unwrap(), self.port)
    }

    /// Instance `i`'s `/stats`.
    fn stats(&self, i: u8) -> serde_json::Value {
        let n = usize::from(i - 1);
        stats(&self.namespaces[n], self.admins[n])
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn instance_ns(tb: &Testbed, i: u8) -> String {
    format!("{}-i{i}", tb.ns(Ns::Operator).trim_end_matches("-operator"))
}

fn advertised(i: u8) -> IpAddr {
    IpAddr::from([198, 18, 20 + i, 2])
}

/// An instance's `/stats` from its admin endpoint `admin` (curl inside its
/// namespace).
fn stats(ns: &str, admin: SocketAddr) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "5"])
        .arg(format!("http://{admin}/stats"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A SOCKS5 connection from the phone's Wi-Fi address to the echo origin
/// through the service address; answers its stream once one byte went
/// through.
fn socks5_echo(service: SocketAddr, origin: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::MPTCP),
    )
    .unwrap();
    let local: SocketAddr = format!("{PHONE_WLAN}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    sock.connect_timeout(&service.into(), Duration::from_secs(5))
        .unwrap();
    let mut s = TcpStream::from(sock);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let SocketAddr::V4(o) = origin else {
        panic!("IPv4 origin")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&o.ip().octets());
    req.extend_from_slice(&o.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], [5, 0, 5, 0], "SOCKS5 connect through the fleet");
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    s
}

/// The (local, remote) addresses of `s`'s subflows once it has three (or
/// after 10 s).
fn subflows(s: &TcpStream) -> Vec<(SocketAddr, SocketAddr)> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let subflows = sixpath_net::mptcp::subflows(s).unwrap_or_default();
        if subflows.len() >= 3 || Instant::now() > until {
            return subflows
                .iter()
                .filter_map(|f| Some((f.local?, f.remote?)))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A SOCKS6 NOOP with `opts` to an instance's own address: the
/// Authentication Reply.
fn socks6_noop(instance: SocketAddr, opts: &[SocksOption]) -> AuthenticationReply {
    let mut req = Request::new(Socks6Command::NOOP, Endpoint::unspecified());
    for o in opts {
        req.options.push(o.clone()).unwrap();
    }
    let mut wire = Vec::new();
    req.encode(&mut wire);
    let mut s = TcpStream::connect_timeout(&instance, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&wire).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Decoded::Complete { msg, .. } = AuthenticationReply::decode(&buf).unwrap() {
            return msg;
        }
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 1, "reply from {instance}");
        buf.push(b[0]);
    }
}

/// `ip ARGS` (whitespace-separated), which must succeed.
fn ip(args: &str) {
    let args: Vec<&str> = std::iter::once("ip")
        .chain(args.split_whitespace())
        .collect();
    sh(&args);
}

/// An instance's IPv6 advertised address (dual stack).
fn advertised6(i: u8) -> IpAddr {
    IpAddr::from([0xfd00, 0x20 + u16::from(i), 0, 0, 0, 0, 0, 2])
}

/// The fleet on `tb` (started `--no-server`): the store, the echo origin,
/// three instances, the balancer, the phone's endpoints. With `dual`, the
/// phone's LTE is IPv6 only (`fd00:2::2`), the instances listen on `[::]`
/// and also advertise `fd00:2N::2`.
fn fleet_up(tb: &Testbed, dual: bool) -> Fleet {
    let (op, phone, inet) = (tb.ns(Ns::Operator), tb.ns(Ns::Phone), tb.ns(Ns::Internet));
    let dir = std::env::temp_dir().join(format!("sixpath-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let echo_port = free_port(&inet, ORIGIN);
    let mut fleet = Fleet {
        namespaces: Vec::new(),
        children: Vec::new(),
        dir: dir.clone(),
        port: 0,
        admins: Vec::new(),
        echo: SocketAddr::new(ORIGIN.parse().unwrap(), echo_port),
    };
    let key = dir.join("fleet.key");
    std::fs::write(&key, [0x17; 32]).unwrap();
    let redis_port = free_port(&op, SERVER);
    fleet.children.push(
        Command::new("ip")
            .args(["netns", "exec", &op, "redis-server", "--bind", SERVER])
            .args([
                "--port",
                &redis_port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    fleet.children.push(
        Command::new("ip")
            .args(["netns", "exec", &inet, "python3", "-c"])
            .arg(format!(
                "import socketserver\n\
                 class H(socketserver.BaseRequestHandler):\n\
                 \x20   def handle(self):\n\
                 \x20       while (d := self.request.recv(65536)):\n\
                 \x20           self.request.sendall(d)\n\
                 socketserver.ThreadingTCPServer.allow_reuse_address = True\n\
                 socketserver.ThreadingTCPServer(('{ORIGIN}', {echo_port}), H).serve_forever()\n"
            ))
            .spawn()
            .unwrap(),
    );
    // Python takes a while to start on a loaded machine: a test that
    // connected before it listened got "connection refused".
    bed::wait_listening(&inet, echo_port, fleet.children.last_mut().unwrap(), None);
    if dual {
        ip(&format!(
            "netns exec {op} sysctl -qw net.ipv6.conf.all.forwarding=1"
        ));
        ip(&format!(
            "-n {phone} addr del {}/24 dev lte0",
            bed::PHONE_LTE
        ));
        ip(&format!(
            "-n {phone} addr add {PHONE_LTE6}/64 dev lte0 nodad"
        ));
        ip(&format!("-n {op} addr add fd00:2::1/64 dev op_lte nodad"));
        ip(&format!(
            "-n {phone} -6 route add default via fd00:2::1 dev lte0"
        ));
    }
    let server_bin = bed::binary("sixpath-server");
    let mut targets = Vec::new();
    for i in 1..=INSTANCES {
        let ns = instance_ns(tb, i);
        ip(&format!("netns add {ns}"));
        fleet.namespaces.push(ns.clone());
        let (op_addr, inst_addr) = (format!("198.18.1{i}.1"), format!("198.18.1{i}.2"));
        targets.push(inst_addr.clone());
        ip(&format!(
            "-n {op} link add op_i{i} type veth peer name eth0 netns {ns}"
        ));
        ip(&format!("-n {op} addr add {op_addr}/24 dev op_i{i}"));
        ip(&format!("-n {op} link set op_i{i} up"));
        ip(&format!(
            "-n {op} route add {}/32 via {inst_addr}",
            advertised(i)
        ));
        ip(&format!("-n {ns} link set lo up"));
        ip(&format!("-n {ns} addr add {inst_addr}/24 dev eth0"));
        ip(&format!("-n {ns} addr add {}/32 dev eth0", advertised(i)));
        ip(&format!("-n {ns} link set eth0 up"));
        ip(&format!("-n {ns} route add default via {op_addr}"));
        ip(&format!(
            "-n {ns} mptcp limits set subflows 4 add_addr_accepted 0"
        ));
        ip(&format!(
            "netns exec {ns} sysctl -qw net.ipv4.conf.all.rp_filter=0"
        ));
        // Data in SYNs accepted (docs/deploy.md): SYN data from a client
        // that the server drops makes the kernel fall back to TCP
        // (MPTcpExtMPCapableDataFallback on the client).
        ip(&format!(
            "netns exec {ns} sysctl -qw net.ipv4.tcp_fastopen=3"
        ));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(&server_bin)
            .args(["--allow-anonymous", "--allow-egress", "198.18.0.0/15"])
            .args(["--admin", "127.0.0.1:0", "--secret-file"])
            .arg(&key)
            .args(["--state", &format!("redis://{SERVER}:{redis_port}/0")])
            .args(["--advertise", &advertised(i).to_string()]);
        if dual {
            ip(&format!(
                "-n {op} addr add fd00:1{i}::1/64 dev op_i{i} nodad"
            ));
            ip(&format!(
                "-n {op} route add {}/128 via fd00:1{i}::2",
                advertised6(i)
            ));
            ip(&format!("-n {ns} addr add fd00:1{i}::2/64 dev eth0 nodad"));
            ip(&format!(
                "-n {ns} addr add {}/128 dev eth0 nodad",
                advertised6(i)
            ));
            ip(&format!("-n {ns} -6 route add default via fd00:1{i}::1"));
            cmd.args([
                "--listen",
                &format!("[::]:{}", fleet.port),
                "--advertise",
                &advertised6(i).to_string(),
            ]);
        } else {
            cmd.args(["--listen", &format!("0.0.0.0:{}", fleet.port)]);
        }
        let log_path = dir.join(format!("i{i}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        fleet
            .children
            .push(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap());
        // The first instance listens on a port the kernel picks; the others
        // take the same one, each alone in its own new namespace: the
        // balancer keeps the port, and subflows join an advertised address
        // on the port of their connection.
        let child = fleet.children.last_mut().unwrap();
        let listen = bed::logged_addr(&log_path, "listening", child);
        if fleet.port == 0 {
            fleet.port = listen.port();
        }
        assert_eq!(listen.port(), fleet.port, "instance {i}'s port");
        let admin = bed::logged_addr(&log_path, "admin endpoint", child);
        fleet.admins.push(admin);
    }
    let port = fleet.port;
    // The balancer: a hash of the source address and port picks the
    // instance, per subflow.
    let map = targets
        .iter()
        .enumerate()
        .map(|(n, t)| format!("{n} : {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rules = format!(
        "table ip sixpath_fleet {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  \
         ip daddr {SERVER} tcp dport {port} dnat to jhash ip saddr . tcp sport mod {INSTANCES} map {{ {map} }}\n }}\n}}\n"
    );
    let rules_file = dir.join("fleet.nft");
    std::fs::write(&rules_file, rules).unwrap();
    ip(&format!("netns exec {op} nft -f {}", rules_file.display()));
    // The phone joins announced addresses from both interfaces.
    let lte = if dual { PHONE_LTE6 } else { bed::PHONE_LTE };
    ip(&format!("-n {phone} mptcp endpoint flush"));
    ip(&format!(
        "-n {phone} mptcp limits set subflows 4 add_addr_accepted 4"
    ));
    ip(&format!(
        "-n {phone} mptcp endpoint add {PHONE_WLAN} dev wlan0 id 1 subflow fullmesh"
    ));
    ip(&format!(
        "-n {phone} mptcp endpoint add {lte} dev lte0 id 2 subflow fullmesh"
    ));
    // Every instance up (admin answers).
    let until = Instant::now() + Duration::from_secs(20);
    for (ns, admin) in fleet.namespaces.iter().zip(&fleet.admins) {
        while stats(ns, *admin).is_null() {
            assert!(
                Instant::now() < until,
                "{ns} starts: {}",
                std::fs::read_to_string(dir.join("i1.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fleet
}

/// The phone's LTE address in the dual-stack fleet.
const PHONE_LTE6: &str = "fd00:2::2";

#[test]
fn a_fleet_behind_an_nftables_balancer_keeps_each_connection_on_one_instance() {
    const TEST: &str = "a_fleet_behind_an_nftables_balancer_keeps_each_connection_on_one_instance";
    if !bed::can_run(TEST) || !have_all(TEST) {
        return;
    }
    let tb = Testbed::up(&["--no-server", "--wlan-delay", "0", "--lte-delay", "0"]);
    let phone = tb.ns(Ns::Phone);
    let mut fleet = fleet_up(&tb, false);
    let (origin, service, port) = (fleet.echo, fleet.service(), fleet.port);
    let conns = spawn_in(&phone, move || {
        let conns: Vec<(TcpStream, Vec<(SocketAddr, SocketAddr)>)> = (0..CONNECTIONS)
            .map(|_| {
                let s = socks5_echo(service, origin);
                let r = subflows(&s);
                (s, r)
            })
            .collect();
        conns
    })
    .join()
    .unwrap();

    let mut per_instance: BTreeMap<u8, usize> = BTreeMap::new();
    let mut owner = Vec::new();
    for (_, flows) in &conns {
        assert_eq!(
            flows.iter().filter(|(_, r)| *r == service).count(),
            1,
            "only the first subflow on the service address: {flows:?}"
        );
        assert!(
            flows
                .iter()
                .any(|(l, r)| *r != service && l.ip().to_string() == bed::PHONE_LTE),
            "a join over LTE: {flows:?}"
        );
        let joined: Vec<IpAddr> = flows
            .iter()
            .filter(|(_, r)| *r != service)
            .map(|(_, r)| r.ip())
            .collect();
        assert!(joined.len() >= 2, "joins from Wi-Fi and LTE: {flows:?}");
        let first = joined[0];
        assert!(
            joined.iter().all(|a| *a == first),
            "one instance: {flows:?}"
        );
        let i = (1..=INSTANCES)
            .find(|i| advertised(*i) == first)
            .expect("an advertised address");
        *per_instance.entry(i).or_default() += 1;
        owner.push(i);
    }
    for i in 1..=INSTANCES {
        let open = fleet.stats(i)["connections"]["open"].as_u64().unwrap();
        assert_eq!(
            open,
            per_instance.get(&i).copied().unwrap_or(0) as u64,
            "instance {i} holds the connections whose subflows joined it ({per_instance:?})"
        );
    }

    // A 0-RTT token granted by instance 1 is spent once on instance 2 and
    // refused as a replay on instance 3 (each reached on its own address).
    let instance = move |i: u8| SocketAddr::new(advertised(i), port);
    let verdicts = spawn_in(&phone, move || {
        let window = socks6_noop(
            instance(1),
            &[
                SocksOption::SessionRequest,
                SocksOption::IdempotenceRequest(8),
            ],
        );
        let id = window.options.session_id().expect("session").clone();
        let w = window.options.idempotence_window().expect("window");
        let token = w.base().wrapping_add(3);
        let verdicts = [2, 3].map(|i| {
            let r = socks6_noop(
                instance(i),
                &[
                    SocksOption::SessionId(id.clone()),
                    SocksOption::IdempotenceExpenditure(token),
                ],
            );
            r.reply_type == AuthReplyType::SUCCESS
        });
        // More spends, for the store latency below: each lowest token in
        // turn, on every instance.
        for k in 0..60u32 {
            if k == 3 {
                continue;
            }
            let r = socks6_noop(
                instance(1 + (k % 3) as u8),
                &[
                    SocksOption::SessionId(id.clone()),
                    SocksOption::IdempotenceExpenditure(w.base().wrapping_add(k)),
                ],
            );
            assert_eq!(r.reply_type, AuthReplyType::SUCCESS, "token base+{k}");
        }
        verdicts
    })
    .join()
    .unwrap();
    assert_eq!(verdicts, [true, false], "accepted on 2, refused on 3");

    // Measured, not asserted (docs/deploy.md quotes them): sequential
    // connections through the balancer, and the store's latency.
    let (n, took) = spawn_in(&phone, move || {
        let started = Instant::now();
        let n = 60;
        for _ in 0..n {
            drop(socks5_echo(service, origin));
        }
        (n, started.elapsed())
    })
    .join()
    .unwrap();
    println!(
        "fleet: {n} sequential SOCKS5 connections through the balancer in {took:?} ({:.0}/s)",
        f64::from(n) / took.as_secs_f64()
    );
    for (ns, admin) in fleet.namespaces.iter().zip(&fleet.admins) {
        let page = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-s", "--max-time", "5"])
            .arg(format!("http://{admin}/metrics"))
            .output()
            .unwrap();
        let page = String::from_utf8_lossy(&page.stdout);
        let value = |name: &str| {
            page.lines()
                .find_map(|l| l.strip_prefix(&format!("sixpath_server_{name} ")))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let count = value("state_operation_seconds_count");
        if count > 0.0 {
            println!(
                "fleet: {ns}: {count} store operations, mean {:.2} ms",
                value("state_operation_seconds_sum") / count * 1e3
            );
        }
    }

    // Kill the instance holding the first connection: its connections end,
    // the others still echo.
    let victim = owner[0];
    // children: redis, echo, then instances 1..=3.
    let child = &mut fleet.children[1 + usize::from(victim)];
    child.kill().unwrap();
    child.wait().unwrap();
    let results = spawn_in(&phone, move || {
        conns
            .into_iter()
            .map(|(mut s, _)| {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let sent = s.write_all(b"y").is_ok();
                let mut b = [0u8; 1];
                sent && matches!(s.read(&mut b), Ok(1))
            })
            .collect::<Vec<bool>>()
    })
    .join()
    .unwrap();
    for (alive, i) in results.iter().zip(&owner) {
        assert_eq!(
            *alive,
            *i != victim,
            "instance {i} (killed: {victim}): {results:?} {owner:?}"
        );
    }
}

/// As [`socks5_echo`], from an IPv6 socket (IPv4-mapped service address),
/// so that the connection may have IPv6 subflows too.
fn socks5_echo_dual(service_port: u16, origin: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::STREAM,
        Some(socket2::Protocol::MPTCP),
    )
    .unwrap();
    let mapped = |a: &str| -> SocketAddr {
        let v4: std::net::Ipv4Addr = a.parse().unwrap();
        SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), 0)
    };
    sock.bind(&mapped(PHONE_WLAN).into()).unwrap();
    let mut service = mapped(SERVER);
    service.set_port(service_port);
    sock.connect_timeout(&service.into(), Duration::from_secs(5))
        .unwrap();
    let mut s = TcpStream::from(sock);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let SocketAddr::V4(o) = origin else {
        panic!("IPv4 origin")
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&o.ip().octets());
    req.extend_from_slice(&o.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], [5, 0, 5, 0], "SOCKS5 connect through the fleet");
    s
}

#[test]
fn a_dual_stack_phone_joins_the_instances_ipv6_address_over_lte_and_aggregates() {
    const TEST: &str =
        "a_dual_stack_phone_joins_the_instances_ipv6_address_over_lte_and_aggregates";
    if !bed::can_run(TEST) || !have_all(TEST) {
        return;
    }
    let tb = Testbed::up(&["--no-server"]);
    let phone = tb.ns(Ns::Phone);
    let fleet = fleet_up(&tb, true);
    let (origin, port) = (fleet.echo, fleet.port);
    let lte6: IpAddr = PHONE_LTE6.parse().unwrap();

    let (wlan_before, lte_before) = (tb.phone_rx_bytes("wlan0"), tb.phone_rx_bytes("lte0"));
    let (flows, echoed) = spawn_in(&phone, move || {
        let mut s = socks5_echo_dual(port, origin);
        let flows = subflows(&s);
        // 8 MiB up and echoed back, written and read at once.
        let mut reader = s.try_clone().unwrap();
        let total = 8 << 20;
        let read = std::thread::spawn(move || {
            let mut got = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            while got < total {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        let chunk = vec![0x5au8; 1 << 16];
        for _ in 0..total / chunk.len() {
            s.write_all(&chunk).unwrap();
        }
        (flows, read.join().unwrap())
    })
    .join()
    .unwrap();
    let (wlan, lte) = (
        tb.phone_rx_bytes("wlan0") - wlan_before,
        tb.phone_rx_bytes("lte0") - lte_before,
    );
    println!("dual stack: subflows {flows:?}; received wlan0 {wlan} B, lte0 {lte} B");
    assert_eq!(echoed, 8 << 20, "every byte echoed");
    let lte_join = flows
        .iter()
        .find(|(l, _)| l.ip() == lte6)
        .unwrap_or_else(|| panic!("an LTE (IPv6) subflow: {flows:?}"));
    let i = (1..=INSTANCES)
        .find(|i| advertised6(*i) == lte_join.1.ip())
        .unwrap_or_else(|| panic!("the LTE subflow ends on an advertised IPv6 address: {flows:?}"));
    // The IPv4 joins (Wi-Fi) end on the same instance.
    for (_, r) in &flows {
        let r = r.ip().to_canonical();
        assert!(
            r == IpAddr::from([198, 18, 0, 1]) || r == advertised(i) || r == advertised6(i),
            "every subflow on instance {i} or the service address: {flows:?}"
        );
    }
    // The kernel's default scheduler sends on the slower LTE path only
    // while Wi-Fi's window is full, and an echo keeps both directions busy:
    // LTE's share of one 8 MiB echo has been as low as 8 %.
    let total = (wlan + lte) as f64;
    assert!(
        lte as f64 >= 0.05 * total && wlan as f64 >= 0.05 * total,
        "both paths carry at least 5 % (wlan0 {wlan} B, lte0 {lte} B)"
    );
}

/// `sixpath-client` on the phone against the fleet's service address with
/// its own endpoints (`--path wlan0 --path lte0`), then one download of
/// 12 MiB through it: asserts the bytes (SHA-256), that every subflow of
/// the upstream connection ends on the service address or one instance's
/// advertised addresses, that one leaves over LTE, and that LTE carried at
/// least 10 % of what the phone received.
fn client_download_through_the_fleet(test: &str, dual: bool) {
    use sha2::{Digest, Sha256};
    if !bed::can_run(test) || !have_all(test) {
        return;
    }
    let tb = Testbed::up(&["--no-server"]);
    let (phone, inet) = (tb.ns(Ns::Phone), tb.ns(Ns::Internet));
    let mut fleet = fleet_up(&tb, dual);
    // The client installs its own endpoints.
    ip(&format!("-n {phone} mptcp endpoint flush"));
    let body: Vec<u8> = {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..12 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    };
    let file = fleet.dir.join("download.bin");
    std::fs::write(&file, &body).unwrap();
    let want = Sha256::digest(&body);
    // The download origin: sends the file and closes.
    let download_port = free_port(&inet, ORIGIN);
    fleet.children.push(
        Command::new("ip")
            .args(["netns", "exec", &inet, "python3", "-c"])
            .arg(format!(
                "import socketserver\n\
                 class H(socketserver.BaseRequestHandler):\n\
                 \x20   def handle(self):\n\
                 \x20       self.request.sendall(open('{}', 'rb').read())\n\
                 socketserver.ThreadingTCPServer.allow_reuse_address = True\n\
                 socketserver.ThreadingTCPServer(('{ORIGIN}', {download_port}), H).serve_forever()\n",
                file.display()
            ))
            .spawn()
            .unwrap(),
    );
    bed::wait_listening(
        &inet,
        download_port,
        fleet.children.last_mut().unwrap(),
        None,
    );
    let log_path = fleet.dir.join("client.log");
    let log = std::fs::File::create(&log_path).unwrap();
    fleet.children.push(
        Command::new("ip")
            .args(["netns", "exec", &phone])
            .arg(bed::binary("sixpath-client"))
            .args(["--server", &fleet.service().to_string()])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--path",
                "wlan0",
                "--path",
                "lte0",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let entry = bed::logged_addr(&log_path, "listening", fleet.children.last_mut().unwrap());
    let client_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let endpoints = Command::new("ip")
        .args(["-n", &phone, "mptcp", "endpoint", "show"])
        .output()
        .unwrap();
    println!(
        "client endpoints:\n{}",
        String::from_utf8_lossy(&endpoints.stdout)
    );

    let (wlan_before, lte_before) = (tb.phone_rx_bytes("wlan0"), tb.phone_rx_bytes("lte0"));
    let download = spawn_in(&phone, move || {
        let mut s = TcpStream::connect(entry).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = vec![5, 1, 0, 5, 1, 0, 1];
        req.extend_from_slice(&ORIGIN.parse::<std::net::Ipv4Addr>().unwrap().octets());
        req.extend_from_slice(&download_port.to_be_bytes());
        s.write_all(&req).unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(
            reply[..4],
            [5, 0, 5, 0],
            "SOCKS5 connect through the client"
        );
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    // The upstream connection's subflows, seen mid-download: the phone's
    // TCP sockets but those on loopback (`ss` lists subflows as TCP
    // sockets).
    let mut flows: Vec<(IpAddr, IpAddr)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && !download.is_finished() {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &phone,
                "ss",
                "-Htn",
                "state",
                "established",
            ])
            .output()
            .unwrap();
        let now: Vec<(IpAddr, IpAddr)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let addr = |s: &str| -> Option<IpAddr> {
                    // `198.18.1.2:5000`, `[::ffff:198.18.1.2]:5000`,
                    // `[fd00:2::2]%lte0:5000`.
                    let (ip, _) = s.rsplit_once(':')?;
                    let ip = ip.split('%').next()?;
                    let ip = ip.trim_start_matches('[').trim_end_matches(']');
                    Some(ip.parse::<IpAddr>().ok()?.to_canonical())
                };
                Some((addr(f.get(2)?)?, addr(f.get(3)?)?))
            })
            .filter(|(l, _)| !l.is_loopback())
            .collect();
        if now.len() > flows.len() {
            flows = now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = download.join().unwrap();
    let nstat = Command::new("ip")
        .args(["netns", "exec", &phone, "nstat", "-az"])
        .output()
        .unwrap();
    println!(
        "phone MPTCP counters:\n{}",
        String::from_utf8_lossy(&nstat.stdout)
            .lines()
            .filter(|l| l.contains("MPTcpExt") && !l.contains(" 0 "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (wlan, lte) = (
        tb.phone_rx_bytes("wlan0") - wlan_before,
        tb.phone_rx_bytes("lte0") - lte_before,
    );
    println!(
        "client through the fleet (dual {dual}): subflows {flows:?}; received wlan0 {wlan} B, lte0 {lte} B"
    );
    assert_eq!(got.len(), body.len(), "every byte: {}", client_log());
    assert_eq!(Sha256::digest(&got), want, "the bytes intact");
    let lte_ip: IpAddr = if dual { PHONE_LTE6 } else { bed::PHONE_LTE }
        .parse()
        .unwrap();
    let lte_flow = flows
        .iter()
        .find(|(l, _)| *l == lte_ip)
        .unwrap_or_else(|| panic!("an LTE subflow: {flows:?}\n{}", client_log()));
    let i = (1..=INSTANCES)
        .find(|i| advertised(*i) == lte_flow.1 || advertised6(*i) == lte_flow.1)
        .unwrap_or_else(|| panic!("the LTE subflow ends on an advertised address: {flows:?}"));
    let service: IpAddr = SERVER.parse().unwrap();
    for (_, r) in &flows {
        assert!(
            *r == service || *r == advertised(i) || *r == advertised6(i),
            "every subflow on instance {i} or the service address: {flows:?}"
        );
    }
    let total = (wlan + lte) as f64;
    assert!(
        lte as f64 >= 0.1 * total,
        "LTE carries at least 10 % (wlan0 {wlan} B, lte0 {lte} B)"
    );
}

#[test]
fn sixpath_client_over_two_ipv4_paths_aggregates_through_the_fleet_on_one_instance() {
    client_download_through_the_fleet(
        "sixpath_client_over_two_ipv4_paths_aggregates_through_the_fleet_on_one_instance",
        false,
    );
}

#[test]
fn sixpath_client_with_ipv4_wifi_and_ipv6_lte_aggregates_through_the_fleet_on_one_instance() {
    client_download_through_the_fleet(
        "sixpath_client_with_ipv4_wifi_and_ipv6_lte_aggregates_through_the_fleet_on_one_instance",
        true,
    );
}
