//! Logging: `tracing` events to standard error, filtered by `--log FILTER`
//! (or `RUST_LOG`, which wins), as text or as one JSON object per line
//! (`--log-format json`) for log collectors.

use std::io::IsTerminal as _;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields, side by side.
    Json,
}

/// The filter: `RUST_LOG` if set and valid, else `filter` if valid, else
/// `info`.
fn env_filter(filter: Option<&str>) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Sends this process's log events to standard error, filtered by `filter`
/// (`--log`; `RUST_LOG` overrides it; `info` when neither is set or
/// valid), in `format`. A second call leaves the first in place.
pub fn init(filter: Option<&str>, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter(filter))
        .with_writer(std::io::stderr);
    // Only the first subscriber of a process can be global; a later call
    // (a test, an embedding program) keeps it.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_one_object_each_with_the_fields_at_the_top() {
        let buf = Buffer::default();
        let writer = buf.clone();
        // The same formatter `init` installs, writing into `buf`.
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = "alice", bytes = 42, "finished");
            tracing::debug!("filtered out");
            tracing::warn!("second\nline");
        });
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "finished");
        assert_eq!(lines[0]["user"], "alice");
        assert_eq!(lines[0]["bytes"], 42);
        assert!(lines[0]["timestamp"].is_string());
        assert_eq!(lines[1]["message"], "second\nline");
    }

    #[test]
    fn a_bad_filter_falls_back_to_info() {
        // RUST_LOG is not set in the test environment unless a developer
        // sets it; then it wins, which is the rule under test too.
        if std::env::var_os("RUST_LOG").is_none() {
            assert_eq!(env_filter(Some("[bad")).to_string(), "info");
            assert_eq!(env_filter(Some("debug")).to_string(), "debug");
            assert_eq!(env_filter(None).to_string(), "info");
        }
    }
}
