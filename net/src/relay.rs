//! The relay: copies bytes both ways between a client and its target.
//!
//! Both directions run concurrently in one task. EOF on one side shuts down
//! the write half of the other side while the other direction keeps
//! flowing (half-close, as the shadowsocks-rust maintainers warn: a hard
//! timeout after the first FIN loses data). Only an idle timeout — no byte
//! in either direction for `idle_timeout` — or an error ends the relay
//! early. Byte counts come back for the connection's log line.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Close after this long without a byte in either direction.
    pub idle_timeout: Duration,
    /// Buffer size per direction.
    pub buffer_size: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            buffer_size: 16 * 1024,
        }
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed their sending direction.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// Reading from or writing to the client failed (e.g. reset).
    ClientError,
    /// Reading from or writing to the target failed (e.g. reset).
    TargetError,
}

/// What a relay moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes from the client to the target.
    pub client_to_target: u64,
    /// Bytes from the target to the client.
    pub target_to_client: u64,
    /// Why it ended.
    pub end: RelayEnd,
}

/// Which side of a direction failed.
enum Side {
    Read,
    Write,
}

/// Copies until EOF, then shuts down `w`. Counts into `count` and stamps
/// `activity` (milliseconds since `epoch`) on every transfer.
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    size: usize,
    count: &AtomicU64,
    activity: &AtomicU64,
    epoch: Instant,
) -> Result<(), (Side, io::Error)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; size];
    loop {
        let n = r.read(&mut buf).await.map_err(|e| (Side::Read, e))?;
        if n == 0 {
            // Half-close: the peer sees FIN, our other direction continues.
            // A peer that is already gone cannot be told; that is not an
            // error of this direction.
            let _ = w.shutdown().await;
            return Ok(());
        }
        let chunk = buf.get(..n).unwrap_or_default();
        w.write_all(chunk).await.map_err(|e| (Side::Write, e))?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        activity.store(millis_since(epoch), Ordering::Relaxed);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Relays between `client` and `target` until both directions are closed,
/// the connection is idle for `opts.idle_timeout`, or one side fails.
pub async fn relay<C, T>(client: C, target: T, opts: RelayOptions) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (tr, tw) = tokio::io::split(target);
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let activity = AtomicU64::new(0);
    let epoch = Instant::now();

    let upstream = pump(cr, tw, opts.buffer_size, &up, &activity, epoch);
    let downstream = pump(tr, cw, opts.buffer_size, &down, &activity, epoch);
    let both = async {
        let (a, b) = tokio::join!(
            async {
                let r = upstream.await;
                if let Err((side, _)) = &r {
                    return Err(match side {
                        Side::Read => RelayEnd::ClientError,
                        Side::Write => RelayEnd::TargetError,
                    });
                }
                Ok(())
            },
            async {
                let r = downstream.await;
                if let Err((side, _)) = &r {
                    return Err(match side {
                        Side::Read => RelayEnd::TargetError,
                        Side::Write => RelayEnd::ClientError,
                    });
                }
                Ok(())
            }
        );
        a.and(b).err().unwrap_or(RelayEnd::Closed)
    };
    let idle = async {
        loop {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            let deadline = last + opts.idle_timeout;
            match deadline.checked_sub(epoch.elapsed()) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return RelayEnd::Idle,
            }
        }
    };
    // An error in one direction ends the relay: the other direction is
    // dropped and the caller closes (or resets) both sockets.
    let end = tokio::select! {
        end = both => end,
        end = idle => end,
    };
    RelayStats {
        client_to_target: up.load(Ordering::Relaxed),
        target_to_client: down.load(Ordering::Relaxed),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_flowing() {
        let (client, mut app) = duplex(1024);
        let (target, mut origin) = duplex(1024);
        let task = tokio::spawn(relay(client, target, RelayOptions::default()));

        app.write_all(b"request").await.expect("write");
        app.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        origin.read_to_end(&mut got).await.expect("origin sees EOF");
        assert_eq!(got, b"request");

        // The client has half-closed; the response must still arrive.
        origin
            .write_all(b"response after FIN")
            .await
            .expect("write");
        origin.shutdown().await.expect("shutdown");
        let mut resp = Vec::new();
        app.read_to_end(&mut resp).await.expect("read");
        assert_eq!(resp, b"response after FIN");

        let stats = task.await.expect("relay");
        assert_eq!(stats.client_to_target, 7);
        assert_eq!(stats.target_to_client, 18);
        assert_eq!(stats.end, RelayEnd::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_ends_after_idle_timeout() {
        let (client, _app) = duplex(64);
        let (target, _origin) = duplex(64);
        let opts = RelayOptions {
            idle_timeout: Duration::from_secs(30),
            ..RelayOptions::default()
        };
        let stats = relay(client, target, opts).await;
        assert_eq!(stats.end, RelayEnd::Idle);
    }
}
