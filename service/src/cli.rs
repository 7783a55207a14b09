//! The command line every sixpath daemon has, and the order in which it
//! starts.
//!
//! `sixpath-server` and `sixpath-client` are both run as
//! `NAME [OPTIONS] [--check-config]` or `NAME SUBCOMMAND ...`
//! ([`CommandLine`]); their options both carry `--config`, `--log` and
//! `--log-format` ([`ServiceArgs`]); and both start the same way
//! ([`configure`]): the config file is read, the flags override it, logging
//! is set up as the result says, and the options are validated into the
//! daemon's settings.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::{self, ConfigError, Merge};
use crate::logging::{self, LogFormat};

/// A daemon's command line: serve with options `O` (optionally only
/// checking them), or run one of the tools `C`.
#[derive(Debug, Parser)]
#[command(long_about = None, args_conflicts_with_subcommands = true)]
pub struct CommandLine<O: Args, C: Subcommand> {
    /// A tool to run instead of the daemon.
    #[command(subcommand)]
    pub command: Option<C>,

    /// The daemon's options.
    #[command(flatten)]
    pub options: O,

    /// Validate the configuration and exit (0 if valid, 2 if not).
    #[arg(long)]
    pub check_config: bool,
}

impl<O: Args, C: Subcommand> CommandLine<O, C> {
    /// Parses the process arguments for `program`. A usage error exits 2
    /// with clap's message, as `--help` and `--version` exit 0.
    pub fn parse_for(program: &Program) -> Self {
        let mut command = Self::command_for(program);
        let mut matches = command.get_matches_mut();
        Self::from_arg_matches_mut(&mut matches)
            .map_err(|e| e.format(&mut command))
            .unwrap_or_else(|e| e.exit())
    }

    /// The clap command of `program`: its name, `--version` (with the
    /// commit when the build knew it) and its description as the summary
    /// in `--help`. What the completions and man pages are made from.
    pub fn command_for(program: &Program) -> clap::Command {
        Self::command()
            .name(program.name)
            .version(program.version())
            .about(program.about)
    }
}

/// What a binary says about itself: [`program!`](crate::program) fills it
/// in from the binary's own package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// The package name, which is the binary's name.
    pub name: &'static str,
    /// The package version.
    pub version: &'static str,
    /// The commit built from (`git rev-parse --short HEAD`), when the
    /// build was given it in `SIXPATH_COMMIT`; `None` or empty otherwise.
    pub commit: Option<&'static str>,
    /// The package description.
    pub about: &'static str,
}

impl Program {
    /// The version `--version` prints: `0.1.0 (abc1234)`, or `0.1.0`
    /// without a commit.
    pub fn version(&self) -> &'static str {
        match self.commit.map(str::trim) {
            Some(commit) if !commit.is_empty() => {
                // Built once per process, for clap, which keeps it until
                // the process exits anyway.
                String::leak(format!("{} ({commit})", self.version))
            }
            _ => self.version,
        }
    }
}

/// The [`Program`] of the binary this is expanded in: its package name,
/// version and description, and the commit from the `SIXPATH_COMMIT`
/// variable at build time (`scripts/package` sets it). The variable is
/// read in the binary's own crate, so a new commit rebuilds only the
/// binary's `main`, not the libraries below it, as a build script watching
/// `.git` would.
#[macro_export]
macro_rules! program {
    () => {
        $crate::cli::Program {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("SIXPATH_COMMIT"),
            about: env!("CARGO_PKG_DESCRIPTION"),
        }
    };
}

/// The flags every daemon takes besides its own: its config file, and how
/// it logs. Flattened into the daemon's options (command line and file).
#[derive(Debug, Default, Clone, PartialEq, Eq, Args, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceArgs {
    /// JSON file with the same settings as these flags (kebab-case names);
    /// flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Log filter (error, warn, info, debug, trace, or a tracing
    /// directive such as `info,sixpath_net=debug`). Overridden by
    /// `RUST_LOG`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// Log line format: `text` (the default) or `json` (one JSON object
    /// per line, with `timestamp`, `level`, `target`, `message` and the
    /// event's fields).
    // The sentence above lists the values; listing them again with their
    // help would switch all of `--help` to its long layout.
    #[arg(long, value_enum, value_name = "FORMAT", hide_possible_values = true)]
    pub log_format: Option<LogFormat>,
}

crate::merge_fields!(ServiceArgs {
    config,
    log,
    log_format
});

/// A daemon's settings from its command-line `options`: reads the
/// `--config` file if one is given, lets the flags override it, sets up
/// logging as the result says, then validates with `resolve`. Errors are
/// configuration errors (exit 2); the file's come before logging is set
/// up.
pub fn configure<O, S>(
    options: O,
    resolve: impl FnOnce(O) -> Result<S, ConfigError>,
) -> Result<S, ConfigError>
where
    O: Args + DeserializeOwned + Default + Merge + AsRef<ServiceArgs>,
{
    let file = match &options.as_ref().config {
        Some(path) => config::from_file::<O>(path)?,
        None => O::default(),
    };
    let options = options.or(file);
    let service = options.as_ref();
    logging::init(
        service.log.as_deref(),
        service.log_format.unwrap_or_default(),
    );
    resolve(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Args, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Options {
        #[arg(long)]
        #[serde(default)]
        listen: Vec<String>,
        #[command(flatten)]
        #[serde(flatten)]
        service: ServiceArgs,
    }

    #[derive(Debug, Subcommand)]
    enum Tool {
        /// A tool.
        Check,
    }

    fn parse(args: &[&str]) -> Result<CommandLine<Options, Tool>, clap::Error> {
        CommandLine::try_parse_from(args)
    }

    #[test]
    fn service_flags_sit_beside_the_daemons_own() {
        let cli = parse(&[
            "d",
            "--listen",
            "127.0.0.1:1",
            "--log",
            "debug",
            "--log-format",
            "json",
            "--config",
            "/etc/d.json",
            "--check-config",
        ])
        .expect("valid");
        assert!(cli.check_config && cli.command.is_none());
        assert_eq!(cli.options.listen, ["127.0.0.1:1"]);
        let s = &cli.options.service;
        assert_eq!(s.log.as_deref(), Some("debug"));
        assert_eq!(s.log_format, Some(LogFormat::Json));
        assert_eq!(s.config, Some(PathBuf::from("/etc/d.json")));
        assert!(parse(&["d", "--log-format", "xml"]).is_err());
        assert!(matches!(
            parse(&["d", "check"]).expect("tool").command,
            Some(Tool::Check)
        ));
    }

    #[test]
    fn version_carries_the_commit_when_the_build_knew_it() {
        let program = Program {
            name: "d",
            version: "0.1.0",
            commit: Some("abc1234"),
            about: "a daemon",
        };
        assert_eq!(program.version(), "0.1.0 (abc1234)");
        let e = CommandLine::<Options, Tool>::command_for(&program)
            .try_get_matches_from(["d", "--version"])
            .expect_err("--version stops parsing");
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(e.to_string(), "d 0.1.0 (abc1234)\n");
        for commit in [None, Some(""), Some(" ")] {
            assert_eq!(Program { commit, ..program }.version(), "0.1.0");
        }
    }

    #[test]
    fn the_file_sets_log_and_log_format_but_not_config() {
        let o: Options =
            serde_json::from_str(r#"{"listen": [], "log": "warn", "log-format": "text"}"#)
                .expect("valid");
        assert_eq!(o.service.log.as_deref(), Some("warn"));
        assert_eq!(o.service.log_format, Some(LogFormat::Text));
        assert_eq!(
            config::file_names::<Options>(),
            ["listen", "log", "log-format"]
        );
        assert!(serde_json::from_str::<Options>(r#"{"config": "x"}"#).is_err());
    }
}
