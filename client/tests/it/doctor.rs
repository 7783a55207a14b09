//! `sixpath-client doctor` run as a program inside a namespace
//! (`ip netns exec`), against an MPTCP server in another one.

use std::process::Output;

use serde_json::Value;

use crate::netns::{self, Netns, Topology};
use crate::sink::Sink;

const BIN: &str = env!("CARGO_BIN_EXE_sixpath-client");

/// Runs the doctor for wlan0 and lte0; `wait` is `--wait` in seconds.
fn doctor(ns: &Netns, server: &str, wait: &str, extra: &[&str]) -> Output {
    let mut cmd = vec![
        BIN, "doctor", "--server", server, "--path", "wlan0", "--path", "lte0", "--wait", wait,
    ];
    cmd.extend_from_slice(extra);
    ns.exec(&cmd)
}

fn json(out: &Output) -> Value {
    let parsed = serde_json::from_slice(&out.stdout);
    assert!(
        parsed.is_ok(),
        "not JSON: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parsed.expect("JSON")
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    let found = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name);
    assert!(found.is_some(), "no check {name}: {report:#}");
    found.expect("check")
}

#[test]
fn doctor_reports_ok_with_two_subflows_when_mptcp_is_set_up() {
    if !netns::can_run("doctor_reports_ok_with_two_subflows_when_mptcp_is_set_up") {
        return;
    }
    let t = Topology::new("doc");
    let phone = &t.phone;
    phone.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflows",
        "2",
        "add_addr_accepted",
        "1",
    ]);
    phone.ip(&[
        "mptcp",
        "endpoint",
        "add",
        "198.18.1.2",
        "dev",
        "wlan0",
        "subflow",
    ]);
    phone.ip(&[
        "mptcp",
        "endpoint",
        "add",
        "198.18.2.2",
        "dev",
        "lte0",
        "subflow",
    ]);
    let sink = Sink::start(&t.server, "198.18.1.1");
    let server = sink.addr.to_string();

    let out = doctor(phone, &server, "10", &["--json"]);
    let report = json(&out);
    assert_eq!(report["verdict"], "ok", "{report:#}");
    assert_eq!(out.status.code(), Some(0));
    for name in [
        "mptcp-enabled",
        "path-manager",
        "endpoints",
        "limits",
        "reach wlan0",
        "reach lte0",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report:#}");
    }
    let e2e = check(&report, "mptcp-e2e");
    assert_eq!(e2e["status"], "ok", "{report:#}");
    let detail = e2e["detail"].as_str().expect("detail");
    assert!(
        detail.contains("with 2 subflow(s) over wlan0, lte0"),
        "{detail}"
    );
    let ifaces: Vec<&str> = report["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p["iface"].as_str().expect("iface"))
        .collect();
    assert_eq!(ifaces, ["wlan0", "lte0"]);

    let text = doctor(phone, &server, "10", &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("verdict: OK"), "{text}");
    assert!(!text.contains("fix:"), "{text}");
}

#[test]
fn doctor_reports_disabled_mptcp_and_missing_endpoints_with_fix_commands() {
    if !netns::can_run("doctor_reports_disabled_mptcp_and_missing_endpoints_with_fix_commands") {
        return;
    }
    let t = Topology::new("docoff");
    let phone = &t.phone;
    phone.sysctl("net.mptcp.enabled", "0");
    let sink = Sink::start(&t.server, "198.18.1.1");
    let server = sink.addr.to_string();

    let out = doctor(phone, &server, "1", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "a failed check exits 1");
    let report = json(&out);
    assert_eq!(report["verdict"], "broken", "{report:#}");
    let enabled = check(&report, "mptcp-enabled");
    assert_eq!(enabled["status"], "fail");
    assert_eq!(enabled["fix"][0], "sysctl -w net.mptcp.enabled=1");
    let e2e = check(&report, "mptcp-e2e");
    assert_eq!(
        e2e["status"], "fail",
        "the probe ran over plain TCP: {report:#}"
    );
    let endpoints = check(&report, "endpoints");
    assert_eq!(endpoints["status"], "warn");
    assert_eq!(
        endpoints["fix"],
        serde_json::json!([
            netns::ours_cmd("ip mptcp endpoint add 198.18.1.2 dev wlan0 subflow"),
            netns::ours_cmd("ip mptcp endpoint add 198.18.2.2 dev lte0 subflow")
        ])
    );
    // Reaching the server over each interface does not need MPTCP.
    assert_eq!(check(&report, "reach lte0")["status"], "ok", "{report:#}");

    let text = doctor(phone, &server, "1", &[]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("FAIL  mptcp-enabled  net.mptcp.enabled = 0"),
        "{text}"
    );
    assert!(
        text.contains("fix: sysctl -w net.mptcp.enabled=1"),
        "{text}"
    );
    assert!(text.contains("verdict: BROKEN"), "{text}");
    let fixes = text
        .split("to fix, run as root:\n")
        .nth(1)
        .expect("fix list");
    assert_eq!(
        fixes,
        format!(
            "  sysctl -w net.mptcp.enabled=1\n  {}\n  {}\n  \
             ip mptcp limits set subflows 2 add_addr_accepted 1\n",
            netns::ours_cmd("ip mptcp endpoint add 198.18.1.2 dev wlan0 subflow"),
            netns::ours_cmd("ip mptcp endpoint add 198.18.2.2 dev lte0 subflow"),
        )
    );

    // Running the fixes makes the doctor happy.
    phone.sysctl("net.mptcp.enabled", "1");
    for line in fixes.lines().skip(1) {
        phone.ip(&netns::ip_args(line));
    }
    let out = doctor(phone, &server, "10", &["--json"]);
    let report = json(&out);
    assert_eq!(report["verdict"], "ok", "{report:#}");
}

#[test]
fn doctor_says_handover_cannot_withdraw_paths_without_cap_net_admin() {
    if !netns::can_run("doctor_says_handover_cannot_withdraw_paths_without_cap_net_admin") {
        return;
    }
    let t = Topology::new("dochand");
    let phone = &t.phone;
    let sink = Sink::start(&t.server, "198.18.1.1");
    let server = sink.addr.to_string();
    let base = [
        BIN,
        "doctor",
        "--server",
        &server,
        "--path",
        "wlan0",
        "--path",
        "lte0",
        "--path-policy",
        "handover",
        "--wait",
        "1",
        "--json",
    ];
    let with_cap = json(&phone.exec(&base));
    assert_eq!(check(&with_cap, "handover")["status"], "ok", "{with_cap:#}");
    // The same as root without CAP_NET_ADMIN (setpriv drops it from every
    // set).
    let mut dropped = vec![
        "setpriv",
        "--inh-caps=-net_admin",
        "--bounding-set=-net_admin",
        "--",
    ];
    dropped.extend_from_slice(&base);
    let without = json(&phone.exec(&dropped));
    let c = check(&without, "handover");
    assert_eq!(c["status"], "warn", "{without:#}");
    assert!(
        c["detail"].as_str().unwrap_or("").contains("CAP_NET_ADMIN"),
        "{without:#}"
    );
    assert!(
        c["fix"][0]
            .as_str()
            .unwrap_or("")
            .contains("setcap cap_net_admin+ep"),
        "{without:#}"
    );
}

#[test]
fn doctor_says_single_path_with_one_path_or_no_endpoints_and_names_the_fix() {
    if !netns::can_run("doctor_says_single_path_with_one_path_or_no_endpoints_and_names_the_fix") {
        return;
    }
    let t = Topology::new("docone");
    let phone = &t.phone;
    // One --path of the phone's two interfaces.
    let out = phone.exec(&[BIN, "doctor", "--path", "wlan0", "--json"]);
    assert_eq!(out.status.code(), Some(0), "a single path is no failure");
    let report = json(&out);
    assert_eq!(report["verdict"], "single-path", "{report:#}");
    let c = check(&report, "multipath");
    assert_eq!(c["status"], "warn", "{report:#}");
    assert_eq!(
        c["fix"][0], "sixpath-client --path wlan0 --path lte0",
        "{report:#}"
    );
    // No --path and no endpoint in the phone's namespace.
    let out = phone.exec(&[BIN, "doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no MPTCP subflow endpoint"), "{text}");
    assert!(text.contains("verdict: SINGLE PATH"), "{text}");
    assert!(
        text.contains("  sixpath-client --path wlan0 --path lte0\n"),
        "{text}"
    );
    // Both paths: no single-path verdict (endpoints may still be missing).
    let report = json(&phone.exec(&[BIN, "doctor", "--path", "wlan0", "--path", "lte0", "--json"]));
    assert_eq!(check(&report, "multipath")["status"], "ok", "{report:#}");
    assert_ne!(report["verdict"], "single-path", "{report:#}");
}
