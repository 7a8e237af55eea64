//! A TCP proxy that adds network latency: every chunk, in each direction, is delayed by
//! a random time in `[min, max]` (1–3 ms puts a LAN between the app and a `redis-server`
//! on loopback), and each direction keeps its byte order.
//!
//! Each accepted connection gets one relay task that copies both directions. A direction
//! stamps each chunk it reads with a due time, `now + delay` but never before the
//! previous chunk's, and writes the chunks in order, each at its due time; end of stream
//! is delayed the same way. Delays come from a seeded xorshift, so a run is repeatable.
//!
//! A delay is never shorter than drawn, but tokio's timer rounds it up to its millisecond
//! ticks: with `[1 ms, 3 ms]` a Redis round trip takes about 4.5–8.5 ms, not 2–6 ms.
//! Dropping the proxy aborts its listener and every relay: the connections close.
//!
//! ```ignore
//! let proxy = LatencyProxy::start(redis_addr, ms(1), ms(3)).await;
//! let store = RedisStore::connect(&proxy.redis_url()).await?;
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// The seed of the delays; connection `n` and each of its directions derive their own.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The largest chunk a direction reads at once.
const CHUNK: usize = 16 * 1024;

/// A running proxy on `127.0.0.1`; dropping it closes the listener and all connections.
pub struct LatencyProxy {
    addr: SocketAddr,
    accept: AbortHandle,
}

impl LatencyProxy {
    /// Starts a proxy on a free loopback port that forwards each connection to `target`,
    /// delaying every chunk in each direction by a random time in `[min, max]`.
    pub async fn start(target: SocketAddr, min: Duration, max: Duration) -> Self {
        assert!(min <= max, "latency proxy: min {min:?} > max {max:?}");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the latency proxy");
        let addr = listener.local_addr().expect("the latency proxy's address");
        let delays = Delays::new(min, max, SEED);
        let accept = tokio::spawn(accept_loop(listener, target, delays)).abort_handle();
        Self { addr, accept }
    }

    /// A proxy without delays at `addr` (e.g. where a dropped proxy was: the link
    /// restored) to `target`.
    pub async fn start_at(addr: SocketAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the latency proxy again");
        let delays = Delays::new(Duration::ZERO, Duration::ZERO, SEED);
        let accept = tokio::spawn(accept_loop(listener, target, delays)).abort_handle();
        Self { addr, accept }
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` of the proxy, for a proxied `redis-server`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        // The accept loop owns the relays' `JoinSet`: dropping it aborts every relay.
        self.accept.abort();
    }
}

/// Accepts connections for ever, one relay each, with its own stream of delays.
async fn accept_loop(listener: TcpListener, target: SocketAddr, delays: Delays) {
    let mut relays = JoinSet::new();
    let mut n: u64 = 0;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        while relays.try_join_next().is_some() {}
        n += 1;
        relays.spawn(relay(client, target, delays.reseeded(n)));
    }
}

/// Connects to `target` and copies both directions with delays until both ends close.
async fn relay(client: TcpStream, target: SocketAddr, delays: Delays) {
    let Ok(server) = TcpStream::connect(target).await else {
        return; // the client sees its connection close
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        delayed_copy(client_read, server_write, delays.reseeded(1)),
        delayed_copy(server_read, client_write, delays.reseeded(2)),
    );
}

/// One direction: a reader that stamps chunks with due times, a writer that honours them.
async fn delayed_copy(from: OwnedReadHalf, to: OwnedWriteHalf, delays: Delays) {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::join!(stamp_chunks(from, tx, delays), write_when_due(rx, to));
}

/// Reads chunks until end of stream (or an error) and sends each with its due time; the
/// end is sent as an empty chunk, so closing takes the latency too.
async fn stamp_chunks(
    mut from: OwnedReadHalf,
    tx: UnboundedSender<(Instant, Vec<u8>)>,
    mut delays: Delays,
) {
    let mut last_due = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        last_due = last_due.max(Instant::now() + delays.next());
        if tx.send((last_due, buf[..n].to_vec())).is_err() || n == 0 {
            return;
        }
    }
}

/// Writes each chunk at its due time, in order; shuts the write side down at the end.
async fn write_when_due(mut rx: UnboundedReceiver<(Instant, Vec<u8>)>, mut to: OwnedWriteHalf) {
    while let Some((due, chunk)) = rx.recv().await {
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Random delays in `[min, max]` from an xorshift64 generator.
#[derive(Clone, Copy)]
struct Delays {
    min: Duration,
    span_nanos: u64,
    state: u64,
}

impl Delays {
    /// Delays in `[min, max]` from `seed`.
    fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let span_nanos = u64::try_from((max - min).as_nanos()).expect("latency span too long");
        Self {
            min,
            span_nanos,
            state: seed | 1, // xorshift must not start at zero
        }
    }

    /// The same range from a seed derived from this one and `salt`.
    fn reseeded(&self, salt: u64) -> Self {
        let seed = self.state ^ salt.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Self::new(
            self.min,
            self.min + Duration::from_nanos(self.span_nanos),
            seed,
        )
    }

    /// The next delay.
    fn next(&mut self) -> Duration {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        self.min + Duration::from_nanos(x % self.span_nanos.saturating_add(1))
    }
}
