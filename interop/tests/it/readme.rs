//! The README's example configuration files pass `--check-config`, so
//! the README cannot drift from what the binaries accept.
//!
//! Every JSON code block of README.md is taken: a users file (`"users"` is a
//! list), a client config (it has `"server"`) or a server config (it has
//! `"listen"`). The files a config names (users file, TLS pair, secret,
//! password files) are made here and the config is pointed at them: their
//! places are the reader's host's business, their contents are not — the
//! users file is the README's own example.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{TempDir, certificate};

/// `target/<profile>/NAME`, next to this test executable
/// (`target/<profile>/deps/it-*`); `cargo build --bins` makes it.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// The JSON code blocks of `text`, with the line each starts on.
fn json_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim() == "```json" => current = Some((n + 1, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

/// Runs `bin --config FILE --check-config`; panics with its output unless
/// it exits 0.
fn check_config(bin: &str, file: &Path, what: &str) {
    let out = Command::new(binary(bin))
        .arg("--config")
        .arg(file)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {bin} --check-config exited {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_example_configs_pass_check_config() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let (tls_dir, cert, key, _) = certificate("readme");
    let dir = TempDir(tls_dir.0.join("files"));
    std::fs::create_dir_all(&dir.0).unwrap();

    let mut users = Vec::new();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for (line, body) in json_blocks(&text) {
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("README.md:{line}: not JSON: {e}\n{body}"));
        if v["users"].is_array() {
            users.push((line, v));
        } else if v.get("server").is_some() {
            clients.push((line, v));
        } else if v.get("listen").is_some() {
            servers.push((line, v));
        } else {
            panic!("README.md:{line}: a JSON block that is no users file or config: {body}");
        }
    }
    assert!(
        !users.is_empty() && servers.len() >= 2 && !clients.is_empty(),
        "README.md: expected a users file, two server configs and a client config; found {}, {} and {}",
        users.len(),
        servers.len(),
        clients.len()
    );

    // Each users file is valid for the server; the first is the one the
    // configs get.
    let mut users_file = None;
    for (i, (line, v)) in users.iter().enumerate() {
        let path = dir.0.join(format!("users-{i}.json"));
        std::fs::write(&path, v.to_string()).unwrap();
        let probe = dir.0.join(format!("users-{i}-server.json"));
        std::fs::write(
            &probe,
            serde_json::json!({"listen": ["127.0.0.1:0"], "users": path}).to_string(),
        )
        .unwrap();
        check_config(
            "sixpath-server",
            &probe,
            &format!("README.md:{line}: users file"),
        );
        users_file.get_or_insert(path);
    }
    let secret = dir.0.join("secret");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let password = dir.0.join("password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();

    let files = [
        ("users", users_file.expect("a users file")),
        ("tls-cert", cert.clone()),
        ("tls-key", key),
        ("secret-file", secret),
        ("password-file", password.clone()),
        ("local-password-file", password),
        ("tls-ca", cert),
    ];
    for (bin, configs) in [("sixpath-server", &servers), ("sixpath-client", &clients)] {
        for (line, v) in configs {
            let mut v = v.clone();
            for (field, path) in &files {
                if let Some(slot) = v.get_mut(*field) {
                    *slot = Value::String(path.display().to_string());
                }
            }
            let file = dir.0.join(format!("readme-{line}.json"));
            std::fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
            check_config(bin, &file, &format!("README.md:{line}"));
        }
    }
}

#[test]
fn json_blocks_are_found_with_their_line() {
    let text = "a\n```json\n{\"listen\": []}\n```\n```sh\nx\n```\n```json\n{}\n```\n";
    assert_eq!(
        json_blocks(text),
        [(2, "{\"listen\": []}\n".to_owned()), (8, "{}\n".to_owned())]
    );
}
