//! `sixpath-bench`: load generator for SOCKS5 proxies and the direct path.
//!
//! Every workload talks to a sink/source server this program runs on
//! loopback, either directly (`--proxy` omitted: the limit) or through the
//! SOCKS5 proxy at `--proxy`. Each run prints one JSON line on stdout, then
//! a `summary` line with the medians; a human summary goes to stderr.
//!
//! The idle workload holds two descriptors per connection in this process
//! (client socket and sink socket): raise the open-files limit first, e.g.
//! `ulimit -n 65536` (the program refuses to start a run the limit cannot
//! hold).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use sixpath_interop::bench::{
    median, multipath, multipath_report, quantile, report, sink, socks5, workload,
};

/// Load generator for SOCKS5 proxies: bulk throughput, connection rate,
/// idle connections, and the Markdown/SVG report.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bulk download (or upload) throughput over parallel connections.
    Throughput {
        #[command(flatten)]
        common: Common,
        /// Parallel connections.
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// Upload to the sink instead (bytes written, counted by this
        /// program); JSON lines say workload "upload".
        #[arg(long)]
        upload: bool,
        /// Seconds measured per run (after a 0.3 s warm-up).
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Process id of a proxy process whose CPU time (user + system,
        /// with its children) in the measured window is reported per GiB
        /// relayed. Repeat for a chain: the last is the server side (it
        /// talks to the target), those before it the client side.
        #[arg(long)]
        pid: Vec<u32>,
    },
    /// Connection rate: one connection per exchange of 100 B up, 1 KiB down.
    Rate {
        #[command(flatten)]
        common: Common,
        /// Exchanges in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Process id of a proxy process whose CPU time (user + system,
        /// with its children) during the run is reported per completed
        /// connection. Repeat for a chain: the last is the server side (it
        /// talks to the target), those before it the client side.
        #[arg(long)]
        pid: Vec<u32>,
    },
    /// Idle connections held open through the proxy; proxy RSS per
    /// connection, against the RSS before the first run (start the proxy
    /// fresh for a meaningful figure).
    Idle {
        #[command(flatten)]
        common: Common,
        /// Process id of the proxy; `VmRSS` is summed over it and its
        /// children. Repeat for a chain of processes.
        #[arg(long, required = true)]
        pid: Vec<u32>,
        /// Connections to hold.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Connections opened at once.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
    },
    /// The sink alone on `--listen` (Multipath TCP listener, accepting TCP
    /// too), until stopped: the origin of `fetch`, e.g. in another network
    /// namespace.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Single downloads from a `serve` sink, timed read by read: time to
    /// first byte, goodput, longest gap between reads (overall and per
    /// window of `--mark`), and whether the bytes are the sink's (SHA-256).
    /// A run that fails still prints its line (with `error`), then the
    /// program exits 1.
    Fetch {
        #[command(flatten)]
        common: Common,
        /// Address of the `serve` sink.
        #[arg(long)]
        target: SocketAddr,
        /// Bytes to download per run.
        #[arg(long, default_value_t = 1024)]
        bytes: u64,
        /// Workload name in the JSON lines (`aggregate`, `failover`, `ttfb`).
        #[arg(long, default_value = "fetch")]
        workload: String,
        /// Seconds a run may take before it counts as failed.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Window boundary, seconds (repeat, ascending): `gaps_ms` then
        /// holds the longest gap that starts in `[0, m1)`, `[m1, m2)`, …,
        /// `[mN, end)`.
        #[arg(long = "mark", value_name = "SECS")]
        marks: Vec<f64>,
        /// Count the marks from this wall-clock time (seconds since the
        /// Unix epoch, e.g. `$EPOCHREALTIME` of the script that schedules
        /// the events) instead of from the start of the connection.
        #[arg(long, value_name = "UNIX_SECS")]
        epoch: Option<f64>,
        /// Count the bytes this interface receives during the download
        /// (`rx_bytes` in the JSON line; repeat for several).
        #[arg(long = "rx-dev", value_name = "IFACE")]
        rx_devs: Vec<String>,
    },
    /// Markdown tables of the multipath figures from JSON lines of `fetch`.
    ReportMultipath {
        /// File of JSON lines written by `fetch`.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Sum of the access links' rates, Mbit/s.
        #[arg(long, default_value_t = 30.0)]
        link_sum_mbit: f64,
        /// Label of the row aggregation and failover compare against.
        #[arg(long, default_value = "direct MPTCP (no proxy)")]
        baseline: String,
        /// Label of the row time to first byte compares against.
        #[arg(long, default_value = "direct TCP (no proxy)")]
        ttfb_baseline: String,
        /// Interface whose share of the received bytes the `share` table
        /// shows.
        #[arg(long, default_value = "lte0")]
        share_dev: String,
    },
    /// Markdown table of a soak run: its `fetch` lines, the script's
    /// `event` and `rss` lines, and the client's log.
    ReportSoak {
        /// File of JSON lines (`fetch --workload soak`, events, RSS).
        #[arg(long)]
        input: std::path::PathBuf,
        /// The client's log (`--log-format json` or text).
        #[arg(long)]
        client_log: std::path::PathBuf,
        /// Seconds after an outage before both paths count as up again.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
    },
    /// Markdown tables (stdout) and an SVG chart from JSON lines.
    Report {
        /// File of JSON lines written by the other subcommands.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Label of the row the ratios compare against.
        #[arg(long, default_value = "direct")]
        baseline: String,
        /// Write the bar chart here.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// SOCKS5 proxy to go through; direct when omitted.
    #[arg(long)]
    proxy: Option<SocketAddr>,
    /// Open this program's connections (to the proxy, or to the sink
    /// when direct) over Multipath TCP, and let the sink listen with
    /// Multipath TCP: without `--proxy`, the cost of a bare MPTCP
    /// connection, the floor under a proxy chain that uses MPTCP.
    #[arg(long)]
    mptcp: bool,
    /// Name of this path in the output.
    #[arg(long, default_value = "direct")]
    label: String,
    /// Repetitions; the summary reports medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl Common {
    fn route(&self) -> socks5::Route {
        socks5::Route {
            proxy: self.proxy,
            mptcp: self.mptcp,
        }
    }
}

/// The `cpu` array of a run's JSON line: per watched process its role
/// (the last talks to the target, the server side; those before it are
/// the client side), name, pid, CPU seconds and `per` under `key`.
fn cpu_entries(
    pid: &[u32],
    names: &[String],
    secs: &[f64],
    per: &[f64],
    key: &str,
) -> Vec<serde_json::Value> {
    pid.iter()
        .zip(names)
        .zip(secs.iter().zip(per))
        .enumerate()
        .map(|(n, ((p, name), (c, x)))| {
            let role = if n + 1 == pid.len() {
                "server"
            } else {
                "client"
            };
            let mut v = serde_json::Map::new();
            v.insert("role".to_owned(), json!(role));
            v.insert("process".to_owned(), json!(name));
            v.insert("pid".to_owned(), json!(p));
            v.insert("cpu_s".to_owned(), json!(c));
            v.insert(key.to_owned(), json!(x));
            serde_json::Value::Object(v)
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The soft open-files limit of this process, from `/proc/self/limits`.
fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Report {
            input,
            baseline,
            svg,
        } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            print!("{}", report::markdown(&text, &baseline));
            if let Some(path) = svg {
                std::fs::write(&path, report::svg(&text, &baseline))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Cmd::Serve { listen } => {
            multipath::serve(listen)
                .await
                .with_context(|| format!("serving on {listen}"))?;
        }
        Cmd::Fetch {
            common,
            target,
            bytes,
            workload,
            timeout,
            marks,
            epoch,
            rx_devs,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                bail!("--timeout {timeout}: expected seconds > 0");
            }
            if marks.iter().any(|m| !m.is_finite())
                || marks.iter().zip(marks.iter().skip(1)).any(|(a, b)| a >= b)
            {
                bail!("--mark: expected finite seconds in ascending order, got {marks:?}");
            }
            let epoch = match epoch {
                Some(e) if e.is_finite() && e >= 0.0 => {
                    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(e))
                }
                Some(e) => bail!("--epoch {e}: expected seconds since the Unix epoch"),
                None => None,
            };
            let spec = multipath::FetchSpec {
                proxy: common.proxy,
                target,
                mptcp: common.mptcp,
                bytes,
                timeout: std::time::Duration::from_secs_f64(timeout),
                marks,
                epoch,
                rx_devs,
            };
            for i in 0..common.runs {
                let f = multipath::fetch(&spec).await;
                println!("{}", f.json(&workload, &common.label));
                let windows = f
                    .gaps_ms
                    .iter()
                    .map(|g| g.map_or_else(|| "-".to_owned(), |g| format!("{g:.0}")))
                    .collect::<Vec<_>>()
                    .join("/");
                eprintln!(
                    "{:<28} {workload}: {} B, first byte {:.1} ms, {:.1} Mbit/s, longest gap {:.0} ms ({windows}), sha256 {}, {}",
                    common.label,
                    f.bytes,
                    f.ttfb_ms,
                    f.mbit_per_s(),
                    f.max_gap_ms,
                    if f.sha256_ok { "ok" } else { "BAD" },
                    f.transport
                );
                if let Some(e) = &f.error {
                    bail!("{} {workload} run {i}: {e}", common.label);
                }
            }
        }
        Cmd::ReportMultipath {
            input,
            link_sum_mbit,
            baseline,
            ttfb_baseline,
            share_dev,
        } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let tables = multipath_report::Tables {
                link_sum_mbit,
                baseline: &baseline,
                ttfb_baseline: &ttfb_baseline,
                share_dev: &share_dev,
            };
            print!("{}", multipath_report::markdown(&text, &tables));
        }
        Cmd::ReportSoak {
            input,
            client_log,
            settle,
        } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let log = std::fs::read_to_string(&client_log)
                .with_context(|| format!("reading {}", client_log.display()))?;
            print!("{}", multipath_report::soak_markdown(&text, &log, settle));
        }
        Cmd::Throughput {
            common,
            conns,
            upload,
            secs,
            pid,
        } => {
            let (direction, workload) = if upload {
                (workload::Direction::Upload, "upload")
            } else {
                (workload::Direction::Download, "throughput")
            };
            let sink = sink::start_with(common.mptcp).await?;
            let names: Vec<String> = pid.iter().map(|&p| workload::process_name(p)).collect();
            let mut runs = Vec::new();
            for i in 0..common.runs {
                let t = workload::throughput(common.route(), sink, conns, secs, &pid, direction)
                    .await
                    .with_context(|| format!("{} {workload} run {i}", common.label))?;
                let g = t.gbit_per_s();
                let cpu = cpu_entries(&pid, &names, &t.cpu_secs, &t.cpu_s_per_gib(), "s_per_gib");
                println!(
                    "{}",
                    json!({"kind": "run", "workload": workload, "label": common.label,
                           "conns": conns, "bytes": t.bytes, "secs": t.secs, "gbit_per_s": g,
                           "cpu": cpu})
                );
                for (name, per) in names.iter().zip(t.cpu_s_per_gib()) {
                    eprintln!("{:<28}   {name}: {per:.3} CPU s/GiB", common.label);
                }
                runs.push(g);
            }
            let m = median(&runs);
            println!(
                "{}",
                json!({"kind": "summary", "workload": workload, "label": common.label,
                       "conns": conns, "median_gbit_per_s": m, "runs": runs})
            );
            eprintln!(
                "{:<28} {workload} {conns} conn: {m:7.2} Gbit/s (median of {})",
                common.label, common.runs
            );
        }
        Cmd::Rate {
            common,
            concurrency,
            secs,
            pid,
        } => {
            let sink = sink::start_with(common.mptcp).await?;
            let names: Vec<String> = pid.iter().map(|&p| workload::process_name(p)).collect();
            let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
            let mut failed = 0;
            for i in 0..common.runs {
                let r = workload::rate(common.route(), sink, concurrency, secs, &pid)
                    .await
                    .with_context(|| format!("{} rate run {i}", common.label))?;
                let (p50, p99) = (
                    quantile(&r.latencies_ms, 0.5),
                    quantile(&r.latencies_ms, 0.99),
                );
                let cpu = cpu_entries(
                    &pid,
                    &names,
                    &r.cpu_secs,
                    &r.cpu_us_per_conn(),
                    "us_per_conn",
                );
                println!(
                    "{}",
                    json!({"kind": "run", "workload": "rate", "label": common.label,
                           "concurrency": concurrency, "done": r.done, "failed": r.failed,
                           "secs": r.secs, "conn_per_s": r.per_sec(), "p50_ms": p50, "p99_ms": p99,
                           "cpu": cpu})
                );
                for (name, per) in names.iter().zip(r.cpu_us_per_conn()) {
                    eprintln!("{:<28}   {name}: {per:.0} CPU µs/connection", common.label);
                }
                failed += r.failed;
                rates.push(r.per_sec());
                p50s.push(p50);
                p99s.push(p99);
            }
            let (m, m50, m99) = (median(&rates), median(&p50s), median(&p99s));
            println!(
                "{}",
                json!({"kind": "summary", "workload": "rate", "label": common.label,
                       "concurrency": concurrency, "median_conn_per_s": m,
                       "median_p50_ms": m50, "median_p99_ms": m99, "failed": failed, "runs": rates})
            );
            eprintln!(
                "{:<28} rate: {m:7.0} conn/s  p50 {m50:.2} ms  p99 {m99:.2} ms  ({failed} failed)",
                common.label
            );
        }
        Cmd::Idle {
            common,
            pid,
            conns,
            parallel,
        } => {
            let need = 2 * conns as u64 + 64;
            match nofile_limit() {
                Some(n) if n < need => bail!(
                    "open-files limit {n} is below the {need} this run needs; raise it (ulimit -n {need})"
                ),
                _ => {}
            }
            let sink = sink::start_with(common.mptcp).await?;
            let before = workload::tree_rss_kib(&pid).context("reading the proxy's RSS")?;
            let mut runs = Vec::new();
            for i in 0..common.runs {
                let r = workload::idle(common.route(), sink, &pid, before, conns, parallel)
                    .await
                    .with_context(|| format!("{} idle run {i}", common.label))?;
                let b = r.bytes_per_conn();
                println!(
                    "{}",
                    json!({"kind": "run", "workload": "idle", "label": common.label, "conns": conns,
                           "rss_before_kib": r.rss_before_kib, "rss_after_kib": r.rss_after_kib,
                           "bytes_per_conn": b})
                );
                runs.push(b);
                // Let the proxy close the previous run's connections.
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            let m = median(&runs);
            println!(
                "{}",
                json!({"kind": "summary", "workload": "idle", "label": common.label, "conns": conns,
                       "median_bytes_per_conn": m, "runs": runs})
            );
            eprintln!(
                "{:<28} idle: {m:7.0} bytes per connection ({conns} connections)",
                common.label
            );
        }
    }
    Ok(())
}
