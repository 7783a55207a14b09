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
    let dst: SocketAddr = format!("{}:7000", bed::ORIGIN).parse().unwrap();
    let _origin = Blast::start(&tb.ns(Ns::Internet), dst);
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
