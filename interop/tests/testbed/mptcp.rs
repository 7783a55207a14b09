//! Multipath TCP on the testbed without the sixpath client: a kernel MPTCP
//! download straight from the operator (the baseline the proxy chain must
//! reach), the same download through `sixpath-server` as a SOCKS5 proxy,
//! and failover when Wi-Fi goes down mid-transfer.

use std::sync::mpsc;
use std::time::Duration;

use sixpath_net::sys::Transport;

use crate::bed::{self, Ns, Testbed};
use crate::flows::{self, Blast, Route};

const MIB: u64 = 1 << 20;
/// Default testbed link rates (bit/s): Wi-Fi 20 Mbit/s + LTE 10 Mbit/s.
const LINK_SUM: f64 = 30e6;

/// The `simult_flows` deadline (Linux
/// `tools/testing/selftests/net/mptcp/simult_flows.sh`): the time to move
/// `size` bytes at 90 % of the link sum, plus 450 ms for the handshakes
/// and the `MP_JOIN`.
pub fn deadline(size: u64, link_sum_bits: f64) -> Duration {
    Duration::from_secs_f64(size as f64 * 8.0 / (0.9 * link_sum_bits) + 0.45)
}

/// Downloads 32 MiB over `route` on an MPTCP socket from the phone; asserts
/// the bytes, the `simult_flows` deadline and that both interfaces carried a
/// share (each at least 15 % of the bytes). Reusable for any entry point
/// (the sixpath client's: see `client_chain`). With `app_mptcp` the phone's
/// socket is MPTCP and must have 2 subflows; without, it is the
/// application's plain TCP socket to a local entry point (the caller checks
/// the multipath leg).
pub fn assert_download_aggregates(
    tb: &Testbed,
    label: &str,
    route: Route,
    blast: &Blast,
    app_mptcp: bool,
) {
    let size = 32 * MIB;
    let (w0, l0) = (tb.phone_rx_bytes("wlan0"), tb.phone_rx_bytes("lte0"));
    let (tx, _rx) = mpsc::channel();
    let d = flows::download(&tb.ns(Ns::Phone), route, app_mptcp, size, u64::MAX, tx)
        .join()
        .expect("download thread");
    let (sent, server_side) = blast
        .sent
        .recv_timeout(Duration::from_secs(30))
        .expect("the sender reported its digest");
    let (w, l) = (
        tb.phone_rx_bytes("wlan0") - w0,
        tb.phone_rx_bytes("lte0") - l0,
    );
    let limit = deadline(size, LINK_SUM);
    let share = |b: u64| b as f64 / size as f64 * 100.0;
    println!(
        "{label}: {} MiB in {:.2} s = {:.2} Mbit/s; deadline {:.2} s (90 % of 30 Mbit/s + 450 ms); \
         wlan0 {:.1} MB ({:.0} %), lte0 {:.1} MB ({:.0} %), each must be >= 15 %; phone {:?}, sender {:?}",
        size / MIB,
        d.elapsed.as_secs_f64(),
        flows::mbit_s(d.bytes, d.elapsed),
        limit.as_secs_f64(),
        w as f64 / 1e6,
        share(w),
        l as f64 / 1e6,
        share(l),
        d.transport,
        server_side,
    );
    assert_eq!(d.bytes, size, "{label}: byte count");
    assert_eq!(flows::hex(&d.sha), flows::hex(&sent), "{label}: SHA-256");
    assert!(
        !app_mptcp || matches!(d.transport, Transport::Mptcp { subflows } if subflows >= 2),
        "{label}: phone socket is {:?}, expected MPTCP with 2 subflows",
        d.transport
    );
    assert!(
        d.elapsed <= limit,
        "{label}: {:.2} s > deadline {:.2} s",
        d.elapsed.as_secs_f64(),
        limit.as_secs_f64()
    );
    assert!(share(w) >= 15.0, "{label}: wlan0 carried {:.1} %", share(w));
    assert!(share(l) >= 15.0, "{label}: lte0 carried {:.1} %", share(l));
}

#[test]
fn direct_mptcp_download_uses_both_links_at_90_percent_of_their_sum() {
    if !bed::can_run("direct_mptcp_download_uses_both_links_at_90_percent_of_their_sum") {
        return;
    }
    let tb = Testbed::up(&["--no-server"]);
    let blast = Blast::start(&tb.ns(Ns::Operator), bed::SERVER);
    assert_download_aggregates(
        &tb,
        "direct MPTCP download",
        Route::Direct(blast.addr),
        &blast,
        true,
    );
}

#[test]
fn server_relays_an_mptcp_socks5_download_over_both_links() {
    if !bed::can_run("server_relays_an_mptcp_socks5_download_over_both_links") {
        return;
    }
    let tb = Testbed::up(&[]);
    let blast = Blast::start(&tb.ns(Ns::Internet), bed::ORIGIN);
    assert_download_aggregates(
        &tb,
        "MPTCP SOCKS5 download through sixpath-server",
        Route::Socks5 {
            proxy: tb.server(),
            target: blast.addr,
        },
        &blast,
        true,
    );
}

/// Downloads 16 MiB over `route`; when 4 MiB have arrived, Wi-Fi goes down
/// (both ends). Asserts the bytes and their SHA-256, that LTE carried at
/// least 90 % of the rest and Wi-Fi nothing, and reports the
/// longest stall. Reusable for the sixpath client's entry point
/// (`app_mptcp` as in [`assert_download_aggregates`]). Returns what arrived
/// before the cut and how many bytes `lte0` received until then.
pub fn assert_wifi_failover(
    tb: &Testbed,
    label: &str,
    route: Route,
    blast: &Blast,
    app_mptcp: bool,
) -> BeforeCut {
    let size = 16 * MIB;
    let mark = 4 * MIB;
    let (tx, rx) = mpsc::channel();
    let lte_start = tb.phone_rx_bytes("lte0");
    let handle = flows::download(&tb.ns(Ns::Phone), route, app_mptcp, size, mark, tx);
    let at_cut = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("4 MiB arrived");
    let l0 = tb.phone_rx_bytes("lte0");
    tb.link("wlan", false);
    // Read once the link is down: from here on wlan0 cannot receive.
    let w0 = tb.phone_rx_bytes("wlan0");
    let d = handle.join().expect("download thread");
    let (sent, _) = blast
        .sent
        .recv_timeout(Duration::from_secs(30))
        .expect("the sender reported its digest");
    let (w, l) = (
        tb.phone_rx_bytes("wlan0") - w0,
        tb.phone_rx_bytes("lte0") - l0,
    );
    let rest = size - at_cut;
    let limit = Duration::from_secs(60);
    println!(
        "{label}: Wi-Fi down after {:.1} MiB; done in {:.2} s (limit {} s); longest stall after the cut \
         {:.0} ms; after the cut lte0 received {:.1} MB (>= 90 % of the {:.1} MB left), wlan0 {} bytes (must be 0)",
        at_cut as f64 / MIB as f64,
        d.elapsed.as_secs_f64(),
        limit.as_secs(),
        d.longest_stall.as_secs_f64() * 1e3,
        l as f64 / 1e6,
        rest as f64 / 1e6,
        w,
    );
    assert_eq!(d.bytes, size, "{label}: byte count");
    assert_eq!(flows::hex(&d.sha), flows::hex(&sent), "{label}: SHA-256");
    assert!(d.elapsed < limit, "{label}: took {:?}", d.elapsed);
    assert!(
        l as f64 >= 0.9 * rest as f64,
        "{label}: LTE carried {l} of {rest} bytes after the cut"
    );
    assert_eq!(w, 0, "{label}: wlan0 received bytes while down");
    BeforeCut {
        bytes: at_cut,
        lte_rx: l0 - lte_start,
    }
}

/// What [`assert_wifi_failover`] saw before Wi-Fi went down.
#[derive(Debug, Clone, Copy)]
pub struct BeforeCut {
    /// Bytes the application had received.
    pub bytes: u64,
    /// Bytes `lte0` had received since the download started.
    pub lte_rx: u64,
}

#[test]
fn direct_mptcp_download_survives_wifi_down_and_finishes_on_lte() {
    if !bed::can_run("direct_mptcp_download_survives_wifi_down_and_finishes_on_lte") {
        return;
    }
    let tb = Testbed::up(&["--no-server"]);
    let blast = Blast::start(&tb.ns(Ns::Operator), bed::SERVER);
    assert_wifi_failover(
        &tb,
        "direct MPTCP failover",
        Route::Direct(blast.addr),
        &blast,
        true,
    );
}

/// Uploads 32 MiB from the phone over `route` on an MPTCP socket; asserts
/// the bytes, the `simult_flows` deadline and that both interfaces sent a
/// share (each at least 15 %). Reusable for the client's entry point
/// (`app_mptcp` as in [`assert_download_aggregates`]).
pub fn assert_upload_aggregates(
    tb: &Testbed,
    label: &str,
    route: Route,
    blast: &Blast,
    app_mptcp: bool,
) {
    let size = 32 * MIB;
    let (w0, l0) = (tb.phone_tx_bytes("wlan0"), tb.phone_tx_bytes("lte0"));
    let d = flows::upload(&tb.ns(Ns::Phone), route, app_mptcp, size)
        .join()
        .expect("upload thread");
    let (received, server_side) = blast
        .sent
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver reported its digest");
    let (w, l) = (
        tb.phone_tx_bytes("wlan0") - w0,
        tb.phone_tx_bytes("lte0") - l0,
    );
    let limit = deadline(size, LINK_SUM);
    let share = |b: u64| b as f64 / size as f64 * 100.0;
    println!(
        "{label}: {} MiB in {:.2} s = {:.2} Mbit/s; deadline {:.2} s (90 % of 30 Mbit/s + 450 ms); \
         wlan0 sent {:.1} MB ({:.0} %), lte0 {:.1} MB ({:.0} %), each must be >= 15 %; phone {:?}, receiver {:?}",
        size / MIB,
        d.elapsed.as_secs_f64(),
        flows::mbit_s(size, d.elapsed),
        limit.as_secs_f64(),
        w as f64 / 1e6,
        share(w),
        l as f64 / 1e6,
        share(l),
        d.transport,
        server_side,
    );
    assert_eq!(d.bytes, size, "{label}: bytes the receiver counted");
    assert_eq!(
        flows::hex(&received),
        flows::hex(&d.sha),
        "{label}: SHA-256"
    );
    assert!(
        !app_mptcp || matches!(d.transport, Transport::Mptcp { subflows } if subflows >= 2),
        "{label}: phone socket is {:?}, expected MPTCP with 2 subflows",
        d.transport
    );
    assert!(
        d.elapsed <= limit,
        "{label}: {:.2} s > deadline {:.2} s",
        d.elapsed.as_secs_f64(),
        limit.as_secs_f64()
    );
    assert!(share(w) >= 15.0, "{label}: wlan0 sent {:.1} %", share(w));
    assert!(share(l) >= 15.0, "{label}: lte0 sent {:.1} %", share(l));
}

#[test]
fn direct_mptcp_upload_uses_both_links_at_90_percent_of_their_sum() {
    if !bed::can_run("direct_mptcp_upload_uses_both_links_at_90_percent_of_their_sum") {
        return;
    }
    let tb = Testbed::up(&["--no-server"]);
    let blast = Blast::start(&tb.ns(Ns::Operator), bed::SERVER);
    assert_upload_aggregates(
        &tb,
        "direct MPTCP upload",
        Route::Direct(blast.addr),
        &blast,
        true,
    );
}

/// Downloads `size` bytes directly from a blast server in the operator;
/// returns the download and the wlan0/lte0 received-byte deltas.
fn direct_download(tb: &Testbed, blast: &Blast, size: u64) -> (flows::Download, u64, u64) {
    let (w0, l0) = (tb.phone_rx_bytes("wlan0"), tb.phone_rx_bytes("lte0"));
    let (tx, _rx) = mpsc::channel();
    let d = flows::download(
        &tb.ns(Ns::Phone),
        Route::Direct(blast.addr),
        true,
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
    assert_eq!(d.bytes, size, "byte count");
    assert_eq!(flows::hex(&d.sha), flows::hex(&sent), "SHA-256");
    (
        d,
        tb.phone_rx_bytes("wlan0") - w0,
        tb.phone_rx_bytes("lte0") - l0,
    )
}

#[test]
fn direct_mptcp_download_leaves_a_backup_lte_link_unused() {
    if !bed::can_run("direct_mptcp_download_leaves_a_backup_lte_link_unused") {
        return;
    }
    let tb = Testbed::up(&["--no-server"]);
    tb.backup(true);
    let blast = Blast::start(&tb.ns(Ns::Operator), bed::SERVER);
    let size = 16 * MIB;
    let (d, w, l) = direct_download(&tb, &blast, size);
    println!(
        "LTE as backup: {} MiB in {:.2} s = {:.2} Mbit/s; wlan0 {:.1} MB, lte0 {} bytes (must be < 1 % = {} bytes); phone {:?}",
        size / MIB,
        d.elapsed.as_secs_f64(),
        flows::mbit_s(d.bytes, d.elapsed),
        w as f64 / 1e6,
        l,
        size / 100,
        d.transport
    );
    assert!(
        matches!(d.transport, Transport::Mptcp { subflows } if subflows >= 2),
        "the backup subflow exists: {:?}",
        d.transport
    );
    assert!(l < size / 100, "lte0 carried {l} bytes as a backup");
}

#[test]
fn direct_mptcp_download_keeps_every_byte_under_random_loss() {
    if !bed::can_run("direct_mptcp_download_keeps_every_byte_under_random_loss") {
        return;
    }
    let tb = Testbed::up(&["--no-server", "--loss", "0.005"]);
    let blast = Blast::start(&tb.ns(Ns::Operator), bed::SERVER);
    let size = 16 * MIB;
    let (d, w, l) = direct_download(&tb, &blast, size);
    let drops = tb.loss_drops();
    println!(
        "0.5 % loss: {} MiB intact in {:.2} s = {:.2} Mbit/s (limit 60 s); {drops} packets dropped \
         (must be > 0); wlan0 {:.1} MB, lte0 {:.1} MB",
        size / MIB,
        d.elapsed.as_secs_f64(),
        flows::mbit_s(d.bytes, d.elapsed),
        w as f64 / 1e6,
        l as f64 / 1e6,
    );
    assert!(drops > 0, "the loss rules dropped nothing");
    assert!(d.elapsed < Duration::from_secs(60), "took {:?}", d.elapsed);
}
