//! Turns the JSON lines of `sixpath-bench` runs into Markdown tables (with
//! ratios to the baseline row) and an SVG bar chart.

use std::fmt::Write as _;

use serde_json::Value;

use super::median;

/// One path's runs, by label.
#[derive(Debug, Default, Clone)]
struct Runs {
    label: String,
    pending: Option<String>,
    thr1: Vec<f64>,
    thr8: Vec<f64>,
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    idle: Vec<f64>,
    cpu: Cpu<Vec<f64>>,
    cpu_conn: Cpu<Vec<f64>>,
}

/// CPU of a path's processes by role (seconds per GiB in throughput runs,
/// microseconds per connection in rate runs): the client side of a chain
/// (the process the application talks to) and the server side (the one
/// that talks to the target; a one-hop proxy is only this).
#[derive(Debug, Default, Clone)]
struct Cpu<T> {
    client: Option<String>,
    client_s: T,
    server: Option<String>,
    server_s: T,
    total_s: T,
}

/// One path's medians.
#[derive(Debug, Default, Clone)]
struct Row {
    label: String,
    pending: Option<String>,
    thr1: Option<f64>,
    thr8: Option<f64>,
    rate: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    idle: Option<f64>,
    cpu: Cpu<Option<f64>>,
    cpu_conn: Cpu<Option<f64>>,
}

/// Adds one run's `cpu` array (`role`, `process` and the figure `key`:
/// `s_per_gib` of a throughput run, `us_per_conn` of a rate run) to `to`:
/// per role the sum over its processes, and the total.
fn push_cpu(to: &mut Cpu<Vec<f64>>, cpu: &Value, key: &str) {
    let Some(list) = cpu.as_array() else { return };
    let (mut client, mut server) = (None::<f64>, None::<f64>);
    let (mut client_names, mut server_names) = (Vec::new(), Vec::new());
    for p in list {
        let Some(x) = p.get(key).and_then(Value::as_f64) else {
            // A run without bytes has no figure: none for the whole run.
            return;
        };
        let name = p.get("process").and_then(Value::as_str).unwrap_or("?");
        if p.get("role").and_then(Value::as_str) == Some("client") {
            *client.get_or_insert(0.0) += x;
            client_names.push(name);
        } else {
            *server.get_or_insert(0.0) += x;
            server_names.push(name);
        }
    }
    if let Some(c) = client {
        to.client = Some(client_names.join(" + "));
        to.client_s.push(c);
    }
    if let Some(s) = server {
        to.server = Some(server_names.join(" + "));
        to.server_s.push(s);
    }
    if client.is_some() || server.is_some() {
        to.total_s
            .push(client.unwrap_or(0.0) + server.unwrap_or(0.0));
    }
}

fn med(v: &[f64]) -> Option<f64> {
    if v.is_empty() { None } else { Some(median(v)) }
}

fn medians(c: Cpu<Vec<f64>>) -> Cpu<Option<f64>> {
    Cpu {
        client_s: med(&c.client_s),
        server_s: med(&c.server_s),
        total_s: med(&c.total_s),
        client: c.client,
        server: c.server,
    }
}

/// Medians per path from the `run` lines (summary lines are ignored, so
/// runs of one path spread over several invocations count together).
fn rows(lines: &str) -> Vec<Row> {
    let mut all: Vec<Runs> = Vec::new();
    for line in lines.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let kind = v.get("kind").and_then(Value::as_str);
        let Some(label) = v.get("label").and_then(Value::as_str) else {
            continue;
        };
        if !matches!(kind, Some("run" | "pending")) {
            continue;
        }
        let i = if let Some(i) = all.iter().position(|r| r.label == label) {
            i
        } else {
            all.push(Runs {
                label: label.to_owned(),
                ..Runs::default()
            });
            all.len() - 1
        };
        let Some(r) = all.get_mut(i) else { continue };
        if kind == Some("pending") {
            r.pending = v.get("reason").and_then(Value::as_str).map(str::to_owned);
            continue;
        }
        let push = |to: &mut Vec<f64>, key: &str| {
            if let Some(x) = v.get(key).and_then(Value::as_f64) {
                to.push(x);
            }
        };
        match v.get("workload").and_then(Value::as_str) {
            Some("throughput") => {
                match v.get("conns").and_then(Value::as_u64) {
                    Some(1) => push(&mut r.thr1, "gbit_per_s"),
                    _ => push(&mut r.thr8, "gbit_per_s"),
                }
                if let Some(cpu) = v.get("cpu") {
                    push_cpu(&mut r.cpu, cpu, "s_per_gib");
                }
            }
            Some("rate") => {
                push(&mut r.rate, "conn_per_s");
                push(&mut r.p50, "p50_ms");
                push(&mut r.p99, "p99_ms");
                if let Some(cpu) = v.get("cpu") {
                    push_cpu(&mut r.cpu_conn, cpu, "us_per_conn");
                }
            }
            Some("idle") => push(&mut r.idle, "bytes_per_conn"),
            _ => {}
        }
    }
    all.into_iter()
        .map(|r| Row {
            thr1: med(&r.thr1),
            thr8: med(&r.thr8),
            rate: med(&r.rate),
            p50: med(&r.p50),
            p99: med(&r.p99),
            idle: med(&r.idle),
            cpu: medians(r.cpu),
            cpu_conn: medians(r.cpu_conn),
            label: r.label,
            pending: r.pending,
        })
        .collect()
}

/// The baseline first, measured paths in the order they first appear, paths
/// that could not run last.
fn ordered(mut rows: Vec<Row>, baseline: &str) -> Vec<Row> {
    rows.sort_by_key(|r| match (r.label == baseline, r.pending.is_some()) {
        (true, _) => 0,
        (false, false) => 1,
        (false, true) => 2,
    });
    rows
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

fn ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.0} %", v / b * 100.0),
        _ => "–".to_owned(),
    }
}

/// The label of the direct Multipath TCP row of `scripts/bench`: the
/// connection-rate table also compares against it when it is there.
pub const MPTCP_BASELINE: &str = "direct MPTCP";

/// The label of the connection-rate floor of the chain's shape in
/// `scripts/bench` (two relays in C that do no proxy work, a Multipath TCP
/// middle leg: `scripts/relay-floor.c`): the connection-rate table also
/// compares against it, as "vs floor (MPTCP)", when it is there.
pub const FLOOR_BASELINE: &str = "bare relay chain (MPTCP, epoll, C)";

/// The connection-rate table's extra ratio columns: the row each compares
/// against and the column's heading.
const RATE_BASELINES: [(&str, &str); 2] = [
    (MPTCP_BASELINE, "vs direct MPTCP"),
    (FLOOR_BASELINE, "vs floor (MPTCP)"),
];

/// Markdown tables from the JSON lines in `input`, ratios against the row
/// labelled `baseline`.
pub fn markdown(input: &str, baseline: &str) -> String {
    let rows = ordered(rows(input), baseline);
    let base = rows
        .iter()
        .find(|r| r.label == baseline)
        .cloned()
        .unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "#### Bulk download throughput (Gbit/s, median)\n\n\
         | Path | 1 connection | vs {baseline} | 8 connections | vs {baseline} |\n\
         |---|---:|---:|---:|---:|"
    );
    for r in &rows {
        if let Some(p) = &r.pending {
            let _ = writeln!(md, "| {} | {p} | | | |", r.label);
            continue;
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.label,
            num(r.thr1, 2),
            ratio(r.thr1, base.thr1),
            num(r.thr8, 2),
            ratio(r.thr8, base.thr8)
        );
    }
    // With a direct Multipath TCP row, rates are also given against it:
    // what the proxy costs on top of setting up its transport; with the
    // floor row, against what the chain's shape costs without a proxy's
    // work.
    let extra: Vec<(&str, f64)> = RATE_BASELINES
        .iter()
        .filter_map(|(label, heading)| {
            let rate = rows.iter().find(|r| r.label == *label)?.rate?;
            Some((*heading, rate))
        })
        .collect();
    let extra_head = extra.iter().fold(String::new(), |mut out, (h, _)| {
        let _ = write!(out, " {h} |");
        out
    });
    let extra_rule = "---:|".repeat(extra.len());
    let _ = writeln!(
        md,
        "\n#### Connection rate (100 B up, 1 KiB down, one connection each; median)\n\n\
         | Path | conn/s | vs {baseline} |{extra_head} latency p50 (ms) | latency p99 (ms) |\n\
         |---|---:|---:|{extra_rule}---:|---:|"
    );
    for r in rows.iter().filter(|r| r.pending.is_none()) {
        let ratios = extra.iter().fold(String::new(), |mut out, (_, rate)| {
            let _ = write!(out, " {} |", ratio(r.rate, Some(*rate)));
            out
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} |{ratios} {} | {} |",
            r.label,
            num(r.rate, 0),
            ratio(r.rate, base.rate),
            num(r.p50, 2),
            num(r.p99, 2)
        );
    }
    let _ = writeln!(
        md,
        "\n#### Idle relayed connections (proxy RSS growth per connection, median)\n\n\
         | Path | bytes per connection |\n|---|---:|"
    );
    for r in rows.iter().filter(|r| r.idle.is_some()) {
        let _ = writeln!(md, "| {} | {} |", r.label, num(r.idle, 0));
    }
    cpu_table(
        &mut md,
        &rows,
        |r| &r.cpu,
        "CPU s/GiB (user + system CPU seconds per GiB relayed, throughput runs; median)",
        "CPU s/GiB",
        3,
    );
    cpu_table(
        &mut md,
        &rows,
        |r| &r.cpu_conn,
        "CPU per connection (user + system CPU µs per completed connection, rate runs; median)",
        "CPU µs",
        0,
    );
    let notes: Vec<String> = input
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("note"))
        .filter_map(|v| {
            let label = v.get("label")?.as_str()?;
            let text = v.get("text")?.as_str()?;
            Some(format!("- {label}: {text}"))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes from the run:\n\n{}", notes.join("\n"));
    }
    md
}

/// A table of the rows with `cpu` figures, per side (none without any).
fn cpu_table(
    md: &mut String,
    rows: &[Row],
    cpu: fn(&Row) -> &Cpu<Option<f64>>,
    title: &str,
    unit: &str,
    decimals: usize,
) {
    let with_cpu: Vec<&Row> = rows.iter().filter(|r| cpu(r).total_s.is_some()).collect();
    if with_cpu.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n#### {title}\n\n\
         | Path | client side | {unit} | server side | {unit} | total {unit} |\n\
         |---|---|---:|---|---:|---:|"
    );
    for r in with_cpu {
        let c = cpu(r);
        let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "–".to_owned());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.label,
            name(&c.client),
            num(c.client_s, decimals),
            name(&c.server),
            num(c.server_s, decimals),
            num(c.total_s, decimals)
        );
    }
}

/// Reads one value out of a row.
type Metric = fn(&Row) -> Option<f64>;

/// Colours for the bars, one per row, in order.
const COLOURS: [&str; 8] = [
    "#7f7f7f", "#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// A grouped bar chart: throughput (1 and 8 connections) and connection
/// rate of every measured row, as a percentage of `baseline`.
pub fn svg(input: &str, baseline: &str) -> String {
    let rows: Vec<Row> = ordered(rows(input), baseline)
        .into_iter()
        .filter(|r| r.pending.is_none())
        .collect();
    let base = rows
        .iter()
        .find(|r| r.label == baseline)
        .cloned()
        .unwrap_or_default();
    let groups: [(&str, Metric); 3] = [
        ("throughput, 1 connection", |r| r.thr1),
        ("throughput, 8 connections", |r| r.thr8),
        ("connections per second", |r| r.rate),
    ];
    let (bar_w, gap, left, top, plot_h) = (26.0, 40.0, 60.0, 40.0, 260.0);
    let group_w = bar_w * rows.len() as f64 + gap;
    let width = left + group_w * groups.len() as f64 + 20.0;
    let legend_h = 18.0 * rows.len() as f64;
    let height = top + plot_h + 50.0 + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"14\">Percent of {baseline} (median of runs; higher is better)</text>"
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = top + plot_h * (1.0 - f64::from(pct) / 100.0);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{pct} %</text>",
            width - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (g, (name, get)) in groups.iter().enumerate() {
        let gx = left + gap / 2.0 + group_w * g as f64;
        for (i, r) in rows.iter().enumerate() {
            let (Some(value), Some(reference)) = (get(r), get(&base)) else {
                continue;
            };
            if reference <= 0.0 {
                continue;
            }
            let pct = value / reference * 100.0;
            let h = plot_h * pct.min(110.0) / 100.0;
            let x = gx + bar_w * i as f64;
            let y = top + plot_h - h;
            let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#000");
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\">\
                 <title>{}: {pct:.0} %</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{pct:.0}</text>",
                bar_w - 3.0,
                r.label,
                x + (bar_w - 3.0) / 2.0,
                y - 3.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{name}</text>",
            gx + bar_w * rows.len() as f64 / 2.0,
            top + plot_h + 18.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + plot_h + 40.0 + 18.0 * i as f64;
        let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#000");
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\">{}</text>",
            y - 10.0,
            left + 18.0,
            y,
            r.label
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"{"kind":"run","workload":"throughput","label":"direct","conns":1,"gbit_per_s":10.0}
{"kind":"run","workload":"throughput","label":"proxy","conns":1,"gbit_per_s":5.0}
{"kind":"run","workload":"throughput","label":"proxy","conns":1,"gbit_per_s":4.0}
{"kind":"run","workload":"throughput","label":"proxy","conns":1,"gbit_per_s":6.0}
{"kind":"summary","workload":"throughput","label":"proxy","conns":1,"median_gbit_per_s":99.0}
{"kind":"run","workload":"rate","label":"proxy","conn_per_s":1000.0,"p50_ms":1.5,"p99_ms":4.0}
{"kind":"pending","label":"chain","reason":"not yet available"}
"#;

    #[test]
    fn baseline_comes_first_and_pending_rows_last() {
        let input = format!(
            "{}\n{INPUT}",
            r#"{"kind":"pending","label":"early","reason":"not yet available"}"#
        );
        let md = markdown(&input, "proxy");
        let at = |s: &str| md.find(s).expect(s);
        assert!(at("| proxy |") < at("| direct |"));
        assert!(at("| direct |") < at("| early |"));
        assert!(at("| early |") < at("| chain |"));
    }

    #[test]
    fn markdown_reports_ratio_to_baseline() {
        let md = markdown(INPUT, "direct");
        assert!(md.contains("| direct | 10.00 | 100 % | – | – |"), "{md}");
        assert!(md.contains("| proxy | 5.00 | 50 % | – | – |"), "{md}");
        assert!(md.contains("| proxy | 1000 | – | 1.50 | 4.00 |"), "{md}");
        assert!(md.contains("| chain | not yet available | | | |"), "{md}");
    }

    #[test]
    fn cpu_table_puts_client_and_server_side_next_to_each_other_with_medians() {
        let input = r#"{"kind":"run","workload":"throughput","label":"direct","conns":1,"gbit_per_s":10.0,"cpu":[]}
{"kind":"run","workload":"throughput","label":"chain","conns":1,"gbit_per_s":2.0,"cpu":[{"role":"client","process":"ss-local","s_per_gib":0.5},{"role":"server","process":"ss-server","s_per_gib":0.25}]}
{"kind":"run","workload":"throughput","label":"chain","conns":8,"gbit_per_s":8.0,"cpu":[{"role":"client","process":"ss-local","s_per_gib":0.75},{"role":"server","process":"ss-server","s_per_gib":0.5}]}
{"kind":"run","workload":"throughput","label":"chain","conns":8,"gbit_per_s":8.0,"cpu":[{"role":"client","process":"ss-local","s_per_gib":0.7},{"role":"server","process":"ss-server","s_per_gib":null}]}
{"kind":"run","workload":"throughput","label":"chain","conns":1,"gbit_per_s":2.0,"cpu":[{"role":"client","process":"ss-local","s_per_gib":1.0},{"role":"server","process":"ss-server","s_per_gib":0.75}]}
{"kind":"run","workload":"throughput","label":"dante","conns":1,"gbit_per_s":3.0,"cpu":[{"role":"server","process":"danted","s_per_gib":0.125}]}
"#;
        let md = markdown(input, "direct");
        assert!(md.contains("#### CPU s/GiB"), "{md}");
        // Medians of three runs each (the run without a server figure is
        // left out whole): client 0.5/0.75/1.0, server 0.25/0.5/0.75.
        assert!(
            md.contains("| chain | ss-local | 0.750 | ss-server | 0.500 | 1.250 |"),
            "{md}"
        );
        assert!(
            md.contains("| dante | – | – | danted | 0.125 | 0.125 |"),
            "{md}"
        );
        let cpu = &md[md.find("#### CPU s/GiB").unwrap()..];
        assert!(!cpu.contains("| direct |"), "no processes, no row: {cpu}");
        // Without any cpu figures there is no table.
        assert!(!markdown(INPUT, "direct").contains("CPU s/GiB"));
    }

    #[test]
    fn cpu_per_connection_table_takes_the_rate_runs_per_side() {
        let input = r#"{"kind":"run","workload":"rate","label":"direct","conn_per_s":8000.0,"p50_ms":0.5,"p99_ms":2.0,"cpu":[]}
{"kind":"run","workload":"rate","label":"chain","conn_per_s":2000.0,"p50_ms":2.0,"p99_ms":6.0,"cpu":[{"role":"client","process":"sixpath-client","us_per_conn":180.0},{"role":"server","process":"sixpath-server","us_per_conn":150.0}]}
{"kind":"run","workload":"rate","label":"chain","conn_per_s":2100.0,"p50_ms":2.0,"p99_ms":6.0,"cpu":[{"role":"client","process":"sixpath-client","us_per_conn":200.0},{"role":"server","process":"sixpath-server","us_per_conn":170.0}]}
{"kind":"run","workload":"rate","label":"chain","conn_per_s":1900.0,"p50_ms":2.0,"p99_ms":6.0,"cpu":[{"role":"client","process":"sixpath-client","us_per_conn":220.0},{"role":"server","process":"sixpath-server","us_per_conn":160.0}]}
{"kind":"run","workload":"throughput","label":"chain","conns":1,"gbit_per_s":2.0,"cpu":[{"role":"client","process":"sixpath-client","s_per_gib":0.5},{"role":"server","process":"sixpath-server","s_per_gib":0.25}]}
"#;
        let md = markdown(input, "direct");
        let per_conn = &md[md.find("#### CPU per connection").expect("the table")..];
        assert!(
            per_conn
                .contains("| Path | client side | CPU µs | server side | CPU µs | total CPU µs |"),
            "{per_conn}"
        );
        // Medians of the three rate runs: client 180/200/220, server
        // 150/170/160, and of the runs' sums 330/370/380.
        assert!(
            per_conn.contains("| chain | sixpath-client | 200 | sixpath-server | 160 | 370 |"),
            "{per_conn}"
        );
        assert!(!per_conn.contains("| direct |"), "no processes, no row");
        // The throughput run's figures stay in their own table.
        assert!(md.contains("| chain | sixpath-client | 0.500 | sixpath-server | 0.250 | 0.750 |"));
    }

    #[test]
    fn rate_table_compares_with_direct_mptcp_when_that_row_is_there() {
        let input = r#"{"kind":"run","workload":"rate","label":"direct","conn_per_s":8000.0,"p50_ms":0.5,"p99_ms":2.0}
{"kind":"run","workload":"rate","label":"direct MPTCP","conn_per_s":4000.0,"p50_ms":1.0,"p99_ms":3.0}
{"kind":"run","workload":"rate","label":"chain","conn_per_s":2000.0,"p50_ms":2.0,"p99_ms":6.0}
"#;
        let md = markdown(input, "direct");
        assert!(
            md.contains("| conn/s | vs direct | vs direct MPTCP |"),
            "{md}"
        );
        assert!(
            md.contains("| chain | 2000 | 25 % | 50 % | 2.00 | 6.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| direct MPTCP | 4000 | 50 % | 100 % |"),
            "{md}"
        );
        // Without that row the table keeps its columns.
        assert!(markdown(INPUT, "direct").contains("| proxy | 1000 | – | 1.50 | 4.00 |"));
    }

    #[test]
    fn rate_table_compares_with_the_floor_chain_when_that_row_is_there() {
        let input = format!(
            r#"{{"kind":"run","workload":"rate","label":"direct","conn_per_s":8000.0,"p50_ms":0.5,"p99_ms":2.0}}
{{"kind":"run","workload":"rate","label":"direct MPTCP","conn_per_s":4000.0,"p50_ms":1.0,"p99_ms":3.0}}
{{"kind":"run","workload":"rate","label":"{FLOOR_BASELINE}","conn_per_s":2500.0,"p50_ms":1.5,"p99_ms":4.0}}
{{"kind":"run","workload":"rate","label":"chain","conn_per_s":2000.0,"p50_ms":2.0,"p99_ms":6.0}}
"#
        );
        let md = markdown(&input, "direct");
        assert!(
            md.contains("| conn/s | vs direct | vs direct MPTCP | vs floor (MPTCP) | latency p50"),
            "{md}"
        );
        assert!(
            md.contains("| chain | 2000 | 25 % | 50 % | 80 % | 2.00 | 6.00 |"),
            "{md}"
        );
        // The floor alone, without the direct MPTCP row: one extra column.
        let no_mptcp: String = input
            .lines()
            .filter(|l| !l.contains("direct MPTCP"))
            .collect::<Vec<_>>()
            .join("\n");
        let md = markdown(&no_mptcp, "direct");
        assert!(
            md.contains("| vs direct | vs floor (MPTCP) | latency p50"),
            "{md}"
        );
        assert!(md.contains("| chain | 2000 | 25 % | 80 % | 2.00 |"), "{md}");
    }

    #[test]
    fn svg_has_one_bar_per_measured_value() {
        let svg = svg(INPUT, "direct");
        assert!(svg.starts_with("<svg "));
        assert_eq!(svg.matches("<title>").count(), 2, "{svg}");
        assert!(svg.contains("<title>proxy: 50 %</title>"));
    }
}
