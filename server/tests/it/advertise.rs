//! `--advertise` on a network namespace pair: the server's namespace (this
//! test's thread, see [`in_netns`]) holds the service address 198.18.0.1
//! and the advertised 198.18.0.2 on one side of a veth pair; a named
//! namespace on the other side holds a client with two addresses
//! (198.18.0.100, and 198.18.0.101 as a `subflow` endpoint) and room for
//! announced addresses. The client's extra subflow must end on the
//! advertised address, none on the service address (the server set
//! `allow_join_initial_addr_port` to 0, so the client does not try), and
//! the endpoint must be gone once the drain starts.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use sixpath_server::config::Settings;
use sixpath_server::server::Server;

use crate::netns::{in_netns, ip};

/// A named network namespace, deleted on drop (with the veth end in it).
struct NamedNs(String);

impl Drop for NamedNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip_out(args: &str) -> String {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// In namespace `ns` (on a thread of its own): an MPTCP connection to
/// `server`, a SOCKS5 greeting answered, then the subflows once there are
/// two (or after 10 s, whatever there is).
fn client_subflows(ns: &str, server: SocketAddr) -> Vec<(Option<SocketAddr>, Option<SocketAddr>)> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
        // SAFETY: setns(2) with a namespace descriptor this thread holds;
        // it moves only this thread.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::MPTCP),
        )
        .expect("MPTCP socket");
        sock.connect_timeout(&server.into(), Duration::from_secs(5))
            .expect("connect");
        let mut stream = std::net::TcpStream::from(sock);
        std::io::Write::write_all(&mut stream, &[5, 1, 0]).unwrap();
        let mut sel = [0u8; 2];
        std::io::Read::read_exact(&mut stream, &mut sel).unwrap();
        assert_eq!(sel, [5, 0]);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let subflows = sixpath_net::mptcp::subflows(&stream).expect("subflow info");
            if subflows.len() >= 2 || Instant::now() > until {
                // Let a join to the service address, if the client tried
                // one, show up too.
                std::thread::sleep(Duration::from_millis(500));
                return sixpath_net::mptcp::subflows(&stream)
                    .expect("subflow info")
                    .iter()
                    .map(|s| (s.local, s.remote))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .join()
    .unwrap()
}

#[test]
fn the_extra_subflow_ends_on_the_advertised_address_and_the_service_address_refuses_joins() {
    const TEST: &str =
        "the_extra_subflow_ends_on_the_advertised_address_and_the_service_address_refuses_joins";
    in_netns(TEST, &[], || async {
        let id = std::process::id();
        let ns = NamedNs(format!("sixpath-adv-{id}"));
        let (here, there) = (format!("sxadv{id}s"), format!("sxadv{id}c"));
        ip(&format!("netns add {}", ns.0));
        ip(&format!(
            "link add {here} type veth peer name {there} netns {}",
            ns.0
        ));
        for cmd in [
            format!("addr add 198.18.0.1/24 dev {here}"),
            format!("addr add 198.18.0.2/24 dev {here}"),
            format!("link set {here} up"),
            "mptcp limits set subflows 4 add_addr_accepted 4".to_owned(),
            format!("-n {} link set lo up", ns.0),
            format!("-n {} addr add 198.18.0.100/24 dev {there}", ns.0),
            format!("-n {} addr add 198.18.0.101/24 dev {there}", ns.0),
            format!("-n {} link set {there} up", ns.0),
            format!(
                "-n {} mptcp limits set subflows 4 add_addr_accepted 4",
                ns.0
            ),
            format!(
                "-n {} mptcp endpoint add 198.18.0.101 dev {there} subflow",
                ns.0
            ),
        ] {
            ip(&cmd);
        }
        // The server's namespace starts with joins to the initial address
        // allowed, as a fresh host does.
        std::fs::write("/proc/sys/net/mptcp/allow_join_initial_addr_port", "1").unwrap();

        let mut settings = Settings::for_listeners(&["0.0.0.0:0".parse().unwrap()]);
        settings.allow_anonymous = true;
        settings.handshake_timeout = Duration::from_secs(30);
        settings.advertise = vec!["198.18.0.2".parse().unwrap()];
        let server = Server::bind(settings).expect("bind with --advertise");
        let port = server.local_addrs()[0].port();
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/mptcp/allow_join_initial_addr_port")
                .unwrap()
                .trim(),
            "0"
        );
        assert!(ip_out("mptcp endpoint show").contains("198.18.0.2 id"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));

        let service = SocketAddr::from(([198, 18, 0, 1], port));
        let ns_name = ns.0.clone();
        let subflows = tokio::task::spawn_blocking(move || client_subflows(&ns_name, service))
            .await
            .unwrap();
        let advertised: IpAddr = "198.18.0.2".parse().unwrap();
        assert!(
            subflows
                .iter()
                .any(|(_, r)| *r == Some(SocketAddr::new(advertised, port))),
            "a subflow to the advertised address: {subflows:?}"
        );
        assert_eq!(
            subflows.iter().filter(|(_, r)| *r == Some(service)).count(),
            1,
            "only the initial subflow ends on the service address: {subflows:?}"
        );

        // The drain withdraws the endpoint.
        let _ = stop.send(());
        let until = Instant::now() + Duration::from_secs(5);
        while ip_out("mptcp endpoint show").contains("198.18.0.2") {
            assert!(Instant::now() < until, "endpoint withdrawn on drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.abort();
    });
}

#[test]
fn advertised_endpoints_go_when_the_server_is_dropped_and_a_conflicting_endpoint_stops_the_start() {
    const TEST: &str = "advertised_endpoints_go_when_the_server_is_dropped_and_a_conflicting_endpoint_stops_the_start";
    in_netns(
        TEST,
        &[
            "addr add 198.18.0.2/32 dev lo",
            "addr add 198.18.0.3/32 dev lo",
            "mptcp endpoint add 198.18.0.3 subflow",
        ],
        || async {
            let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
            settings.advertise = vec!["198.18.0.2".parse().unwrap()];
            let server = Server::bind(settings.clone()).expect("bind with --advertise");
            assert!(ip_out("mptcp endpoint show").contains("198.18.0.2 id"));
            drop(server);
            assert!(
                !ip_out("mptcp endpoint show").contains("198.18.0.2"),
                "removed on exit"
            );

            // 198.18.0.3 already has a `subflow` endpoint: refused, naming
            // the address, and what was installed before it is removed.
            settings.advertise = vec!["198.18.0.2".parse().unwrap(), "198.18.0.3".parse().unwrap()];
            let Err(e) = Server::bind(settings) else {
                panic!("a conflicting endpoint stops the start");
            };
            assert!(e.to_string().contains("--advertise 198.18.0.3"), "{e}");
            let left = ip_out("mptcp endpoint show");
            assert!(!left.contains("198.18.0.2"), "{left}");
            assert!(
                left.contains("198.18.0.3"),
                "the other endpoint stays: {left}"
            );
        },
    );
}
