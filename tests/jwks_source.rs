//! `jwks::JwksSource` against a real key endpoint (hyper on loopback, once over HTTPS
//! with an rcgen test CA): loading, rotation, removal, unknown-kid floods, the IdP down
//! at start and later, `Cache-Control`, junk entries, discovery, the size cap, timeouts
//! and the `http://` rule. Every wait is a poll on a condition with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Barrier;
use tower_stepup::jwks::{HttpsFetcher, JwksError, JwksSource, JwksSourceBuilder, RootCertStore};
use tower_stepup::token::KeySource;
use tower_stepup::{Algorithm, Clock, ConfigError, Grant, Issuer, SigningKey, SystemClock};
use tower_stepup::{TokenError, TrustedIssuer, Verifier};

#[path = "support/jwks_server.rs"]
mod jwks_server;
#[path = "support/test_ca.rs"]
mod test_ca;

use jwks_server::{free_addr, test_tls, Answer, JwksServer};

const ED: &[u8] = include_bytes!("keys/ed_private.pem");
const EC: &[u8] = include_bytes!("keys/ec_private.pem");
const EC2: &[u8] = include_bytes!("keys/ec2_private.pem");
const ALGS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];
const ISS: &str = "https://idp.test/";
const AUD: &str = "https://api.test";

fn ed(kid: &str) -> SigningKey {
    SigningKey::ed_pem(kid, ED).unwrap()
}

fn ec(kid: &str) -> SigningKey {
    SigningKey::ec_pem(kid, Algorithm::ES256, EC).unwrap()
}

fn ec2(kid: &str) -> SigningKey {
    SigningKey::ec_pem(kid, Algorithm::ES256, EC2).unwrap()
}

fn jwk(key: &SigningKey) -> Value {
    serde_json::to_value(key.public_jwk().unwrap()).unwrap()
}

/// A JWKS document of these entries.
fn set(entries: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": entries })).unwrap()
}

/// A server answering `/jwks` with these keys.
async fn serving(keys: &[&SigningKey]) -> JwksServer {
    let server = JwksServer::start().await;
    server.answer(
        "/jwks",
        Answer::json(set(keys.iter().map(|k| jwk(k)).collect())),
    );
    server
}

fn builder(server: &JwksServer) -> JwksSourceBuilder {
    JwksSource::builder(server.url("/jwks")).algorithms(ALGS)
}

/// A loaded source (panics if the keys do not arrive within 5 s).
async fn loaded(builder: JwksSourceBuilder) -> JwksSource {
    let source = builder.build().unwrap();
    source.wait_loaded(Duration::from_secs(5)).await.unwrap();
    source
}

fn kids(source: &JwksSource) -> Vec<String> {
    let keys = source.shared_keys().keys();
    keys.keys().iter().map(|k| k.kid().to_owned()).collect()
}

/// Polls `condition` every 10 ms until it holds; panics after `secs` seconds.
async fn until(what: &str, secs: u64, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A verifier that trusts the identity provider `ISS` with the source's keys (it
/// builds while the source is still empty).
fn verifier(source: &JwksSource) -> Verifier {
    let idp = TrustedIssuer::new(ISS)
        .audience(AUD)
        .algorithms(ALGS)
        .key_source(source.clone());
    Verifier::builder().trust(idp).build().unwrap()
}

/// An access token for alice signed by `key`.
fn token(key: SigningKey) -> String {
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(key)
        .build()
        .unwrap();
    issuer.issue_access(&Grant::new("alice")).unwrap().token
}

fn verify(verifier: &Verifier, token: &str) -> Result<String, TokenError> {
    let verified = verifier.verify(token, SystemClock.now())?;
    Ok(verified.claims.sub().to_owned())
}

#[tokio::test]
async fn keys_load_from_a_served_set_and_verify_its_tokens() {
    let server = serving(&[&ed("k1"), &ec("k2")]).await;
    let source = loaded(builder(&server)).await;
    assert_eq!(kids(&source), ["k1", "k2"]);
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.failures), (1, 0));
    assert_eq!((stats.keys_loaded, stats.entries_skipped), (2, 0));
    assert!(stats.last_success.is_some() && stats.last_error.is_none());
    assert_eq!(server.hits("/jwks"), 1);
    let verifier = verifier(&source);
    assert_eq!(verify(&verifier, &token(ed("k1"))).unwrap(), "alice");
    assert_eq!(verify(&verifier, &token(ec("k2"))).unwrap(), "alice");
    // The same kid with another key: the signature does not verify.
    assert_eq!(
        verify(&verifier, &token(ec2("k2"))),
        Err(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn a_rotated_in_key_is_fetched_on_its_first_use() {
    let server = serving(&[&ed("k1")]).await;
    let source = loaded(builder(&server)).await;
    let verifier = verifier(&source);
    let new_token = token(ec("k2"));
    assert_eq!(verify(&verifier, &new_token), Err(TokenError::UnknownKey));

    server.answer(
        "/jwks",
        Answer::json(set(vec![jwk(&ed("k1")), jwk(&ec("k2"))])),
    );
    let wait = source.unknown_kid(Some("k2")).expect("a fetch starts");
    wait.await;
    assert_eq!(kids(&source), ["k1", "k2"]);
    assert_eq!(server.hits("/jwks"), 2);
    assert_eq!(verify(&verifier, &new_token).unwrap(), "alice");
}

#[tokio::test]
async fn a_removed_key_stops_verifying_after_the_next_fetch() {
    let server = serving(&[&ed("k1"), &ec("k2")]).await;
    let source = loaded(builder(&server)).await;
    let verifier = verifier(&source);
    let old_token = token(ed("k1"));
    // Verified, and so cached.
    assert_eq!(verify(&verifier, &old_token).unwrap(), "alice");
    assert_eq!(verify(&verifier, &old_token).unwrap(), "alice");

    server.answer("/jwks", Answer::json(set(vec![jwk(&ec("k2"))])));
    source
        .unknown_kid(Some("k3"))
        .expect("a fetch starts")
        .await;
    assert_eq!(kids(&source), ["k2"]);
    assert_eq!(verify(&verifier, &old_token), Err(TokenError::UnknownKey));
    assert_eq!(verify(&verifier, &token(ec("k2"))).unwrap(), "alice");
}

/// 200 tasks ask at once for made-up kids; returns how many got a wait.
async fn flood(source: &JwksSource) -> usize {
    let barrier = Arc::new(Barrier::new(200));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (source, barrier) = (source.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            match source.unknown_kid(Some(&format!("forged-{i}"))) {
                Some(wait) => {
                    wait.await;
                    1
                }
                None => 0,
            }
        });
    }
    tasks.join_all().await.into_iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_kids_makes_one_fetch_then_none_within_the_throttle() {
    let server = serving(&[&ed("k1")]).await;
    let source = loaded(builder(&server)).await;
    // The fetch takes a while, so that all 200 find it in flight.
    let answer = Answer::json(set(vec![jwk(&ed("k1"))])).delay(Duration::from_millis(300));
    server.answer("/jwks", answer);
    let started = Instant::now();

    assert_eq!(
        flood(&source).await,
        200,
        "every caller joined the one fetch"
    );
    assert_eq!(server.hits("/jwks"), 2, "one fetch for 200 unknown kids");

    assert_eq!(flood(&source).await, 0, "throttled: nobody waits");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the throttle"
    );
    assert_eq!(server.hits("/jwks"), 2, "no fetch within 5 s");
    assert_eq!(source.stats().failures, 0);
}

#[tokio::test]
async fn an_idp_down_at_start_is_not_fatal_its_keys_arrive_when_it_comes_up() {
    let addr = free_addr();
    let source = JwksSource::builder(format!("http://{addr}/jwks"))
        .algorithms(ALGS)
        .refresh_bounds(Duration::from_millis(100), Duration::from_secs(3600))
        .build()
        .unwrap();
    until("two failed fetches", 5, || source.stats().failures >= 2).await;
    assert!(kids(&source).is_empty());
    assert_eq!(source.stats().last_error, Some(JwksError::Network));
    let verifier = verifier(&source);
    let token = token(ed("k1"));
    assert_eq!(
        verify(&verifier, &token),
        Err(TokenError::UnknownKey),
        "refused until the keys arrive"
    );
    let wait = verifier.unknown_key_wait(&token).expect("a fetch starts");
    wait.await;
    assert_eq!(verify(&verifier, &token), Err(TokenError::UnknownKey));

    let server = JwksServer::start_at(addr).await;
    server.answer("/jwks", Answer::json(set(vec![jwk(&ed("k1"))])));
    source.wait_loaded(Duration::from_secs(5)).await.unwrap();
    assert_eq!(kids(&source), ["k1"]);
    assert_eq!(verify(&verifier, &token).unwrap(), "alice");
}

#[tokio::test]
async fn an_idp_down_later_leaves_the_last_good_keys_in_use() {
    let server = serving(&[&ed("k1")]).await;
    let source = loaded(builder(&server)).await;
    let verifier = verifier(&source);
    drop(server);

    source
        .unknown_kid(Some("k2"))
        .expect("a fetch starts")
        .await;
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.failures), (2, 1));
    assert_eq!(stats.last_error, Some(JwksError::Network));
    assert_eq!(kids(&source), ["k1"], "stale-if-error");
    assert_eq!(verify(&verifier, &token(ed("k1"))).unwrap(), "alice");

    // A 500 from a server that is up is a failure too.
    let server = JwksServer::start().await;
    server.answer("/jwks", Answer::status(500));
    let failing = JwksSource::builder(server.url("/jwks"))
        .algorithms(ALGS)
        .build()
        .unwrap();
    until("a failed fetch", 5, || failing.stats().failures == 1).await;
    assert_eq!(failing.stats().last_error, Some(JwksError::Status(500)));
}

/// The gaps between the first `n` hits of `/jwks`, once there are `n`.
async fn refresh_gaps(server: &JwksServer, n: usize) -> Vec<Duration> {
    until("the refreshes", 10, || server.hits("/jwks") >= n).await;
    let times = server.hit_times("/jwks");
    times.windows(2).take(n - 1).map(|w| w[1] - w[0]).collect()
}

/// A server whose set says `cache_control`, and a source refreshing within `min..max`.
async fn refreshing(cache_control: &str, min: u64, max: u64) -> (JwksServer, JwksSource) {
    let server = JwksServer::start().await;
    let answer = Answer::json(set(vec![jwk(&ed("k1"))])).cache_control(cache_control);
    server.answer("/jwks", answer);
    let source = builder(&server)
        .refresh_bounds(Duration::from_millis(min), Duration::from_millis(max))
        .build()
        .unwrap();
    (server, source)
}

#[tokio::test]
async fn cache_control_max_age_sets_the_refresh_period() {
    let (server, _source) = refreshing("public, max-age=1", 100, 3_600_000).await;
    for gap in refresh_gaps(&server, 3).await {
        assert!(gap >= Duration::from_millis(990), "{gap:?}: max-age=1 s");
        assert!(gap < Duration::from_secs(4), "{gap:?}");
    }
}

#[tokio::test]
async fn a_long_max_age_is_cut_to_the_maximum() {
    let (server, _source) = refreshing("max-age=86400", 100, 300).await;
    for gap in refresh_gaps(&server, 4).await {
        assert!(gap >= Duration::from_millis(295), "{gap:?}: the maximum");
        assert!(gap < Duration::from_secs(3), "{gap:?}: not a day");
    }
}

#[tokio::test]
async fn no_store_and_a_short_max_age_refresh_at_the_minimum() {
    for cache_control in ["no-store", "max-age=0", "NO-CACHE, max-age=600"] {
        let (server, _source) = refreshing(cache_control, 400, 3_600_000).await;
        for gap in refresh_gaps(&server, 3).await {
            assert!(
                gap >= Duration::from_millis(395),
                "{cache_control}: {gap:?}"
            );
            assert!(gap < Duration::from_secs(3), "{cache_control}: {gap:?}");
        }
    }
}

#[tokio::test]
async fn junk_entries_are_skipped_and_the_good_ones_load() {
    let mut bad_base64 = jwk(&ec("bad-b64"));
    bad_base64["x"] = json!("!!!not base64url!!!");
    let mut for_encryption = jwk(&ec("enc"));
    for_encryption["use"] = json!("enc");
    let entries = vec![
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}),
        for_encryption,
        json!({"kty": "XYZ", "kid": "alien", "crv": "nope"}),
        bad_base64,
        jwk(&ed("good")),
        json!("not even an object"),
    ];
    let server = JwksServer::start().await;
    server.answer("/jwks", Answer::json(set(entries)));
    let source = loaded(builder(&server)).await;
    assert_eq!(kids(&source), ["good"]);
    let stats = source.stats();
    assert_eq!((stats.keys_loaded, stats.entries_skipped), (1, 5));
    assert_eq!(stats.failures, 0);
}

/// A server whose discovery document names `issuer` and its `/jwks`.
async fn discovery_server(issuer: impl Fn(&JwksServer) -> String) -> JwksServer {
    let server = serving(&[&ed("k1")]).await;
    let document = json!({"issuer": issuer(&server), "jwks_uri": server.url("/jwks")});
    let path = "/.well-known/openid-configuration";
    server.answer(path, Answer::json(serde_json::to_vec(&document).unwrap()));
    server
}

#[tokio::test]
async fn discovery_takes_the_jwks_uri_of_the_right_issuer_only() {
    let server = discovery_server(|s| s.url("")).await;
    let source = loaded(JwksSource::discover(server.url("")).algorithms(ALGS)).await;
    assert_eq!(kids(&source), ["k1"]);
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/jwks"), 1);

    // The issuer "http://127.0.0.1:port/" is not "http://127.0.0.1:port": refused.
    let server = discovery_server(|s| s.url("/")).await;
    let source = JwksSource::discover(server.url(""))
        .algorithms(ALGS)
        .build()
        .unwrap();
    until("a failed discovery", 5, || source.stats().failures >= 1).await;
    assert_eq!(source.stats().last_error, Some(JwksError::IssuerMismatch));
    assert!(kids(&source).is_empty());
    assert_eq!(server.hits("/jwks"), 0, "no keys taken from it");
}

#[tokio::test]
async fn discovery_refuses_a_plain_http_jwks_uri_elsewhere() {
    let server = JwksServer::start().await;
    let document = json!({"issuer": server.url(""), "jwks_uri": "http://idp.example/jwks"});
    let path = "/.well-known/openid-configuration";
    server.answer(path, Answer::json(serde_json::to_vec(&document).unwrap()));
    let source = JwksSource::discover(server.url(""))
        .algorithms(ALGS)
        .build()
        .unwrap();
    until("a failed discovery", 5, || source.stats().failures >= 1).await;
    assert_eq!(source.stats().last_error, Some(JwksError::BadJwksUri));
}

#[tokio::test]
async fn a_body_over_the_size_cap_is_refused_while_it_is_read() {
    // A body that never ends: a cap checked after reading would wait for the timeout.
    let server = JwksServer::start().await;
    server.answer("/jwks", Answer::endless());
    let started = Instant::now();
    let source = builder(&server)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    until("a failed fetch", 10, || source.stats().failures >= 1).await;
    assert_eq!(source.stats().last_error, Some(JwksError::TooLarge));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "long before the timeout"
    );

    // One byte over a smaller cap, sent with its length.
    let over = vec![b' '; 64 * 1024 + 1];
    server.answer("/jwks", Answer::json(over));
    let fetcher = HttpsFetcher::builder()
        .max_response_size(64 * 1024)
        .build()
        .unwrap();
    let source = builder(&server).fetcher(fetcher).build().unwrap();
    until("a failed fetch", 5, || source.stats().failures >= 1).await;
    assert_eq!(source.stats().last_error, Some(JwksError::TooLarge));
}

#[tokio::test]
async fn a_slow_server_runs_into_the_timeout() {
    let server = JwksServer::start().await;
    let slow = Answer::json(set(vec![jwk(&ed("k1"))])).delay(Duration::from_secs(10));
    server.answer("/jwks", slow);
    let started = Instant::now();
    let source = builder(&server)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    until("a failed fetch", 5, || source.stats().failures >= 1).await;
    assert_eq!(source.stats().last_error, Some(JwksError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(kids(&source).is_empty());

    // The fetcher's own timeout, inside a source that would wait longer.
    let fetcher = HttpsFetcher::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let source = builder(&server)
        .timeout(Duration::from_secs(30))
        .fetcher(fetcher)
        .build()
        .unwrap();
    until("a failed fetch", 5, || source.stats().failures >= 1).await;
    assert_eq!(source.stats().last_error, Some(JwksError::Timeout));
}

#[tokio::test]
async fn plain_http_to_a_host_that_is_not_loopback_is_refused_at_build() {
    let refused = |result: Result<JwksSource, ConfigError>| match result {
        Err(ConfigError::Invalid { setting, reason }) => {
            assert!(reason.contains("loopback"), "{reason}");
            setting
        }
        other => panic!("{other:?}"),
    };
    let http = JwksSource::builder("http://idp.example/jwks").algorithms(ALGS);
    assert_eq!(refused(http.build()), "jwks url");
    let http = JwksSource::discover("http://idp.example").algorithms(ALGS);
    assert_eq!(refused(http.build()), "issuer");
    for opted_in in [
        JwksSource::builder("http://idp.example/jwks"),
        JwksSource::discover("http://idp.example"),
    ] {
        opted_in.algorithms(ALGS).allow_http(true).build().unwrap();
    }
}

#[tokio::test]
async fn https_with_a_test_ca_and_refused_without_it() {
    let (config, ca) = test_tls();
    let server = JwksServer::start_tls(config).await;
    server.answer("/jwks", Answer::json(set(vec![jwk(&ed("k1"))])));
    assert!(server.url("/jwks").starts_with("https://127.0.0.1:"));

    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let fetcher = HttpsFetcher::builder()
        .root_certificates(roots)
        .build()
        .unwrap();
    let source = loaded(builder(&server).fetcher(fetcher)).await;
    assert_eq!(kids(&source), ["k1"]);

    // The default roots (webpki) do not know the test CA.
    let untrusted = builder(&server).build().unwrap();
    until("a failed fetch", 5, || untrusted.stats().failures >= 1).await;
    assert_eq!(untrusted.stats().last_error, Some(JwksError::Network));
    assert!(kids(&untrusted).is_empty());
    assert_eq!(server.hits("/jwks"), 1, "no request got past the handshake");
}

/// An API on loopback guarded by a verifier of the provider's keys from `source`.
async fn api(source: &JwksSource) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tower_stepup::{Guard, Policy, RouteTable};
    let guard = Guard::builder().verifier(verifier(source)).build().unwrap();
    let table = RouteTable::new().route(http::Method::GET, "/api", Policy::authenticated());
    let app = axum::Router::new()
        .route("/api", axum::routing::get(|| async { "ok" }))
        .layer(guard.route_table(table).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (
        addr,
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
    )
}

async fn status_of(client: &reqwest::Client, addr: std::net::SocketAddr, token: &str) -> u16 {
    let res = client
        .get(format!("http://{addr}/api"))
        .bearer_auth(token)
        .send()
        .await;
    res.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_the_layer_a_new_key_passes_on_first_use_and_a_flood_costs_one_fetch() {
    let server = serving(&[&ed("k1")]).await;
    let source = loaded(builder(&server)).await;
    let (addr, _task) = api(&source).await;
    let client = reqwest::Client::new();
    assert_eq!(status_of(&client, addr, &token(ed("k1"))).await, 200);

    // The provider rotates: its next token names k2, which the API has never seen.
    server.answer(
        "/jwks",
        Answer::json(set(vec![jwk(&ed("k1")), jwk(&ec("k2"))])),
    );
    let before = server.hits("/jwks");
    assert_eq!(
        status_of(&client, addr, &token(ec("k2"))).await,
        200,
        "first use"
    );
    assert_eq!(server.hits("/jwks"), before + 1);

    // 100 concurrent requests naming kids nobody has: throttled, at most one fetch more
    // (the last was just now), every one refused.
    let forged: Vec<String> = (0..100)
        .map(|i| token(ec2(&format!("forged-{i}"))))
        .collect();
    let before = server.hits("/jwks");
    let barrier = Arc::new(Barrier::new(forged.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for t in forged {
        let (client, barrier) = (client.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            status_of(&client, addr, &t).await
        });
    }
    let answers = tasks.join_all().await;
    assert!(answers.iter().all(|&s| s == 401), "{answers:?}");
    assert!(
        server.hits("/jwks") <= before + 1,
        "{} fetches",
        server.hits("/jwks") - before
    );
    // The known keys still pass.
    assert_eq!(status_of(&client, addr, &token(ed("k1"))).await, 200);
}
