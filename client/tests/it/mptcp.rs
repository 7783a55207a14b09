//! Per-subflow statistics on a real two-subflow MPTCP connection between
//! two namespaces (`sixpath_net::mptcp`), summed per interface with the
//! rtnetlink address dump.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sixpath_client::paths::RouteSocket;
use sixpath_net::{mptcp, sys};

use crate::netns::{self, Topology};
use crate::sink::Sink;

/// Bytes the client sends.
const TOTAL: usize = 6 << 20;

#[test]
fn two_subflow_connection_reports_subflows_and_bytes_per_interface() {
    if !netns::can_run("two_subflow_connection_reports_subflows_and_bytes_per_interface") {
        return;
    }
    let t = Topology::new("mp");
    let phone = &t.phone;
    phone.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflows",
        "2",
        "add_addr_accepted",
        "0",
    ]);
    phone.ip(&[
        "mptcp",
        "endpoint",
        "add",
        "198.18.1.2",
        "dev",
        "wlan0",
        "subflow",
    ]);
    phone.ip(&[
        "mptcp",
        "endpoint",
        "add",
        "198.18.2.2",
        "dev",
        "lte0",
        "subflow",
    ]);
    // Shape both uplinks so one subflow alone cannot take all the data.
    for dev in ["wlan0", "lte0"] {
        let out = phone.exec(&[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "40mbit", "burst", "32kb",
            "latency", "50ms",
        ]);
        assert!(
            out.status.success(),
            "tc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sink = Sink::start(&t.server, "198.18.1.1");
    let server = sink.addr;

    let (stats, per_if) = phone.run(move || {
        let (sock, is_mptcp) = sys::stream_socket(&server, true).expect("socket");
        assert!(is_mptcp);
        sock.connect_timeout(&server.into(), Duration::from_secs(10))
            .expect("connect");
        let mut stream = std::net::TcpStream::from(sock);
        let chunk = vec![0x5au8; 64 * 1024];
        // Data first: subflows are added once the connection is fully
        // established.
        stream.write_all(&chunk).expect("write");
        let deadline = Instant::now() + Duration::from_secs(20);
        while sys::transport(&stream) != (sys::Transport::Mptcp { subflows: 2 }) {
            assert!(
                Instant::now() < deadline,
                "no second subflow: {:?}",
                sys::transport(&stream)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut sent = chunk.len();
        while sent < TOTAL {
            stream.write_all(&chunk).expect("write");
            sent += chunk.len();
        }
        // Wait until the peer has acknowledged everything.
        let deadline = Instant::now() + Duration::from_secs(30);
        let stats = loop {
            let stats = mptcp::subflows(&stream).expect("MPTCP_FULL_INFO");
            let acked: u64 = stats.iter().map(|s| s.bytes_acked).sum();
            if acked >= TOTAL as u64 || Instant::now() > deadline {
                break stats;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let snapshot = RouteSocket::open()
            .and_then(|mut r| r.snapshot())
            .expect("rtnetlink");
        let per_if = mptcp::by_interface(&stats, |ip| snapshot.iface_of(ip).map(str::to_owned));
        (stats, per_if)
    });

    eprintln!("per interface: {per_if:?}");
    assert_eq!(stats.len(), 2, "{stats:#?}");
    let locals: BTreeSet<IpAddr> = stats
        .iter()
        .filter_map(|s| s.local.map(|l| l.ip()))
        .collect();
    assert_eq!(
        locals,
        BTreeSet::from([
            "198.18.1.2".parse().expect("ip"),
            "198.18.2.2".parse().expect("ip")
        ])
    );
    for s in &stats {
        assert_eq!(s.remote.map(|r| r.ip()), Some(server.ip()), "{s:?}");
        assert!(s.rtt_us > 0, "{s:?}");
        assert!(s.id.is_some(), "MPTCP_FULL_INFO gives subflow ids: {s:?}");
    }
    let acked: u64 = stats.iter().map(|s| s.bytes_acked).sum();
    assert!(
        acked >= TOTAL as u64,
        "acked {acked} of {TOTAL}: {stats:#?}"
    );

    let names: Vec<&str> = per_if.iter().map(|p| p.iface.as_str()).collect();
    assert_eq!(names.len(), 2, "{per_if:#?}");
    assert!(
        names.contains(&"wlan0") && names.contains(&"lte0"),
        "{per_if:#?}"
    );
    for p in &per_if {
        assert_eq!(p.subflows, 1, "{p:?}");
        assert!(
            p.bytes_sent > 0,
            "both interfaces carried data: {per_if:#?}"
        );
    }
    let sent: u64 = per_if.iter().map(|p| p.bytes_sent).sum();
    assert!(sent >= TOTAL as u64, "{per_if:#?}");

    // The server received everything.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.received.load(Ordering::Relaxed) < TOTAL as u64 {
        assert!(
            Instant::now() < deadline,
            "server got {}",
            sink.received.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
