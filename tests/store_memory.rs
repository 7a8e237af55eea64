//! `MemoryStore`: the store contract (`store_contract`), then what only the in-process
//! store promises: a bound on its entries, kept without a background task.

mod store_contract;
use store_contract::Failures;

use store_contract::{ns, POLICY, T0};
use tower_stepup::store::{
    Attempts, DpopUse, FamilyRef, MemoryStore, RefreshRecord, Reservation, Rotation, Settlement,
    Store, StoreError, LOGIN_RECORDS_PER_BUCKET,
};

contract_tests!(|| async { MemoryStore::new() });

/// Fills `store` (bounded at `n`) with `n` consumed keys expiring at `expires_at`.
async fn fill(store: &MemoryStore, n: usize, expires_at: u64) -> Vec<String> {
    let ns = ns("fill");
    let keys: Vec<String> = (0..n).map(|i| ns.key(&format!("jti-{i}"))).collect();
    for k in &keys {
        assert_eq!(store.consume(k, expires_at, T0).await, Ok(true));
    }
    assert_eq!(store.len(), n);
    keys
}

/// Where family `fam` of `user` (the records below) is found.
fn fam() -> FamilyRef {
    FamilyRef::new("user", "fam")
}

fn record(family: &str, expires_at: u64) -> RefreshRecord {
    RefreshRecord {
        family: family.to_owned(),
        sub: "user".to_owned(),
        session: serde_json::from_value(serde_json::json!({"sub": "user", "exp": expires_at}))
            .unwrap(),
        expires_at,
        idle_secs: None,
    }
}

/// At the bound, a new entry is refused with `Full`: the store never makes room by
/// forgetting a used token that is still live.
#[tokio::test]
async fn full_store_refuses_new_entries() {
    let store = MemoryStore::with_max_entries(10);
    let keys = fill(&store, 10, T0 + 60).await;
    assert_eq!(
        store.consume("jti-11", T0 + 60, T0 + 1).await,
        Err(StoreError::Full)
    );
    // Every other kind of new entry is refused too.
    assert_eq!(
        store.put("enroll", b"v".to_vec(), T0 + 60, T0 + 1).await,
        Err(StoreError::Full)
    );
    assert_eq!(
        store.record_failure("alice", POLICY, T0 + 1).await,
        Err(StoreError::Full)
    );
    assert_eq!(
        store.advance_totp_step("alice", 7, T0 + 60, T0 + 1).await,
        Err(StoreError::Full)
    );
    assert_eq!(
        store
            .refresh_create([1; 32], record("fam", T0 + 60), T0 + 1)
            .await,
        Err(StoreError::Full)
    );
    // Nothing was forgotten to make room, and nothing refused was half-written.
    for k in &keys {
        assert_eq!(store.is_consumed(k, T0 + 59).await, Ok(true));
    }
    assert_eq!(store.is_consumed("jti-11", T0 + 1).await, Ok(false));
    assert_eq!(store.get("enroll", T0 + 1).await, Ok(None));
    assert_eq!(
        store.refresh_revoke(&fam(), [1; 32], "user", T0 + 1).await,
        Ok(false)
    );
    assert_eq!(store.len(), 10);
    // Reads and writes that cannot grow the store still work.
    store.delete("enroll").await.unwrap();
    assert_eq!(
        store
            .settle_attempt("alice", Settlement::Succeeded, POLICY, T0 + 1)
            .await,
        Ok(Attempts::default())
    );
    store.revoke_family("user", "fam", T0 + 1).await.unwrap();
    assert_eq!(
        store.attempts("alice", T0 + 1).await.map(|a| a.failures),
        Ok(0)
    );
}

/// Once the entries of a full store expire, the next write sweeps them (no background
/// task) and succeeds; `len` drops.
#[tokio::test]
async fn full_store_frees_space_once_entries_expire() {
    let store = MemoryStore::with_max_entries(10);
    let keys = fill(&store, 10, T0 + 60).await;
    assert_eq!(
        store.consume("late", T0 + 120, T0 + 59).await,
        Err(StoreError::Full)
    );
    // Expired but not yet swept: reads see them gone, `len` still counts them.
    assert_eq!(store.is_consumed(&keys[0], T0 + 60).await, Ok(false));
    assert_eq!(store.len(), 10);
    assert_eq!(store.consume("late", T0 + 120, T0 + 60).await, Ok(true));
    assert_eq!(store.len(), 1);
    // There is room for nine more (an expired key is new again).
    for k in &keys[..9] {
        assert_eq!(store.consume(k, T0 + 120, T0 + 61).await, Ok(true));
    }
    assert_eq!(store.len(), 10);
    assert_eq!(
        store.consume(&keys[9], T0 + 120, T0 + 61).await,
        Err(StoreError::Full)
    );
}

/// Every kind of entry is swept once expired: a store full of them takes as many new
/// entries.
#[tokio::test]
async fn every_kind_of_entry_is_swept() {
    // Eight entries (a family and each token it remembers count), and the user's list of
    // sessions.
    let store = MemoryStore::with_max_entries(9);
    let end = T0 + 1000;
    store.consume("jti", end, T0).await.unwrap();
    // Remembered for `window_secs` (600) or, locked, until the lockout ends (T0 + 302).
    store.record_failure("bob", POLICY, T0).await.unwrap();
    for now in [T0, T0 + 1, T0 + 2] {
        store.record_failure("carol", POLICY, now).await.unwrap();
    }
    store.advance_totp_step("bob", 9, end, T0).await.unwrap();
    store.put("enroll", b"v".to_vec(), end, T0).await.unwrap();
    store
        .refresh_create([1; 32], record("fam", end), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&fam(), [1; 32], [2; 32], T0 + 1).await,
        Ok(Rotation::Rotated(record("fam", end)))
    );
    assert_eq!(store.len(), 9);
    // Carol's lockout ends first, at T0 + 302, then Bob's failure is forgotten at
    // T0 + 600, then the rest expire at `end`; until each, nothing more has expired.
    for (i, (full, freed)) in [(T0 + 301, T0 + 302), (T0 + 599, T0 + 600), (end - 1, end)]
        .into_iter()
        .enumerate()
    {
        let key = format!("new-{i}");
        assert_eq!(
            store.consume(&key, end + 60, full).await,
            Err(StoreError::Full)
        );
        assert_eq!(store.consume(&key, end + 60, freed).await, Ok(true));
    }
    for i in 3..9 {
        assert_eq!(
            store.consume(&format!("new-{i}"), end + 60, end).await,
            Ok(true)
        );
    }
    assert_eq!(store.len(), 9);
}

/// Many short-lived writes over time never fill the store: the periodic sweep keeps
/// `len` under the bound without ever answering `Full`.
#[tokio::test]
async fn steady_load_stays_bounded() {
    const MAX: usize = 2048;
    let store = MemoryStore::with_max_entries(MAX);
    let mut peak = 0;
    for i in 0..10_000u64 {
        let now = T0 + i;
        assert_eq!(
            store.consume(&format!("jti-{i}"), now + 1, now).await,
            Ok(true),
            "write {i}"
        );
        peak = peak.max(store.len());
    }
    assert!(peak <= MAX, "peak {peak}");
    // Bursts: 64 live writes a second, each living 10 s (~640 live at a time).
    let start = T0 + 20_000;
    for i in 0..10_000u64 {
        let now = start + i / 64;
        assert_eq!(
            store.consume(&format!("burst-{i}"), now + 10, now).await,
            Ok(true),
            "burst write {i}"
        );
        peak = peak.max(store.len());
    }
    assert!(peak <= MAX, "peak {peak}");
}

// Regression: the bound used to be checked before knowing whether an operation adds an
// entry, so at the bound a replayed `consume` answered `Full` instead of `false` (and the
// same for `advance_totp_step`, `put` and `record_failure` on existing keys). Only writes
// that really add a key may be refused.
#[tokio::test]
async fn full_store_still_answers_replayed_consume() {
    let store = MemoryStore::with_max_entries(10);
    let keys = fill(&store, 10, T0 + 60).await;
    assert_eq!(store.consume(&keys[0], T0 + 60, T0 + 1).await, Ok(false));
}

// Regression: at the bound, a replayed (already rotated) refresh token must still be
// detected as reuse and revoke its family; only the `Rotated` branch adds an entry.
#[tokio::test]
async fn full_store_still_detects_refresh_reuse() {
    // Two tokens, the family, the user's list of sessions, and one more.
    let store = MemoryStore::with_max_entries(5);
    let rec = record("fam", T0 + 3600);
    store
        .refresh_create([1; 32], rec.clone(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.refresh_rotate(&fam(), [1; 32], [2; 32], T0 + 1).await,
        Ok(Rotation::Rotated(rec.clone()))
    );
    assert_eq!(store.consume("jti", T0 + 60, T0 + 1).await, Ok(true));
    assert_eq!(store.len(), 5);
    assert_eq!(
        store.refresh_rotate(&fam(), [1; 32], [3; 32], T0 + 2).await,
        Ok(Rotation::Reused {
            family: rec.family.clone(),
            sub: rec.sub.clone(),
        })
    );
}

/// Name spraying fills only the login counters' own bounded space: a bucket keeps at
/// most `LOGIN_RECORDS_PER_BUCKET` records, and the store's other entries are untouched.
#[tokio::test]
async fn login_counters_of_sprayed_names_stay_bounded() {
    let store = MemoryStore::with_max_entries(10);
    let limits = store_contract::LOGIN;
    for i in 0..LOGIN_RECORDS_PER_BUCKET * 3 {
        let account = format!("ab{i:030x}");
        let r = store.reserve_login(&account, "client", limits, T0).await;
        assert_eq!(r, Ok(Reservation::Granted));
        store
            .settle_login(&account, "client", Settlement::Failed, limits, T0)
            .await
            .unwrap();
    }
    assert_eq!(store.login_len(), LOGIN_RECORDS_PER_BUCKET);
    assert_eq!(store.len(), 0);
    assert_eq!(store.consume("jti", T0 + 60, T0).await, Ok(true));
}

/// Used DPoP proofs are entries like the others: counted in `len`, refused with `Full` at
/// the bound (a replay is still answered), and swept once expired by the write that
/// needs their room.
#[tokio::test]
async fn dpop_proofs_count_against_the_bound_and_are_swept() {
    let store = MemoryStore::with_max_entries(10);
    for (jkt, n, exp) in [("k1", 5, T0 + 60), ("k2", 4, T0 + 120)] {
        for i in 0..n {
            let used = store.use_dpop_proof(jkt, &format!("j{i}"), exp, T0).await;
            assert_eq!(used, Ok(DpopUse::Fresh), "{jkt} {i}");
        }
    }
    assert_eq!(store.consume("jti", T0 + 120, T0).await, Ok(true));
    assert_eq!(store.len(), 10);
    assert_eq!(
        store.use_dpop_proof("k3", "j", T0 + 120, T0 + 59).await,
        Err(StoreError::Full)
    );
    assert_eq!(
        store.use_dpop_proof("k2", "j9", T0 + 120, T0 + 59).await,
        Err(StoreError::Full)
    );
    assert_eq!(
        store.use_dpop_proof("k1", "j0", T0 + 60, T0 + 59).await,
        Ok(DpopUse::Replayed)
    );
    assert_eq!(store.len(), 10);
    // At T0 + 60 k1's five are gone: the refused proof was not remembered, and fits now.
    assert_eq!(
        store.use_dpop_proof("k3", "j", T0 + 120, T0 + 60).await,
        Ok(DpopUse::Fresh)
    );
    assert_eq!(store.len(), 6);
    for i in 0..4 {
        let used = store
            .use_dpop_proof("k1", &format!("j{i}"), T0 + 120, T0 + 60)
            .await;
        assert_eq!(used, Ok(DpopUse::Fresh), "{i}");
    }
    assert_eq!(
        store.use_dpop_proof("k1", "j4", T0 + 120, T0 + 60).await,
        Err(StoreError::Full)
    );
    // At T0 + 120 everything is gone.
    for i in 0..10 {
        let used = store
            .use_dpop_proof("k4", &format!("j{i}"), T0 + 180, T0 + 120)
            .await;
        assert_eq!(used, Ok(DpopUse::Fresh), "{i}");
    }
    assert_eq!(store.len(), 10);
}
