//! The full chain on the testbed: `app (phone) -> sixpath-client (phone,
//! 127.0.0.1, a port the kernel picks) ==MPTCP over Wi-Fi and LTE==>
//! sixpath-server (operator) -> origin (internet)`. Each test starts the client in the phone
//! namespace (stopped on drop, the testbed's `down` removes the rest) and
//! reuses the flows that also run with `sixpath-server` as the entry point
//! (`mptcp`, `proxy`), with the client's local entry point instead.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bed::{self, Ns, Testbed};
use crate::browser;
use crate::flows::{self, Blast, Route};
use crate::mptcp;
use crate::netns;
use crate::proxy::{self, Origin};

const MIB: u64 = 1 << 20;
/// Extra client flags for bulk transfers: none, the defaults (TCP Fast Open
/// on). Linux 6.18 slowed MPTCP downloads whose SYN carried data to about
/// 1 Mbit/s once a second subflow joined; the client's fixed receive buffer
/// on such connections avoids it (`docs/testbed.md`), which these tests
/// check at full rate.
const BULK: &[&str] = &[];

/// A process a test started inside a testbed namespace, killed (by its
/// pid) on drop; its stderr goes to a log in the testbed's state directory.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(tb: &Testbed, ns: Ns, name: &'static str, program: &Path, args: &[&str]) -> Self {
        let log = File::create(tb.log_path(name)).expect("create log");
        let child = tb
            .command(ns, program.to_str().expect("UTF-8 path"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        Self { child, name }
    }

    /// Waits until something listens on TCP port `port` in `ns`.
    fn wait_listening(&mut self, tb: &Testbed, ns: Ns, port: u16) {
        bed::wait_listening(
            &tb.ns(ns),
            port,
            &mut self.child,
            Some(&tb.log_path(self.name)),
        );
    }

    /// The address of a sixpath daemon's `message` line (`listening`,
    /// `admin endpoint`), once logged.
    fn logged_addr(&mut self, tb: &Testbed, message: &str) -> SocketAddr {
        bed::logged_addr(&tb.log_path(self.name), message, &mut self.child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sixpath-client` in the phone, stopped on drop.
struct Client {
    proc: Proc,
    /// Its entry point (SOCKS, HTTP proxy): 127.0.0.1 and a port the
    /// kernel picked.
    entry: SocketAddr,
}

/// Starts `sixpath-client --server SERVER --listen 127.0.0.1:0 EXTRA...` in
/// the phone and waits for its listener.
fn start_client(tb: &Testbed, server: SocketAddr, extra: &[&str]) -> Client {
    let server = server.to_string();
    let mut args = vec!["--server", &server, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(
        tb,
        Ns::Phone,
        "client",
        &bed::binary("sixpath-client"),
        &args,
    );
    let entry = proc.logged_addr(tb, "listening");
    Client { proc, entry }
}

/// One `connection closed` line of the client's log, as key/value pairs.
#[derive(Debug)]
struct ConnLine(String);

impl ConnLine {
    fn field(&self, key: &str) -> Option<&str> {
        let pat = format!(" {key}=");
        let start = self.0.find(&pat)? + pat.len();
        let rest = &self.0[start..];
        if let Some(quoted) = rest.strip_prefix('"') {
            quoted.split('"').next()
        } else {
            rest.split(' ').next()
        }
    }

    fn transport(&self) -> &str {
        self.field("transport").unwrap_or("?")
    }

    fn subflows(&self) -> u32 {
        self.field("subflows")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn syn_data(&self) -> bool {
        self.field("syn_data") == Some("true")
    }
}

/// Waits (up to 10 s) until the client has logged at least `n`
/// `connection closed` lines; returns them all.
fn conn_lines(tb: &Testbed, n: usize) -> Vec<ConnLine> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<ConnLine> = tb
            .log("client")
            .lines()
            .filter(|l| l.contains("connection closed"))
            .map(|l| ConnLine(l.to_owned()))
            .collect();
        if lines.len() >= n || Instant::now() > until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The client's log line for the last connection; asserts that it went
/// over Multipath TCP. (The subflow count is read when the connection
/// ends, when subflows may already be gone; the per-interface counters show
/// that both links carried bytes.)
fn assert_last_conn_mptcp(tb: &Testbed, label: &str, n: usize) {
    let lines = conn_lines(tb, n);
    let last = lines.last().unwrap_or_else(|| {
        panic!(
            "{label}: no connection line in the client log:\n{}",
            tb.log("client")
        )
    });
    println!(
        "{label}: client log: transport={} subflows={} (at close) syn_data={} (must be mptcp)",
        last.transport(),
        last.subflows(),
        last.syn_data()
    );
    assert_eq!(last.transport(), "mptcp", "{label}: {}", last.0);
}

fn origin(tb: &Testbed) -> Origin {
    Origin::start(&tb.ns(Ns::Internet), bed::ORIGIN)
}

fn blast_origin(tb: &Testbed) -> (Blast, SocketAddr) {
    let blast = Blast::start(&tb.ns(Ns::Internet), bed::ORIGIN);
    let addr = blast.addr;
    (blast, addr)
}

fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "{program} is missing: apt-get install it (scripts/test installs it as root)"
    );
    ok
}

#[test]
fn client_chain_curl_socks5h_and_http_proxy_get_identical_1k_and_64m_bodies() {
    if !bed::can_run("client_chain_curl_socks5h_and_http_proxy_get_identical_1k_and_64m_bodies") {
        return;
    }
    have("curl");
    // Fast links: the test is about the bytes (64 MiB at 30 Mbit/s would
    // take 18 s per body).
    let tb = Testbed::up(&["--wlan-rate", "200mbit", "--lte-rate", "100mbit"]);
    let origin = origin(&tb);
    let client = start_client(&tb, tb.server(), BULK);
    proxy::assert_curl_bodies_identical(
        &tb,
        &origin,
        "curl --socks5-hostname -> sixpath-client -> sixpath-server -> origin",
        "--socks5-hostname",
        &client.entry.to_string(),
    );
    proxy::assert_curl_bodies_identical(
        &tb,
        &origin,
        "curl --proxy http:// -> sixpath-client -> sixpath-server -> origin",
        "--proxy",
        &format!("http://{}", client.entry),
    );
    assert_last_conn_mptcp(&tb, "curl chain", 4);
}

#[test]
fn client_chain_download_uses_both_links_at_90_percent_of_their_sum() {
    if !bed::can_run("client_chain_download_uses_both_links_at_90_percent_of_their_sum") {
        return;
    }
    let tb = Testbed::up(&[]);
    let (blast, target) = blast_origin(&tb);
    let client = start_client(&tb, tb.server(), BULK);
    mptcp::assert_download_aggregates(
        &tb,
        "chain download (app TCP -> sixpath-client ==MPTCP==> sixpath-server -> origin)",
        Route::Socks5 {
            proxy: client.entry,
            target,
        },
        &blast,
        false,
    );
    assert_last_conn_mptcp(&tb, "chain download", 1);
    // The bulk direction comes out of the Multipath TCP connection, which
    // the client reads rather than splices (splice out of MPTCP stalls).
    let lines = conn_lines(&tb, 1);
    let relay = lines.last().and_then(|l| l.field("relay"));
    assert_eq!(relay, Some("copy"), "client log: {lines:?}");
}

#[test]
fn client_chain_upload_uses_both_links_at_90_percent_of_their_sum() {
    if !bed::can_run("client_chain_upload_uses_both_links_at_90_percent_of_their_sum") {
        return;
    }
    let tb = Testbed::up(&[]);
    let (blast, target) = blast_origin(&tb);
    let client = start_client(&tb, tb.server(), BULK);
    mptcp::assert_upload_aggregates(
        &tb,
        "chain upload (app TCP -> sixpath-client ==MPTCP==> sixpath-server -> origin)",
        Route::Socks5 {
            proxy: client.entry,
            target,
        },
        &blast,
        false,
    );
    assert_last_conn_mptcp(&tb, "chain upload", 1);
    // A server reached without TLS: the client splices the bulk direction
    // from the application's TCP socket into the Multipath TCP one.
    let lines = conn_lines(&tb, 1);
    let relay = lines.last().and_then(|l| l.field("relay"));
    assert_eq!(relay, Some("splice"), "client log: {lines:?}");
}

#[test]
fn client_chain_download_survives_wifi_down_and_finishes_on_lte() {
    if !bed::can_run("client_chain_download_survives_wifi_down_and_finishes_on_lte") {
        return;
    }
    let tb = Testbed::up(&[]);
    let (blast, target) = blast_origin(&tb);
    let client = start_client(&tb, tb.server(), BULK);
    mptcp::assert_wifi_failover(
        &tb,
        "chain failover",
        Route::Socks5 {
            proxy: client.entry,
            target,
        },
        &blast,
        false,
    );
}

#[test]
fn client_chain_lte_backup_carries_under_2_percent_until_wifi_fails() {
    if !bed::can_run("client_chain_lte_backup_carries_under_2_percent_until_wifi_fails") {
        return;
    }
    let tb = Testbed::up(&[]);
    tb.backup(true);
    let (blast, target) = blast_origin(&tb);
    let client = start_client(&tb, tb.server(), BULK);
    let before = mptcp::assert_wifi_failover(
        &tb,
        "chain failover, LTE as backup",
        Route::Socks5 {
            proxy: client.entry,
            target,
        },
        &blast,
        false,
    );
    let share = before.lte_rx as f64 / before.bytes as f64 * 100.0;
    println!(
        "chain, LTE as backup: while Wi-Fi was up lte0 received {} bytes for {:.1} MiB = {share:.2} % \
         (must be < 2 %)",
        before.lte_rx,
        before.bytes as f64 / MIB as f64,
    );
    assert!(
        share < 2.0,
        "LTE as backup carried {share:.2} % while Wi-Fi was up"
    );
}

/// The client flags of the handover tests: both paths, the `handover`
/// policy, probes from the start (the defaults otherwise: 250 ms).
const HANDOVER: &[&str] = &[
    "--path",
    "wlan0",
    "--path",
    "lte0",
    "--path-policy",
    "handover",
    "--probe-idle",
];

/// Starts the client under `handover` on its own endpoints (the testbed's
/// are flushed: they are not the client's, so it could not withdraw them)
/// and an origin, and makes a first connection, which opens the SOCKS6
/// session the probes prove; returns when the probes have had a second
/// to get answers.
fn handover_client(tb: &Testbed) -> (Client, Blast, Route) {
    let flush = tb
        .command(Ns::Phone, "ip")
        .args(["mptcp", "endpoint", "flush"])
        .status()
        .expect("ip mptcp endpoint flush");
    assert!(flush.success(), "ip mptcp endpoint flush");
    let (blast, target) = blast_origin(tb);
    let client = start_client(tb, tb.server(), HANDOVER);
    let route = Route::Socks5 {
        proxy: client.entry,
        target,
    };
    let (tx, _rx) = mpsc::channel();
    let warm = flows::download(&tb.ns(Ns::Phone), route, false, 64 * 1024, 64 * 1024, tx)
        .join()
        .expect("warm-up download");
    assert_eq!(warm.bytes, 64 * 1024, "warm-up");
    let _ = blast.sent.recv_timeout(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    (client, blast, route)
}

/// A 24 MiB download through the client under `handover`: Wi-Fi fails
/// (`fail(tb, true)`) after 4 MiB and recovers (`fail(tb, false)`) 4 s
/// later. Asserts the bytes and their SHA-256, no stall of a second or
/// more (the figures are in `scripts/bench-multipath`), LTE under 1 % of
/// the bytes while Wi-Fi was healthy, traffic back on Wi-Fi after it
/// recovered, and the client's log naming `cause` for the path going down.
fn assert_handover(label: &str, cause: &str, fail: impl Fn(&Testbed, bool)) {
    let tb = Testbed::up(&[]);
    let (_client, blast, route) = handover_client(&tb);

    let size = 24 * MIB;
    let (tx, rx) = mpsc::channel();
    let lte_start = tb.phone_rx_bytes("lte0");
    let handle = flows::download(&tb.ns(Ns::Phone), route, false, size, 4 * MIB, tx);
    let at_cut = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("4 MiB arrived");
    let lte_before = tb.phone_rx_bytes("lte0") - lte_start;
    fail(&tb, true);
    std::thread::sleep(Duration::from_secs(4));
    fail(&tb, false);
    let w_back = tb.phone_rx_bytes("wlan0");
    let d = handle.join().expect("download thread");
    let w_after = tb.phone_rx_bytes("wlan0") - w_back;
    let (sent, _) = blast
        .sent
        .recv_timeout(Duration::from_secs(30))
        .expect("the sender reported its digest");
    let share = lte_before as f64 / at_cut as f64 * 100.0;
    println!(
        "{label}: done in {:.2} s; longest stall after the first 4 MiB {:.0} ms (must be < 1000); \
         LTE {share:.2} % of the bytes while Wi-Fi was healthy (must be < 1 %); \
         wlan0 received {:.1} MB after it recovered",
        d.elapsed.as_secs_f64(),
        d.longest_stall.as_secs_f64() * 1e3,
        w_after as f64 / 1e6,
    );
    assert_eq!(d.bytes, size, "{label}: byte count");
    assert_eq!(flows::hex(&d.sha), flows::hex(&sent), "{label}: SHA-256");
    assert!(
        d.longest_stall < Duration::from_secs(1),
        "{label}: stalled {:?}\n{}",
        d.longest_stall,
        tb.log("client")
    );
    assert!(
        share < 1.0,
        "{label}: LTE carried {share:.2} % while Wi-Fi was healthy"
    );
    assert!(
        w_after > 2_000_000,
        "{label}: only {w_after} bytes came over Wi-Fi after it recovered\n{}",
        tb.log("client")
    );
    let log = tb.log("client");
    assert!(
        log.lines()
            .any(|l| l.contains("path down") && l.contains("path=\"wlan0\"") && l.contains(cause)),
        "{label}: no `path down` line for wlan0 with cause `{cause}`:\n{log}"
    );
}

#[test]
fn client_chain_handover_moves_off_a_downed_wifi_and_back_without_a_1s_stall() {
    if !bed::can_run("client_chain_handover_moves_off_a_downed_wifi_and_back_without_a_1s_stall") {
        return;
    }
    assert_handover(
        "chain handover, Wi-Fi down",
        "cause=link down",
        |tb, fail| {
            tb.link("wlan", !fail);
        },
    );
}

#[test]
fn client_chain_handover_moves_off_a_blackholed_wifi_and_back_without_a_1s_stall() {
    if !bed::can_run(
        "client_chain_handover_moves_off_a_blackholed_wifi_and_back_without_a_1s_stall",
    ) {
        return;
    }
    assert_handover(
        "chain handover, Wi-Fi blackholed",
        "unanswered",
        |tb, fail| tb.blackhole("wlan", fail),
    );
}

#[test]
fn client_chain_handover_reopens_a_connection_started_into_a_fresh_blackhole_on_lte() {
    if !bed::can_run(
        "client_chain_handover_reopens_a_connection_started_into_a_fresh_blackhole_on_lte",
    ) {
        return;
    }
    let tb = Testbed::up(&[]);
    let (_client, _blast, route) = handover_client(&tb);
    // Wi-Fi blackholes; a connection starts before the probes can tell.
    tb.blackhole("wlan", true);
    std::thread::sleep(Duration::from_millis(50));
    let (tx, _rx) = mpsc::channel();
    let d = flows::download(&tb.ns(Ns::Phone), route, false, 64 * 1024, 64 * 1024, tx)
        .join()
        .expect("download");
    tb.blackhole("wlan", false);
    println!(
        "chain handover: a connection opened 50 ms into a Wi-Fi blackhole finished in {:.0} ms (must be < 2000)",
        d.elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(d.bytes, 64 * 1024);
    assert!(
        d.elapsed < Duration::from_secs(2),
        "took {:?} (waited for Wi-Fi?)\n{}",
        d.elapsed,
        tb.log("client")
    );
    assert!(
        tb.log("client")
            .contains("opening it again on the new path"),
        "{}",
        tb.log("client")
    );
}

#[test]
fn client_chain_download_with_loss_keeps_the_bytes() {
    if !bed::can_run("client_chain_download_with_loss_keeps_the_bytes") {
        return;
    }
    let tb = Testbed::up(&["--loss", "0.005"]);
    let (blast, target) = blast_origin(&tb);
    let client = start_client(&tb, tb.server(), BULK);
    let size = 16 * MIB;
    let (tx, _rx) = mpsc::channel();
    let d = flows::download(
        &tb.ns(Ns::Phone),
        Route::Socks5 {
            proxy: client.entry,
            target,
        },
        false,
        size,
        u64::MAX,
        tx,
    )
    .join()
    .expect("download thread");
    let (sent, _) = blast
        .sent
        .recv_timeout(Duration::from_secs(30))
        .expect("the sender reported its digest");
    let drops = tb.loss_drops();
    println!(
        "chain, 0.5 % loss: {} of {} bytes in {:.2} s = {:.2} Mbit/s (limit 60 s); sha256 {} (origin {}); \
         {drops} packets dropped (must be > 0)",
        d.bytes,
        size,
        d.elapsed.as_secs_f64(),
        flows::mbit_s(d.bytes, d.elapsed),
        flows::hex(&d.sha),
        flows::hex(&sent),
    );
    assert_eq!(d.bytes, size, "byte count");
    assert_eq!(flows::hex(&d.sha), flows::hex(&sent), "SHA-256");
    assert!(drops > 0, "the loss rules dropped nothing");
    assert!(d.elapsed < Duration::from_secs(60), "took {:?}", d.elapsed);
}

#[test]
fn client_chain_convert_mode_gets_identical_1k_and_64m_bodies() {
    if !bed::can_run("client_chain_convert_mode_gets_identical_1k_and_64m_bodies") {
        return;
    }
    have("curl");
    let tb = Testbed::up(&["--wlan-rate", "200mbit", "--lte-rate", "100mbit"]);
    let origin = origin(&tb);
    // The testbed's server listens with every protocol, Convert included.
    let client = start_client(&tb, tb.server(), &["--upstream", "convert"]);
    proxy::assert_curl_bodies_identical(
        &tb,
        &origin,
        "curl -> sixpath-client --upstream convert -> sixpath-server -> origin",
        "--socks5-hostname",
        &client.entry.to_string(),
    );
    let lines = conn_lines(&tb, 2);
    assert!(
        lines.iter().all(|l| l.field("upstream") == Some("convert")),
        "every connection went upstream with Convert: {lines:?}"
    );
    assert_last_conn_mptcp(&tb, "convert chain", 2);
}

#[test]
fn client_chain_falls_back_to_tcp_when_the_operator_disables_mptcp() {
    if !bed::can_run("client_chain_falls_back_to_tcp_when_the_operator_disables_mptcp") {
        return;
    }
    have("curl");
    let tb = Testbed::up(&[]);
    let origin = origin(&tb);
    // A server started with MPTCP disabled in its namespace listens on TCP.
    let out = tb
        .command(Ns::Operator, "sysctl")
        .args(["-qw", "net.mptcp.enabled=0"])
        .output()
        .expect("sysctl");
    assert!(out.status.success(), "sysctl net.mptcp.enabled=0 failed");
    let mut server = Proc::spawn(
        &tb,
        Ns::Operator,
        "server-tcp",
        &bed::binary("sixpath-server"),
        &[
            "--listen",
            &format!("{}:0", bed::SERVER),
            "--allow-anonymous",
            "--allow-egress",
            "198.18.0.0/15",
        ],
    );
    // `listening with plain TCP`, on a port the kernel picked.
    let server_addr = server.logged_addr(&tb, "listening");
    let client = start_client(&tb, server_addr, &[]);
    let url = format!("http://{}/bytes/1024", origin.addr);
    let entry = client.entry.to_string();
    for _ in 0..2 {
        let body = proxy::curl_via(&tb, "--socks5-hostname", &entry, &url);
        assert_eq!(body.len(), 1024, "body length");
    }
    let lines = conn_lines(&tb, 2);
    let transports: Vec<&str> = lines.iter().map(ConnLine::transport).collect();
    println!(
        "chain with MPTCP off in the operator: 2 x 1 KiB fetched; client log transports {transports:?} \
         (must all be tcp-fallback)"
    );
    assert_eq!(lines.len(), 2, "client log:\n{}", tb.log("client"));
    assert!(
        transports.iter().all(|t| *t == "tcp-fallback"),
        "client log:\n{}",
        tb.log("client")
    );
}

/// Time from the start of `connect` to the first response byte of an HTTP
/// GET to `origin`, straight or through the client's SOCKS5 entry point
/// `via`.
fn first_byte_time(ns: &str, origin: SocketAddr, via: Option<SocketAddr>) -> Duration {
    netns::spawn_in(ns, move || {
        let start = Instant::now();
        let mut s = if let Some(entry) = via {
            let mut s = TcpStream::connect_timeout(&entry, Duration::from_secs(10)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            flows::socks5_connect(&mut s, origin);
            s
        } else {
            let s = TcpStream::connect_timeout(&origin, Duration::from_secs(10)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        };
        s.set_nodelay(true).unwrap();
        s.write_all(b"GET /bytes/16 HTTP/1.1\r\nHost: origin\r\n\r\n")
            .unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("first response byte");
        let t = start.elapsed();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        t
    })
    .join()
    .expect("first-byte thread")
}

/// SYNs (without ACK) in a pcap file of Ethernet frames: their TCP
/// payloads.
fn syn_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    assert!(pcap.len() >= 24, "pcap too short");
    assert_eq!(
        u32::from_le_bytes(pcap[0..4].try_into().unwrap()),
        0xa1b2_c3d4,
        "pcap magic (little-endian, microseconds)"
    );
    assert_eq!(
        u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
        1,
        "link type Ethernet"
    );
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let frame = &pcap[off + 16..(off + 16 + caplen).min(pcap.len())];
        off += 16 + caplen;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        if ip[9] != 6 || total < ihl + 20 {
            continue;
        }
        let tcp = &ip[ihl..total];
        let doff = usize::from(tcp[12] >> 4) * 4;
        let flags = tcp[13];
        if flags & 0x02 != 0 && flags & 0x10 == 0 && tcp.len() >= doff {
            out.push(tcp[doff..].to_vec());
        }
    }
    out
}

#[test]
fn client_chain_first_byte_within_one_wifi_rtt_of_direct_and_request_rides_in_the_syn() {
    if !bed::can_run(
        "client_chain_first_byte_within_one_wifi_rtt_of_direct_and_request_rides_in_the_syn",
    ) {
        return;
    }
    have("tcpdump");
    // The default delays: Wi-Fi 10 ms each way (RTT 20 ms), LTE 25 ms.
    let tb = Testbed::up(&[]);
    let wifi_rtt = Duration::from_millis(20);
    let origin = origin(&tb);
    let client = start_client(&tb, tb.server(), &[]);
    let phone = tb.ns(Ns::Phone);
    // The first connection through a server waits for its answer (no early
    // reply yet, docs/client.md); the rest are 0-RTT.
    first_byte_time(&phone, origin.addr, Some(client.entry));
    let pcap = tb.log_path("syn").with_extension("pcap");
    let mut dump = tb
        .command(Ns::Phone, "tcpdump")
        .args([
            // Each packet to the file at once: without it the ring hands
            // packets over in blocks, and a short capture can end empty.
            "--immediate-mode",
            "-i",
            "wlan0",
            "-nn",
            "-U",
            "-s",
            "0",
            "-w",
            pcap.to_str().unwrap(),
            &format!(
                "tcp dst port {} and tcp[tcpflags] & tcp-syn != 0",
                tb.server().port()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    // tcpdump says "listening on wlan0" once it captures.
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).expect("tcpdump stderr");
    assert!(line.contains("listening"), "tcpdump: {line}");
    let tries = 5;
    let mut chain = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..tries {
        chain.push(first_byte_time(&phone, origin.addr, Some(client.entry)));
        direct.push(first_byte_time(&phone, origin.addr, None));
    }
    // tcpdump writes each packet at once (-U); TERM ends it cleanly.
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &dump.id().to_string()])
        .status();
    let _ = dump.wait();
    let best = |v: &[Duration]| v.iter().min().copied().unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (c, d) = (best(&chain), best(&direct));
    println!(
        "0-RTT: connect to first response byte, best of {tries}: through the chain {:.1} ms, direct from \
         the phone {:.1} ms; difference {:+.1} ms (must be <= one Wi-Fi RTT = {:.0} ms); \
         all chain {:?} ms, all direct {:?} ms",
        ms(c),
        ms(d),
        ms(c) - ms(d),
        ms(wifi_rtt),
        chain.iter().map(|&x| ms(x).round()).collect::<Vec<_>>(),
        direct.iter().map(|&x| ms(x).round()).collect::<Vec<_>>(),
    );
    let syns = syn_payloads(&std::fs::read(&pcap).expect("read the capture"));
    let with_request = syns
        .iter()
        .filter(|p| p.first() == Some(&6) && p.windows(11).any(|w| w == b"GET /bytes/"))
        .count();
    println!(
        "0-RTT capture on wlan0: {} SYNs to the server, {with_request} carry a SOCKS6 request (version 6) \
         with the HTTP request as initial data (must be {tries}); payload sizes {:?}",
        syns.len(),
        syns.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        with_request, tries,
        "SYNs with the SOCKS6 request and initial data"
    );
    assert!(
        c <= d + wifi_rtt,
        "chain {:.1} ms > direct {:.1} ms + {:.0} ms",
        ms(c),
        ms(d),
        ms(wifi_rtt)
    );
    let lines = conn_lines(&tb, tries + 1);
    assert!(
        lines.iter().skip(1).all(ConnLine::syn_data),
        "the client logged syn_data=true for the 0-RTT connections: {lines:?}"
    );
}

#[test]
fn client_chain_carries_iperf3_through_proxychains() {
    if !bed::can_run("client_chain_carries_iperf3_through_proxychains") {
        return;
    }
    have("iperf3");
    assert!(
        Command::new("sh")
            .args(["-c", "command -v proxychains4"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "proxychains4 is missing: apt-get install proxychains4 (scripts/test installs it as root)"
    );
    let tb = Testbed::up(&[]);
    let port = netns::free_port(&tb.ns(Ns::Internet), bed::ORIGIN).to_string();
    let mut iperf = Proc::spawn(
        &tb,
        Ns::Internet,
        "iperf3-server",
        Path::new("/usr/bin/iperf3"),
        &["-s", "-1", "-B", bed::ORIGIN, "-p", &port],
    );
    iperf.wait_listening(&tb, Ns::Internet, port.parse().unwrap());
    let client = start_client(&tb, tb.server(), BULK);
    let conf = tb.log_path("proxychains").with_extension("conf");
    std::fs::write(
        &conf,
        format!(
            "strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n\
             [ProxyList]\nsocks5 {} {}\n",
            client.entry.ip(),
            client.entry.port()
        ),
    )
    .unwrap();
    let out = tb
        .command(Ns::Phone, "proxychains4")
        .args([
            "-q",
            "-f",
            conf.to_str().unwrap(),
            "iperf3",
            "-c",
            bed::ORIGIN,
            "-p",
            &port,
            "-t",
            "3",
            "-J",
        ])
        .output()
        .expect("run proxychains4 iperf3");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 -J output ({e}): {}\n{}\nclient log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tb.log("client")
        )
    });
    assert!(
        out.status.success() && report.get("error").is_none(),
        "iperf3 failed: {}\nclient log:\n{}",
        report["error"],
        tb.log("client")
    );
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let lines = conn_lines(&tb, 2);
    let to_iperf: Vec<&ConnLine> = lines
        .iter()
        .filter(|l| {
            l.field("target")
                .is_some_and(|t| t.ends_with(&format!(":{port}")))
        })
        .collect();
    println!(
        "iperf3 via proxychains4 -> sixpath-client: {:.1} MB received by the server at {:.2} Mbit/s \
         (must be > 0); {} of its 2 connections (control, data) logged as closed by the client within 10 s \
         (must be 2, all over MPTCP), transports {:?}, ends {:?}",
        received as f64 / 1e6,
        bps / 1e6,
        to_iperf.len(),
        to_iperf
            .iter()
            .map(|l| format!("{}/{}", l.transport(), l.subflows()))
            .collect::<Vec<_>>(),
        to_iperf
            .iter()
            .map(|l| l.field("end").unwrap_or("-"))
            .collect::<Vec<_>>()
    );
    assert!(received > 0, "the iperf3 server received nothing");
    // Both connections end: when the iperf3 server closes its data socket
    // with bytes still unread, its reset reaches iperf3 through the chain
    // (the data connection used to stay open until the idle timeout).
    assert_eq!(to_iperf.len(), 2, "client log:\n{}", tb.log("client"));
    assert!(
        to_iperf.iter().all(|l| l.transport() == "mptcp"),
        "client log:\n{}",
        tb.log("client")
    );
}

/// A DNS server in the internet namespace: answers every A question with
/// `198.18.9.2`.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the zero byte, then type and class.
    let mut i = 12;
    while i < query.len() && query[i] != 0 {
        i += usize::from(query[i]) + 1;
    }
    let end = i + 5;
    if end > query.len() {
        return None;
    }
    let mut r = query[..2].to_vec();
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&query[12..end]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 9, 2]);
    Some(r)
}

#[test]
fn client_chain_udp_associate_resolves_a_name_through_dns_in_the_internet() {
    if !bed::can_run("client_chain_udp_associate_resolves_a_name_through_dns_in_the_internet") {
        return;
    }
    let tb = Testbed::up(&[]);
    let (ready_tx, ready) = mpsc::channel();
    let _dns = netns::spawn_in(&tb.ns(Ns::Internet), move || {
        let s = UdpSocket::bind(format!("{}:0", bed::ORIGIN)).expect("bind DNS");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        ready_tx.send(s.local_addr().unwrap().port()).unwrap();
        let mut b = [0u8; 512];
        // Serves until 30 s pass without a query (the thread is detached).
        while let Ok((n, from)) = s.recv_from(&mut b) {
            if let Some(r) = dns_answer(&b[..n]) {
                let _ = s.send_to(&r, from);
            }
        }
    });
    let dns_port = ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let client = start_client(&tb, tb.server(), &[]);
    let entry = client.entry;
    let result = netns::spawn_in(&tb.ns(Ns::Phone), move || {
        let mut c = TcpStream::connect_timeout(&entry, Duration::from_secs(10)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.write_all(&[5, 1, 0]).unwrap();
        let mut r = [0u8; 2];
        c.read_exact(&mut r).unwrap();
        assert_eq!(r, [5, 0], "SOCKS5 method selection");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(me) = udp.local_addr().unwrap() else {
            unreachable!()
        };
        let mut req = vec![5, 3, 0, 1];
        req.extend_from_slice(&me.ip().octets());
        req.extend_from_slice(&me.port().to_be_bytes());
        c.write_all(&req).unwrap();
        let mut head = [0u8; 4];
        c.read_exact(&mut head).expect("UDP ASSOCIATE reply");
        if head[1] == 0x07 {
            return None;
        }
        assert_eq!(head[..2], [5, 0], "UDP ASSOCIATE reply code");
        assert_eq!(head[3], 1, "IPv4 relay address");
        let mut a = [0u8; 6];
        c.read_exact(&mut a).unwrap();
        let mut relay =
            SocketAddr::from(([a[0], a[1], a[2], a[3]], u16::from_be_bytes([a[4], a[5]])));
        if relay.ip().is_unspecified() {
            relay.set_ip(entry.ip());
        }
        // "origin.test" A IN, through the relay to the DNS server.
        let mut dgram = vec![0, 0, 0, 1, 198, 18, 9, 2];
        dgram.extend_from_slice(&dns_port.to_be_bytes());
        dgram.extend_from_slice(&[0x51, 0x7e, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        dgram.extend_from_slice(b"\x06origin\x04test\x00\x00\x01\x00\x01");
        udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1500];
        for _ in 0..5 {
            udp.send_to(&dgram, relay).unwrap();
            if let Ok((n, _)) = udp.recv_from(&mut b) {
                drop(c);
                return Some(b[..n].to_vec());
            }
        }
        panic!("no DNS answer through the UDP relay {relay} in 10 s");
    })
    .join()
    .expect("UDP ASSOCIATE thread");
    let Some(reply) = result else {
        println!(
            "\n********************************************************************\n\
             SKIP client_chain_udp_associate_resolves_a_name_through_dns_in_the_internet:\n\
             sixpath-client answers SOCKS5 UDP ASSOCIATE with 0x07 (command not\n\
             supported): the client's UDP relay (UDP ASSOCIATE) is missing.\n\
             ********************************************************************\n"
        );
        return;
    };
    // SOCKS5 UDP header (IPv4: 10 bytes), then the DNS answer.
    assert!(reply.len() > 10 + 12, "short reply {reply:?}");
    assert_eq!(reply[..4], [0, 0, 0, 1], "SOCKS5 UDP header");
    assert_eq!(reply[4..8], [198, 18, 9, 2], "from the DNS server");
    assert_eq!(
        reply[8..10],
        dns_port.to_be_bytes(),
        "from the DNS server's port"
    );
    let dns = &reply[10..];
    println!(
        "UDP ASSOCIATE: origin.test resolved through sixpath-client to {:?} (must be 198.18.9.2)",
        &dns[dns.len() - 4..]
    );
    assert_eq!(dns[..2], [0x51, 0x7e], "DNS id");
    assert_eq!(dns[6..8], [0, 1], "one answer");
    assert_eq!(dns[dns.len() - 4..], [198, 18, 9, 2], "the A record");
}

/// Per path as the status page shows it: bytes (both directions) in the
/// paths table and the highest rate the chart has plotted.
fn page_paths(s: &browser::Session) -> serde_json::Value {
    s.run(
        "const out = {};
         for (const r of document.querySelectorAll('#paths tr[data-iface]')) {
           out[r.dataset.iface] = { bytes: Number(r.dataset.bytes), backup: r.dataset.backup === 'true', peak: 0 };
         }
         for (const [k, pts] of Object.entries(window.sixpathStatus().series)) {
           if (out[k]) out[k].peak = pts.reduce((m, p) => Math.max(m, p[1]), 0);
         }
         return out;",
    )
}

/// Runs `script` in the page every 250 ms until it returns something
/// other than `null` (that value), at most `secs` seconds.
fn wait_page(s: &browser::Session, what: &str, secs: u64, script: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = s.run(script);
        if !v.is_null() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One raw HTTP/1.1 exchange with the admin endpoint `admin`: status code
/// and body.
fn admin_exchange(admin: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(admin).expect("connect admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{head}\r\nHost: {admin}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (code, body.unwrap_or_default())
}

fn policy_now(admin: SocketAddr) -> String {
    let (code, body) = admin_exchange(admin, "GET /api/status HTTP/1.1", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["policy"].as_str().unwrap_or_default().to_owned()
}

/// The status page in headless Chromium, inside the phone, while a 48 MiB
/// download runs through the client under `aggregate` over Wi-Fi and LTE:
/// the page loads, its table and chart show bytes on both paths; a click
/// on `backup` switches the policy at run time, after which LTE's bytes
/// stop growing while Wi-Fi's do; policy POSTs without the page's token,
/// with a wrong one, from a foreign origin or from a page of another
/// origin in the browser are refused (403) and change nothing. Saves a
/// screenshot taken during the download, after the switch
/// (`status-page.png` in the cargo target tmp dir, or
/// `$SIXPATH_SCREENSHOT`; `docs/status-page.png` is one).
#[test]
fn status_page_in_chromium_shows_both_paths_and_its_backup_switch_stops_lte() {
    const TEST: &str = "status_page_in_chromium_shows_both_paths_and_its_backup_switch_stops_lte";
    if !bed::can_run(TEST) || !browser::available(TEST) {
        return;
    }
    let tb = Testbed::up(&[]);
    let flush = tb
        .command(Ns::Phone, "ip")
        .args(["mptcp", "endpoint", "flush"])
        .status()
        .expect("ip mptcp endpoint flush");
    assert!(flush.success(), "ip mptcp endpoint flush");
    let (blast, target) = blast_origin(&tb);
    let mut client = start_client(
        &tb,
        tb.server(),
        &[
            "--path",
            "wlan0",
            "--path",
            "lte0",
            "--path-policy",
            "aggregate",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = client.proc.logged_addr(&tb, "admin endpoint");
    // The browser's profile and temporary files live in the testbed's
    // state directory, which `down` removes even when the test fails.
    let state = tb
        .log_path("chromium")
        .parent()
        .expect("state directory")
        .join("chromium");
    let profile = state.join("profile");
    let tmp = state.join("tmp");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let log = File::create(tb.log_path("chromedriver")).expect("create log");
    let driver_port = netns::free_port(&tb.ns(Ns::Phone), "127.0.0.1");
    let child = tb
        .command(Ns::Phone, browser::CHROMEDRIVER)
        .arg(format!("--port={driver_port}"))
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("start chromedriver");
    let mut driver = Proc {
        child,
        name: "chromedriver",
    };
    driver.wait_listening(&tb, Ns::Phone, driver_port);
    let shot_path = std::env::var_os("SIXPATH_SCREENSHOT").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png"),
        std::path::PathBuf::from,
    );

    let ns = tb.ns(Ns::Phone);
    let route = Route::Socks5 {
        proxy: client.entry,
        target,
    };
    let profile_dir = profile.clone();
    let size = 48 * MIB;
    let scenario = netns::spawn_in(&ns.clone(), move || {
        let s = browser::Session::start(
            SocketAddr::from(([127, 0, 0, 1], driver_port)),
            &profile_dir,
        );
        s.go(&format!("http://{admin}/"));
        assert_eq!(s.title(), "sixpath-client status");
        wait_page(
            &s,
            "the page shows the policy",
            15,
            "return document.querySelector('#policy-aggregate.active') ? true : null;",
        );
        let token = s
            .run("return document.querySelector('meta[name=\"sixpath-token\"]').content;")
            .as_str()
            .unwrap()
            .to_owned();

        let (tx, rx) = mpsc::channel();
        let download = flows::download(&ns, route, false, size, 4 * MIB, tx);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("4 MiB arrived");
        let both = wait_page(
            &s,
            "bytes and a plotted rate on both paths",
            20,
            "const p = {}; for (const r of document.querySelectorAll('#paths tr[data-iface]')) p[r.dataset.iface] = Number(r.dataset.bytes);
             const sr = window.sixpathStatus().series;
             const peak = (k) => (sr[k] || []).reduce((m, x) => Math.max(m, x[1]), 0);
             return p.wlan0 > 1e6 && p.lte0 > 1e5 && peak('wlan0') > 1e5 && peak('lte0') > 1e5 ? p : null;",
        );
        println!("{TEST}: the page shows under aggregate {both}");
        std::thread::sleep(Duration::from_secs(5));

        s.click("#policy-backup");
        wait_page(
            &s,
            "the page shows backup in force",
            10,
            "return document.querySelector('#policy-backup.active') ? true : null;",
        );
        // MP_PRIO reaches the server within a round trip; the page's
        // numbers lag by up to two samples.
        std::thread::sleep(Duration::from_secs(3));
        let a = page_paths(&s);
        std::thread::sleep(Duration::from_secs(4));
        let b = page_paths(&s);
        // Still downloading: the chart shows both policies.
        let shot = s.screenshot();
        let grew = |k: &str| b[k]["bytes"].as_f64().unwrap() - a[k]["bytes"].as_f64().unwrap();
        let (wlan, lte) = (grew("wlan0"), grew("lte0"));
        println!(
            "{TEST}: in 4 s under backup the page shows wlan0 +{:.2} MB, lte0 +{:.3} MB (lte0 backup: {})",
            wlan / 1e6,
            lte / 1e6,
            b["lte0"]["backup"]
        );

        // Refused: no token, a wrong token (from the page itself), the
        // right token with a foreign Origin, and a page of another origin.
        let post = |headers: &str| {
            s.run_async(&format!(
                "fetch('/api/policy', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json'{headers} }}, \
                 body: JSON.stringify({{ policy: 'single' }}) }}).then((r) => arguments[0](r.status), (e) => arguments[0](String(e)));"
            ))
        };
        let no_token = post("");
        let wrong_token = post(", 'X-Sixpath-Token': '0123456789abcdef0123456789abcdef'");
        let foreign = admin_exchange(
            admin,
            &format!(
                "POST /api/policy HTTP/1.1\r\nOrigin: http://evil.example\r\nX-Sixpath-Token: {token}"
            ),
            r#"{"policy":"single"}"#,
        );
        s.go("data:text/html,<title>elsewhere</title>");
        let from_elsewhere = s.run_async(&format!(
            "fetch('http://{admin}/api/policy', {{ method: 'POST', mode: 'no-cors', body: '{{\"policy\":\"single\"}}' }})
               .then(() => arguments[0]('sent'), (e) => arguments[0]('blocked: ' + e));"
        ));
        let policy_after = policy_now(admin);
        let d = download.join().expect("download thread");
        drop(s);
        (
            shot,
            wlan,
            lte,
            no_token,
            wrong_token,
            foreign,
            from_elsewhere,
            policy_after,
            d,
        )
    });
    let (shot, wlan, lte, no_token, wrong_token, foreign, from_elsewhere, policy_after, d) =
        scenario
            .join()
            .expect("browser scenario (see the panic above)");
    std::fs::write(&shot_path, &shot).expect("write screenshot");
    println!(
        "{TEST}: screenshot {} ({} bytes); POST without token {no_token}, wrong token {wrong_token}, \
         foreign Origin {}, from a data: page {from_elsewhere}; policy afterwards {policy_after}",
        shot_path.display(),
        shot.len(),
        foreign.0
    );
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    assert_eq!(d.bytes, size, "download byte count");
    let (sent, _) = blast
        .sent
        .recv_timeout(Duration::from_secs(30))
        .expect("the sender reported its digest");
    assert_eq!(d.sha, sent, "download digest");
    assert!(
        wlan > 1e6,
        "Wi-Fi kept carrying the download under backup: +{wlan} bytes"
    );
    assert!(
        lte < wlan * 0.05,
        "LTE stopped under backup: +{lte} bytes vs Wi-Fi +{wlan}"
    );
    assert_eq!(no_token, 403, "POST without the token");
    assert_eq!(wrong_token, 403, "POST with a wrong token");
    assert_eq!(foreign.0, 403, "POST from a foreign Origin: {}", foreign.1);
    assert_eq!(
        policy_after, "backup",
        "no refused request changed the policy (a page of another origin: {from_elsewhere})"
    );
    let log = tb.log("client");
    assert!(
        log.contains("path policy switched from the status page"),
        "the switch is logged:\n{log}"
    );
    drop(client);
    drop(driver);
}
