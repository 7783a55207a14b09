//! The server's relay call site (`command::relay_with_leftover`, used by
//! every command) takes the `splice(2)` path for plain TCP sockets.

use sixpath_server::command::relay_with_leftover;
use sixpath_server::relay::{Cutoff, RelayEnd, RelayMode, RelayOptions, RelayPath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
    (a.unwrap(), b.unwrap().0)
}

/// 1 MiB down after a leftover of handshake bytes: the leftover reaches the
/// target first, every byte arrives, and the relay reports the path.
async fn bulk_through_call_site(mode: RelayMode) -> RelayPath {
    let (mut app, client) = pair().await;
    let (target, mut origin) = pair().await;
    let opts = RelayOptions {
        mode,
        ..RelayOptions::default()
    };
    let task = tokio::spawn(async move {
        relay_with_leftover(client, b"early", target, opts, &Cutoff::new()).await
    });
    let mut early = [0u8; 5];
    origin.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"early");
    let body: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let sender = tokio::spawn(async move {
        origin.write_all(&body).await.unwrap();
        origin.shutdown().await.unwrap();
        origin
    });
    let mut got = Vec::new();
    app.read_to_end(&mut got).await.unwrap();
    assert!(got == expected, "body identical");
    drop(sender.await.unwrap());
    app.shutdown().await.unwrap();
    let stats = task.await.unwrap();
    assert_eq!(
        (stats.client_to_target, stats.target_to_client, stats.end),
        (5, 1 << 20, RelayEnd::Closed)
    );
    stats.path
}

#[tokio::test]
async fn plain_tcp_relay_uses_splice() {
    let want = if cfg!(target_os = "linux") {
        RelayPath::Splice
    } else {
        RelayPath::Copy
    };
    assert_eq!(bulk_through_call_site(RelayMode::Auto).await, want);
}

#[tokio::test]
async fn copy_mode_forces_the_buffered_copy() {
    assert_eq!(
        bulk_through_call_site(RelayMode::Copy).await,
        RelayPath::Copy
    );
}
