//! Heap bytes per challenge, counted by a global allocator.
//!
//! An outstanding challenge (a login partial token, a sealed step-up mfa_token) is held
//! by the client only: issuing one leaves nothing behind on the server. A completed one
//! leaves, in [`MemoryStore`], what the verify endpoint writes: the spent token id
//! (`consume("jti:<22-char id>")`), the user's last TOTP step (`advance_totp_step`), and
//! a refresh family (`refresh_create`: the family, holding its current token hash); a
//! wrong code adds a failure record (`record_failure`).
//!
//! What one user can make the store keep is bounded (DESIGN §8.2): a refresh family
//! remembers at most `REFRESH_HISTORY` rotated tokens besides its current one, a user has
//! at most `MAX_SESSIONS_PER_USER` families, one attempt record, one TOTP step and one
//! pending enrollment. So the worst case per user is measured too: a family after it has
//! rotated past its history bound, and a user with every one of those at its bound.
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
use tower_stepup::factor::totp::{TotpSecret, SECRET_LEN};
use tower_stepup::store::{
    AttemptPolicy, FamilyRef, MemoryStore, RefreshRecord, Rotation, Store, MAX_SESSIONS_PER_USER,
    REFRESH_HISTORY,
};
use tower_stepup::Claims;
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

/// Upper bounds on what the store keeps for one refresh family and one user, in requested
/// heap bytes: the measured worst cases (new family 971 B, a family with its full
/// history 2,252 B, a user at every bound 64,318 B; 72,416 B from the parts) with
/// about 45 % headroom.
const MAX_BYTES_PER_NEW_FAMILY: f64 = 1_600.0;
const MAX_BYTES_PER_FULL_FAMILY: f64 = 3_300.0;
const MAX_BYTES_PER_USER: f64 = 105_000.0;
/// Families measured with their full history (each one a user of its own): just past a
/// doubling of the families table (3,585 > 3,584 that 4,096 buckets hold), the worst
/// bytes per family.
const N_FULL_FAMILIES: usize = 3_585;
/// Users measured at their worst: `MAX_SESSIONS_PER_USER` full families each, and every
/// per-user record; again just past a doubling of the families table (32 × 449 =
/// 14,368 > 14,336).
const N_WORST_USERS: usize = 449;
/// Rotations of a "full" family: past its history bound, so it has forgotten some.
const ROTATIONS: usize = REFRESH_HISTORY + 4;

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

/// One refresh family's inputs: its first token, the tokens it rotates to, its id.
struct FamilyInput {
    tokens: Vec<[u8; 32]>,
    family: String,
}

impl FamilyInput {
    fn new(ids: &mut Ids, rotations: usize) -> Self {
        Self {
            tokens: (0..=rotations).map(|_| ids.hash()).collect(),
            family: ids.b64(22),
        }
    }

    /// Starts the family of `sub` and rotates it through every token, as the refresh
    /// endpoint does.
    async fn run(&self, s: &MemoryStore, sub: &str, claims: &Claims, now: u64) {
        let record = RefreshRecord {
            family: self.family.clone(),
            sub: sub.to_owned(),
            session: claims.clone(),
            expires_at: LATER,
            idle_secs: None,
        };
        s.refresh_create(self.tokens[0], record, now).await.unwrap();
        let at = FamilyRef::new(sub, self.family.as_str());
        for pair in self.tokens.windows(2) {
            let r = s.refresh_rotate(&at, pair[0], pair[1], now).await.unwrap();
            assert!(matches!(r, Rotation::Rotated(_)), "{r:?}");
        }
    }
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
                session: claims.clone(),
                expires_at: LATER,
                idle_secs: None,
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
                session: claims.clone(),
                expires_at: LATER,
                idle_secs: None,
            };
            s.refresh_create(*hash, record, now).await.unwrap();
        },
    )
    .await;

    // A pending enrollment: `enroll:<sub>` → the new secret.
    let secret = TotpSecret::generate().unwrap();
    assert_eq!(secret.as_bytes().len(), SECRET_LEN);
    let per_pending = per_entry(
        "put(enroll:<36-char sub>, 20-byte secret)",
        &subs(N, 7),
        async |s: &MemoryStore, sub: &String| {
            let value = secret.as_bytes().to_vec();
            s.put(&format!("enroll:{sub}"), value, LATER, now)
                .await
                .unwrap();
        },
    )
    .await;

    // New families of users who have many: the user's list of families is shared.
    let mut ids = Ids(8);
    let users = subs(N_AFTER_GROWTH / MAX_SESSIONS_PER_USER + 1, 9);
    let shared: Vec<_> = (0..N_AFTER_GROWTH)
        .map(|i| {
            (
                FamilyInput::new(&mut ids, 0),
                &users[i / MAX_SESSIONS_PER_USER],
            )
        })
        .collect();
    let per_family_shared = per_entry(
        &format!("refresh_create, {MAX_SESSIONS_PER_USER} a user, tables just grown"),
        &shared,
        async |s: &MemoryStore, (family, sub): &(FamilyInput, &String)| {
            family.run(s, sub, &claims, now).await;
        },
    )
    .await;

    // A family that has rotated past its bound: its current token and REFRESH_HISTORY
    // rotated ones (a history slot each), whatever the number of refreshes. Each family
    // is a user of its own, so this includes the user's list.
    let mut ids = Ids(10);
    let full: Vec<_> = (0..N_FULL_FAMILIES)
        .map(|_| (FamilyInput::new(&mut ids, ROTATIONS), ids.sub()))
        .collect();
    let per_full_family = per_entry(
        &format!("family after {ROTATIONS} rotations, table just grown"),
        &full,
        async |s: &MemoryStore, (family, sub): &(FamilyInput, String)| {
            family.run(s, sub, &claims, now).await;
        },
    )
    .await;
    let per_token = (per_full_family - per_family) / REFRESH_HISTORY as f64;

    // A user at every bound at once, measured: MAX_SESSIONS_PER_USER full families, a
    // failure record, a TOTP step, a pending enrollment.
    let mut ids = Ids(11);
    let worst: Vec<_> = (0..N_WORST_USERS)
        .map(|_| {
            let families: Vec<_> = (0..MAX_SESSIONS_PER_USER)
                .map(|_| FamilyInput::new(&mut ids, ROTATIONS))
                .collect();
            (ids.sub(), families)
        })
        .collect();
    let per_user = per_entry(
        &format!("user at every bound ({MAX_SESSIONS_PER_USER} full families …)"),
        &worst,
        async |s: &MemoryStore, (sub, families): &(String, Vec<FamilyInput>)| {
            for family in families {
                family.run(s, sub, &claims, now).await;
            }
            let a = s
                .record_failure(sub, AttemptPolicy::default(), now)
                .await
                .unwrap();
            assert_eq!(a.failures, 1);
            assert!(s
                .advance_totp_step(sub, now / 30, LATER, now)
                .await
                .unwrap());
            s.put(
                &format!("enroll:{sub}"),
                secret.as_bytes().to_vec(),
                LATER,
                now,
            )
            .await
            .unwrap();
        },
    )
    .await;
    // The same from the parts (each full family counted with a user list of its own).
    let per_user_parts =
        MAX_SESSIONS_PER_USER as f64 * per_full_family + per_failure + per_step + per_pending;

    eprintln!(
        "summary: consumed id {per_id:.1} B (worst {per_id_worst:.1} B), failure \
         {per_failure:.1} B, TOTP step {per_step:.1} B, pending enrollment \
         {per_pending:.1} B, refresh family {per_family:.1} B, completed challenge \
         {per_completion:.1} B; outstanding: partial {partial} B / mfa_token {step_up} B \
         for {n_out}"
    );
    eprintln!(
        "summary, per family and user: new family {per_family:.0} B ({per_family_shared:.0} B \
         with the tables just grown, {MAX_SESSIONS_PER_USER} a user); full family ({REFRESH_HISTORY} rotated \
         tokens + current) {per_full_family:.0} B, i.e. {per_token:.0} B per remembered \
         token; worst case per user {per_user:.0} B measured ({:.1} KiB), {per_user_parts:.0} B \
         from the parts ({MAX_SESSIONS_PER_USER} × {per_full_family:.0} + {per_failure:.0} + \
         {per_step:.0} + {per_pending:.0})",
        per_user / 1024.0
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
    assert!(
        per_family <= MAX_BYTES_PER_NEW_FAMILY && per_family_shared <= MAX_BYTES_PER_NEW_FAMILY,
        "a new family costs {per_family:.0} B ({per_family_shared:.0} B shared list), over \
         {MAX_BYTES_PER_NEW_FAMILY} B"
    );
    assert!(
        per_full_family <= MAX_BYTES_PER_FULL_FAMILY,
        "a family with its full history costs {per_full_family:.0} B, over \
         {MAX_BYTES_PER_FULL_FAMILY} B"
    );
    // Rotations past the bound add nothing: a full family is a new one plus
    // REFRESH_HISTORY remembered tokens, each far smaller than a family.
    assert!(
        per_full_family > per_family && per_token < per_family / 4.0,
        "a remembered token costs {per_token:.0} B"
    );
    assert!(
        per_user <= MAX_BYTES_PER_USER && per_user_parts <= MAX_BYTES_PER_USER,
        "the worst case per user is {per_user:.0} B measured / {per_user_parts:.0} B from \
         the parts, over {MAX_BYTES_PER_USER} B"
    );
}
