//! sixpath-service: what a sixpath daemon binary needs around its own
//! logic. `sixpath-server` and `sixpath-client` start, read their
//! configuration, log, stop and refuse password guessers the same way; that
//! way lives here, once, so a typo in a config file or a `SIGTERM` means the
//! same to both.
//!
//! It is neither wire format (`sixpath-protocol`) nor sockets
//! (`sixpath-net`): nothing here touches the network. Each binary keeps its
//! own settings (the fields of its `config::Options` and how they are
//! validated); this crate provides what surrounds them.
//!
//! # Layout
//!
//! - [`cli`]: the command line every daemon has ([`cli::CommandLine`]: its
//!   options, `--check-config` or a subcommand), the flags every daemon
//!   takes ([`cli::ServiceArgs`]: `--config`, `--log`, `--log-format`), and
//!   [`cli::configure`], the start-up order: config file, flags over it,
//!   logging, validation; [`cli::Program`], what a binary says about
//!   itself (name, version with the commit, description: [`program!`]).
//! - [`docs`]: the hidden `completions` and `man` subcommands, which print
//!   shell completions and man pages made from the clap definitions.
//! - [`config`]: the JSON config file (unknown fields are refused with the
//!   closest valid name), [`config::ConfigError`] (the field, and the
//!   position in the file, once), flags over file ([`config::Merge`]), and
//!   the checks both binaries apply to seconds and counts.
//! - [`logging`]: `--log FILTER` (or `RUST_LOG`), `--log-format text|json`.
//! - [`exit`]: exit codes 0, 1 and 2, the `error: ...` line `main` prints,
//!   and the runtime whose outcome becomes the exit code.
//! - [`signal`]: `SIGTERM`/`SIGINT` (shutdown) and `SIGHUP` (reload).
//! - [`logins`]: failed logins per source address, and when to stop
//!   checking a source's passwords.
//! - [`limits`]: caps on concurrent connections in total and per source
//!   address, taken at accept.

pub mod cli;
pub mod config;
pub mod docs;
pub mod exit;
pub mod limits;
pub mod logging;
pub mod logins;
pub mod signal;
