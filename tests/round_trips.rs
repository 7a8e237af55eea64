//! How many network round trips to Redis each completion step costs (issue 17, item 6):
//! the demo on a `RedisStore` behind a proxy that counts round trips
//! (`support/round_trip_proxy.rs`), each step measured alone after a warm-up (scripts
//! loaded, connection open).
//!
//! The counts are pinned: a change that adds a round trip fails here. Before issue 17's
//! item 6: login 2, verify 8, refresh 4; its goal: verify ≤ 2, refresh ≤ 2. Then the
//! same through a proxy that adds 5 ms each way (`support/latency_proxy.rs`): a verify
//! takes at most 30 ms (about 74 ms before).

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/burst.rs"]
mod burst;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/demo_server.rs"]
mod demo_server;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/latency_proxy.rs"]
mod latency_proxy;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/reply.rs"]
mod reply;
#[path = "support/round_trip_proxy.rs"]
mod round_trip_proxy;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo_server::DemoServer;
use hooked_store::{Call, CallResult, HookFuture, HookedStore, StoreHook};
use latency_proxy::LatencyProxy;
use redis_server::RedisServer;
use round_trip_proxy::{Meter, RoundTripProxy};
use serde_json::{json, Value};
use tower_stepup::factor::totp::TotpSecret;
use tower_stepup::store::RedisStore;
use tower_stepup::store::Store;

const T0: u64 = 1_800_000_010;

/// Round trips of a login: reserve both throttling counters, settle them.
const LOGIN: usize = 2;
/// Round trips of a verify with a TOTP code: reserve an attempt unless the challenge is
/// spent; spend the challenge and the code, settle the attempt and start the session.
const VERIFY: usize = 2;
/// Round trips of a refresh: rotate (or detect reuse) on the family.
const REFRESH: usize = 1;

/// The network of the issue: 5 ms each way between the app and Redis.
const ONE_WAY: Duration = Duration::from_millis(5);
/// What a verify may take through it (about 74 ms with the 8 round trips before).
const VERIFY_BOUND: Duration = Duration::from_millis(30);
/// Verifies timed through it.
const RUNS: usize = 7;

struct Rig {
    server: DemoServer,
    proxy: RoundTripProxy,
    ledger: Arc<HookedStore<Ledger>>,
}

/// Notes each store call with the round trips it took.
struct Ledger {
    meter: Meter,
    calls: Mutex<Vec<(&'static str, usize)>>,
    started: Mutex<Vec<usize>>,
}

impl StoreHook for Ledger {
    fn before<'a>(
        &'a self,
        _: &'a dyn Store,
        _: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        self.started.lock().unwrap().push(self.meter.round_trips());
        Box::pin(async { None })
    }

    fn after<'a>(
        &'a self,
        _: &'a dyn Store,
        call: &'a Call<'a>,
        outcome: CallResult,
    ) -> HookFuture<'a, CallResult> {
        let started = self.started.lock().unwrap().pop().unwrap_or_default();
        let trips = self.meter.round_trips() - started;
        self.calls.lock().unwrap().push((call.name(), trips));
        Box::pin(async move { outcome })
    }
}

impl Rig {
    /// The store calls since the last call of this, with their round trips.
    fn calls(&self) -> Vec<(&'static str, usize)> {
        std::mem::take(&mut *self.ledger.calls.lock().unwrap())
    }
}

/// The shared `redis-server`.
fn redis() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], RedisServer::shared().port()))
}

/// The demo on a `RedisStore` that reaches `target` (Redis, or a proxy in front of it)
/// through the counting proxy; the store hands a verify's two steps to Redis whole.
async fn rig(target: SocketAddr) -> Rig {
    let proxy = RoundTripProxy::start(target).await;
    let nanos = std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos();
    let store = RedisStore::builder()
        .prefix(format!("round-trips-{}-{nanos}", std::process::id()))
        .connect(&proxy.redis_url())
        .await
        .expect("connect through the proxy");
    let ledger = Ledger {
        meter: proxy.meter(),
        calls: Mutex::default(),
        started: Mutex::default(),
    };
    let ledger = Arc::new(HookedStore::whole(Arc::new(store), ledger));
    let server = DemoServer::start(ledger.clone(), 5, T0).await;
    Rig {
        server,
        proxy,
        ledger,
    }
}

fn field(r: &burst::RawResponse, name: &str) -> String {
    let body: Value = r.json();
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {} {}", r.status, r.text()))
        .to_owned()
}

/// One sign-in of alice with her code at the server's time, each step's round trips:
/// `(login, verify, refresh)`, and each step's store calls with theirs and how long it
/// took.
async fn sign_in_and_refresh(rig: &Rig) -> ((usize, usize, usize), Vec<Step>) {
    let s = &rig.server;
    let secret = TotpSecret::from_base32(demo_config::ALICE_SECRET).unwrap();
    let mut steps = Vec::new();
    rig.calls();
    rig.proxy.reset();
    let started = Instant::now();
    let login = s
        .post(
            "/auth/login",
            &json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let login_trips = rig.proxy.round_trips();
    steps.push(("login", login_trips, rig.calls(), started.elapsed()));
    let code = codes::code_now(&secret, s.now());
    let body = json!({"mfa_token": field(&login, "partial_token"), "code": code});
    rig.proxy.reset();
    let started = Instant::now();
    let verified = s.post("/auth/mfa/verify", &body, None).await;
    let took = started.elapsed();
    assert_eq!(verified.status, 200, "{}", verified.text());
    let verify_trips = rig.proxy.round_trips();
    steps.push(("verify", verify_trips, rig.calls(), took));
    let body = json!({"refresh_token": field(&verified, "refresh_token")});
    rig.proxy.reset();
    let started = Instant::now();
    let refreshed = s.post("/auth/refresh", &body, None).await;
    let took = started.elapsed();
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let refresh_trips = rig.proxy.round_trips();
    steps.push(("refresh", refresh_trips, rig.calls(), took));
    ((login_trips, verify_trips, refresh_trips), steps)
}

/// A step's name, its round trips, its store calls with theirs, and how long it took.
type Step = (&'static str, usize, Vec<(&'static str, usize)>, Duration);

#[tokio::test]
async fn each_completion_step_costs_its_pinned_number_of_redis_round_trips() {
    let rig = rig(redis()).await;
    sign_in_and_refresh(&rig).await; // warm-up: scripts loaded, connection open
    rig.server.clock.advance(30); // the next TOTP step: a code is never accepted twice
    let ((login, verify, refresh), steps) = sign_in_and_refresh(&rig).await;
    for (step, trips, calls, _) in &steps {
        eprintln!("{step}: {trips} round trips: {calls:?}");
        // Every round trip belongs to a store call: nothing else talks to Redis.
        assert_eq!(calls.iter().map(|c| c.1).sum::<usize>(), *trips, "{step}");
    }
    assert_eq!(
        (login, verify, refresh),
        (LOGIN, VERIFY, REFRESH),
        "{steps:?}"
    );
    let calls: Vec<Vec<(&str, usize)>> = steps.into_iter().map(|s| s.2).collect();
    assert_eq!(
        calls[1],
        [("reserve_challenge", 1), ("settle_challenge", 1)],
        "verify: one script a step"
    );
    assert_eq!(calls[2], [("refresh_rotate", 1)]);
}

/// Through 5 ms each way, every verify makes its 2 round trips, none takes less than
/// their 20 ms, and the fastest of [`RUNS`] takes at most 30 ms (three round trips could
/// not: at least 30 ms of network alone). The fastest, not the median: a slow run is the
/// machine's load (other builds on two cores), not the protocol's; the median is printed
/// (about 27 ms in a debug build).
#[tokio::test]
async fn a_verify_5_ms_each_way_from_redis_takes_2_round_trips_and_at_most_30_ms() {
    let latency = LatencyProxy::start(redis(), ONE_WAY, ONE_WAY).await;
    let rig = rig(latency.addr()).await;
    sign_in_and_refresh(&rig).await; // warm-up: scripts loaded, connection open
    let mut took = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        rig.server.clock.advance(30);
        let ((_, trips, _), steps) = sign_in_and_refresh(&rig).await;
        assert_eq!(trips, VERIFY, "{steps:?}");
        took.push(steps[1].3);
    }
    took.sort();
    let median = took[RUNS / 2];
    eprintln!("verify 5 ms each way from Redis, {RUNS} runs: {took:?}, median {median:?}");
    // The proxy is in the way: each round trip takes at least 5 ms each way.
    let floor = ONE_WAY * 2 * VERIFY as u32;
    assert!(took[0] >= floor, "{took:?} < {floor:?}");
    assert!(took[0] <= VERIFY_BOUND, "the fastest of {took:?}");
    assert!(
        ONE_WAY * 2 * (VERIFY as u32 + 1) >= VERIFY_BOUND,
        "a bound that tells 2 from 3"
    );
}

#[tokio::test]
async fn the_proxy_counts_a_pipeline_once_and_each_answered_request_again() {
    let redis = SocketAddr::from(([127, 0, 0, 1], RedisServer::shared().port()));
    let proxy = RoundTripProxy::start(redis).await;
    let client = redis::Client::open(proxy.redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    proxy.reset();
    for _ in 0..2 {
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    }
    assert_eq!(
        proxy.round_trips(),
        2,
        "two requests, one after the other's answer"
    );
    proxy.reset();
    let _: (String, String, String) = redis::pipe()
        .cmd("PING")
        .cmd("PING")
        .cmd("PING")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(proxy.round_trips(), 1, "three commands in one pipeline");
}
