//! The testbed driver: `scripts/testbed up` with a unique name, `down` on
//! drop (also when the test panics), helpers to act on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The phone's address on Wi-Fi.
pub const PHONE_WLAN: &str = "198.18.1.2";
/// The phone's address on LTE.
pub const PHONE_LTE: &str = "198.18.2.2";
/// `sixpath-server`'s address in the operator namespace (its port is the
/// kernel's pick: [`Testbed::server`]).
pub const SERVER: &str = "198.18.0.1";
/// The origin host in the internet namespace.
pub const ORIGIN: &str = "198.18.9.2";

/// Tests share two cores and measure throughput: one testbed at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether the testbed can run here; prints a loud SKIP line if not.
pub fn can_run(test: &str) -> bool {
    // SAFETY-free check: the effective uid via the `id` program is not
    // needed; /proc/self/status has it.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        println!(
            "\n********************************************************************\n\
             SKIP {test}: the multipath testbed needs root (network namespaces,\n\
             qdiscs, iptables). Run scripts/test as root to run it.\n\
             ********************************************************************\n"
        );
    }
    root
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("interop/ has a parent")
        .to_path_buf()
}

/// `target/<profile>/NAME`, found next to this test executable
/// (`target/<profile>/deps/testbed-*`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --bins` first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// One namespace of the testbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// The phone (wlan0, lte0).
    Phone,
    /// The operator network (sixpath-server, the link emulator).
    Operator,
    /// The internet (origin servers).
    Internet,
}

/// A running testbed; `down` on drop.
pub struct Testbed {
    name: String,
    _turn: MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    repo_root().join("scripts/testbed")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Testbed {
    /// `scripts/testbed up ARGS...` under a fresh name; the server (unless
    /// `--no-server`) listens on a port the kernel picks.
    pub fn up(args: &[&str]) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = format!(
            "sxt{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let linkem = PathBuf::from(env!("CARGO_BIN_EXE_sixpath-linkem"));
        let mut cmd = Command::new(script());
        cmd.arg("up")
            .args(["--server-port", "0"])
            .args(args)
            .env("SIXPATH_TB", &name)
            .env("SIXPATH_LINKEM", &linkem);
        if !args.contains(&"--no-server") {
            cmd.env("SIXPATH_SERVER", binary("sixpath-server"));
        }
        // Constructed before `up` so a failed `up` is cleaned too.
        let bed = Self { name, _turn: turn };
        run(&mut cmd);
        bed
    }

    /// The namespace's name.
    pub fn ns(&self, ns: Ns) -> String {
        let part = match ns {
            Ns::Phone => "phone",
            Ns::Operator => "operator",
            Ns::Internet => "internet",
        };
        format!("{}-{part}", self.name)
    }

    fn script(&self, args: &[&str]) -> Output {
        run(Command::new(script())
            .args(args)
            .env("SIXPATH_TB", &self.name))
    }

    /// `scripts/testbed link wlan|lte up|down`.
    pub fn link(&self, which: &str, up: bool) {
        self.script(&["link", which, if up { "up" } else { "down" }]);
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(&self, ns: Ns, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(ns), program]);
        c
    }

    /// Received bytes of a phone interface (`ip -s -j link`).
    pub fn phone_rx_bytes(&self, dev: &str) -> u64 {
        self.phone_stat(dev, "rx")
    }

    /// Sent bytes of a phone interface.
    pub fn phone_tx_bytes(&self, dev: &str) -> u64 {
        self.phone_stat(dev, "tx")
    }

    fn phone_stat(&self, dev: &str, dir: &str) -> u64 {
        let out = run(Command::new("ip").args([
            "-n",
            &self.ns(Ns::Phone),
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            dev,
        ]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        v[0]["stats64"][dir]["bytes"]
            .as_u64()
            .expect("stats64 bytes")
    }

    /// `scripts/testbed blackhole wlan|lte on|off`: the link stays up and
    /// drops every packet, both ways.
    pub fn blackhole(&self, which: &str, on: bool) {
        self.script(&["blackhole", which, if on { "on" } else { "off" }]);
    }

    /// `scripts/testbed backup on|off`.
    pub fn backup(&self, on: bool) {
        self.script(&["backup", if on { "on" } else { "off" }]);
    }

    /// Packets dropped so far by the testbed's random-loss rules (both
    /// directions, both links).
    pub fn loss_drops(&self) -> u64 {
        [Ns::Operator, Ns::Phone]
            .iter()
            .map(|&ns| {
                let out = run(self.command(ns, "iptables").args([
                    "-t",
                    "mangle",
                    "-L",
                    "PREROUTING",
                    "-v",
                    "-n",
                    "-x",
                ]));
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.contains("DROP") && l.contains("statistic"))
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    /// A pid the testbed recorded (`LINKEM_OPERATOR_PID`, `LINKEM_PHONE_PID`,
    /// `SERVER_PID`).
    pub fn pid(&self, key: &str) -> Option<u32> {
        self.state(key)
    }

    /// The testbed's `sixpath-server`: its address and the port it got from
    /// the kernel (`SERVER_PORT` in the state file).
    pub fn server(&self) -> SocketAddr {
        let port: u16 = self
            .state("SERVER_PORT")
            .expect("SERVER_PORT in the state file (a testbed up without --no-server)");
        SocketAddr::new(SERVER.parse().expect("server address"), port)
    }

    /// A `KEY=VALUE` of the testbed's state file.
    fn state<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        let state =
            std::fs::read_to_string(format!("/run/sixpath-testbed/{}.env", self.name)).ok()?;
        state
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }

    /// The log of a testbed process (`linkem-operator`, `linkem-phone`,
    /// `server`, or one a test started there such as `client`), for
    /// failures.
    pub fn log(&self, which: &str) -> String {
        std::fs::read_to_string(self.log_path(which)).unwrap_or_default()
    }

    /// Where the log of `which` lives: the testbed's state directory, which
    /// `down` removes.
    pub fn log_path(&self, which: &str) -> PathBuf {
        PathBuf::from(format!("/run/sixpath-testbed/{}/{which}.log", self.name))
    }
}

/// Waits (15 s at most) until the log at `log` of `child`, a sixpath
/// daemon started with port 0, has a line containing `message` with an
/// `addr=` field (`listening`, `admin endpoint`); returns that address, the
/// port the kernel gave it. Fails at once if `child` exits first.
pub fn logged_addr(log: &Path, message: &str, child: &mut Child) -> SocketAddr {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text
            .lines()
            .filter(|l| l.contains(message))
            .find_map(|l| l.split(" addr=").nth(1)?.split(' ').next()?.parse().ok());
        if let Some(addr) = addr {
            return addr;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}) before logging `{message}` with its address:\n{text}",
                log.display()
            );
        }
        assert!(
            std::time::Instant::now() < until,
            "no `{message}` line with addr= in {} after 15 s (RUST_LOG must let info lines through):\n{text}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether something listens on TCP `port` in namespace `ns`.
fn listening(ns: &str, port: u16) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Hltn"])
        .arg(format!("sport = :{port}"))
        .output()
        .expect("ss");
    !out.stdout.is_empty()
}

/// Waits (15 s at most) until something listens on TCP `port` in `ns`,
/// where `child` (its log at `log`, if it has one) was started to listen;
/// fails at once if `child` exits first.
pub fn wait_listening(ns: &str, port: u16, child: &mut Child, log: Option<&Path>) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let log = || {
        log.and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    while !listening(ns, port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{ns}: process {} exited ({status}) before listening on port {port}:\n{}",
                child.id(),
                log()
            );
        }
        assert!(
            std::time::Instant::now() < until,
            "{ns}: nothing listens on port {port} after 15 s:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let out = Command::new(script())
            .arg("down")
            .env("SIXPATH_TB", &self.name)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "testbed down {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("testbed down {}: {e}", self.name),
        }
    }
}
