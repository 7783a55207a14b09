//! The server's own listeners and addresses: never a destination, whatever
//! the rules say, and addresses added after start count too.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sixpath_server::policy::{EgressRule, RuleAction};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::netns::{in_netns, ip};
use crate::{Harness, read_n};

/// A SOCKS5 CONNECT to `target` through the server at `server`: the
/// method reply and the request reply (12 bytes).
async fn socks5_connect(server: SocketAddr, target: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut c = TcpStream::connect(server).await.unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend(target.octets());
    req.extend(port.to_be_bytes());
    c.write_all(&req).await.unwrap();
    read_n(&mut c, 12).await
}

#[tokio::test]
async fn socks5_connect_to_the_servers_own_listener_gets_02_even_with_loopback_allowed() {
    // The harness allows 127.0.0.0/8 (`--allow-egress 127.0.0.0/8`).
    let h = Harness::start(None).await;
    let reply = socks5_connect(h.server, Ipv4Addr::LOCALHOST, h.server.port()).await;
    assert_eq!(reply, [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    // The echo target on the same address stays reachable.
    let reply = socks5_connect(h.server, Ipv4Addr::LOCALHOST, h.echo.port()).await;
    assert_eq!(reply[..4], [5, 0, 5, 0]);
}

#[test]
fn an_address_added_after_start_is_refused_as_the_servers_own_within_3_s() {
    const TEST: &str = "an_address_added_after_start_is_refused_as_the_servers_own_within_3_s";
    in_netns(TEST, &[], || async {
        let h = Harness::start_custom(None, |s| {
            s.listen[0].addr = "0.0.0.0:0".parse().unwrap();
            s.egress_rules
                .push(EgressRule::parse(RuleAction::Allow, "198.18.0.0/15").unwrap());
        })
        .await;
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, h.server.port()));
        let added = Ipv4Addr::new(198, 18, 0, 7);
        ip("addr add 198.18.0.7/32 dev lo");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let reply = socks5_connect(server, added, server.port()).await;
            if reply == [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a CONNECT to the server's listener on {added} still gets {reply:?} after 3 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
