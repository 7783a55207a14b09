//! Transfers for the multipath figures on the testbed (`scripts/bench-multipath`):
//! the sink on a given address in any namespace (a Multipath TCP listener
//! that accepts TCP too), and one timed download through an optional SOCKS5
//! proxy, checked against the sink's pattern, with its longest gaps per
//! time window and the bytes each interface received. The tables are in
//! [`multipath_report`](super::multipath_report).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sixpath_net::sys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::sink::{self, head, pattern_digest};
use super::socks5;

/// Runs the sink on `addr` (Multipath TCP listener when the kernel allows,
/// which also accepts TCP) until the process is stopped.
pub async fn serve(addr: SocketAddr) -> io::Result<()> {
    let (sock, _) = sys::stream_socket(&addr, true)?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    let l = TcpListener::from_std(std::net::TcpListener::from(sock))?;
    sink::accept_loop(l).await;
    Ok(())
}

/// What one download asks for, and what it records besides the bytes.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    /// SOCKS5 proxy to go through; direct when `None`.
    pub proxy: Option<SocketAddr>,
    /// The sink.
    pub target: SocketAddr,
    /// Connect over Multipath TCP (to the proxy, or directly to the sink).
    pub mptcp: bool,
    /// Bytes to download.
    pub bytes: u64,
    /// How long the whole run (connection included) may take.
    pub timeout: Duration,
    /// Window boundaries for the longest gaps, seconds (ascending): see
    /// [`GapWindows`].
    pub marks: Vec<f64>,
    /// Where the marks count from: this wall-clock time when set (so a
    /// script can schedule events and marks from one instant), else the
    /// start of the connection.
    pub epoch: Option<SystemTime>,
    /// Interfaces whose received bytes (in this network namespace) are
    /// counted from before the connection to after the last byte.
    pub rx_devs: Vec<String>,
}

/// One download, timed read by read. A download that fails part way is
/// reported too, with what it got and [`Fetch::error`].
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Bytes received.
    pub bytes: u64,
    /// Bytes asked for.
    pub expected_bytes: u64,
    /// From the start of the connection (SOCKS5 handshake included) to the
    /// first byte of the response, milliseconds (`NaN` without bytes).
    pub ttfb_ms: f64,
    /// From the first to the last byte, seconds.
    pub secs: f64,
    /// Longest time between two reads that returned bytes, milliseconds;
    /// for a failed download also the time from the last read to the
    /// failure.
    pub max_gap_ms: f64,
    /// The same per window of [`FetchSpec::marks`].
    pub gaps_ms: Vec<Option<f64>>,
    /// Transport of this end of the connection (`mptcp`, `tcp`, ...) and
    /// its subflow count (`-` when the connection failed).
    pub transport: String,
    /// All bytes arrived and their SHA-256 is that of the sink's pattern.
    pub sha256_ok: bool,
    /// Wall-clock time of the start, seconds since the Unix epoch.
    pub start_unix: f64,
    /// Received bytes per interface of [`FetchSpec::rx_devs`] during the
    /// download (`None` when `/proc/net/dev` could not be read).
    pub rx_bytes: Option<Vec<(String, u64)>>,
    /// Why the download did not complete.
    pub error: Option<String>,
}

impl Fetch {
    /// Goodput from the first to the last byte, Mbit/s.
    #[allow(clippy::cast_precision_loss)]
    pub fn mbit_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 * 8.0 / self.secs / 1e6
        } else {
            f64::NAN
        }
    }

    /// Bytes asked for and not received.
    pub fn bytes_lost(&self) -> u64 {
        self.expected_bytes.saturating_sub(self.bytes)
    }

    /// The JSON line of this run (`kind` `run`).
    pub fn json(&self, workload: &str, label: &str) -> Value {
        let mut v = json!({"kind": "run", "workload": workload, "label": label,
            "bytes": self.bytes, "ttfb_ms": self.ttfb_ms, "secs": self.secs,
            "mbit_per_s": self.mbit_per_s(), "max_gap_ms": self.max_gap_ms,
            "transport": self.transport, "expected_bytes": self.expected_bytes,
            "bytes_lost": self.bytes_lost(), "sha256_ok": self.sha256_ok,
            "gaps_ms": self.gaps_ms, "start_unix": self.start_unix});
        if let Some(obj) = v.as_object_mut() {
            if let Some(rx) = &self.rx_bytes {
                let m: serde_json::Map<String, Value> =
                    rx.iter().map(|(d, n)| (d.clone(), json!(n))).collect();
                obj.insert("rx_bytes".to_owned(), Value::Object(m));
            }
            if let Some(e) = &self.error {
                obj.insert("error".to_owned(), json!(e));
            }
        }
        v
    }
}

/// The longest gap between reads that returned bytes, overall and per
/// window. Marks `m1 < m2 < …` cut time into windows `[0, m1)`,
/// `[m1, m2)`, …, `[mN, end)`; a gap counts in the window where it
/// starts (at the read before it), so the stall after an event belongs to
/// the window that begins just before the event. A window in which no
/// read happened has no value.
#[derive(Debug, Clone)]
pub struct GapWindows {
    marks: Vec<f64>,
    longest: Vec<Option<f64>>,
    last: Option<f64>,
    max_ms: f64,
}

impl GapWindows {
    /// Windows cut at `marks` (seconds, ascending).
    pub fn new(marks: &[f64]) -> Self {
        Self {
            marks: marks.to_vec(),
            longest: vec![None; marks.len() + 1],
            last: None,
            max_ms: 0.0,
        }
    }

    fn window(&self, t: f64) -> usize {
        self.marks.iter().take_while(|m| t >= **m).count()
    }

    fn note(&mut self, w: usize, gap_ms: f64) {
        if let Some(slot) = self.longest.get_mut(w) {
            *slot = Some(slot.map_or(gap_ms, |g| g.max(gap_ms)));
        }
    }

    /// A read that returned bytes at `t` seconds.
    pub fn read(&mut self, t: f64) {
        let w = self.window(t);
        self.note(w, 0.0);
        self.stalled(t);
        self.last = Some(t);
    }

    /// Time `t` seconds without bytes since the last read: the transfer
    /// failed (or ends) here, and the time since the last read is a gap.
    pub fn stalled(&mut self, t: f64) {
        if let Some(prev) = self.last {
            let gap_ms = (t - prev).max(0.0) * 1e3;
            self.note(self.window(prev), gap_ms);
            self.max_ms = self.max_ms.max(gap_ms);
        }
    }

    /// The longest gap, milliseconds (0 before two reads).
    pub fn longest_ms(&self) -> f64 {
        self.max_ms
    }

    /// The longest gap per window, milliseconds.
    pub fn per_window(&self) -> &[Option<f64>] {
        &self.longest
    }
}

/// Received bytes of `dev` in the text of `/proc/net/dev`.
pub fn parse_net_dev(text: &str, dev: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != dev {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Received bytes of each of `devs` in this network namespace.
pub fn rx_bytes(devs: &[String]) -> io::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string("/proc/net/dev")?;
    devs.iter()
        .map(|d| {
            parse_net_dev(&text, d)
                .map(|n| (d.clone(), n))
                .ok_or_else(|| io::Error::other(format!("no interface {d} in /proc/net/dev")))
        })
        .collect()
}

/// What a download has got so far (kept when it fails or times out).
struct Progress {
    t0: Instant,
    /// Seconds from the epoch of the marks to `t0`.
    offset: f64,
    got: u64,
    first: Option<Instant>,
    last: Instant,
    gaps: GapWindows,
    hash: Sha256,
    transport: String,
}

impl Progress {
    fn at(&self, i: Instant) -> f64 {
        (i - self.t0).as_secs_f64() + self.offset
    }
}

async fn download(spec: &FetchSpec, p: &mut Progress) -> io::Result<()> {
    let mut s = socks5::Route {
        proxy: spec.proxy,
        mptcp: spec.mptcp,
    }
    .connect(spec.target)
    .await?;
    let t = sys::transport(&s);
    p.transport = format!("{} ({} subflows)", t.name(), t.subflows());
    s.write_all(&head(0, spec.bytes)).await?;
    let mut buf = vec![0u8; 256 * 1024];
    while p.got < spec.bytes {
        let want = usize::try_from(spec.bytes - p.got)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = s.read(chunk).await?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "connection closed after {} of {} bytes",
                p.got, spec.bytes
            )));
        }
        let now = Instant::now();
        p.first.get_or_insert(now);
        p.last = now;
        let t = p.at(now);
        p.gaps.read(t);
        p.hash.update(chunk.get(..n).unwrap_or_default());
        p.got += n as u64;
        if p.got == spec.bytes || p.got >> 20 != (p.got - n as u64) >> 20 {
            // The subflow count at every MiB and at the end.
            let t = sys::transport(&s);
            p.transport = format!("{} ({} subflows)", t.name(), t.subflows());
        }
    }
    Ok(())
}

/// Downloads `spec.bytes` from the sink at `spec.target`, directly
/// (Multipath TCP if `spec.mptcp`) or through the SOCKS5 proxy at
/// `spec.proxy`. Reads exactly the bytes asked for and does not wait for
/// the sink's close. Checks them against the sink's pattern. A failure
/// (error, early close, timeout) is in [`Fetch::error`].
pub async fn fetch(spec: &FetchSpec) -> Fetch {
    let t0 = Instant::now();
    let wall0 = SystemTime::now();
    let offset = spec.epoch.map_or(0.0, |e| match wall0.duration_since(e) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    });
    let start_unix = wall0
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let rx_before = if spec.rx_devs.is_empty() {
        None
    } else {
        rx_bytes(&spec.rx_devs).ok()
    };
    let mut p = Progress {
        t0,
        offset,
        got: 0,
        first: None,
        last: t0,
        gaps: GapWindows::new(&spec.marks),
        hash: Sha256::new(),
        transport: "-".to_owned(),
    };
    let deadline = tokio::time::Instant::from_std(t0 + spec.timeout);
    let error = match tokio::time::timeout_at(deadline, download(spec, &mut p)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "timed out after {} s with {} of {} bytes",
            spec.timeout.as_secs_f64(),
            p.got,
            spec.bytes
        )),
    };
    if error.is_some() {
        let now = p.at(Instant::now());
        p.gaps.stalled(now);
    }
    let rx = rx_before.and_then(|before| {
        let after = rx_bytes(&spec.rx_devs).ok()?;
        Some(
            before
                .iter()
                .zip(after)
                .map(|((d, b), (_, a))| (d.clone(), a.wrapping_sub(*b)))
                .collect(),
        )
    });
    let digest: [u8; 32] = p.hash.finalize().into();
    let sha256_ok = error.is_none() && p.got == spec.bytes && digest == pattern_digest(spec.bytes);
    let first = p.first.unwrap_or(t0);
    Fetch {
        bytes: p.got,
        expected_bytes: spec.bytes,
        ttfb_ms: if p.first.is_some() {
            (first - t0).as_secs_f64() * 1e3
        } else {
            f64::NAN
        },
        secs: (p.last.max(first) - first).as_secs_f64(),
        max_gap_ms: p.gaps.longest_ms(),
        gaps_ms: p.gaps.per_window().to_vec(),
        transport: p.transport,
        sha256_ok,
        start_unix,
        rx_bytes: rx,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: SocketAddr, bytes: u64) -> FetchSpec {
        FetchSpec {
            proxy: None,
            target,
            mptcp: false,
            bytes,
            timeout: Duration::from_secs(10),
            marks: vec![],
            epoch: None,
            rx_devs: vec![],
        }
    }

    #[test]
    fn gaps_count_in_the_window_where_they_start() {
        let mut g = GapWindows::new(&[2.5, 7.5]);
        for t in [0.1, 0.2, 2.4] {
            g.read(t);
        }
        // 2.4 -> 3.4 starts before the mark at 2.5: window 0's (which is
        // why the script puts its marks a little before its events).
        g.read(3.4);
        g.read(3.45);
        g.read(7.6);
        g.read(7.7);
        let w = g.per_window();
        assert_eq!(w.len(), 3);
        assert!((w[0].expect("window 0") - 2200.0).abs() < 1e-6, "{w:?}");
        assert!((w[1].expect("window 1") - 4150.0).abs() < 1e-6, "{w:?}");
        assert!((w[2].expect("window 2") - 100.0).abs() < 1e-6, "{w:?}");
        assert!((g.longest_ms() - 4150.0).abs() < 1e-6);
    }

    #[test]
    fn a_window_without_reads_has_no_gap_and_a_stall_counts() {
        let mut g = GapWindows::new(&[1.0, 2.0]);
        g.read(0.5);
        g.read(0.6);
        g.stalled(5.6);
        assert_eq!(g.per_window().get(1), Some(&None));
        assert_eq!(g.per_window().get(2), Some(&None));
        assert!((g.per_window()[0].expect("window 0") - 5000.0).abs() < 1e-6);
        assert!((g.longest_ms() - 5000.0).abs() < 1e-6);
        // No marks: one window, the longest gap.
        let mut g = GapWindows::new(&[]);
        g.read(1.0);
        assert_eq!(g.per_window(), &[Some(0.0)]);
        assert!(
            GapWindows::new(&[1.0])
                .per_window()
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn net_dev_rx_bytes_by_name() {
        let text = "Inter-|   Receive                            |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
            lo:    1234      10    0    0    0     0          0         0     1234\n \
            wlan0: 98765432  100    0    0    0     0          0         0     5\n  \
            lte0:12 1 0 0 0 0 0 0 7\n";
        assert_eq!(parse_net_dev(text, "wlan0"), Some(98_765_432));
        assert_eq!(parse_net_dev(text, "lte0"), Some(12));
        assert_eq!(parse_net_dev(text, "lo"), Some(1234));
        assert_eq!(parse_net_dev(text, "eth0"), None);
        let here = rx_bytes(&["lo".to_owned()]).expect("lo in /proc/net/dev");
        assert_eq!(here.len(), 1);
        assert!(rx_bytes(&["no-such-if0".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn fetch_from_the_sink_checks_the_digest_and_counts_gaps_and_rx() {
        let sink = sink::start().await.expect("sink");
        let mut s = spec(sink, 3_000_000);
        s.marks = vec![0.0, 3600.0];
        s.rx_devs = vec!["lo".to_owned()];
        let f = fetch(&s).await;
        assert_eq!(f.error, None);
        assert!(f.sha256_ok);
        assert_eq!((f.bytes, f.bytes_lost()), (3_000_000, 0));
        assert_eq!(f.gaps_ms.len(), 3);
        assert!(
            f.gaps_ms[0].is_none() && f.gaps_ms[2].is_none(),
            "{:?}",
            f.gaps_ms
        );
        assert!(f.gaps_ms[1].is_some());
        // Both directions cross loopback: at least the download.
        let rx = f.rx_bytes.clone().expect("rx counted");
        assert!(rx[0].1 >= 3_000_000, "{rx:?}");
        let v = f.json("soak", "loopback");
        for key in [
            "kind",
            "workload",
            "label",
            "bytes",
            "ttfb_ms",
            "secs",
            "mbit_per_s",
            "max_gap_ms",
            "transport",
            "expected_bytes",
            "bytes_lost",
            "sha256_ok",
            "gaps_ms",
            "start_unix",
            "rx_bytes",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert!(v.get("error").is_none());
        assert_eq!(v["sha256_ok"], json!(true));
        assert_eq!(v["bytes_lost"], json!(0));
    }

    /// A sink that answers the head with `reply` and closes.
    async fn fake_sink(reply: Vec<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut h = [0u8; sink::HEAD_LEN];
                let _ = s.read_exact(&mut h).await;
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn wrong_bytes_fail_the_digest_and_missing_bytes_count_as_lost() {
        let f = fetch(&spec(fake_sink(vec![0u8; 1000]).await, 1000)).await;
        assert_eq!(f.error, None);
        assert!(!f.sha256_ok);
        assert_eq!(f.bytes_lost(), 0);

        let right = sink::pattern().get(..600).expect("600").to_vec();
        let f = fetch(&spec(fake_sink(right).await, 1000)).await;
        assert!(
            f.error
                .as_deref()
                .is_some_and(|e| e.contains("600 of 1000")),
            "{:?}",
            f.error
        );
        assert!(!f.sha256_ok);
        assert_eq!((f.bytes, f.bytes_lost()), (600, 400));
        let v = f.json("blackhole", "x");
        assert_eq!(v["bytes_lost"], json!(400));
        assert!(v["error"].is_string());
    }

    #[tokio::test]
    async fn a_stalled_download_times_out_with_its_stall_as_the_longest_gap() {
        // Sends 100 bytes, then nothing, and keeps the connection open.
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut h = [0u8; sink::HEAD_LEN];
                let _ = s.read_exact(&mut h).await;
                let _ = s
                    .write_all(sink::pattern().get(..100).unwrap_or_default())
                    .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let mut s = spec(addr, 1000);
        s.timeout = Duration::from_millis(400);
        let f = fetch(&s).await;
        assert!(
            f.error.as_deref().is_some_and(|e| e.contains("timed out")),
            "{:?}",
            f.error
        );
        assert_eq!(f.bytes_lost(), 900);
        assert!(
            f.max_gap_ms > 200.0 && f.max_gap_ms < 1000.0,
            "{}",
            f.max_gap_ms
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failed_run() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let f = fetch(&spec(addr, 10)).await;
        assert!(f.error.is_some());
        assert_eq!((f.bytes_lost(), f.transport.as_str()), (10, "-"));
        assert!(f.ttfb_ms.is_nan());
    }
}
