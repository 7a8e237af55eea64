//! `RedisStore` on a real Redis Cluster (feature `redis-cluster`): three masters and
//! three replicas on loopback (`support/redis_cluster.rs`). The whole store contract
//! (`store_contract`, as for one node), keys spread over every master, and failover: a
//! killed master makes the operations on its slots fail closed within 1 s, never
//! succeed wrongly, and once its replica has taken over the same `RedisStore` value
//! serves again, the endpoints included (503 during, 200 after).
//!
//! Run with `--nocapture` to see the failover timings.

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/reply.rs"]
mod reply;
mod store_contract;
#[cfg(feature = "redis-tls")]
#[path = "support/test_ca.rs"]
mod test_ca;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use redis_cluster::RedisCluster;
use serde_json::json;
use store_contract::T0;
use tower_stepup::store::{RedisStore, Store, StoreError};
use tower_stepup::ManualClock;

contract_tests!(|| async {
    RedisStore::connect_cluster(RedisCluster::shared().urls())
        .await
        .expect("connect to the test cluster")
});

/// The store's timeout in the failover tests.
const TIMEOUT: Duration = Duration::from_millis(500);

/// The bound on any answer while a master is down.
const FAIL_FAST: Duration = Duration::from_secs(1);

/// How long the same store may take to serve again once the replica is master.
const RECOVERY: Duration = Duration::from_secs(5);

/// A prefix no other test (or earlier run) uses.
fn unique(what: &str) -> String {
    redis_server::unique_prefix("cluster", what)
}

/// A store with `prefix` and timeout [`TIMEOUT`] on the cluster of `urls`.
async fn store_on(prefix: &str, urls: &[String]) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .timeout(TIMEOUT)
        .connect_cluster(urls)
        .await
        .expect("connect to the cluster")
}

/// The masters' indexes, as node 0 sees them.
fn masters(cluster: &RedisCluster) -> Vec<usize> {
    cluster
        .nodes_seen_by(0)
        .iter()
        .filter(|n| n.master && !n.failed)
        .map(|n| cluster.index_of(n.port))
        .collect()
}

/// The keys under `prefix` on node `i`.
fn keys_on(cluster: &RedisCluster, i: usize, prefix: &str) -> Vec<String> {
    cluster.node(i).command(&["KEYS", &format!("{prefix}:*")])
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_spread_over_every_master_from_one_seed_url() {
    let cluster = RedisCluster::shared();
    let prefix = unique("spread");
    // One node's URL is enough: the others are found through the cluster.
    let store = store_on(&prefix, &cluster.urls()[..1]).await;
    for i in 0..48 {
        let key = format!("k{i}");
        assert_eq!(store.consume(&key, T0 + 300, T0).await, Ok(true));
        assert_eq!(store.consume(&key, T0 + 300, T0).await, Ok(false));
    }
    let masters = masters(cluster);
    assert_eq!(masters.len(), 3, "three masters");
    let mut total = 0;
    for &m in &masters {
        let keys = keys_on(cluster, m, &prefix);
        assert!(!keys.is_empty(), "master {m} holds none of the 48 keys");
        for key in &keys {
            // Each key lives on the master of its slot.
            assert_eq!(cluster.master_of(key), m, "{key}");
        }
        total += keys.len();
    }
    assert_eq!(total, 48, "every key once, on its master");
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_needs_a_node_that_answers() {
    let none: [&str; 0] = [];
    let e = RedisStore::connect_cluster(none).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("at least one node"), "{e}");
    // A node URL with a password nobody listens on: a clean error within the timeout
    // that quotes neither the URL nor the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://:pw-Cl7s9@127.0.0.1:{port}");
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        RedisStore::builder()
            .timeout(TIMEOUT)
            .connect_cluster([&url]),
    )
    .await
    .expect("an answer within 5 s");
    let e = result.unwrap_err();
    assert!(start.elapsed() < FAIL_FAST, "{:?}", start.elapsed());
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(
            !text.contains("pw-Cl7s9") && !text.contains("redis://"),
            "{text}"
        );
    }
}

/// `rediss://` nodes (feature `redis-tls`) with an ACL user: the store reaches every
/// master over TLS as that user, from one seed URL (the nodes found through the cluster
/// get the same TLS roots and credentials); the system's roots do not vouch for the test
/// CA, and no refusal quotes the password. (The default user stays on for the nodes'
/// replication and the tests' own plain commands.)
#[cfg(feature = "redis-tls")]
#[tokio::test(flavor = "multi_thread")]
async fn rediss_nodes_serve_the_store_as_an_acl_user() {
    const PASSWORD: &str = "pw-Tc4luster";
    let ca = test_ca::TestCa::new();
    let acl = format!(">{PASSWORD}");
    let extra = ["--user", "alice", "on", &acl, "~*", "&*", "+@all"];
    let cluster = RedisCluster::start_tls(redis_cluster::Tls {
        dir: ca.dir(),
        extra: &extra,
    });
    let urls = cluster.tls_urls(&format!("alice:{PASSWORD}@"));
    let prefix = unique("tls");
    let store = RedisStore::builder()
        .prefix(&prefix)
        .root_certificates(ca.ca_pem.clone())
        .connect_cluster(&urls[..1])
        .await
        .expect("connect over TLS as alice");
    for i in 0..24 {
        let key = format!("k{i}");
        assert_eq!(store.consume(&key, T0 + 300, T0).await, Ok(true));
        assert_eq!(store.consume(&key, T0 + 300, T0).await, Ok(false));
    }
    for m in masters(&cluster) {
        assert!(!keys_on(&cluster, m, &prefix).is_empty(), "master {m}");
        let clients = cluster.node(m).command(&["CLIENT", "LIST"]).concat();
        assert!(clients.contains("user=alice"), "master {m}: {clients}");
    }
    let refusals = [
        // The system's roots.
        RedisStore::builder()
            .timeout(TIMEOUT)
            .connect_cluster(&urls)
            .await,
        // The right roots but a wrong password.
        RedisStore::builder()
            .timeout(TIMEOUT)
            .root_certificates(ca.ca_pem.clone())
            .connect_cluster(cluster.tls_urls("alice:wrong-pw@"))
            .await,
        // Roots given for plain URLs: refused, not ignored.
        RedisStore::builder()
            .timeout(TIMEOUT)
            .root_certificates(ca.ca_pem.clone())
            .connect_cluster(cluster.urls())
            .await,
    ];
    // The cluster client reports any failed first connection as I/O (a refused
    // handshake and a refused password alike).
    let expected = ["redis: Io", "redis: Io", "root certificates"];
    for (refused, expected) in refusals.into_iter().zip(expected) {
        let e = refused.expect_err("refused");
        assert!(
            e.to_string().contains(expected),
            "{e} (expected {expected})"
        );
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(
                !text.contains(PASSWORD) && !text.contains("wrong-pw"),
                "{text}"
            );
            assert!(!text.contains("127.0.0.1"), "{text} quotes a URL");
        }
    }
}

/// The result of one call made while a master was down.
fn check_down<T: std::fmt::Debug>(
    what: &str,
    result: &Result<T, StoreError>,
    took: Duration,
    taken_over: bool,
) {
    assert!(
        took < FAIL_FAST,
        "{what} took {took:?} while a master was down"
    );
    if !taken_over {
        assert!(
            matches!(
                result,
                Err(StoreError::Unavailable(_) | StoreError::Timeout)
            ),
            "{what} while its master was down and not yet replaced: {result:?}"
        );
    }
}

/// How a master goes away.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGKILL: its connections are refused at once.
    Killed,
    /// SIGSTOP: it accepts connections and never answers.
    Frozen,
}

/// A master goes away (`outage`) under a running store: every call on its keys fails
/// closed within [`FAIL_FAST`] and never succeeds wrongly while it is gone; once its
/// replica has taken over, the same store value serves again, with what was written
/// before. Prints the timings (`--nocapture`).
async fn master_goes_away(outage: Outage) {
    let cluster = RedisCluster::start();
    let prefix = unique("failover");
    let store = store_on(&prefix, &cluster.urls()).await;
    let (key, value) = ("jti-1", "pending");
    assert_eq!(store.consume(key, T0 + 300, T0).await, Ok(true));
    let master = cluster.master_of(&format!("{prefix}:used:{key}"));
    let replica = cluster.replica_of(master);
    // A value on the same master (another of its slots: the whole master goes).
    let val = (0..)
        .map(|i| format!("v{i}"))
        .find(|v| cluster.master_of(&format!("{prefix}:val:{v}")) == master)
        .unwrap();
    store.put(&val, value.into(), T0 + 600, T0).await.unwrap();
    cluster.wait_replicated(master, replica);
    let alive: Vec<usize> = (0..6).filter(|&i| i != master).collect();

    match outage {
        Outage::Killed => cluster.node(master).kill(),
        Outage::Frozen => cluster.node(master).freeze(true),
    }
    let gone = Instant::now();
    let seen = calls_while_gone(&cluster, &store, (key, &val), replica).await;
    let promoted = gone.elapsed();
    cluster.wait_failover(replica, &alive);

    // The same store value, no reconnecting by hand.
    let serving = serving_again(&store, key, gone).await;
    assert_eq!(store.consume(key, T0 + 300, T0 + 2).await, Ok(false));
    assert_eq!(
        store.get(&val, T0 + 2).await,
        Ok(Some(value.as_bytes().to_vec()))
    );
    assert_eq!(store.consume("jti-2", T0 + 300, T0 + 2).await, Ok(true));
    if let Outage::Frozen = outage {
        // The old master wakes up, learns it was replaced and follows the new one: it
        // takes no write for its old slots.
        cluster.node(master).freeze(false);
        cluster.wait_demoted(master);
        assert_eq!(store.consume(key, T0 + 300, T0 + 3).await, Ok(false));
        assert_eq!(store.consume("jti-3", T0 + 300, T0 + 3).await, Ok(true));
    }
    let WhileGone {
        first: (first_result, first_took),
        slowest,
        rounds,
    } = seen;
    eprintln!(
        "{outage:?} master: first call failed in {first_took:?} ({first_result:?}); slowest \
         call while it was gone {slowest:?} over {rounds} rounds; its replica master {promoted:?} \
         after; the same store serving its keys again {serving:?} after"
    );
}

/// What the calls made while a master was gone saw.
struct WhileGone {
    /// The first call's result and duration.
    first: (Result<bool, StoreError>, Duration),
    /// The slowest call.
    slowest: Duration,
    /// Rounds of calls (a consume and a get each).
    rounds: u32,
}

/// Calls `store` on `key` (consumed) and `val` (a value), both on the master that just
/// went away, every 50 ms until `replica` has taken over: each call answers within
/// [`FAIL_FAST`], with an error until then, and the consumed key is never consumed again.
async fn calls_while_gone(
    cluster: &RedisCluster,
    store: &RedisStore,
    (key, val): (&str, &str),
    replica: usize,
) -> WhileGone {
    let mut seen = WhileGone {
        first: (Ok(false), Duration::ZERO),
        slowest: Duration::ZERO,
        rounds: 0,
    };
    loop {
        let taken_over = cluster.is_master(replica);
        let start = Instant::now();
        let consumed = store.consume(key, T0 + 300, T0 + 1).await;
        let took = start.elapsed();
        // Consumed before: never consumable again, whatever the cluster does.
        assert_ne!(consumed, Ok(true), "consumed twice across the failover");
        check_down(
            "consume",
            &consumed,
            took,
            taken_over || cluster.is_master(replica),
        );
        let start = Instant::now();
        let got = store.get(val, T0 + 1).await;
        let took_get = start.elapsed();
        check_down(
            "get",
            &got,
            took_get,
            taken_over || cluster.is_master(replica),
        );
        if seen.rounds == 0 {
            assert!(consumed.is_err(), "right after the outage: {consumed:?}");
            seen.first = (consumed, took);
        }
        seen.slowest = seen.slowest.max(took).max(took_get);
        seen.rounds += 1;
        if taken_over {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most [`RECOVERY`]) until `store` reads `key` (consumed before the master
/// went away) again, and finds it consumed; returns how long after `gone` that was.
async fn serving_again(store: &RedisStore, key: &str, gone: Instant) -> Duration {
    let start = Instant::now();
    loop {
        match store.is_consumed(key, T0 + 2).await {
            Ok(consumed) => {
                assert!(consumed, "the consumed key survived the failover");
                return gone.elapsed();
            }
            Err(e) => assert!(
                start.elapsed() < RECOVERY,
                "not serving {RECOVERY:?} after the failover: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_master_fails_closed_and_its_replica_serves_the_same_store() {
    master_goes_away(Outage::Killed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_master_times_out_and_its_replica_serves_the_same_store() {
    master_goes_away(Outage::Frozen).await;
}

// ---------------------------------------------------------------------------------------
// The endpoints on the cluster store.

/// 10 s into a 30 s TOTP step.
const DEMO_T0: u64 = 1_800_000_010;

fn hex_sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn bob_login(demo: &demo_app::Demo) -> reply::Reply {
    demo.post(
        "/auth/login",
        json!({"username": "bob", "password": "bob-password"}),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoints_answer_503_while_a_master_is_down_and_200_after_failover() {
    let cluster = RedisCluster::start();
    let prefix = unique("demo");
    let store = store_on(&prefix, &cluster.urls()).await;
    let config = demo_config::demo_config(5);
    let demo = demo_app::Demo::build(&config, ManualClock::new(DEMO_T0), Arc::new(store));
    // bob has no second factor: a login is a session.
    let r = bob_login(&demo).await;
    r.expect_ok_for("bob's login on the cluster");
    let refresh = r.str("refresh_token");
    // bob's login counters live in one bucket key (`P:login:` and the first two hex
    // digits of his account's digest, see RedisStore's key table): kill its master. (If
    // this were the wrong key, the first login below would pass.)
    let bucket = format!("{prefix}:login:{}", &hex_sha256("bob")[..2]);
    let master = cluster.master_of(&bucket);
    let replica = cluster.replica_of(master);
    cluster.wait_replicated(master, replica);
    let alive: Vec<usize> = (0..6).filter(|&i| i != master).collect();

    cluster.node(master).kill();
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let start = Instant::now();
        let r = bob_login(&demo).await;
        let took = start.elapsed();
        if cluster.is_master(replica) {
            break;
        }
        // Not taken over yet (checked after the answer): only 503 is right.
        r.expect_for(503, "temporarily_unavailable", "bob's login, master down");
        assert!(took < FAIL_FAST, "503 after {took:?}");
        slowest = slowest.max(took);
        refused += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused > 0, "the replica took over before any request");
    cluster.wait_failover(replica, &alive);

    let recovered = Instant::now();
    loop {
        let r = bob_login(&demo).await;
        if r.status == StatusCode::OK {
            break;
        }
        r.expect_for(503, "temporarily_unavailable", "bob's login, failing over");
        assert!(
            recovered.elapsed() < RECOVERY,
            "the endpoints did not serve again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = recovered.elapsed();
    // The session made before the kill still refreshes.
    demo.post("/auth/refresh", json!({"refresh_token": refresh}), None)
        .await
        .expect_ok_for("bob's refresh after the failover");
    eprintln!(
        "endpoints: {refused} logins answered 503 (slowest {slowest:?}) while the master was \
         down; 200 again {recovery:?} after the failover"
    );
}

/// The demo on a cluster store with prefix `prefix` through `urls`, its guard following
/// the store's revocation feed (staleness bound 60 s); returns once the feed was read.
async fn following_demo(prefix: &str, urls: &[String]) -> demo_app::Demo {
    let store = store_on(prefix, urls).await;
    let config = app::DemoConfig {
        revocation_staleness_secs: Some(60),
        ..demo_config::demo_config(5)
    };
    let demo = demo_app::Demo::build(&config, ManualClock::new(DEMO_T0), Arc::new(store.clone()));
    store.follow_revocations(&demo.guard);
    let start = Instant::now();
    while demo.guard.revocations().synced_at().is_none() {
        assert!(start.elapsed() < RECOVERY, "the feed was never read");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    demo
}

/// The revocation feed on a cluster: B subscribes to a replica (its first seed URL), A
/// ends bob's session on the master of his revocation key; the message crosses the
/// cluster, and B refuses bob's access token within 1 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_on_one_replica_reaches_another_through_the_cluster() {
    let cluster = RedisCluster::shared();
    let prefix = unique("feed");
    let urls = cluster.urls();
    let a = following_demo(&prefix, &urls).await;
    let replica = (0..6).find(|&i| !cluster.is_master(i)).expect("a replica");
    let mut seeds = vec![urls[replica].clone()];
    seeds.extend(urls.iter().cloned());
    let b = following_demo(&prefix, &seeds).await;
    let channel = format!("{prefix}:revoked");
    let numsub = cluster
        .node(replica)
        .command(&["PUBSUB", "NUMSUB", &channel]);
    assert_eq!(
        numsub,
        [channel.clone(), "1".to_owned()],
        "B listens on the replica"
    );

    let r = bob_login(&a).await;
    r.expect_ok_for("bob's login on A");
    let (access, refresh) = (r.str("access_token"), r.str("refresh_token"));
    b.get("/api/me", Some(&access))
        .await
        .expect_ok_for("bob on B");
    let r = a
        .post(
            "/auth/logout",
            json!({"refresh_token": refresh}),
            Some(&access),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "bob's logout on A: {}",
        r.body
    );
    let ended = Instant::now();
    loop {
        let r = b.get("/api/me", Some(&access)).await;
        if r.status == StatusCode::UNAUTHORIZED {
            r.expect(401, "invalid_token");
            break;
        }
        r.expect_ok_for("bob on B until the news arrives");
        assert!(
            ended.elapsed() < FAIL_FAST,
            "B still accepts an ended session"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "feed: B refused the ended session {:?} after the logout",
        ended.elapsed()
    );
}
