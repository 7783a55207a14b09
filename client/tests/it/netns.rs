//! Network namespaces for tests: unique names, veth pairs with
//! 198.18.0.0/15 addresses, and code run inside a namespace on a thread
//! that `setns`-ed into it (sockets belong to the namespace they were
//! created in). Everything is removed on drop, also when a test fails.
//!
//! `setns` and `capset` have no safe wrapper in the dependencies; the
//! unsafe calls are confined to this module.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// True when the test can create namespaces; otherwise prints a loud SKIP.
pub(crate) fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let mptcp = std::path::Path::new("/proc/sys/net/mptcp/enabled").exists();
    if root && ip && mptcp {
        return true;
    }
    eprintln!(
        "SKIP {test}: needs root, iproute2 and a kernel with MPTCP (root={root}, ip={ip}, mptcp={mptcp})"
    );
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace that is deleted on drop.
#[derive(Debug)]
pub(crate) struct Netns {
    /// Its name under /run/netns.
    pub(crate) name: String,
}

impl Netns {
    /// Creates `sp-<tag>-<pid>-<n>` with `lo` up, MPTCP enabled and
    /// reverse-path filtering off.
    pub(crate) fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("sp-{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.sysctl("net.mptcp.enabled", "1");
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
        ns.sysctl("net.ipv4.conf.default.rp_filter", "0");
        ns
    }

    /// `ip -n NAME args...`, which must succeed; returns stdout.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`), whatever its
    /// exit status.
    pub(crate) fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("spawn")
    }

    /// Sets a sysctl inside the namespace.
    pub(crate) fn sysctl(&self, key: &str, value: &str) {
        let out = self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
        assert!(
            out.status.success(),
            "sysctl {key}={value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip mptcp endpoint show`, one endpoint per line, trimmed.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.ip(&["mptcp", "endpoint", "show"])
            .lines()
            // iproute2 before 6.18 shows the `laminar` bit (0x20) raw.
            .map(|l| l.trim().replace(" rawflags 20", " laminar"))
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Runs `f` on a new thread that has entered this namespace.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

fn enter(path: &str) {
    let file = File::open(path).expect("open netns");
    // SAFETY: setns on a valid namespace fd; it changes only the calling
    // thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Creates a veth pair `a_if` (in `a`, address `a_addr`) ↔ `b_if` (in
/// `b`, address `b_addr`), both up. Addresses are CIDR (`198.18.1.2/24`).
pub(crate) fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// The phone/server topology: `phone` has wlan0 198.18.1.2/24 and lte0
/// 198.18.2.2/24, linked to `server`'s `s_wlan` 198.18.1.1/24 and `s_lte`
/// 198.18.2.1/24; the phone routes by default over wlan0 (metric 100) and
/// lte0 (metric 200). The server address is 198.18.1.1.
pub(crate) struct Topology {
    /// The handset.
    pub(crate) phone: Netns,
    /// The server side.
    pub(crate) server: Netns,
}

impl Topology {
    /// Builds it.
    pub(crate) fn new(tag: &str) -> Self {
        let phone = Netns::new(&format!("{tag}-p"));
        let server = Netns::new(&format!("{tag}-s"));
        veth(
            &phone,
            "wlan0",
            "198.18.1.2/24",
            &server,
            "s_wlan",
            "198.18.1.1/24",
        );
        veth(
            &phone,
            "lte0",
            "198.18.2.2/24",
            &server,
            "s_lte",
            "198.18.2.1/24",
        );
        phone.ip(&[
            "route",
            "add",
            "default",
            "via",
            "198.18.1.1",
            "dev",
            "wlan0",
            "metric",
            "100",
        ]);
        phone.ip(&[
            "route",
            "add",
            "default",
            "via",
            "198.18.2.1",
            "dev",
            "lte0",
            "metric",
            "200",
        ]);
        Self { phone, server }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_ADMIN: u32 = 12;

/// Removes `CAP_NET_ADMIN` from the calling thread's effective and
/// permitted sets (capabilities are per thread), like an unprivileged
/// client.
pub(crate) fn drop_net_admin() {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (version 3) through the pointer.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_NET_ADMIN);
    data[0].permitted &= !(1 << CAP_NET_ADMIN);
    // SAFETY: capset reads the header and two CapData; pid 0 is this thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a new detached thread that has entered namespace `name`
/// (for servers that live as long as a test).
pub(crate) fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
}

/// Whether endpoints the client installs carry `laminar` (Linux 6.18+).
fn laminar() -> bool {
    sixpath_client::paths::netlink::laminar_supported()
}

/// An `ip mptcp endpoint show` line (or its end) of an endpoint the
/// client installed: ` laminar` before ` dev` when the kernel has it.
pub(crate) fn ours(line: &str) -> String {
    if laminar() {
        line.replacen(" dev ", " laminar dev ", 1)
    } else {
        line.to_owned()
    }
}

/// An `ip mptcp endpoint add` command the client advises: ` laminar`
/// after the flags when the kernel has it.
pub(crate) fn ours_cmd(command: &str) -> String {
    if laminar() {
        format!("{command} laminar")
    } else {
        command.to_owned()
    }
}

/// The arguments of an advised `ip …` command, to run it here: without
/// `laminar` when this `ip` (iproute2 before 6.18) does not know the flag
/// (the endpoint then lacks it, which the plan accepts).
pub(crate) fn ip_args(command: &str) -> Vec<&str> {
    let out = std::process::Command::new("ip")
        .args(["mptcp", "help"])
        .output()
        .expect("ip");
    let knows = String::from_utf8_lossy(&out.stderr).contains("laminar")
        || String::from_utf8_lossy(&out.stdout).contains("laminar");
    command
        .split_whitespace()
        .skip(1)
        .filter(|a| knows || *a != "laminar")
        .collect()
}
