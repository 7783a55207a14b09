//! Outbound failures the client must hear about with the right code: a
//! name that does not resolve or resolves to denied addresses, and a
//! target that never answers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sixpath_server::policy::{EgressRule, RuleAction};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

use crate::netns::in_netns;
use crate::{Harness, read_to_eof};

/// A DNS server on 127.0.0.1 answering every query with NXDOMAIN (the
/// question echoed, no records), and the number of queries it got.
async fn nxdomain_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&queries);
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            count.fetch_add(1, Ordering::SeqCst);
            // The question: QNAME labels up to the root, QTYPE, QCLASS.
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += 1 + usize::from(buf[end]);
            }
            let end = (end + 5).min(n);
            let mut r = buf[..2].to_vec(); // ID
            r.push(0x80 | (buf[2] & 0x01)); // QR, opcode 0, RD copied
            r.push(0x83); // RA, RCODE 3 (NXDOMAIN)
            r.extend([0, 1, 0, 0, 0, 0, 0, 0]);
            r.extend(&buf[12..end]);
            let _ = sock.send_to(&r, from).await;
        }
    });
    (addr, queries)
}

async fn dns_harness() -> (Harness, Arc<AtomicUsize>) {
    let (dns, queries) = nxdomain_server().await;
    let h = Harness::start_custom(None, |s| s.dns_servers = vec![dns]).await;
    (h, queries)
}

fn socks5_connect_name(name: &str, port: u16) -> Vec<u8> {
    let mut v = vec![5, 1, 0, 5, 1, 0, 3, name.len() as u8];
    v.extend(name.as_bytes());
    v.extend(port.to_be_bytes());
    v
}

/// SOCKS6 CONNECT to `name` (1 + its length a multiple of 4: no padding).
fn socks6_connect_name(name: &str, port: u16) -> Vec<u8> {
    assert_eq!((1 + name.len()) % 4, 0);
    let mut v = vec![6, 1, 0, 0];
    v.extend(port.to_be_bytes());
    v.extend([0, 3, name.len() as u8]);
    v.extend(name.as_bytes());
    v
}

const SOCKS5_HOST_UNREACHABLE: [u8; 12] = [5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0];
const SOCKS6_HOST_UNREACHABLE: [u8; 16] = [6, 0, 0, 0, 6, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];

#[tokio::test]
async fn socks5_name_answered_nxdomain_gets_host_unreachable_04() {
    let (h, queries) = dns_harness().await;
    let mut c = h.connect().await;
    c.write_all(&socks5_connect_name("nx.sixpath-test.example", 80))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SOCKS5_HOST_UNREACHABLE);
    assert!(
        queries.load(Ordering::SeqCst) > 0,
        "the configured DNS server was asked"
    );
}

#[tokio::test]
async fn socks6_name_answered_nxdomain_gets_host_unreachable_04() {
    let (h, queries) = dns_harness().await;
    let mut c = h.connect().await;
    c.write_all(&socks6_connect_name("nx.sixpath-test.example", 80))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SOCKS6_HOST_UNREACHABLE);
    assert!(queries.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn reserved_invalid_tld_gets_host_unreachable_04_in_socks5_and_socks6() {
    // RFC 6761 §6.4: ".invalid" never resolves; the resolver answers
    // NXDOMAIN itself.
    let (h, _) = dns_harness().await;
    let mut c = h.connect().await;
    c.write_all(&socks5_connect_name("nx.sixpath.invalid", 443))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SOCKS5_HOST_UNREACHABLE);
    let mut c = h.connect().await;
    c.write_all(&socks6_connect_name("nx.sixpath-test.invalid", 443))
        .await
        .unwrap();
    assert_eq!(read_to_eof(&mut c).await, SOCKS6_HOST_UNREACHABLE);
}

#[tokio::test]
async fn an_ip_address_sent_as_a_name_is_that_address_without_dns() {
    // Browsers send every host as a name: `http://127.0.0.1:PORT/` arrives
    // as the name "127.0.0.1". The DNS server here answers NXDOMAIN to
    // everything, so only treating the name as the address connects.
    let (h, queries) = dns_harness().await;
    for name in [h.echo.ip().to_string(), format!("[{}]", h.echo.ip())] {
        let mut c = h.connect().await;
        c.write_all(&socks5_connect_name(&name, h.echo.port()))
            .await
            .unwrap();
        let mut reply = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut c, &mut reply)
            .await
            .unwrap();
        assert_eq!(reply, [5, 0, 5, 0], "{name}: {reply:?}");
    }
    assert_eq!(
        queries.load(Ordering::SeqCst),
        0,
        "no DNS query for an IP literal"
    );
}

#[tokio::test]
async fn an_ip_address_sent_as_a_name_goes_through_the_egress_policy_as_an_address() {
    let h = Harness::start_custom(None, |s| {
        s.egress_rules
            .push(EgressRule::parse(RuleAction::Deny, "127.0.0.0/8").unwrap());
    })
    .await;
    for name in ["127.0.0.1", "0.0.0.0", "[::ffff:127.0.0.1]"] {
        let mut c = h.connect().await;
        c.write_all(&socks5_connect_name(name, h.echo.port()))
            .await
            .unwrap();
        let reply = read_to_eof(&mut c).await;
        // Method selection (05 00), then the reply: 02, not allowed by
        // ruleset.
        assert_eq!(
            reply.get(..4),
            Some(&[5u8, 0, 5, 2][..]),
            "{name}: not allowed by ruleset, got {reply:?}"
        );
    }
}

/// A DNS server on 127.0.0.1 answering every A query with `v4` and every
/// AAAA query with `v6` (other types: no records).
async fn answering_dns_server(v4: Ipv4Addr, v6: Ipv6Addr) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            // The question: QNAME labels up to the root, QTYPE, QCLASS.
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += 1 + usize::from(buf[end]);
            }
            if end + 5 > n {
                continue;
            }
            let qtype = u16::from_be_bytes([buf[end + 1], buf[end + 2]]);
            let rdata = match qtype {
                1 => v4.octets().to_vec(),
                28 => v6.octets().to_vec(),
                _ => Vec::new(),
            };
            let mut r = buf[..2].to_vec(); // ID
            r.push(0x80 | (buf[2] & 0x01)); // QR, opcode 0, RD copied
            r.push(0x80); // RA, RCODE 0
            r.extend([0, 1, 0, u8::from(!rdata.is_empty()), 0, 0, 0, 0]);
            r.extend(&buf[12..end + 5]);
            if !rdata.is_empty() {
                r.extend([0xc0, 12]); // the name of the question
                r.extend(qtype.to_be_bytes());
                r.extend([0, 1, 0, 0, 0, 60]); // class IN, TTL 60 s
                r.extend((rdata.len() as u16).to_be_bytes());
                r.extend(rdata);
            }
            let _ = sock.send_to(&r, from).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_name_resolving_to_denied_addresses_gets_02_in_socks5_and_socks6() {
    // The name resolves to 10.0.0.1 (RFC 1918) and to its NAT64 form
    // 64:ff9b::a00:1: both are denied by default, so the answer is "not
    // allowed by ruleset", not a connection attempt that fails.
    let dns = answering_dns_server(
        Ipv4Addr::new(10, 0, 0, 1),
        "64:ff9b::10.0.0.1".parse().unwrap(),
    )
    .await;
    let h = Harness::start_custom(None, |s| s.dns_servers = vec![dns]).await;
    let mut c = h.connect().await;
    c.write_all(&socks5_connect_name("denied.sixpath-test.example", 80))
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    let mut c = h.connect().await;
    c.write_all(&socks6_connect_name("denied.sixpath-test.example", 80))
        .await
        .unwrap();
    assert_eq!(
        read_to_eof(&mut c).await,
        [6, 0, 0, 0, 6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

/// A DNS server on 127.0.0.1 that reads every query and never answers (a
/// resolver behind a black hole).
async fn silent_dns_server() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while sock.recv_from(&mut buf).await.is_ok() {}
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_dns_query_gets_host_unreachable_04_at_the_dns_deadline() {
    // The DNS deadline (5 s by default) is shorter than the connect
    // timeout (10 s by default): a resolver that never answers is reported
    // as the name not resolving (0x04, as for NXDOMAIN), not as a
    // connection attempt that timed out (SOCKS6 0x09).
    let dns = silent_dns_server().await;
    let h = Harness::start_custom(None, |s| s.dns_servers = vec![dns]).await;
    let socks6 = async {
        let mut c = h.connect().await;
        c.write_all(&socks6_connect_name("nx.sixpath-test.example", 80))
            .await
            .unwrap();
        read_to_eof_within(&mut c, Duration::from_secs(60)).await
    };
    let socks5 = async {
        let mut c = h.connect().await;
        c.write_all(&socks5_connect_name("nx.sixpath-test.example", 80))
            .await
            .unwrap();
        read_to_eof_within(&mut c, Duration::from_secs(60)).await
    };
    let (six, five) = tokio::join!(socks6, socks5);
    assert_eq!(six, SOCKS6_HOST_UNREACHABLE);
    assert_eq!(five, SOCKS5_HOST_UNREACHABLE);
}

/// Reads until EOF, waiting at most `limit`.
async fn read_to_eof_within(s: &mut tokio::net::TcpStream, limit: Duration) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(limit, tokio::io::AsyncReadExt::read_to_end(s, &mut buf))
        .await
        .expect("server closes")
        .unwrap();
    buf
}

/// 198.18.1.0/24 is routed to `lo` in the test's namespace, where packets
/// for an address that is not local are dropped without an answer: a
/// connection attempt there sees nothing until its deadline.
const BLACKHOLE_SETUP: &[&str] = &["route add 198.18.1.0/24 dev lo"];

async fn blackhole_harness() -> Harness {
    Harness::start_custom(None, |s| {
        s.connect_timeout = Duration::from_secs(1);
        s.egress_rules
            .push(EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap());
    })
    .await
}

#[test]
fn connect_timeout_gets_socks5_04_socks6_09_and_convert_network_failure() {
    const TEST: &str = "connect_timeout_gets_socks5_04_socks6_09_and_convert_network_failure";
    in_netns(TEST, BLACKHOLE_SETUP, || async {
        let h = blackhole_harness().await;
        let started = std::time::Instant::now();
        // SOCKS5 has no timeout code: host unreachable (0x04).
        let mut c = h.connect().await;
        c.write_all(&[5, 1, 0, 5, 1, 0, 1, 198, 18, 1, 2, 0, 80])
            .await
            .unwrap();
        assert_eq!(read_to_eof(&mut c).await, SOCKS5_HOST_UNREACHABLE);
        // SOCKS6: connection attempt timed out (0x09).
        let mut c = h.connect().await;
        c.write_all(&[6, 1, 0, 0, 0, 80, 0, 1, 198, 18, 1, 2])
            .await
            .unwrap();
        assert_eq!(
            read_to_eof(&mut c).await,
            [6, 0, 0, 0, 6, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        );
        // Convert: Network Failure (65), default delay.
        let mut c = h.connect().await;
        c.write_all(&[
            0x01, 0x06, 0x22, 0x63, 0x0a, 0x05, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
            0xff, 198, 18, 1, 2,
        ])
        .await
        .unwrap();
        assert_eq!(
            read_to_eof(&mut c).await,
            [0x01, 0x02, 0x22, 0x63, 0x1e, 0x01, 0x41, 0x00]
        );
        // Each waited for the 1 s deadline, not for the kernel's SYN
        // retries (minutes).
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(20),
            "{waited:?}"
        );
    });
}
