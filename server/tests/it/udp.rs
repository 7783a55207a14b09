//! UDP ASSOCIATE over SOCKS5 and SOCKS6 (datagrams over TCP and over
//! UDP): exact headers, source filtering, FRAG, egress policy, teardown,
//! and a real DNS query through an association.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use sixpath_server::policy::{EgressRule, RuleAction};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use sixpath_protocol::Decoded;
use sixpath_protocol::socks6::udp::{UdpErrorCode, UdpMessage};

use crate::{Harness, read_n};

/// A UDP echo server that also records what it received.
struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start(ip: &str) -> Self {
        let sock = UdpSocket::bind((ip, 0)).await.unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                log.lock().unwrap().push(buf[..n].to_vec());
                let _ = sock.send_to(&buf[..n], from).await;
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

fn v4_bytes(addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 expected")
    };
    let mut v = a.ip().octets().to_vec();
    v.extend(a.port().to_be_bytes());
    v
}

/// RSV FRAG ATYP=1 ADDR PORT DATA.
fn socks5_datagram(frag: u8, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 0, frag, 1];
    d.extend(v4_bytes(to));
    d.extend(payload);
    d
}

async fn recv_timeout(s: &UdpSocket, secs: u64) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(Duration::from_secs(secs), s.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// A SOCKS5 UDP ASSOCIATE declaring `declared` (address bytes and port);
/// returns the control connection and the relay address of the reply.
async fn socks5_associate(h: &Harness, declared: [u8; 6]) -> (TcpStream, SocketAddr) {
    let mut c = h.connect().await;
    let mut req = vec![5, 1, 0, 5, 3, 0, 1];
    req.extend(declared);
    c.write_all(&req).await.unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    let reply = read_n(&mut c, 10).await;
    assert_eq!(reply[..8], [5, 0, 0, 1, 127, 0, 0, 1], "relay on loopback");
    let port = u16::from_be_bytes([reply[8], reply[9]]);
    assert_ne!(port, 0);
    (c, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test]
async fn socks5_udp_round_trip_has_exact_headers() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (_c, relay) = socks5_associate(&h, [0; 6]).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&socks5_datagram(0, echo.addr, b"hello"), relay)
        .await
        .unwrap();
    let (got, from) = recv_timeout(&client, 10).await.expect("reply");
    assert_eq!(from, relay, "answered from the relay address");
    assert_eq!(got, socks5_datagram(0, echo.addr, b"hello"));
    assert_eq!(echo.seen(), [b"hello".to_vec()]);
}

#[tokio::test]
async fn socks5_udp_resolves_domain_destinations() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (_c, relay) = socks5_associate(&h, [0; 6]).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut d = vec![0, 0, 0, 3, 9];
    d.extend(b"localhost");
    d.extend(echo.addr.port().to_be_bytes());
    d.extend(b"by name");
    client.send_to(&d, relay).await.unwrap();
    let (got, _) = recv_timeout(&client, 10).await.expect("reply");
    // The answer names the source by address.
    assert_eq!(got, socks5_datagram(0, echo.addr, b"by name"));
}

#[tokio::test]
async fn socks5_udp_ignores_datagrams_from_other_sources() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = client.local_addr().unwrap().port().to_be_bytes();
    // The client declares the port it sends from.
    let (_c, relay) = socks5_associate(&h, [0, 0, 0, 0, port[0], port[1]]).await;
    let same_ip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other_ip = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    same_ip
        .send_to(&socks5_datagram(0, echo.addr, b"other port"), relay)
        .await
        .unwrap();
    other_ip
        .send_to(&socks5_datagram(0, echo.addr, b"other ip"), relay)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .send_to(&socks5_datagram(0, echo.addr, b"client"), relay)
        .await
        .unwrap();
    let (got, _) = recv_timeout(&client, 10).await.expect("reply");
    assert_eq!(got, socks5_datagram(0, echo.addr, b"client"));
    assert_eq!(
        echo.seen(),
        [b"client".to_vec()],
        "only the client's datagram"
    );
    assert!(recv_timeout(&same_ip, 1).await.is_none());
    assert!(recv_timeout(&other_ip, 1).await.is_none());
}

#[tokio::test]
async fn socks5_udp_drops_fragmented_datagrams() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (_c, relay) = socks5_associate(&h, [0; 6]).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&socks5_datagram(1, echo.addr, b"fragment"), relay)
        .await
        .unwrap();
    client
        .send_to(&socks5_datagram(0, echo.addr, b"whole"), relay)
        .await
        .unwrap();
    let (got, _) = recv_timeout(&client, 10).await.expect("reply");
    assert_eq!(got, socks5_datagram(0, echo.addr, b"whole"));
    assert_eq!(echo.seen(), [b"whole".to_vec()], "FRAG 1 was dropped");
}

#[tokio::test]
async fn socks5_udp_drops_datagrams_to_denied_destinations() {
    let h = Harness::start_custom(None, |s| {
        s.egress_rules = vec![EgressRule::parse(RuleAction::Deny, "127.0.0.2").unwrap()];
    })
    .await;
    let allowed = Echo::start("127.0.0.1").await;
    let denied = Echo::start("127.0.0.2").await;
    let (_c, relay) = socks5_associate(&h, [0; 6]).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&socks5_datagram(0, denied.addr, b"denied"), relay)
        .await
        .unwrap();
    client
        .send_to(&socks5_datagram(0, allowed.addr, b"allowed"), relay)
        .await
        .unwrap();
    let (got, _) = recv_timeout(&client, 10).await.expect("reply");
    assert_eq!(got, socks5_datagram(0, allowed.addr, b"allowed"));
    assert!(denied.seen().is_empty(), "nothing reached 127.0.0.2");
    assert!(recv_timeout(&client, 1).await.is_none());
}

#[tokio::test]
async fn socks5_udp_association_ends_when_control_connection_closes() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (c, relay) = socks5_associate(&h, [0; 6]).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay).await.unwrap();
    client
        .send(&socks5_datagram(0, echo.addr, b"before"))
        .await
        .unwrap();
    assert!(recv_timeout(&client, 10).await.is_some());
    drop(c);
    // The relay socket is closed: datagrams to it draw ICMP port
    // unreachable, reported on the connected socket as ECONNREFUSED.
    let mut refused = false;
    for _ in 0..50 {
        let _ = client.send(&socks5_datagram(0, echo.addr, b"after")).await;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            Ok(Ok(_)) => panic!("the association still relays"),
            _ => {}
        }
    }
    assert!(refused, "relay port still open");
    assert!(!echo.seen().contains(&b"after".to_vec()));
}

/// A DNS server on loopback answering every A query with 198.18.0.7.
async fn dns_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            for query in &q.queries {
                r.add_query(query.clone());
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A::new(198, 18, 0, 7)),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn socks5_udp_carries_a_real_dns_query() {
    let h = Harness::start(None).await;
    let (dns, task) = dns_server().await;
    let (_c, relay) = socks5_associate(&h, [0; 6]).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::A,
    ));
    let wire = query.to_vec().unwrap();
    client
        .send_to(&socks5_datagram(0, dns, &wire), relay)
        .await
        .unwrap();
    let (got, _) = recv_timeout(&client, 10).await.expect("DNS answer");
    let header = socks5_datagram(0, dns, b"");
    assert_eq!(got[..header.len()], header[..]);
    let answer = Message::from_vec(&got[header.len()..]).unwrap();
    task.abort();
    assert_eq!(answer.metadata.id, query.metadata.id);
    let ips: Vec<_> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(ips, ["198.18.0.7".parse::<std::net::Ipv4Addr>().unwrap()]);
}

/// A SOCKS6 UDP ASSOCIATE (digest V7 with 0.0.0.0): returns the control
/// connection, the relay's bind address and the Association ID.
async fn socks6_associate(h: &Harness) -> (TcpStream, Vec<u8>, [u8; 8]) {
    let mut c = h.connect().await;
    c.write_all(&[6, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        read_n(&mut c, 4).await,
        [6, 0, 0, 0],
        "authentication reply"
    );
    let op = read_n(&mut c, 12).await;
    assert_eq!(op[..4], [6, 0, 0, 0], "operation reply: success");
    assert_eq!(op[6..], [0, 1, 127, 0, 0, 1]);
    let init = read_n(&mut c, 12).await;
    assert_eq!(init[..4], [6, 1, 0, 12], "Association Initialization");
    let id: [u8; 8] = init[4..].try_into().unwrap();
    (c, op[4..].to_vec(), id)
}

/// A SOCKS6 Datagram message with an IPv4 address.
fn socks6_datagram(id: [u8; 8], peer: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = (16 + 4 + payload.len()) as u16;
    let mut d = vec![6, 3];
    d.extend(len.to_be_bytes());
    d.extend(id);
    d.extend([1, 0]);
    let a = v4_bytes(peer);
    d.extend(&a[4..]);
    d.extend(&a[..4]);
    d.extend(payload);
    d
}

#[tokio::test]
async fn socks6_udp_over_tcp_round_trips() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (mut c, _, id) = socks6_associate(&h).await;
    let msg = socks6_datagram(id, echo.addr, b"udp-payload");
    c.write_all(&msg).await.unwrap();
    let mut confirmation = vec![6, 2, 0, 12];
    confirmation.extend(id);
    assert_eq!(read_n(&mut c, 12).await, confirmation);
    assert_eq!(read_n(&mut c, msg.len()).await, msg, "echo, source named");
    assert_eq!(echo.seen(), [b"udp-payload".to_vec()]);
}

#[tokio::test]
async fn socks6_udp_over_udp_round_trips_and_drops_the_other_channel() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (mut c, _, id) = socks6_associate(&h).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Datagrams go to the UDP port equal to the TCP port.
    let msg = socks6_datagram(id, echo.addr, b"over udp");
    client.send_to(&msg, h.server).await.unwrap();
    let mut confirmation = vec![6, 2, 0, 12];
    confirmation.extend(id);
    assert_eq!(read_n(&mut c, 12).await, confirmation, "confirmed over TCP");
    let (got, from) = recv_timeout(&client, 10).await.expect("echo over UDP");
    assert_eq!(from, h.server);
    assert_eq!(got, msg);
    // Mapped to UDP: the same ID over TCP, or from another UDP source, is
    // dropped; an unknown ID too.
    c.write_all(&socks6_datagram(id, echo.addr, b"over tcp"))
        .await
        .unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger
        .send_to(&socks6_datagram(id, echo.addr, b"stranger"), h.server)
        .await
        .unwrap();
    let mut other = id;
    other[0] ^= 0xff;
    client
        .send_to(&socks6_datagram(other, echo.addr, b"wrong id"), h.server)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = socks6_datagram(id, echo.addr, b"again");
    client.send_to(&again, h.server).await.unwrap();
    let (got, _) = recv_timeout(&client, 10).await.expect("echo over UDP");
    assert_eq!(got, again);
    assert_eq!(echo.seen(), [b"over udp".to_vec(), b"again".to_vec()]);
    assert!(recv_timeout(&stranger, 1).await.is_none());
}

#[tokio::test]
async fn socks6_udp_empty_datagram_only_asks_for_confirmation() {
    let h = Harness::start(None).await;
    let (mut c, _, id) = socks6_associate(&h).await;
    // Digest V24 with this association's ID.
    let mut empty = vec![6, 3, 0, 20];
    empty.extend(id);
    empty.extend([1, 0, 0, 0, 0, 0, 0, 0]);
    c.write_all(&empty).await.unwrap();
    let mut confirmation = vec![6, 2, 0, 12];
    confirmation.extend(id);
    assert_eq!(read_n(&mut c, 12).await, confirmation);
}

#[tokio::test]
async fn socks5_udp_association_cap_answers_01_and_frees_on_close() {
    let h = Harness::start_custom(None, |s| s.max_udp_associations = 1).await;
    let (first, _) = socks5_associate(&h, [0; 6]).await;
    let mut c = h.connect().await;
    c.write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    assert_eq!(
        crate::read_to_eof(&mut c).await,
        [5, 1, 0, 1, 0, 0, 0, 0, 0, 0],
        "general failure at the cap"
    );
    drop(first);
    // The slot is freed once the server sees the close.
    for attempt in 0.. {
        let mut c = h.connect().await;
        c.write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        assert_eq!(read_n(&mut c, 2).await, [5, 0]);
        if read_n(&mut c, 2).await == [5, 0] {
            break;
        }
        assert!(attempt < 50, "slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn socks6_udp_without_a_first_datagram_closes_after_the_idle_timeout() {
    let h = Harness::start_custom(None, |s| s.udp_idle_timeout = Duration::from_secs(1)).await;
    let (mut c, _, _) = socks6_associate(&h).await;
    assert_eq!(crate::read_to_eof(&mut c).await, b"");
}

#[tokio::test]
async fn socks6_udp_malformed_stream_message_closes_the_connection() {
    let h = Harness::start(None).await;
    let (mut c, _, id) = socks6_associate(&h).await;
    // Message Length 5 is shorter than the header: framing is lost.
    let mut bad = vec![6, 3, 0, 5];
    bad.extend(id);
    c.write_all(&bad).await.unwrap();
    assert_eq!(crate::read_to_eof(&mut c).await, b"");
}

#[tokio::test]
async fn socks6_udp_over_tcp_drops_denied_destinations() {
    let h = Harness::start_custom(None, |s| {
        s.egress_rules = vec![EgressRule::parse(RuleAction::Deny, "127.0.0.2").unwrap()];
    })
    .await;
    let allowed = Echo::start("127.0.0.1").await;
    let denied = Echo::start("127.0.0.2").await;
    let (mut c, _, id) = socks6_associate(&h).await;
    c.write_all(&socks6_datagram(id, denied.addr, b"denied"))
        .await
        .unwrap();
    let mut confirmation = vec![6, 2, 0, 12];
    confirmation.extend(id);
    assert_eq!(read_n(&mut c, 12).await, confirmation);
    let ok = socks6_datagram(id, allowed.addr, b"allowed");
    c.write_all(&ok).await.unwrap();
    assert_eq!(read_n(&mut c, ok.len()).await, ok);
    assert!(denied.seen().is_empty());
}

#[tokio::test]
async fn socks6_udp_honours_the_requested_bind_address_and_refuses_low_ports() {
    let h = Harness::start(None).await;
    // UDP ASSOCIATE 127.0.0.1:0: the remote-facing socket is bound there.
    let mut c = h.connect().await;
    c.write_all(&[6, 3, 0, 0, 0, 0, 0, 1, 127, 0, 0, 1])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    let op = read_n(&mut c, 12).await;
    assert_eq!(op[..4], [6, 0, 0, 0]);
    assert_eq!(op[6..], [0, 1, 127, 0, 0, 1]);
    let port = u16::from_be_bytes([op[4], op[5]]);
    // The port is really bound: binding it again fails.
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
    // Port 53 is refused by rule.
    let mut c = h.connect().await;
    c.write_all(&[6, 3, 0, 0, 0, 53, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    assert_eq!(
        crate::read_to_eof(&mut c).await,
        [6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

#[tokio::test]
async fn socks6_udp_association_ends_when_control_connection_closes() {
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let (mut c, bind, id) = socks6_associate(&h).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let msg = socks6_datagram(id, echo.addr, b"before");
    client.send_to(&msg, h.server).await.unwrap();
    assert_eq!(read_n(&mut c, 12).await[..2], [6, 2], "confirmation");
    assert_eq!(recv_timeout(&client, 10).await.expect("echo").0, msg);
    drop(c);
    // The remote-facing socket named in the Operation Reply is closed...
    let remote_port = u16::from_be_bytes([bind[0], bind[1]]);
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    probe.connect(("127.0.0.1", remote_port)).await.unwrap();
    let mut refused = false;
    for _ in 0..50 {
        let _ = probe.send(b"anyone?").await;
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(200), probe.recv(&mut buf)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => {}
        }
    }
    assert!(refused, "remote-facing port still open");
    // ...and the Association ID is forgotten: nothing is relayed.
    client
        .send_to(&socks6_datagram(id, echo.addr, b"after"), h.server)
        .await
        .unwrap();
    assert!(recv_timeout(&client, 1).await.is_none());
    assert_eq!(echo.seen(), [b"before".to_vec()]);
}

#[tokio::test]
async fn socks6_udp_port_parity_is_honoured_without_reservation() {
    let h = Harness::start(None).await;
    for (parity, remainder) in [(1u8, 0u16), (2, 1)] {
        let mut c = h.connect().await;
        // UDP ASSOCIATE 0.0.0.0:0 with Port Parity (even or odd) + reserve.
        c.write_all(&[
            6, 3, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 8, 0x85, 2, parity, 1,
        ])
        .await
        .unwrap();
        assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
        let op = read_n(&mut c, 20).await;
        assert_eq!(op[..4], [6, 0, 0, 8]);
        assert_eq!(op[6..12], [0, 1, 127, 0, 0, 1]);
        assert_eq!(
            op[12..],
            [0, 1, 0, 8, 0x85, 2, parity, 0],
            "parity obtained, nothing reserved"
        );
        let port = u16::from_be_bytes([op[4], op[5]]);
        assert_eq!(port % 2, remainder, "port {port}");
    }
}

/// A Multipath TCP connection from 127.0.0.1 to `server`.
fn mptcp_connect(server: SocketAddr) -> TcpStream {
    let (sock, mptcp) = sixpath_net::sys::stream_socket(&server, true).unwrap();
    assert!(mptcp, "the kernel refused Multipath TCP");
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    sock.connect(&server.into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    TcpStream::from_std(sock.into()).unwrap()
}

/// Waits until the Multipath TCP connection `c` has a subflow from
/// 127.0.0.2 (its client's "other path"; the kernel adds it once the
/// connection is fully established, after the first data).
async fn wait_for_second_path(c: &TcpStream) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let locals: Vec<_> = sixpath_net::mptcp::subflows(c)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.local.map(|a| a.ip()))
            .collect();
        if locals.contains(&"127.0.0.2".parse().unwrap()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no subflow from 127.0.0.2: {locals:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn socks5_udp_takes_datagrams_from_every_subflow_address_of_the_control_connection() {
    const TEST: &str =
        "socks5_udp_takes_datagrams_from_every_subflow_address_of_the_control_connection";
    crate::netns::in_netns(
        TEST,
        &[
            "addr add 127.0.0.2/32 dev lo",
            "mptcp limits set subflows 2 add_addr_accepted 2",
            "mptcp endpoint add 127.0.0.2 dev lo subflow",
        ],
        || async {
            let h = Harness::start(None).await;
            let echo = Echo::start("127.0.0.1").await;
            let mut c = mptcp_connect(h.server);
            c.write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            assert_eq!(read_n(&mut c, 2).await, [5, 0]);
            let reply = read_n(&mut c, 10).await;
            wait_for_second_path(&c).await;
            assert_eq!(reply[1], 0, "UDP ASSOCIATE succeeded");
            let relay =
                SocketAddr::from(([127, 0, 0, 1], u16::from_be_bytes([reply[8], reply[9]])));
            // The other path's address: the client's too.
            let other_path = UdpSocket::bind("127.0.0.2:0").await.unwrap();
            other_path
                .send_to(&socks5_datagram(0, echo.addr, b"other path"), relay)
                .await
                .unwrap();
            let (got, _) = recv_timeout(&other_path, 10)
                .await
                .expect("the datagram from the other subflow's address is relayed");
            assert_eq!(got, socks5_datagram(0, echo.addr, b"other path"));
            // An address of no subflow: a stranger.
            let stranger = UdpSocket::bind("127.0.0.3:0").await.unwrap();
            stranger
                .send_to(&socks5_datagram(0, echo.addr, b"stranger"), relay)
                .await
                .unwrap();
            assert!(recv_timeout(&stranger, 1).await.is_none());
            assert_eq!(echo.seen(), [b"other path".to_vec()], "only the client's");
        },
    );
}

/// A SOCKS6 UDP ASSOCIATE asking for UDP Error messages (Stack option UDP
/// Error, desired, proxy-remote leg): returns the control connection and
/// the Association ID, after checking that the reply reports the option.
async fn socks6_associate_with_udp_errors(h: &Harness) -> (TcpStream, [u8; 8]) {
    let mut c = h.connect().await;
    c.write_all(&[
        6, 3, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 8, 0x85, 1, 2, 0,
    ])
    .await
    .unwrap();
    assert_eq!(read_n(&mut c, 4).await, [6, 0, 0, 0]);
    let op = read_n(&mut c, 20).await;
    assert_eq!(op[..4], [6, 0, 0, 8], "operation reply: success");
    assert_eq!(
        op[12..],
        [0, 1, 0, 8, 0x85, 1, 2, 0],
        "UDP Error reported as performed"
    );
    let init = read_n(&mut c, 12).await;
    assert_eq!(init[..4], [6, 1, 0, 12], "Association Initialization");
    (c, init[4..].try_into().unwrap())
}

/// The next association message on the control connection.
async fn next_message(c: &mut TcpStream) -> UdpMessage {
    let head = read_n(c, 4).await;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut all = head;
    all.extend(read_n(c, len - 4).await);
    match UdpMessage::decode(&all).unwrap() {
        Decoded::Complete { msg, .. } => msg,
        Decoded::NeedMore(_) => panic!("incomplete message {all:02x?}"),
    }
}

#[tokio::test]
async fn socks6_udp_relays_icmp_host_and_network_unreachable_as_udp_error_messages() {
    const TEST: &str = "socks6_udp_relays_icmp_host_and_network_unreachable_as_udp_error_messages";
    let router = match crate::sessions::Router::create() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("SKIP {TEST}: needs root and ip netns ({why})");
            return;
        }
    };
    let h = Harness::start_custom(None, |s| {
        s.egress_rules = vec![EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap()];
    })
    .await;
    let echo = Echo::start("127.0.0.1").await;
    let (mut c, id) = socks6_associate_with_udp_errors(&h).await;
    let int_id = u64::from_be_bytes(id);
    // Host unreachable: the router's `unreachable` route (.64/26).
    let host = SocketAddr::from((router.ip(70), 9));
    c.write_all(&socks6_datagram(id, host, b"to nowhere"))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut c).await,
        UdpMessage::AssociationConfirmation { id: int_id }
    );
    let UdpMessage::Error(e) = next_message(&mut c).await else {
        panic!("an Error message expected")
    };
    assert_eq!(
        (e.id, e.destination, e.code),
        (int_id, host, UdpErrorCode::HOST_UNREACHABLE)
    );
    let std::net::IpAddr::V4(reporter) = e.reporter else {
        panic!("IPv4 reporter expected: {e:?}")
    };
    assert_eq!(
        reporter.octets()[..2],
        [198, 19],
        "the router reported it: {e:?}"
    );
    // Network unreachable: no route on the router (.128 and up).
    let net = SocketAddr::from((router.ip(130), 9));
    c.write_all(&socks6_datagram(id, net, b"no route"))
        .await
        .unwrap();
    let UdpMessage::Error(e) = next_message(&mut c).await else {
        panic!("an Error message expected")
    };
    assert_eq!(
        (e.destination, e.code),
        (net, UdpErrorCode::NETWORK_UNREACHABLE)
    );
    // The association goes on.
    let msg = socks6_datagram(id, echo.addr, b"still here");
    c.write_all(&msg).await.unwrap();
    assert_eq!(read_n(&mut c, msg.len()).await, msg);
}

#[tokio::test]
async fn socks6_udp_sends_no_error_messages_to_a_client_that_did_not_ask() {
    // A closed port on loopback: ICMP port unreachable, which has no UDP
    // Error code either; the association is not disturbed.
    let h = Harness::start(None).await;
    let echo = Echo::start("127.0.0.1").await;
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let (mut c, _, id) = socks6_associate(&h).await;
    c.write_all(&socks6_datagram(id, closed, b"closed port"))
        .await
        .unwrap();
    let mut confirmation = vec![6, 2, 0, 12];
    confirmation.extend(id);
    assert_eq!(read_n(&mut c, 12).await, confirmation);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let msg = socks6_datagram(id, echo.addr, b"after");
    c.write_all(&msg).await.unwrap();
    assert_eq!(
        read_n(&mut c, msg.len()).await,
        msg,
        "the echo comes next, no Error message before it"
    );
}

/// Asks for a SOCKS5 UDP association from `from` (logging in as `login`
/// when given); the connection and the 10-byte reply.
async fn socks5_udp_from(
    h: &Harness,
    from: &str,
    login: Option<(&str, &str)>,
) -> (TcpStream, Vec<u8>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(h.server).await.unwrap();
    let mut req = Vec::new();
    if let Some((user, pass)) = login {
        req.extend([5, 1, 2, 1, user.len() as u8]);
        req.extend(user.as_bytes());
        req.push(pass.len() as u8);
        req.extend(pass.as_bytes());
    } else {
        req.extend([5, 1, 0]);
    }
    req.extend([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]);
    c.write_all(&req).await.unwrap();
    if login.is_some() {
        assert_eq!(read_n(&mut c, 4).await, [5, 2, 1, 0], "logged in");
    } else {
        assert_eq!(read_n(&mut c, 2).await, [5, 0]);
    }
    let reply = read_n(&mut c, 10).await;
    (c, reply)
}

/// Asks for a SOCKS6 UDP association (no authentication) from `from`;
/// the connection and the 12-byte Operation Reply.
async fn socks6_udp_from(h: &Harness, from: &str) -> (TcpStream, Vec<u8>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(h.server).await.unwrap();
    c.write_all(&[6, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(
        read_n(&mut c, 4).await,
        [6, 0, 0, 0],
        "authentication reply"
    );
    let op = read_n(&mut c, 12).await;
    (c, op)
}

/// `sixpath_server_udp_associations_refused_total{cap="<cap>"}` from
/// `/metrics`.
async fn udp_refused_metric(h: &Harness, cap: &str) -> u64 {
    let mut c = TcpStream::connect(h.admin.unwrap()).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let page = String::from_utf8(crate::read_to_eof(&mut c).await).unwrap();
    let key = format!("sixpath_server_udp_associations_refused_total{{cap=\"{cap}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in {page}"))
        .parse()
        .unwrap()
}

const SOCKS5_NOT_ALLOWED: [u8; 10] = [5, 2, 0, 1, 0, 0, 0, 0, 0, 0];
const SOCKS6_NOT_ALLOWED: [u8; 12] = [6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];

#[tokio::test]
async fn per_source_udp_cap_refuses_not_allowed_spares_other_sources_and_frees_on_close() {
    let h = Harness::start_custom(None, |s| {
        s.max_udp_associations_per_source = 2;
        s.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (first, r) = socks5_udp_from(&h, "127.0.0.1", None).await;
    assert_eq!(r[..2], [5, 0]);
    let (_second, op) = socks6_udp_from(&h, "127.0.0.1").await;
    assert_eq!(op[..4], [6, 0, 0, 0], "SOCKS6 association succeeds");
    // The third from 127.0.0.1, in either protocol: not allowed by ruleset.
    let (mut c, r) = socks5_udp_from(&h, "127.0.0.1", None).await;
    assert_eq!(r, SOCKS5_NOT_ALLOWED);
    assert!(crate::read_to_eof(&mut c).await.is_empty(), "closed");
    let (_, op) = socks6_udp_from(&h, "127.0.0.1").await;
    assert_eq!(op, SOCKS6_NOT_ALLOWED);
    // Another source still gets its associations.
    let (_other, r) = socks5_udp_from(&h, "127.0.0.2", None).await;
    assert_eq!(r[..2], [5, 0], "another source is served");
    let (_other6, op) = socks6_udp_from(&h, "127.0.0.2").await;
    assert_eq!(
        op[..4],
        [6, 0, 0, 0],
        "another source is served over SOCKS6"
    );
    assert_eq!(udp_refused_metric(&h, "per_source").await, 2);
    assert_eq!(udp_refused_metric(&h, "per_user").await, 0);
    // Closing one frees its place once the server sees the close.
    drop(first);
    for attempt in 0.. {
        let (c, r) = socks5_udp_from(&h, "127.0.0.1", None).await;
        if r[..2] == [5, 0] {
            drop(c);
            break;
        }
        assert_eq!(r, SOCKS5_NOT_ALLOWED);
        assert!(attempt < 50, "place never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn per_user_udp_cap_refuses_not_allowed_spares_other_users_and_frees_on_close() {
    let h = Harness::start_custom(Some(&[("alice", "secret"), ("bob", "pw")]), |s| {
        s.max_udp_associations_per_user = 2;
        s.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let alice = Some(("alice", "secret"));
    let (first, r) = socks5_udp_from(&h, "127.0.0.1", alice).await;
    assert_eq!(r[..2], [5, 0]);
    // From another source: the cap is the user's, wherever she comes from.
    let (_second, r) = socks5_udp_from(&h, "127.0.0.2", alice).await;
    assert_eq!(r[..2], [5, 0]);
    let (mut c, r) = socks5_udp_from(&h, "127.0.0.3", alice).await;
    assert_eq!(r, SOCKS5_NOT_ALLOWED, "alice's third association");
    assert!(crate::read_to_eof(&mut c).await.is_empty(), "closed");
    let (_bob, r) = socks5_udp_from(&h, "127.0.0.1", Some(("bob", "pw"))).await;
    assert_eq!(r[..2], [5, 0], "bob has his own cap");
    assert_eq!(udp_refused_metric(&h, "per_user").await, 1);
    drop(first);
    for attempt in 0.. {
        let (c, r) = socks5_udp_from(&h, "127.0.0.1", alice).await;
        if r[..2] == [5, 0] {
            drop(c);
            break;
        }
        assert_eq!(r, SOCKS5_NOT_ALLOWED);
        assert!(attempt < 50, "place never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
