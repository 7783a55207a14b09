//! How a daemon's `main` ends. Exit codes: 0 after a clean shutdown (or a
//! valid configuration), 1 on a runtime failure, 2 on a usage or
//! configuration error, whose message names the field. The error goes to
//! standard error as one `error: ...` line.

use std::fmt;
use std::process::ExitCode;

use crate::config::ConfigError;

/// Exit code of a runtime failure.
pub const RUNTIME_FAILURE: u8 = 1;
/// Exit code of a usage or configuration error.
pub const USAGE: u8 = 2;

/// Why a daemon stops before its work is done.
#[derive(Debug)]
pub enum Failure {
    /// A usage or configuration error (exit 2).
    Config(ConfigError),
    /// Anything else (exit 1): the error's message, with its causes.
    Runtime(String),
}

impl Failure {
    /// A runtime failure from `e`, printed as `{e:#}` (an `anyhow` error
    /// with its causes).
    pub fn runtime(e: impl fmt::Display) -> Self {
        Self::Runtime(format!("{e:#}"))
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Config(_) => USAGE,
            Self::Runtime(_) => RUNTIME_FAILURE,
        }
    }

    /// Prints `error: ...` on standard error and returns the exit code.
    pub fn exit(self) -> ExitCode {
        eprintln!("error: {self}");
        ExitCode::from(self.code())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => fmt::Display::fmt(e, f),
            Self::Runtime(message) => f.write_str(message),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// The exit code of `main`'s outcome, the error printed.
pub fn code(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

/// Runs `daemon` to its end on a multi-threaded tokio runtime and returns
/// the exit code of its outcome; "stopped" is logged after a clean end.
pub fn block_on<F>(daemon: F) -> ExitCode
where
    F: Future<Output = Result<(), Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Failure::Runtime(format!("cannot start the runtime: {e}")).exit(),
    };
    let outcome = runtime.block_on(daemon);
    if outcome.is_ok() {
        tracing::info!("stopped");
    }
    code(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_exit_2_and_others_1() {
        let f = Failure::from(ConfigError::new("listen", "no listener"));
        assert_eq!(
            (f.code(), f.to_string().as_str()),
            (2, "listen: no listener")
        );
        let f = Failure::runtime("cannot listen on 127.0.0.1:1: denied");
        assert_eq!(f.code(), 1);
        assert_eq!(f.to_string(), "cannot listen on 127.0.0.1:1: denied");
    }

    #[test]
    fn block_on_returns_the_outcome_as_exit_code() {
        assert_eq!(block_on(async { Ok(()) }), ExitCode::SUCCESS);
        assert_eq!(
            block_on(async { Err(Failure::runtime("gone")) }),
            ExitCode::from(1)
        );
    }
}
