//! `sixpath-client status`: asks a running client's admin endpoint for
//! `/stats` and prints a summary (or the raw JSON). Exit codes: 0 printed,
//! 1 no client answered (or its answer was not statistics), 2 bad
//! arguments or config file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{ConfigError, DEFAULT_ADMIN, Options};
use crate::stats::Snapshot;

/// How long status waits for the client.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/stats` answer read.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// `sixpath-client status` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatusArgs {
    /// The client's admin endpoint as ADDR:PORT. Default: `admin` from
    /// --config, else 127.0.0.1:1090.
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin: Option<String>,

    /// The client's JSON config file, to find its `admin` address.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the raw `/stats` JSON.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// The admin address to ask.
    pub fn address(&self) -> Result<SocketAddr, ConfigError> {
        let from_file = match &self.config {
            Some(p) => Options::from_file(p)?.admin,
            None => None,
        };
        let s = self
            .admin
            .clone()
            .or(from_file)
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
        s.parse().map_err(|_| {
            ConfigError::new(
                "admin",
                format!("{s:?} is not ADDR:PORT (e.g. 127.0.0.1:1090)"),
            )
        })
    }
}

/// GETs `/stats` from `addr`: the body of a 200 answer.
pub fn fetch(addr: SocketAddr) -> Result<String, String> {
    let not_running = |e: &std::io::Error| {
        format!(
            "no sixpath-client admin endpoint at {addr} ({e}): is the client running with --admin {addr}?"
        )
    };
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| not_running(&e))?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    s.write_all(
        format!("GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| not_running(&e))?;
    let mut raw = Vec::new();
    s.take(MAX_BODY)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!(
            "{addr} answered {}: not a sixpath-client admin endpoint?",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_owned())
}

/// Runs `status`.
pub fn run(args: &StatusArgs) -> ExitCode {
    let addr = match args.address() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match fetch(addr) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        print!("{body}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<Snapshot>(&body) {
        Ok(snap) => {
            print!("{}", snap.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {addr} did not answer with sixpath-client statistics: {e}");
            ExitCode::from(1)
        }
    }
}
