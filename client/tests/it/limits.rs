//! Connection caps: the client's per-source cap at accept, and the
//! defaults of both daemons agree.

/// One client at its default `--max-connections`, behind one address, is
/// not refused by a server at its default `--max-connections-per-source`.
#[test]
fn server_per_source_default_admits_one_client_at_its_default_connection_cap() {
    let client_total = sixpath_client::config::DEFAULT_MAX_CONNECTIONS;
    let server_per_source = sixpath_server::config::DEFAULT_MAX_PER_SOURCE;
    assert!(
        server_per_source >= client_total,
        "server --max-connections-per-source {server_per_source} < client --max-connections {client_total}"
    );
    assert!(sixpath_server::config::DEFAULT_MAX_CONNECTIONS >= server_per_source);
}

mod per_source {
    use std::net::SocketAddr;
    use std::time::Duration;

    use sixpath_client::client::Client;
    use sixpath_client::config::Settings;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    /// The client (server never reached) listening on `listen`, with a
    /// per-source cap of 2 and a long handshake deadline: its front-end and
    /// admin endpoint.
    fn start(listen: &str) -> (SocketAddr, SocketAddr) {
        let closed = std::net::TcpListener::bind(format!("{listen}:0")).unwrap();
        let server = closed.local_addr().unwrap();
        drop(closed);
        let mut s = Settings::new(server, format!("{listen}:0").parse().unwrap());
        s.max_connections_per_source = 2;
        s.handshake_timeout = Duration::from_secs(60);
        s.admin = Some(format!("{listen}:0").parse().unwrap());
        let client = Client::bind(s).unwrap();
        let addrs = (client.local_addrs()[0], client.admin_addr().unwrap());
        tokio::spawn(client.run(std::future::pending()));
        addrs
    }

    async fn connect_from(to: SocketAddr, from: &str) -> TcpStream {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        sock.connect(to).await.unwrap()
    }

    /// Whether the client answers a SOCKS5 greeting (it serves the
    /// connection) on a new connection from `from`.
    async fn served(proxy: SocketAddr, from: &str) -> (bool, TcpStream) {
        let mut c = connect_from(proxy, from).await;
        let _ = c.write_all(&[5, 1, 0]).await;
        let mut buf = [0u8; 2];
        let r = tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut buf))
            .await
            .expect("answered or closed well before the handshake deadline");
        (r.is_ok() && buf == [5, 0], c)
    }

    async fn get(admin: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(admin).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        let mut page = String::new();
        c.read_to_string(&mut page).await.unwrap();
        page
    }

    /// Two addresses of a LAN (not loopback) in a namespace of its own:
    /// the client listens on the first, applications come from both.
    #[test]
    fn per_source_cap_closes_the_extra_connection_at_once_spares_other_sources_and_frees_on_close()
    {
        let test = "per_source_cap_closes_the_extra_connection_at_once";
        if !crate::netns::can_run(test) {
            return;
        }
        let ns = crate::netns::Netns::new("cap");
        ns.ip(&["addr", "add", "198.18.77.1/32", "dev", "lo"]);
        ns.ip(&["addr", "add", "198.18.77.2/32", "dev", "lo"]);
        ns.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(per_source_cap("198.18.77.1", "198.18.77.2"));
        });
    }

    async fn per_source_cap(one: &str, other: &str) {
        let (proxy, admin) = start(one);
        let (ok1, first) = served(proxy, one).await;
        let (ok2, _second) = served(proxy, one).await;
        assert!(ok1 && ok2, "two connections from one source are served");
        // The third from that source is closed without an answer, long
        // before the 60 s handshake deadline.
        let mut third = connect_from(proxy, one).await;
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
            .await
            .expect("closed at once");
        assert!(r.is_err() || buf.is_empty(), "closed without an answer");
        // Another source is still served.
        let (ok, _o) = served(proxy, other).await;
        assert!(ok, "another source is served");
        let metrics = get(admin, "/metrics").await;
        assert!(
            metrics.contains("sixpath_client_connections_refused_total{cap=\"per_source\"} 1\n"),
            "{metrics}"
        );
        assert!(metrics.contains("sixpath_client_connections_refused_total{cap=\"total\"} 0\n"));
        let stats = get(admin, "/stats").await;
        let json: serde_json::Value =
            serde_json::from_str(stats.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(json["refused_by_cap"]["per_source"], 1, "{json}");
        // Closing one frees its place once the client sees the close.
        drop(first);
        for attempt in 0.. {
            let (ok, _c) = served(proxy, one).await;
            if ok {
                break;
            }
            assert!(attempt < 50, "place never freed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// This host's applications all come from loopback: the per-source cap
    /// does not hold them (only `--max-connections` does).
    #[tokio::test]
    async fn loopback_applications_are_not_held_by_the_per_source_cap() {
        let (proxy, _admin) = start("127.0.0.1");
        let mut held = Vec::new();
        for i in 0..4 {
            let (ok, c) = served(proxy, "127.0.0.1").await;
            assert!(
                ok,
                "loopback connection {i} served past a per-source cap of 2"
            );
            held.push(c);
        }
    }
}
