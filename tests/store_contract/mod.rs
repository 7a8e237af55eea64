//! The behaviour of a [`Store`], specified once and run against every implementation.
//!
//! Each check is a `pub async fn` generic over the store. [`contract_tests!`] expands to
//! one `#[tokio::test]` per check, given an async constructor:
//!
//! ```ignore
//! mod store_contract;
//! contract_tests!(|| async { tower_stepup::store::MemoryStore::new() });
//! // A backend that needs a server can mark every test, e.g.:
//! // contract_tests!(|| async { connect().await }, ignore = "needs REDIS_URL");
//! ```
//!
//! Rules every check follows, so that one shared backend (one Redis) can serve them all,
//! in parallel and run after run:
//!
//! - every key, user, family and token hash is unique to the call ([`Ns`]: a per-process
//!   random id plus a counter);
//! - time is an input: `now` is [`T0`] plus an offset. Nothing sleeps and nothing reads
//!   the system clock. An implementation must therefore judge expiry by the `now` it is
//!   given (a backend TTL, set relative to that `now`, may only clean up after it);
//! - an entry with expiry `expires_at` is live while `now < expires_at` and gone from
//!   `now == expires_at` on (the boundary is asserted exactly);
//! - results are asserted exactly.

#[path = "../support/failures.rs"]
mod failures;
pub use failures::Failures;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use tokio::task::JoinSet;
use tower_stepup::revocation::{UserRevocations, REVOKED_SESSIONS_PER_USER};
use tower_stepup::store::{
    AttemptPolicy, Attempts, ChallengeOutcome, ChallengeReservation, ChallengeSettlement,
    DeviceInfo, DpopUse, Elevation, FamilyRef, FamilyRevocation, JudgedProof, LoginLimits,
    RefreshRecord, Reservation, Rotation, SessionChange, SessionInfo, Settlement, Store, TokenHash,
    LOGIN_RECORDS_PER_BUCKET, MAX_DEVICES_PER_USER, MAX_DPOP_PROOFS_PER_KEY, MAX_SESSIONS_PER_USER,
    REFRESH_HISTORY, RESERVATION_SECS,
};
use tower_stepup::Claims;

/// The base time of every check (seconds since the Unix epoch).
pub const T0: u64 = 1_700_000_000;

/// How many tasks race in the concurrency checks.
pub const RACERS: usize = 32;

/// How many tasks race in the DPoP checks: a burst of requests of one client.
pub const DPOP_RACERS: usize = 50;

/// The attempt policy of the attempt checks: 3 failures lock out for 300 s; a failure is
/// remembered for 600 s without a new one.
pub const POLICY: AttemptPolicy = AttemptPolicy {
    max_attempts: 3,
    lockout_secs: 300,
    window_secs: 600,
};

/// Builds a store with the constructor given to [`contract_tests!`].
pub async fn build<S, F, Fut>(make: F) -> S
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = S>,
{
    make().await
}

/// A namespace unique to one check call: keys, users, families and token hashes.
pub struct Ns {
    prefix: String,
    id: [u8; 16],
}

/// A fresh namespace for the check `check`.
pub fn ns(check: &str) -> Ns {
    static RUN: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let run = *RUN.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&run.to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    Ns {
        prefix: format!("contract:{check}:{run:016x}:{n}"),
        id,
    }
}

impl Ns {
    /// A key (or user, or family id) named `name` in this namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Token hash number `n` in this namespace.
    pub fn token(&self, n: u16) -> TokenHash {
        let mut t = [0u8; 32];
        t[..16].copy_from_slice(&self.id);
        t[16..18].copy_from_slice(&n.to_be_bytes());
        t[31] = 0x5a;
        t
    }

    /// A refresh record for family `family` of user `sub`, ending at `expires_at`.
    pub fn record(&self, family: &str, sub: &str, expires_at: u64) -> RefreshRecord {
        RefreshRecord {
            family: self.key(family),
            sub: self.key(sub),
            session: claims(json!({
                "sub": self.key(sub),
                "sid": self.key(family),
                "exp": expires_at,
                "amr": ["pwd"],
            })),
            expires_at,
            idle_secs: None,
        }
    }
}

/// Where `record`'s family is found (what its refresh tokens carry).
pub fn at(record: &RefreshRecord) -> FamilyRef {
    FamilyRef::new(&record.sub, record.family.as_str())
}

/// Session claims from JSON (`sub` and `exp` are required).
pub fn claims(json: Value) -> Claims {
    serde_json::from_value(json).unwrap()
}

fn clean() -> Attempts {
    Attempts {
        failures: 0,
        locked_until: None,
    }
}

fn counting(failures: u32) -> Attempts {
    Attempts {
        failures,
        locked_until: None,
    }
}

fn locked(failures: u32, until: u64) -> Attempts {
    Attempts {
        failures,
        locked_until: Some(until),
    }
}

/// Runs `RACERS` tasks that wait for each other, then each run `op(i)`; returns `(i,
/// result)` of all.
async fn race<S, T, F, Fut>(store: Arc<S>, op: F) -> Vec<(usize, T)>
where
    S: Store,
    T: Send + 'static,
    F: Fn(Arc<S>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    race_of(RACERS, store, op).await
}

/// Runs `n` tasks that wait for each other, then each run `op(i)`; returns `(i, result)`
/// of all.
async fn race_of<S, T, F, Fut>(n: usize, store: Arc<S>, op: F) -> Vec<(usize, T)>
where
    S: Store,
    T: Send + 'static,
    F: Fn(Arc<S>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let ready = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let mut set = JoinSet::new();
    for i in 0..n {
        let (store, ready, op) = (store.clone(), ready.clone(), op.clone());
        set.spawn(async move {
            ready.fetch_add(1, Ordering::SeqCst);
            while ready.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
            (i, op(store, i).await)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        out.push(joined.expect("a racing task panicked"));
    }
    assert_eq!(out.len(), n);
    out
}

// ---------------------------------------------------------------------------------------
// consume / is_consumed

/// `consume` is `true` the first time and `false` every time after, until the expiry.
pub async fn consume_is_true_once<S: Store>(store: &S) {
    let ns = ns("consume_is_true_once");
    let k = ns.key("jti");
    let exp = T0 + 300;
    assert_eq!(store.consume(&k, exp, T0).await, Ok(true));
    assert_eq!(store.consume(&k, exp, T0).await, Ok(false));
    assert_eq!(store.consume(&k, exp, T0 + 1).await, Ok(false));
    assert_eq!(store.consume(&k, exp, T0 + 299).await, Ok(false));
    // A later expiry given on replay does not make it new either.
    assert_eq!(store.consume(&k, exp + 1000, T0 + 10).await, Ok(false));
}

/// A released key can be consumed again (once); releasing touches no other key.
pub async fn release_undoes_consume<S: Store>(store: &S) {
    let ns = ns("release_undoes_consume");
    let (k, other) = (ns.key("jti"), ns.key("other"));
    let exp = T0 + 300;
    assert_eq!(store.consume(&k, exp, T0).await, Ok(true));
    assert_eq!(store.consume(&other, exp, T0).await, Ok(true));
    assert_eq!(store.release(&k).await, Ok(()));
    assert_eq!(store.is_consumed(&k, T0 + 1).await, Ok(false));
    assert_eq!(store.is_consumed(&other, T0 + 1).await, Ok(true));
    assert_eq!(store.consume(&k, exp, T0 + 1).await, Ok(true));
    assert_eq!(store.consume(&k, exp, T0 + 2).await, Ok(false));
    // Releasing a key never consumed is harmless.
    assert_eq!(store.release(&ns.key("never")).await, Ok(()));
    assert_eq!(store.consume(&ns.key("never"), exp, T0).await, Ok(true));
}

/// Consuming one key leaves others unconsumed.
pub async fn consume_keys_are_independent<S: Store>(store: &S) {
    let ns = ns("consume_keys_are_independent");
    let (a, b) = (ns.key("a"), ns.key("b"));
    let exp = T0 + 300;
    assert_eq!(store.consume(&a, exp, T0).await, Ok(true));
    assert_eq!(store.is_consumed(&b, T0).await, Ok(false));
    assert_eq!(store.consume(&b, exp, T0).await, Ok(true));
    assert_eq!(store.consume(&a, exp, T0).await, Ok(false));
    assert_eq!(store.consume(&b, exp, T0).await, Ok(false));
    // A key that only shares a prefix is another key.
    assert_eq!(store.consume(&format!("{a}x"), exp, T0).await, Ok(true));
}

/// At `expires_at` a consumed key is forgotten: `consume` is `true` again (once).
pub async fn consume_forgets_key_at_expiry<S: Store>(store: &S) {
    let ns = ns("consume_forgets_key_at_expiry");
    let k = ns.key("jti");
    assert_eq!(store.consume(&k, T0 + 60, T0).await, Ok(true));
    assert_eq!(store.consume(&k, T0 + 60, T0 + 59).await, Ok(false));
    assert_eq!(store.consume(&k, T0 + 200, T0 + 60).await, Ok(true));
    // Remembered again, until the new expiry.
    assert_eq!(store.consume(&k, T0 + 200, T0 + 61).await, Ok(false));
    assert_eq!(store.consume(&k, T0 + 200, T0 + 199).await, Ok(false));
    assert_eq!(store.consume(&k, T0 + 400, T0 + 1000).await, Ok(true));
}

/// `is_consumed`: `false` before `consume`, `true` after, `false` from the expiry on; it
/// does not consume.
pub async fn is_consumed_reflects_consume<S: Store>(store: &S) {
    let ns = ns("is_consumed_reflects_consume");
    let k = ns.key("jti");
    assert_eq!(store.is_consumed(&k, T0).await, Ok(false));
    assert_eq!(store.is_consumed(&k, T0).await, Ok(false));
    assert_eq!(store.consume(&k, T0 + 60, T0).await, Ok(true));
    assert_eq!(store.is_consumed(&k, T0).await, Ok(true));
    assert_eq!(store.is_consumed(&k, T0 + 59).await, Ok(true));
    assert_eq!(store.is_consumed(&k, T0 + 60).await, Ok(false));
    assert_eq!(store.is_consumed(&k, T0 + 10_000).await, Ok(false));
}

// ---------------------------------------------------------------------------------------
// concurrency

/// Of `RACERS` concurrent `consume` of one key, exactly one is `true`.
pub async fn concurrent_consume_has_one_winner<S: Store>(store: Arc<S>) {
    let ns = ns("concurrent_consume_has_one_winner");
    let k = Arc::new(ns.key("jti"));
    let key = k.clone();
    let results = race(store.clone(), move |s, _| {
        let key = key.clone();
        async move { s.consume(&key, T0 + 300, T0).await }
    })
    .await;
    let wins = results.iter().filter(|(_, r)| *r == Ok(true)).count();
    let losses = results.iter().filter(|(_, r)| *r == Ok(false)).count();
    assert_eq!((wins, losses), (1, RACERS - 1), "{results:?}");
    assert_eq!(store.is_consumed(&k, T0).await, Ok(true));
}

/// Of `RACERS` concurrent `advance_totp_step` of one user to the same step, exactly one
/// is `true`.
pub async fn concurrent_totp_step_has_one_winner<S: Store>(store: Arc<S>) {
    let ns = ns("concurrent_totp_step_has_one_winner");
    let user = Arc::new(ns.key("user"));
    let u = user.clone();
    let results = race(store.clone(), move |s, _| {
        let u = u.clone();
        async move { s.advance_totp_step(&u, 1000, T0 + 90, T0).await }
    })
    .await;
    let wins = results.iter().filter(|(_, r)| *r == Ok(true)).count();
    let losses = results.iter().filter(|(_, r)| *r == Ok(false)).count();
    assert_eq!((wins, losses), (1, RACERS - 1), "{results:?}");
    assert_eq!(
        store.advance_totp_step(&user, 1000, T0 + 90, T0).await,
        Ok(false)
    );
}

/// Of `RACERS` concurrent rotations of one refresh token (each to its own new token),
/// exactly one is `Rotated`; exactly one other sees the replay (`Reused`), which revokes
/// the family, so all the rest are `Invalid`, and so is the winner's new token.
pub async fn concurrent_refresh_rotate_has_one_winner<S: Store>(store: Arc<S>) {
    let ns = ns("concurrent_refresh_rotate_has_one_winner");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    store
        .refresh_create(ns.token(0), record.clone(), T0)
        .await
        .unwrap();
    let tokens: Arc<Vec<TokenHash>> = Arc::new((0..=RACERS as u16).map(|n| ns.token(n)).collect());
    let (t, a) = (tokens.clone(), at.clone());
    let results = race(store.clone(), move |s, i| {
        let (t, a) = (t.clone(), a.clone());
        async move { s.refresh_rotate(&a, t[0], t[i + 1], T0 + 10).await }
    })
    .await;
    let rotated: Vec<usize> = results
        .iter()
        .filter(|(_, r)| *r == Ok(Rotation::Rotated(record.clone())))
        .map(|(i, _)| *i)
        .collect();
    let reused = Ok(Rotation::Reused {
        family: record.family.clone(),
        sub: record.sub.clone(),
    });
    let reused = results.iter().filter(|(_, r)| *r == reused).count();
    let invalid = results
        .iter()
        .filter(|(_, r)| *r == Ok(Rotation::Invalid))
        .count();
    assert_eq!(rotated.len(), 1, "{results:?}");
    assert_eq!((reused, invalid), (1, RACERS - 2), "{results:?}");
    let winner_token = tokens[rotated[0] + 1];
    assert_eq!(
        store
            .refresh_rotate(&at, winner_token, ns.token(999), T0 + 20)
            .await,
        Ok(Rotation::Invalid)
    );
}

// ---------------------------------------------------------------------------------------
// attempts

/// A user never seen has no failures and is not locked.
pub async fn attempts_start_clean<S: Store>(store: &S) {
    let ns = ns("attempts_start_clean");
    let a = store.attempts(&ns.key("user"), T0).await.unwrap();
    assert_eq!(a, clean());
    assert!(!a.is_locked(T0));
}

/// Each `record_failure` below the limit counts one more failure, without a lockout, and
/// `attempts` reports the same state.
pub async fn record_failure_counts_up<S: Store>(store: &S) {
    let ns = ns("record_failure_counts_up");
    let user = ns.key("user");
    for (i, now) in [(1, T0), (2, T0 + 5)] {
        assert_eq!(
            store.record_failure(&user, POLICY, now).await,
            Ok(counting(i))
        );
        assert_eq!(store.attempts(&user, now).await, Ok(counting(i)));
    }
    assert!(!store
        .attempts(&user, T0 + 5)
        .await
        .unwrap()
        .is_locked(T0 + 5));
}

/// The failure that reaches `max_attempts` locks the user out until `now +
/// lockout_secs`.
pub async fn reaching_max_attempts_locks_out<S: Store>(store: &S) {
    let ns = ns("reaching_max_attempts_locks_out");
    let user = ns.key("user");
    store.record_failure(&user, POLICY, T0).await.unwrap();
    store.record_failure(&user, POLICY, T0 + 1).await.unwrap();
    let until = T0 + 2 + POLICY.lockout_secs;
    let a = store.record_failure(&user, POLICY, T0 + 2).await.unwrap();
    assert_eq!(a, locked(3, until));
    assert!(a.is_locked(T0 + 2));
    assert_eq!(store.attempts(&user, T0 + 2).await, Ok(locked(3, until)));
    assert_eq!(store.attempts(&user, until - 1).await, Ok(locked(3, until)));
}

/// Failures during a lockout neither extend it nor count beyond `max_attempts`.
pub async fn failures_during_lockout_change_nothing<S: Store>(store: &S) {
    let ns = ns("failures_during_lockout_change_nothing");
    let user = ns.key("user");
    for now in [T0, T0 + 1, T0 + 2] {
        store.record_failure(&user, POLICY, now).await.unwrap();
    }
    let until = T0 + 2 + POLICY.lockout_secs;
    for now in [T0 + 3, T0 + 100, until - 1] {
        assert_eq!(
            store.record_failure(&user, POLICY, now).await,
            Ok(locked(3, until))
        );
    }
    assert_eq!(store.attempts(&user, until - 1).await, Ok(locked(3, until)));
}

/// The lockout ends at `locked_until`; then the slate is clean and the next failure
/// counts 1.
pub async fn lockout_ends_at_locked_until<S: Store>(store: &S) {
    let ns = ns("lockout_ends_at_locked_until");
    let user = ns.key("user");
    for now in [T0, T0 + 1, T0 + 2] {
        store.record_failure(&user, POLICY, now).await.unwrap();
    }
    let until = T0 + 2 + POLICY.lockout_secs;
    let a = store.attempts(&user, until - 1).await.unwrap();
    assert!(a.is_locked(until - 1));
    assert!(!a.is_locked(until), "is_locked is false at locked_until");
    assert_eq!(store.attempts(&user, until).await, Ok(clean()));
    assert_eq!(store.attempts(&user, until + 1000).await, Ok(clean()));
    assert_eq!(
        store.record_failure(&user, POLICY, until).await,
        Ok(counting(1))
    );
    assert_eq!(store.attempts(&user, until).await, Ok(counting(1)));
    // And the count to the next lockout starts over.
    store
        .record_failure(&user, POLICY, until + 1)
        .await
        .unwrap();
    assert_eq!(
        store.record_failure(&user, POLICY, until + 2).await,
        Ok(locked(3, until + 2 + POLICY.lockout_secs))
    );
}

/// `clear_failures` forgets the failures counted so far: the next failure counts 1.
pub async fn clear_failures_resets_count<S: Store>(store: &S) {
    let ns = ns("clear_failures_resets_count");
    let user = ns.key("user");
    store.record_failure(&user, POLICY, T0).await.unwrap();
    store.record_failure(&user, POLICY, T0 + 1).await.unwrap();
    store.clear_failures(&user, T0 + 2).await.unwrap();
    assert_eq!(store.attempts(&user, T0 + 2).await, Ok(clean()));
    assert_eq!(
        store.record_failure(&user, POLICY, T0 + 3).await,
        Ok(counting(1))
    );
    // Clearing a user without failures is fine.
    store.clear_failures(&ns.key("nobody"), T0).await.unwrap();
    assert_eq!(store.attempts(&ns.key("nobody"), T0).await, Ok(clean()));
}

/// `clear_failures` does not end a running lockout (the number of failures reported
/// during it is left to the implementation); it still ends at `locked_until`.
pub async fn clear_failures_keeps_running_lockout<S: Store>(store: &S) {
    let ns = ns("clear_failures_keeps_running_lockout");
    let user = ns.key("user");
    for now in [T0, T0 + 1, T0 + 2] {
        store.record_failure(&user, POLICY, now).await.unwrap();
    }
    let until = T0 + 2 + POLICY.lockout_secs;
    store.clear_failures(&user, T0 + 10).await.unwrap();
    let a = store.attempts(&user, T0 + 10).await.unwrap();
    assert_eq!(a.locked_until, Some(until));
    assert!(a.is_locked(T0 + 10));
    // Nor does a failure after the clear extend it.
    let a = store.record_failure(&user, POLICY, T0 + 11).await.unwrap();
    assert_eq!(a.locked_until, Some(until));
    assert_eq!(store.attempts(&user, until).await, Ok(clean()));
}

/// Failures are forgotten `window_secs` after the last one; each new failure restarts
/// the window.
pub async fn failures_forgotten_after_window<S: Store>(store: &S) {
    let ns = ns("failures_forgotten_after_window");
    let user = ns.key("user");
    let w = POLICY.window_secs;
    store.record_failure(&user, POLICY, T0).await.unwrap();
    assert_eq!(store.attempts(&user, T0 + w - 1).await, Ok(counting(1)));
    assert_eq!(store.attempts(&user, T0 + w).await, Ok(clean()));
    // Forgotten: the next failure counts 1 again.
    assert_eq!(
        store.record_failure(&user, POLICY, T0 + w).await,
        Ok(counting(1))
    );
    // A second failure within the window counts 2 and restarts the window.
    let t1 = T0 + w + 500;
    assert_eq!(
        store.record_failure(&user, POLICY, t1).await,
        Ok(counting(2))
    );
    assert_eq!(store.attempts(&user, t1 + w - 1).await, Ok(counting(2)));
    assert_eq!(store.attempts(&user, t1 + w).await, Ok(clean()));
    assert_eq!(
        store.record_failure(&user, POLICY, t1 + w).await,
        Ok(counting(1))
    );
}

/// Failures, lockouts and clears of one user do not touch another.
pub async fn attempts_users_are_independent<S: Store>(store: &S) {
    let ns = ns("attempts_users_are_independent");
    let (a, b) = (ns.key("alice"), ns.key("bob"));
    for now in [T0, T0 + 1, T0 + 2] {
        store.record_failure(&a, POLICY, now).await.unwrap();
    }
    assert!(store.attempts(&a, T0 + 2).await.unwrap().is_locked(T0 + 2));
    assert_eq!(store.attempts(&b, T0 + 2).await, Ok(clean()));
    assert_eq!(
        store.record_failure(&b, POLICY, T0 + 3).await,
        Ok(counting(1))
    );
    store.clear_failures(&b, T0 + 4).await.unwrap();
    assert_eq!(
        store.attempts(&a, T0 + 4).await,
        Ok(locked(3, T0 + 2 + POLICY.lockout_secs))
    );
}

// ---------------------------------------------------------------------------------------
// TOTP steps

/// A step is accepted only if it is later than every step accepted before for the user.
pub async fn totp_step_must_increase<S: Store>(store: &S) {
    let ns = ns("totp_step_must_increase");
    let user = ns.key("user");
    let exp = T0 + 90;
    assert_eq!(store.advance_totp_step(&user, 100, exp, T0).await, Ok(true));
    assert_eq!(
        store.advance_totp_step(&user, 100, exp, T0).await,
        Ok(false)
    );
    assert_eq!(store.advance_totp_step(&user, 99, exp, T0).await, Ok(false));
    assert_eq!(store.advance_totp_step(&user, 0, exp, T0).await, Ok(false));
    assert_eq!(store.advance_totp_step(&user, 101, exp, T0).await, Ok(true));
    // A refused step does not lower the mark.
    assert_eq!(
        store.advance_totp_step(&user, 101, exp, T0).await,
        Ok(false)
    );
    assert_eq!(
        store.advance_totp_step(&user, 100, exp, T0).await,
        Ok(false)
    );
    assert_eq!(
        store.advance_totp_step(&user, 1_000, exp, T0).await,
        Ok(true)
    );
    assert_eq!(
        store.advance_totp_step(&user, 999, exp, T0).await,
        Ok(false)
    );
}

/// The last step is remembered until its `expires_at`; after that a lower step is
/// accepted again. Callers pick `expires_at` as the time from which that step (and so
/// every lower one) can no longer be valid, so this accepts nothing twice.
pub async fn totp_step_forgotten_at_expiry<S: Store>(store: &S) {
    let ns = ns("totp_step_forgotten_at_expiry");
    let user = ns.key("user");
    assert_eq!(
        store.advance_totp_step(&user, 100, T0 + 90, T0).await,
        Ok(true)
    );
    assert_eq!(
        store.advance_totp_step(&user, 50, T0 + 90, T0 + 89).await,
        Ok(false)
    );
    assert_eq!(
        store.advance_totp_step(&user, 50, T0 + 200, T0 + 90).await,
        Ok(true)
    );
    // The mark is now 50, until T0 + 200.
    assert_eq!(
        store.advance_totp_step(&user, 50, T0 + 200, T0 + 100).await,
        Ok(false)
    );
    assert_eq!(
        store.advance_totp_step(&user, 51, T0 + 200, T0 + 100).await,
        Ok(true)
    );
}

/// The steps of one user do not limit another's.
pub async fn totp_users_are_independent<S: Store>(store: &S) {
    let ns = ns("totp_users_are_independent");
    let (a, b) = (ns.key("alice"), ns.key("bob"));
    assert_eq!(
        store.advance_totp_step(&a, 100, T0 + 90, T0).await,
        Ok(true)
    );
    assert_eq!(
        store.advance_totp_step(&b, 100, T0 + 90, T0).await,
        Ok(true)
    );
    assert_eq!(
        store.advance_totp_step(&b, 50, T0 + 90, T0).await,
        Ok(false)
    );
    assert_eq!(
        store.advance_totp_step(&a, 100, T0 + 90, T0).await,
        Ok(false)
    );
    assert_eq!(
        store.advance_totp_step(&b, 101, T0 + 90, T0).await,
        Ok(true)
    );
    assert_eq!(
        store.advance_totp_step(&a, 101, T0 + 90, T0).await,
        Ok(true)
    );
}

// ---------------------------------------------------------------------------------------
// put / get / delete

/// `get` returns exactly what `put` stored (any bytes), until the expiry; an unknown key
/// is `None`.
pub async fn get_returns_put_value<S: Store>(store: &S) {
    let ns = ns("get_returns_put_value");
    let (k, other) = (ns.key("enroll"), ns.key("other"));
    let value: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    assert_eq!(store.get(&k, T0).await, Ok(None));
    store.put(&k, value.clone(), T0 + 600, T0).await.unwrap();
    assert_eq!(store.get(&k, T0).await, Ok(Some(value.clone())));
    assert_eq!(store.get(&k, T0 + 599).await, Ok(Some(value)));
    assert_eq!(store.get(&other, T0).await, Ok(None));
    // An empty value is a value.
    store.put(&other, Vec::new(), T0 + 600, T0).await.unwrap();
    assert_eq!(store.get(&other, T0).await, Ok(Some(Vec::new())));
}

/// From `expires_at` on, `get` is `None`.
pub async fn get_is_none_after_expiry<S: Store>(store: &S) {
    let ns = ns("get_is_none_after_expiry");
    let k = ns.key("enroll");
    store
        .put(&k, b"secret".to_vec(), T0 + 600, T0)
        .await
        .unwrap();
    assert_eq!(store.get(&k, T0 + 599).await, Ok(Some(b"secret".to_vec())));
    assert_eq!(store.get(&k, T0 + 600).await, Ok(None));
    assert_eq!(store.get(&k, T0 + 10_000).await, Ok(None));
}

/// `delete` removes the value; deleting again, or an unknown key, is fine.
pub async fn delete_removes_value<S: Store>(store: &S) {
    let ns = ns("delete_removes_value");
    let (k, keep) = (ns.key("enroll"), ns.key("keep"));
    store.put(&k, b"v".to_vec(), T0 + 600, T0).await.unwrap();
    store.put(&keep, b"w".to_vec(), T0 + 600, T0).await.unwrap();
    store.delete(&k).await.unwrap();
    assert_eq!(store.get(&k, T0).await, Ok(None));
    assert_eq!(store.get(&keep, T0).await, Ok(Some(b"w".to_vec())));
    store.delete(&k).await.unwrap();
    store.delete(&ns.key("never")).await.unwrap();
    // The key can be put again.
    store
        .put(&k, b"x".to_vec(), T0 + 600, T0 + 1)
        .await
        .unwrap();
    assert_eq!(store.get(&k, T0 + 1).await, Ok(Some(b"x".to_vec())));
}

/// `put` on a live key replaces value and expiry.
pub async fn put_overwrites_value<S: Store>(store: &S) {
    let ns = ns("put_overwrites_value");
    let k = ns.key("enroll");
    store
        .put(&k, b"first".to_vec(), T0 + 600, T0)
        .await
        .unwrap();
    store
        .put(&k, b"second".to_vec(), T0 + 100, T0 + 1)
        .await
        .unwrap();
    assert_eq!(store.get(&k, T0 + 1).await, Ok(Some(b"second".to_vec())));
    // The new, shorter expiry applies.
    assert_eq!(store.get(&k, T0 + 100).await, Ok(None));
    store
        .put(&k, b"third".to_vec(), T0 + 1000, T0 + 200)
        .await
        .unwrap();
    assert_eq!(store.get(&k, T0 + 999).await, Ok(Some(b"third".to_vec())));
}

// ---------------------------------------------------------------------------------------
// refresh families

/// The current token rotates, each time answering the family's record.
pub async fn refresh_rotation_chain<S: Store>(store: &S) {
    let ns = ns("refresh_rotation_chain");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 10).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 20).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(3), t(4), T0 + 3599).await,
        Ok(Rotation::Rotated(record))
    );
}

/// Presenting a token that was already rotated is a replay: `Reused`, and the whole
/// family is revoked: its current token, the replayed one again, and the token the
/// replay tried to rotate to are all `Invalid` after.
pub async fn refresh_replay_revokes_family<S: Store>(store: &S) {
    let ns = ns("refresh_replay_revokes_family");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 10).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 20).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(4), T0 + 30).await,
        Ok(Rotation::Reused {
            family: record.family.clone(),
            sub: record.sub.clone(),
        })
    );
    assert_eq!(
        store.refresh_rotate(&at, t(3), t(5), T0 + 31).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(4), t(6), T0 + 32).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(7), T0 + 33).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(8), T0 + 34).await,
        Ok(Rotation::Invalid)
    );
}

/// A token the store never saw is `Invalid` (and `refresh_revoke` of it is `false`).
pub async fn refresh_unknown_token_is_invalid<S: Store>(store: &S) {
    let ns = ns("refresh_unknown_token_is_invalid");
    let at = FamilyRef::new(&ns.key("user"), ns.key("family"));
    assert_eq!(
        store
            .refresh_rotate(&at, ns.token(1), ns.token(2), T0)
            .await,
        Ok(Rotation::Invalid)
    );
    // Nor did that make the new token valid.
    assert_eq!(
        store
            .refresh_rotate(&at, ns.token(2), ns.token(3), T0)
            .await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store
            .refresh_revoke(&at, ns.token(1), &ns.key("user"), T0)
            .await,
        Ok(false)
    );
}

/// From the record's `expires_at` on, no token of the family rotates, however recently
/// it was issued.
pub async fn refresh_family_has_absolute_expiry<S: Store>(store: &S) {
    let ns = ns("refresh_family_has_absolute_expiry");
    let end = T0 + 3600;
    let record = ns.record("family", "user", end);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), end - 2).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), end - 1).await,
        Ok(Rotation::Rotated(record))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(3), t(4), end).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(3), t(4), end + 1000).await,
        Ok(Rotation::Invalid)
    );
    // An old token after the end is not a detectable replay either, just invalid.
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(5), end + 1).await,
        Ok(Rotation::Invalid)
    );
}

/// `refresh_revoke` with another user's sub is `false` and changes nothing.
pub async fn refresh_revoke_needs_owner<S: Store>(store: &S) {
    let ns = ns("refresh_revoke_needs_owner");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store
            .refresh_revoke(&at, t(1), &ns.key("mallory"), T0 + 1)
            .await,
        Ok(false)
    );
    assert_eq!(store.refresh_revoke(&at, t(1), "", T0 + 1).await, Ok(false));
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 2).await,
        Ok(Rotation::Rotated(record))
    );
}

/// `refresh_revoke` by the owner is `true` and revokes the family: its current token is
/// `Invalid` after.
pub async fn refresh_revoke_by_owner_revokes_family<S: Store>(store: &S) {
    let ns = ns("refresh_revoke_by_owner_revokes_family");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_revoke(&at, t(1), &record.sub, T0 + 1).await,
        Ok(true)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 2).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 3).await,
        Ok(Rotation::Invalid)
    );
}

/// `refresh_revoke` works with any token of the family, an already rotated one too.
pub async fn refresh_revoke_accepts_any_family_token<S: Store>(store: &S) {
    let ns = ns("refresh_revoke_accepts_any_family_token");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 10).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 20).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.refresh_revoke(&at, t(1), &record.sub, T0 + 30).await,
        Ok(true)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(3), t(4), T0 + 31).await,
        Ok(Rotation::Invalid)
    );
}

/// `revoke_family` by family id revokes it; an unknown family id is no error.
pub async fn revoke_family_revokes<S: Store>(store: &S) {
    let ns = ns("revoke_family_revokes");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let user = record.sub.as_str();
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 10).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.revoke_family(user, &record.family, T0 + 20).await,
        Ok(FamilyRevocation::Revoked)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 21).await,
        Ok(Rotation::Invalid)
    );
    // Once revoked, it stays revoked: a step-up must not revive it.
    assert_eq!(
        store.revoke_family(user, &record.family, T0 + 22).await,
        Ok(FamilyRevocation::AlreadyRevoked)
    );
    assert_eq!(
        store
            .revoke_family(user, &ns.key("no-such-family"), T0)
            .await,
        Ok(FamilyRevocation::Unknown)
    );
    // A family past its absolute lifetime is unknown, revoked or not.
    assert_eq!(
        store.revoke_family(user, &record.family, T0 + 3600).await,
        Ok(FamilyRevocation::Unknown)
    );
    // Logged out (by refresh token) counts as revoked.
    let other = ns.record("family-2", "user", T0 + 3600);
    store.refresh_create(t(5), other.clone(), T0).await.unwrap();
    assert_eq!(
        store
            .refresh_revoke(
                &FamilyRef::new(&other.sub, other.family.as_str()),
                t(5),
                &other.sub,
                T0 + 1
            )
            .await,
        Ok(true)
    );
    assert_eq!(
        store.revoke_family(&other.sub, &other.family, T0 + 2).await,
        Ok(FamilyRevocation::AlreadyRevoked)
    );
}

/// Rotation, replay and revocation of one family leave another (of the same user)
/// alone.
pub async fn refresh_families_are_independent<S: Store>(store: &S) {
    let ns = ns("refresh_families_are_independent");
    let a = ns.record("family-a", "user", T0 + 3600);
    let b = ns.record("family-b", "user", T0 + 7200);
    let t = |n| ns.token(n);
    store.refresh_create(t(10), a.clone(), T0).await.unwrap();
    store.refresh_create(t(20), b.clone(), T0).await.unwrap();
    assert_eq!(
        store.refresh_rotate(&at(&a), t(10), t(11), T0 + 1).await,
        Ok(Rotation::Rotated(a.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at(&b), t(20), t(21), T0 + 2).await,
        Ok(Rotation::Rotated(b.clone()))
    );
    // A replay in family A revokes A only.
    assert_eq!(
        store.refresh_rotate(&at(&a), t(10), t(12), T0 + 3).await,
        Ok(Rotation::Reused {
            family: a.family.clone(),
            sub: a.sub.clone(),
        })
    );
    assert_eq!(
        store.refresh_rotate(&at(&b), t(21), t(22), T0 + 4).await,
        Ok(Rotation::Rotated(b.clone()))
    );
    // A token of B presented twice is B's replay, not A's.
    assert_eq!(
        store.refresh_rotate(&at(&b), t(21), t(23), T0 + 5).await,
        Ok(Rotation::Reused {
            family: b.family.clone(),
            sub: b.sub.clone(),
        })
    );

    // Revocations too.
    let c = ns.record("family-c", "user", T0 + 3600);
    let d = ns.record("family-d", "user", T0 + 3600);
    store.refresh_create(t(30), c.clone(), T0).await.unwrap();
    store.refresh_create(t(40), d.clone(), T0).await.unwrap();
    store
        .revoke_family(&c.sub, &c.family, T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at(&d), t(40), t(41), T0 + 2).await,
        Ok(Rotation::Rotated(d.clone()))
    );
    // Logging out of D leaves another live family of the user alone.
    let e = ns.record("family-e", "user", T0 + 3600);
    store.refresh_create(t(50), e.clone(), T0).await.unwrap();
    assert_eq!(
        store.refresh_revoke(&at(&d), t(41), &d.sub, T0 + 3).await,
        Ok(true)
    );
    assert_eq!(
        store.refresh_rotate(&at(&e), t(50), t(51), T0 + 4).await,
        Ok(Rotation::Rotated(e))
    );
}

// ---------------------------------------------------------------------------------------
// attempt reservations (DESIGN §8.2)

/// Reservations in flight count against the limit: with `max_attempts` granted and none
/// settled, the next is `Busy` (not a lockout); a release gives one back.
pub async fn reservations_in_flight_fill_the_limit<S: Store>(store: &S) {
    let ns = ns("reservations_in_flight_fill_the_limit");
    let user = ns.key("user");
    for _ in 0..POLICY.max_attempts {
        assert_eq!(
            store.reserve_attempt(&user, POLICY, T0).await,
            Ok(Reservation::Granted)
        );
    }
    assert_eq!(
        store.reserve_attempt(&user, POLICY, T0).await,
        Ok(Reservation::Busy)
    );
    assert_eq!(
        store.attempts(&user, T0).await,
        Ok(clean()),
        "nothing recorded"
    );
    let a = store
        .settle_attempt(&user, Settlement::Released, POLICY, T0)
        .await;
    assert_eq!(a, Ok(clean()));
    assert_eq!(
        store.reserve_attempt(&user, POLICY, T0).await,
        Ok(Reservation::Granted)
    );
    assert_eq!(
        store.reserve_attempt(&user, POLICY, T0).await,
        Ok(Reservation::Busy)
    );
}

/// Failures settled from reservations reach the limit and lock out; a reservation then
/// is refused as `Locked` with the lockout's end, until it ends.
pub async fn settled_failures_lock_out<S: Store>(store: &S) {
    let ns = ns("settled_failures_lock_out");
    let user = ns.key("user");
    for i in 1..=POLICY.max_attempts {
        assert_eq!(
            store.reserve_attempt(&user, POLICY, T0).await,
            Ok(Reservation::Granted)
        );
        let a = store
            .settle_attempt(&user, Settlement::Failed, POLICY, T0)
            .await
            .unwrap();
        assert_eq!(a.failures, i);
    }
    let until = T0 + POLICY.lockout_secs;
    assert_eq!(
        store.attempts(&user, T0).await,
        Ok(locked(POLICY.max_attempts, until))
    );
    assert_eq!(
        store.reserve_attempt(&user, POLICY, until - 1).await,
        Ok(Reservation::Locked { until })
    );
    assert_eq!(
        store.reserve_attempt(&user, POLICY, until).await,
        Ok(Reservation::Granted)
    );
}

/// A success forgets the failures, and leaves other reservations in flight counted.
pub async fn settled_success_clears_failures<S: Store>(store: &S) {
    let ns = ns("settled_success_clears_failures");
    let user = ns.key("user");
    store.reserve_attempt(&user, POLICY, T0).await.unwrap();
    store
        .settle_attempt(&user, Settlement::Failed, POLICY, T0)
        .await
        .unwrap();
    store.reserve_attempt(&user, POLICY, T0).await.unwrap();
    store.reserve_attempt(&user, POLICY, T0).await.unwrap();
    let a = store
        .settle_attempt(&user, Settlement::Succeeded, POLICY, T0 + 1)
        .await;
    assert_eq!(a, Ok(clean()));
    // One reservation is still in flight: two more fit, not three.
    assert_eq!(
        store.reserve_attempt(&user, POLICY, T0 + 1).await,
        Ok(Reservation::Granted)
    );
    assert_eq!(
        store.reserve_attempt(&user, POLICY, T0 + 1).await,
        Ok(Reservation::Granted)
    );
    assert_eq!(
        store.reserve_attempt(&user, POLICY, T0 + 1).await,
        Ok(Reservation::Busy)
    );
}

/// A reservation never settled (a crashed request) is forgotten after
/// `RESERVATION_SECS`.
pub async fn abandoned_reservations_expire<S: Store>(store: &S) {
    let ns = ns("abandoned_reservations_expire");
    let user = ns.key("user");
    for _ in 0..POLICY.max_attempts {
        store.reserve_attempt(&user, POLICY, T0).await.unwrap();
    }
    let later = T0 + RESERVATION_SECS;
    assert_eq!(
        store.reserve_attempt(&user, POLICY, later - 1).await,
        Ok(Reservation::Busy)
    );
    assert_eq!(
        store.reserve_attempt(&user, POLICY, later).await,
        Ok(Reservation::Granted)
    );
}

/// Of `RACERS` concurrent reservations of one key, exactly `max_attempts` are granted
/// and the rest are `Busy`; settling them all as failures locks the key out once.
pub async fn concurrent_reservations_grant_exactly_the_limit<S: Store>(store: Arc<S>) {
    let ns = ns("concurrent_reservations_grant_exactly_the_limit");
    let user = Arc::new(ns.key("user"));
    let u = user.clone();
    let results = race(store.clone(), move |s, _| {
        let u = u.clone();
        async move { s.reserve_attempt(&u, POLICY, T0).await }
    })
    .await;
    let granted = results
        .iter()
        .filter(|(_, r)| *r == Ok(Reservation::Granted))
        .count();
    let busy = results
        .iter()
        .filter(|(_, r)| *r == Ok(Reservation::Busy))
        .count();
    let max = POLICY.max_attempts as usize;
    assert_eq!((granted, busy), (max, RACERS - max), "{results:?}");
    for _ in 0..granted {
        store
            .settle_attempt(&user, Settlement::Failed, POLICY, T0)
            .await
            .unwrap();
    }
    let until = T0 + POLICY.lockout_secs;
    assert_eq!(
        store.attempts(&user, T0).await,
        Ok(locked(POLICY.max_attempts, until))
    );
}

// ---------------------------------------------------------------------------------------
// step-up inside a session, and the bounds per family and per user (DESIGN §8.2)

/// A step-up continues the family: the new token is current, the old one a detectable
/// replay, the record keeps its id and absolute end and carries the new session.
pub async fn refresh_elevate_continues_the_family<S: Store>(store: &S) {
    let ns = ns("refresh_elevate_continues_the_family");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    let elevated = RefreshRecord {
        session: claims(json!({
            "sub": record.sub,
            "exp": T0 + 910,
            "amr": ["pwd", "otp"],
            "auth_time": T0 + 10,
            "elevated": true,
        })),
        ..record.clone()
    };
    assert_eq!(
        store
            .refresh_elevate(
                &record.family,
                t(2),
                elevated.session.clone(),
                T0 + 5,
                T0 + 10
            )
            .await,
        Ok(Elevation::Elevated(elevated.clone()))
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 11).await,
        Ok(Rotation::Rotated(elevated.clone()))
    );
    // The token from before the step-up is a rotated one: a replay revokes the family.
    assert!(matches!(
        store.refresh_rotate(&at, t(1), t(4), T0 + 12).await,
        Ok(Rotation::Reused { .. })
    ));
    assert_eq!(
        store.refresh_rotate(&at, t(3), t(5), T0 + 13).await,
        Ok(Rotation::Invalid)
    );
}

/// A step-up never revives a revoked family, never starts an unknown one, never
/// outlives the absolute end, and a challenge issued no later than the last step-up is
/// superseded.
pub async fn refresh_elevate_refuses_ended_unknown_and_stale<S: Store>(store: &S) {
    let ns = ns("refresh_elevate_refuses_ended_unknown_and_stale");
    let end = T0 + 3600;
    let record = ns.record("family", "user", end);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    let fam = record.family.as_str();
    let session = claims(json!({"sub": record.sub, "exp": end}));
    let elevate = |n, issued, now| store.refresh_elevate(fam, t(n), session.clone(), issued, now);
    assert!(matches!(
        elevate(2, T0 + 5, T0 + 10).await,
        Ok(Elevation::Elevated(_))
    ));
    assert_eq!(elevate(3, T0 + 9, T0 + 11).await, Ok(Elevation::Superseded));
    assert_eq!(
        elevate(3, T0 + 10, T0 + 11).await,
        Ok(Elevation::Superseded)
    );
    assert!(matches!(
        elevate(3, T0 + 11, T0 + 12).await,
        Ok(Elevation::Elevated(_))
    ));
    assert_eq!(elevate(4, T0 + 20, end).await, Ok(Elevation::Unknown));
    assert_eq!(
        store
            .refresh_elevate(&ns.key("nobody"), t(5), session.clone(), T0, T0 + 1)
            .await,
        Ok(Elevation::Unknown)
    );
    assert_eq!(
        store.refresh_revoke(&at, t(3), &record.sub, T0 + 20).await,
        Ok(true)
    );
    assert_eq!(elevate(6, T0 + 21, T0 + 22).await, Ok(Elevation::Ended));
    assert_eq!(
        store.refresh_rotate(&at, t(6), t(7), T0 + 23).await,
        Ok(Rotation::Invalid)
    );
}

/// A family remembers its last `REFRESH_HISTORY` rotated tokens: a replay of one of them
/// revokes the family; an older one is merely invalid.
pub async fn refresh_history_is_bounded<S: Store>(store: &S) {
    let ns = ns("refresh_history_is_bounded");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n: usize| ns.token(n as u16);
    store
        .refresh_create(t(0), record.clone(), T0)
        .await
        .unwrap();
    let last = REFRESH_HISTORY + 1;
    for n in 0..last {
        let r = store.refresh_rotate(&at, t(n), t(n + 1), T0 + 1).await;
        assert_eq!(r, Ok(Rotation::Rotated(record.clone())));
    }
    // t(0) was rotated REFRESH_HISTORY + 1 rotations ago: forgotten, not a replay.
    assert_eq!(
        store.refresh_rotate(&at, t(0), t(100), T0 + 2).await,
        Ok(Rotation::Invalid)
    );
    let r = store
        .refresh_rotate(&at, t(last), t(last + 1), T0 + 3)
        .await;
    assert_eq!(r, Ok(Rotation::Rotated(record.clone())));
    // t(2) is the oldest one remembered now: a replay.
    assert!(matches!(
        store.refresh_rotate(&at, t(2), t(101), T0 + 4).await,
        Ok(Rotation::Reused { .. })
    ));
}

/// A user has at most `MAX_SESSIONS_PER_USER` live families: one more ends the oldest;
/// another user's are untouched.
pub async fn sessions_per_user_are_bounded<S: Store>(store: &S) {
    let ns = ns("sessions_per_user_are_bounded");
    let t = |n: usize| ns.token(n as u16);
    let other = ns.record("other-family", "other", T0 + 3600);
    store
        .refresh_create(t(1000), other.clone(), T0)
        .await
        .unwrap();
    for n in 0..=MAX_SESSIONS_PER_USER {
        let record = ns.record(&format!("family-{n}"), "user", T0 + 3600 + n as u64);
        store
            .refresh_create(t(n), record, T0 + n as u64)
            .await
            .unwrap();
    }
    let now = T0 + 100;
    let user = ns.key("user");
    let at_n = |n: usize| FamilyRef::new(&user, ns.key(&format!("family-{n}")));
    assert_eq!(
        store.refresh_rotate(&at_n(0), t(0), t(2000), now).await,
        Ok(Rotation::Invalid)
    );
    for n in 1..=MAX_SESSIONS_PER_USER {
        let r = store.refresh_rotate(&at_n(n), t(n), t(2000 + n), now).await;
        assert!(matches!(r, Ok(Rotation::Rotated(_))), "family {n}: {r:?}");
    }
    assert_eq!(
        store
            .refresh_rotate(&at(&other), t(1000), t(3000), now)
            .await,
        Ok(Rotation::Rotated(other))
    );
}

/// Sessions started in the same second (the same end) still end oldest first: with ids
/// that sort in the opposite order of their creation, the user's newest session is not
/// the one ended to make room.
pub async fn sessions_of_one_second_end_oldest_first<S: Store>(store: &S) {
    let ns = ns("sessions_of_one_second_end_oldest_first");
    let t = |n: usize| ns.token(n as u16);
    let count = MAX_SESSIONS_PER_USER + 2;
    for n in 0..count {
        // family-33, family-32, …, family-00: each sorts before the one started earlier.
        let record = ns.record(&format!("family-{:02}", count - 1 - n), "user", T0 + 3600);
        store.refresh_create(t(n), record, T0).await.unwrap();
    }
    let now = T0 + 1;
    let user = ns.key("user");
    let at_n = |n: usize| FamilyRef::new(&user, ns.key(&format!("family-{:02}", count - 1 - n)));
    for n in 0..2 {
        assert_eq!(
            store.refresh_rotate(&at_n(n), t(n), t(2000 + n), now).await,
            Ok(Rotation::Invalid),
            "session {n}, one of the two oldest, ended to make room"
        );
    }
    for n in 2..count {
        let r = store.refresh_rotate(&at_n(n), t(n), t(2000 + n), now).await;
        assert!(matches!(r, Ok(Rotation::Rotated(_))), "session {n}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// login counters (DESIGN §8.2)

/// 2 failures per (account, client), 3 per account; each locks out for 100 s.
pub const LOGIN: LoginLimits = LoginLimits {
    per_client: AttemptPolicy {
        max_attempts: 2,
        lockout_secs: 100,
        window_secs: 100,
    },
    per_account: AttemptPolicy {
        max_attempts: 3,
        lockout_secs: 100,
        window_secs: 100,
    },
};

/// An account key as the endpoints make them: hex, here unique to the namespace.
fn account(ns: &Ns, name: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&ns.key(name), &mut h);
    format!("{:016x}{:016x}", h.finish(), h.finish().rotate_left(7))
}

async fn login_fail<S: Store>(store: &S, account: &str, client: &str, now: u64) {
    assert_eq!(
        store.reserve_login(account, client, LOGIN, now).await,
        Ok(Reservation::Granted)
    );
    let settled = store.settle_login(account, client, Settlement::Failed, LOGIN, now);
    assert_eq!(settled.await, Ok(()));
}

/// The per-client limit locks one client out; the per-account limit every client; a
/// success clears both counts.
pub async fn login_limits_hold_per_client_and_per_account<S: Store>(store: &S) {
    let ns = ns("login_limits_hold_per_client_and_per_account");
    let acct = account(&ns, "alice");
    login_fail(store, &acct, "c1", T0).await;
    login_fail(store, &acct, "c1", T0).await;
    let until = T0 + 100;
    assert_eq!(
        store.reserve_login(&acct, "c1", LOGIN, T0 + 1).await,
        Ok(Reservation::Locked { until })
    );
    login_fail(store, &acct, "c2", T0 + 2).await;
    // Three failures of the account: every client is locked out now.
    let until = T0 + 102;
    assert_eq!(
        store.reserve_login(&acct, "c3", LOGIN, T0 + 3).await,
        Ok(Reservation::Locked { until })
    );
    assert_eq!(
        store.reserve_login(&acct, "c3", LOGIN, until).await,
        Ok(Reservation::Granted)
    );
    let ok = store.settle_login(&acct, "c3", Settlement::Succeeded, LOGIN, until);
    assert_eq!(ok.await, Ok(()));
    login_fail(store, &acct, "c3", until).await;
    login_fail(store, &acct, "c3", until).await;
    // Two failures since the success: c3 is at its own limit, the account is not.
    assert!(matches!(
        store.reserve_login(&acct, "c3", LOGIN, until).await,
        Ok(Reservation::Locked { .. })
    ));
    assert_eq!(
        store.reserve_login(&acct, "c4", LOGIN, until).await,
        Ok(Reservation::Granted)
    );
}

/// Reservations in flight count on both counters; a release gives them back.
pub async fn login_reservations_in_flight_count<S: Store>(store: &S) {
    let ns = ns("login_reservations_in_flight_count");
    let acct = account(&ns, "bob");
    for _ in 0..2 {
        let r = store.reserve_login(&acct, "c1", LOGIN, T0).await;
        assert_eq!(r, Ok(Reservation::Granted));
    }
    assert_eq!(
        store.reserve_login(&acct, "c1", LOGIN, T0).await,
        Ok(Reservation::Busy)
    );
    assert_eq!(
        store.reserve_login(&acct, "c2", LOGIN, T0).await,
        Ok(Reservation::Granted)
    );
    assert_eq!(
        store.reserve_login(&acct, "c3", LOGIN, T0).await,
        Ok(Reservation::Busy),
        "three in flight fill the account"
    );
    let released = store.settle_login(&acct, "c1", Settlement::Released, LOGIN, T0);
    assert_eq!(released.await, Ok(()));
    assert_eq!(
        store.reserve_login(&acct, "c3", LOGIN, T0).await,
        Ok(Reservation::Granted)
    );
}

/// A bucket holds at most `LOGIN_RECORDS_PER_BUCKET` records: names sprayed once are
/// forgotten to make room, an account with more failures is kept, and a locked one
/// stays locked.
pub async fn login_buckets_are_bounded_and_keep_the_accounts_under_attack<S: Store>(store: &S) {
    let ns = ns("login_buckets_are_bounded");
    // Every key in one bucket: the same first two hex digits.
    let key = |name: &str| format!("ab{}", &account(&ns, name)[2..]);
    let (target, locked) = (key("target"), key("locked"));
    for client in ["c1", "c2", "c3"] {
        login_fail(store, &locked, client, T0).await;
    }
    login_fail(store, &target, "c", T0).await;
    store.reserve_login(&target, "c", LOGIN, T0).await.unwrap();
    store
        .settle_login(&target, "c", Settlement::Released, LOGIN, T0)
        .await
        .unwrap();
    login_fail(store, &target, "c2", T0).await;
    // Spray far more names than the bucket holds, one failure each.
    for i in 0..LOGIN_RECORDS_PER_BUCKET * 2 {
        login_fail(store, &key(&format!("spray-{i}")), "c", T0 + 1).await;
    }
    // The target's two failures are still counted: one more locks it out.
    login_fail(store, &target, "c3", T0 + 2).await;
    assert!(matches!(
        store.reserve_login(&target, "c4", LOGIN, T0 + 2).await,
        Ok(Reservation::Locked { .. })
    ));
    assert_eq!(
        store.reserve_login(&locked, "c9", LOGIN, T0 + 2).await,
        Ok(Reservation::Locked { until: T0 + 100 })
    );
}

// ---------------------------------------------------------------------------------------
// ended sessions (revocations for every replica)

/// `revoke_sessions` merges into the user's record and returns all of it; other users
/// are untouched.
pub async fn revoke_sessions_merges_per_user<S: Store>(store: &S) {
    let ns = ns("revoke_sessions_merges_per_user");
    let (alice, bob) = (ns.key("alice"), ns.key("bob"));
    let first = UserRevocations::new(&alice).session("s1", T0 + 300);
    let got = store.revoke_sessions(&first, T0).await.unwrap();
    assert_eq!(got, first);
    let second = UserRevocations::new(&alice).session("s2", T0 + 310);
    let got = store.revoke_sessions(&second, T0 + 10).await.unwrap();
    assert_eq!(
        got.sessions,
        vec![("s1".to_owned(), T0 + 300), ("s2".to_owned(), T0 + 310)]
    );
    let cut = UserRevocations::new(&bob).before(T0 + 20, T0 + 320);
    let got = store.revoke_sessions(&cut, T0 + 20).await.unwrap();
    assert_eq!(got, cut, "bob's record holds bob's only");
}

/// A replica catching up from cursor 0 reads every user with live revocations; from a
/// later cursor, at least the users changed since; expired ones never.
pub async fn revocations_since_catches_up<S: Store>(store: &S) {
    let ns = ns("revocations_since_catches_up");
    let (alice, bob, carol) = (ns.key("alice"), ns.key("bob"), ns.key("carol"));
    let mine = |batch: &tower_stepup::store::RevocationBatch, user: &str| {
        batch.users.iter().find(|u| u.sub == user).cloned()
    };
    let a = UserRevocations::new(&alice).session("s1", T0 + 300);
    store.revoke_sessions(&a, T0).await.unwrap();
    let short = UserRevocations::new(&carol).session("s1", T0 + 5);
    store.revoke_sessions(&short, T0).await.unwrap();
    let first = store.revocations_since(0, T0 + 10).await.unwrap();
    assert_eq!(mine(&first, &alice), Some(a.clone()));
    assert_eq!(mine(&first, &carol), None, "expired: not handed out");

    let b = UserRevocations::new(&bob).session("s9", T0 + 400);
    store.revoke_sessions(&b, T0 + 11).await.unwrap();
    let next = store
        .revocations_since(first.cursor, T0 + 12)
        .await
        .unwrap();
    assert_eq!(mine(&next, &bob), Some(b), "a change after the cursor");
    let all = store.revocations_since(0, T0 + 12).await.unwrap();
    assert_eq!(mine(&all, &alice), Some(a));
}

/// However many sessions one user ends, the store keeps a bounded record: past
/// [`REVOKED_SESSIONS_PER_USER`] they collapse into one cutoff.
pub async fn revocations_are_bounded_per_user<S: Store>(store: &S) {
    let ns = ns("revocations_are_bounded_per_user");
    let user = ns.key("mallory");
    let mut last = UserRevocations::new(&user);
    for i in 0..=REVOKED_SESSIONS_PER_USER {
        let one = UserRevocations::new(&user).session(format!("s{i}"), T0 + 300);
        last = store.revoke_sessions(&one, T0).await.unwrap();
    }
    assert!(last.sessions.is_empty(), "{last:?}");
    assert_eq!(last.before, Some((T0, T0 + 300)));
    let one_more = UserRevocations::new(&user).session("again", T0 + 301);
    let after = store.revoke_sessions(&one_more, T0 + 1).await.unwrap();
    assert_eq!(after.sessions.len(), 1);
    assert_eq!(after.before, Some((T0, T0 + 300)));
}

// ---------------------------------------------------------------------------------------
// the sessions a user can see and end, the idle bound (DESIGN §8.3)

/// `(family, created_at, last_seen_at, amr)` of each session listed, in order.
fn listed(sessions: &[SessionInfo]) -> Vec<(String, u64, u64, Vec<String>)> {
    sessions
        .iter()
        .map(|s| {
            let amr = s.session.amr().to_vec();
            (s.family.clone(), s.created_at, s.last_seen_at, amr)
        })
        .collect()
}

/// A user's live families, oldest first, each with when it started and was last seen
/// (its start, last rotation or step-up) and its current claims; revoked, ended and
/// other users' families are not listed.
pub async fn sessions_list_the_live_families_of_a_user<S: Store>(store: &S) {
    let ns = ns("sessions_list_the_live_families_of_a_user");
    let t = |n| ns.token(n);
    let user = ns.key("user");
    assert_eq!(store.sessions(&user, T0).await, Ok(vec![]));
    let a = ns.record("family-a", "user", T0 + 3600);
    let b = ns.record("family-b", "user", T0 + 3600);
    let c = ns.record("family-c", "user", T0 + 3600);
    let short = ns.record("family-short", "user", T0 + 50);
    let other = ns.record("family-o", "other", T0 + 3600);
    store.refresh_create(t(1), a.clone(), T0).await.unwrap();
    store.refresh_create(t(2), b.clone(), T0 + 1).await.unwrap();
    store.refresh_create(t(3), c.clone(), T0 + 2).await.unwrap();
    store
        .refresh_create(t(4), short.clone(), T0 + 3)
        .await
        .unwrap();
    store
        .refresh_create(t(5), other.clone(), T0 + 4)
        .await
        .unwrap();
    let pwd = vec!["pwd".to_owned()];
    assert_eq!(
        listed(&store.sessions(&user, T0 + 5).await.unwrap()),
        vec![
            (a.family.clone(), T0, T0, pwd.clone()),
            (b.family.clone(), T0 + 1, T0 + 1, pwd.clone()),
            (c.family.clone(), T0 + 2, T0 + 2, pwd.clone()),
            (short.family.clone(), T0 + 3, T0 + 3, pwd.clone()),
        ]
    );
    // A rotation and a step-up are seen; a revoked family and one past its end are gone.
    store
        .refresh_rotate(&at(&a), t(1), t(11), T0 + 10)
        .await
        .unwrap();
    let stepped = claims(json!({"sub": b.sub, "exp": T0 + 900, "amr": ["pwd", "otp", "mfa"]}));
    assert!(matches!(
        store
            .refresh_elevate(&b.family, t(12), stepped, T0 + 15, T0 + 20)
            .await,
        Ok(Elevation::Elevated(_))
    ));
    store
        .revoke_family(&c.sub, &c.family, T0 + 21)
        .await
        .unwrap();
    let sessions = store.sessions(&user, T0 + 50).await.unwrap();
    let mfa = vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()];
    assert_eq!(
        listed(&sessions),
        vec![
            (a.family.clone(), T0, T0 + 10, pwd.clone()),
            (b.family.clone(), T0 + 1, T0 + 20, mfa),
        ]
    );
    assert_eq!(
        sessions.iter().map(|s| s.expires_at).collect::<Vec<_>>(),
        [T0 + 3600, T0 + 3600]
    );
    assert_eq!(
        listed(&store.sessions(&other.sub, T0 + 50).await.unwrap()),
        vec![(other.family.clone(), T0 + 4, T0 + 4, pwd)]
    );
    assert_eq!(store.sessions(&user, T0 + 3600).await, Ok(vec![]));
}

/// `end_session` ends a live session of its own user only: another user's, an unknown
/// or an ended one is `Unknown` and changes nothing; a second end is `AlreadyRevoked`.
pub async fn end_session_needs_the_owner<S: Store>(store: &S) {
    let ns = ns("end_session_needs_the_owner");
    let t = |n| ns.token(n);
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    let (fam, user) = (record.family.as_str(), record.sub.as_str());
    for someone in [ns.key("mallory"), String::new()] {
        assert_eq!(
            store.end_session(&someone, fam, T0 + 1).await,
            Ok(FamilyRevocation::Unknown),
            "{someone:?}"
        );
    }
    assert_eq!(
        store
            .end_session(user, &ns.key("no-such-family"), T0 + 1)
            .await,
        Ok(FamilyRevocation::Unknown)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 2).await,
        Ok(Rotation::Rotated(record.clone()))
    );
    assert_eq!(
        store.end_session(user, fam, T0 + 3).await,
        Ok(FamilyRevocation::Revoked)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(2), t(3), T0 + 4).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.end_session(user, fam, T0 + 5).await,
        Ok(FamilyRevocation::AlreadyRevoked)
    );
    assert_eq!(store.sessions(user, T0 + 5).await, Ok(vec![]));
    assert_eq!(
        store.end_session(user, fam, T0 + 3600).await,
        Ok(FamilyRevocation::Unknown)
    );
}

/// A family with an idle bound ends when it is neither rotated nor stepped up for that
/// long: from `last_seen_at + idle_secs` on it does not rotate, step up, end or show.
pub async fn idle_sessions_end<S: Store>(store: &S) {
    let ns = ns("idle_sessions_end");
    let t = |n| ns.token(n);
    let idle = RefreshRecord {
        idle_secs: Some(100),
        ..ns.record("family", "user", T0 + 3600)
    };
    let steady = ns.record("steady", "user", T0 + 3600);
    store.refresh_create(t(1), idle.clone(), T0).await.unwrap();
    store
        .refresh_create(t(9), steady.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at(&idle), t(1), t(2), T0 + 99).await,
        Ok(Rotation::Rotated(idle.clone()))
    );
    let session = claims(json!({"sub": idle.sub, "exp": T0 + 900}));
    let fam = idle.family.as_str();
    assert!(matches!(
        store
            .refresh_elevate(fam, t(3), session.clone(), T0 + 150, T0 + 198)
            .await,
        Ok(Elevation::Elevated(_))
    ));
    let user = idle.sub.as_str();
    let families = |sessions: Vec<SessionInfo>| -> Vec<String> {
        sessions.into_iter().map(|s| s.family).collect()
    };
    assert_eq!(
        families(store.sessions(user, T0 + 297).await.unwrap()),
        [idle.family.clone(), steady.family.clone()]
    );
    // Idle from 198 + 100 on.
    assert_eq!(
        families(store.sessions(user, T0 + 298).await.unwrap()),
        vec![steady.family.clone()]
    );
    assert_eq!(
        store.refresh_rotate(&at(&idle), t(3), t(4), T0 + 298).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store
            .refresh_elevate(fam, t(5), session, T0 + 299, T0 + 300)
            .await,
        Ok(Elevation::Unknown)
    );
    assert_eq!(
        store.end_session(user, fam, T0 + 300).await,
        Ok(FamilyRevocation::Unknown)
    );
    // Without a bound, only the absolute end counts.
    assert_eq!(
        store
            .refresh_rotate(&at(&steady), t(9), t(10), T0 + 3599)
            .await,
        Ok(Rotation::Rotated(steady))
    );
}

// ---------------------------------------------------------------------------------------
// refresh families found by reference (what a refresh token carries)

/// A reference with another user's tag finds nothing: `Invalid`, `false`, and the
/// family is untouched.
pub async fn a_family_is_found_with_its_users_tag_only<S: Store>(store: &S) {
    let ns = ns("a_family_is_found_with_its_users_tag_only");
    let record = ns.record("family", "user", T0 + 3600);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    let wrong = FamilyRef::new(&ns.key("mallory"), record.family.as_str());
    assert_eq!(
        store.refresh_rotate(&wrong, t(1), t(2), T0 + 1).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store
            .refresh_revoke(&wrong, t(1), &record.sub, T0 + 1)
            .await,
        Ok(false)
    );
    assert_eq!(
        store.refresh_rotate(&at(&record), t(1), t(3), T0 + 2).await,
        Ok(Rotation::Rotated(record))
    );
}

/// A token the family never had (say, made up from a session id seen in an access
/// token) is `Invalid` and changes nothing: it is no replay, the family lives on.
pub async fn an_unknown_token_of_a_known_family_changes_nothing<S: Store>(store: &S) {
    let ns = ns("an_unknown_token_of_a_known_family_changes_nothing");
    let record = ns.record("family", "user", T0 + 3600);
    let at = at(&record);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&at, t(9), t(10), T0 + 1).await,
        Ok(Rotation::Invalid)
    );
    assert_eq!(
        store.refresh_revoke(&at, t(9), &record.sub, T0 + 1).await,
        Ok(false)
    );
    assert_eq!(
        store.refresh_rotate(&at, t(10), t(11), T0 + 2).await,
        Ok(Rotation::Invalid),
        "the refused rotation's new token is not current"
    );
    assert_eq!(
        store.refresh_rotate(&at, t(1), t(2), T0 + 3).await,
        Ok(Rotation::Rotated(record))
    );
}

/// `revoke_family` and `refresh_elevate` find a family of their user only: another
/// user's is `Unknown` and untouched.
pub async fn revoke_and_elevate_need_the_families_user<S: Store>(store: &S) {
    let ns = ns("revoke_and_elevate_need_the_families_user");
    let record = ns.record("family", "user", T0 + 3600);
    let t = |n| ns.token(n);
    store
        .refresh_create(t(1), record.clone(), T0)
        .await
        .unwrap();
    let (mallory, fam) = (ns.key("mallory"), record.family.as_str());
    assert_eq!(
        store.revoke_family(&mallory, fam, T0 + 1).await,
        Ok(FamilyRevocation::Unknown)
    );
    let theirs = claims(json!({"sub": mallory, "exp": T0 + 900}));
    assert_eq!(
        store.refresh_elevate(fam, t(2), theirs, T0, T0 + 1).await,
        Ok(Elevation::Unknown)
    );
    assert_eq!(
        store.refresh_rotate(&at(&record), t(1), t(3), T0 + 2).await,
        Ok(Rotation::Rotated(record))
    );
}

// ---------------------------------------------------------------------------------------
// a verify's two steps (DESIGN §4, §8.2)

/// A challenge of `user` (its single-use key `jti:<name>`, spent until `T0 + 3600`)
/// settled with `proof` and `session`.
fn settlement(
    ns: &Ns,
    user: &str,
    name: &str,
    proof: JudgedProof,
    session: SessionChange,
) -> ChallengeSettlement {
    ChallengeSettlement {
        user: user.to_owned(),
        challenge: format!("jti:{}", ns.key(name)),
        expires_at: T0 + 3600,
        proof,
        policy: POLICY,
        session,
    }
}

/// TOTP step `step`, remembered 90 s.
fn step(step: u64) -> JudgedProof {
    JudgedProof::TotpStep {
        step,
        forget_at: T0 + 90,
    }
}

/// Reserves and settles `s` at `now`: what each step answered.
async fn verify_once<S: Store>(
    store: &S,
    s: &ChallengeSettlement,
    now: u64,
) -> (ChallengeReservation, Option<ChallengeOutcome>) {
    let reserved = store
        .reserve_challenge(&s.user, &s.challenge, s.policy, now)
        .await
        .unwrap();
    if reserved != ChallengeReservation::Granted {
        return (reserved, None);
    }
    let settled = store.settle_challenge(s, now).await.unwrap();
    (reserved, Some(settled))
}

/// A right, fresh code: the challenge and the step are spent, the failures forgotten;
/// the challenge is `Spent` from then on, the step a replay for another challenge.
pub async fn a_right_code_spends_the_challenge_and_the_step<S: Store>(store: &S) {
    let ns = ns("a_right_code_spends_the_challenge_and_the_step");
    let user = ns.key("user");
    let wrong = settlement(&ns, &user, "c0", JudgedProof::Wrong, SessionChange::None);
    assert_eq!(
        verify_once(store, &wrong, T0).await.1,
        Some(ChallengeOutcome::Failed {
            attempts: counting(1),
            replayed: false
        })
    );
    let right = settlement(&ns, &user, "c1", step(100), SessionChange::None);
    assert_eq!(
        verify_once(store, &right, T0 + 1).await,
        (
            ChallengeReservation::Granted,
            Some(ChallengeOutcome::Succeeded(None))
        )
    );
    assert_eq!(store.attempts(&user, T0 + 1).await, Ok(clean()));
    let again = store.reserve_challenge(&user, &right.challenge, POLICY, T0 + 2);
    assert_eq!(again.await, Ok(ChallengeReservation::Spent));
    assert_eq!(
        store.settle_challenge(&right, T0 + 2).await,
        Ok(ChallengeOutcome::Spent),
        "spent meanwhile: given back, not judged"
    );
    // The same step on another challenge is a replay: a failure, the challenge usable.
    let replay = settlement(&ns, &user, "c2", step(100), SessionChange::None);
    assert_eq!(
        verify_once(store, &replay, T0 + 3).await.1,
        Some(ChallengeOutcome::Failed {
            attempts: counting(1),
            replayed: true
        })
    );
    let later = settlement(&ns, &user, "c2", step(101), SessionChange::None);
    assert_eq!(
        verify_once(store, &later, T0 + 4).await.1,
        Some(ChallengeOutcome::Succeeded(None))
    );
    assert_eq!(store.attempts(&user, T0 + 4).await, Ok(clean()));
}

/// A spent challenge answers `Spent` without taking an attempt, nor giving one back
/// that it did not take; a lockout answers first, then a spent challenge, then attempts
/// in flight; a wrong code on a challenge spent between the steps is no failure.
pub async fn a_challenge_is_checked_lockout_then_spent_then_busy<S: Store>(store: &S) {
    let ns = ns("a_challenge_is_checked_lockout_then_spent_then_busy");
    let user = ns.key("user");
    let spent = settlement(&ns, &user, "spent", step(7), SessionChange::None);
    verify_once(store, &spent, T0).await;
    // Attempts in flight fill the limit: a spent challenge still answers Spent.
    for _ in 0..POLICY.max_attempts {
        let r = store.reserve_attempt(&user, POLICY, T0 + 1).await;
        assert_eq!(r, Ok(Reservation::Granted));
    }
    let fresh = settlement(&ns, &user, "fresh", JudgedProof::Wrong, SessionChange::None);
    let reserve = |s: &ChallengeSettlement, now| {
        let (user, challenge) = (s.user.clone(), s.challenge.clone());
        async move {
            store
                .reserve_challenge(&user, &challenge, POLICY, now)
                .await
        }
    };
    assert_eq!(
        reserve(&spent, T0 + 1).await,
        Ok(ChallengeReservation::Spent)
    );
    assert_eq!(
        reserve(&fresh, T0 + 1).await,
        Ok(ChallengeReservation::Busy)
    );
    for _ in 0..POLICY.max_attempts {
        let settled = store.settle_attempt(&user, Settlement::Released, POLICY, T0 + 1);
        assert_eq!(settled.await, Ok(clean()), "Spent held no attempt");
    }
    // A wrong code, the challenge spent by a twin between the two steps: given back.
    assert_eq!(
        reserve(&fresh, T0 + 2).await,
        Ok(ChallengeReservation::Granted)
    );
    let twin = settlement(&ns, &user, "fresh", step(8), SessionChange::None);
    assert_eq!(
        verify_once(store, &twin, T0 + 2).await.1,
        Some(ChallengeOutcome::Succeeded(None))
    );
    assert_eq!(
        store.settle_challenge(&fresh, T0 + 2).await,
        Ok(ChallengeOutcome::Spent)
    );
    assert_eq!(store.attempts(&user, T0 + 2).await, Ok(clean()));
    // Locked out: Locked before Spent.
    for n in 0..POLICY.max_attempts {
        let wrong = settlement(
            &ns,
            &user,
            &format!("w{n}"),
            JudgedProof::Wrong,
            SessionChange::None,
        );
        verify_once(store, &wrong, T0 + 3).await;
    }
    let until = T0 + 3 + POLICY.lockout_secs;
    assert_eq!(
        reserve(&spent, T0 + 4).await,
        Ok(ChallengeReservation::Locked { until })
    );
}

/// The failure that starts a lockout spends the challenge: after the lockout it is
/// `Spent`, not usable again (a replayed code's lockout too).
pub async fn a_lockout_spends_the_challenge<S: Store>(store: &S) {
    let ns = ns("a_lockout_spends_the_challenge");
    let user = ns.key("user");
    let accepted = settlement(&ns, &user, "first", step(50), SessionChange::None);
    verify_once(store, &accepted, T0).await;
    let names = ["a", "b", "c"];
    for (n, name) in names.iter().enumerate() {
        let proof = if n == 2 { step(50) } else { JudgedProof::Wrong };
        let s = settlement(&ns, &user, name, proof, SessionChange::None);
        let (_, settled) = verify_once(store, &s, T0 + 1).await;
        let Some(ChallengeOutcome::Failed { attempts, replayed }) = settled else {
            panic!("{name}: {settled:?}");
        };
        assert_eq!((attempts.failures, replayed), (n as u32 + 1, n == 2));
    }
    let after = T0 + 1 + POLICY.lockout_secs;
    for (name, spent) in [("a", false), ("b", false), ("c", true), ("d", false)] {
        let key = format!("jti:{}", ns.key(name));
        let r = store.reserve_challenge(&user, &key, POLICY, after).await;
        let want = if spent {
            ChallengeReservation::Spent
        } else {
            ChallengeReservation::Granted
        };
        assert_eq!(r, Ok(want), "{name}");
    }
}

/// A recovery code is accepted once: its key spent, another challenge with it a replay.
pub async fn a_recovery_code_is_accepted_once<S: Store>(store: &S) {
    let ns = ns("a_recovery_code_is_accepted_once");
    let user = ns.key("user");
    let code = || JudgedProof::Once {
        key: format!("rc:{}", ns.key("code-1")),
        forget_at: T0 + 3600,
    };
    let first = settlement(&ns, &user, "c1", code(), SessionChange::None);
    assert_eq!(
        verify_once(store, &first, T0).await.1,
        Some(ChallengeOutcome::Succeeded(None))
    );
    let again = settlement(&ns, &user, "c2", code(), SessionChange::None);
    assert_eq!(
        verify_once(store, &again, T0 + 1).await.1,
        Some(ChallengeOutcome::Failed {
            attempts: counting(1),
            replayed: true
        })
    );
}

/// A right code starts the session given (a family whose token rotates) or steps one up
/// (what `refresh_elevate` answers); a wrong one leaves the sessions alone.
pub async fn a_right_code_starts_or_steps_up_the_session<S: Store>(store: &S) {
    let ns = ns("a_right_code_starts_or_steps_up_the_session");
    let t = |n| ns.token(n);
    let record = ns.record("family", "user", T0 + 3600);
    let user = record.sub.clone();
    let start = || SessionChange::Start {
        token: t(1),
        record: record.clone(),
    };
    let wrong = settlement(&ns, &user, "c0", JudgedProof::Wrong, start());
    verify_once(store, &wrong, T0).await;
    assert_eq!(store.sessions(&user, T0).await, Ok(vec![]));
    let login = settlement(&ns, &user, "c1", step(10), start());
    assert_eq!(
        verify_once(store, &login, T0).await.1,
        Some(ChallengeOutcome::Succeeded(None))
    );
    let session = claims(json!({"sub": user, "exp": T0 + 900, "amr": ["pwd", "otp"]}));
    let up = |name, n, step_no, issued_at| {
        let change = SessionChange::Elevate {
            family: record.family.clone(),
            new_token: t(n),
            session: session.clone(),
            issued_at,
        };
        settlement(&ns, &user, name, step(step_no), change)
    };
    let elevated = RefreshRecord {
        session: session.clone(),
        ..record.clone()
    };
    assert_eq!(
        verify_once(store, &up("c2", 2, 11, T0 + 5), T0 + 10)
            .await
            .1,
        Some(ChallengeOutcome::Succeeded(Some(Elevation::Elevated(
            elevated.clone()
        ))))
    );
    assert_eq!(
        verify_once(store, &up("c3", 3, 12, T0 + 9), T0 + 11)
            .await
            .1,
        Some(ChallengeOutcome::Succeeded(Some(Elevation::Superseded)))
    );
    assert_eq!(
        store
            .refresh_rotate(&at(&record), t(2), t(4), T0 + 12)
            .await,
        Ok(Rotation::Rotated(elevated))
    );
    store
        .revoke_family(&user, &record.family, T0 + 13)
        .await
        .unwrap();
    assert_eq!(
        verify_once(store, &up("c4", 5, 13, T0 + 20), T0 + 21)
            .await
            .1,
        Some(ChallengeOutcome::Succeeded(Some(Elevation::Ended)))
    );
}

/// Of `RACERS` concurrent verifies of one challenge with the right code, exactly one
/// succeeds and the others are told the challenge is spent: none is a failure.
pub async fn concurrent_verifies_of_one_challenge_have_one_winner<S: Store>(store: Arc<S>) {
    let ns = Arc::new(ns("concurrent_verifies_of_one_challenge_have_one_winner"));
    let user = ns.key("user");
    let policy = AttemptPolicy {
        max_attempts: RACERS as u32,
        ..POLICY
    };
    let s = Arc::new(ChallengeSettlement {
        policy,
        ..settlement(&ns, &user, "c", step(5), SessionChange::None)
    });
    let results = race(store.clone(), move |store, _| {
        let s = s.clone();
        async move { verify_once(&*store, &s, T0).await }
    })
    .await;
    let won = results
        .iter()
        .filter(|(_, r)| r.1 == Some(ChallengeOutcome::Succeeded(None)))
        .count();
    let spent = results
        .iter()
        .filter(|(_, r)| r.0 == ChallengeReservation::Spent || r.1 == Some(ChallengeOutcome::Spent))
        .count();
    assert_eq!((won, spent), (1, RACERS - 1), "{results:?}");
    assert_eq!(store.attempts(&user, T0).await, Ok(clean()));
}

/// Of `RACERS` concurrent verifies of one user's code on as many challenges, exactly one
/// succeeds; the others that were judged are replays (failures).
pub async fn concurrent_verifies_of_one_code_have_one_winner<S: Store>(store: Arc<S>) {
    let ns = Arc::new(ns("concurrent_verifies_of_one_code_have_one_winner"));
    let user = Arc::new(ns.key("user"));
    let results = race(store.clone(), move |store, i| {
        let s = settlement(&ns, &user, &format!("c{i}"), step(5), SessionChange::None);
        async move { verify_once(&*store, &s, T0).await }
    })
    .await;
    let settled: Vec<_> = results.iter().filter_map(|(_, r)| r.1.clone()).collect();
    let won = settled
        .iter()
        .filter(|o| **o == ChallengeOutcome::Succeeded(None))
        .count();
    let replays = settled
        .iter()
        .filter(|o| matches!(o, ChallengeOutcome::Failed { replayed: true, .. }))
        .count();
    assert_eq!(won, 1, "{results:?}");
    assert_eq!(won + replays, settled.len(), "{results:?}");
}

// ---------------------------------------------------------------------------------------
// remembered devices (DESIGN §8.3)

/// `(id, created_at, last_used_at, expires_at)` of each device listed, in order.
fn devices(list: &[DeviceInfo]) -> Vec<(String, u64, u64, u64)> {
    list.iter()
        .map(|d| (d.id.clone(), d.created_at, d.last_used_at, d.expires_at))
        .collect()
}

/// A device is remembered until its expiry, for its own user only; using it is seen in
/// `last_used_at`; removed, it is forgotten.
pub async fn devices_are_remembered_used_and_forgotten<S: Store>(store: &S) {
    let ns = ns("devices_are_remembered_used_and_forgotten");
    let (user, other) = (ns.key("user"), ns.key("other"));
    let (d1, d2) = (ns.key("d1"), ns.key("d2"));
    assert_eq!(store.devices(&user, T0).await, Ok(vec![]));
    store.device_add(&user, &d1, T0 + 1000, T0).await.unwrap();
    store
        .device_add(&user, &d2, T0 + 100, T0 + 1)
        .await
        .unwrap();
    assert_eq!(store.device_use(&user, &d1, T0 + 5).await, Ok(true));
    assert_eq!(store.device_use(&other, &d1, T0 + 5).await, Ok(false));
    assert_eq!(
        store.device_use(&user, &ns.key("d3"), T0 + 5).await,
        Ok(false)
    );
    assert_eq!(store.devices(&other, T0 + 5).await, Ok(vec![]));
    assert_eq!(
        devices(&store.devices(&user, T0 + 6).await.unwrap()),
        vec![
            (d1.clone(), T0, T0 + 5, T0 + 1000),
            (d2.clone(), T0 + 1, T0 + 1, T0 + 100),
        ]
    );
    // d2 expires at T0 + 100.
    assert_eq!(store.device_use(&user, &d2, T0 + 99).await, Ok(true));
    assert_eq!(store.device_use(&user, &d2, T0 + 100).await, Ok(false));
    assert_eq!(
        devices(&store.devices(&user, T0 + 100).await.unwrap()),
        vec![(d1.clone(), T0, T0 + 5, T0 + 1000)]
    );
    assert_eq!(store.device_remove(&other, &d1, T0 + 101).await, Ok(false));
    assert_eq!(store.device_use(&user, &d1, T0 + 102).await, Ok(true));
    assert_eq!(store.device_remove(&user, &d1, T0 + 103).await, Ok(true));
    assert_eq!(store.device_remove(&user, &d1, T0 + 104).await, Ok(false));
    assert_eq!(store.device_use(&user, &d1, T0 + 105).await, Ok(false));
    assert_eq!(store.devices(&user, T0 + 105).await, Ok(vec![]));
}

/// A user has at most `MAX_DEVICES_PER_USER` devices: one more forgets the oldest, also
/// among devices remembered in the same second; another user's are untouched.
pub async fn devices_per_user_are_bounded<S: Store>(store: &S) {
    let ns = ns("devices_per_user_are_bounded");
    let (user, other) = (ns.key("user"), ns.key("other"));
    let id = |n: usize| ns.key(&format!("device-{:02}", MAX_DEVICES_PER_USER + 5 - n));
    store
        .device_add(&other, &id(0), T0 + 900, T0)
        .await
        .unwrap();
    for n in 0..MAX_DEVICES_PER_USER + 2 {
        // Ids that sort in the opposite order of their creation, all in one second.
        store.device_add(&user, &id(n), T0 + 900, T0).await.unwrap();
    }
    let listed: Vec<String> = store
        .devices(&user, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let expected: Vec<String> = (2..MAX_DEVICES_PER_USER + 2).map(id).collect();
    assert_eq!(listed, expected);
    for n in 0..2 {
        assert_eq!(
            store.device_use(&user, &id(n), T0 + 1).await,
            Ok(false),
            "{n}"
        );
    }
    assert_eq!(store.device_use(&other, &id(0), T0 + 1).await, Ok(true));
    // Remembering a device again replaces its record, and makes it the newest.
    store
        .device_add(&user, &id(2), T0 + 950, T0 + 2)
        .await
        .unwrap();
    let listed = store.devices(&user, T0 + 3).await.unwrap();
    assert_eq!(listed.len(), MAX_DEVICES_PER_USER);
    assert_eq!(
        devices(&listed[MAX_DEVICES_PER_USER - 1..]),
        vec![(id(2), T0 + 2, T0 + 2, T0 + 950)]
    );
}

/// `devices_clear` forgets every device of one user, and no other's.
pub async fn devices_clear_forgets_one_user<S: Store>(store: &S) {
    let ns = ns("devices_clear_forgets_one_user");
    let (user, other) = (ns.key("user"), ns.key("other"));
    for n in 0..3 {
        let d = ns.key(&format!("d{n}"));
        store.device_add(&user, &d, T0 + 900, T0 + n).await.unwrap();
    }
    store
        .device_add(&other, &ns.key("o"), T0 + 900, T0)
        .await
        .unwrap();
    store.devices_clear(&user, T0 + 10).await.unwrap();
    assert_eq!(store.devices(&user, T0 + 10).await, Ok(vec![]));
    assert_eq!(
        store.device_use(&user, &ns.key("d0"), T0 + 11).await,
        Ok(false)
    );
    assert_eq!(store.devices(&other, T0 + 11).await.unwrap().len(), 1);
    // The user can remember devices again.
    store
        .device_add(&user, &ns.key("d9"), T0 + 900, T0 + 12)
        .await
        .unwrap();
    assert_eq!(
        store.device_use(&user, &ns.key("d9"), T0 + 13).await,
        Ok(true)
    );
}

// ---------------------------------------------------------------------------------------
// DPoP proofs: each `jti` once per key, bounded per key and by the window (DESIGN §8.5)

/// Uses `n` new proofs `<name>-<i>` of `jkt`, each expiring at `expires_at`: every one is
/// fresh. Returns their `jti`s.
async fn use_new_proofs<S: Store + ?Sized>(
    store: &S,
    jkt: &str,
    name: &str,
    n: usize,
    expires_at: u64,
    now: u64,
) -> Vec<String> {
    let mut jtis = Vec::with_capacity(n);
    for i in 0..n {
        let jti = format!("{name}-{i}");
        let used = store.use_dpop_proof(jkt, &jti, expires_at, now).await;
        assert_eq!(used, Ok(DpopUse::Fresh), "{jti}");
        jtis.push(jti);
    }
    jtis
}

/// A proof is `Fresh` once, then `Replayed` until its expiry; the same `jti` of another
/// key is another proof; it is no `consume` key.
pub async fn a_dpop_proof_is_fresh_once<S: Store>(store: &S) {
    let ns = ns("a_dpop_proof_is_fresh_once");
    let (jkt, other) = (ns.key("jkt"), ns.key("other-jkt"));
    let jti = ns.key("jti");
    let exp = T0 + 120;
    assert_eq!(
        store.use_dpop_proof(&jkt, &jti, exp, T0).await,
        Ok(DpopUse::Fresh)
    );
    for now in [T0, T0 + 1, T0 + 119] {
        assert_eq!(
            store.use_dpop_proof(&jkt, &jti, exp, now).await,
            Ok(DpopUse::Replayed),
            "{now}"
        );
    }
    // A later expiry given on replay does not make it new either.
    assert_eq!(
        store.use_dpop_proof(&jkt, &jti, exp + 1000, T0 + 10).await,
        Ok(DpopUse::Replayed)
    );
    // Another key's proof with the same jti, and another jti of the key, are new.
    assert_eq!(
        store.use_dpop_proof(&other, &jti, exp, T0).await,
        Ok(DpopUse::Fresh)
    );
    assert_eq!(
        store.use_dpop_proof(&other, &jti, exp, T0 + 1).await,
        Ok(DpopUse::Replayed)
    );
    let longer = format!("{jti}x");
    assert_eq!(
        store.use_dpop_proof(&jkt, &longer, exp, T0).await,
        Ok(DpopUse::Fresh)
    );
    // The pair is what counts, not its concatenation.
    for (k, j) in [(format!("{jkt}a"), "bc"), (format!("{jkt}ab"), "c")] {
        assert_eq!(
            store.use_dpop_proof(&k, j, exp, T0).await,
            Ok(DpopUse::Fresh),
            "{k} {j}"
        );
    }
    // A proof is not a consumed key, nor the other way round.
    assert_eq!(store.is_consumed(&jti, T0).await, Ok(false));
    assert_eq!(store.consume(&jti, exp, T0).await, Ok(true));
    assert_eq!(
        store.use_dpop_proof(&jkt, &jti, exp, T0 + 2).await,
        Ok(DpopUse::Replayed)
    );
}

/// At its `expires_at` a proof is forgotten: `Fresh` again (once), remembered until the
/// new expiry.
pub async fn a_dpop_proof_is_forgotten_at_its_expiry<S: Store>(store: &S) {
    let ns = ns("a_dpop_proof_is_forgotten_at_its_expiry");
    let (jkt, jti) = (ns.key("jkt"), ns.key("jti"));
    let used = |exp, now| store.use_dpop_proof(&jkt, &jti, exp, now);
    assert_eq!(used(T0 + 60, T0).await, Ok(DpopUse::Fresh));
    assert_eq!(used(T0 + 60, T0 + 59).await, Ok(DpopUse::Replayed));
    assert_eq!(used(T0 + 200, T0 + 60).await, Ok(DpopUse::Fresh));
    assert_eq!(used(T0 + 200, T0 + 61).await, Ok(DpopUse::Replayed));
    assert_eq!(used(T0 + 200, T0 + 199).await, Ok(DpopUse::Replayed));
    assert_eq!(used(T0 + 1060, T0 + 1000).await, Ok(DpopUse::Fresh));
    assert_eq!(used(T0 + 1060, T0 + 1059).await, Ok(DpopUse::Replayed));
}

/// A key holds at most `MAX_DPOP_PROOFS_PER_KEY` live proofs: a new one past them is
/// `TooMany` and not remembered; a replay is still `Replayed`; another key is
/// unaffected; at their expiry the key's proofs are forgotten.
pub async fn dpop_proofs_are_bounded_per_key<S: Store>(store: &S) {
    let ns = ns("dpop_proofs_are_bounded_per_key");
    let (jkt, other) = (ns.key("jkt"), ns.key("other-jkt"));
    let exp = T0 + 120;
    let jtis = use_new_proofs(
        store,
        &jkt,
        &ns.key("jti"),
        MAX_DPOP_PROOFS_PER_KEY,
        exp,
        T0,
    )
    .await;
    let extra = ns.key("extra");
    assert_eq!(
        store.use_dpop_proof(&jkt, &extra, exp, T0 + 1).await,
        Ok(DpopUse::TooMany)
    );
    for jti in [&jtis[0], &jtis[MAX_DPOP_PROOFS_PER_KEY - 1]] {
        assert_eq!(
            store.use_dpop_proof(&jkt, jti, exp, T0 + 1).await,
            Ok(DpopUse::Replayed),
            "{jti}"
        );
    }
    // Refused, so not remembered: still too many, not a replay.
    assert_eq!(
        store.use_dpop_proof(&jkt, &extra, exp, T0 + 2).await,
        Ok(DpopUse::TooMany)
    );
    // Another key's proofs, with the same jtis too, are new.
    for jti in [&extra, &jtis[0]] {
        assert_eq!(
            store.use_dpop_proof(&other, jti, exp, T0 + 2).await,
            Ok(DpopUse::Fresh),
            "{jti}"
        );
    }
    // At their expiry the key's proofs are forgotten: the refused one is new, and so is
    // a jti used before.
    for jti in [&extra, &jtis[0]] {
        assert_eq!(
            store.use_dpop_proof(&jkt, jti, exp + 120, exp).await,
            Ok(DpopUse::Fresh),
            "{jti}"
        );
        assert_eq!(
            store.use_dpop_proof(&jkt, jti, exp + 120, exp + 1).await,
            Ok(DpopUse::Replayed),
            "{jti}"
        );
    }
}

/// Expired proofs free the bound, one for one: with half the key's proofs expiring
/// first, exactly that half's room comes back at their expiry.
pub async fn expired_dpop_proofs_free_the_bound<S: Store>(store: &S) {
    let ns = ns("expired_dpop_proofs_free_the_bound");
    let jkt = ns.key("jkt");
    let half = MAX_DPOP_PROOFS_PER_KEY / 2;
    let rest = MAX_DPOP_PROOFS_PER_KEY - half;
    let early = use_new_proofs(store, &jkt, &ns.key("early"), half, T0 + 60, T0).await;
    let late = use_new_proofs(store, &jkt, &ns.key("late"), rest, T0 + 120, T0 + 1).await;
    let new = |n: usize| ns.key(&format!("new-{n}"));
    assert_eq!(
        store.use_dpop_proof(&jkt, &new(0), T0 + 180, T0 + 59).await,
        Ok(DpopUse::TooMany)
    );
    // At T0 + 60 the early ones are gone: `half` new ones fit, and no more.
    use_new_proofs(store, &jkt, &ns.key("more"), half, T0 + 180, T0 + 60).await;
    assert_eq!(
        store.use_dpop_proof(&jkt, &new(1), T0 + 180, T0 + 61).await,
        Ok(DpopUse::TooMany)
    );
    // An early jti is forgotten (no replay), and finds no room either; a late one is
    // still a replay.
    assert_eq!(
        store
            .use_dpop_proof(&jkt, &early[0], T0 + 180, T0 + 61)
            .await,
        Ok(DpopUse::TooMany)
    );
    assert_eq!(
        store
            .use_dpop_proof(&jkt, &late[0], T0 + 180, T0 + 61)
            .await,
        Ok(DpopUse::Replayed)
    );
    // At T0 + 120 the late ones are gone too.
    use_new_proofs(store, &jkt, &ns.key("last"), rest, T0 + 180, T0 + 120).await;
    assert_eq!(
        store
            .use_dpop_proof(&jkt, &new(2), T0 + 180, T0 + 120)
            .await,
        Ok(DpopUse::TooMany)
    );
}

/// Of `DPOP_RACERS` concurrent uses of one proof, exactly one is `Fresh`; every other
/// is `Replayed`.
pub async fn concurrent_uses_of_one_dpop_proof_have_one_winner<S: Store>(store: Arc<S>) {
    let ns = ns("concurrent_uses_of_one_dpop_proof_have_one_winner");
    let (jkt, jti) = (Arc::new(ns.key("jkt")), Arc::new(ns.key("jti")));
    let (k, j) = (jkt.clone(), jti.clone());
    let results = race_of(DPOP_RACERS, store.clone(), move |s, _| {
        let (k, j) = (k.clone(), j.clone());
        async move { s.use_dpop_proof(&k, &j, T0 + 120, T0).await }
    })
    .await;
    let fresh = results.iter().filter(|(_, r)| *r == Ok(DpopUse::Fresh));
    let replayed = results.iter().filter(|(_, r)| *r == Ok(DpopUse::Replayed));
    assert_eq!(
        (fresh.count(), replayed.count()),
        (1, DPOP_RACERS - 1),
        "{results:?}"
    );
    assert_eq!(
        store.use_dpop_proof(&jkt, &jti, T0 + 120, T0 + 1).await,
        Ok(DpopUse::Replayed)
    );
}

/// `DPOP_RACERS` concurrent new proofs of one key with room for 10 more: exactly 10 are
/// `Fresh`, the rest `TooMany` (and not remembered).
pub async fn concurrent_dpop_proofs_fill_the_bound_exactly<S: Store>(store: Arc<S>) {
    const ROOM: usize = 10;
    let ns = ns("concurrent_dpop_proofs_fill_the_bound_exactly");
    let jkt = Arc::new(ns.key("jkt"));
    let filled = MAX_DPOP_PROOFS_PER_KEY - ROOM;
    use_new_proofs(&*store, &jkt, &ns.key("jti"), filled, T0 + 120, T0).await;
    let racer = Arc::new(ns.key("racer"));
    let (k, r) = (jkt.clone(), racer.clone());
    let results = race_of(DPOP_RACERS, store.clone(), move |s, i| {
        let jti = format!("{r}-{i}");
        let k = k.clone();
        async move { s.use_dpop_proof(&k, &jti, T0 + 120, T0 + 1).await }
    })
    .await;
    let fresh: Vec<usize> = results
        .iter()
        .filter(|(_, r)| *r == Ok(DpopUse::Fresh))
        .map(|(i, _)| *i)
        .collect();
    let too_many = results.iter().filter(|(_, r)| *r == Ok(DpopUse::TooMany));
    assert_eq!(
        (fresh.len(), too_many.count()),
        (ROOM, DPOP_RACERS - ROOM),
        "{results:?}"
    );
    for i in 0..DPOP_RACERS {
        let expected = match fresh.contains(&i) {
            true => DpopUse::Replayed,
            false => DpopUse::TooMany,
        };
        let jti = format!("{racer}-{i}");
        assert_eq!(
            store.use_dpop_proof(&jkt, &jti, T0 + 120, T0 + 2).await,
            Ok(expected),
            "{i}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// the test generator

/// One `#[tokio::test]` per contract check, for the store built by `$make`: a closure
/// returning a future of the store, e.g. `|| async { MemoryStore::new() }`. Any further
/// arguments are attributes added to every test (e.g. `ignore = "needs Redis"`).
#[macro_export]
macro_rules! contract_tests {
    ($make:expr $(, $attr:meta)* $(,)?) => {
        $crate::contract_tests!(@by_ref ($make) [$(#[$attr])*]
            consume_is_true_once,
            release_undoes_consume,
            consume_keys_are_independent,
            consume_forgets_key_at_expiry,
            is_consumed_reflects_consume,
            attempts_start_clean,
            record_failure_counts_up,
            reaching_max_attempts_locks_out,
            failures_during_lockout_change_nothing,
            lockout_ends_at_locked_until,
            clear_failures_resets_count,
            clear_failures_keeps_running_lockout,
            failures_forgotten_after_window,
            attempts_users_are_independent,
            totp_step_must_increase,
            totp_step_forgotten_at_expiry,
            totp_users_are_independent,
            get_returns_put_value,
            get_is_none_after_expiry,
            delete_removes_value,
            put_overwrites_value,
            refresh_rotation_chain,
            refresh_replay_revokes_family,
            refresh_unknown_token_is_invalid,
            refresh_family_has_absolute_expiry,
            refresh_revoke_needs_owner,
            refresh_revoke_by_owner_revokes_family,
            refresh_revoke_accepts_any_family_token,
            revoke_family_revokes,
            refresh_families_are_independent,
            a_family_is_found_with_its_users_tag_only,
            an_unknown_token_of_a_known_family_changes_nothing,
            revoke_and_elevate_need_the_families_user,
            a_right_code_spends_the_challenge_and_the_step,
            a_challenge_is_checked_lockout_then_spent_then_busy,
            a_lockout_spends_the_challenge,
            a_recovery_code_is_accepted_once,
            a_right_code_starts_or_steps_up_the_session,
            reservations_in_flight_fill_the_limit,
            settled_failures_lock_out,
            settled_success_clears_failures,
            abandoned_reservations_expire,
            refresh_elevate_continues_the_family,
            refresh_elevate_refuses_ended_unknown_and_stale,
            refresh_history_is_bounded,
            sessions_per_user_are_bounded,
            sessions_of_one_second_end_oldest_first,
            login_limits_hold_per_client_and_per_account,
            login_reservations_in_flight_count,
            login_buckets_are_bounded_and_keep_the_accounts_under_attack,
            revoke_sessions_merges_per_user,
            revocations_since_catches_up,
            revocations_are_bounded_per_user,
            sessions_list_the_live_families_of_a_user,
            end_session_needs_the_owner,
            idle_sessions_end,
            devices_are_remembered_used_and_forgotten,
            devices_per_user_are_bounded,
            devices_clear_forgets_one_user,
            a_dpop_proof_is_fresh_once,
            a_dpop_proof_is_forgotten_at_its_expiry,
            dpop_proofs_are_bounded_per_key,
            expired_dpop_proofs_free_the_bound,
        );
        $crate::contract_tests!(@by_arc ($make) [$(#[$attr])*]
            concurrent_consume_has_one_winner,
            concurrent_totp_step_has_one_winner,
            concurrent_refresh_rotate_has_one_winner,
            concurrent_reservations_grant_exactly_the_limit,
            concurrent_verifies_of_one_challenge_have_one_winner,
            concurrent_verifies_of_one_code_have_one_winner,
            concurrent_uses_of_one_dpop_proof_have_one_winner,
            concurrent_dpop_proofs_fill_the_bound_exactly,
        );
    };
    (@by_ref ($make:expr) $attrs:tt $($check:ident),* $(,)?) => {
        $( $crate::contract_tests!(@one ($make) $attrs $check (&)); )*
    };
    (@by_arc ($make:expr) $attrs:tt $($check:ident),* $(,)?) => {
        $( $crate::contract_tests!(@one ($make) $attrs $check (::std::sync::Arc::new)); )*
    };
    (@one ($make:expr) [$($attr:tt)*] $check:ident ($($pass:tt)*)) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $check() {
            let store = $crate::store_contract::build($make).await;
            $crate::store_contract::$check($($pass)*(store)).await;
        }
    };
}
