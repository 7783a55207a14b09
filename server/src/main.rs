//! The `sixpath-server` binary: parses the command line, sets up logging,
//! runs the server. Exit codes: 0 after a clean shutdown, 1 on a runtime
//! failure, 2 on a usage or configuration error (the message names the
//! field).

use std::process::ExitCode;

use clap::Parser;
use sixpath_server::config::Options;
use sixpath_server::server::{Server, StartError};
use tracing_subscriber::EnvFilter;

/// sixpath-server: the operator-side Multipath TCP proxy. Accepts SOCKS6,
/// RFC 8803 Convert and SOCKS5/4a clients and relays to ordinary TCP
/// servers.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    options: Options,

    /// Validate the configuration and exit (0 if valid, 2 if not).
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match &cli.options.config {
        Some(path) => match Options::from_file(path) {
            Ok(o) => o,
            Err(e) => return usage_error(&e),
        },
        None => Options::default(),
    };
    let options = cli.options.or(file);
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
        if let Some(path) = &settings.users
            && let Err(e) = sixpath_server::users::Users::load(path)
        {
            return usage_error(&e);
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }

    // One descriptor per client and per outbound connection: use all the
    // hard limit allows.
    match sixpath_server::sys::raise_nofile_limit() {
        Ok((soft, _)) => tracing::info!(limit = soft, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
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
        let server = match Server::bind(settings) {
            Ok(s) => s,
            Err(StartError::Config(e)) => return usage_error(&e),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(1);
            }
        };
        server.report_startup();
        let hup = server.reload_handle();
        tokio::spawn(async move {
            let Ok(mut sighup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while sighup.recv().await.is_some() {
                hup.reload_users();
            }
        });
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

fn usage_error(e: &sixpath_server::config::ConfigError) -> ExitCode {
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
