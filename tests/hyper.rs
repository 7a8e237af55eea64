//! The bare-hyper demo (`examples/hyper_app`) over real sockets: the very app and serve
//! loop `cargo run --example hyper_app` runs, on a `ManualClock` the tests move, served
//! on `127.0.0.1:0` and spoken to with reqwest (HTTP/1.1) and tonic's channel (HTTP/2
//! with prior knowledge).

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::{Clock, ManualClock};

#[allow(dead_code)]
#[path = "../examples/hyper_app/app.rs"]
mod app;
#[path = "support/reply.rs"]
mod reply;

use reply::Reply;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;
const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const REALM: &str = "tower-stepup hyper demo";

fn alice_secret() -> TotpSecret {
    TotpSecret::from_base32(ALICE_SECRET).unwrap()
}

/// One app on its own port and clock.
struct Server {
    base: String,
    clock: ManualClock,
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Server {
    let config = app::Config {
        bind: "127.0.0.1:0".to_owned(),
        alice_totp_secret: alice_secret(),
        alice_secret_was_random: false,
        max_age_secs: 300,
        signing_key: [0x51; 32],
        sealing_key: [0x5e; 32],
        keys_were_random: false,
    };
    let clock = ManualClock::new(T0);
    let app = app::build(&config, clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind(&config.bind).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(app::serve(listener, app));
    let client = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Server {
        base,
        clock,
        client,
        task,
    }
}

impl Server {
    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// alice's code for the current step of the server's clock.
    fn code(&self) -> String {
        totp::code_at(&alice_secret(), totp::step_at(self.now()))
    }

    async fn send(&self, req: reqwest::RequestBuilder, bearer: Option<&str>) -> Reply {
        let req = match bearer {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let response = req.send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        let reply = Reply::from_reqwest(response).await;
        assert!(
            serde_json::from_slice::<Value>(&reply.raw).is_ok(),
            "not JSON: {}",
            String::from_utf8_lossy(&reply.raw)
        );
        reply
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req, bearer).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        let req = self.client.post(format!("{}{path}", self.base)).json(&body);
        self.send(req, None).await
    }

    async fn login(&self, username: &str, password: &str) -> Reply {
        let body = json!({"username": username, "password": password});
        self.post("/auth/login", body).await
    }

    async fn verify(&self, mfa_token: &str, code: &str) -> Reply {
        let body = json!({"mfa_token": mfa_token, "code": code});
        self.post("/auth/mfa/verify", body).await
    }
}

/// The payload of a JWS, unverified.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn amr(claims: &Value) -> Vec<&str> {
    let amr = claims["amr"].as_array();
    let amr = amr.unwrap_or_else(|| panic!("no amr in {claims}"));
    amr.iter().map(|v| v.as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn public_route_needs_no_token_and_unlisted_routes_need_one() {
    let s = start().await;
    let health = s.get("/healthz", None).await;
    health.expect_ok();
    assert_eq!(health.body, json!({"status": "ok"}));

    // A route the table does not list needs an access token (the table's default), so
    // an anonymous client cannot tell a missing route from a protected one…
    s.get("/nope", None)
        .await
        .expect_uncached(401, "unauthorized");
    s.get("/auth/login", None)
        .await
        .expect_uncached(401, "unauthorized");
    // …and with a token it reaches the router, which has nothing there.
    let bob = s.login("bob", "bob-password").await.str("access_token");
    let missing = s.get("/nope", Some(&bob)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_eq!(missing.body["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_route_refuses_missing_and_bad_tokens() {
    let s = start().await;
    let none = s.get("/api/me", None).await;
    none.expect_uncached(401, "unauthorized");
    assert_eq!(
        none.www_authenticate(),
        format!(r#"Bearer realm="{REALM}""#)
    );

    let forged = s.get("/api/me", Some("not.a.token")).await;
    forged.expect_uncached(401, "invalid_token");
    assert!(
        forged
            .www_authenticate()
            .starts_with(r#"Bearer error="invalid_token""#),
        "{}",
        forged.www_authenticate()
    );

    let wrong = s.login("alice", "not-her-password").await;
    wrong.expect_uncached(401, "invalid_credentials");
    let unknown = s.login("mallory", "alice-password").await;
    unknown.expect_uncached(401, "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread")]
async fn alice_logs_in_verifies_and_steps_up() {
    let s = start().await;

    // Password: a partial token, no session.
    let login = s.login("alice", "alice-password").await;
    login.expect_ok();
    let keys: HashSet<&str> = login
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["status", "partial_token", "expires_in", "mfa_requirements"]),
        "{}",
        login.body
    );
    assert_eq!(login.body["status"], "mfa_required");
    assert_eq!(
        login.body["mfa_requirements"],
        json!({"challenge": [{"type": "otp"}]})
    );
    let partial = login.str("partial_token");

    // The partial token opens only the verify endpoint.
    let early = s.get("/api/me", Some(&partial)).await;
    early.expect_uncached(401, "mfa_incomplete");
    assert!(
        early
            .www_authenticate()
            .starts_with(r#"Bearer error="invalid_token""#),
        "{}",
        early.www_authenticate()
    );

    // Second factor: a session with `mfa` in `amr`.
    let first_code = s.code();
    let session = s.verify(&partial, &first_code).await;
    session.expect_ok();
    assert_eq!(session.body["token_type"], "Bearer");
    assert!(!session.str("refresh_token").is_empty());
    let access = session.str("access_token");
    let claims = payload(&access);
    assert!(amr(&claims).contains(&"mfa"), "{claims}");
    assert_eq!(claims["auth_time"], T0);

    // /api/me answers the claims the layer put in the request.
    let me = s.get("/api/me", Some(&access)).await;
    me.expect_ok();
    assert_eq!(me.body["sub"], "alice");
    assert_eq!(me.body["sid"], claims["sid"]);
    assert_eq!(me.body["amr"], claims["amr"]);
    assert_eq!(me.body["auth_time"], T0);
    let billing = s.get("/api/billing", Some(&access)).await;
    billing.expect_ok();
    assert_eq!(billing.body["sub"], "alice");
    assert_eq!(billing.body["invoices"][0]["id"], "INV-1001");

    // Still fresh at 200 s; stale past max_age (300 s).
    s.clock.advance(200);
    s.get("/api/billing", Some(&access)).await.expect_ok();
    s.clock.advance(101);
    let denied = s.get("/api/billing", Some(&access)).await;
    denied.expect_uncached(403, "mfa_required");
    let www = denied.www_authenticate();
    assert!(
        www.starts_with(r#"Bearer error="insufficient_user_authentication""#),
        "{www}"
    );
    assert!(www.contains("max_age=300"), "{www}");
    assert_eq!(
        denied.body["mfa_requirements"],
        json!({"challenge": [{"type": "otp"}]})
    );
    let mfa_token = denied.str("mfa_token");
    // Only billing asks for the step-up.
    s.get("/api/me", Some(&access)).await.expect_ok();

    // The step-up: this step's code (a later step than the first one).
    let step_up_code = s.code();
    assert!(totp::step_at(s.now()) > totp::step_at(T0));
    assert_ne!(step_up_code, first_code);
    let up = s.verify(&mfa_token, &step_up_code).await;
    up.expect_ok();
    let elevated = up.str("access_token");
    assert_ne!(elevated, access);
    let elevated_claims = payload(&elevated);
    assert!(amr(&elevated_claims).contains(&"mfa"), "{elevated_claims}");
    assert_eq!(elevated_claims["auth_time"], s.now());
    s.get("/api/billing", Some(&elevated)).await.expect_ok();
    // The old token is as stale as before.
    s.get("/api/billing", Some(&access))
        .await
        .expect_uncached(403, "mfa_required");

    // The mfa_token is single use, even with a fresh, valid code.
    s.clock.advance(30);
    s.verify(&mfa_token, &s.code())
        .await
        .expect_uncached(404, "mfa_token_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn bob_without_a_factor_gets_tokens_and_a_step_up_on_billing() {
    let s = start().await;
    let login = s.login("bob", "bob-password").await;
    login.expect_ok();
    assert!(login.body.get("status").is_none(), "{}", login.body);
    assert!(login.body.get("partial_token").is_none(), "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert!(!login.str("refresh_token").is_empty());
    let bob = login.str("access_token");
    assert_eq!(amr(&payload(&bob)), ["pwd"]);

    let me = s.get("/api/me", Some(&bob)).await;
    me.expect_ok();
    assert_eq!(me.body["sub"], "bob");

    let denied = s.get("/api/billing", Some(&bob)).await;
    denied.expect_uncached(403, "mfa_required");
    assert!(
        denied
            .www_authenticate()
            .starts_with(r#"Bearer error="insufficient_user_authentication""#),
        "{}",
        denied.www_authenticate()
    );
    assert!(!denied.str("mfa_token").is_empty());
    // bob has no factor to be challenged with: the answer says to enroll one.
    assert_eq!(
        denied.body["mfa_requirements"],
        json!({"enroll": [{"type": "otp"}]})
    );
}

/// HTTP/2 with prior knowledge (h2c), the way gRPC clients connect: tonic's channel is
/// an HTTP/2-only client (reqwest here is built without its `http2` feature).
#[tokio::test(flavor = "multi_thread")]
async fn http2_prior_knowledge_is_served_and_guarded() {
    let s = start().await;
    let channel = tonic::transport::Endpoint::from_shared(s.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let h2 = |method: &str, path: &str, bearer: Option<&str>, body: Option<Value>| {
        let channel = channel.clone();
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = match body {
            Some(body) => {
                req.header("content-type", "application/json")
                    .body(tonic::body::Body::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
            }
            None => req.body(tonic::body::Body::empty()),
        };
        async move {
            let response = channel.oneshot(req.unwrap()).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            let (parts, body) = response.into_parts();
            let raw = body.collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&raw).unwrap();
            (parts.status, parts.headers, body)
        }
    };

    let (status, _, body) = h2("GET", "/healthz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    let (status, headers, body) = h2("GET", "/api/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        headers[WWW_AUTHENTICATE],
        format!(r#"Bearer realm="{REALM}""#)
    );

    // A completion endpoint reads its JSON body from an HTTP/2 stream.
    let credentials = json!({"username": "bob", "password": "bob-password"});
    let (status, _, login) = h2("POST", "/auth/login", None, Some(credentials)).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let bob = login["access_token"].as_str().unwrap().to_owned();

    let (status, _, me) = h2("GET", "/api/me", Some(&bob), None).await;
    assert_eq!(
        (status, &me["sub"]),
        (StatusCode::OK, &json!("bob")),
        "{me}"
    );

    let (status, headers, denied) = h2("GET", "/api/billing", Some(&bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(denied["error"], "mfa_required");
    assert!(denied["mfa_token"].is_string(), "{denied}");
    let www = headers[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(www.contains("max_age=300"), "{www}");
}
