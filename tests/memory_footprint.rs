//! Heap bytes per challenge, counted by a global allocator.
//!
//! An outstanding challenge (a login partial token, a sealed step-up mfa_token) is held
//! by the client only: issuing one leaves nothing behind on the server. A completed one
//! leaves, in [`MemoryStore`], what the verify endpoint writes: the spent token id
//! (`consume("jti:<22-char id>")`), the user's last TOTP step (`advance_totp_step`), and
//! a refresh family (`refresh_create`: the family plus its current token hash); a wrong
//! code adds a failure record (`record_failure`).
//!
//! The allocator counts every allocation of this binary, so it holds these measurements
//! only, in one test: tests running in parallel would count each other's allocations.
//! Figures are requested bytes (`Layout::size`), net of frees; the system allocator's own
//! rounding and headers come on top.

#[path = "support/failures.rs"]
mod failures;
use failures::Failures;
use std::alloc::System;
use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_stepup::store::{AttemptPolicy, MemoryStore, RefreshRecord, Store};
use tower_stepup::{
    Algorithm, Grant, Guard, Issuer, Policy, RouteTable, Sealer, SealingKey, SealingKeys,
    SigningKey, StepUp, Verifier, VerifyingKey,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The target for one consumed challenge id.
const MAX_BYTES_PER_CONSUMED_ID: f64 = 256.0;
/// Entries per measurement.
const N: usize = 100_000;
/// Just past a doubling of the `consumed` table (hashbrown: 65,536 buckets hold 57,344):
/// the worst bytes per entry.
const N_AFTER_GROWTH: usize = 57_345;

const ISS: &str = "https://auth.example.com";
const AUD: &str = "https://api.example.com";
const NOW: u64 = 1_900_000_000;
/// Far enough ahead that no sweep forgets anything during a measurement.
const LATER: u64 = NOW + 3600;

/// Net heap bytes (allocated − freed) since `region` started.
fn net(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
}

/// splitmix64, for distinct ids without a dependency.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `len` base64url characters, as `random::id` makes (22 for 128 bits).
    fn b64(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.next() & 63) as usize]))
            .collect()
    }

    /// The store key verify consumes: `jti:` + a 22-character id.
    fn jti_key(&mut self) -> String {
        format!("jti:{}", self.b64(22))
    }

    /// A user id: a 36-character UUID-like string.
    fn sub(&mut self) -> String {
        let s = self.b64(32);
        format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        )
    }

    fn hash(&mut self) -> [u8; 32] {
        let mut h = [0u8; 32];
        for chunk in h.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        h
    }
}

/// A store that never refuses during a measurement (the default bound is 100,000 entries
/// in all; a completed challenge adds four).
fn store() -> MemoryStore {
    MemoryStore::with_max_entries(usize::MAX)
}

fn issuer() -> Issuer {
    Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("k", Algorithm::HS256, &[7; 32]).unwrap())
        .build()
        .unwrap()
}

fn grant() -> Grant {
    Grant::new("7f3c9a1e-5b2d-4c8f-9e6a-1d2b3c4d5e6f")
        .amr(["pwd", "otp", "mfa"])
        .acr("urn:example:acr:mfa")
        .scope("openid profile billing:read billing:write")
}

/// Bytes per entry left behind by `op`, run for each of `n` distinct inputs on a fresh
/// store; also checks that dropping the store gives them all back. The inputs are made
/// (and freed) outside the count: what the store keeps, it copies.
async fn per_entry<T>(what: &str, inputs: &[T], op: impl AsyncFn(&MemoryStore, &T)) -> f64 {
    let n = inputs.len();
    let store = store();
    let region = Region::new(GLOBAL);
    for input in inputs {
        op(&store, input).await;
    }
    let held = net(&region);
    let entries = store.len();
    drop(store);
    let leaked = net(&region);
    let per = held as f64 / n as f64;
    eprintln!(
        "{what:<44} {n:>7} × → {held:>10} B held, {per:>7.1} B each ({entries} store entries); \
         after drop: {leaked} B"
    );
    assert!(
        leaked.abs() < 1024,
        "{what}: {leaked} B not freed with the store"
    );
    per
}

fn jti_keys(n: usize, seed: u64) -> Vec<String> {
    let mut ids = Ids(seed);
    (0..n).map(|_| ids.jti_key()).collect()
}

fn subs(n: usize, seed: u64) -> Vec<String> {
    let mut ids = Ids(seed);
    (0..n).map(|_| ids.sub()).collect()
}

async fn hello(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

/// Net bytes left behind by `n` outstanding challenges of each kind: login partial
/// tokens, and step-up mfa_tokens sealed by the layer's 403 answer.
async fn outstanding(n: usize) -> (i64, i64) {
    let issuer = issuer();
    let grant = grant();
    // Warm-up outside the count: lazy one-time initialisations of the crypto backends.
    for _ in 0..8 {
        drop(issuer.issue_partial(&grant).unwrap());
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        let partial = issuer.issue_partial(&grant).unwrap();
        assert!(partial.token.len() > 100);
        drop(partial);
    }
    let partial_held = net(&region);

    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k", Algorithm::HS256, &[7; 32]).unwrap())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [3; 32]).unwrap())).unwrap();
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .build()
        .unwrap();
    let table = RouteTable::new().route(
        Method::GET,
        "/api/billing",
        Policy::step_up(StepUp::new().amr(["hwk"]).max_age(Duration::from_secs(300))),
    );
    let mut svc = guard.route_table(table).unwrap().layer(service_fn(hello));
    let access = issuer.issue_access(&grant).unwrap().token;
    let request = || {
        Request::get("/api/billing")
            .header("authorization", format!("Bearer {access}"))
            .body(String::new())
            .unwrap()
    };
    // Warm-up: the verifier caches the access token; the sealer initialises.
    for _ in 0..8 {
        let res = svc.ready().await.unwrap().call(request()).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        let res = svc.ready().await.unwrap().call(request()).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        drop(res);
    }
    (partial_held, net(&region))
}

#[tokio::test]
async fn bytes_per_challenge() {
    let now = NOW;
    eprintln!("memory_footprint: net heap bytes (requested sizes), MemoryStore");

    // Outstanding challenges: nothing on the server.
    let n_out = 10_000;
    let (partial, step_up) = outstanding(n_out).await;
    eprintln!(
        "{:<44} {n_out:>7} × → {partial:>10} B held, {:>7.3} B each",
        "outstanding login challenge (partial token)",
        partial as f64 / n_out as f64
    );
    eprintln!(
        "{:<44} {n_out:>7} × → {step_up:>10} B held, {:>7.3} B each",
        "outstanding step-up challenge (mfa_token)",
        step_up as f64 / n_out as f64
    );

    // One consumed challenge id.
    let consume = async |s: &MemoryStore, key: &String| {
        assert!(s.consume(key, LATER, now).await.unwrap());
    };
    let per_id = per_entry("consume(jti:<22>)", &jti_keys(N, 1), consume).await;
    let per_id_worst = per_entry(
        "consume(jti:<22>), table just grown",
        &jti_keys(N_AFTER_GROWTH, 2),
        consume,
    )
    .await;

    // One failure record per user.
    let per_failure = per_entry(
        "record_failure(<36-char sub>)",
        &subs(N, 3),
        async |s: &MemoryStore, sub: &String| {
            let a = s
                .record_failure(sub, AttemptPolicy::default(), now)
                .await
                .unwrap();
            assert_eq!(a.failures, 1);
        },
    )
    .await;

    // One last TOTP step per user.
    let per_step = per_entry(
        "advance_totp_step(<36-char sub>)",
        &subs(N, 4),
        async |s: &MemoryStore, sub: &String| {
            assert!(s
                .advance_totp_step(sub, now / 30, LATER, now)
                .await
                .unwrap());
        },
    )
    .await;

    // One refresh family, as session::start makes it: the session claims as JSON.
    let claims = issuer().issue_access(&grant()).unwrap().claims;
    let session_len = serde_json::to_string(&claims).unwrap().len();
    let mut ids = Ids(5);
    let families: Vec<_> = (0..N)
        .map(|_| (ids.hash(), ids.b64(22), ids.sub()))
        .collect();
    let per_family = per_entry(
        &format!("refresh_create(session JSON {session_len} B)"),
        &families,
        async |s: &MemoryStore, (hash, family, sub): &([u8; 32], String, String)| {
            let record = RefreshRecord {
                family: family.clone(),
                sub: sub.clone(),
                session: serde_json::to_string(&claims).unwrap(),
                expires_at: LATER,
            };
            s.refresh_create(*hash, record, now).await.unwrap();
        },
    )
    .await;

    // A completed challenge of a new user, as verify leaves it (no earlier failures).
    let mut ids = Ids(6);
    let completions: Vec<_> = (0..N)
        .map(|_| (ids.jti_key(), ids.sub(), ids.hash(), ids.b64(22)))
        .collect();
    let per_completion = per_entry(
        "completed challenge (all of verify's writes)",
        &completions,
        async |s: &MemoryStore, (key, sub, hash, family): &(String, String, [u8; 32], String)| {
            assert!(s.consume(key, LATER, now).await.unwrap());
            assert!(s
                .advance_totp_step(sub, now / 30, LATER, now)
                .await
                .unwrap());
            s.clear_failures(sub, now).await.unwrap();
            let record = RefreshRecord {
                family: family.clone(),
                sub: sub.clone(),
                session: serde_json::to_string(&claims).unwrap(),
                expires_at: LATER,
            };
            s.refresh_create(*hash, record, now).await.unwrap();
        },
    )
    .await;

    eprintln!(
        "summary: consumed id {per_id:.1} B (worst {per_id_worst:.1} B), failure \
         {per_failure:.1} B, TOTP step {per_step:.1} B, refresh family {per_family:.1} B, \
         completed challenge {per_completion:.1} B; outstanding: partial {partial} B / \
         mfa_token {step_up} B for {n_out}"
    );

    // Outstanding challenges hold nothing (a few bytes of slack for lazy statics).
    assert!(
        partial.abs() < 1024 && step_up.abs() < 1024,
        "outstanding challenges hold memory: {partial} B / {step_up} B for {n_out}"
    );
    assert!(
        per_id <= MAX_BYTES_PER_CONSUMED_ID && per_id_worst <= MAX_BYTES_PER_CONSUMED_ID,
        "a consumed challenge id costs {per_id:.1} B (worst {per_id_worst:.1} B), \
         over the {MAX_BYTES_PER_CONSUMED_ID} B target"
    );
}
