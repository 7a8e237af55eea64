//! Verify throughput, the memory store against Redis in the same run (group `verify`):
//!
//! - `memory`: `POST /auth/mfa/verify` with a fresh partial token and a valid TOTP code,
//!   through the [`StepUpLayer`](tower_stepup::StepUpLayer) (`Policy::mfa_verify`) into
//!   `Completion::verify`, with a `MemoryStore`.
//! - `redis`: the same request on the same stack with a `RedisStore` on a real
//!   `redis-server` on loopback (started by `tests/support/redis_server.rs`; a missing
//!   binary is a failure). A successful verify makes 2 sequential round trips, one
//!   script each: reserve an attempt unless the token is used; then spend the token and
//!   the TOTP step, settle the attempt and start the refresh family (with the user's
//!   list of sessions). Before issue 17 it made 8 (6 scripts and 2 commands: reserve,
//!   token used?, consume, advance the step, settle, create the family, link the refresh
//!   token, list the family), and 7 before issue 14.
//! - `redis_round_trip`: one of those round trips alone (`Store::is_consumed`, a `GET`),
//!   the unit the Redis figure is made of.
//!
//! Each request is driven in-process (no socket, no HTTP parsing) on a current-thread
//! tokio runtime, one at a time: the figures are latencies, and their inverse is the
//! throughput of one sequential client.
//!
//! Timed: calling the service (token check, store operations, TOTP check, signing the
//! access token, the response body) and dropping the response. Not timed: minting the
//! partial tokens, computing the codes and building the requests, done per round of
//! [`USERS`] requests before the round's timer starts.
//!
//! Every verify must succeed, so the bench rotates through [`USERS`] users, each with its
//! own TOTP secret: within a round each user verifies once, and between rounds the
//! (manual) clock moves one TOTP step, so no code is ever a replay and no attempt fails.
//! The refresh lifetime is 300 s of that clock (instead of 24 h), so the memory store
//! settles at about 33 000 live entries (used token ids, refresh families, TOTP steps)
//! instead of filling up.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_stepup::complete::{
    Account, Accounts, BackendFuture, Completion, Endpoint, MemoryFactors, TotpFactor,
};
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::store::{MemoryStore, RedisStore, Store};
use tower_stepup::{
    Algorithm, Clock, Grant, Guard, Issuer, ManualClock, Policy, RouteTable, Sealer, SealingKey,
    SealingKeys, SigningKey, StepUpService, Verifier, VerifyingKey,
};

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;

const ISS: &str = "https://auth.bench";
const AUD: &str = "https://api.bench";
const VERIFY: &str = "/auth/mfa/verify";
const T0: u64 = 1_700_000_000;

/// Users verifying in turn: one round is one verify of each, at one TOTP step.
const USERS: usize = 1024;

/// Login is not benchmarked: nobody has a password.
struct NoAccounts;

impl Accounts for NoAccounts {
    fn authenticate<'a>(&'a self, _: &'a str, _: &'a str) -> BackendFuture<'a, Option<Account>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// The verify stack on one store, and where the next request's user is.
struct VerifyBench {
    clock: ManualClock,
    issuer: Issuer,
    service: StepUpService<Endpoint>,
    users: Vec<(String, TotpSecret)>,
    next: usize,
}

impl VerifyBench {
    fn new(store: Arc<dyn Store>) -> Self {
        let clock = ManualClock::new(T0);
        let key = [7u8; 32];
        let verifier = Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("k", Algorithm::HS256, &key).unwrap())
            .build()
            .unwrap();
        let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [3; 32]).unwrap())).unwrap();
        let guard = Guard::builder()
            .verifier(verifier)
            .sealer(sealer)
            .clock(clock.clone())
            .build()
            .unwrap();
        let issuer = Issuer::builder()
            .issuer(ISS)
            .audience(AUD)
            .signing_key(SigningKey::hmac("k", Algorithm::HS256, &key).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let factors = Arc::new(MemoryFactors::new());
        let users: Vec<(String, TotpSecret)> = (0..USERS)
            .map(|i| (format!("user-{i}"), TotpSecret::generate().unwrap()))
            .collect();
        for (user, secret) in &users {
            factors.insert(user.clone(), TotpFactor::new(secret.clone(), Vec::new()));
        }
        let completion = Completion::builder()
            .guard(guard.clone())
            .issuer(issuer.clone())
            .shared_store(store)
            .accounts(NoAccounts)
            .factors(factors)
            .refresh_lifetime(Duration::from_secs(300))
            .build()
            .unwrap();
        let table = RouteTable::new().route(Method::POST, VERIFY, Policy::mfa_verify());
        let service = guard.route_table(table).unwrap().layer(completion.verify());
        Self {
            clock,
            issuer,
            service,
            users,
            next: 0,
        }
    }

    /// The next `n` verify requests (at most the rest of the round, at least one): for
    /// each user, a partial token minted now and the code of the current step.
    fn requests(&mut self, n: usize) -> Vec<Request<String>> {
        if self.next == USERS {
            // Everyone has used this step: the next round is one step later.
            self.clock.advance(totp::STEP_SECS);
            self.next = 0;
        }
        let step = totp::step_at(self.clock.now());
        let end = USERS.min(self.next + n);
        let requests = self.users[self.next..end]
            .iter()
            // A code its neighbouring step shares (one in a million) is accepted for the
            // later step, so the next round's same code is a replay (RFC 6238 §5.2):
            // such a user sits the round out rather than fail the count below.
            .filter(|(_, secret)| {
                let code = totp::code_at(secret, step);
                code != totp::code_at(secret, step - 1) && code != totp::code_at(secret, step + 1)
            })
            .map(|(user, secret)| {
                let partial = self
                    .issuer
                    .issue_partial(&Grant::new(user.as_str()).amr(["pwd"]).scope("me"))
                    .unwrap();
                let body = serde_json::json!({
                    "mfa_token": partial.token,
                    "code": totp::code_at(secret, step),
                });
                Request::post(VERIFY)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .unwrap()
            })
            .collect();
        self.next = end;
        requests
    }

    /// `iters` verifies in rounds; only the service calls are timed.
    async fn run(&mut self, iters: u64) -> Duration {
        let mut remaining = usize::try_from(iters).unwrap();
        let mut timed = Duration::ZERO;
        while remaining > 0 {
            let requests = self.requests(remaining);
            let n = requests.len();
            let mut ok = 0usize;
            let start = Instant::now();
            for request in requests {
                let response = call(&mut self.service, request).await;
                ok += usize::from(response.status() == StatusCode::OK);
            }
            timed += start.elapsed();
            assert_eq!(ok, n, "every verify of the round must answer 200");
            remaining -= n;
        }
        timed
    }

    /// One verify, outside any timing, with its whole answer checked.
    async fn check(&mut self) {
        let request = loop {
            if let Some(request) = self.requests(1).pop() {
                break request;
            }
        };
        let response = call(&mut self.service, request).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["access_token"].is_string(), "{body}");
        assert!(body["refresh_token"].is_string(), "{body}");
    }
}

async fn call<S, R>(service: &mut S, request: Request<String>) -> R
where
    S: Service<Request<String>, Response = R, Error = Infallible>,
{
    let Ok(response) = service.ready().await.unwrap().call(request).await;
    black_box(response)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verify(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start();
    let redis = rt
        .block_on(RedisStore::connect(&server.url()))
        .expect("connect to the bench's redis-server");

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));

    let mut memory = VerifyBench::new(Arc::new(MemoryStore::new()));
    rt.block_on(memory.check());
    g.bench_function("memory", |b| {
        b.iter_custom(|iters| rt.block_on(memory.run(iters)))
    });
    drop(memory);

    let mut on_redis = VerifyBench::new(Arc::new(redis.clone()));
    rt.block_on(on_redis.check());
    g.bench_function("redis", |b| {
        b.iter_custom(|iters| rt.block_on(on_redis.run(iters)))
    });
    drop(on_redis);

    g.bench_function("redis_round_trip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let used = redis.is_consumed(black_box("jti:none"), T0).await;
                    assert_eq!(used, Ok(false));
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, verify);
criterion_main!(benches);
