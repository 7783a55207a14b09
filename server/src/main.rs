//! The `sixpath-server` binary: parses the command line and runs the
//! server or `gen-cert`, or prints its completions or man page. Start-up
//! (config file, flags, logging), signals and exit codes are
//! `sixpath_service`'s, as for the client: 0 after a clean shutdown, 1 on a
//! runtime failure, 2 on a usage or configuration error (the message names
//! the field).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use sixpath_server::config::{ConfigError, Options};
use sixpath_server::server::{Server, StartError};
use sixpath_service::cli::{self, CommandLine};
use sixpath_service::docs::Docs;
use sixpath_service::exit::{self, Failure};
use sixpath_service::signal;

/// Tools next to the server itself (run without one to serve).
#[derive(Debug, Subcommand)]
enum Command {
    /// Write a self-signed certificate and key for --tls-cert/--tls-key
    /// and print the SHA-256 fingerprint clients pin.
    GenCert(GenCert),
    /// `completions SHELL` and `man`.
    #[command(flatten)]
    Docs(Docs),
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
    let program = sixpath_service::program!();
    let cli = CommandLine::<Options, Command>::parse_for(&program);
    match cli.command {
        Some(Command::GenCert(args)) => exit::code(gen_cert(&args)),
        Some(Command::Docs(docs)) => {
            docs.run(CommandLine::<Options, Command>::command_for(&program))
        }
        None => serve(cli.options, cli.check_config),
    }
}

/// Serves until SIGTERM or Ctrl-C (SIGHUP reloads the users file, the TLS
/// certificate and the host's own addresses); with `check_only`, validates
/// the configuration and exits.
fn serve(options: Options, check_only: bool) -> ExitCode {
    let settings = match cli::configure(options, Options::resolve) {
        Ok(s) => s,
        Err(e) => return Failure::from(e).exit(),
    };
    if check_only {
        // The users file is only read when the server starts: check it too.
        if let Some(path) = &settings.users
            && let Err(e) = sixpath_server::users::Users::load(path)
        {
            return Failure::from(e).exit();
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

    exit::block_on(async move {
        let server = Server::bind(settings).map_err(|e| match e {
            StartError::Config(e) => Failure::Config(e),
            e => Failure::runtime(e),
        })?;
        server.report_startup();
        let hup = server.reload_handle();
        signal::on_hangup(move || {
            hup.reload_users();
            hup.reload_tls();
            hup.reload_own_addresses();
        });
        server.run(signal::shutdown()).await;
        Ok(())
    })
}

/// `gen-cert`: writes the key (0600) and the certificate, refusing to
/// overwrite either, then prints the fingerprint alone on stdout.
fn gen_cert(args: &GenCert) -> Result<(), Failure> {
    for (field, path) in [("out-cert", &args.out_cert), ("out-key", &args.out_key)] {
        if path.exists() {
            return Err(ConfigError::new(
                field,
                format!("{} exists; not overwriting it", path.display()),
            )
            .into());
        }
    }
    let (cert, key, fp) = sixpath_net::tls::generate_self_signed(&args.names)
        .map_err(|e| ConfigError::new("name", e.to_string()))?;
    write_new(&args.out_key, key.as_bytes(), 0o600).map_err(Failure::runtime)?;
    if let Err(e) = write_new(&args.out_cert, cert.as_bytes(), 0o644) {
        // No key without its certificate.
        let _ = std::fs::remove_file(&args.out_key);
        return Err(Failure::runtime(e));
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
    Ok(())
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
