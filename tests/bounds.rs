//! No user can exhaust shared capacity (DESIGN §8.2; issue 14, finding 3).
//!
//! The finding: every refresh rotation kept the old token's hash for the family's 24 h,
//! so 99,995 refreshes by bob filled the default 100,000-entry `MemoryStore` and then
//! every user's login and verify answered 503. Here bob does the same against the demo
//! app (`examples/axum_app/app.rs`) on the default `MemoryStore::new()`, and then other
//! users sign in; bob's footprint stays within `REFRESH_HISTORY` tokens a family (kept in
//! the family) and `MAX_SESSIONS_PER_USER` families. The same bounds are then shown on
//! the keys bob leaves in a real Redis.
//!
//! The router is called in-process (`tower::ServiceExt::oneshot`), no sockets: 100,000
//! refreshes take seconds even in a debug build. Run with `--nocapture` to see the
//! timings, store sizes and key counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use tower_stepup::store::{
    FamilyRef, MemoryStore, RedisStore, Store, DEFAULT_MAX_ENTRIES, MAX_SESSIONS_PER_USER,
    REFRESH_HISTORY,
};
use tower_stepup::ManualClock;

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/reply.rs"]
mod reply;

use demo_app::Demo;
use redis_server::RedisServer;
use reply::Reply;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

/// Refreshes by bob against the default `MemoryStore` (the finding's attack).
const MEMORY_REFRESHES: usize = 100_000;
/// Logins by bob against the default `MemoryStore`.
const MEMORY_LOGINS: usize = 1_000;
/// Refreshes by bob against Redis (each is one round trip to a real server).
const REDIS_REFRESHES: usize = 2_000;
/// Logins by bob against Redis.
const REDIS_LOGINS: usize = 100;

/// What one session of a user without a second factor can make the `MemoryStore` keep:
/// its current token and `REFRESH_HISTORY` rotated ones (kept in the family, counted
/// as entries), the family, the user's list of families; plus a few per-user records
/// (attempts, TOTP step, pending enrollment) that a sign-in may add.
const ONE_SESSION_BOUND: usize = (REFRESH_HISTORY + 1) + 1 + 1 + 3;

/// What any number of sessions of one user can make the `MemoryStore` keep (sessions
/// that were never refreshed: a token and a family each).
const FRESH_SESSIONS_BOUND: usize = MAX_SESSIONS_PER_USER * 2 + 1 + 3;

// ---------------------------------------------------------------------------------------
// The demo, in-process
// ---------------------------------------------------------------------------------------

fn demo_on(store: Arc<dyn Store>) -> Demo {
    Demo::build(&demo_config::demo_config(5), ManualClock::new(T0), store)
}

impl Demo {
    async fn login(&self, user: &str, password: &str) -> Reply {
        self.post(
            "/auth/login",
            json!({"username": user, "password": password}),
            None,
        )
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/auth/refresh",
            json!({"refresh_token": refresh_token}),
            None,
        )
        .await
    }

    /// bob has no second factor: his password alone gives a session → (access, refresh).
    async fn bob_session(&self) -> (String, String) {
        let r = self.login("bob", "bob-password").await;
        r.expect_ok_for("bob's login");
        assert!(
            r.body.get("partial_token").is_none(),
            "bob has no second factor: {}",
            r.body
        );
        (r.str("access_token"), r.str("refresh_token"))
    }

    /// alice signs in with her password and TOTP code, and uses her session.
    async fn alice_signs_in(&self) {
        let r = self.login("alice", "alice-password").await;
        r.expect_ok_for("alice's login");
        assert_eq!(r.body["status"], "mfa_required", "{}", r.body);
        let partial = r.str("partial_token");
        let now = tower_stepup::Clock::now(&self.clock);
        let code = codes::code_now(&self.alice, now);
        let v = self
            .post(
                "/auth/mfa/verify",
                json!({"mfa_token": partial, "code": code}),
                None,
            )
            .await;
        v.expect_ok_for("alice's verify");
        let access = v.str("access_token");
        let refresh = v.str("refresh_token");
        let me = self.get("/api/me", Some(&access)).await;
        me.expect_ok_for("alice's /api/me");
        assert_eq!(me.body["sub"], "alice");
        self.get("/api/billing", Some(&access))
            .await
            .expect_ok_for("alice's /api/billing right after her second factor");
        let r = self.refresh(&refresh).await;
        r.expect_ok_for("alice's refresh");
        assert_ne!(r.str("refresh_token"), refresh);
    }

    /// Users that are not bob are answered, not refused for lack of room: alice signs
    /// in with her second factor; carol, unknown to the demo, gets a wrong-credentials
    /// answer (not 503); a wrong password of alice's is judged as wrong.
    async fn others_are_served(&self) {
        self.alice_signs_in().await;
        self.login("carol", "carol-password").await.expect_for(
            StatusCode::UNAUTHORIZED.as_u16(),
            "invalid_credentials",
            "carol's login",
        );
        self.login("alice", "not-alice-password").await.expect_for(
            StatusCode::UNAUTHORIZED.as_u16(),
            "invalid_credentials",
            "alice with a wrong password",
        );
    }

    /// `n` rotations of bob's refresh token, starting from `token`; every one must be
    /// 200 with a new token. `every` rotations, `check` runs. Returns every token
    /// presented, then the last one issued (`n + 1` tokens).
    async fn refreshes(
        &self,
        token: String,
        n: usize,
        every: usize,
        mut check: impl FnMut(usize),
    ) -> Vec<String> {
        let mut tokens = Vec::with_capacity(n + 1);
        tokens.push(token);
        for i in 1..=n {
            let current = tokens.last().unwrap();
            let r = self.refresh(current).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "refresh {i} of {n} by bob: {}",
                r.body
            );
            let next = r.str("refresh_token");
            assert_ne!(&next, current, "refresh {i} returned the same token");
            tokens.push(next);
            if i % every == 0 {
                check(i);
            }
        }
        tokens
    }

    /// `n` logins of bob, `workers` at a time (password hashing dominates): their
    /// refresh tokens, in no particular order.
    async fn bob_logins(&self, n: usize, workers: usize) -> Vec<String> {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..workers {
            let demo = self.clone();
            let count = n / workers + usize::from(w < n % workers);
            set.spawn(async move {
                let mut tokens = Vec::with_capacity(count);
                for _ in 0..count {
                    tokens.push(demo.bob_session().await.1);
                }
                tokens
            });
        }
        let mut tokens = Vec::with_capacity(n);
        while let Some(batch) = set.join_next().await {
            tokens.extend(batch.unwrap());
        }
        assert_eq!(tokens.len(), n);
        tokens
    }
}

// ---------------------------------------------------------------------------------------
// The default MemoryStore
// ---------------------------------------------------------------------------------------

/// The finding's attack: bob refreshes 100,000 times against the default store (the old
/// code filled it at 99,995). Every refresh succeeds, bob's footprint stays at one
/// session (the family, with its current token and the last `REFRESH_HISTORY` rotated
/// ones, and his list of families), and then alice signs in and verifies, carol is
/// answered and bob can sign in again: no 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_100k_refreshes_by_one_user_fail_no_one_else() {
    // The finding's store: the default then (the default now is larger; what is tested
    // is that bob's footprint stays bounded, whatever the size).
    let store = Arc::new(MemoryStore::with_max_entries(100_000));
    const { assert!(DEFAULT_MAX_ENTRIES >= 100_000) };
    let demo = demo_on(store.clone());

    let (_, first) = demo.bob_session().await;
    let after_login = store.len();
    let mut max_len = after_login;
    let started = Instant::now();
    let tokens = demo
        .refreshes(first, MEMORY_REFRESHES, 1_000, |i| {
            let len = store.len();
            max_len = max_len.max(len);
            assert!(
                len <= ONE_SESSION_BOUND,
                "after {i} refreshes the store holds {len} entries (bound {ONE_SESSION_BOUND})"
            );
        })
        .await;
    let elapsed = started.elapsed();
    let len = store.len();
    eprintln!(
        "MemoryStore: {MEMORY_REFRESHES} refreshes by bob in {:.2} s ({:.1} µs each, \
         in-process router); store len {after_login} after login, {len} after the \
         refreshes (max seen {max_len}; bound {ONE_SESSION_BOUND}, REFRESH_HISTORY = \
         {REFRESH_HISTORY})",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / MEMORY_REFRESHES as f64,
    );
    // The current token, REFRESH_HISTORY rotated ones, the family, bob's family list.
    assert_eq!(
        len,
        REFRESH_HISTORY + 1 + 2,
        "bob's one session after {MEMORY_REFRESHES} refreshes"
    );

    // Others are served; so is bob.
    demo.others_are_served().await;
    let (_, second) = demo.bob_session().await;
    demo.refresh(&second)
        .await
        .expect_ok_for("bob's new session");

    // His long-refreshed session still works and still detects reuse: a token rotated
    // more than REFRESH_HISTORY rotations ago is forgotten (merely invalid: the family
    // lives on), a recent one is a replay that ends the family.
    let current = tokens.last().unwrap();
    let forgotten = &tokens[tokens.len() - 1 - (REFRESH_HISTORY + 1)];
    demo.refresh(forgotten).await.expect_for(
        StatusCode::BAD_REQUEST.as_u16(),
        "invalid_grant",
        "a token rotated REFRESH_HISTORY + 1 rotations ago",
    );
    demo.refresh(&tokens[0]).await.expect_for(
        StatusCode::BAD_REQUEST.as_u16(),
        "invalid_grant",
        "bob's first token",
    );
    let r = demo.refresh(current).await;
    r.expect_ok_for("the current token, after old ones were presented");
    let current = r.str("refresh_token");
    let replayed = &tokens[tokens.len() - REFRESH_HISTORY];
    demo.refresh(replayed).await.expect_for(
        StatusCode::BAD_REQUEST.as_u16(),
        "invalid_grant",
        "a token rotated REFRESH_HISTORY rotations ago (a replay)",
    );
    demo.refresh(&current).await.expect_for(
        StatusCode::BAD_REQUEST.as_u16(),
        "invalid_grant",
        "the current token of a family ended by a replay",
    );
    let len = store.len();
    eprintln!("MemoryStore: after alice, carol and bob's new session: store len {len}");
    assert!(
        len <= 2 * ONE_SESSION_BOUND + 8,
        "store len {len} after two sessions of bob and one of alice"
    );
}

/// bob signs in 1,000 times: he keeps at most `MAX_SESSIONS_PER_USER` sessions, the
/// newest; the refresh tokens of the older ones are refused (400 invalid_grant), the
/// newest 32 work, and the store stays bounded; alice signs in afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_1000_logins_keep_the_newest_sessions() {
    let store = Arc::new(MemoryStore::new());
    let demo = demo_on(store.clone());

    let started = Instant::now();
    // The older sessions, two at a time (argon2 dominates), then the newest in order.
    let older = demo
        .bob_logins(MEMORY_LOGINS - MAX_SESSIONS_PER_USER, 2)
        .await;
    let len_older = store.len();
    let mut newest = Vec::with_capacity(MAX_SESSIONS_PER_USER);
    for _ in 0..MAX_SESSIONS_PER_USER {
        newest.push(demo.bob_session().await.1);
    }
    let elapsed = started.elapsed();
    let len = store.len();
    eprintln!(
        "MemoryStore: {MEMORY_LOGINS} logins by bob in {:.2} s; store len {len_older} after \
         {}, {len} after all (bound {FRESH_SESSIONS_BOUND}, MAX_SESSIONS_PER_USER = \
         {MAX_SESSIONS_PER_USER})",
        elapsed.as_secs_f64(),
        older.len(),
    );
    assert!(
        len_older <= FRESH_SESSIONS_BOUND && len <= FRESH_SESSIONS_BOUND,
        "store len {len_older} / {len}, bound {FRESH_SESSIONS_BOUND}"
    );
    // A token and a family per live session, and bob's list.
    assert_eq!(len, 2 * MAX_SESSIONS_PER_USER + 1);

    let started = Instant::now();
    for (i, token) in older.iter().enumerate() {
        demo.refresh(token).await.expect_for(
            StatusCode::BAD_REQUEST.as_u16(),
            "invalid_grant",
            &format!("the refresh token of ended session {i}"),
        );
    }
    for (i, token) in newest.iter().enumerate() {
        demo.refresh(token).await.expect_ok_for(&format!(
            "the refresh token of live session {i} of the newest"
        ));
    }
    eprintln!(
        "MemoryStore: {} ended sessions refused, {} live ones refreshed in {:.2} s; store \
         len {}",
        older.len(),
        newest.len(),
        started.elapsed().as_secs_f64(),
        store.len()
    );

    // bob: 32 families, each with its current token and the one just rotated; his list.
    let bob = MAX_SESSIONS_PER_USER * 3 + 1;
    assert_eq!(store.len(), bob);
    demo.others_are_served().await;
    let len = store.len();
    assert!(
        len <= bob + ONE_SESSION_BOUND + 1,
        "store len {len} after alice's sign-in (bob's part: {bob})"
    );
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// A prefix no other test (or earlier run) uses.
fn unique_prefix(what: &str) -> String {
    redis_server::unique_prefix("bounds", what)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a refresh token as a family keeps it (SHA-256, in hex).
fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The tag of `user`'s keys (`{T}` in `P:fam:{T}:<family>`).
fn tag(user: &str) -> String {
    FamilyRef::new(user, "").user_tag().to_owned()
}

/// Every key under `prefix`, sorted into what belongs to `user`.
#[derive(Debug, Default)]
struct Keys {
    /// `P:fam:{T}:*` of `user`.
    fam: usize,
    /// `P:uf:{T}:<user>`.
    uf: usize,
    /// Any other key naming the user (attempts, TOTP step, pending enrollment).
    other: usize,
    /// Keys that are not the user's.
    foreign: Vec<String>,
    /// The refresh-token hashes each of the user's families keeps (current and rotated).
    tokens_per_family: BTreeMap<String, usize>,
    /// `MEMORY USAGE` of the user's keys, in bytes.
    bytes: u64,
}

impl Keys {
    fn total(&self) -> usize {
        self.fam + self.uf + self.other
    }

    /// The most token hashes one family keeps.
    fn max_tokens(&self) -> usize {
        self.tokens_per_family.values().copied().max().unwrap_or(0)
    }
}

fn memory_usage(server: &RedisServer, key: &str) -> u64 {
    server.command(&["MEMORY", "USAGE", key])[0]
        .parse()
        .unwrap_or_else(|_| panic!("MEMORY USAGE {key}"))
}

/// `(current, rotated)`: the token hashes family key `key` keeps.
fn family_tokens(server: &RedisServer, key: &str) -> (String, Vec<String>) {
    let fields = server.command(&["HMGET", key, "c", "h"]);
    let history = fields.get(1).cloned().unwrap_or_default();
    let rotated = history
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    (fields[0].clone(), rotated)
}

fn keys_of(server: &RedisServer, prefix: &str, user: &str) -> Keys {
    let all = server.command(&["KEYS", &format!("{prefix}:*")]);
    let mut keys = Keys::default();
    let tagged = format!("{{{}}}:", tag(user));
    for key in &all {
        let rest = key.strip_prefix(&format!("{prefix}:")).unwrap();
        let (kind, name) = rest.split_once(':').unwrap();
        let mine = match kind {
            "fam" => {
                let mine = server.command(&["HGET", key, "s"]) == [user];
                if mine {
                    assert!(name.starts_with(&tagged), "{key}: not in {user}'s slot");
                    keys.fam += 1;
                    let (_, rotated) = family_tokens(server, key);
                    keys.tokens_per_family
                        .insert(key.clone(), 1 + rotated.len());
                }
                mine
            }
            "uf" => {
                let mine = name == format!("{tagged}{user}");
                keys.uf += usize::from(mine);
                mine
            }
            _ => {
                let mine = name.split(':').any(|part| part == user);
                keys.other += usize::from(mine);
                mine
            }
        };
        if mine {
            keys.bytes += memory_usage(server, key);
        } else {
            keys.foreign.push(key.clone());
        }
    }
    keys
}

/// The same on Redis, over a real socket: bob's refreshes and logins leave at most
/// `REFRESH_HISTORY + 1` token hashes a family, `MAX_SESSIONS_PER_USER` families and one
/// list of them; the keys of ended sessions are deleted; then alice signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keys_per_user_stay_bounded() {
    let server = RedisServer::shared();
    let prefix = unique_prefix("redis");
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connect(&server.url())
        .await
        .expect("connect to the test redis-server");
    let demo = demo_on(Arc::new(store));

    // One session, refreshed 2,000 times.
    let (_, first) = demo.bob_session().await;
    let started = Instant::now();
    let tokens = demo
        .refreshes(first, REDIS_REFRESHES, 500, |i| {
            let keys = keys_of(server, &prefix, "bob");
            assert!(
                keys.max_tokens() <= REFRESH_HISTORY + 1 && keys.fam == 1 && keys.uf == 1,
                "after {i} refreshes: {keys:?}"
            );
        })
        .await;
    let elapsed = started.elapsed();
    let keys = keys_of(server, &prefix, "bob");
    eprintln!(
        "Redis: {REDIS_REFRESHES} refreshes by bob in {:.2} s ({:.0} µs each); bob's keys: \
         fam {} ({} token hashes), uf {}, other {}, total {} ({} B by MEMORY USAGE, one \
         family with its full history)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / REDIS_REFRESHES as f64,
        keys.fam,
        keys.max_tokens(),
        keys.uf,
        keys.other,
        keys.total(),
        keys.bytes,
    );
    assert!(
        keys.foreign.is_empty(),
        "keys not bob's: {:?}",
        keys.foreign
    );
    assert_eq!((keys.fam, keys.uf, keys.other), (1, 1, 0), "{keys:?}");
    // The family keeps the hashes of the newest tokens: the current and the last 16.
    let family = keys.tokens_per_family.keys().next().unwrap();
    let (current, rotated) = family_tokens(server, family);
    let newest: Vec<String> = tokens[tokens.len() - (REFRESH_HISTORY + 1)..]
        .iter()
        .map(|t| token_hash(t))
        .collect();
    assert_eq!(&current, newest.last().unwrap());
    assert_eq!(rotated, newest[..REFRESH_HISTORY]);

    // 100 logins: at most MAX_SESSIONS_PER_USER families; the long-refreshed one, the
    // oldest, ended.
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(REDIS_LOGINS);
    for _ in 0..REDIS_LOGINS {
        sessions.push(demo.bob_session().await.1);
    }
    let elapsed = started.elapsed();
    let keys = keys_of(server, &prefix, "bob");
    let zcard = server.command(&["ZCARD", &format!("{prefix}:uf:{{{}}}:bob", tag("bob"))]);
    eprintln!(
        "Redis: then {REDIS_LOGINS} logins by bob in {:.2} s; bob's keys: fam {}, uf {} \
         (ZCARD {}), other {}, total {} ({} B by MEMORY USAGE); bounds: fam \
         {MAX_SESSIONS_PER_USER}, uf 1",
        elapsed.as_secs_f64(),
        keys.fam,
        keys.uf,
        zcard[0],
        keys.other,
        keys.total(),
        keys.bytes,
    );
    assert!(
        keys.foreign.is_empty(),
        "keys not bob's: {:?}",
        keys.foreign
    );
    assert_eq!(keys.uf, 1, "{keys:?}");
    assert_eq!(zcard, [MAX_SESSIONS_PER_USER.to_string()]);
    // Exactly the newest 32 sessions, a token each; nothing left of the others.
    assert_eq!(keys.fam, MAX_SESSIONS_PER_USER, "{keys:?}");
    assert_eq!(keys.max_tokens(), 1, "{keys:?}");
    assert!(
        keys.total() <= MAX_SESSIONS_PER_USER + 1 + 3,
        "bob's keys: {keys:?}"
    );

    let ended = sessions.len() - MAX_SESSIONS_PER_USER;
    for (i, token) in sessions.iter().enumerate() {
        let r = demo.refresh(token).await;
        if i < ended {
            r.expect_for(
                StatusCode::BAD_REQUEST.as_u16(),
                "invalid_grant",
                &format!("ended session {i}"),
            );
        } else {
            r.expect_ok_for(&format!("live session {i}"));
        }
    }
    demo.refresh(tokens.last().unwrap()).await.expect_for(
        StatusCode::BAD_REQUEST.as_u16(),
        "invalid_grant",
        "the long-refreshed session, ended to make room",
    );

    demo.others_are_served().await;
    let keys = keys_of(server, &prefix, "bob");
    assert!(
        keys.fam <= MAX_SESSIONS_PER_USER && keys.max_tokens() <= REFRESH_HISTORY + 1,
        "{keys:?}"
    );
}
