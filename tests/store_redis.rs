//! `RedisStore` against a real `redis-server` started by the test: the store contract
//! (`store_contract`, the same checks as `MemoryStore`), then what only Redis promises:
//! keys under the prefix and always expiring, and bounded failure when Redis is down or
//! frozen, with recovery when it returns.

#[path = "support/redis_server.rs"]
mod redis_server;
mod store_contract;
use store_contract::Failures;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use store_contract::{POLICY, T0};
use tower_stepup::store::{
    AttemptPolicy, ChallengeOutcome, ChallengeReservation, ChallengeSettlement, DpopUse, FamilyRef,
    JudgedProof, RedisStore, RefreshRecord, Rotation, SessionChange, Store, StoreError, TokenHash,
    MAX_TTL_SECS,
};

contract_tests!(|| async {
    RedisStore::connect(&RedisServer::shared().url())
        .await
        .expect("connect to the test redis-server")
});

// ---------------------------------------------------------------------------------------
// What only Redis promises.

/// The timeout of the stores whose server is killed or frozen.
const SHORT: Duration = Duration::from_millis(300);

/// How long a restarted or thawed server may take to be usable again.
const RECOVERY: Duration = Duration::from_secs(5);

/// Awaits `fut`, but fails the test (instead of hanging it) after 5 s.
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for 5 s"))
}

/// A prefix no other test (or earlier run) uses: `redis-<what>-<pid>-<n>-<nanos>`.
fn unique(what: &str) -> String {
    redis_server::unique_prefix("redis", what)
}

/// A token hash made of `byte`.
fn token(byte: u8) -> TokenHash {
    [byte; 32]
}

fn hex(t: &TokenHash) -> String {
    t.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(s.as_bytes()).into())
}

/// Where family `family` of `user` is found.
fn at(user: &str, family: &str) -> FamilyRef {
    FamilyRef::new(user, family)
}

/// The tag of `user`'s keys.
fn tag(user: &str) -> String {
    at(user, "").user_tag().to_owned()
}

fn record(family: &str, sub: &str, expires_at: u64) -> RefreshRecord {
    RefreshRecord {
        family: family.to_owned(),
        sub: sub.to_owned(),
        session: serde_json::from_value(
            serde_json::json!({"sub": sub, "sid": family, "exp": expires_at}),
        )
        .unwrap(),
        expires_at,
        idle_secs: None,
    }
}

async fn store_at(url: &str, prefix: &str, timeout: Duration) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .timeout(timeout)
        .connect(url)
        .await
        .expect("connect to the test redis-server")
}

/// A store on the shared server with a prefix of its own.
async fn shared_store(what: &str) -> RedisStore {
    let prefix = unique(what);
    store_at(
        &RedisServer::shared().url(),
        &prefix,
        tower_stepup::store::DEFAULT_REDIS_TIMEOUT,
    )
    .await
}

/// `PTTL key` in milliseconds (-2: no key, -1: no expiry).
fn pttl(server: &RedisServer, key: &str) -> i64 {
    let reply = server.command(&["PTTL", key]);
    assert_eq!(reply.len(), 1, "PTTL {key}: {reply:?}");
    reply[0].parse().expect("an integer reply")
}

/// Asserts that `key` expires in `(expected_ms - 10 s, expected_ms]`.
fn assert_pttl(server: &RedisServer, key: &str, expected_ms: u64) {
    let ttl = pttl(server, key);
    assert!(ttl > 0, "{key} has PTTL {ttl}: it never expires or is gone");
    let ttl = ttl as u64;
    assert!(
        ttl <= expected_ms && ttl > expected_ms.saturating_sub(10_000),
        "{key}: PTTL {ttl} ms, expected about {expected_ms} ms"
    );
}

/// Waits (polling, at most [`RECOVERY`]) until `store` answers again; returns how long.
async fn wait_until_usable(store: &RedisStore, what: &str) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        n += 1;
        let probe = format!("{what}-probe-{n}");
        match store.consume(&probe, T0 + 60, T0).await {
            Ok(true) => return start.elapsed(),
            Ok(false) => panic!("a fresh probe key was already consumed"),
            Err(e) => assert!(
                start.elapsed() < RECOVERY,
                "{what}: the store did not recover within {RECOVERY:?}; last error {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Names used by the operations of [`every_operation`], to look for in error texts.
struct Names {
    key: String,
    user: String,
    family: String,
    token: TokenHash,
}

impl Names {
    fn new(what: &str) -> Self {
        let id = unique(what);
        Self {
            key: format!("key-{id}"),
            user: format!("user-{id}"),
            family: format!("family-{id}"),
            token: token(0xa7),
        }
    }

    fn secrets(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            self.user.clone(),
            self.family.clone(),
            hex(&self.token),
        ]
    }
}

/// Runs every store operation once: `(name, result with the value dropped, duration)`.
async fn every_operation(
    store: &RedisStore,
    n: &Names,
) -> Vec<(&'static str, Result<(), StoreError>, Duration)> {
    let mut out = Vec::new();
    macro_rules! op {
        ($name:literal, $call:expr) => {{
            let start = Instant::now();
            let result = bounded($name, $call).await.map(drop);
            out.push(($name, result, start.elapsed()));
        }};
    }
    let rec = record(&n.family, &n.user, T0 + 3600);
    op!("consume", store.consume(&n.key, T0 + 300, T0));
    op!("is_consumed", store.is_consumed(&n.key, T0));
    op!("release", store.release(&n.key));
    op!("attempts", store.attempts(&n.user, T0));
    op!("record_failure", store.record_failure(&n.user, POLICY, T0));
    op!("clear_failures", store.clear_failures(&n.user, T0));
    op!(
        "advance_totp_step",
        store.advance_totp_step(&n.user, 7, T0 + 90, T0)
    );
    op!("put", store.put(&n.key, b"v".to_vec(), T0 + 600, T0));
    op!("get", store.get(&n.key, T0));
    op!("delete", store.delete(&n.key));
    op!("refresh_create", store.refresh_create(n.token, rec, T0));
    let fam = at(&n.user, &n.family);
    op!(
        "refresh_rotate",
        store.refresh_rotate(&fam, n.token, token(0xa8), T0 + 1)
    );
    op!(
        "refresh_revoke",
        store.refresh_revoke(&fam, n.token, &n.user, T0 + 2)
    );
    op!(
        "revoke_family",
        store.revoke_family(&n.user, &n.family, T0 + 3)
    );
    op!(
        "reserve_challenge",
        store.reserve_challenge(&n.user, &n.key, POLICY, T0)
    );
    let settlement = ChallengeSettlement {
        user: n.user.clone(),
        challenge: n.key.clone(),
        expires_at: T0 + 300,
        proof: JudgedProof::Wrong,
        policy: POLICY,
        session: SessionChange::None,
    };
    op!("settle_challenge", store.settle_challenge(&settlement, T0));
    op!("sessions", store.sessions(&n.user, T0 + 4));
    op!("end_session", store.end_session(&n.user, &n.family, T0 + 5));
    op!(
        "device_add",
        store.device_add(&n.user, &n.key, T0 + 600, T0)
    );
    op!("device_use", store.device_use(&n.user, &n.key, T0 + 1));
    op!("devices", store.devices(&n.user, T0 + 2));
    op!(
        "device_remove",
        store.device_remove(&n.user, &n.key, T0 + 3)
    );
    op!("devices_clear", store.devices_clear(&n.user, T0 + 4));
    op!(
        "use_dpop_proof",
        store.use_dpop_proof(&n.user, &n.key, T0 + 120, T0)
    );
    assert_eq!(out.len(), 24);
    out
}

/// Asserts that every operation failed with `Unavailable` or `Timeout` within `bound`.
fn assert_all_failed_fast(
    results: &[(&'static str, Result<(), StoreError>, Duration)],
    bound: Duration,
) {
    for (name, result, took) in results {
        assert!(
            matches!(
                result,
                Err(StoreError::Unavailable(_) | StoreError::Timeout)
            ),
            "{name} while Redis is down: {result:?}"
        );
        assert!(*took < bound, "{name} took {took:?} (bound {bound:?})");
    }
}

/// Asserts that no text in `texts` contains any of `secrets`.
fn assert_no_leak(texts: &[String], secrets: &[String]) {
    for text in texts {
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{text:?} contains {secret:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_is_under_the_prefix_and_expires() {
    let server = RedisServer::shared();
    let prefix = unique("layout");
    let store = store_at(
        &server.url(),
        &prefix,
        tower_stepup::store::DEFAULT_REDIS_TIMEOUT,
    )
    .await;
    // A marker in every key, user and family name: whatever key holds it must be under
    // the prefix.
    let marker = unique("marker");
    let name = |s: &str| format!("{marker}-{s}");
    let (k1, k2, user, user2) = (name("jti-1"), name("jti-2"), name("u1"), name("u2"));
    let (fam1, fam2, fam3) = (name("fam-1"), name("fam-2"), name("fam-3"));

    // consume + release: one key stays consumed, the released one is gone.
    assert_eq!(store.consume(&k1, T0 + 300, T0).await, Ok(true));
    assert_eq!(store.consume(&k2, T0 + 300, T0).await, Ok(true));
    assert_eq!(store.release(&k2).await, Ok(()));
    assert_eq!(store.is_consumed(&k1, T0).await, Ok(true));
    assert_eq!(store.is_consumed(&k2, T0).await, Ok(false));

    // Failures up to a lockout, which clear_failures keeps; another user is cleared.
    for _ in 0..POLICY.max_attempts {
        store.record_failure(&user, POLICY, T0).await.unwrap();
    }
    assert!(store.attempts(&user, T0).await.unwrap().is_locked(T0));
    assert_eq!(store.clear_failures(&user, T0).await, Ok(()));
    assert!(store.attempts(&user, T0).await.unwrap().is_locked(T0));
    store.record_failure(&user2, POLICY, T0).await.unwrap();
    assert_eq!(store.clear_failures(&user2, T0).await, Ok(()));

    assert_eq!(
        store.advance_totp_step(&user, 100, T0 + 90, T0).await,
        Ok(true)
    );
    assert_eq!(
        store.put(&name("val"), b"v".to_vec(), T0 + 600, T0).await,
        Ok(())
    );
    assert_eq!(
        store.put(&name("gone"), b"v".to_vec(), T0 + 600, T0).await,
        Ok(())
    );
    assert_eq!(store.delete(&name("gone")).await, Ok(()));
    assert_eq!(store.get(&name("val"), T0).await, Ok(Some(b"v".to_vec())));

    // Family 1: created, rotated (t1 -> t2), then t1 replayed: reused, revoked.
    let (t1, t2, t3, t4, t5) = (token(1), token(2), token(3), token(4), token(5));
    store
        .refresh_create(t1, record(&fam1, &user, T0 + 3600), T0)
        .await
        .unwrap();
    assert!(matches!(
        store
            .refresh_rotate(&at(&user, &fam1), t1, t2, T0 + 10)
            .await,
        Ok(Rotation::Rotated(_))
    ));
    assert!(matches!(
        store
            .refresh_rotate(&at(&user, &fam1), t1, t3, T0 + 20)
            .await,
        Ok(Rotation::Reused { .. })
    ));
    // Family 2: revoked by its owner. Family 3: revoked by id.
    store
        .refresh_create(t4, record(&fam2, &user, T0 + 7200), T0)
        .await
        .unwrap();
    assert_eq!(
        store
            .refresh_revoke(&at(&user, &fam2), t4, &user, T0 + 30)
            .await,
        Ok(true)
    );
    store
        .refresh_create(t5, record(&fam3, &user, T0 + 1800), T0)
        .await
        .unwrap();
    assert_eq!(
        store.revoke_family(&user, &fam3, T0 + 40).await,
        Ok(tower_stepup::store::FamilyRevocation::Revoked)
    );
    assert_eq!(
        store
            .refresh_rotate(&at(&user, &fam3), t5, token(6), T0 + 50)
            .await,
        Ok(Rotation::Invalid)
    );
    // A verify of user 2: its challenge and TOTP step, beside the user's attempts.
    let challenge = format!("jti:{}", name("challenge"));
    let reserved = store
        .reserve_challenge(&user2, &challenge, POLICY, T0)
        .await;
    assert_eq!(reserved, Ok(ChallengeReservation::Granted));
    let settlement = ChallengeSettlement {
        user: user2.clone(),
        challenge: challenge.clone(),
        expires_at: T0 + 300,
        proof: JudgedProof::TotpStep {
            step: 5,
            forget_at: T0 + 90,
        },
        policy: POLICY,
        session: SessionChange::None,
    };
    assert_eq!(
        store.settle_challenge(&settlement, T0).await,
        Ok(ChallengeOutcome::Succeeded(None))
    );
    // Two remembered devices of the user: one hash, as long as the longer-lived.
    let month = 30 * 24 * 3600;
    store
        .device_add(&user, &name("dev-1"), T0 + month, T0)
        .await
        .unwrap();
    store
        .device_add(&user, &name("dev-2"), T0 + 100, T0)
        .await
        .unwrap();
    // Two proofs of one DPoP key: one sorted set of their digests, as long as the later.
    let jkt = name("jkt");
    for (jti, exp) in [(name("proof-1"), T0 + 120), (name("proof-2"), T0 + 60)] {
        let used = store.use_dpop_proof(&jkt, &jti, exp, T0).await;
        assert_eq!(used, Ok(DpopUse::Fresh));
    }

    // The expected keys and their TTLs (Redis TTL = expiry - the `now` of the write).
    // A user's attempts, TOTP step, challenges and families share the user's hash tag.
    let p = |kind: &str, rest: &str| format!("{prefix}:{kind}:{rest}");
    let u =
        |kind: &str, user: &str, rest: &str| format!("{prefix}:{kind}:{{{}}}:{rest}", tag(user));
    let expected: BTreeMap<String, u64> = [
        (p("used", &k1), 300),
        (u("used", &user2, &challenge), 300),
        (u("att", &user, &user), POLICY.lockout_secs),
        (u("totp", &user, &user), 90),
        (u("totp", &user2, &user2), 90),
        (p("val", &name("val")), 600),
        // A family keeps its tokens' hashes: no key a token.
        (u("fam", &user, &fam1), 3600),
        (u("fam", &user, &fam2), 7200),
        (u("fam", &user, &fam3), 1800),
        // The user's sessions, as long as the longest of them.
        (u("uf", &user, &user), 7200),
        (p("dev", &user), month),
        // Named by the digest of the key's thumbprint, in its slot.
        (u("dpop", &jkt, &hex_sha256(&jkt)), 120),
    ]
    .into_iter()
    .map(|(k, secs)| (k, secs * 1000))
    .collect();

    let mut keys = server.command(&["KEYS", &format!("{prefix}:*")]);
    keys.sort();
    let mut kinds = BTreeMap::new();
    for key in &keys {
        let rest = key
            .strip_prefix(&format!("{prefix}:"))
            .unwrap_or_else(|| panic!("{key} is not under {prefix}:"));
        let kind = rest.split(':').next().unwrap();
        assert!(
            ["used", "att", "totp", "val", "fam", "uf", "dev", "dpop"].contains(&kind),
            "{key}: unknown kind {kind}"
        );
        *kinds.entry(kind).or_insert(0) += 1;
        let ttl = pttl(server, key);
        assert!(ttl > 0, "{key} has PTTL {ttl}");
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("att", 1),
            ("dev", 1),
            ("dpop", 1),
            ("fam", 3),
            ("totp", 2),
            ("uf", 1),
            ("used", 2),
            ("val", 1)
        ]),
        "{keys:#?}"
    );
    assert_eq!(
        keys,
        expected.keys().cloned().collect::<Vec<_>>(),
        "exactly the expected keys"
    );
    for (key, ms) in &expected {
        assert_pttl(server, key, *ms);
    }
    // The proofs are kept as the digests of their jtis.
    let proofs = server.command(&["ZRANGE", &u("dpop", &jkt, &hex_sha256(&jkt)), "0", "-1"]);
    // In the order of their expiry.
    let digests = [hex_sha256(&name("proof-2")), hex_sha256(&name("proof-1"))];
    assert_eq!(proofs, digests);
    // No key on the whole server that holds one of our names is outside the prefix (and
    // the DPoP key holds none).
    let anywhere = server.command(&["KEYS", &format!("*{marker}*")]);
    assert_eq!(anywhere.len(), 11, "{anywhere:#?}");
    for key in &anywhere {
        assert!(key.starts_with(&format!("{prefix}:")), "{key}");
    }

    // An expiry of u64::MAX is capped at MAX_TTL_SECS, with `now` the real time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let max_ms = MAX_TTL_SECS * 1000;
    assert_eq!(
        store.consume(&name("forever"), u64::MAX, now).await,
        Ok(true)
    );
    assert_eq!(
        store
            .put(&name("forever"), b"v".to_vec(), u64::MAX, now)
            .await,
        Ok(())
    );
    assert_eq!(
        store
            .advance_totp_step(&name("forever"), 1, u64::MAX, now)
            .await,
        Ok(true)
    );
    let eternal = AttemptPolicy {
        max_attempts: 1,
        lockout_secs: u64::MAX,
        window_secs: u64::MAX,
    };
    let a = store
        .record_failure(&name("forever"), eternal, now)
        .await
        .unwrap();
    assert_eq!(a.locked_until, Some(now + MAX_TTL_SECS));
    store
        .refresh_create(token(9), record(&name("forever"), &user, u64::MAX), now)
        .await
        .unwrap();
    let forever = at(&user, &name("forever"));
    let rotated = store
        .refresh_rotate(&forever, token(9), token(10), now)
        .await;
    assert!(matches!(rotated, Ok(Rotation::Rotated(_))), "{rotated:?}");
    assert_eq!(
        store
            .use_dpop_proof(&name("forever"), "jti", u64::MAX, now)
            .await,
        Ok(DpopUse::Fresh)
    );
    let forever_jkt = hex_sha256(&name("forever"));
    for key in [
        u("dpop", &name("forever"), &forever_jkt),
        p("used", &name("forever")),
        p("val", &name("forever")),
        u("totp", &name("forever"), &name("forever")),
        u("att", &name("forever"), &name("forever")),
        u("fam", &user, &name("forever")),
    ] {
        assert_pttl(server, &key, max_ms);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prefixes_isolate_deployments() {
    let a = shared_store("iso-a").await;
    let b = shared_store("iso-b").await;
    assert_ne!(a.prefix(), b.prefix());
    let key = unique("same-key");
    let user = unique("same-user");

    assert_eq!(a.consume(&key, T0 + 300, T0).await, Ok(true));
    assert_eq!(b.is_consumed(&key, T0).await, Ok(false));
    assert_eq!(b.consume(&key, T0 + 300, T0).await, Ok(true));
    assert_eq!(a.consume(&key, T0 + 300, T0).await, Ok(false));
    assert_eq!(b.consume(&key, T0 + 300, T0).await, Ok(false));

    for i in 0..POLICY.max_attempts {
        a.record_failure(&user, POLICY, T0 + u64::from(i))
            .await
            .unwrap();
    }
    let now = T0 + u64::from(POLICY.max_attempts);
    assert!(a.attempts(&user, now).await.unwrap().is_locked(now));
    let in_b = b.attempts(&user, now).await.unwrap();
    assert_eq!((in_b.failures, in_b.locked_until), (0, None));
    let in_b = b.record_failure(&user, POLICY, now).await.unwrap();
    assert_eq!((in_b.failures, in_b.locked_until), (1, None));

    assert_eq!(a.put(&key, b"a".to_vec(), T0 + 60, T0).await, Ok(()));
    assert_eq!(b.get(&key, T0).await, Ok(None));

    a.refresh_create(token(1), record(&key, &user, T0 + 3600), T0)
        .await
        .unwrap();
    let fam = at(&user, &key);
    assert_eq!(
        b.refresh_rotate(&fam, token(1), token(2), T0 + 1).await,
        Ok(Rotation::Invalid)
    );
    assert!(matches!(
        a.refresh_rotate(&fam, token(1), token(2), T0 + 1).await,
        Ok(Rotation::Rotated(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_connections_share_state() {
    let server = RedisServer::shared();
    let prefix = unique("replicas");
    let timeout = tower_stepup::store::DEFAULT_REDIS_TIMEOUT;
    // Two connects: two connection managers, two TCP connections (two replicas).
    let a = store_at(&server.url(), &prefix, timeout).await;
    let b = store_at(&server.url(), &prefix, timeout).await;
    let key = unique("jti");
    let user = unique("user");

    assert_eq!(a.consume(&key, T0 + 300, T0).await, Ok(true));
    assert_eq!(b.consume(&key, T0 + 300, T0).await, Ok(false));
    assert_eq!(b.is_consumed(&key, T0).await, Ok(true));

    // Failures alternate between the replicas and add up to one lockout.
    let mut last = None;
    for i in 0..POLICY.max_attempts {
        let store = if i % 2 == 0 { &a } else { &b };
        let now = T0 + u64::from(i);
        let state = store.record_failure(&user, POLICY, now).await.unwrap();
        assert_eq!(state.failures, i + 1);
        last = Some((now, state));
    }
    let (now, state) = last.unwrap();
    assert_eq!(state.locked_until, Some(now + POLICY.lockout_secs));
    assert!(a.attempts(&user, now).await.unwrap().is_locked(now));
    assert!(b.attempts(&user, now).await.unwrap().is_locked(now));

    // A refresh token rotated on A and replayed on B: reuse, the family is revoked.
    let family = unique("family");
    a.refresh_create(token(1), record(&family, &user, T0 + 3600), T0)
        .await
        .unwrap();
    let fam = at(&user, &family);
    assert!(matches!(
        a.refresh_rotate(&fam, token(1), token(2), T0 + 10).await,
        Ok(Rotation::Rotated(_))
    ));
    assert_eq!(
        b.refresh_rotate(&fam, token(1), token(3), T0 + 20).await,
        Ok(Rotation::Reused {
            family: family.clone(),
            sub: user.clone()
        })
    );
    assert_eq!(
        a.refresh_rotate(&fam, token(2), token(4), T0 + 30).await,
        Ok(Rotation::Invalid)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_fails_fast_and_recovers() {
    let server = RedisServer::start();
    let store = store_at(&server.url(), &unique("killed"), SHORT).await;
    let old = unique("old-jti");
    assert_eq!(store.consume(&old, T0 + 300, T0).await, Ok(true));
    assert_eq!(store.consume(&old, T0 + 300, T0).await, Ok(false));
    let names = Names::new("killed");
    for (name, result, _) in every_operation(&store, &names).await {
        assert_eq!(result, Ok(()), "{name} before the kill");
    }

    server.kill();
    // Twice: the first round may meet the dropped connection, the second the reconnects.
    for round in 0..2 {
        let results = every_operation(&store, &names).await;
        assert_all_failed_fast(&results, SHORT + Duration::from_millis(200));
        let slowest = results.iter().map(|r| r.2).max().unwrap();
        eprintln!("killed, round {round}: slowest operation {slowest:?}");
    }

    server.restart();
    let took = wait_until_usable(&store, "killed").await;
    eprintln!("killed: usable again {took:?} after the restart");
    for (name, result, _) in every_operation(&store, &names).await {
        assert_eq!(result, Ok(()), "{name} after the restart");
    }
    // The documented persistence caveat (see `RedisStore`, "Security"): the test server
    // runs without persistence, so the restart forgot that `old` was consumed.
    assert_eq!(store.is_consumed(&old, T0).await, Ok(false));
    assert_eq!(store.consume(&old, T0 + 300, T0).await, Ok(true));
    assert_eq!(store.consume(&old, T0 + 300, T0).await, Ok(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_server_times_out() {
    let server = RedisServer::start();
    let store = store_at(&server.url(), &unique("frozen"), SHORT).await;
    assert_eq!(store.consume(&unique("k"), T0 + 60, T0).await, Ok(true));
    assert_eq!(
        store.put("v", b"before".to_vec(), T0 + 60, T0).await,
        Ok(())
    );

    server.freeze(true);
    // A write that times out is not undone: it is queued on the connection and Redis
    // runs it once it thaws (below). A timeout means "unknown", not "did not happen".
    let start = Instant::now();
    let result = bounded("put", store.put("v", b"during".to_vec(), T0 + 60, T0)).await;
    let took = start.elapsed();
    eprintln!("frozen, put: {result:?} after {took:?}");
    assert_eq!(result, Err(StoreError::Timeout));
    assert!(took < SHORT + Duration::from_millis(300), "took {took:?}");
    let bound = SHORT + Duration::from_millis(300);
    for round in 0..2 {
        let start = Instant::now();
        let result = bounded("is_consumed", store.is_consumed(&unique("k"), T0)).await;
        let took = start.elapsed();
        eprintln!("frozen, round {round}: {result:?} after {took:?}");
        assert!(
            matches!(
                result,
                Err(StoreError::Timeout | StoreError::Unavailable(_))
            ),
            "{result:?}"
        );
        assert!(took < bound, "took {took:?}");
    }
    // Connecting to a server that accepts but never answers fails too, in time.
    let start = Instant::now();
    let connecting = bounded(
        "connect",
        RedisStore::builder().timeout(SHORT).connect(&server.url()),
    )
    .await;
    let took = start.elapsed();
    eprintln!(
        "frozen: connect {:?} after {took:?}",
        connecting.as_ref().err()
    );
    assert!(connecting.is_err());
    assert!(took < bound, "connect took {took:?}");

    server.freeze(false);
    let took = wait_until_usable(&store, "frozen").await;
    eprintln!("frozen: usable again {took:?} after the thaw");
    // The late replies to the timed-out commands are not taken for the answers to new
    // ones: every answer below is exact.
    let k = unique("after-thaw");
    assert_eq!(store.is_consumed(&k, T0).await, Ok(false));
    assert_eq!(store.consume(&k, T0 + 60, T0).await, Ok(true));
    assert_eq!(store.consume(&k, T0 + 60, T0).await, Ok(false));
    assert_eq!(store.get("v", T0).await, Ok(Some(b"during".to_vec())));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_errors_never_leak_keys() {
    let server = RedisServer::start();
    let store = store_at(&server.url(), &unique("leak"), SHORT).await;
    let names = Names::new("leak");
    let mut secrets = names.secrets();
    let mut texts = vec![format!("{store:?}")];

    // Errors of a killed server.
    server.kill();
    let results = every_operation(&store, &names).await;
    assert_all_failed_fast(&results, SHORT + Duration::from_millis(200));
    for (_, result, _) in &results {
        let e = result.as_ref().unwrap_err();
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
    }

    // Errors of a server that answers with an error, or with what the store cannot
    // read: keys under the prefix that hold what the store did not write (a Lua error,
    // WRONGTYPE, and fields that are not numbers, whose type errors would quote the
    // value: here a user name and a family id).
    server.restart();
    wait_until_usable(&store, "leak").await;
    let p = store.prefix().to_owned();
    let (user2, family2) = (format!("{}-2", names.user), format!("{}-2", names.family));
    let token2 = token(0xb9);
    let (t1, t2) = (tag(&names.user), tag(&user2));
    server.command(&["SET", &format!("{p}:used:{}", names.key), "garbage"]);
    server.command(&[
        "SET",
        &format!("{p}:att:{{{t1}}}:{}", names.user),
        "garbage",
    ]);
    server.command(&[
        "SET",
        &format!("{p}:fam:{{{t1}}}:{}", names.family),
        "garbage",
    ]);
    server.command(&[
        "HSET",
        &format!("{p}:att:{{{t2}}}:{user2}"),
        "f",
        &user2,
        "e",
        "1",
    ]);
    let fam2 = format!("{p}:fam:{{{t1}}}:{family2}");
    server.command(&["HSET", &fam2, "r", "{}", "e", &family2]);
    // The user's list of sessions names the family that is not a hash; their devices
    // are not a hash either.
    server.command(&[
        "ZADD",
        &format!("{p}:uf:{{{t1}}}:{}", names.user),
        "1",
        &names.family,
    ]);
    server.command(&["SET", &format!("{p}:dev:{}", names.user), "garbage"]);
    let consumed = store.consume(&names.key, T0 + 300, T0).await;
    let attempts = store.attempts(&names.user, T0).await;
    let failure = store.record_failure(&names.user, POLICY, T0).await;
    let revoked = store.revoke_family(&names.user, &names.family, T0).await;
    let attempts2 = store.attempts(&user2, T0).await;
    let at2 = at(&names.user, &family2);
    let rotated = store.refresh_rotate(&at2, token2, token(0xba), T0).await;
    let sessions = store.sessions(&names.user, T0).await;
    let ended = store.end_session(&names.user, &names.family, T0).await;
    let devices = store.devices(&names.user, T0).await;
    let used = store.device_use(&names.user, &names.key, T0).await;
    let added = store.device_add(&names.user, &names.key, T0 + 60, T0).await;
    for e in [
        consumed.map(drop),
        attempts.map(drop),
        failure.map(drop),
        revoked.map(drop),
        attempts2.map(drop),
        rotated.map(drop),
        sessions.map(drop),
        ended.map(drop),
        devices.map(drop),
        used.map(drop),
        added.map(drop),
    ] {
        let e = e.expect_err("a foreign value under the prefix is an error");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
    }

    // A password in the URL, to a server that has none.
    let password = "s3cret-pass";
    secrets.push(password.to_owned());
    let url = format!("redis://:{password}@127.0.0.1:{}", server.port());
    match RedisStore::builder().timeout(SHORT).connect(&url).await {
        Err(e) => {
            texts.push(e.to_string());
            texts.push(format!("{e:?}"));
        }
        Ok(s) => {
            texts.push(format!("{s:?}"));
            if let Err(e) = s.consume(&names.key, T0 + 300, T0).await {
                texts.push(e.to_string());
                texts.push(format!("{e:?}"));
            }
        }
    }
    // TLS with an ACL user and password, to a server that speaks no TLS: the handshake
    // fails (with feature `redis-tls`), or `rediss://` is refused as not built in.
    let user = format!("acl-{}", names.user);
    secrets.push(user.clone());
    let tls = format!("rediss://{user}:{password}@127.0.0.1:{}", server.port());
    let e = RedisStore::builder()
        .timeout(SHORT)
        .connect(&tls)
        .await
        .expect_err("no TLS on a plain port");
    texts.push(e.to_string());
    texts.push(format!("{e:?}"));
    // Neither does an invalid URL quote itself.
    let bad = format!("redis://:{password}@127.0.0.1:notaport");
    let e = RedisStore::connect(&bad).await.expect_err("an invalid URL");
    texts.push(e.to_string());
    texts.push(format!("{e:?}"));

    eprintln!("{texts:#?}");
    assert_no_leak(&texts, &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_to_a_closed_port_fails_in_time() {
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let start = Instant::now();
    let url = format!("redis://127.0.0.1:{port}");
    let result = bounded(
        "connect",
        RedisStore::builder().timeout(SHORT).connect(&url),
    )
    .await;
    let took = start.elapsed();
    eprintln!("closed port: {:?} after {took:?}", result.as_ref().err());
    assert!(
        matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Timeout)
        ),
        "{:?}",
        result.map(drop)
    );
    assert!(took < Duration::from_secs(1), "connect took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_raced_on_two_replicas_lock_out_once() {
    let server = RedisServer::shared();
    let prefix = unique("race");
    let timeout = tower_stepup::store::DEFAULT_REDIS_TIMEOUT;
    let a = std::sync::Arc::new(store_at(&server.url(), &prefix, timeout).await);
    let b = std::sync::Arc::new(store_at(&server.url(), &prefix, timeout).await);
    let user = std::sync::Arc::new(unique("user"));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..16u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let user = user.clone();
        set.spawn(async move { store.record_failure(&user, POLICY, T0).await });
    }
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        let state = joined.unwrap().unwrap();
        failures.push((state.failures, state.locked_until));
    }
    failures.sort();
    // Each failure counted once: 1, 2, then the lockout at 3, which the rest see as is.
    let until = Some(T0 + POLICY.lockout_secs);
    let mut expected = vec![(1, None), (2, None)];
    expected.extend(std::iter::repeat_n((3, until), 14));
    assert_eq!(failures, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_in_the_url_is_kept_across_reconnects() {
    let server = RedisServer::start();
    let prefix = unique("db");
    let store = store_at(&format!("{}/5", server.url()), &prefix, SHORT).await;
    // KEYS in database `db`, through a script (SELECT in a script is local to it).
    let keys_in = |db: &str| {
        server.command(&[
            "EVAL",
            "redis.call('SELECT', ARGV[1]) return redis.call('KEYS', ARGV[2])",
            "0",
            db,
            &format!("{prefix}:*"),
        ])
    };
    assert_eq!(store.consume("before", T0 + 60, T0).await, Ok(true));
    assert_eq!(keys_in("5"), vec![format!("{prefix}:used:before")]);
    assert_eq!(keys_in("0"), Vec::<String>::new());

    server.restart();
    wait_until_usable(&store, "db").await;
    assert_eq!(store.consume("after", T0 + 60, T0).await, Ok(true));
    let mut in_5 = keys_in("5");
    in_5.retain(|k| !k.contains("-probe-"));
    assert_eq!(in_5, vec![format!("{prefix}:used:after")]);
    assert_eq!(keys_in("0"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_by_the_server_is_reestablished() {
    let server = RedisServer::start();
    let store = store_at(&server.url(), &unique("client-kill"), SHORT).await;
    let old = unique("old-jti");
    assert_eq!(store.consume(&old, T0 + 300, T0).await, Ok(true));
    // The server closes the store's connection (and stays up, with its data).
    let killed = server.command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert_eq!(killed, vec!["1".to_owned()], "one store connection");
    // The next operation may meet the closed connection; it must not hang or lie.
    let first = bounded("consume", store.consume(&old, T0 + 300, T0)).await;
    assert!(
        matches!(first, Ok(false) | Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    let took = wait_until_usable(&store, "client-kill").await;
    eprintln!("client kill: first {first:?}, usable again after {took:?} more");
    // Same server, same data: still consumed.
    assert_eq!(store.is_consumed(&old, T0).await, Ok(true));
    assert_eq!(store.consume(&old, T0 + 300, T0).await, Ok(false));
}

/// Name spraying fills only the login counters' bounded buckets: one `P:login:<bucket>`
/// hash of at most `LOGIN_RECORDS_PER_BUCKET` fields, with an expiry.
#[tokio::test]
async fn login_counters_of_sprayed_names_stay_bounded() {
    use tower_stepup::store::{Reservation, Settlement, LOGIN_RECORDS_PER_BUCKET};
    let server = RedisServer::shared();
    let prefix = unique("login-spray");
    let store = store_at(
        &server.url(),
        &prefix,
        tower_stepup::store::DEFAULT_REDIS_TIMEOUT,
    )
    .await;
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
    let keys = server.command(&["KEYS", &format!("{prefix}:*")]);
    assert_eq!(keys, [format!("{prefix}:login:ab")]);
    let len = server.command(&["HLEN", &keys[0]]);
    assert_eq!(len, [LOGIN_RECORDS_PER_BUCKET.to_string()]);
    let ttl = pttl(server, &keys[0]);
    assert!(ttl > 0 && ttl <= 100_000, "{ttl}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_with_a_hash_tag_is_refused() {
    // `{` or `}` in the prefix would make part of it the Redis Cluster hash tag of
    // every key, and split the keys of one user's scripts across slots.
    let url = RedisServer::shared().url();
    for prefix in ["app{1}", "app{", "app}"] {
        let store = RedisStore::builder().prefix(prefix).connect(&url).await;
        assert!(
            matches!(store, Err(StoreError::Unavailable(ref e)) if e.contains("prefix")),
            "{prefix}: {store:?}"
        );
    }
}
