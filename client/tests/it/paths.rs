//! The path manager against the real kernel, inside network namespaces.

use std::time::{Duration, Instant};

use sixpath_client::paths::{
    Endpoint, EndpointFlags, Limits, Mode, MptcpPm, PathManager, PathPolicy, PathSpec, RouteSocket,
};

use crate::netns::{self, Topology};

fn specs(list: &[&str]) -> Vec<PathSpec> {
    list.iter().map(|s| s.parse().expect("spec")).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `ip mptcp endpoint show` lines for what `pm` installed, in `ip`'s words.
fn shown(eps: &[Endpoint], dev: impl Fn(&Endpoint) -> &'static str) -> Vec<String> {
    let mut v: Vec<String> = eps
        .iter()
        .map(|e| format!("{} id {} {} dev {}", e.addr, e.id, e.flags, dev(e)))
        .collect();
    v.sort();
    v
}

fn dev_of(e: &Endpoint) -> &'static str {
    if e.addr.to_string().starts_with("198.18.1.") {
        "wlan0"
    } else {
        "lte0"
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn netlink_endpoint_and_limits_round_trip_matches_ip_mptcp() {
    if !netns::can_run("netlink_endpoint_and_limits_round_trip_matches_ip_mptcp") {
        return;
    }
    let t = Topology::new("nl");
    let ns = &t.phone;
    ns.run(|| {
        let mut route = RouteSocket::open().expect("rtnetlink");
        let wlan0 = route.link_by_name("wlan0").expect("links").expect("wlan0");
        let lte0 = route.link_by_name("lte0").expect("links").expect("lte0");
        assert_eq!(
            route.link_name(lte0.index).expect("links").as_deref(),
            Some("lte0")
        );
        let addrs = route.addresses().expect("addresses");
        assert!(
            addrs
                .iter()
                .any(|a| a.ifindex == wlan0.index && a.addr.to_string() == "198.18.1.2"),
            "{addrs:?}"
        );

        let mut pm = MptcpPm::open().expect("mptcp_pm");
        assert!(pm.endpoints().expect("dump").is_empty());
        let ep = Endpoint {
            id: 7,
            addr: "198.18.1.2".parse().expect("ip"),
            port: 0,
            flags: EndpointFlags::SUBFLOW | EndpointFlags::BACKUP,
            ifindex: wlan0.index.cast_signed(),
        };
        pm.add_endpoint(&ep).expect("add");
        assert_eq!(ns.endpoints(), ["198.18.1.2 id 7 subflow backup dev wlan0"]);
        assert_eq!(pm.endpoints().expect("dump"), [ep]);
        assert_eq!(pm.endpoint(7).expect("get"), Some(ep));
        assert_eq!(pm.endpoint(99).expect("get"), None);

        // The same address again (the kernel choosing the id): EEXIST.
        let again = pm
            .add_endpoint(&Endpoint { id: 0, ..ep })
            .expect_err("duplicate");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists, "{again}");

        // SET_FLAGS is `ip mptcp endpoint change id 7 nobackup`.
        pm.set_flags(7, EndpointFlags::SUBFLOW).expect("nobackup");
        assert_eq!(ns.endpoints(), ["198.18.1.2 id 7 subflow dev wlan0"]);
        pm.set_flags(7, EndpointFlags::SUBFLOW | EndpointFlags::BACKUP)
            .expect("backup");
        assert_eq!(ns.endpoints(), ["198.18.1.2 id 7 subflow backup dev wlan0"]);

        assert_eq!(
            pm.limits().expect("limits"),
            Limits {
                subflows: 2,
                add_addr_accepted: 0
            },
            "kernel defaults"
        );
        let limits = Limits {
            subflows: 3,
            add_addr_accepted: 2,
        };
        pm.set_limits(limits).expect("set limits");
        assert_eq!(
            ns.ip(&["mptcp", "limits", "show"]).trim(),
            "add_addr_accepted 2 subflows 3"
        );
        assert_eq!(pm.limits().expect("limits"), limits);

        // What `ip` adds, the dump reads back.
        ns.ip(&[
            "mptcp",
            "endpoint",
            "add",
            "198.18.2.2",
            "dev",
            "lte0",
            "id",
            "3",
            "subflow",
        ]);
        let dumped = pm.endpoints().expect("dump");
        assert!(
            dumped.contains(&Endpoint {
                id: 3,
                addr: "198.18.2.2".parse().expect("ip"),
                port: 0,
                flags: EndpointFlags::SUBFLOW,
                ifindex: lte0.index.cast_signed(),
            }),
            "{dumped:?}"
        );

        pm.delete_endpoint(7).expect("delete");
        assert_eq!(ns.endpoints(), ["198.18.2.2 id 3 subflow dev lte0"]);
        let gone = pm.delete_endpoint(7).expect_err("already deleted");
        assert_eq!(gone.kind(), std::io::ErrorKind::InvalidInput, "{gone}");
        pm.flush().expect("flush");
        assert!(ns.endpoints().is_empty());
    });
}

#[test]
fn path_manager_installs_endpoints_for_two_interfaces_and_removes_them_on_drop() {
    if !netns::can_run(
        "path_manager_installs_endpoints_for_two_interfaces_and_removes_them_on_drop",
    ) {
        return;
    }
    let t = Topology::new("pm");
    let ns = &t.phone;
    // Someone else's endpoint: left alone.
    ns.ip(&[
        "mptcp",
        "endpoint",
        "add",
        "198.18.7.7",
        "id",
        "50",
        "signal",
    ]);
    ns.run(|| {
        runtime().block_on(async {
            let pm = PathManager::start(specs(&["wlan0", "lte0=backup"]), PathPolicy::Aggregate)
                .expect("start");
            assert_eq!(pm.mode(), Mode::Installed);
            assert_eq!(pm.primary(), None);
            let installed = pm.installed();
            assert_eq!(installed.len(), 2, "{installed:?}");
            let mut want = shown(&installed, dev_of);
            want.push("198.18.7.7 id 50 signal".to_owned());
            assert_eq!(sorted(ns.endpoints()), sorted(want));
            assert!(
                ns.endpoints().iter().any(|l| l.starts_with("198.18.2.2 ")
                    && l.ends_with(&netns::ours(" subflow backup dev lte0"))),
                "{:?}",
                ns.endpoints()
            );
            assert_eq!(
                ns.ip(&["mptcp", "limits", "show"]).trim(),
                "add_addr_accepted 1 subflows 2"
            );
            assert!(pm.plan().commands().len() == 3, "plan as found at start");
            drop(pm);
        });
    });
    assert_eq!(ns.endpoints(), ["198.18.7.7 id 50 signal"]);
    assert_eq!(
        ns.ip(&["mptcp", "limits", "show"]).trim(),
        "add_addr_accepted 0 subflows 2",
        "limits restored"
    );
}

#[test]
fn path_manager_reinstalls_endpoint_when_interface_address_changes() {
    if !netns::can_run("path_manager_reinstalls_endpoint_when_interface_address_changes") {
        return;
    }
    let t = Topology::new("roam");
    let ns = &t.phone;
    ns.run(|| {
        runtime().block_on(async {
            let pm = PathManager::start(specs(&["wlan0", "lte0"]), PathPolicy::Aggregate)
                .expect("start");
            assert_eq!(pm.installed().len(), 2);
            // Roaming: lte0 gets a new address, the old one goes.
            ns.ip(&["addr", "add", "198.18.3.2/24", "dev", "lte0"]);
            ns.ip(&["addr", "del", "198.18.2.2/24", "dev", "lte0"]);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let eps = ns.endpoints();
                let new = eps.iter().any(|l| {
                    l.starts_with("198.18.3.2 ") && l.ends_with(&netns::ours("subflow dev lte0"))
                });
                let old = eps.iter().any(|l| l.starts_with("198.18.2.2 "));
                if new && !old {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "endpoints did not follow: {eps:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(sorted(ns.endpoints()), shown(&pm.installed(), dev_of));
            let snapshot = pm.interfaces();
            assert_eq!(
                snapshot.iface_of("198.18.3.2".parse().expect("ip")),
                Some("lte0")
            );
            assert_eq!(snapshot.iface_of("198.18.2.2".parse().expect("ip")), None);
            // An IPv6 address (RFC 5180 benchmarking range) gets its
            // endpoint once duplicate address detection is done; while
            // tentative it is skipped.
            ns.ip(&["addr", "add", "2001:2:0:2::2/64", "dev", "lte0"]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !ns.endpoints().iter().any(|l| {
                l.starts_with("2001:2:0:2::2 ") && l.ends_with(&netns::ours("subflow dev lte0"))
            }) {
                assert!(Instant::now() < deadline, "{:?}", ns.endpoints());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(pm.installed().len(), 3);
            // An interface losing its last address loses its endpoint.
            ns.ip(&["addr", "flush", "dev", "wlan0"]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while ns.endpoints().iter().any(|l| l.contains("wlan0")) {
                assert!(Instant::now() < deadline, "{:?}", ns.endpoints());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(pm.installed().len(), 2, "lte0's IPv4 and IPv6");
            drop(pm);
        });
    });
    assert!(ns.endpoints().is_empty(), "{:?}", ns.endpoints());
}

#[test]
fn backup_policy_flags_secondary_path_and_restores_existing_endpoint() {
    if !netns::can_run("backup_policy_flags_secondary_path_and_restores_existing_endpoint") {
        return;
    }
    let t = Topology::new("bk");
    let ns = &t.phone;
    // lte0 already has a (non-backup) endpoint, e.g. from NetworkManager.
    ns.ip(&[
        "mptcp",
        "endpoint",
        "add",
        "198.18.2.2",
        "dev",
        "lte0",
        "id",
        "9",
        "subflow",
    ]);
    ns.run(|| {
        runtime().block_on(async {
            let pm =
                PathManager::start(specs(&["wlan0", "lte0"]), PathPolicy::Backup).expect("start");
            assert_eq!(pm.primary().as_deref(), Some("wlan0"));
            let eps = ns.endpoints();
            assert!(
                eps.contains(&"198.18.2.2 id 9 subflow backup dev lte0".to_owned()),
                "backup flag set on the existing endpoint (MP_PRIO): {eps:?}"
            );
            assert!(
                eps.iter().any(|l| l.starts_with("198.18.1.2 ")
                    && l.ends_with(&netns::ours(" subflow dev wlan0"))),
                "primary path is not backup: {eps:?}"
            );
            drop(pm);
        });
    });
    assert_eq!(
        ns.endpoints(),
        ["198.18.2.2 id 9 subflow dev lte0"],
        "our endpoint removed, theirs restored"
    );
}

#[test]
fn without_cap_net_admin_nothing_changes_and_the_commands_fix_it() {
    if !netns::can_run("without_cap_net_admin_nothing_changes_and_the_commands_fix_it") {
        return;
    }
    let t = Topology::new("eperm");
    let ns = &t.phone;
    let commands = ns.run(|| {
        netns::drop_net_admin();
        let mut raw = MptcpPm::open().expect("reading needs no privilege");
        let err = raw
            .set_limits(Limits {
                subflows: 4,
                add_addr_accepted: 4,
            })
            .expect_err("EPERM");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("needs CAP_NET_ADMIN"), "{err}");

        runtime().block_on(async {
            let pm = PathManager::start(specs(&["wlan0", "lte0=backup"]), PathPolicy::Aggregate)
                .expect("start does not fail without the capability");
            match pm.mode() {
                Mode::Advisory(why) => assert!(why.contains("CAP_NET_ADMIN"), "{why}"),
                Mode::Installed => panic!("installed without CAP_NET_ADMIN"),
            }
            assert!(pm.installed().is_empty());
            pm.plan().commands()
        })
    });
    assert_eq!(
        commands,
        [
            "ip mptcp limits set subflows 2 add_addr_accepted 1".to_owned(),
            netns::ours_cmd("ip mptcp endpoint add 198.18.1.2 dev wlan0 subflow"),
            netns::ours_cmd("ip mptcp endpoint add 198.18.2.2 dev lte0 subflow backup"),
        ]
    );
    assert!(ns.endpoints().is_empty(), "nothing installed");
    // Running the advice leaves nothing more to do.
    for cmd in &commands {
        ns.ip(&netns::ip_args(cmd));
    }
    let left = ns.run(|| {
        netns::drop_net_admin();
        runtime().block_on(async {
            let pm = PathManager::start(specs(&["wlan0", "lte0=backup"]), PathPolicy::Aggregate)
                .expect("start");
            pm.plan().commands()
        })
    });
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn single_policy_installs_nothing() {
    if !netns::can_run("single_policy_installs_nothing") {
        return;
    }
    let t = Topology::new("single");
    let ns = &t.phone;
    ns.run(|| {
        runtime().block_on(async {
            let pm =
                PathManager::start(specs(&["wlan0", "lte0"]), PathPolicy::Single).expect("start");
            assert_eq!(pm.primary().as_deref(), Some("wlan0"));
            assert!(pm.installed().is_empty());
            assert!(pm.plan().commands().is_empty());
        });
    });
    assert!(ns.endpoints().is_empty());
    assert_eq!(
        ns.ip(&["mptcp", "limits", "show"]).trim(),
        "add_addr_accepted 0 subflows 2"
    );
}

/// `MPTcpExt` counter `name` (e.g. `MPPrioTx`) in the namespace
/// (`/proc/net/netstat`; `nstat` shows it as `MPTcpExtMPPrioTx`).
fn mptcp_counter(ns: &netns::Netns, name: &str) -> u64 {
    let out = ns.exec(&["cat", "/proc/net/netstat"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("MPTcpExt:"));
    let (names, values) = (lines.next().expect("names"), lines.next().expect("values"));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .expect("no such MPTcpExt counter")
}

/// Waits until counter `name` reaches `want`; it must not pass it.
async fn wait_counter(ns: &netns::Netns, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = mptcp_counter(ns, name);
        if got == want {
            return;
        }
        assert!(
            got < want && Instant::now() < deadline,
            "{name} = {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn switching_to_backup_policy_sends_mp_prio_on_live_subflow() {
    use std::io::Write;
    if !netns::can_run("switching_to_backup_policy_sends_mp_prio_on_live_subflow") {
        return;
    }
    let t = Topology::new("prio");
    let sink = crate::sink::Sink::start(&t.server, "198.18.1.1");
    let server = sink.addr;
    let phone = &t.phone;
    phone.run(|| {
        runtime().block_on(async {
            let pm = PathManager::start(specs(&["wlan0", "lte0"]), PathPolicy::Aggregate)
                .expect("start");
            let (sock, _) = sixpath_net::sys::stream_socket(&server, true).expect("socket");
            sock.connect_timeout(&server.into(), Duration::from_secs(10))
                .expect("connect");
            let mut stream = std::net::TcpStream::from(sock);
            stream.write_all(b"hello").expect("write");
            let deadline = Instant::now() + Duration::from_secs(20);
            while sixpath_net::sys::transport(&stream).subflows() < 2 {
                assert!(Instant::now() < deadline, "no second subflow");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(mptcp_counter(phone, "MPPrioTx"), 0);

            pm.set_policy(PathPolicy::Backup).expect("backup policy");
            assert_eq!(pm.primary().as_deref(), Some("wlan0"));
            let eps = phone.endpoints();
            assert!(
                eps.iter().any(|l| l.starts_with("198.18.2.2 ")
                    && l.ends_with(&netns::ours("subflow backup dev lte0"))),
                "{eps:?}"
            );
            wait_counter(phone, "MPPrioTx", 1).await;

            pm.set_policy(PathPolicy::Aggregate)
                .expect("aggregate again");
            assert!(
                phone.endpoints().iter().all(|l| !l.contains("backup")),
                "{:?}",
                phone.endpoints()
            );
            wait_counter(phone, "MPPrioTx", 2).await;
            drop(stream);
        });
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while mptcp_counter(&t.server, "MPPrioRx") < 2 {
        assert!(Instant::now() < deadline, "server saw no MP_PRIO");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Probes go to a UDP socket that answers nothing, under one session.
struct ProbesTo(std::net::SocketAddr);

impl sixpath_client::paths::ProbeContext for ProbesTo {
    fn target(&self) -> impl Future<Output = Option<(std::net::SocketAddr, Vec<u8>)>> + Send {
        let server = self.0;
        async move { Some((server, vec![7; 16])) }
    }

    fn active(&self) -> bool {
        true
    }
}

/// The source addresses of the datagrams `sock` receives for `secs`.
fn probe_sources(sock: &std::net::UdpSocket, secs: f64) -> Vec<std::net::IpAddr> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        if let Ok((_, from)) = sock.recv_from(&mut buf) {
            seen.push(from.ip());
        }
    }
    seen
}

#[test]
fn switching_from_single_to_handover_at_run_time_starts_probes_and_back_stops_them() {
    use sixpath_client::paths::{PrimaryHook, ProbeSettings};
    use std::sync::Arc;
    if !netns::can_run(
        "switching_from_single_to_handover_at_run_time_starts_probes_and_back_stops_them",
    ) {
        return;
    }
    let t = Topology::new("psw");
    let sink = t
        .server
        .run(|| std::net::UdpSocket::bind("198.18.1.1:0").expect("bind the probe sink"));
    let server = sink.local_addr().expect("addr");
    let phone = &t.phone;
    phone.run(|| {
        runtime().block_on(async {
            let mut pm =
                PathManager::start(specs(&["wlan0", "lte0"]), PathPolicy::Single).expect("start");
            let settings = ProbeSettings {
                interval: Duration::from_millis(100),
                idle: true,
            };
            pm.start_health(
                &Arc::new(ProbesTo(server)),
                settings,
                PrimaryHook(Arc::new(|_| {})),
            );
            let quiet = tokio::task::spawn_blocking({
                let sink = sink.try_clone().expect("clone");
                move || probe_sources(&sink, 1.0)
            });
            let quiet = quiet.await.expect("sink");
            assert!(quiet.is_empty(), "probes under single: {quiet:?}");

            pm.set_policy(PathPolicy::Handover).expect("handover");
            let sink2 = sink.try_clone().expect("clone");
            let seen = tokio::task::spawn_blocking(move || probe_sources(&sink2, 1.5))
                .await
                .expect("sink");
            for path in ["198.18.1.2", "198.18.2.2"] {
                let ip: std::net::IpAddr = path.parse().expect("ip");
                assert!(
                    seen.contains(&ip),
                    "no probe from {path} after the switch: {seen:?}"
                );
            }

            pm.set_policy(PathPolicy::Single).expect("single again");
            // A probe may be under way at the switch.
            let sink3 = sink.try_clone().expect("clone");
            let after = tokio::task::spawn_blocking(move || {
                probe_sources(&sink3, 0.3);
                probe_sources(&sink3, 1.0)
            })
            .await
            .expect("sink");
            assert!(
                after.is_empty(),
                "probes after switching back to single: {after:?}"
            );
        });
    });
}
