//! The `sixpath-client` binary: parses the command line, sets up logging,
//! runs the client. Exit codes: 0 after a clean shutdown, 1 on a runtime
//! failure, 2 on a usage or configuration error (the message names the
//! field).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sixpath_client::client::Client;
use sixpath_client::config::{ConfigError, Options};
use sixpath_client::doctor::{self, DoctorArgs};
use sixpath_client::status::{self, StatusArgs};
use tracing_subscriber::EnvFilter;

/// sixpath-client: the local proxy for applications. Carries each
/// application connection over one Multipath TCP connection to
/// sixpath-server (SOCKS6, 0-RTT) or an RFC 8803 converter.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    options: Options,

    /// Validate the configuration and exit (0 if valid, 2 if not).
    #[arg(long)]
    check_config: bool,
}

/// Subcommands; without one the client runs.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run {
        #[command(flatten)]
        options: Box<Options>,
    },
    /// Check MPTCP sysctls, endpoints and limits, and the paths to the
    /// server; print the command that fixes each problem.
    Doctor(DoctorArgs),
    /// Print a running client's statistics (from its --admin endpoint):
    /// connections, paths with bytes per interface, fallbacks, errors.
    Status(StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match cli.command {
        Some(Command::Run { options }) => *options,
        Some(Command::Doctor(args)) => {
            return match args.with_config() {
                Ok(args) => doctor::run(&args),
                Err(e) => usage_error(&e),
            };
        }
        Some(Command::Status(args)) => return status::run(&args),
        None => cli.options,
    };
    let file = match &options.config {
        Some(path) => match Options::from_file(path) {
            Ok(o) => o,
            Err(e) => return usage_error(&e),
        },
        None => Options::default(),
    };
    let options = options.or(file);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(options.log.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let settings = match options.resolve() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    if cli.check_config {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let client = match Client::bind(settings) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(1);
            }
        };
        client.report_startup();
        client.run(shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

fn usage_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down: no new connections, draining open ones");
}
