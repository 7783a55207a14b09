//! Integration tests: the real server on loopback, real sockets, raw bytes,
//! exact replies.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod admin;
mod advertise;
mod bind;
mod caps;
mod cli;
mod convert;
mod coverage;
mod drain;
mod handshakes;
mod logins;
mod netns;
mod outbound;
mod own;
mod probe;
mod proxy_header;
mod relay_path;
mod robustness;
mod sessions;
mod state;
mod state_tls;
mod tls;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;

use sixpath_server::config::Settings;
use sixpath_server::policy::{EgressRule, RuleAction};
use sixpath_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running server and the echo target it may reach.
pub struct Harness {
    pub server: SocketAddr,
    pub echo: SocketAddr,
    /// The admin endpoint, when the settings ask for one.
    pub admin: Option<SocketAddr>,
    _users_dir: Option<TempDir>,
}

pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An echo server on loopback: writes back whatever it reads, then closes
/// after EOF.
async fn echo_server() -> SocketAddr {
    echo_on("127.0.0.1:0").await
}

/// An echo server on `addr` (e.g. a test address inside a namespace).
pub async fn echo_on(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

impl Harness {
    /// Server on 127.0.0.1:0 allowed to reach loopback; with `users`, a
    /// users file requiring authentication.
    pub async fn start(users: Option<&[(&str, &str)]>) -> Self {
        Self::start_with(users, None).await
    }

    /// As [`Harness::start`], with the listener limited to `protocols`.
    pub async fn start_with(
        users: Option<&[(&str, &str)]>,
        protocols: Option<Vec<sixpath_server::config::Protocol>>,
    ) -> Self {
        Self::start_custom(users, |s| {
            if let Some(p) = protocols {
                s.listen[0].protocols = p;
            }
        })
        .await
    }

    /// As [`Harness::start`], with `adjust` applied to the settings.
    pub async fn start_custom(
        users: Option<&[(&str, &str)]>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let echo = echo_server().await;
        let mut settings = Settings::for_listeners(&["127.0.0.1:0".parse().unwrap()]);
        adjust(&mut settings);
        // Rules set by `adjust` come after the harness's deny rule and
        // before its loopback allow rule.
        let extra = std::mem::take(&mut settings.egress_rules);
        settings.egress_rules = vec![EgressRule::parse(RuleAction::Deny, "127.0.0.1:9").unwrap()];
        settings.egress_rules.extend(extra);
        settings
            .egress_rules
            .push(EgressRule::parse(RuleAction::Allow, "127.0.0.0/8").unwrap());
        let mut dir = None;
        if let Some(users) = users {
            let d = std::env::temp_dir().join(format!(
                "sixpath-it-{}-{}",
                std::process::id(),
                echo.port()
            ));
            std::fs::create_dir_all(&d).unwrap();
            let list: Vec<_> = users
                .iter()
                .map(|(u, p)| serde_json::json!({"username": u, "password": p}))
                .collect();
            let path = d.join("users.json");
            std::fs::write(&path, serde_json::json!({ "users": list }).to_string()).unwrap();
            settings.users = Some(path);
            dir = Some(TempDir(d));
        }
        let server = Server::bind(settings).unwrap();
        let addr = server.local_addrs()[0];
        let admin = server.admin_addr();
        tokio::spawn(server.run(std::future::pending()));
        Self {
            server: addr,
            echo,
            admin,
            _users_dir: dir,
        }
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.server).await.unwrap()
    }
}

/// Reads exactly `n` bytes.
pub async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

/// Reads until EOF (with a deadline so a bug cannot hang the suite).
pub async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("server closes")
        .unwrap();
    buf
}
