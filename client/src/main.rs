//! The `sixpath-client` binary: parses the command line and runs the
//! client, `doctor` or `status`, or prints its completions or man page.
//! Start-up (config file, flags, logging), signals and exit codes are
//! `sixpath_service`'s, as for the server: 0 after a clean shutdown, 1 on a
//! runtime failure, 2 on a usage or configuration error (the message names
//! the field).

use std::process::ExitCode;

use clap::Subcommand;
use sixpath_client::client::Client;
use sixpath_client::config::Options;
use sixpath_client::doctor::{self, DoctorArgs};
use sixpath_client::status::{self, StatusArgs};
use sixpath_service::cli::{self, CommandLine};
use sixpath_service::docs::Docs;
use sixpath_service::exit::{self, Failure};
use sixpath_service::signal;

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
    /// `completions SHELL` and `man`.
    #[command(flatten)]
    Docs(Docs),
}

fn main() -> ExitCode {
    let program = sixpath_service::program!();
    let cli = CommandLine::<Options, Command>::parse_for(&program);
    let options = match cli.command {
        Some(Command::Run { options }) => *options,
        Some(Command::Doctor(args)) => {
            return match args.with_config() {
                Ok(args) => doctor::run(&args),
                Err(e) => Failure::from(e).exit(),
            };
        }
        Some(Command::Status(args)) => return status::run(&args),
        Some(Command::Docs(docs)) => {
            return docs.run(CommandLine::<Options, Command>::command_for(&program));
        }
        None => cli.options,
    };
    let settings = match cli::configure(options, Options::resolve) {
        Ok(s) => s,
        Err(e) => return Failure::from(e).exit(),
    };
    if cli.check_config {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    exit::block_on(async move {
        let client = Client::bind(settings).map_err(Failure::runtime)?;
        client.report_startup();
        client.run(signal::shutdown()).await;
        Ok(())
    })
}
