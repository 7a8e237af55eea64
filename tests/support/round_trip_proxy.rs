//! A TCP proxy that counts round trips: how many times a client that had heard back
//! from the server sends again. Commands pipelined in one write, or sent while earlier
//! answers are still on their way, count once, as they cost one network round trip;
//! every new request after an answer counts again.
//!
//! ```ignore
//! let proxy = RoundTripProxy::start(redis_addr).await;
//! let store = RedisStore::connect(&proxy.redis_url()).await?;
//! proxy.reset();
//! store.something().await?;
//! assert_eq!(proxy.round_trips(), 1);
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running proxy on `127.0.0.1`; dropping it closes the listener and all connections.
pub struct RoundTripProxy {
    addr: SocketAddr,
    counts: Arc<Counts>,
    accept: AbortHandle,
}

#[derive(Default)]
struct Counts {
    round_trips: AtomicUsize,
    /// Whether the server has answered since the client last sent (or nothing was sent
    /// yet): the client's next bytes start a new round trip.
    answered: AtomicBool,
}

impl RoundTripProxy {
    /// Starts a proxy on a free loopback port that forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let counts = Arc::new(Counts::default());
        counts.answered.store(true, Ordering::SeqCst);
        let accept = tokio::spawn(accept_loop(listener, target, counts.clone())).abort_handle();
        Self {
            addr,
            counts,
            accept,
        }
    }

    /// `redis://` URL of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Round trips since the start or the last [`reset`](Self::reset).
    pub fn round_trips(&self) -> usize {
        self.counts.round_trips.load(Ordering::SeqCst)
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        self.counts.round_trips.store(0, Ordering::SeqCst);
    }

    /// A reader of the count that can go where the proxy cannot (into a store hook).
    pub fn meter(&self) -> Meter {
        Meter(self.counts.clone())
    }
}

/// Reads a proxy's round-trip count.
#[derive(Clone)]
pub struct Meter(Arc<Counts>);

impl Meter {
    /// Round trips since the proxy's start or last reset.
    pub fn round_trips(&self) -> usize {
        self.0.round_trips.load(Ordering::SeqCst)
    }
}

impl Drop for RoundTripProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, counts: Arc<Counts>) {
    while let Ok((client, _)) = listener.accept().await {
        let counts = counts.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = relay(client_read, server_write, counts.clone(), true);
            let down = relay(server_read, client_write, counts, false);
            let _ = tokio::join!(up, down);
        });
    }
}

/// Copies one direction, noting who spoke last.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counts: Arc<Counts>,
    client_to_server: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client_to_server {
            if counts.answered.swap(false, Ordering::SeqCst) {
                counts.round_trips.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            counts.answered.store(true, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
