//! Transfers for the multipath figures on the testbed (`scripts/bench-multipath`):
//! the sink on a given address in any namespace (a Multipath TCP listener
//! that accepts TCP too), one timed download through an optional SOCKS5
//! proxy, and the Markdown tables of their medians.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sixpath_net::sys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::sink::{self, head};
use super::{median, socks5};

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

/// One download, timed read by read.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Bytes received (all that were asked for).
    pub bytes: u64,
    /// From the start of the connection (SOCKS5 handshake included) to the
    /// first byte of the response, milliseconds.
    pub ttfb_ms: f64,
    /// From the first to the last byte, seconds.
    pub secs: f64,
    /// Longest time between two reads that returned bytes, milliseconds.
    pub max_gap_ms: f64,
    /// Transport of this end of the connection (`mptcp`, `tcp`, ...) and
    /// its subflow count.
    pub transport: String,
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
}

/// Connects to `target` directly, over Multipath TCP when `mptcp` is set
/// (and the kernel allows).
async fn connect_direct(target: SocketAddr, mptcp: bool) -> io::Result<TcpStream> {
    let (sock, _) = sys::stream_socket(&target, mptcp)?;
    sock.set_nonblocking(true)?;
    let s = TcpSocket::from_std_stream(std::net::TcpStream::from(sock))
        .connect(target)
        .await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Downloads `bytes` from the sink at `target`, directly (Multipath TCP if
/// `mptcp`) or through the SOCKS5 proxy at `proxy`. Reads exactly `bytes`
/// and does not wait for the sink's close.
pub async fn fetch(
    proxy: Option<SocketAddr>,
    target: SocketAddr,
    mptcp: bool,
    bytes: u64,
) -> io::Result<Fetch> {
    let t0 = Instant::now();
    let mut s = match proxy {
        Some(_) => socks5::connect(proxy, target).await?,
        None => connect_direct(target, mptcp).await?,
    };
    s.write_all(&head(0, bytes)).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut first = None;
    let mut last = t0;
    let mut max_gap = Duration::ZERO;
    while got < bytes {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "connection closed after {got} of {bytes} bytes"
            )));
        }
        let now = Instant::now();
        if first.is_none() {
            first = Some(now);
        } else {
            max_gap = max_gap.max(now - last);
        }
        last = now;
        got += n as u64;
    }
    let t = sys::transport(&s);
    let first = first.unwrap_or(t0);
    Ok(Fetch {
        bytes: got,
        ttfb_ms: (first - t0).as_secs_f64() * 1e3,
        secs: (last - first).as_secs_f64(),
        max_gap_ms: max_gap.as_secs_f64() * 1e3,
        transport: format!("{} ({} subflows)", t.name(), t.subflows()),
    })
}

/// The tables: one per workload present in the JSON lines (`aggregate`,
/// `failover`, `ttfb`), medians per label in order of appearance, with the
/// ratio to the row labelled `baseline` (`ttfb_baseline` for time to first
/// byte); aggregation also as a share of `link_sum_mbit`.
pub fn markdown(input: &str, link_sum_mbit: f64, baseline: &str, ttfb_baseline: &str) -> String {
    // (workload, label) -> values of the workload's key.
    let mut runs: Vec<(String, String, Vec<f64>, Vec<f64>)> = Vec::new();
    for line in input.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v.get("kind").and_then(Value::as_str) != Some("run") {
            continue;
        }
        let (Some(w), Some(label)) = (
            v.get("workload").and_then(Value::as_str),
            v.get("label").and_then(Value::as_str),
        ) else {
            continue;
        };
        let key = match w {
            "aggregate" => "mbit_per_s",
            "failover" => "max_gap_ms",
            "ttfb" => "ttfb_ms",
            _ => continue,
        };
        let (Some(x), secs) = (
            v.get(key).and_then(Value::as_f64),
            v.get("secs").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let i = if let Some(i) = runs.iter().position(|r| r.0 == w && r.1 == label) {
            i
        } else {
            runs.push((w.to_owned(), label.to_owned(), Vec::new(), Vec::new()));
            runs.len() - 1
        };
        if let Some(r) = runs.get_mut(i) {
            r.2.push(x);
            r.3.extend(secs);
        }
    }
    let med = |v: &[f64]| if v.is_empty() { f64::NAN } else { median(v) };
    let base = |w: &str, label: &str| {
        runs.iter()
            .find(|r| r.0 == w && r.1 == label)
            .map_or(f64::NAN, |r| med(&r.2))
    };
    let pct = |v: f64, b: f64| {
        if b.is_finite() && b > 0.0 {
            format!("{:.0} %", v / b * 100.0)
        } else {
            "–".to_owned()
        }
    };
    let mut md = String::new();
    let has = |w: &str| runs.iter().any(|r| r.0 == w);
    if has("aggregate") {
        let _ = writeln!(
            md,
            "#### Aggregation: one download over Wi-Fi + LTE (median)\n\n\
             | Path | Mbit/s | % of link sum ({link_sum_mbit:.0} Mbit/s) | vs {baseline} | runs |\n\
             |---|---:|---:|---:|---:|"
        );
        let b = base("aggregate", baseline);
        for r in runs.iter().filter(|r| r.0 == "aggregate") {
            let m = med(&r.2);
            let _ = writeln!(
                md,
                "| {} | {m:.1} | {:.0} % | {} | {} |",
                r.1,
                m / link_sum_mbit * 100.0,
                pct(m, b),
                r.2.len()
            );
        }
        md.push('\n');
    }
    if has("failover") {
        let _ = writeln!(
            md,
            "#### Failover: Wi-Fi down mid-download (median)\n\n\
             | Path | longest gap in received bytes (s) | vs {baseline} | first to last byte (s) | runs |\n\
             |---|---:|---:|---:|---:|"
        );
        let b = base("failover", baseline);
        for r in runs.iter().filter(|r| r.0 == "failover") {
            let m = med(&r.2);
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} | {:.1} | {} |",
                r.1,
                m / 1e3,
                pct(m, b),
                med(&r.3),
                r.2.len()
            );
        }
        md.push('\n');
    }
    if has("ttfb") {
        let b = base("ttfb", ttfb_baseline);
        let _ = writeln!(
            md,
            "#### Time to first byte: new connection, 16-byte request, first response byte (median)\n\n\
             | Path | ms | vs {ttfb_baseline} | runs |\n\
             |---|---:|---:|---:|"
        );
        for r in runs.iter().filter(|r| r.0 == "ttfb") {
            let m = med(&r.2);
            let _ = writeln!(md, "| {} | {m:.1} | {} | {} |", r.1, pct(m, b), r.2.len());
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_has_medians_shares_and_ratios() {
        let input = r#"{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":27.0,"secs":7.0}
{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":21.0,"secs":9.0}
{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":24.0,"secs":8.0}
{"kind":"run","workload":"ttfb","label":"direct","ttfb_ms":40.0,"secs":0.0}
{"kind":"run","workload":"ttfb","label":"chain","ttfb_ms":20.0,"secs":0.0}
{"kind":"run","workload":"failover","label":"a","max_gap_ms":1500.0,"secs":12.0}"#;
        let md = markdown(input, 30.0, "a", "direct");
        assert!(md.contains("| a | 24.0 | 80 % | 100 % | 3 |"), "{md}");
        assert!(md.contains("| direct | 40.0 | 100 % | 1 |"), "{md}");
        assert!(md.contains("| chain | 20.0 | 50 % | 1 |"), "{md}");
        assert!(md.contains("| a | 1.50 | 100 % | 12.0 | 1 |"), "{md}");
        let md = markdown(input, 30.0, "none", "none");
        assert!(md.contains("| a | 24.0 | 80 % | – | 3 |"), "{md}");
    }
}
