//! The binary's own documentation: `--version`, completions, man pages,
//! and the config the package installs.

use std::process::{Command, Output};

fn server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sixpath-server"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn version_completions_and_man_page_come_from_the_binary() {
    let out = server(&["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    // `sixpath-server 0.1.0`, with ` (COMMIT)` when built with SIXPATH_COMMIT.
    let expected = format!("sixpath-server {}", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");

    for (shell, marker) in [
        ("bash", "complete -F _sixpath__server "),
        ("zsh", "#compdef sixpath-server"),
        ("fish", "complete -c sixpath-server"),
    ] {
        let out = server(&["completions", shell]);
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("allow-egress"), "{shell}: {script}");
    }

    let out = server(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH sixpath-server 1"), "{page}");
    assert!(
        page.contains("\\-\\-allow\\-anonymous")
            && page.contains("sixpath\\-server\\-gen\\-cert(1)")
    );
}

#[test]
fn the_packaged_config_is_valid_and_listens_on_loopback_only() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/server/server.json"
    );
    // Valid without --allow-anonymous, which a non-loopback listener would
    // need.
    let out = server(&["--config", config, "--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(config).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for listen in json["listen"].as_array().unwrap() {
        let addr: std::net::SocketAddr = listen.as_str().unwrap().parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
    }
}

#[test]
fn malformed_state_url_and_advertise_address_exit_2_naming_the_flag() {
    for (flag, value) in [
        ("--state", "localhost:6379"),
        ("--state", "redis://"),
        ("--advertise", "0.0.0.0"),
        ("--advertise", "not-an-ip"),
    ] {
        let out = server(&["--listen", "127.0.0.1:0", flag, value, "--check-config"]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag.trim_start_matches('-')),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn unusable_state_tls_files_exit_2_naming_the_flag() {
    let missing = "/nonexistent/sixpath-state-ca.pem";
    let tls = "rediss://127.0.0.1:6380/0";
    for (flag, args) in [
        ("state-ca", vec!["--state", tls, "--state-ca", missing]),
        ("state-ca", vec!["--state", tls, "--state-ca", "/dev/null"]),
        ("state-key", vec!["--state", tls, "--state-cert", missing]),
        (
            "state-cert",
            vec![
                "--state",
                tls,
                "--state-cert",
                missing,
                "--state-key",
                missing,
            ],
        ),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0", "--check-config"];
        all.extend(&args);
        let out = server(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}
