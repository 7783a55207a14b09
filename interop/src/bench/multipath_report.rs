//! The Markdown tables of the multipath figures (`scripts/bench-multipath`)
//! from the JSON lines of `sixpath-bench fetch` and the script's own lines
//! (`event`, `rss`), and, for the soak, the client's log.

use std::fmt::Write as _;

use serde_json::Value;

use super::median;

/// How [`markdown`] labels and compares its rows.
#[derive(Debug, Clone)]
pub struct Tables<'a> {
    /// Sum of the access links' rates, Mbit/s.
    pub link_sum_mbit: f64,
    /// Label of the row aggregation and failover compare against.
    pub baseline: &'a str,
    /// Label of the row time to first byte compares against.
    pub ttfb_baseline: &'a str,
    /// Interface whose share of the received bytes the share table shows.
    pub share_dev: &'a str,
}

/// The `run` lines of `input`: (workload, label, line).
fn runs(input: &str) -> Vec<(String, String, Value)> {
    input
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("run"))
        .filter_map(|v| {
            let w = v.get("workload").and_then(Value::as_str)?.to_owned();
            let l = v.get("label").and_then(Value::as_str)?.to_owned();
            Some((w, l, v))
        })
        .collect()
}

/// Labels of the runs of any of `workloads`, in order of appearance.
fn labels<'a>(runs: &'a [(String, String, Value)], workloads: &[&str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for (w, l, _) in runs {
        if workloads.contains(&w.as_str()) && !out.contains(&l.as_str()) {
            out.push(l);
        }
    }
    out
}

fn failed(v: &Value) -> bool {
    v.get("error").is_some()
}

/// The digest was checked and did not match (lines from before the check
/// have no `sha256_ok` and count as good).
fn sha_failed(v: &Value) -> bool {
    v.get("sha256_ok").and_then(Value::as_bool) == Some(false)
}

fn bytes_lost(v: &Value) -> u64 {
    v.get("bytes_lost").and_then(Value::as_u64).unwrap_or(0)
}

fn med(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { median(v) }
}

/// Seconds with two decimals from milliseconds; `–` when unknown.
fn secs(ms: f64) -> String {
    if ms.is_finite() {
        format!("{:.2}", ms / 1e3)
    } else {
        "–".to_owned()
    }
}

/// The longest gap of window `i` of a run; for a run without windows the
/// longest gap stands for the first window after the start.
fn window_gap(v: &Value, i: usize) -> Option<f64> {
    match v.get("gaps_ms").and_then(Value::as_array) {
        Some(g) if g.len() > 1 => g.get(i).and_then(Value::as_f64),
        _ if i == 1 => v.get("max_gap_ms").and_then(Value::as_f64),
        _ => None,
    }
}

/// The tables: one per workload present in the JSON lines (`aggregate`,
/// `failover`, `ttfb`; `wifi-down` and `blackhole` together; `share`),
/// medians per label in order of appearance, with the ratio to the row
/// labelled `baseline` (`ttfb_baseline` for time to first byte);
/// aggregation also as a share of `link_sum_mbit`. Runs that did not
/// complete (`error`) are left out of the medians; the Wi-Fi loss and share
/// tables count them.
pub fn markdown(input: &str, t: &Tables<'_>) -> String {
    let runs = runs(input);
    let mut md = String::new();
    simple_tables(&runs, t, &mut md);
    loss_table(&runs, &mut md);
    share_table(&runs, t.share_dev, &mut md);
    md
}

/// Aggregation, failover (link down for good) and time to first byte.
fn simple_tables(all: &[(String, String, Value)], t: &Tables<'_>, md: &mut String) {
    // (workload, label) -> values of the workload's key, first-to-last secs.
    let mut runs: Vec<(String, String, Vec<f64>, Vec<f64>)> = Vec::new();
    for (w, label, v) in all {
        let key = match w.as_str() {
            "aggregate" => "mbit_per_s",
            "failover" => "max_gap_ms",
            "ttfb" => "ttfb_ms",
            _ => continue,
        };
        if failed(v) {
            continue;
        }
        let (Some(x), secs) = (
            v.get(key).and_then(Value::as_f64),
            v.get("secs").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let i = if let Some(i) = runs.iter().position(|r| r.0 == *w && r.1 == *label) {
            i
        } else {
            runs.push((w.clone(), label.clone(), Vec::new(), Vec::new()));
            runs.len() - 1
        };
        if let Some(r) = runs.get_mut(i) {
            r.2.push(x);
            r.3.extend(secs);
        }
    }
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
    let has = |w: &str| runs.iter().any(|r| r.0 == w);
    let (link_sum_mbit, baseline, ttfb_baseline) = (t.link_sum_mbit, t.baseline, t.ttfb_baseline);
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
}

/// Wi-Fi lost mid-download (`wifi-down`: link down; `blackhole`: link up,
/// every packet dropped), then back: the longest gap in the window of the
/// loss (`gaps_ms[1]`) and in the window after Wi-Fi returns
/// (`gaps_ms[2]`), bytes lost, SHA-256 failures.
fn loss_table(runs: &[(String, String, Value)], md: &mut String) {
    const KINDS: [&str; 2] = ["wifi-down", "blackhole"];
    let rows = labels(runs, &KINDS);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "#### Wi-Fi lost mid-download and back: longest gap in received bytes (median, s)\n\n\
         | Path | link down | after link up | blackhole | after blackhole | bytes lost | SHA-256 failures | incomplete | runs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for label in rows {
        let mut cells = Vec::new();
        let (mut lost, mut sha, mut incomplete, mut counts) = (0u64, 0usize, 0usize, Vec::new());
        for kind in KINDS {
            let of: Vec<&Value> = runs
                .iter()
                .filter(|(w, l, _)| w == kind && l == label)
                .map(|(_, _, v)| v)
                .collect();
            counts.push(of.len());
            lost += of.iter().map(|v| bytes_lost(v)).sum::<u64>();
            sha += of.iter().filter(|v| sha_failed(v)).count();
            incomplete += of.iter().filter(|v| failed(v)).count();
            for window in [1, 2] {
                let g: Vec<f64> = of
                    .iter()
                    .filter(|v| !failed(v))
                    .filter_map(|v| window_gap(v, window))
                    .collect();
                cells.push(secs(med(&g)));
            }
        }
        let _ = writeln!(
            md,
            "| {label} | {} | {lost} | {sha} | {incomplete} | {} |",
            cells.join(" | "),
            counts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        );
    }
    md.push('\n');
}

/// Share of `dev` in the bytes all counted interfaces received.
fn rx_share(v: &Value, dev: &str) -> Option<f64> {
    let rx = v.get("rx_bytes")?.as_object()?;
    let total: u64 = rx.values().filter_map(Value::as_u64).sum();
    let of = rx.get(dev)?.as_u64()?;
    (total > 0).then(|| of as f64 / total as f64)
}

/// One download with no event (`share`): what share of the received
/// bytes came over `dev` (LTE).
fn share_table(runs: &[(String, String, Value)], dev: &str, md: &mut String) {
    let rows = labels(runs, &["share"]);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "#### {dev} share while Wi-Fi is healthy: one download, no event (median)\n\n\
         | Path | {dev} share of received bytes | bytes received on {dev} | Mbit/s | SHA-256 failures | runs |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for label in rows {
        let of: Vec<&Value> = runs
            .iter()
            .filter(|(w, l, _)| w == "share" && l == label)
            .map(|(_, _, v)| v)
            .collect();
        let ok: Vec<&&Value> = of.iter().filter(|v| !failed(v)).collect();
        let share = med(&ok
            .iter()
            .filter_map(|v| rx_share(v, dev))
            .collect::<Vec<_>>());
        let mbit = med(&ok
            .iter()
            .filter_map(|v| v.get("mbit_per_s").and_then(Value::as_f64))
            .collect::<Vec<_>>());
        let on_dev = med(&ok
            .iter()
            .filter_map(|v| v.get("rx_bytes")?.get(dev)?.as_u64())
            .map(|n| n as f64)
            .collect::<Vec<_>>());
        let share = if share.is_finite() {
            format!("{:.3} %", share * 100.0)
        } else {
            "–".to_owned()
        };
        let on_dev = if on_dev.is_finite() {
            format!("{on_dev:.0}")
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            md,
            "| {label} | {share} | {on_dev} | {mbit:.1} | {} | {} |",
            of.iter().filter(|v| sha_failed(v)).count(),
            of.len()
        );
    }
    md.push('\n');
}

/// Seconds since the Unix epoch of an RFC 3339 time
/// (`2026-11-23T15:37:01.123456Z`, or with `+01:00`).
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0.0)
    } else {
        let (clock, tz) = time.split_at(time.rfind(['+', '-'])?);
        let sign = if tz.starts_with('-') { -1.0 } else { 1.0 };
        let (hours, minutes) = tz.get(1..)?.split_once(':')?;
        (
            clock,
            sign * (hours.parse::<f64>().ok()? * 3600.0 + minutes.parse::<f64>().ok()? * 60.0),
        )
    };
    let mut hms = clock.splitn(3, ':').map(str::parse::<f64>);
    let (hour, minute, second) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hour * 3600.0 + minute * 60.0 + second - offset)
}

/// One `connection closed` line of the client's log.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedConn {
    /// When it started and ended, seconds since the Unix epoch.
    pub start: f64,
    /// When it was logged.
    pub end: f64,
    /// `mptcp`, `tcp-fallback`, `tcp` or `-`.
    pub transport: String,
    /// Subflows as the connection ended.
    pub subflows: u64,
}

/// The `connection closed` lines of a client log, JSON (`--log-format
/// json`) or text (`2026-…Z  INFO …: connection closed … transport=mptcp
/// subflows=2 … duration_ms=812`).
pub fn closed_connections(log: &str) -> Vec<ClosedConn> {
    log.lines()
        .filter(|l| l.contains("connection closed"))
        .filter_map(|line| {
            let (ts, transport, subflows, ms) = if let Ok(v) = serde_json::from_str::<Value>(line) {
                if v.get("message").and_then(Value::as_str) != Some("connection closed") {
                    return None;
                }
                (
                    v.get("timestamp")?.as_str()?.to_owned(),
                    v.get("transport")?.as_str()?.to_owned(),
                    v.get("subflows")?.as_u64()?,
                    v.get("duration_ms")?.as_u64()?,
                )
            } else {
                let field = |k: &str| {
                    line.split_whitespace().find_map(|w| {
                        w.strip_prefix(k)
                            .and_then(|r| r.strip_prefix('='))
                            .map(|v| v.trim_matches('"').to_owned())
                    })
                };
                (
                    line.split_whitespace().next()?.to_owned(),
                    field("transport")?,
                    field("subflows")?.parse().ok()?,
                    field("duration_ms")?.parse().ok()?,
                )
            };
            let end = parse_rfc3339(&ts)?;
            Some(ClosedConn {
                start: end - ms as f64 / 1e3,
                end,
                transport,
                subflows,
            })
        })
        .collect()
}

/// Times Wi-Fi was away, from the `event` lines (`wlan down` / `wlan up`,
/// `wlan blackhole on` / `wlan blackhole off`, at `at_unix`): (start,
/// end, how); an outage still open at the end of the input ends at
/// infinity.
pub fn outages(input: &str) -> Vec<(f64, f64, String)> {
    let mut events: Vec<(f64, String)> = input
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("event"))
        .filter_map(|v| {
            Some((
                v.get("at_unix")?.as_f64()?,
                v.get("event")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    let mut open: Option<(f64, String)> = None;
    for (at, e) in events {
        match e.as_str() {
            "wlan down" | "wlan blackhole on" if open.is_none() => {
                let how = if e == "wlan down" {
                    "down"
                } else {
                    "blackhole"
                };
                open = Some((at, how.to_owned()));
            }
            "wlan up" | "wlan blackhole off" => {
                if let Some((start, how)) = open.take() {
                    out.push((start, at, how));
                }
            }
            _ => {}
        }
    }
    if let Some((start, how)) = open {
        out.push((start, f64::INFINITY, how));
    }
    out
}

fn rss_kib(input: &str, process: &str, when: &str) -> Option<u64> {
    input
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("rss"))
        .find(|v| {
            v.get("process").and_then(Value::as_str) == Some(process)
                && v.get("when").and_then(Value::as_str) == Some(when)
        })
        .and_then(|v| v.get("kib").and_then(Value::as_u64))
}

/// The soak table: the `soak` runs of `input` (downloads back to back),
/// its `event` lines (Wi-Fi outages) and `rss` lines (`process` `client`
/// or `server`, `when` `start` or `end`, `kib`), and the client's log:
/// connections that lived while both paths were up (outside every outage
/// and `settle_secs` after it) and did not end as Multipath TCP with 2
/// subflows are counted.
pub fn soak_markdown(input: &str, client_log: &str, settle_secs: f64) -> String {
    let soak: Vec<Value> = runs(input)
        .into_iter()
        .filter(|(w, _, _)| w == "soak")
        .map(|(_, _, v)| v)
        .collect();
    let incomplete = soak.iter().filter(|v| failed(v) || sha_failed(v)).count();
    let lost: u64 = soak.iter().map(bytes_lost).sum();
    let gaps: Vec<f64> = soak
        .iter()
        .filter_map(|v| v.get("max_gap_ms").and_then(Value::as_f64))
        .collect();
    let longest = gaps.iter().copied().fold(f64::NAN, f64::max);
    let outs = outages(input);
    let conns = closed_connections(client_log);
    let both_up: Vec<&ClosedConn> = conns
        .iter()
        .filter(|c| {
            outs.iter()
                .all(|(s, e, _)| c.end < *s || c.start > e + settle_secs)
        })
        .collect();
    let mut odd: Vec<(String, usize)> = Vec::new();
    for c in both_up
        .iter()
        .filter(|c| c.transport != "mptcp" || c.subflows != 2)
    {
        let k = format!("{} with {} subflow(s)", c.transport, c.subflows);
        if let Some(e) = odd.iter_mut().find(|e| e.0 == k) {
            e.1 += 1;
        } else {
            odd.push((k, 1));
        }
    }
    let n_odd: usize = odd.iter().map(|e| e.1).sum();
    let odd_detail = if odd.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            odd.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mib =
        |k: Option<u64>| k.map_or_else(|| "–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    let rss = |p: &str| {
        format!(
            "{} → {}",
            mib(rss_kib(input, p, "start")),
            mib(rss_kib(input, p, "end"))
        )
    };
    let count = |how: &str| outs.iter().filter(|o| o.2 == how).count();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "#### Soak: downloads back to back through the chain while Wi-Fi comes and goes\n\n\
         | Figure | Value |\n|---|---:|"
    );
    let mut row = |k: &str, v: String| {
        let _ = writeln!(md, "| {k} | {v} |");
    };
    row("downloads", soak.len().to_string());
    row(
        "incomplete (error or SHA-256 mismatch)",
        incomplete.to_string(),
    );
    row("bytes lost", lost.to_string());
    row(
        "Wi-Fi outages: link down / blackhole",
        format!("{} / {}", count("down"), count("blackhole")),
    );
    row("connections the client logged", conns.len().to_string());
    row(
        &format!("… of them while both paths were up (≥ {settle_secs} s after an outage)"),
        both_up.len().to_string(),
    );
    row(
        "… of those not Multipath TCP with 2 subflows",
        format!("{n_odd}{odd_detail}"),
    );
    row("longest gap in received bytes (s)", secs(longest));
    row("longest gap per download, median (s)", secs(med(&gaps)));
    row(
        "longest time to first byte (s)",
        secs(
            soak.iter()
                .filter_map(|v| v.get("ttfb_ms").and_then(Value::as_f64))
                .fold(f64::NAN, f64::max),
        ),
    );
    row("client RSS, start → end (MiB)", rss("client"));
    row("server RSS, start → end (MiB)", rss("server"));
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables<'a>(baseline: &'a str, ttfb: &'a str) -> Tables<'a> {
        Tables {
            link_sum_mbit: 30.0,
            baseline,
            ttfb_baseline: ttfb,
            share_dev: "lte0",
        }
    }

    #[test]
    fn markdown_has_medians_shares_and_ratios() {
        let input = r#"{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":27.0,"secs":7.0}
{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":21.0,"secs":9.0}
{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":24.0,"secs":8.0}
{"kind":"run","workload":"aggregate","label":"a","mbit_per_s":1.0,"secs":8.0,"error":"reset"}
{"kind":"run","workload":"ttfb","label":"direct","ttfb_ms":40.0,"secs":0.0}
{"kind":"run","workload":"ttfb","label":"chain","ttfb_ms":20.0,"secs":0.0}
{"kind":"run","workload":"failover","label":"a","max_gap_ms":1500.0,"secs":12.0}"#;
        let md = markdown(input, &tables("a", "direct"));
        assert!(md.contains("| a | 24.0 | 80 % | 100 % | 3 |"), "{md}");
        assert!(md.contains("| direct | 40.0 | 100 % | 1 |"), "{md}");
        assert!(md.contains("| chain | 20.0 | 50 % | 1 |"), "{md}");
        assert!(md.contains("| a | 1.50 | 100 % | 12.0 | 1 |"), "{md}");
        assert!(!md.contains("Wi-Fi lost"), "{md}");
        assert!(!md.contains("share"), "{md}");
        let md = markdown(input, &tables("none", "none"));
        assert!(md.contains("| a | 24.0 | 80 % | – | 3 |"), "{md}");
    }

    #[test]
    fn loss_table_takes_the_failure_and_return_windows_and_counts_losses() {
        let input = r#"{"kind":"run","workload":"wifi-down","label":"chain","gaps_ms":[3.0,300.0,20.0],"bytes_lost":0,"sha256_ok":true}
{"kind":"run","workload":"blackhole","label":"chain","gaps_ms":[3.0,500.0,40.0],"bytes_lost":0,"sha256_ok":true}
{"kind":"run","workload":"wifi-down","label":"kernel","gaps_ms":[3.0,1400.0,null],"bytes_lost":0,"sha256_ok":true}
{"kind":"run","workload":"blackhole","label":"chain","gaps_ms":[3.0,700.0,60.0],"bytes_lost":0,"sha256_ok":false}
{"kind":"run","workload":"blackhole","label":"kernel","gaps_ms":[3.0,9000.0],"bytes_lost":1000,"sha256_ok":false,"error":"timed out"}
{"kind":"run","workload":"blackhole","label":"chain","gaps_ms":[3.0,900.0,80.0],"bytes_lost":0,"sha256_ok":true}"#;
        let md = markdown(input, &tables("kernel", "none"));
        assert!(
            md.contains("| chain | 0.30 | 0.02 | 0.70 | 0.06 | 0 | 1 | 0 | 1 + 3 |"),
            "{md}"
        );
        // The incomplete run is counted but not in the medians.
        assert!(
            md.contains("| kernel | 1.40 | – | – | – | 1000 | 1 | 1 | 1 + 1 |"),
            "{md}"
        );
    }

    #[test]
    fn share_table_is_the_share_of_the_named_interface() {
        let input = r#"{"kind":"run","workload":"share","label":"backup","mbit_per_s":19.0,"rx_bytes":{"wlan0":9990,"lte0":10},"sha256_ok":true}
{"kind":"run","workload":"share","label":"backup","mbit_per_s":18.0,"rx_bytes":{"wlan0":9980,"lte0":20},"sha256_ok":true}
{"kind":"run","workload":"share","label":"backup","mbit_per_s":17.0,"rx_bytes":{"wlan0":9970,"lte0":30},"sha256_ok":false}
{"kind":"run","workload":"share","label":"aggregate","mbit_per_s":27.0,"rx_bytes":{"wlan0":6000,"lte0":4000}}"#;
        let md = markdown(input, &tables("x", "y"));
        assert!(
            md.contains("| backup | 0.200 % | 20 | 18.0 | 1 | 3 |"),
            "{md}"
        );
        assert!(
            md.contains("| aggregate | 40.000 % | 4000 | 27.0 | 0 | 1 |"),
            "{md}"
        );
    }

    #[test]
    fn rfc3339_times_are_seconds_since_the_epoch() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        // date -u -d 2026-11-23T15:37:01Z +%s
        let t = parse_rfc3339("2026-11-23T15:37:01.250000Z").expect("parses");
        assert!((t - 1_795_448_221.25).abs() < 1e-6, "{t}");
        assert_eq!(
            parse_rfc3339("2000-03-01T01:00:00+01:00"),
            Some(951_868_800.0)
        );
        assert_eq!(
            parse_rfc3339("1999-12-31T23:00:00-01:00"),
            Some(946_684_800.0)
        );
        assert_eq!(parse_rfc3339("2000-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn closed_connections_read_json_and_text_logs() {
        let log = r#"{"timestamp":"1970-01-01T00:00:10.000000Z","level":"INFO","message":"connection closed","transport":"mptcp","subflows":2,"duration_ms":1500}
{"timestamp":"1970-01-01T00:00:11.000000Z","level":"INFO","message":"path manager started"}
1970-01-01T00:00:20.000000Z  INFO sixpath_client::conn: connection closed peer=127.0.0.1:5000 transport="tcp-fallback" subflows=1 paths=- duration_ms=250
1970-01-01T00:00:21.000000Z  INFO sixpath_client: listening"#;
        let c = closed_connections(log);
        assert_eq!(
            c,
            vec![
                ClosedConn {
                    start: 8.5,
                    end: 10.0,
                    transport: "mptcp".to_owned(),
                    subflows: 2
                },
                ClosedConn {
                    start: 19.75,
                    end: 20.0,
                    transport: "tcp-fallback".to_owned(),
                    subflows: 1
                },
            ]
        );
    }

    #[test]
    fn soak_counts_only_connections_while_both_paths_were_up() {
        let input = r#"{"kind":"run","workload":"soak","label":"c","max_gap_ms":100.0,"ttfb_ms":40.0,"bytes_lost":0,"sha256_ok":true}
{"kind":"run","workload":"soak","label":"c","max_gap_ms":900.0,"ttfb_ms":5100.0,"bytes_lost":0,"sha256_ok":false}
{"kind":"run","workload":"soak","label":"c","max_gap_ms":4000.0,"ttfb_ms":null,"bytes_lost":5,"sha256_ok":false,"error":"timed out"}
{"kind":"event","event":"wlan down","at_unix":20.0}
{"kind":"event","event":"wlan up","at_unix":25.0}
{"kind":"event","event":"wlan blackhole on","at_unix":40.0}
{"kind":"event","event":"wlan blackhole off","at_unix":45.0}
{"kind":"rss","process":"client","when":"start","kib":5120}
{"kind":"rss","process":"client","when":"end","kib":6144}
{"kind":"rss","process":"server","when":"start","kib":2048}"#;
        let ts = |s: u32| format!("1970-01-01T00:00:{s:02}.000000Z");
        let line = |end: u32, ms: u32, t: &str, n: u32| {
            format!(
                r#"{{"timestamp":"{}","message":"connection closed","transport":"{t}","subflows":{n},"duration_ms":{ms}}}"#,
                ts(end)
            )
        };
        let log = [
            line(10, 1000, "mptcp", 2),        // both up: good
            line(12, 1000, "mptcp", 1),        // both up: counted
            line(21, 2000, "mptcp", 1),        // overlaps the link-down outage
            line(26, 500, "mptcp", 1),         // within the settle time
            line(30, 1000, "tcp-fallback", 1), // both up: counted
            line(46, 8000, "mptcp", 1),        // spans the blackhole
        ]
        .join("\n");
        let md = soak_markdown(input, &log, 2.0);
        for want in [
            "| downloads | 3 |",
            "| incomplete (error or SHA-256 mismatch) | 2 |",
            "| bytes lost | 5 |",
            "| Wi-Fi outages: link down / blackhole | 1 / 1 |",
            "| connections the client logged | 6 |",
            "| … of them while both paths were up (≥ 2 s after an outage) | 3 |",
            "| … of those not Multipath TCP with 2 subflows | 2 (1 mptcp with 1 subflow(s), 1 tcp-fallback with 1 subflow(s)) |",
            "| longest gap in received bytes (s) | 4.00 |",
            "| longest gap per download, median (s) | 0.90 |",
            "| longest time to first byte (s) | 5.10 |",
            "| client RSS, start → end (MiB) | 5.0 → 6.0 |",
            "| server RSS, start → end (MiB) | 2.0 → – |",
        ] {
            assert!(md.contains(want), "{want}\n{md}");
        }
    }

    #[test]
    fn an_outage_without_its_end_lasts_to_the_end() {
        let input = r#"{"kind":"event","event":"wlan blackhole on","at_unix":5.0}
{"kind":"event","event":"wlan down","at_unix":1.0}
{"kind":"event","event":"wlan up","at_unix":2.0}"#;
        assert_eq!(
            outages(input),
            vec![
                (1.0, 2.0, "down".to_owned()),
                (5.0, f64::INFINITY, "blackhole".to_owned())
            ]
        );
    }
}
