//! The layer's DPoP checks (RFC 9449 §4.3, §7), over HTTP: a real axum server on
//! 127.0.0.1, reqwest, and proofs made independently of the crate
//! (`tests/support/dpop.rs`: p256, ed25519-dalek, JSON and base64url by hand). Every check
//! of §4.3 has a request that fails it and only it; the happy path passes with both key
//! types, cached or not.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde_json::json;
use tower_stepup::dpop::{DpopConfig, DpopError, DpopNonces};
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::{
    Algorithm, Claims, Clock as _, Denial, Grant, Guard, Issuer, ManualClock, Policy, RouteTable,
    Sealer, SealingKey, SealingKeys, SigningKey, StepUp, Verifier, VerifyingKey,
};

#[path = "support/dpop.rs"]
mod dpop;
#[path = "support/failing_store.rs"]
mod failing_store;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/reply.rs"]
mod reply;
#[path = "support/served.rs"]
mod served;

use dpop::Key;
use reply::Reply;

const T0: u64 = 1_800_000_000;
const SECRET: [u8; 32] = [42; 32];
const ISS: &str = "https://auth.test";
const AUD: &str = "https://api.test";
const ALGS: &str = r#"DPoP algs="ES256 EdDSA""#;

/// A server whose guard accepts DPoP, its public URL and the tokens it accepts.
struct App {
    _served: served::Served,
    /// The public URL, `http://127.0.0.1:<port>`: what `htu` must start with.
    base: String,
    issuer: Issuer,
    sealer: Sealer,
    clock: ManualClock,
    http: reqwest::Client,
}

fn table() -> RouteTable {
    RouteTable::new()
        .any("/public", Policy::public())
        .any("/api/me", Policy::authenticated())
        .any("/api/dpop-only", Policy::authenticated().require_dpop())
        .any(
            "/api/admin",
            Policy::step_up(StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))),
        )
}

async fn app() -> App {
    app_with_store(Arc::new(MemoryStore::new())).await
}

async fn app_with_store(store: Arc<dyn Store>) -> App {
    app_with(store, None).await
}

async fn app_with(store: Arc<dyn Store>, nonces: Option<DpopNonces>) -> App {
    let clock = ManualClock::new(T0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k1", Algorithm::HS256, &SECRET).unwrap())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s1", [9; 32]).unwrap())).unwrap();
    let mut guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer.clone())
        .clock(clock.clone())
        .dpop(DpopConfig::default(), base.clone(), store);
    if let Some(nonces) = nonces {
        guard = guard.dpop_nonces(nonces);
    }
    let guard = guard.build().unwrap();
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &SECRET).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let whoami = |claims: Option<axum::Extension<Claims>>| async move {
        claims.map_or("anonymous".to_owned(), |c| c.sub().to_owned())
    };
    let router = Router::new()
        .route("/public", get(whoami))
        .route("/api/me", get(whoami).post(whoami))
        .route("/api/dpop-only", get(whoami))
        .route("/api/admin", get(whoami))
        .layer(guard.route_table(table()).unwrap());
    App {
        _served: served::serve_on(listener, router),
        base,
        issuer,
        sealer,
        clock,
        http: reqwest::Client::new(),
    }
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An access token bound to `key` (a password session: `amr` `pwd`).
    fn bound_token(&self, key: &Key) -> String {
        let grant = Grant::new("alice").amr(["pwd"]).dpop_jkt(key.thumbprint());
        self.issuer.issue_access(&grant).unwrap().token
    }

    fn bearer_token(&self) -> String {
        self.issuer.issue_access(&Grant::new("bob")).unwrap().token
    }

    /// A correct proof by `key` for `GET path` with `token`, now.
    fn proof(&self, key: &Key, path: &str, token: &str) -> String {
        key.proof("GET", &self.url(path), Some(token), self.clock.now())
    }

    /// `GET /api/me` with the bound `token` and a fresh, right proof by `key`.
    async fn me_with_fresh_proof(&self, key: &Key, token: &str) -> Reply {
        let proof = self.proof(key, "/api/me", token);
        self.get("/api/me", "DPoP", token, &[&proof]).await
    }

    /// `GET path` with `Authorization: <scheme> <token>` and these `DPoP` headers.
    async fn get(&self, path: &str, scheme: &str, token: &str, proofs: &[&str]) -> Reply {
        let mut req = self
            .http
            .get(self.url(path))
            .header("authorization", format!("{scheme} {token}"));
        for proof in proofs {
            req = req.header("dpop", *proof);
        }
        Reply::sent(req).await
    }
}

/// `401 invalid_dpop_proof` in the DPoP scheme only, naming the algorithms.
#[track_caller]
fn expect_invalid_proof(r: &Reply, what: &str) {
    expect_dpop_only(r, 401, "invalid_dpop_proof", "invalid_dpop_proof", what);
}

/// `status` with the body's `error`, and one challenge: the DPoP scheme's, with `error`.
#[track_caller]
fn expect_dpop_only(r: &Reply, status: u16, body_error: &str, error: &str, what: &str) {
    r.expect_for(status, body_error, what);
    let challenges = r.challenges();
    assert_eq!(challenges.len(), 1, "{what}: {challenges:?}");
    assert!(
        challenges[0].starts_with(&format!(r#"{ALGS}, error="{error}""#)),
        "{what}: {challenges:?}"
    );
}

#[tokio::test]
async fn a_bound_token_with_a_proof_of_its_key_passes_with_either_algorithm_cached_or_not() {
    let app = app().await;
    for key in [Key::es256(3), Key::ed(4)] {
        let token = app.bound_token(&key);
        // The first request verifies the token; the second is served from the cache,
        // and its proof is checked all the same.
        for round in 0..2 {
            let proof = app.proof(&key, "/api/me", &token);
            let r = app.get("/api/me", "DPoP", &token, &[&proof]).await;
            assert_eq!(r.status, 200, "{} round {round}: {}", key.alg(), r.body);
            assert_eq!(r.raw, b"alice");
        }
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        let proof = app.proof(&key, "/api/me", &token);
        let r = app.get("/api/me", "dpop", &token, &[&proof]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // A route that requires DPoP takes it.
        let proof = app.proof(&key, "/api/dpop-only", &token);
        let r = app.get("/api/dpop-only", "DPoP", &token, &[&proof]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[tokio::test]
async fn every_check_of_rfc_9449_section_4_3_refuses_its_own_flaw() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let url = app.url("/api/me");
    let now = app.clock.now();
    let other = Key::ed(9);
    let flawed: Vec<(&str, String)> = vec![
        ("wrong htm", key.proof("POST", &url, Some(&token), now)),
        (
            "htu of another host",
            key.proof("GET", "http://evil.example/api/me", Some(&token), now),
        ),
        (
            "htu of another path",
            key.proof("GET", &app.url("/api/admin"), Some(&token), now),
        ),
        (
            "iat too old",
            key.proof("GET", &url, Some(&token), now - 61),
        ),
        (
            "iat in the future",
            key.proof("GET", &url, Some(&token), now + 6),
        ),
        (
            "ath of another token",
            key.proof("GET", &url, Some("another.token.value"), now),
        ),
        ("no ath", key.proof("GET", &url, None, now)),
        (
            "key of another thumbprint than cnf.jkt",
            other.proof("GET", &url, Some(&token), now),
        ),
        (
            "symmetric alg (HS256)",
            dpop::hs256_proof(&SECRET, "GET", &url, now),
        ),
        (
            "private key in the jwk",
            key.proof_with("GET", &url, Some(&token), now, |h, _| {
                h["jwk"]["d"] = json!(key.d());
            }),
        ),
        (
            "typ jwt",
            key.proof_with("GET", &url, Some(&token), now, |h, _| {
                h["typ"] = json!("JWT");
            }),
        ),
        (
            "alg none",
            key.proof_with("GET", &url, Some(&token), now, |h, _| {
                h["alg"] = json!("none");
            }),
        ),
        ("signature of other claims", {
            let good = key.proof("GET", &url, Some(&token), now);
            let forged = key.proof("GET", &url, Some(&token), now + 1);
            let (head, _) = good.rsplit_once('.').unwrap();
            let (_, sig) = forged.rsplit_once('.').unwrap();
            format!("{head}.{sig}")
        }),
        ("not a JWS", "not-a-proof".to_owned()),
    ];
    for (what, proof) in &flawed {
        let r = app.get("/api/me", "DPoP", &token, &[proof]).await;
        expect_invalid_proof(&r, what);
    }
    // No proof, and two proofs (each one valid on its own).
    let r = app.get("/api/me", "DPoP", &token, &[]).await;
    expect_invalid_proof(&r, "no proof");
    let (a, b) = (
        app.proof(&key, "/api/me", &token),
        app.proof(&key, "/api/me", &token),
    );
    let r = app.get("/api/me", "DPoP", &token, &[&a, &b]).await;
    expect_invalid_proof(&r, "two proofs");
    // None of the refused proofs was spent: each check refused before the store. A
    // correct proof still passes.
    let r = app.me_with_fresh_proof(&key, &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_proof_is_accepted_once() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let proof = app.proof(&key, "/api/me", &token);
    let first = app.get("/api/me", "DPoP", &token, &[&proof]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let replay = app.get("/api/me", "DPoP", &token, &[&proof]).await;
    expect_invalid_proof(&replay, "replayed proof");
    // Still refused near the end of the window.
    app.clock.advance(60);
    let replay = app.get("/api/me", "DPoP", &token, &[&proof]).await;
    expect_invalid_proof(&replay, "replayed proof, 60 s later");
}

#[tokio::test]
async fn of_fifty_concurrent_requests_with_one_proof_exactly_one_passes() {
    let app = Arc::new(app().await);
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let proof = app.proof(&key, "/api/me", &token);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, token, proof, barrier) = (
                Arc::clone(&app),
                token.clone(),
                proof.clone(),
                Arc::clone(&barrier),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                app.get("/api/me", "DPoP", &token, &[&proof]).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        49,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_bound_token_sent_as_bearer_is_refused_with_both_challenges() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let proof = app.proof(&key, "/api/me", &token);
    // Even with a valid proof beside it: the scheme says bearer.
    let r = app.get("/api/me", "Bearer", &token, &[&proof]).await;
    r.expect(401, "invalid_token");
    let challenges = r.challenges();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[0].starts_with("Bearer "), "{challenges:?}");
    assert!(challenges[0].contains(r#"error="invalid_token""#));
    assert_eq!(challenges[1], ALGS);
    // On a public route it is no session: anonymous.
    let r = app.get("/public", "Bearer", &token, &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.raw.as_slice()),
        (200, &b"anonymous"[..])
    );
}

#[tokio::test]
async fn an_unbound_token_is_refused_in_the_dpop_scheme_and_passes_as_bearer() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bearer_token();
    let proof = app.proof(&key, "/api/me", &token);
    let r = app.get("/api/me", "DPoP", &token, &[&proof]).await;
    expect_invalid_proof(&r, "unbound token in the DPoP scheme");
    // As a bearer token it passes, with the DPoP challenge advertised on refusals only.
    let r = app.get("/api/me", "Bearer", &token, &[]).await;
    assert_eq!((r.status.as_u16(), r.raw.as_slice()), (200, &b"bob"[..]));
    // A route that requires DPoP refuses it, in the DPoP scheme only.
    let r = app.get("/api/dpop-only", "Bearer", &token, &[]).await;
    expect_dpop_only(
        &r,
        401,
        "invalid_token",
        "invalid_token",
        "bearer on a DPoP route",
    );
    // Without a credential: Bearer first, DPoP after it.
    let r = Reply::sent(app.http.get(app.url("/api/me"))).await;
    r.expect(401, "unauthorized");
    let challenges = r.challenges();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[0].starts_with("Bearer realm="), "{challenges:?}");
    assert_eq!(challenges[1], ALGS);
}

#[tokio::test]
async fn a_step_up_of_a_dpop_request_is_challenged_in_the_dpop_scheme_and_keeps_the_key() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let proof = app.proof(&key, "/api/admin", &token);
    let r = app.get("/api/admin", "DPoP", &token, &[&proof]).await;
    let error = "insufficient_user_authentication";
    expect_dpop_only(&r, 403, "mfa_required", error, "step-up of a DPoP request");
    // The mfa_token is sealed to the session's key: the verify endpoint redeems it only
    // with a proof of that key.
    let sealed = app
        .sealer
        .open(&r.str("mfa_token"), app.clock.now())
        .unwrap();
    assert_eq!(sealed.jkt.as_deref(), Some(key.thumbprint().as_str()));
    // A step-up challenge of a request whose proof is bad is never given: the proof is
    // checked first.
    let other = Key::ed(9);
    let bad = other.proof("GET", &app.url("/api/admin"), Some(&token), app.clock.now());
    let r = app.get("/api/admin", "DPoP", &token, &[&bad]).await;
    expect_invalid_proof(&r, "step-up with another key's proof");
}

#[tokio::test]
async fn a_request_path_with_dot_segments_makes_no_htu() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    // reqwest would normalize the path itself; send it raw over a socket.
    let proof = app.proof(&key, "/api/me", &token);
    let addr = app.base.trim_start_matches("http://").to_owned();
    let request = format!(
        "GET /x/../api/me HTTP/1.1\r\nhost: {addr}\r\nauthorization: DPoP {token}\r\ndpop: {proof}\r\nconnection: close\r\n\r\n"
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_dpop_proof"), "{answer}");
}

#[tokio::test]
async fn with_the_store_down_dpop_requests_get_503_and_bearer_routes_are_unaffected() {
    let app = app_with_store(Arc::new(failing_store::FailingStore::new())).await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let proof = app.proof(&key, "/api/me", &token);
    let r = app.get("/api/me", "DPoP", &token, &[&proof]).await;
    r.expect(503, "temporarily_unavailable");
    let bearer = app.bearer_token();
    let r = app.get("/api/me", "Bearer", &bearer, &[]).await;
    assert_eq!((r.status.as_u16(), r.raw.as_slice()), (200, &b"bob"[..]));
}

#[tokio::test]
async fn one_key_cannot_fill_the_store() {
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    // 1,000 live proofs of one key are accepted; the next is refused until some expire,
    // while another key is untouched.
    let mut passed = 0;
    for _ in 0..tower_stepup::dpop::MAX_DPOP_PROOFS_PER_KEY {
        let r = app.me_with_fresh_proof(&key, &token).await;
        passed += usize::from(r.status == 200);
    }
    assert_eq!(passed, tower_stepup::dpop::MAX_DPOP_PROOFS_PER_KEY);
    let r = app.me_with_fresh_proof(&key, &token).await;
    expect_invalid_proof(&r, "the key's 1,001st live proof");
    let other = Key::ed(4);
    let other_token = app.bound_token(&other);
    let r = app.me_with_fresh_proof(&other, &other_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Once the window has passed, the key's proofs are forgotten.
    app.clock.advance(62);
    let r = app.me_with_fresh_proof(&key, &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn the_denial_says_which_check_failed_to_the_operator() {
    // In process, to read the typed denial.
    use tower::{service_fn, Layer, ServiceExt};
    let app = app().await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k1", Algorithm::HS256, &SECRET).unwrap())
        .build()
        .unwrap();
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(app.sealer.clone())
        .clock(app.clock.clone())
        .dpop(
            DpopConfig::default(),
            "https://api.example",
            MemoryStore::new(),
        )
        .build()
        .unwrap();
    let svc = guard
        .require(Policy::authenticated())
        .unwrap()
        .layer(service_fn(|_req: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let proof = key.proof(
        "POST",
        "https://api.example/api/me",
        Some(&token),
        app.clock.now(),
    );
    let req = http::Request::get("/api/me")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let denial = res.extensions().get::<Denial>().unwrap();
    assert_eq!(denial.dpop_error(), Some(DpopError::WrongMethod));
    assert!(denial.dpop_used());
}

#[tokio::test]
async fn with_server_nonces_a_proof_needs_the_current_nonce_which_every_refusal_gives() {
    let nonces = DpopNonces::new([5; 32], Duration::from_secs(60)).unwrap();
    let app = app_with(Arc::new(MemoryStore::new()), Some(nonces.clone())).await;
    let key = Key::es256(3);
    let token = app.bound_token(&key);
    let url = app.url("/api/me");
    // Without a nonce: 401 use_dpop_nonce, the nonce in DPoP-Nonce.
    let r = app.me_with_fresh_proof(&key, &token).await;
    r.expect(401, "use_dpop_nonce");
    assert!(
        r.www_authenticate()
            .starts_with(&format!(r#"{ALGS}, error="use_dpop_nonce""#)),
        "{}",
        r.www_authenticate()
    );
    let nonce = r.header("dpop-nonce").unwrap().to_owned();
    assert_eq!(nonce, nonces.current(app.clock.now()));
    let with_nonce = |nonce: &str| {
        let nonce = nonce.to_owned();
        key.proof_with("GET", &url, Some(&token), app.clock.now(), move |_, c| {
            c["nonce"] = json!(nonce);
        })
    };
    // A made-up nonce is refused the same way; the right one passes.
    let r = app
        .get("/api/me", "DPoP", &token, &[&with_nonce("made-up")])
        .await;
    r.expect(401, "use_dpop_nonce");
    let r = app
        .get("/api/me", "DPoP", &token, &[&with_nonce(&nonce)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The previous period's nonce still passes; two periods on it is refused, and the
    // refusal carries the new one.
    app.clock.advance(60);
    let r = app
        .get("/api/me", "DPoP", &token, &[&with_nonce(&nonce)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.clock.advance(60);
    let r = app
        .get("/api/me", "DPoP", &token, &[&with_nonce(&nonce)])
        .await;
    r.expect(401, "use_dpop_nonce");
    let fresh = r.header("dpop-nonce").unwrap().to_owned();
    assert_ne!(fresh, nonce);
    let r = app
        .get("/api/me", "DPoP", &token, &[&with_nonce(&fresh)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A proof that fails another check is invalid_dpop_proof, whatever its nonce.
    let other = Key::ed(9);
    let bad = other.proof_with("GET", &url, Some(&token), app.clock.now(), |_, c| {
        c["nonce"] = json!(fresh.clone());
    });
    let r = app.get("/api/me", "DPoP", &token, &[&bad]).await;
    expect_invalid_proof(&r, "another key, with the nonce");
}
