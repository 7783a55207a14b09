//! The binary's contract: `--help` documents every flag, bad configuration
//! exits 2 naming the field, `--check-config` validates a config file.

use std::path::PathBuf;
use std::process::{Command, Output};

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sixpath-client"))
        .args(args)
        .output()
        .unwrap()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sixpath-client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn help_documents_every_flag() {
    let out = client(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--server",
        "--listen",
        "--http-listen",
        "--transparent",
        "--user",
        "--password-file",
        "--local-user",
        "--local-password-file",
        "--max-failed-logins",
        "--failed-login-window",
        "--allow-anonymous",
        "--upstream",
        "--early-data-wait",
        "--no-early-reply",
        "--connect-timeout",
        "--handshake-timeout",
        "--idle-timeout",
        "--drain-timeout",
        "--max-connections",
        "--no-mptcp",
        "--no-tfo",
        "--socks6-domain-padding",
        "--config",
        "--log",
        "--check-config",
        "--path",
        "--path-policy",
        "--tls",
        "--tls-fingerprint",
        "--tls-ca",
        "--tls-server-name",
        "--admin",
        "--admin-allow-remote",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_configuration_exits_2_naming_the_field() {
    for (args, field) in [
        (&["--listen", "127.0.0.1:0"][..], "server:"),
        (&["--server", "nowhere"][..], "server:"),
        (
            &["--server", "198.18.0.1:1", "--upstream", "socks7"][..],
            "upstream:",
        ),
        (
            &["--server", "198.18.0.1:1", "--listen", "0.0.0.0:1080"][..],
            "listen:",
        ),
        (
            &["--server", "198.18.0.1:1", "--early-data-wait", "9999"][..],
            "early-data-wait:",
        ),
        (
            &["--server", "198.18.0.1:1", "--user", "alice"][..],
            "password-file:",
        ),
        (
            &["--server", "198.18.0.1:1", "--tls"][..],
            "tls-fingerprint:",
        ),
        (
            &[
                "--server",
                "198.18.0.1:1",
                "--tls",
                "--tls-fingerprint",
                "sha256:00",
            ][..],
            "tls-fingerprint:",
        ),
        (
            &[
                "--server",
                "198.18.0.1:1",
                "--tls",
                "--tls-ca",
                "/nonexistent.pem",
            ][..],
            "tls-ca:",
        ),
        (
            &["--server", "198.18.0.1:1", "--admin", "0.0.0.0:1090"][..],
            "admin:",
        ),
        (
            &["--server", "198.18.0.1:1", "--path-policy", "single"][..],
            "path-policy:",
        ),
    ] {
        let out = client(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{args:?}: {err}");
    }
}

#[test]
fn config_file_sets_every_flag_and_typos_exit_2() {
    let dir = TempDir::new("cfg");
    let pw = dir.0.join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    // An address nothing listens on, from the OS (`status` must name it).
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = dir.0.join("good.json");
    std::fs::write(
        &good,
        format!(
            r#"{{"server": "proxy.example.net:1080", "listen": ["127.0.0.1:0"],
                "http-listen": ["127.0.0.2:0"], "transparent": ["127.0.0.3:0"],
                "user": "alice", "password-file": {pw:?},
                "local-user": "bob", "local-password-file": {pw:?},
                "max-failed-logins": 5, "failed-login-window": 120,
                "allow-anonymous": false, "upstream": "socks6", "early-data-wait": 10,
                "no-early-reply": false, "connect-timeout": 5, "handshake-timeout": 10,
                "idle-timeout": 60, "max-connections": 100, "no-mptcp": false, "no-tfo": false, "log": "debug",
                "path": ["wlan0", "lte0=backup"], "path-policy": "backup",
                "tls": true, "tls-fingerprint": ["sha256:{fp}"],
                "tls-server-name": "proxy.example.net",
                "admin": "{admin}", "admin-allow-remote": false}}"#,
            fp = "ab".repeat(32)
        ),
    )
    .unwrap();
    let out = client(&["--config", good.to_str().unwrap(), "--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let typo = dir.0.join("typo.json");
    std::fs::write(
        &typo,
        r#"{"server": "198.18.0.1:1", "no-early-replies": true}"#,
    )
    .unwrap();
    let out = client(&["--config", typo.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config:") && err.contains("no-early-replies"),
        "{err}"
    );
    let bad_path = dir.0.join("bad-path.json");
    std::fs::write(
        &bad_path,
        r#"{"server": "198.18.0.1:1", "path": ["wlan0=spare"]}"#,
    )
    .unwrap();
    let out = client(&["--config", bad_path.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wlan0=spare"), "{err}");
    // doctor and status read the same file.
    let out = client(&["doctor", "--config", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let out = client(&["status", "--config", good.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&admin.to_string()),
        "status asks the admin address of the file"
    );
}

#[test]
fn version_completions_and_man_pages_come_from_the_binary() {
    let out = client(&["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    // `sixpath-client 0.1.0`, with ` (COMMIT)` when built with SIXPATH_COMMIT.
    let expected = format!("sixpath-client {}", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");

    let out = client(&["completions", "bash"]);
    assert!(out.status.success());
    let bash = String::from_utf8(out.stdout).unwrap();
    assert!(bash.contains("complete -F _sixpath__client "), "{bash}");
    assert!(bash.contains("--path-policy") && bash.contains("doctor"));

    let out = client(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH sixpath-client 1"), "{page}");
    assert!(
        page.contains("\\-\\-password\\-file") && page.contains("sixpath\\-client\\-doctor(1)")
    );

    let dir = TempDir::new("man");
    let out = client(&["man", "--out-dir", dir.0.to_str().unwrap()]);
    assert!(out.status.success());
    for page in [
        "sixpath-client.1",
        "sixpath-client-doctor.1",
        "sixpath-client-status.1",
    ] {
        assert!(dir.0.join(page).is_file(), "{page} not written");
    }
}

#[test]
fn the_packaged_example_config_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/client/client-example.json"
    );
    let out = client(&["--config", example, "--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
