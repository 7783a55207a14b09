//! The `sixpath-client` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sixpath_client::doctor::{self, DoctorArgs};

/// sixpath-client: the device-side Multipath TCP proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check MPTCP sysctls, endpoints and limits, and the paths to the
    /// server; print the command that fixes each problem.
    Doctor(DoctorArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Some(Command::Doctor(args)) => doctor::run(&args),
        None => {
            eprintln!(
                "sixpath-client {}: the proxy is not built yet in this release; try `doctor`",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
