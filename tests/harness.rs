//! Self-tests of the concurrency harness: the latency proxy (`support/latency_proxy.rs`)
//! delays and keeps byte order in front of a real `redis-server`, and a burst
//! (`support/burst.rs`) holds every request back by one byte and then reaches the server
//! all at once.

#[path = "support/burst.rs"]
mod burst;
#[path = "support/latency_proxy.rs"]
mod latency_proxy;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use burst::{burst, post_json, prime, read_response};
use latency_proxy::LatencyProxy;
use redis_server::RedisServer;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The proxy's delay range: a LAN between the app and Redis.
const MIN: Duration = Duration::from_millis(1);
const MAX: Duration = Duration::from_millis(3);

/// The shared test `redis-server` behind a new latency proxy of `[min, max]`.
async fn proxied_redis_with(min: Duration, max: Duration) -> LatencyProxy {
    let target = SocketAddr::from(([127, 0, 0, 1], RedisServer::shared().port()));
    LatencyProxy::start(target, min, max).await
}

/// The shared test `redis-server` behind a new latency proxy of 1–3 ms.
async fn proxied_redis() -> LatencyProxy {
    proxied_redis_with(MIN, MAX).await
}

/// A RESP command.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out.into_bytes()
}

/// One reply line (simple string or integer), without its CRLF.
async fn reply_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).await.expect("a reply");
    line.trim_end().to_owned()
}

/// A key no other test (or earlier run) uses.
fn fresh_key(name: &str) -> String {
    let nanos = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_nanos();
    format!("harness:{name}:{}:{nanos}", std::process::id())
}

/// The round trips of `n` PINGs, one after the other, through a proxy of `[min, max]`.
async fn ping_round_trips(min: Duration, max: Duration, n: usize) -> Vec<Duration> {
    let proxy = proxied_redis_with(min, max).await;
    let mut conn = BufReader::new(TcpStream::connect(proxy.addr()).await.unwrap());
    let mut round_trips = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        conn.get_mut().write_all(&resp(&["PING"])).await.unwrap();
        assert_eq!(reply_line(&mut conn).await, "+PONG");
        round_trips.push(start.elapsed());
    }
    round_trips
}

#[tokio::test]
async fn a_ping_through_the_proxy_takes_a_random_delay_each_way() {
    // 1–3 ms as the Redis tests will use it; 10–15 ms to tell a delay from the timer's
    // own millisecond rounding (a delay of a few µs would still take ~1 ms each way).
    let ms = Duration::from_millis;
    for (min, max) in [(MIN, MAX), (ms(10), ms(15))] {
        let round_trips = ping_round_trips(min, max, 20).await;
        let fastest = *round_trips.iter().min().unwrap();
        let slowest = *round_trips.iter().max().unwrap();
        eprintln!("PING via a {min:?}–{max:?} proxy: {fastest:?} to {slowest:?}");
        assert!(
            fastest >= 2 * min,
            "a round trip of {fastest:?} < 2 × {min:?}"
        );
        assert!(slowest < 2 * max + ms(100), "a round trip of {slowest:?}");
        assert!(slowest - fastest >= ms(1), "no jitter: {round_trips:?}");
    }
}

#[tokio::test]
async fn proxy_keeps_the_order_of_200_pipelined_commands_both_ways() {
    let proxy = proxied_redis().await;
    let key = fresh_key("order");
    let mut conn = BufReader::new(TcpStream::connect(proxy.addr()).await.unwrap());
    conn.get_mut().set_nodelay(true).unwrap();
    // A pause after each command: 200 chunks, each with its own random delay, about
    // as far apart as the delays differ (so a proxy that reordered would show it).
    for i in 1..=200 {
        let command = resp(&["RPUSH", &key, &i.to_string()]);
        conn.get_mut().write_all(&command).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Replies in order: the lengths 1..=200.
    for i in 1..=200 {
        assert_eq!(reply_line(&mut conn).await, format!(":{i}"));
    }
    // Commands in order: the list is 1..=200.
    let list = RedisServer::shared().command(&["LRANGE", &key, "0", "-1"]);
    let expected: Vec<String> = (1..=200).map(|i| i.to_string()).collect();
    assert_eq!(list, expected);
    RedisServer::shared().command(&["DEL", &key]);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_listener_and_connections() {
    let proxy = proxied_redis().await;
    let addr = proxy.addr();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&resp(&["PING"])).await.unwrap();
    let mut pong = [0u8; 7];
    conn.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"+PONG\r\n");

    drop(proxy);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut rest));
    assert!(closed.await.is_ok(), "the proxied connection is still open");
    assert!(rest.is_empty());
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

/// Requests in flight in the echo server, and the most at once.
#[derive(Default)]
struct InFlight {
    started: AtomicUsize,
    now: AtomicUsize,
    max: AtomicUsize,
}

/// Echoes the JSON body after 50 ms, counting the requests in flight.
async fn slow_echo(State(flight): State<Arc<InFlight>>, Json(body): Json<Value>) -> Json<Value> {
    flight.started.fetch_add(1, Ordering::SeqCst);
    let now = flight.now.fetch_add(1, Ordering::SeqCst) + 1;
    flight.max.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    flight.now.fetch_sub(1, Ordering::SeqCst);
    Json(body)
}

/// The echo server on a free loopback port (stops with the test's runtime).
async fn echo_server() -> (SocketAddr, Arc<InFlight>) {
    let flight = Arc::new(InFlight::default());
    let app = Router::new()
        .route("/echo", post(slow_echo))
        .with_state(flight.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, flight)
}

/// `n` echo requests, each with its index.
fn echo_requests(addr: SocketAddr, n: usize) -> Vec<Vec<u8>> {
    let host = addr.to_string();
    (0..n)
        .map(|i| post_json("/echo", &host, &json!({ "n": i }), &[("X-Test", "burst")]))
        .collect()
}

/// Every response is a 200 echoing its own request.
fn assert_echoes(responses: &[burst::RawResponse]) {
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 200, "response {i}: {}", response.text());
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.json(), json!({ "n": i }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_reaches_the_server_at_once() {
    let (addr, flight) = echo_server().await;
    let start = Instant::now();
    let responses = burst(addr, echo_requests(addr, 50)).await;
    let elapsed = start.elapsed();
    let max = flight.max.load(Ordering::SeqCst);
    eprintln!("burst of 50 × 50 ms: {elapsed:?}, at most {max} in flight");
    assert_eq!(responses.len(), 50);
    assert_echoes(&responses);
    assert!(
        max >= 40,
        "only {max} of 50 requests were in flight at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primed_burst_holds_every_request_back_until_fired() {
    let (addr, flight) = echo_server().await;
    let primed = prime(addr, echo_requests(addr, 20)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        flight.started.load(Ordering::SeqCst),
        0,
        "a request ran early"
    );
    let responses = primed.fire().await;
    assert_eq!(flight.started.load(Ordering::SeqCst), 20);
    assert_echoes(&responses);
}

#[tokio::test]
async fn responses_are_read_by_length_by_chunks_and_to_close() {
    let by_length = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello, ignored";
    let response = read_response(&mut &by_length[..]).await;
    assert_eq!((response.status, response.text().as_str()), (201, "hello"));
    assert_eq!(response.header("x-a"), Some("1"));

    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let response = read_response(&mut &chunked[..]).await;
    assert_eq!(response.text(), "hello, world");

    let to_close = b"HTTP/1.0 404 Not Found\r\n\r\n{\"error\":\"none\"}";
    let response = read_response(&mut &to_close[..]).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json(), json!({ "error": "none" }));
}
