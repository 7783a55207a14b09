//! The three workloads. Each returns one measurement; the binary repeats
//! them and prints JSON lines.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::sink::{FOREVER, head, pattern};
use super::socks5::Route;

/// Result of one bulk-throughput run.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Bytes received in the measured window, all connections together.
    pub bytes: u64,
    /// Length of the measured window.
    pub secs: f64,
    /// CPU time (user + system) of each watched process (with its
    /// children) in the measured window, seconds, in the order of the
    /// pids given.
    pub cpu_secs: Vec<f64>,
}

impl Throughput {
    /// Gigabits per second.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e9
    }

    /// CPU seconds per GiB relayed of each watched process.
    pub fn cpu_s_per_gib(&self) -> Vec<f64> {
        self.cpu_secs
            .iter()
            .map(|&c| cpu_s_per_gib(c, self.bytes))
            .collect()
    }
}

/// CPU seconds per GiB: `cpu_secs` spent while `bytes` were relayed; `NaN`
/// without bytes.
pub fn cpu_s_per_gib(cpu_secs: f64, bytes: u64) -> f64 {
    if bytes == 0 {
        return f64::NAN;
    }
    cpu_secs / (bytes as f64 / f64::from(1u32 << 30))
}

/// Clock ticks per second of the times in `/proc/PID/stat`: `USER_HZ`,
/// which Linux fixes at 100 for what it reports to user space on every
/// architecture it runs on here (proc(5), `sysconf(_SC_CLK_TCK)`).
pub const USER_HZ: u64 = 100;

/// `utime + stime + cutime + cstime` (fields 14 to 17, clock ticks) of a
/// `/proc/PID/stat` line: the process's own CPU time and that of the
/// children it has waited for, so that a worker that exits (dante's come
/// and go under load) keeps counting in its parent. The command name
/// (field 2) is in parentheses and may contain spaces and parentheses
/// itself, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    // Fields 3.. : state is the first; utime the 12th, then stime,
    // cutime, cstime.
    let utime: u64 = after.nth(11)?.parse().ok()?;
    let stime: u64 = after.next()?.parse().ok()?;
    let cutime: u64 = after.next()?.parse().ok()?;
    let cstime: u64 = after.next()?.parse().ok()?;
    Some(utime + stime + cutime + cstime)
}

/// CPU time of `pid` so far, clock ticks.
fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::other(format!("unreadable /proc/{pid}/stat")))
}

/// CPU time so far of each of `roots` with its live descendants (a proxy
/// that forks workers, like dante), clock ticks.
pub fn tree_cpu_ticks(roots: &[u32]) -> io::Result<Vec<u64>> {
    let procs = process_parents()?;
    roots
        .iter()
        .map(|&root| {
            let tree = descendants(&procs, root);
            let mut total = cpu_ticks(root)?;
            // A child may have exited meanwhile.
            total += tree
                .iter()
                .skip(1)
                .filter_map(|&c| cpu_ticks(c).ok())
                .sum::<u64>();
            Ok(total)
        })
        .collect()
}

/// `comm` of `pid` (the process name), or `?`.
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
}

/// Every process with its parent, from `/proc`.
fn process_parents() -> io::Result<Vec<(u32, u32)>> {
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = parent(pid) {
            procs.push((pid, ppid));
        }
    }
    Ok(procs)
}

/// `root` and its descendants in `procs`, `root` first.
fn descendants(procs: &[(u32, u32)], root: u32) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&p) = tree.get(i) {
        tree.extend(procs.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    tree
}

/// Which way a [`throughput`] run moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the sink to this program, counted as received.
    Download,
    /// From this program to the sink, counted as written: at most the
    /// sockets' buffers more than the sink has read, a few MiB against the
    /// gibibytes of a run.
    Upload,
}

/// Downloads (or uploads) over `conns` parallel connections for `secs`
/// seconds (after a short warm-up that is not counted), and the CPU time
/// the processes `pids` (with their children) spend in the measured
/// window.
pub async fn throughput(
    route: Route,
    sink: SocketAddr,
    conns: usize,
    secs: f64,
    pids: &[u32],
    direction: Direction,
) -> io::Result<Throughput> {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut s = route.connect(sink).await?;
        let (counting, stop, total) = (counting.clone(), stop.clone(), total.clone());
        if direction == Direction::Upload {
            s.write_all(&head(FOREVER, 0)).await?;
            tasks.push(tokio::spawn(async move {
                let chunk = pattern().get(..256 * 1024).unwrap_or_default();
                while !stop.load(Ordering::Relaxed) {
                    let n = s.write(chunk).await?;
                    if counting.load(Ordering::Relaxed) {
                        total.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Ok(())
            }));
            continue;
        }
        s.write_all(&head(0, FOREVER)).await?;
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
    let cpu_before = tree_cpu_ticks(pids)?;
    counting.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let bytes = total.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_after = tree_cpu_ticks(pids)?;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    Ok(Throughput {
        bytes,
        secs: elapsed,
        cpu_secs: cpu_after
            .iter()
            .zip(&cpu_before)
            .map(|(a, b)| a.saturating_sub(*b) as f64 / USER_HZ as f64)
            .collect(),
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
    /// CPU time (user + system) of each watched process (with its
    /// children) during the run, seconds, in the order of the pids given.
    pub cpu_secs: Vec<f64>,
}

impl Rate {
    /// Completed connections per second.
    pub fn per_sec(&self) -> f64 {
        self.done as f64 / self.secs
    }

    /// CPU microseconds per completed connection of each watched process
    /// (`NaN` when none completed).
    pub fn cpu_us_per_conn(&self) -> Vec<f64> {
        self.cpu_secs
            .iter()
            .map(|&c| {
                if self.done == 0 {
                    f64::NAN
                } else {
                    c * 1e6 / self.done as f64
                }
            })
            .collect()
    }
}

/// Request size of the connection-rate exchange.
pub const RATE_UP: usize = 100;
/// Response size of the connection-rate exchange.
pub const RATE_DOWN: usize = 1024;

/// One exchange: connect (through the proxy), send 100 B, read 1 KiB and
/// EOF, close.
async fn exchange(route: Route, sink: SocketAddr) -> io::Result<()> {
    let mut s = route.connect(sink).await?;
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
    route: Route,
    sink: SocketAddr,
    concurrency: usize,
    secs: f64,
    pids: &[u32],
) -> io::Result<Rate> {
    let cpu_before = tree_cpu_ticks(pids)?;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while Instant::now() < end {
                let start = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), exchange(route, sink)).await {
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
    let cpu_after = tree_cpu_ticks(pids)?;
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Rate {
        done: latencies_ms.len() as u64,
        failed,
        secs,
        latencies_ms,
        cpu_secs: cpu_after
            .iter()
            .zip(&cpu_before)
            .map(|(a, b)| a.saturating_sub(*b) as f64 / USER_HZ as f64)
            .collect(),
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
    let procs = process_parents()?;
    let mut total = 0;
    for &root in roots {
        // A root must exist; a child may have exited meanwhile.
        total += rss_kib(root)?;
        for c in descendants(&procs, root).into_iter().skip(1) {
            total += rss_kib(c).unwrap_or(0);
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
    route: Route,
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
                route.connect(sink),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// More than the socket buffers of a loopback connection hold, so the
    /// sink must have read it.
    const PAST_THE_BUFFERS: u64 = 16 << 20;

    #[tokio::test]
    async fn throughput_moves_bytes_both_ways_through_the_sink() {
        let sink = super::super::sink::start().await.expect("sink");
        let direct = Route {
            proxy: None,
            mptcp: false,
        };
        for direction in [Direction::Download, Direction::Upload] {
            let t = throughput(direct, sink, 2, 0.5, &[], direction)
                .await
                .expect("run");
            assert!(
                t.bytes > PAST_THE_BUFFERS,
                "{direction:?}: {} bytes",
                t.bytes
            );
        }
    }

    #[test]
    fn stat_cpu_ticks_are_own_and_waited_for_childrens_time_after_the_last_parenthesis() {
        // A real line's shape (proc(5)); the name holds spaces and a ')'.
        let line = "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 1234 0 5 0 \
                    1500 320 7 3 20 0 3 0 12345 123456789 2048 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(line), Some(1830));
        assert_eq!(parse_stat_cpu_ticks("1 (init) S 0 1"), None);
        assert_eq!(parse_stat_cpu_ticks("no parenthesis"), None);
        assert_eq!(
            parse_stat_cpu_ticks("1 (x) S 0 1 1 0 -1 0 0 0 0 0 x 5"),
            None
        );
    }

    #[test]
    fn a_child_that_exited_keeps_counting_in_its_parent() {
        let me = std::process::id();
        let before = tree_cpu_ticks(&[me]).unwrap()[0];
        // A child that burns CPU and exits: waited for, its time moves to
        // this process's cutime and cstime.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh");
        assert!(status.success());
        let after = tree_cpu_ticks(&[me]).unwrap()[0];
        assert!(after >= before + 5, "{before} -> {after}");
    }

    #[test]
    fn own_process_cpu_time_is_read_and_grows_with_work() {
        let me = std::process::id();
        let before = tree_cpu_ticks(&[me]).unwrap()[0];
        // Busy for at least 3 clock ticks of CPU time.
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let after = tree_cpu_ticks(&[me]).unwrap()[0];
        assert!(after > before, "{before} -> {after}");
        assert!(tree_cpu_ticks(&[u32::MAX]).is_err(), "no such process");
    }

    #[test]
    fn cpu_seconds_per_gib_divides_by_gibibytes() {
        assert!((cpu_s_per_gib(1.5, 3 << 30) - 0.5).abs() < 1e-12);
        assert!((cpu_s_per_gib(0.25, 512 << 20) - 0.5).abs() < 1e-12);
        assert!(cpu_s_per_gib(1.0, 0).is_nan());
        let t = Throughput {
            bytes: 2 << 30,
            secs: 1.0,
            cpu_secs: vec![1.0, 0.5],
        };
        assert_eq!(t.cpu_s_per_gib(), vec![0.5, 0.25]);
    }
}
