//! Issue 14's proof under concurrency (DESIGN §8.2): N simultaneous guesses evaluate at
//! most `max_attempts` codes, on a real Redis across network latency; a user's own
//! duplicate submits succeed once and lock nobody out; an enrollment is confirmed once.
//!
//! Each test serves the demo app (`examples/axum_app/app.rs`, `max_attempts` 5, a
//! `ManualClock`) on `127.0.0.1:0`. Its store is a `RedisStore` with a key prefix of its
//! own, reached through a proxy that delays every chunk by 1–3 ms each way
//! (`support/latency_proxy.rs`) in front of the `redis-server` the tests start
//! (`support/redis_server.rs`), wrapped in a `CountingStore` that counts how attempts
//! are reserved and settled (`support/counting_store.rs`): the codes evaluated are the
//! attempts settled `Failed` or `Succeeded`. Requests go out as synchronized bursts
//! (`support/burst.rs`): every request sent but its last byte, then every last byte at
//! once.

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/burst.rs"]
mod burst;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/counting_store.rs"]
mod counting_store;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/demo_server.rs"]
mod demo_server;
#[path = "support/dpop.rs"]
mod dpop;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/latency_proxy.rs"]
mod latency_proxy;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/reply.rs"]
mod reply;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burst::RawResponse;
use counting_store::{AttemptCounts, CountingStore};
use demo_server::DemoServer;
use latency_proxy::LatencyProxy;
use redis_server::RedisServer;
use serde_json::{json, Value};
use tower_stepup::factor::totp::TotpSecret;
use tower_stepup::store::RedisStore;

const MAX_ATTEMPTS: u32 = 5;
/// The lockout the demo keeps (`AttemptPolicy::default`), and so the lockout's
/// `Retry-After` on a clock that stands still.
const LOCKOUT_SECS: &str = "900";
const BURST: usize = 200;
const DUPLICATES: usize = 20;
/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The demo on Redis behind a 1–3 ms proxy, and the counts of its attempts.
struct Rig {
    server: DemoServer,
    store: Arc<CountingStore>,
    _proxy: LatencyProxy,
}

/// A key prefix no other test (or earlier run) uses.
fn unique(name: &str) -> String {
    redis_server::unique_prefix("bursts", name)
}

async fn rig(name: &str) -> Rig {
    let redis = SocketAddr::from(([127, 0, 0, 1], RedisServer::shared().port()));
    let ms = Duration::from_millis;
    let proxy = LatencyProxy::start(redis, ms(1), ms(3)).await;
    let store = RedisStore::builder()
        .prefix(unique(name))
        // Ten times the default: these tests are about races, not timeouts, and a busy
        // CI machine must not turn a burst into 503s.
        .timeout(Duration::from_secs(5))
        .connect(&proxy.redis_url())
        .await
        .expect("connect to the test redis-server through the proxy");
    let store = CountingStore::new(Arc::new(store));
    let server = DemoServer::start(store.clone(), MAX_ATTEMPTS, T0).await;
    Rig {
        server,
        store,
        _proxy: proxy,
    }
}

fn alice_secret() -> TotpSecret {
    TotpSecret::from_base32(demo_config::ALICE_SECRET).unwrap()
}

fn error(r: &RawResponse) -> String {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    body["error"].as_str().unwrap_or("").to_owned()
}

/// `(status, error)`, to match on.
fn outcome(r: &RawResponse) -> (u16, String) {
    (r.status, error(r))
}

/// `field` of a JSON body, which must be a string.
fn string(r: &RawResponse, field: &str) -> String {
    r.json()[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}` in {} {}", r.status, r.text()))
        .to_owned()
}

async fn login(s: &DemoServer, user: &str) -> RawResponse {
    let body = json!({"username": user, "password": format!("{user}-password")});
    let r = s.post("/auth/login", &body, None).await;
    assert_eq!(r.status, 200, "login of {user}: {}", r.text());
    r
}

/// A fresh login partial token of alice.
async fn alice_partial(s: &DemoServer) -> String {
    string(&login(s, "alice").await, "partial_token")
}

/// bob's access token (he has no factor: the password is enough) and the secret of the
/// enrollment he starts with it.
async fn bob_enrolling(s: &DemoServer) -> (String, TotpSecret) {
    let access = string(&login(s, "bob").await, "access_token");
    let r = s.post("/auth/mfa/enroll", &json!({}), Some(&access)).await;
    assert_eq!(r.status, 200, "enroll: {}", r.text());
    let secret = TotpSecret::from_base32(&string(&r, "secret")).unwrap();
    (access, secret)
}

fn verify(s: &DemoServer, partial: &str, code: &str) -> Vec<u8> {
    let body = json!({"mfa_token": partial, "code": code});
    s.request("/auth/mfa/verify", &body, None)
}

fn confirm(s: &DemoServer, access: &str, code: &str) -> Vec<u8> {
    s.request(
        "/auth/mfa/enroll/confirm",
        &json!({ "code": code }),
        Some(access),
    )
}

/// Sends `requests` as one burst, and prints what came back and what was counted.
async fn fire(rig: &Rig, user: &str, what: &str, requests: Vec<Vec<u8>>) -> Vec<RawResponse> {
    let started = Instant::now();
    let replies = rig.server.burst(requests).await;
    let took = started.elapsed();
    let counts = rig.store.counts(user);
    eprintln!(
        "{what}: {} replies in {took:?}; {} evaluated; {counts:?}",
        replies.len(),
        counts.evaluated()
    );
    for ((status, error, retry_after), n) in histogram(&replies) {
        eprintln!("  {n:>3} × {status} {error} Retry-After: {retry_after}");
    }
    replies
}

/// How many replies had each status, error and `Retry-After`.
fn histogram(replies: &[RawResponse]) -> BTreeMap<(u16, String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in replies {
        let retry_after = r.header("retry-after").unwrap_or("-").to_owned();
        *counts.entry((r.status, error(r), retry_after)).or_default() += 1;
    }
    counts
}

/// No server error; every 429 says when to come back.
#[track_caller]
fn assert_sound(replies: &[RawResponse]) {
    for (i, r) in replies.iter().enumerate() {
        assert!(r.status < 500, "reply {i}: {} {}", r.status, r.text());
        if r.status == 429 {
            assert!(
                r.header("retry-after").is_some(),
                "reply {i}: no Retry-After"
            );
        }
    }
}

/// How many replies had `status`.
fn count(replies: &[RawResponse], status: u16) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

/// A refusal because twins held every attempt in flight: not a lockout.
fn in_flight(r: &RawResponse) -> bool {
    outcome(r) == (429, "too_many_attempts".into()) && r.header("retry-after") == Some("1")
}

/// A burst of wrong codes that filled the attempts: only wrong codes (401, with
/// 4, 3, 2, 1 attempts remaining) and refusals (429), at most `max_attempts` evaluated
/// and the lockout earned by exactly that many recorded failures, some refused while the
/// attempts were in flight.
#[track_caller]
fn assert_filled_by_wrong_codes(replies: &[RawResponse], counts: AttemptCounts) {
    assert_sound(replies);
    for (i, r) in replies.iter().enumerate() {
        let ok = matches!(
            (r.status, error(r).as_str()),
            (401, "invalid_code") | (429, "too_many_attempts")
        );
        assert!(ok, "reply {i}: {} {}", r.status, r.text());
    }
    assert!(
        counts.evaluated() <= MAX_ATTEMPTS as usize,
        "{} codes evaluated: {counts:?}",
        counts.evaluated()
    );
    assert_eq!(counts.failed, MAX_ATTEMPTS as usize, "{counts:?}");
    let mut remaining: Vec<u64> = replies
        .iter()
        .filter(|r| r.status == 401)
        .map(|r| r.json()["attempts_remaining"].as_u64().unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, [1, 2, 3, 4], "{:?}", histogram(replies));
    assert!(
        replies.iter().any(in_flight),
        "no 429 with Retry-After: 1 (attempts in flight): {:?}",
        histogram(replies)
    );
}

/// A right code refused by the lockout, without being evaluated.
#[track_caller]
fn assert_locked_out(r: &RawResponse, evaluated_before: usize, counts: AttemptCounts) {
    assert_eq!(
        outcome(r),
        (429, "too_many_attempts".into()),
        "{}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some(LOCKOUT_SECS));
    assert_eq!(counts.evaluated(), evaluated_before, "{counts:?}");
}

// ---------------------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_199_wrong_codes_evaluates_five_and_the_right_code_is_then_refused() {
    let rig = rig("verify-wrong").await;
    let s = &rig.server;
    let partial = alice_partial(s).await;
    let wrong = codes::wrong_codes(&alice_secret(), s.now(), BURST - 1);
    let requests = wrong.iter().map(|c| verify(s, &partial, c)).collect();

    let replies = fire(&rig, "alice", "verify: 199 wrong codes", requests).await;
    let counts = rig.store.counts("alice");
    assert_filled_by_wrong_codes(&replies, counts);

    // The right code, on the same challenge and on a new one: alice is locked out.
    let right = codes::code_now(&alice_secret(), s.now());
    let r = s.send(verify(s, &partial, &right)).await;
    assert_locked_out(&r, counts.evaluated(), rig.store.counts("alice"));
    let partial = alice_partial(s).await;
    let r = s.send(verify(s, &partial, &right)).await;
    assert_locked_out(&r, counts.evaluated(), rig.store.counts("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_code_inside_a_burst_of_200_succeeds_only_if_among_the_five_evaluated() {
    for position in [0, 100, BURST - 1] {
        let rig = rig("verify-mixed").await;
        let s = &rig.server;
        let partial = alice_partial(s).await;
        let mut codes = codes::wrong_codes(&alice_secret(), s.now(), BURST - 1);
        codes.insert(position, codes::code_now(&alice_secret(), s.now()));
        let requests = codes.iter().map(|c| verify(s, &partial, c)).collect();

        let what = format!("verify: the right code at {position} of 200");
        let replies = fire(&rig, "alice", &what, requests).await;
        let counts = rig.store.counts("alice");
        assert_sound(&replies);
        for (i, r) in replies.iter().enumerate() {
            let ok = matches!(
                (r.status, error(r).as_str()),
                (200, "")
                    | (401, "invalid_code")
                    | (404, "mfa_token_not_found")
                    | (429, "too_many_attempts")
            );
            assert!(ok, "reply {i}: {} {}", r.status, r.text());
        }
        assert!(counts.evaluated() <= MAX_ATTEMPTS as usize, "{counts:?}");
        // One success at most, the right code's, and only if it was evaluated.
        assert!(count(&replies, 200) <= 1, "{:?}", histogram(&replies));
        assert_eq!(count(&replies, 200), counts.succeeded, "{counts:?}");
        let right = &replies[position];
        match counts.succeeded {
            1 => assert_eq!(right.status, 200, "{}", right.text()),
            _ => assert_eq!(outcome(right), (429, "too_many_attempts".into())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_duplicate_submits_of_the_right_code_give_one_success_and_no_lockout() {
    let rig = rig("verify-duplicates").await;
    let s = &rig.server;
    let partial = alice_partial(s).await;
    let right = codes::code_now(&alice_secret(), s.now());
    let requests = vec![verify(s, &partial, &right); DUPLICATES];

    let replies = fire(&rig, "alice", "verify: 20 × the right code", requests).await;
    assert_sound(&replies);
    assert_eq!(count(&replies, 200), 1, "{:?}", histogram(&replies));
    for (i, r) in replies.iter().enumerate().filter(|(_, r)| r.status != 200) {
        let lost = outcome(r) == (404, "mfa_token_not_found".into()) || in_flight(r);
        assert!(lost, "reply {i}: {} {}", r.status, r.text());
    }
    let counts = rig.store.counts("alice");
    assert_eq!((counts.succeeded, counts.failed), (1, 0), "{counts:?}");

    // No failure was recorded: the next wrong code is the first.
    let partial = alice_partial(s).await;
    let wrong = codes::wrong_code(&alice_secret(), s.now());
    let r = s.send(verify(s, &partial, &wrong)).await;
    assert_eq!(outcome(&r), (401, "invalid_code".into()), "{}", r.text());
    assert_eq!(r.json()["attempts_remaining"], 4);
}

// ---------------------------------------------------------------------------------------
// Enrollment confirm
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_199_wrong_confirms_evaluates_five_and_the_right_code_is_then_refused() {
    let rig = rig("confirm-wrong").await;
    let s = &rig.server;
    let (access, secret) = bob_enrolling(s).await;
    let wrong = codes::wrong_codes(&secret, s.now(), BURST - 1);
    let requests = wrong.iter().map(|c| confirm(s, &access, c)).collect();

    let replies = fire(&rig, "bob", "confirm: 199 wrong codes", requests).await;
    let counts = rig.store.counts("bob");
    assert_filled_by_wrong_codes(&replies, counts);

    let right = codes::code_now(&secret, s.now());
    let r = s.send(confirm(s, &access, &right)).await;
    assert_locked_out(&r, counts.evaluated(), rig.store.counts("bob"));
    assert!(!s.factors.contains("bob"), "bob enrolled while locked out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_confirms_of_the_right_code_enroll_exactly_once() {
    let rig = rig("confirm-duplicates").await;
    let s = &rig.server;
    let (access, secret) = bob_enrolling(s).await;
    let right = codes::code_now(&secret, s.now());
    let requests = vec![confirm(s, &access, &right); DUPLICATES];

    let replies = fire(&rig, "bob", "confirm: 20 × the right code", requests).await;
    assert_sound(&replies);
    assert_eq!(count(&replies, 200), 1, "{:?}", histogram(&replies));
    for (i, r) in replies.iter().enumerate().filter(|(_, r)| r.status != 200) {
        let lost = outcome(r) == (409, "enrollment_already_confirmed".into()) || in_flight(r);
        assert!(lost, "reply {i}: {} {}", r.status, r.text());
    }
    let counts = rig.store.counts("bob");
    assert_eq!((counts.succeeded, counts.failed), (1, 0), "{counts:?}");
    let confirmed = replies.iter().find(|r| r.status == 200).unwrap().json();
    let recovery_codes = confirmed["recovery_codes"].as_array().unwrap();
    assert!(!recovery_codes.is_empty(), "{confirmed}");

    // The factor saved is the one whose recovery codes came back: bob now needs a
    // second factor, and one of those codes is it.
    let login = login(s, "bob").await;
    assert_eq!(login.json()["status"], "mfa_required", "{}", login.text());
    let body = json!({
        "mfa_token": string(&login, "partial_token"),
        "recovery_code": recovery_codes[0],
    });
    let r = s.post("/auth/mfa/verify", &body, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!string(&r, "access_token").is_empty());
}

/// Login throttling under the same conditions (DESIGN §8.2): 200 wrong passwords for
/// bob at once, Redis one hop away: the attempt is reserved before the password is
/// hashed, so at most the per-client limit (10) of passwords are checked (each checked
/// wrong password is a 401), and then even the right one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_wrong_passwords_checks_at_most_ten() {
    let rig = rig("login").await;
    let s = &rig.server;
    let requests = (0..BURST)
        .map(|i| {
            let body = json!({"username": "bob", "password": format!("guess-{i}")});
            s.request("/auth/login", &body, None)
        })
        .collect();
    let replies = fire(&rig, "bob", "200 wrong passwords", requests).await;
    assert_sound(&replies);
    let checked = count(&replies, 401);
    assert!((1..=10).contains(&checked), "{checked} passwords checked");
    assert_eq!(checked + count(&replies, 429), BURST);
    let body = json!({"username": "bob", "password": "bob-password"});
    let r = s.post("/auth/login", &body, None).await;
    assert_eq!(
        outcome(&r),
        (429, "too_many_attempts".to_owned()),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
}

// ---------------------------------------------------------------------------------------
// DPoP proofs
// ---------------------------------------------------------------------------------------

/// bob signs in with a DPoP proof (no second factor): an access token bound to `key`.
async fn bob_bound(s: &DemoServer, key: &dpop::Key) -> String {
    let url = format!("{}/auth/login", demo_config::DEMO_PUBLIC_URL);
    let proof = key.proof("POST", &url, None, s.now());
    let body = json!({"username": "bob", "password": "bob-password"});
    let request = burst::post_json(
        "/auth/login",
        &s.addr.to_string(),
        &body,
        &[("DPoP", proof.as_str())],
    );
    let r = s.send(request).await;
    assert_eq!(r.status, 200, "login of bob with a proof: {}", r.text());
    assert_eq!(r.json()["token_type"], "DPoP", "{}", r.text());
    string(&r, "access_token")
}

/// `GET /api/me` with the bound `token` and `proof`.
fn me_with(s: &DemoServer, token: &str, proof: &str) -> Vec<u8> {
    let authorization = format!("DPoP {token}");
    burst::get(
        "/api/me",
        &s.addr.to_string(),
        &[("Authorization", authorization.as_str()), ("DPoP", proof)],
    )
}

/// One proof sent 200 times at once, to a server whose proof store is Redis one
/// latency-injecting hop away: the jti is used once, whoever gets there first; and 200
/// fresh proofs of the same key at once all pass (no false replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_copies_of_one_dpop_proof_through_redis_passes_once() {
    let rig = rig("dpop-replay").await;
    let s = &rig.server;
    let key = dpop::Key::es256(3);
    let token = bob_bound(s, &key).await;
    let url = format!("{}/api/me", demo_config::DEMO_PUBLIC_URL);
    let proof = key.proof("GET", &url, Some(&token), s.now());
    let requests = (0..BURST).map(|_| me_with(s, &token, &proof)).collect();
    let replies = s.burst(requests).await;
    let mut outcomes: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for r in &replies {
        *outcomes.entry(outcome(r)).or_default() += 1;
    }
    let expected = BTreeMap::from([
        ((200, String::new()), 1),
        ((401, "invalid_dpop_proof".to_owned()), BURST - 1),
    ]);
    assert_eq!(outcomes, expected);

    let fresh = (0..BURST)
        .map(|_| me_with(s, &token, &key.proof("GET", &url, Some(&token), s.now())))
        .collect();
    let replies = s.burst(fresh).await;
    let passed = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        passed,
        BURST,
        "{:?}",
        replies.iter().map(outcome).collect::<Vec<_>>()
    );
}
