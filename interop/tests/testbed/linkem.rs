//! The link emulator's delay shows in the round-trip time.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::bed::{self, Ns, Testbed};
use crate::flows::Blast;
use crate::netns;

/// Smallest TCP handshake time (one RTT) of `n` connects from `src`.
fn connect_rtt(src: &str, dst: SocketAddr, n: usize) -> Duration {
    let src: SocketAddr = format!("{src}:0").parse().unwrap();
    (0..n)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.bind(&src.into()).unwrap();
            let t = Instant::now();
            s.connect_timeout(&dst.into(), Duration::from_secs(5))
                .unwrap();
            let rtt = t.elapsed();
            drop(TcpStream::from(s));
            rtt
        })
        .min()
        .unwrap()
}

#[test]
fn linkem_delay_adds_twice_the_one_way_delay_to_each_links_rtt() {
    if !bed::can_run("linkem_delay_adds_twice_the_one_way_delay_to_each_links_rtt") {
        return;
    }
    let (wlan_ms, lte_ms) = (5u64, 40u64);
    let tb = Testbed::up(&[
        "--no-server",
        "--wlan-delay",
        &wlan_ms.to_string(),
        "--lte-delay",
        &lte_ms.to_string(),
    ]);
    let origin = Blast::start(&tb.ns(Ns::Internet), bed::ORIGIN);
    let dst = origin.addr;
    let (wlan, lte) = netns::spawn_in(&tb.ns(Ns::Phone), move || {
        (
            connect_rtt(bed::PHONE_WLAN, dst, 5),
            connect_rtt(bed::PHONE_LTE, dst, 5),
        )
    })
    .join()
    .unwrap();
    for (link, rtt, one_way) in [("wlan", wlan, wlan_ms), ("lte", lte, lte_ms)] {
        let min = Duration::from_millis(2 * one_way);
        let max = min + Duration::from_millis(50);
        println!(
            "{link}: TCP handshake RTT {:.2} ms; expected >= {} ms and < {} ms ({one_way} ms each way)",
            rtt.as_secs_f64() * 1e3,
            min.as_millis(),
            max.as_millis()
        );
        assert!(
            rtt >= min && rtt < max,
            "{link} RTT {rtt:?} outside [{min:?}, {max:?})\nlinkem log:\n{}",
            tb.log("linkem-operator") + &tb.log("linkem-phone")
        );
    }
}

#[test]
fn linkem_releases_parked_packets_when_terminated() {
    if !bed::can_run("linkem_releases_parked_packets_when_terminated") {
        return;
    }
    // 3 s each way on Wi-Fi: a handshake would take 6 s.
    let tb = Testbed::up(&["--no-server", "--wlan-delay", "3000", "--lte-delay", "0"]);
    let sink = Blast::start(&tb.ns(Ns::Operator), bed::SERVER);
    let dst = sink.addr;
    let pids: Vec<u32> = ["LINKEM_OPERATOR_PID", "LINKEM_PHONE_PID"]
        .iter()
        .map(|k| tb.pid(k).unwrap_or_else(|| panic!("{k} in the state file")))
        .collect();
    let connect = netns::spawn_in(&tb.ns(Ns::Phone), move || {
        connect_rtt(bed::PHONE_WLAN, dst, 1)
    });
    // The SYN waits in the operator's queue, then the SYN-ACK in the phone's:
    // SIGTERM releases each at once.
    for pid in &pids {
        std::thread::sleep(Duration::from_millis(300));
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
    }
    let took = connect.join().unwrap();
    println!(
        "handshake with 3000 ms each way, both delay lines terminated after 300 and 600 ms: {:.0} ms (must be < 2000 ms)",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < Duration::from_secs(2),
        "parked packets were not released: {took:?}"
    );
    for pid in pids {
        // Exited (or a zombie waiting to be reaped) within 3 s.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|s| !s.contains("State:\tZ"))
        };
        let t = Instant::now();
        while running() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !running(),
            "sixpath-linkem {pid} still runs after SIGTERM\n{}{}",
            tb.log("linkem-operator"),
            tb.log("linkem-phone")
        );
    }
}
