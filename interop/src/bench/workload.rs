//! The three workloads. Each returns one measurement; the binary repeats
//! them and prints JSON lines.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::sink::{FOREVER, head};
use super::socks5;

/// Result of one bulk-throughput run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Bytes received in the measured window, all connections together.
    pub bytes: u64,
    /// Length of the measured window.
    pub secs: f64,
}

impl Throughput {
    /// Gigabits per second.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e9
    }
}

/// Downloads over `conns` parallel connections for `secs` seconds (after a
/// short warm-up that is not counted).
pub async fn throughput(
    proxy: Option<SocketAddr>,
    sink: SocketAddr,
    conns: usize,
    secs: f64,
) -> io::Result<Throughput> {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut s = socks5::connect(proxy, sink).await?;
        s.write_all(&head(0, FOREVER)).await?;
        let (counting, stop, total) = (counting.clone(), stop.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return Err(io::Error::other("stream ended early")),
                    Ok(n) => {
                        if counting.load(Ordering::Relaxed) {
                            total.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    counting.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let bytes = total.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    Ok(Throughput {
        bytes,
        secs: elapsed,
    })
}

/// Result of one connection-rate run.
#[derive(Debug, Clone)]
pub struct Rate {
    /// Completed exchanges.
    pub done: u64,
    /// Failed exchanges.
    pub failed: u64,
    /// Length of the run.
    pub secs: f64,
    /// Latency of each completed exchange, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

impl Rate {
    /// Completed connections per second.
    pub fn per_sec(&self) -> f64 {
        self.done as f64 / self.secs
    }
}

/// Request size of the connection-rate exchange.
pub const RATE_UP: usize = 100;
/// Response size of the connection-rate exchange.
pub const RATE_DOWN: usize = 1024;

/// One exchange: connect (through the proxy), send 100 B, read 1 KiB and
/// EOF, close.
async fn exchange(proxy: Option<SocketAddr>, sink: SocketAddr) -> io::Result<()> {
    let mut s = socks5::connect(proxy, sink).await?;
    let mut req = head(RATE_UP as u64, RATE_DOWN as u64).to_vec();
    req.resize(req.len() + RATE_UP, b'x');
    s.write_all(&req).await?;
    let mut resp = Vec::with_capacity(RATE_DOWN);
    s.read_to_end(&mut resp).await?;
    if resp.len() != RATE_DOWN {
        return Err(io::Error::other(format!("got {} bytes", resp.len())));
    }
    Ok(())
}

/// Runs `concurrency` workers doing back-to-back exchanges for `secs`.
pub async fn rate(
    proxy: Option<SocketAddr>,
    sink: SocketAddr,
    concurrency: usize,
    secs: f64,
) -> io::Result<Rate> {
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while Instant::now() < end {
                let start = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), exchange(proxy, sink)).await {
                    Ok(Ok(())) => lat.push(start.elapsed().as_secs_f64() * 1e3),
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut latencies_ms = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.map_err(io::Error::other)?;
        latencies_ms.extend(l);
        failed += f;
    }
    let secs = t0.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Rate {
        done: latencies_ms.len() as u64,
        failed,
        secs,
        latencies_ms,
    })
}

/// Result of one idle-connections run.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Connections established and held.
    pub conns: usize,
    /// Proxy resident memory before, KiB.
    pub rss_before_kib: u64,
    /// Proxy resident memory with every connection open, KiB.
    pub rss_after_kib: u64,
}

impl Idle {
    /// Resident bytes per held connection.
    pub fn bytes_per_conn(&self) -> f64 {
        (self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024) as f64 / self.conns as f64
    }
}

/// `VmRSS` of process `pid`, in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// The parent process id of `pid`, from `/proc/PID/stat`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` summed over `roots` and all their descendants (a proxy that
/// forks, like dante, or a chain of two processes), in KiB.
pub fn tree_rss_kib(roots: &[u32]) -> io::Result<u64> {
    let mut procs: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = parent(pid) {
            procs.push((pid, ppid));
        }
    }
    let mut tree: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while let Some(&p) = tree.get(i) {
        tree.extend(procs.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    let mut total = 0;
    for (n, pid) in tree.iter().enumerate() {
        match rss_kib(*pid) {
            Ok(kib) => total += kib,
            // A root must exist; a child may have exited meanwhile.
            Err(e) if n < roots.len() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(total)
}

/// How long one idle connection may take to be answered: a proxy that
/// stops accepting (out of descriptors) fails the run instead of hanging
/// it.
const IDLE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens `conns` connections through the proxy (whose processes are
/// `pids`, with their children), all relayed to the sink and idle, and
/// measures the proxy's RSS against `rss_before_kib`, taken from the fresh
/// proxy before its first run: allocators keep freed memory, so a later
/// run's own "before" would hide what holding the connections costs.
/// Connections open `parallel` at a time.
pub async fn idle(
    proxy: Option<SocketAddr>,
    sink: SocketAddr,
    pids: &[u32],
    rss_before_kib: u64,
    conns: usize,
    parallel: usize,
) -> io::Result<Idle> {
    let mut held: Vec<TcpStream> = Vec::with_capacity(conns);
    while held.len() < conns {
        let batch = parallel.min(conns - held.len());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(tokio::time::timeout(
                IDLE_CONNECT_TIMEOUT,
                socks5::connect(proxy, sink),
            ));
        }
        while let Some(r) = set.join_next().await {
            let opened = r.map_err(io::Error::other)?.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connection {} not answered within {IDLE_CONNECT_TIMEOUT:?} (proxy out of descriptors?)",
                        held.len() + 1
                    ),
                )
            })?;
            held.push(opened?);
        }
    }
    // Let the proxy finish whatever it does after the reply.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = tree_rss_kib(pids)?;
    drop(held);
    Ok(Idle {
        conns,
        rss_before_kib,
        rss_after_kib,
    })
}
