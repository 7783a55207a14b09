//! Signals, as both daemons take them: `SIGTERM` or `SIGINT` (Ctrl-C) asks
//! for a graceful shutdown (stop accepting, let open connections finish);
//! `SIGHUP` asks for a reload of what the daemon can re-read.

use tokio::signal::unix::{SignalKind, signal};

/// Completes on `SIGTERM` or Ctrl-C, and logs that shutdown begins. Pass
/// it as the daemon's shutdown future.
pub async fn shutdown() {
    let term = async {
        match signal(SignalKind::terminate()) {
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

/// Calls `reload` on every `SIGHUP`, from a task spawned on the current
/// tokio runtime. Without a way to receive `SIGHUP` it does nothing.
pub fn on_hangup(mut reload: impl FnMut() + Send + 'static) {
    tokio::spawn(async move {
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            reload();
        }
    });
}
