//! The `sixpath-server` binary: parses the command line, sets up logging,
//! runs the server. Exit codes: 0 after a clean shutdown, 1 on a runtime
//! failure, 2 on a usage or configuration error (the message names the
//! field).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sixpath_server::config::Options;
use sixpath_server::server::{Server, StartError};
use tracing_subscriber::EnvFilter;

/// sixpath-server: the operator-side Multipath TCP proxy. Accepts SOCKS6,
/// RFC 8803 Convert and SOCKS5/4a clients and relays to ordinary TCP
/// servers.
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

/// Tools next to the server itself (run without one to serve).
#[derive(Debug, Subcommand)]
enum Command {
    /// Write a self-signed certificate and key for --tls-cert/--tls-key
    /// and print the SHA-256 fingerprint clients pin.
    GenCert(GenCert),
}

/// `gen-cert` arguments.
#[derive(Debug, clap::Args)]
struct GenCert {
    /// Where to write the certificate (PEM). Not overwritten if it exists.
    #[arg(long, value_name = "FILE")]
    out_cert: PathBuf,

    /// Where to write the private key (PEM, file mode 0600). Not
    /// overwritten if it exists.
    #[arg(long, value_name = "FILE")]
    out_key: PathBuf,

    /// A DNS name or IP address the certificate is for (for clients that
    /// verify names against a CA instead of pinning). Repeatable; default
    /// `localhost`.
    #[arg(long = "name", value_name = "DNS_OR_IP")]
    names: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::GenCert(args)) = &cli.command {
        return gen_cert(args);
    }
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
                hup.reload_tls();
            }
        });
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// `gen-cert`: writes the key (0600) and the certificate, refusing to
/// overwrite either, then prints the fingerprint alone on stdout.
fn gen_cert(args: &GenCert) -> ExitCode {
    use sixpath_server::config::ConfigError;
    for (field, path) in [("out-cert", &args.out_cert), ("out-key", &args.out_key)] {
        if path.exists() {
            return usage_error(&ConfigError::new(
                field,
                format!("{} exists; not overwriting it", path.display()),
            ));
        }
    }
    let (cert, key, fp) = match sixpath_net::tls::generate_self_signed(&args.names) {
        Ok(g) => g,
        Err(e) => return usage_error(&ConfigError::new("name", e.to_string())),
    };
    if let Err(e) = write_new(&args.out_key, key.as_bytes(), 0o600) {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    if let Err(e) = write_new(&args.out_cert, cert.as_bytes(), 0o644) {
        // No key without its certificate.
        let _ = std::fs::remove_file(&args.out_key);
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    let names = if args.names.is_empty() {
        "localhost".to_owned()
    } else {
        args.names.join(", ")
    };
    eprintln!(
        "wrote certificate {} and key {} (mode 0600) for {names}; \
         clients pin this SHA-256 fingerprint:",
        args.out_cert.display(),
        args.out_key.display(),
    );
    println!("{}", sixpath_net::tls::format_fingerprint(&fp));
    ExitCode::SUCCESS
}

/// Creates `path` (which must not exist) with `mode` and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
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
