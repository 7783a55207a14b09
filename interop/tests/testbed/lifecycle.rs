//! `scripts/testbed` itself: `down` and a failed `up` leave nothing behind.

use std::path::Path;
use std::process::Command;

use crate::bed::{self, Ns, Testbed};

fn pids_in(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Whether process `pid` still runs (a zombie waiting for its parent to
/// reap it has ended).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

#[test]
fn testbed_down_removes_namespaces_processes_and_state() {
    if !bed::can_run("testbed_down_removes_namespaces_processes_and_state") {
        return;
    }
    let tb = Testbed::up(&[]);
    let names = [tb.ns(Ns::Phone), tb.ns(Ns::Operator), tb.ns(Ns::Internet)];
    let pids = pids_in(&names[1]);
    println!("operator processes while up: {pids:?} (linkem and server)");
    assert_eq!(
        pids.len(),
        2,
        "linkem and sixpath-server run in the operator"
    );
    let phone_pids = pids_in(&names[0]);
    assert_eq!(phone_pids.len(), 1, "linkem runs in the phone");
    let pids = [pids, phone_pids].concat();
    drop(tb);
    for n in &names {
        assert!(!Path::new("/run/netns").join(n).exists(), "{n} left behind");
    }
    for p in &pids {
        assert!(!running(p), "process {p} left behind");
    }
}

#[test]
fn testbed_up_that_fails_removes_what_it_made() {
    if !bed::can_run("testbed_up_that_fails_removes_what_it_made") {
        return;
    }
    let name = format!("sxfail{}", std::process::id());
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed"))
        .args(["up", "--no-server"])
        .env("SIXPATH_TB", &name)
        .env("SIXPATH_LINKEM", "/bin/false")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("up with a link emulator that exits: {}\n{err}", out.status);
    assert!(!out.status.success());
    assert!(err.contains("up failed; removing what it made"), "{err}");
    for part in ["phone", "operator", "internet"] {
        let n = format!("{name}-{part}");
        assert!(
            !Path::new("/run/netns").join(&n).exists(),
            "{n} left behind"
        );
    }
    assert!(!Path::new(&format!("/run/sixpath-testbed/{name}.env")).exists());
}
