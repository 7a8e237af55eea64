//! The demo app of DESIGN §7 over real sockets, with a real HTTP client.
//!
//! Every test but `logs_hold_no_token_code_or_secret` builds the very same router
//! `cargo run --example axum_app` serves (`examples/axum_app/app.rs`), on a
//! [`ManualClock`] it moves itself, serves it on `127.0.0.1:0` and talks to it with
//! reqwest. That last test builds and runs the real demo binary (system clock) and reads
//! its output for leaked tokens, codes and secrets.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::store::{MemoryStore, Store, StoreError};
use tower_stepup::{Algorithm, Grant, Issuer, KeySet, ManualClock, SigningKey, Verifier};

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;

#[path = "support/codes.rs"]
mod codes;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/reply.rs"]
mod reply;

use demo_app::{client, serve, Demo, Http, Served};
use reply::Reply;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;
use demo_config::ALICE_SECRET;
const MFA_ACR: &str = "urn:tower-stepup:acr:mfa";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

fn config() -> app::DemoConfig {
    demo_config::demo_config(5)
}

fn alice_secret() -> TotpSecret {
    TotpSecret::from_base32(ALICE_SECRET).unwrap()
}

/// One demo server on its own port, on its own clock.
struct Server {
    http: Http,
    /// The server's clock; for a demo process (`Server::process`), the test's view of
    /// the system clock, set with `sync_clock`.
    clock: ManualClock,
    issuer: Issuer,
    alice: TotpSecret,
    /// The app's factors (for a demo process: a copy that is not the process's).
    factors: Arc<tower_stepup::complete::MemoryFactors>,
    /// The in-process server (stops when dropped), or the demo process.
    _served: Option<Served>,
    process: Option<tokio::process::Child>,
}

async fn start() -> Server {
    start_with(Arc::new(MemoryStore::new())).await
}

async fn start_with(store: Arc<dyn Store>) -> Server {
    serve_demo(Demo::build(&config(), ManualClock::new(T0), store)).await
}

/// `demo` served on a loopback port.
async fn serve_demo(demo: Demo) -> Server {
    let served = serve(demo.router.clone(), "127.0.0.1:0").await;
    Server {
        http: Http::to(&served),
        clock: demo.clock,
        issuer: demo.issuer,
        alice: alice_secret(),
        factors: demo.factors,
        _served: Some(served),
        process: None,
    }
}

impl Server {
    fn now(&self) -> u64 {
        tower_stepup::Clock::now(&self.clock)
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let req = self
            .client
            .post(self.url(path))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        Reply::sent(req).await
    }

    /// POSTs a body over the limit. The endpoint answers 413 from the declared
    /// `Content-Length` without reading the body, and the server then closes the
    /// connection with the body unread: a client still writing may see a broken pipe or
    /// a reset before it reads the 413 (a TCP race, not the endpoint's answer). Such
    /// transport errors are retried a few times; every answer that arrives must be 413.
    async fn post_huge(&self, path: &str, body: Vec<u8>) -> Reply {
        let mut transport_errors = Vec::new();
        for _ in 0..8 {
            let req = self
                .client
                .post(self.url(path))
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            match req.send().await {
                Ok(response) => return Reply::from_reqwest(response).await,
                Err(e) => transport_errors.push(e.to_string()),
            }
        }
        panic!("no answer to a huge body on {path}: {transport_errors:?}");
    }

    /// The status line and body of a raw HTTP/1.1 request that declares
    /// `content_length` but sends no body at all.
    async fn raw_declared_length(&self, path: &str, content_length: usize) -> String {
        use tokio::io::AsyncWriteExt;
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the server answers without waiting for the body")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    async fn login(&self, user: &str, password: &str) -> Reply {
        self.post(
            "/auth/login",
            &json!({"username": user, "password": password}),
            None,
        )
        .await
    }

    /// alice's password → her partial token.
    async fn alice_partial(&self) -> String {
        self.login("alice", "alice-password").await.expect_partial()
    }

    async fn verify(&self, mfa_token: &str, code: &str) -> Reply {
        self.post(
            "/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": code}),
            None,
        )
        .await
    }

    /// alice's code for the current step of the server's clock.
    fn code(&self) -> String {
        totp::code_at(&self.alice, totp::step_at(self.now()))
    }

    /// A six-digit code that is none of alice's codes the server could accept now.
    fn wrong_code(&self) -> String {
        codes::wrong_code(&self.alice, self.now())
    }

    /// Login + verify with the current code → (access, refresh).
    async fn alice_session(&self) -> (String, String) {
        let partial = self.alice_partial().await;
        let r = self.verify(&partial, &self.code()).await;
        r.expect_ok();
        (r.str("access_token"), r.str("refresh_token"))
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/auth/refresh",
            &json!({"refresh_token": refresh_token}),
            None,
        )
        .await
    }

    /// `POST /auth/logout` with `access` and `refresh_token`.
    async fn logout(&self, access: &str, refresh_token: &str) -> Reply {
        let body = json!({"refresh_token": refresh_token});
        self.post("/auth/logout", &body, Some(access)).await
    }
}

impl std::ops::Deref for Server {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

/// The payload of a JWS, unverified.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn amr(claims: &Value) -> Vec<String> {
    claims["amr"]
        .as_array()
        .unwrap_or_else(|| panic!("no amr in {claims}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. The whole flow
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn full_flow_login_verify_step_up_refresh_logout() {
    let s = start().await;

    // Password: a partial token, not a session.
    let login = s.login("alice", "alice-password").await;
    login.expect_ok();
    let keys: HashSet<&str> = login
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["status", "partial_token", "expires_in", "mfa_requirements"]),
        "no access_token or refresh_token before the second factor: {}",
        login.body
    );
    assert_eq!(login.body["status"], "mfa_required");
    assert_eq!(login.body["expires_in"], 300);
    assert_eq!(
        login.body["mfa_requirements"],
        json!({"challenge": [{"type": "otp"}, {"type": "email"}]})
    );
    let partial = login.str("partial_token");

    // Second factor: a session.
    let first_code = s.code();
    let v = s.verify(&partial, &first_code).await;
    v.expect_ok();
    assert_eq!(v.body["token_type"], "Bearer");
    assert_eq!(v.body["expires_in"], 900);
    assert_eq!(v.body["scope"], "me billing:read orders:read");
    let access = v.str("access_token");
    let old_refresh = v.str("refresh_token");
    assert!(!old_refresh.is_empty());
    let claims = payload(&access);
    let methods = amr(&claims);
    for m in ["pwd", "otp", "mfa"] {
        assert!(methods.iter().any(|x| x == m), "amr {methods:?} lacks {m}");
    }
    assert_eq!(claims["acr"], MFA_ACR);
    assert_eq!(claims["auth_time"], T0);
    assert_eq!(claims["sub"], "alice");
    let old_sid = claims["sid"].as_str().unwrap().to_owned();

    let me = s.get("/api/me", Some(&access)).await;
    me.expect_ok();
    assert_eq!(me.body["sub"], "alice");
    s.get("/api/billing", Some(&access)).await.expect_ok();

    // Five minutes on, billing wants a fresh second factor.
    s.clock.advance(301);
    let denied = s.get("/api/billing", Some(&access)).await;
    denied.expect(403, "mfa_required");
    let www = denied.header(WWW_AUTHENTICATE).unwrap_or_default();
    assert!(
        www.starts_with(r#"Bearer error="insufficient_user_authentication""#),
        "{www}"
    );
    assert!(www.contains("max_age=300"), "{www}");
    assert_eq!(
        denied.body["mfa_requirements"],
        json!({"challenge": [{"type": "otp"}, {"type": "email"}]})
    );
    let mfa_token = denied.str("mfa_token");
    // /api/me still passes: only billing needs the step-up.
    s.get("/api/me", Some(&access)).await.expect_ok();

    // Step-up: the code of the current step (later than the first one) + the old token.
    let step_up_code = s.code();
    assert!(totp::step_at(s.now()) > totp::step_at(T0));
    let up = s
        .post(
            "/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": step_up_code}),
            Some(&access),
        )
        .await;
    up.expect_ok();
    let elevated = up.str("access_token");
    let elevated_refresh = up.str("refresh_token");
    let elevated_claims = payload(&elevated);
    // A step-up continues the session (DESIGN §8.2): the same sid, new tokens.
    assert_eq!(
        elevated_claims["sid"].as_str().unwrap(),
        old_sid,
        "a step-up keeps the session id"
    );
    assert_ne!(elevated, access);
    assert_ne!(elevated_refresh, old_refresh);
    assert_eq!(elevated_claims["auth_time"], s.now());
    assert_eq!(elevated_claims["acr"], MFA_ACR);
    s.get("/api/billing", Some(&elevated)).await.expect_ok();

    // Refresh: a new pair, the same authentication.
    s.clock.advance(60);
    let r = s.refresh(&elevated_refresh).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    let refreshed = r.str("access_token");
    let newest_refresh = r.str("refresh_token");
    assert_ne!(refreshed, elevated);
    assert_ne!(newest_refresh, elevated_refresh);
    let refreshed_claims = payload(&refreshed);
    assert_eq!(refreshed_claims["sid"], elevated_claims["sid"]);
    assert_eq!(
        refreshed_claims["auth_time"], elevated_claims["auth_time"],
        "refreshing never makes an old authentication look fresh"
    );
    assert_eq!(amr(&refreshed_claims), amr(&elevated_claims));
    assert_eq!(refreshed_claims["acr"], MFA_ACR);
    s.get("/api/me", Some(&refreshed)).await.expect_ok();

    // The refresh token from before the step-up was rotated away by it: presenting it
    // again is a replay, which revokes the whole family.
    s.refresh(&old_refresh).await.expect(400, "invalid_grant");
    s.refresh(&newest_refresh)
        .await
        .expect(400, "invalid_grant");

    // Logout revokes the family.
    s.clock.advance(30);
    let (access, refresh) = s.alice_session().await;
    let out = s
        .post(
            "/auth/logout",
            &json!({"refresh_token": refresh}),
            Some(&access),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert!(out.raw.is_empty());
    s.refresh(&refresh).await.expect(400, "invalid_grant");
}

/// A refresh token is `<user tag>.<session id>.<secret>`: one changed, made up from a
/// session id (which every access token shows) or of another shape is `400
/// invalid_grant`, never a 5xx, and changes nothing: it is no replay, the session lives
/// on. Logout with such a token ends only the caller's own session.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_tampered_or_made_up_is_refused_and_changes_nothing() {
    let s = start().await;
    let (access, refresh) = s.alice_session().await;
    let sid = payload(&access)["sid"].as_str().unwrap().to_owned();
    let (tag, rest) = refresh.split_once('.').unwrap();
    let (family, secret) = rest.split_once('.').unwrap();
    assert_eq!(family, sid, "the family is the session");
    assert_eq!((tag.len(), secret.len()), (16, 43), "{refresh}");
    let bob_tag = tower_stepup::store::FamilyRef::new("bob", "")
        .user_tag()
        .to_owned();
    let other_secret = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let flipped = if secret.starts_with('A') { "B" } else { "A" };
    let made_up = [
        format!("{tag}.{sid}.{other_secret}"),
        format!("{tag}.{sid}.{flipped}{}", &secret[1..]),
        format!("{bob_tag}.{sid}.{secret}"),
        format!("{tag}.{}x.{secret}", &sid[..sid.len() - 1]),
    ];
    let malformed = [
        String::new(),
        "a.b.c".to_owned(),
        secret.to_owned(),
        format!("{sid}.{secret}"),
        format!("{refresh}.x"),
        format!("{}.{sid}.{secret}", tag.to_uppercase()),
        format!("{tag}.{sid}.{secret}=="),
        format!("{tag}.{sid}/x.{secret}"),
        format!("{tag}.{}.{secret}", "s".repeat(300)),
    ];
    for token in made_up.iter().chain(&malformed) {
        s.refresh(token).await.expect(400, "invalid_grant");
    }
    // Logout by a made-up or malformed token, each with the access token of another
    // session of alice's: that session ends, the first one lives on.
    for token in [&made_up[0], &made_up[2], &malformed[3]] {
        s.clock.advance(30);
        let (other_access, _) = s.alice_session().await;
        let body = json!({ "refresh_token": token });
        let out = s.post("/auth/logout", &body, Some(&other_access)).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
        let me = s.get("/api/me", Some(&other_access)).await;
        me.expect(401, "invalid_token");
    }
    let r = s.refresh(&refresh).await;
    r.expect_ok();
    s.get("/api/me", Some(&r.str("access_token")))
        .await
        .expect_ok();
}

/// A refresh family ends 24 h (the default absolute lifetime) after the login, however
/// often it was refreshed (issue 3 §6: an absolute lifetime cap).
#[tokio::test(flavor = "multi_thread")]
async fn refresh_stops_at_the_absolute_lifetime() {
    let s = start().await;
    let started = s.now();
    let (_, mut refresh) = s.alice_session().await;
    // Refreshing every 6 h keeps each token young but the family not.
    for _ in 0..3 {
        s.clock.advance(6 * 3600);
        let r = s.refresh(&refresh).await;
        r.expect_ok();
        refresh = r.str("refresh_token");
    }
    s.clock.set(started + 24 * 3600 - 1);
    let r = s.refresh(&refresh).await;
    r.expect_ok();
    refresh = r.str("refresh_token");
    s.clock.set(started + 24 * 3600);
    s.refresh(&refresh).await.expect(400, "invalid_grant");
}

// ---------------------------------------------------------------------------------------
// 2. Enrollment
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bob_without_a_factor_gets_tokens_and_enrolls() {
    let s = start().await;

    let login = s.login("bob", "bob-password").await;
    login.expect_ok();
    assert!(
        login.body.get("status").is_none(),
        "bob has no factor: {}",
        login.body
    );
    let bob = login.str("access_token");
    assert!(!login.str("refresh_token").is_empty());
    assert_eq!(login.body["token_type"], "Bearer");
    let claims = payload(&bob);
    assert_eq!(amr(&claims), ["pwd"]);

    let denied = s.get("/api/billing", Some(&bob)).await;
    denied.expect(403, "mfa_required");
    assert_eq!(
        denied.body["mfa_requirements"],
        json!({"enroll": [{"type": "otp"}]})
    );
    assert!(denied.body["mfa_token"].is_string());

    // Enroll.
    let e = s.post("/auth/mfa/enroll", &json!({}), Some(&bob)).await;
    e.expect_ok();
    let secret_b32 = e.str("secret");
    assert!(e.str("otpauth_uri").starts_with("otpauth://totp/"));
    assert!(e.str("qr_svg").contains("<svg"));
    assert_eq!(e.header("cache-control"), Some("no-store"));
    let secret = TotpSecret::from_base32(&secret_b32).unwrap();

    let wrong = codes::wrong_code(&secret, s.now());
    s.post(
        "/auth/mfa/enroll/confirm",
        &json!({"code": wrong}),
        Some(&bob),
    )
    .await
    .expect(401, "invalid_code");

    let ok = s
        .post(
            "/auth/mfa/enroll/confirm",
            &json!({"code": totp::code_at(&secret, totp::step_at(s.now()))}),
            Some(&bob),
        )
        .await;
    ok.expect_ok();
    let codes: Vec<String> = ok.body["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", ok.body))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(codes.len() >= 8, "{codes:?}");
    assert_eq!(
        codes.iter().collect::<HashSet<_>>().len(),
        codes.len(),
        "distinct"
    );

    // Now that bob has a factor, enrolling again is a step-up route.
    let again = s.post("/auth/mfa/enroll", &json!({}), Some(&bob)).await;
    again.expect(403, "mfa_required");
    assert!(again.body["mfa_token"].is_string());
    assert_eq!(
        again.body["mfa_requirements"],
        json!({"challenge": [{"type": "otp"}]})
    );

    // And his login asks for it.
    let login = s.login("bob", "bob-password").await;
    let partial = login.expect_partial();
    assert!(login.body.get("access_token").is_none());
    let r = s
        .post(
            "/auth/mfa/verify",
            &json!({"mfa_token": partial, "recovery_code": codes[0]}),
            None,
        )
        .await;
    r.expect_ok();
    assert!(amr(&payload(&r.str("access_token"))).contains(&"mfa".to_owned()));
    // The used code is gone from bob's factor, the others stay.
    let factor = s.factors.totp("bob").expect("bob has a factor");
    assert_eq!(factor.recovery_codes.len(), codes.len() - 1);
    let used = tower_stepup::factor::recovery::hash(&codes[0]);
    assert!(!factor.recovery_codes.contains(&used));

    // A recovery code works once.
    let partial = s.login("bob", "bob-password").await.str("partial_token");
    s.post(
        "/auth/mfa/verify",
        &json!({"mfa_token": partial, "recovery_code": codes[0]}),
        None,
    )
    .await
    .expect(401, "invalid_code");
}

// ---------------------------------------------------------------------------------------
// 3. The partial token
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn partial_token_opens_only_the_verify_door() {
    let s = start().await;
    let partial = s.alice_partial().await;

    for (method, path) in [
        ("GET", "/api/me"),
        ("GET", "/api/billing"),
        ("POST", "/auth/mfa/enroll"),
        ("POST", "/auth/logout"),
    ] {
        let r = if method == "GET" {
            s.get(path, Some(&partial)).await
        } else {
            s.post(path, &json!({"refresh_token": "x"}), Some(&partial))
                .await
        };
        r.expect(401, "mfa_incomplete");
        assert!(
            r.body.get("mfa_token").is_none(),
            "{method} {path}: {}",
            r.body
        );
        assert!(r
            .header(WWW_AUTHENTICATE)
            .is_some_and(|w| w.starts_with(r#"Bearer error="invalid_token""#)));
    }

    // The one door: verify, with the partial token as Bearer.
    let r = s
        .post(
            "/auth/mfa/verify",
            &json!({"code": s.code()}),
            Some(&partial),
        )
        .await;
    r.expect_ok();
    s.get("/api/billing", Some(&r.str("access_token")))
        .await
        .expect_ok();
}

// ---------------------------------------------------------------------------------------
// 4. Lockout
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn lockout_after_max_attempts_survives_a_new_partial_token() {
    let s = start().await;
    let partial = s.alice_partial().await;
    let wrong = s.wrong_code();

    for remaining in [4, 3, 2, 1] {
        let r = s.verify(&partial, &wrong).await;
        r.expect(401, "invalid_code");
        assert_eq!(r.body["attempts_remaining"], remaining, "{}", r.body);
    }
    let locked = s.verify(&partial, &wrong).await;
    locked.expect(429, "too_many_attempts");
    let retry: u64 = locked
        .header(RETRY_AFTER)
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "Retry-After {retry}");

    // The right code does not help: not on this challenge, not on a new one.
    s.verify(&partial, &s.code())
        .await
        .expect(429, "too_many_attempts");
    let fresh = s.alice_partial().await;
    let r = s.verify(&fresh, &s.code()).await;
    r.expect(429, "too_many_attempts");
    assert!(r.header(RETRY_AFTER).is_some());

    // After the lockout, all is well, and the counter starts again.
    s.clock.advance(901);
    let partial = s.alice_partial().await;
    s.verify(&partial, &s.code()).await.expect_ok();
    let partial = s.alice_partial().await;
    let r = s.verify(&partial, &s.wrong_code()).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.body["attempts_remaining"], 4, "{}", r.body);

    // A success, not only the end of a lockout, resets the counter.
    let r = s.verify(&partial, &s.wrong_code()).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.body["attempts_remaining"], 3, "{}", r.body);
    s.clock.advance(30);
    s.verify(&partial, &s.code()).await.expect_ok();
    let partial = s.alice_partial().await;
    let r = s.verify(&partial, &s.wrong_code()).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.body["attempts_remaining"], 4, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_cannot_be_triggered_without_the_password() {
    let s = start().await;
    // Genuine-looking tokens for alice that the server never issued.
    let forger = Issuer::builder()
        .issuer(app::ISSUER)
        .audience(app::AUDIENCE)
        .signing_key(SigningKey::hmac("demo-1", Algorithm::HS256, &[0x66; 32]).unwrap())
        .clock(s.clock.clone())
        .build()
        .unwrap();
    let forged_partial = forger
        .issue_partial(&Grant::new("alice").amr(["pwd"]))
        .unwrap()
        .token;
    let garbage = [
        "garbage".to_owned(),
        "a.b.c.d.e".to_owned(),
        forged_partial.clone(),
        forged_partial,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.".to_owned(),
        "x".repeat(5000),
    ];
    for token in &garbage {
        s.verify(token, &s.wrong_code())
            .await
            .expect(400, "mfa_token_invalid");
    }
    let partial = s.alice_partial().await;
    s.verify(&partial, &s.code()).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// 5. Replay of a code
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_never_accepted_twice() {
    let s = start().await;
    let code = s.code();
    let partial = s.alice_partial().await;
    s.verify(&partial, &code).await.expect_ok();

    // Same step, same code, a new challenge: refused, and counted like a wrong code.
    s.clock.advance(5);
    assert_eq!(totp::step_at(s.now()), totp::step_at(T0));
    let partial = s.alice_partial().await;
    let r = s.verify(&partial, &code).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.body["attempts_remaining"], 4, "{}", r.body);

    // The next step's code works.
    s.clock.advance(30);
    let next = s.code();
    assert_ne!(next, code);
    let partial = s.alice_partial().await;
    s.verify(&partial, &next).await.expect_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_replayed_code_leaves_the_challenge_usable() {
    // Regression: verify once spent the challenge before it learnt the TOTP step was a
    // replay, then answered 401 invalid_code + attempts_remaining for a dead challenge.
    // A replayed code is now answered like a wrong code and leaves the challenge usable.
    let s = start().await;
    let code = s.code();
    let partial = s.alice_partial().await;
    s.verify(&partial, &code).await.expect_ok();

    // Control: a wrong code does not spend the challenge.
    s.clock.advance(30);
    let partial = s.alice_partial().await;
    let r = s.verify(&partial, &s.wrong_code()).await;
    r.expect(401, "invalid_code");
    s.verify(&partial, &s.code()).await.expect_ok();

    // A replayed code: the same answer, so the same promise.
    let replayed = s.code();
    let partial = s.alice_partial().await;
    let r = s.verify(&partial, &replayed).await;
    r.expect(401, "invalid_code");
    assert!(r.body["attempts_remaining"].as_u64().unwrap() > 0);
    s.clock.advance(30);
    s.verify(&partial, &s.code()).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// 6. Single use of a challenge
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn each_challenge_completes_once() {
    let s = start().await;
    let partial = s.alice_partial().await;
    s.verify(&partial, &s.code()).await.expect_ok();
    s.clock.advance(30);
    s.verify(&partial, &s.code())
        .await
        .expect(404, "mfa_token_not_found");

    // The same for a step-up mfa_token.
    let (access, _) = s.alice_session().await;
    s.clock.advance(301);
    let mfa_token = s.get("/api/billing", Some(&access)).await.str("mfa_token");
    s.verify(&mfa_token, &s.code()).await.expect_ok();
    s.clock.advance(30);
    s.verify(&mfa_token, &s.code())
        .await
        .expect(404, "mfa_token_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_token_is_single_use_even_within_the_expiry_leeway() {
    // Regression: a used partial token's id was remembered only until `exp`, while the
    // verifier accepts the token until `exp` + leeway (5 s): in between, a spent token
    // could open a second session. It is now remembered until `exp` + leeway.
    let s = start().await;
    let partial = s.alice_partial().await;
    let exp = payload(&partial)["exp"].as_u64().unwrap();
    assert_eq!(exp, T0 + 300);
    s.verify(&partial, &s.code()).await.expect_ok();

    // Within the verifier's 5 s leeway the token is still genuine and unexpired...
    s.clock.set(exp + 2);
    let again = s.verify(&partial, &s.code()).await;
    again.expect(404, "mfa_token_not_found");
}

#[path = "support/hooked_store.rs"]
mod hooked_store;

use hooked_store::{Call, CallResult, HookFuture, HookedStore, StoreHook};

/// The demo's [`MemoryStore`], except that `is_consumed` (the early "already used?"
/// look of verify) waits until `n` callers are there: every concurrent verify then gets
/// past that look, and only the atomic `consume` can stop all but one.
struct Gate(tokio::sync::Barrier);

impl StoreHook for Gate {
    fn before<'a>(
        &'a self,
        _: &'a dyn Store,
        call: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        Box::pin(async move {
            if let Call::IsConsumed { .. } = call {
                // Not a clock: a bound on how long a missing caller is waited for.
                let _ = tokio::time::timeout(Duration::from_secs(5), self.0.wait()).await;
            }
            None
        })
    }
}

/// A [`MemoryStore`] whose `is_consumed` waits for `n` callers.
fn gated_store(n: usize) -> HookedStore<Gate> {
    let gate = Gate(tokio::sync::Barrier::new(n));
    HookedStore::with_hook(Arc::new(MemoryStore::new()), gate)
}

/// `n` verifies of one partial token with the right code, all at once → (200s, 404s).
async fn concurrent_verifies(s: &Server, n: usize) -> (usize, usize) {
    let partial = s.alice_partial().await;
    let code = s.code();
    // Open the connections first, so the verifies arrive together rather than one
    // handshake apart.
    let warm: Vec<_> = (0..n)
        .map(|_| {
            let req = s.client.get(s.url("/healthz"));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    for w in warm {
        assert_eq!(w.await.unwrap(), StatusCode::OK);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let req = s
                .client
                .post(s.url("/auth/mfa/verify"))
                .json(&json!({"mfa_token": partial, "code": code}));
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                Reply::sent(req).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let r = task.await.unwrap();
        if !is_lost_race(&r) {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            ok += 1;
        }
    }
    (ok, n - ok)
}

/// How a verify that lost the race for one challenge is answered (DESIGN §8.2): the
/// challenge was spent already (`404`), or its twins held every attempt in flight
/// (`429` with `Retry-After: 1`, not a lockout).
fn is_lost_race(r: &Reply) -> bool {
    match (r.status.as_u16(), r.error()) {
        (404, "mfa_token_not_found") => true,
        (429, "too_many_attempts") => {
            assert_eq!(r.header("retry-after"), Some("1"), "{}", r.body);
            true
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn twenty_concurrent_verifies_give_one_success() {
    // The demo as it is.
    let s = start().await;
    assert_eq!(concurrent_verifies(&s, 20).await, (1, 19));
    assert_no_failure_recorded(&s).await;

    // The same, with all 20 held together just before the decisive, atomic step.
    let s = start_with(Arc::new(gated_store(20))).await;
    assert_eq!(concurrent_verifies(&s, 20).await, (1, 19));
    assert_no_failure_recorded(&s).await;
}

/// A user's own double submission is no wrong guess: the next wrong code is the first.
async fn assert_no_failure_recorded(s: &Server) {
    let partial = s.alice_partial().await;
    let r = s.verify(&partial, &s.wrong_code()).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.body["attempts_remaining"], 4, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// 7. Expiry
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn expired_partial_and_mfa_tokens_say_expired() {
    let s = start().await;

    // A partial token: 300 s, plus the verifier's 5 s leeway.
    let partial = s.alice_partial().await;
    s.clock.advance(305);
    s.verify(&partial, &s.code())
        .await
        .expect(401, "mfa_token_expired");

    // A step-up mfa_token: 300 s.
    let (access, _) = s.alice_session().await;
    s.clock.advance(301);
    let denied = s.get("/api/billing", Some(&access)).await;
    denied.expect(403, "mfa_required");
    let mfa_token = denied.str("mfa_token");
    s.clock.advance(300);
    s.verify(&mfa_token, &s.code())
        .await
        .expect(401, "mfa_token_expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_with_a_wrong_code_costs_no_attempt() {
    let s = start().await;
    let partial = s.alice_partial().await;
    s.clock.advance(400);
    for _ in 0..5 {
        s.verify(&partial, &s.wrong_code())
            .await
            .expect(401, "mfa_token_expired");
    }
    // Nothing was counted: a wrong code on a fresh challenge leaves 4, the right one works.
    let fresh = s.alice_partial().await;
    let r = s.verify(&fresh, &s.wrong_code()).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.body["attempts_remaining"], 4, "{}", r.body);
    s.verify(&fresh, &s.code()).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// 8. Malformed requests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_400_and_huge_bodies_413() {
    let s = start().await;
    let partial = s.alice_partial().await;
    let json_ct = "application/json";
    let huge = |field: &str| {
        format!(
            r#"{{"{field}":"{}","password":"x","code":"123456"}}"#,
            "a".repeat(2 * 1024 * 1024)
        )
        .into_bytes()
    };

    let login_cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not JSON", json_ct, b"username=alice".to_vec()),
        (
            "wrong type",
            json_ct,
            br#"{"username":"alice","password":123456}"#.to_vec(),
        ),
        (
            "missing field",
            json_ct,
            br#"{"username":"alice"}"#.to_vec(),
        ),
        (
            "text/plain",
            "text/plain",
            br#"{"username":"alice","password":"alice-password"}"#.to_vec(),
        ),
    ];
    for (what, ct, body) in login_cases {
        let r = s.post_raw("/auth/login", ct, body).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "login, {what}: {}",
            r.body
        );
    }
    let r = s.post_huge("/auth/login", huge("username")).await;
    r.expect(413, "invalid_request");
    let raw = s.raw_declared_length("/auth/login", 2 * 1024 * 1024).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains(r#""error":"invalid_request""#), "{raw}");

    let verify_cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not JSON", json_ct, b"{mfa_token: nope".to_vec()),
        (
            "code as a number",
            json_ct,
            serde_json::to_vec(&json!({"mfa_token": partial, "code": 123456})).unwrap(),
        ),
        ("no fields", json_ct, b"{}".to_vec()),
        (
            "no code",
            json_ct,
            serde_json::to_vec(&json!({ "mfa_token": partial })).unwrap(),
        ),
        (
            "no token",
            json_ct,
            serde_json::to_vec(&json!({ "code": s.code() })).unwrap(),
        ),
        (
            "text/plain",
            "text/plain",
            serde_json::to_vec(&json!({"mfa_token": partial, "code": s.code()})).unwrap(),
        ),
        (
            "code and recovery_code",
            json_ct,
            serde_json::to_vec(&json!({
                "mfa_token": partial,
                "code": s.code(),
                "recovery_code": "AAAA-BBBB-CCCC-DDDD",
            }))
            .unwrap(),
        ),
    ];
    for (what, ct, body) in verify_cases {
        let r = s.post_raw("/auth/mfa/verify", ct, body).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (400, "invalid_request"),
            "verify, {what}: {}",
            r.body
        );
    }
    let r = s.post_huge("/auth/mfa/verify", huge("mfa_token")).await;
    r.expect(413, "invalid_request");
    let raw = s
        .raw_declared_length("/auth/mfa/verify", 2 * 1024 * 1024)
        .await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");

    // None of that spent the partial token or an attempt.
    let r = s.verify(&partial, &s.code()).await;
    r.expect_ok();
    let access = r.str("access_token");

    // A tampered step-up mfa_token.
    s.clock.advance(301);
    let mfa_token = s.get("/api/billing", Some(&access)).await.str("mfa_token");
    assert_eq!(mfa_token.split('.').count(), 5, "a JWE");
    let mut bytes = mfa_token.clone().into_bytes();
    let mut i = bytes.len() / 2;
    while bytes[i] == b'.' {
        i += 1;
    }
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_ne!(tampered, mfa_token);
    s.verify(&tampered, &s.code())
        .await
        .expect(400, "mfa_token_invalid");
    // An access token is no challenge token.
    s.verify(&access, &s.code())
        .await
        .expect(400, "mfa_token_invalid");
    // The genuine one still works.
    s.verify(&mfa_token, &s.code()).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// 9. Account enumeration
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_look_the_same() {
    let s = start().await;
    // (Other unknown names and other users each time: login throttling counts 10
    // failures per account and client.)
    let unknown = s.login("mallory", "alice-password").await;
    let wrong = s.login("alice", "not-alice-password").await;
    unknown.expect(401, "invalid_credentials");
    wrong.expect(401, "invalid_credentials");
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.raw, wrong.raw, "byte-identical bodies");

    // The fastest of several interleaved tries of each: other tests running beside this
    // one only ever add time, so the minimum is what the server itself spends. Without a
    // dummy hash an unknown user would answer in well under a tenth of the time.
    let mut t_unknown = Duration::MAX;
    let mut t_wrong = Duration::MAX;
    for i in 0..11 {
        let t = Instant::now();
        let r = s.login(&format!("mallory{i}"), "alice-password").await;
        t_unknown = t_unknown.min(t.elapsed());
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let t = Instant::now();
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let r = s.login(user, "not-the-password").await;
        t_wrong = t_wrong.min(t.elapsed());
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let ratio = t_unknown.as_secs_f64() / t_wrong.as_secs_f64();
    assert!(
        (0.5..=2.0).contains(&ratio),
        "fastest unknown {t_unknown:?} vs wrong password {t_wrong:?}: ratio {ratio}"
    );
}

// ---------------------------------------------------------------------------------------
// 10. The store is down
// ---------------------------------------------------------------------------------------

#[path = "support/failing_store.rs"]
mod failing_store;
use failing_store::FailingStore;

#[tokio::test(flavor = "multi_thread")]
async fn store_failure_fails_closed_with_503() {
    let s = start_with(Arc::new(FailingStore::new())).await;

    // A password is checked only under a reserved login attempt: no store, no sign-in.
    s.login("alice", "alice-password")
        .await
        .expect(503, "temporarily_unavailable");
    // A partial token (from before the store went away) cannot be completed either,
    // whatever the code.
    let partial = s
        .issuer
        .issue_partial(&Grant::new("alice").amr(["pwd"]))
        .unwrap()
        .token;
    s.verify(&partial, &s.code())
        .await
        .expect(503, "temporarily_unavailable");
    s.verify(&partial, &s.wrong_code())
        .await
        .expect(503, "temporarily_unavailable");
    // bob's refresh family cannot be stored: no tokens.
    let bob = s.login("bob", "bob-password").await;
    bob.expect(503, "temporarily_unavailable");
    assert!(bob.body.get("access_token").is_none());
    // A token of the right shape needs the store; one of the wrong shape is refused
    // before it.
    let secret = "c29tZS1yZWZyZXNoLXRva2VuLXRoYXQtbG9va3MtcmV";
    s.refresh(&format!("0123456789abcdef.some-session.{secret}"))
        .await
        .expect(503, "temporarily_unavailable");
    s.refresh(secret).await.expect(400, "invalid_grant");

    // The layer itself needs no store.
    let access = s
        .issuer
        .issue_access(&Grant::new("alice").amr(["pwd"]))
        .unwrap()
        .token;
    let me = s.get("/api/me", Some(&access)).await;
    me.expect_ok();
    assert_eq!(me.body["sub"], "alice");
    s.get("/api/billing", Some(&access))
        .await
        .expect(403, "mfa_required");
}

/// A store whose refresh families hold claims it cannot read back (e.g. written by a
/// version that this one cannot read).
struct UnreadableSessions;

impl StoreHook for UnreadableSessions {
    fn before<'a>(
        &'a self,
        _: &'a dyn Store,
        call: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        let answer = matches!(call, Call::RefreshRotate { .. })
            .then(|| Err(StoreError::Corrupt("refresh session decoding".into())));
        Box::pin(async move { answer })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_stored_session_fails_with_500_not_503() {
    // Retrying will not help: not `temporarily_unavailable`, and no tokens.
    let store = HookedStore::with_hook(Arc::new(MemoryStore::new()), UnreadableSessions);
    let s = start_with(Arc::new(store)).await;
    let bob = s.login("bob", "bob-password").await;
    bob.expect_ok();
    let refresh_token = bob.body["refresh_token"].as_str().unwrap().to_owned();
    let r = s.refresh(&refresh_token).await;
    r.expect(500, "server_error");
    assert!(r.body.get("access_token").is_none(), "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// 10b. Published keys (JWKS) and a scoped route
// ---------------------------------------------------------------------------------------

/// The demo's JWKS fetched over the socket, checked for its headers.
async fn fetch_jwks(s: &Server) -> tower_stepup::token::JwkSet {
    let r = s.get(app::JWKS_PATH, None).await;
    r.expect_ok();
    assert_eq!(r.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        r.header(reqwest::header::CACHE_CONTROL),
        Some("public, max-age=300")
    );
    let text = String::from_utf8(r.raw.clone()).unwrap();
    assert!(!text.contains("\"d\""), "no private part: {text}");
    serde_json::from_str(&text).unwrap()
}

fn published_kids(set: &tower_stepup::token::JwkSet) -> Vec<String> {
    let kids = set.keys.iter().map(|k| k.common.key_id.clone().unwrap());
    kids.collect()
}

async fn bob_access(s: &Server) -> String {
    let r = s.login("bob", "bob-password").await;
    r.expect_ok();
    r.str("access_token")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verifier_built_only_from_the_published_jwks_accepts_the_demos_tokens() {
    let s = start().await;
    let set = fetch_jwks(&s).await;
    let (keys, skipped) = KeySet::from_jwks(&set, &[Algorithm::EdDSA]);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(keys.keys().len(), 1);
    // The kid is the key's RFC 7638 thumbprint, derived from STEPUP_SIGNING_KEY.
    let expected = app::signing_key(&demo_config::SIGNING_KEY).unwrap();
    assert_eq!(published_kids(&set), [expected.kid().to_owned()]);
    assert_eq!(Some(expected.kid().to_owned()), expected.thumbprint());
    let verifier = Verifier::builder()
        .issuer(app::ISSUER)
        .audience(app::AUDIENCE)
        .algorithms([Algorithm::EdDSA])
        .keys(keys)
        .build()
        .unwrap();
    let bob = bob_access(&s).await;
    let header = jsonwebtoken_header(&bob);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], expected.kid());
    let verified = verifier.verify(&bob, s.now()).unwrap();
    assert_eq!(verified.claims.sub(), "bob");
    assert!(verified.claims.has_scope("orders:read"));
    // alice's session after her second factor, too.
    let (alice, _) = s.alice_session().await;
    assert_eq!(
        verifier.verify(&alice, s.now()).unwrap().claims.sub(),
        "alice"
    );
    // Only GET is public there (other methods get the table's default, authenticated),
    // and only GET reads it: with a token, the service itself answers 405.
    let delete = |bearer: Option<&str>| {
        let req = s.client.delete(s.url(app::JWKS_PATH));
        match bearer {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
        .send()
    };
    assert_eq!(
        delete(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = delete(Some(&bob)).await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

/// The JOSE header of a JWS, unverified.
fn jsonwebtoken_header(jwt: &str) -> Value {
    let part = jwt.split('.').next().expect("a JWT has a header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_instances_sharing_the_signing_secret_publish_one_key_and_accept_each_others_tokens() {
    let a = start().await;
    let b = start().await;
    let (set_a, set_b) = (fetch_jwks(&a).await, fetch_jwks(&b).await);
    assert_eq!(set_a, set_b);
    assert_eq!(published_kids(&set_a).len(), 1);
    // A token from one instance opens the other.
    let bob = bob_access(&a).await;
    b.get("/api/me", Some(&bob)).await.expect_ok();
    // Another secret: another key and kid, and the token is refused.
    let mut other = config();
    other.signing_key = [0x52; 32];
    let c = Demo::build(&other, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let c = serve(c.router.clone(), "127.0.0.1:0").await;
    let url = format!("http://{}{}", c.addr, app::JWKS_PATH);
    let set_c: tower_stepup::token::JwkSet = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(published_kids(&set_c).len(), 1);
    assert_ne!(published_kids(&set_c), published_kids(&set_a));
    let r = client()
        .get(format!("http://{}/api/me", c.addr))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_needs_a_token_with_the_orders_read_scope() {
    let s = start().await;
    let r = s.get("/api/orders", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.www_authenticate().starts_with("Bearer"), "{r:?}");
    let bob = bob_access(&s).await;
    let r = s.get("/api/orders", Some(&bob)).await;
    r.expect_ok();
    assert_eq!(r.body["sub"], "bob");
    assert_eq!(r.body["orders"][0]["id"], "ORD-2001");
    // A genuine token of the demo's issuer without the scope.
    let narrow = s
        .issuer
        .issue_access(&Grant::new("bob").amr(["pwd"]).scope("me billing:read"))
        .unwrap()
        .token;
    let r = s.get("/api/orders", Some(&narrow)).await;
    r.expect(403, "insufficient_scope");
    assert_eq!(
        r.www_authenticate(),
        r#"Bearer error="insufficient_scope", scope="orders:read""#
    );
    s.get("/api/me", Some(&narrow)).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// 11. The real binary's output
// ---------------------------------------------------------------------------------------

/// `target/<profile>/examples/axum_app`, next to this test's `deps` directory.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("axum_app{}", std::env::consts::EXE_SUFFIX))
}

/// Builds the demo binary with this test's features, so the test never runs a stale
/// binary (`cargo test --test demo` builds no examples by itself).
fn build_demo_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_demo_binary_now).clone()
}

fn build_demo_binary_now() -> PathBuf {
    let bin = demo_binary();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut features = Vec::new();
    for (on, name) in [
        (cfg!(feature = "aws-lc-rs"), "aws-lc-rs"),
        (cfg!(feature = "rust-crypto"), "rust-crypto"),
        (cfg!(feature = "server"), "server"),
        (cfg!(feature = "passkey"), "passkey"),
        (cfg!(feature = "axum"), "axum"),
        (cfg!(feature = "tonic"), "tonic"),
        (cfg!(feature = "redis"), "redis"),
    ] {
        if on {
            features.push(name);
        }
    }
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--example",
        "axum_app",
        "--no-default-features",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("could not run cargo");
    assert!(
        out.status.success(),
        "building the demo binary failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        bin.exists(),
        "the demo binary is not at {} (run `cargo build --all-features --example axum_app`)",
        bin.display()
    );
    bin
}

/// Everything the binary wrote, and what it was given and gave out.
#[derive(Default)]
struct Seen {
    tokens: Vec<String>,
    codes: Vec<String>,
    secrets: Vec<String>,
}

impl Seen {
    fn token(&mut self, token: &str) -> String {
        assert!(!token.is_empty());
        self.tokens.push(token.to_owned());
        token.to_owned()
    }
}

/// Whether `code` occurs in `text` as a number of its own (not inside a longer one).
fn contains_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// The log lines without their leading RFC 3339 timestamps, whose microseconds are six
/// digits that could look like a code.
fn without_timestamps(log: &str) -> String {
    log.lines()
        .map(|line| match line.split_once(' ') {
            Some((first, rest))
                if first.starts_with(|c: char| c.is_ascii_digit()) && first.contains('T') =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_hold_no_token_code_or_secret() {
    let bin = build_demo_binary();
    let mut child = tokio::process::Command::new(&bin)
        .envs(demo_config::demo_env())
        .env("RUST_LOG", "debug")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));

    // Read both pipes from the start, so a chatty child never blocks on a full pipe.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let stdout_task = tokio::spawn(async move {
        let mut all = String::new();
        let mut first_tx = Some(first_tx);
        let mut line = String::new();
        while stdout.read_line(&mut line).await.unwrap_or(0) > 0 {
            if let Some(tx) = first_tx.take() {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            line.clear();
        }
        all
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all).await;
        String::from_utf8_lossy(&all).into_owned()
    });

    let first = tokio::time::timeout(Duration::from_secs(30), first_rx)
        .await
        .expect("the demo did not print its address within 30 s")
        .expect("the demo exited before printing its address");
    let base = first
        .trim()
        .strip_prefix("tower-stepup demo listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let client = client();
    let alice_secret = alice_secret();
    let mut seen = Seen::default();
    seen.secrets.push(ALICE_SECRET.to_owned());
    let post = |path: &str, body: Value, bearer: Option<String>| {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        async move { Reply::sent(req).await }
    };
    let get = |path: &str, bearer: String| {
        let req = client.get(format!("{base}{path}")).bearer_auth(bearer);
        async move { Reply::sent(req).await }
    };
    let distinct_wrong = |secret: &TotpSecret, candidates: &[&str]| {
        let now = system_now();
        let step = totp::step_at(now);
        let valid: HashSet<String> = (step - 3..=step + 3)
            .map(|s| totp::code_at(secret, s))
            .collect();
        candidates
            .iter()
            .find(|c| !valid.contains(**c))
            .unwrap()
            .to_string()
    };

    // alice: a wrong password, then her password, a wrong code, the right code.
    let wrong_password = "alice-wrong-password-7f3a";
    post(
        "/auth/login",
        json!({"username": "alice", "password": wrong_password}),
        None,
    )
    .await
    .expect(401, "invalid_credentials");
    let login = post(
        "/auth/login",
        json!({"username": "alice", "password": "alice-password"}),
        None,
    )
    .await;
    login.expect_ok();
    let partial = seen.token(&login.str("partial_token"));
    let wrong = distinct_wrong(&alice_secret, &["918273", "827364", "736451"]);
    seen.codes.push(wrong.clone());
    post(
        "/auth/mfa/verify",
        json!({"mfa_token": partial, "code": wrong}),
        None,
    )
    .await
    .expect(401, "invalid_code");
    let right = totp::code_at(&alice_secret, totp::step_at(system_now()));
    seen.codes.push(right.clone());
    let v = post(
        "/auth/mfa/verify",
        json!({"mfa_token": partial, "code": right}),
        None,
    )
    .await;
    v.expect_ok();
    let alice_access = seen.token(&v.str("access_token"));
    let alice_refresh = seen.token(&v.str("refresh_token"));
    get("/api/billing", alice_access.clone()).await.expect_ok();

    // bob: password only, billing asks him to enroll.
    let login = post(
        "/auth/login",
        json!({"username": "bob", "password": "bob-password"}),
        None,
    )
    .await;
    login.expect_ok();
    let bob_access = seen.token(&login.str("access_token"));
    seen.token(&login.str("refresh_token"));
    let denied = get("/api/billing", bob_access.clone()).await;
    denied.expect(403, "mfa_required");
    let bob_mfa_token = seen.token(&denied.str("mfa_token"));

    // bob enrolls: a wrong code, then the right one.
    let e = post("/auth/mfa/enroll", json!({}), Some(bob_access.clone())).await;
    e.expect_ok();
    let bob_secret_b32 = e.str("secret");
    seen.secrets.push(bob_secret_b32.clone());
    seen.secrets.push(e.str("otpauth_uri"));
    let bob_secret = TotpSecret::from_base32(&bob_secret_b32).unwrap();
    let bob_wrong = distinct_wrong(&bob_secret, &["364519", "451928", "192837"]);
    seen.codes.push(bob_wrong.clone());
    post(
        "/auth/mfa/enroll/confirm",
        json!({"code": bob_wrong}),
        Some(bob_access.clone()),
    )
    .await
    .expect(401, "invalid_code");
    let bob_right = totp::code_at(&bob_secret, totp::step_at(system_now()));
    seen.codes.push(bob_right.clone());
    let confirmed = post(
        "/auth/mfa/enroll/confirm",
        json!({"code": bob_right}),
        Some(bob_access.clone()),
    )
    .await;
    confirmed.expect_ok();
    let recovery: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(recovery.len() >= 8);
    for code in &recovery {
        seen.secrets.push(code.clone());
        seen.secrets.push(code.replace('-', ""));
    }

    // bob completes billing's step-up with a recovery code.
    let up = post(
        "/auth/mfa/verify",
        json!({"mfa_token": bob_mfa_token, "recovery_code": recovery[0]}),
        Some(bob_access.clone()),
    )
    .await;
    up.expect_ok();
    let bob_elevated = seen.token(&up.str("access_token"));
    let bob_refresh = seen.token(&up.str("refresh_token"));
    get("/api/billing", bob_elevated.clone()).await.expect_ok();

    // alice refreshes, then replays the rotated token.
    let r = post(
        "/auth/refresh",
        json!({ "refresh_token": alice_refresh }),
        None,
    )
    .await;
    r.expect_ok();
    seen.token(&r.str("access_token"));
    seen.token(&r.str("refresh_token"));
    post(
        "/auth/refresh",
        json!({ "refresh_token": alice_refresh }),
        None,
    )
    .await
    .expect(400, "invalid_grant");

    // bob logs out.
    let out = post(
        "/auth/logout",
        json!({ "refresh_token": bob_refresh }),
        Some(bob_elevated.clone()),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);

    child.kill().await.unwrap();
    let stdout = stdout_task.await.unwrap();
    let stderr = stderr_task.await.unwrap();
    let output = format!("{stdout}\n{stderr}");

    assert!(
        stderr.contains("tower_stepup::audit") && stderr.contains("verify"),
        "logging really happened:\n{stderr}"
    );

    let mut leaks = Vec::new();
    for token in &seen.tokens {
        if output.contains(token.as_str()) {
            leaks.push(format!("a whole token: {token}"));
        }
        // Every part but a JWS/JWE header (the same for all tokens of a kind).
        let parts: Vec<&str> = token.split('.').collect();
        let skip = usize::from(parts.len() > 1);
        for part in parts.iter().skip(skip).filter(|p| p.len() >= 16) {
            if output.contains(part) {
                leaks.push(format!("a token part: {part} (of {token})"));
            }
        }
    }
    let output_no_ts = format!("{stdout}\n{}", without_timestamps(&stderr));
    for code in &seen.codes {
        if contains_code(&output_no_ts, code) {
            leaks.push(format!("a submitted code: {code}"));
        }
    }
    // Regression: the demo once printed alice's secret (in the one-liner that computes a
    // code) even when it came from STEPUP_ALICE_TOTP_SECRET. DESIGN §7: it is printed
    // only when it is random.
    for secret in &seen.secrets {
        if output.contains(secret.as_str()) {
            leaks.push(format!("a secret: {secret}"));
        }
    }
    // The demo's passwords are documented (DESIGN §7) and the start banner names them on
    // purpose; the logs must not.
    if output.contains(wrong_password) {
        leaks.push(format!("a submitted password: {wrong_password}"));
    }
    for password in ["alice-password", "bob-password"] {
        if stderr.contains(password) {
            leaks.push(format!("a password in the logs: {password}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "the demo's output holds what it must not:\n  {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        leaks.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// 11b. An ended session ends its access tokens (issue 17 item 1, DESIGN §8.3)
// ---------------------------------------------------------------------------------------

/// The refusal of an access token whose session has ended.
fn expect_session_ended(r: &Reply) {
    r.expect(401, "invalid_token");
    assert_eq!(
        r.body["error_description"], "the session has ended; sign in again",
        "{}",
        r.body
    );
    let www = r.header(WWW_AUTHENTICATE).unwrap_or_default();
    assert!(www.starts_with(r#"Bearer error="invalid_token""#), "{www}");
}

/// Logout ends the caller's session at once: its access token is refused on the next
/// request, while another session of the same user goes on.
#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_sessions_access_token_at_once() {
    let s = start().await;
    let (access, refresh) = s.alice_session().await;
    s.clock.advance(30);
    let (other, _) = s.alice_session().await;
    s.get("/api/me", Some(&access)).await.expect_ok();
    let out = s.logout(&access, &refresh).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    expect_session_ended(&s.get("/api/me", Some(&access)).await);
    expect_session_ended(&s.get("/api/billing", Some(&access)).await);
    s.refresh(&refresh).await.expect(400, "invalid_grant");
    s.get("/api/me", Some(&other)).await.expect_ok();
    // Logging out again with the ended token is refused by the layer.
    expect_session_ended(&s.logout(&access, &refresh).await);
}

/// A replayed refresh token revokes its family, and with it every access token of the
/// session: the thief's fresh one and the victim's.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_token_reuse_ends_the_sessions_access_tokens() {
    let s = start().await;
    let (victim, stolen) = s.alice_session().await;
    let r = s.refresh(&stolen).await;
    r.expect_ok();
    let thief = r.str("access_token");
    s.get("/api/me", Some(&thief)).await.expect_ok();
    // The victim's client refreshes with the token the thief already used.
    s.refresh(&stolen).await.expect(400, "invalid_grant");
    expect_session_ended(&s.get("/api/me", Some(&thief)).await);
    expect_session_ended(&s.get("/api/me", Some(&victim)).await);
}

/// `Completion::revoke_user` (an administrator's call) ends every session of a user: all
/// her access tokens are refused and no refresh token works; another user is untouched,
/// and signing in again works.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_user_ends_every_session_of_the_user() {
    let demo = Demo::build(
        &config(),
        ManualClock::new(T0),
        Arc::new(MemoryStore::new()),
    );
    let completion = demo.completion.clone();
    let s = serve_demo(demo).await;
    let (first, first_refresh) = s.alice_session().await;
    s.clock.advance(30);
    let (second, second_refresh) = s.alice_session().await;
    let bob = s.login("bob", "bob-password").await;
    bob.expect_ok();
    let (bob_access, bob_refresh) = (bob.str("access_token"), bob.str("refresh_token"));

    assert_eq!(completion.revoke_user("alice").await, Ok(2));
    for access in [&first, &second] {
        expect_session_ended(&s.get("/api/me", Some(access)).await);
    }
    for refresh in [&first_refresh, &second_refresh] {
        s.refresh(refresh).await.expect(400, "invalid_grant");
    }
    s.get("/api/me", Some(&bob_access)).await.expect_ok();
    s.refresh(&bob_refresh).await.expect_ok();
    // Nothing left to end; a new sign-in is a new session that works.
    assert_eq!(completion.revoke_user("alice").await, Ok(0));
    s.clock.advance(30);
    let (again, _) = s.alice_session().await;
    s.get("/api/me", Some(&again)).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// 12. Redis: two instances behave as one; faults fail closed and heal
// ---------------------------------------------------------------------------------------

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
#[path = "support/latency_proxy.rs"]
mod latency_proxy;

#[cfg(feature = "redis")]
mod on_redis {
    use super::latency_proxy::LatencyProxy;
    use super::redis_server::RedisServer;
    use super::*;
    use tower_stepup::store::RedisStore;

    impl Server {
        /// Starts the real demo binary with `REDIS_URL` and the shared keys, and talks to
        /// it. Its output is drained (and dropped) so it never blocks on a full pipe.
        async fn process(redis_url: &str, max_attempts: u32) -> Server {
            Self::process_with(redis_url, max_attempts, &[]).await
        }

        /// [`process`](Self::process) with more environment.
        async fn process_with(redis_url: &str, max_attempts: u32, env: &[(&str, &str)]) -> Server {
            let bin = build_demo_binary();
            let mut child = tokio::process::Command::new(&bin)
                .envs(demo_config::demo_env())
                .envs(env.iter().copied())
                .env("STEPUP_MAX_ATTEMPTS", max_attempts.to_string())
                .env("REDIS_URL", redis_url)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut first = String::new();
            tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first))
                .await
                .expect("the demo did not print its address within 30 s")
                .unwrap();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = stdout.read_to_end(&mut sink).await;
            });
            let base = first
                .trim()
                .strip_prefix("tower-stepup demo listening on ")
                .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
                .to_owned();
            // Only for its issuer (same keys as the process): never served.
            let demo = Demo::build(
                &config(),
                ManualClock::new(system_now()),
                Arc::new(MemoryStore::new()),
            );
            Server {
                http: Http::new(base),
                clock: ManualClock::new(system_now()),
                issuer: demo.issuer,
                alice: alice_secret(),
                factors: demo.factors,
                _served: None,
                process: Some(child),
            }
        }

        fn code_at_step(&self, step: u64) -> String {
            totp::code_at(&self.alice, step)
        }
    }

    /// Waits, if needed, until at least `margin` seconds of the current 30 s step are
    /// left, and returns that step: the test's codes stay valid while it runs.
    async fn fresh_step(margin: u64) -> u64 {
        loop {
            let now = system_now();
            if 30 - now % 30 >= margin {
                return totp::step_at(now);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Two demo processes sharing keys and one Redis: a challenge minted by one is
    /// completed on the other, used once across both, a code is accepted once across
    /// both, and a lockout earned on both holds on both.
    #[tokio::test(flavor = "multi_thread")]
    async fn two_instances_on_one_redis_behave_as_one() {
        let redis = RedisServer::start();
        let url = redis.url();
        let (a, b) = tokio::join!(Server::process(&url, 3), Server::process(&url, 3));
        assert_ne!(a.base, b.base);
        assert!(a.process.is_some() && b.process.is_some());
        let step = fresh_step(12).await;

        // Minted by A, completed on B; then used up on A too.
        let p1 = a.alice_partial().await;
        let r = b.verify(&p1, &a.code_at_step(step - 1)).await;
        r.expect_ok();
        let access = r.str("access_token");
        a.get("/api/me", Some(&access)).await.expect_ok();
        a.verify(&p1, &a.code_at_step(step))
            .await
            .expect(404, "mfa_token_not_found");

        // Ten concurrent verifies of one challenge, half on each instance: one wins.
        let p2 = b.alice_partial().await;
        let code = a.code_at_step(step);
        let mut tries = Vec::new();
        for i in 0..10 {
            let server = if i % 2 == 0 { &a } else { &b };
            tries.push(server.verify(&p2, &code));
        }
        let replies = join_all(tries).await;
        let ok = replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        let used = replies.iter().filter(|r| is_lost_race(r)).count();
        assert_eq!((ok, used), (1, 9), "{:?}", statuses(&replies));

        // The code accepted (on one instance or the other) is refused on both.
        let p3 = a.alice_partial().await;
        let r = b.verify(&p3, &code).await;
        r.expect(401, "invalid_code");
        assert_eq!(r.body["attempts_remaining"], 2, "{}", r.body);
        let r = a.verify(&p3, &a.wrong_code()).await;
        r.expect(401, "invalid_code");
        assert_eq!(r.body["attempts_remaining"], 1, "{}", r.body);
        // The third failure, on B, locks alice out everywhere.
        let r = b.verify(&p3, &b.wrong_code()).await;
        r.expect(429, "too_many_attempts");
        let p4 = b.alice_partial().await;
        let next = a.code_at_step(step + 1);
        a.verify(&p4, &next).await.expect(429, "too_many_attempts");
        b.verify(&p4, &next).await.expect(429, "too_many_attempts");
    }

    /// alice signs in on `server` with the code of `step` → (access, refresh).
    async fn session_at(server: &Server, step: u64) -> (String, String) {
        let partial = server.alice_partial().await;
        let r = server.verify(&partial, &server.code_at_step(step)).await;
        r.expect_ok();
        (r.str("access_token"), r.str("refresh_token"))
    }

    async fn logout(server: &Server, access: &str, refresh: &str) {
        let out = server.logout(access, refresh).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    }

    /// Asks `server` for `/api/me` with `access` until the answer has `status`, for at
    /// most `limit`; the last answer and how long it took.
    async fn until_status(
        server: &Server,
        access: &str,
        status: u16,
        limit: Duration,
    ) -> (Reply, Duration) {
        let started = std::time::Instant::now();
        loop {
            let r = server.get("/api/me", Some(access)).await;
            if r.status.as_u16() == status || started.elapsed() > limit {
                return (r, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two demo processes on one Redis (B through a proxy that can be cut): a logout on
    /// A ends the access token on A at once and on B within 1 s. Then B is cut off from
    /// Redis, a session ends on A, and B, unable to read the revocation feed, answers 503
    /// once its staleness bound (2 s here) has passed; restored, it refuses the token.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_session_ended_on_one_instance_ends_on_the_other() {
        let redis = RedisServer::start();
        let target: std::net::SocketAddr = ([127, 0, 0, 1], redis.port()).into();
        let proxy = LatencyProxy::start(target, Duration::ZERO, Duration::ZERO).await;
        let proxy_addr = proxy.addr();
        let env = [("STEPUP_REVOCATION_STALENESS_SECS", "2")];
        let (direct, proxied) = (redis.url(), proxy.redis_url());
        let (a, b) = tokio::join!(
            Server::process_with(&direct, 5, &env),
            Server::process_with(&proxied, 5, &env),
        );
        let step = fresh_step(20).await;

        let (access, refresh) = session_at(&a, step - 1).await;
        b.get("/api/me", Some(&access)).await.expect_ok();
        logout(&a, &access, &refresh).await;
        expect_session_ended(&a.get("/api/me", Some(&access)).await);
        let (r, took) = until_status(&b, &access, 401, Duration::from_secs(3)).await;
        expect_session_ended(&r);
        assert!(took < Duration::from_secs(1), "B refused it after {took:?}");

        // B cut off from Redis; a session ends on A meanwhile.
        let (access, refresh) = session_at(&a, step).await;
        b.get("/api/me", Some(&access)).await.expect_ok();
        drop(proxy);
        logout(&a, &access, &refresh).await;
        let (r, took) = until_status(&b, &access, 503, Duration::from_secs(6)).await;
        r.expect(503, "temporarily_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            took <= Duration::from_secs(4),
            "B answered 503 after {took:?}"
        );
        // Public routes still answer.
        b.get("/healthz", None).await.expect_ok();

        // Restored: B catches up and refuses the ended session.
        let _proxy = LatencyProxy::start_at(proxy_addr, target).await;
        let (r, took) = until_status(&b, &access, 401, Duration::from_secs(5)).await;
        expect_session_ended(&r);
        assert!(took < Duration::from_secs(3), "B caught up after {took:?}");
    }

    /// Polls all `futures` together (all requests in flight at once) → their replies.
    async fn join_all<F: std::future::Future<Output = Reply>>(futures: Vec<F>) -> Vec<Reply> {
        let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut done: Vec<Option<Reply>> = pinned.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, slot) in pinned.iter_mut().zip(done.iter_mut()) {
                if slot.is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(r) => *slot = Some(r),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        done.into_iter().map(Option::unwrap).collect()
    }

    fn statuses(replies: &[Reply]) -> Vec<String> {
        replies
            .iter()
            .map(|r| format!("{} {}", r.status.as_u16(), r.error()))
            .collect()
    }

    /// The demo in process on `store`, its guard following the store's revocation feed
    /// with a staleness bound of `staleness` seconds; returns once the feed was read.
    async fn start_following(store: RedisStore, staleness: u64) -> Server {
        let config = app::DemoConfig {
            revocation_staleness_secs: Some(staleness),
            ..config()
        };
        let demo = Demo::build(&config, ManualClock::new(T0), Arc::new(store.clone()));
        store.follow_revocations(&demo.guard);
        let deadline = Instant::now() + Duration::from_secs(5);
        while demo.guard.revocations().synced_at().is_none() {
            assert!(Instant::now() < deadline, "the feed was never read");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        serve_demo(demo).await
    }

    /// Redis killed mid-run, then frozen: every endpoint that needs the store answers 503
    /// `temporarily_unavailable` within 1 s, never a pass; access tokens keep working on
    /// protected routes until the revocation feed's staleness bound (60 s) has passed,
    /// then 503 there too; when Redis is back, the same process serves again.
    #[tokio::test(flavor = "multi_thread")]
    async fn redis_down_or_frozen_fails_closed_and_heals() {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        let s = start_following(store, 60).await;
        let (access, refresh) = s.alice_session().await;
        s.clock.advance(30);
        let partial = s.alice_partial().await;

        let check_down = |why: &'static str| {
            let s = &s;
            let (partial, access, refresh) = (&partial, &access, &refresh);
            async move {
                let code = s.code();
                let calls: [(&str, Value, Option<&str>); 4] = [
                    (
                        "/auth/mfa/verify",
                        json!({"mfa_token": partial, "code": code}),
                        None,
                    ),
                    ("/auth/refresh", json!({"refresh_token": refresh}), None),
                    (
                        "/auth/logout",
                        json!({"refresh_token": refresh}),
                        Some(access),
                    ),
                    (
                        "/auth/login",
                        json!({"username": "bob", "password": "bob-password"}),
                        None,
                    ),
                ];
                for (path, body, bearer) in calls {
                    let t = Instant::now();
                    let r = s.post(path, &body, bearer).await;
                    let took = t.elapsed();
                    r.expect(503, "temporarily_unavailable");
                    assert!(
                        took < Duration::from_secs(1),
                        "{why}: {path} took {took:?} to fail"
                    );
                }
                // What needs no store keeps serving.
                s.get("/api/me", Some(access)).await.expect_ok();
                s.get("/api/billing", Some(access)).await.expect_ok();
                s.get("/healthz", None).await.expect_ok();
            }
        };

        redis.kill();
        check_down("killed").await;
        // Past the staleness bound (60 s) without the revocation feed, the replica
        // cannot tell whether a session has ended: 503 on authenticated routes.
        s.clock.advance(61);
        s.get("/api/me", Some(&access))
            .await
            .expect(503, "temporarily_unavailable");
        s.get("/healthz", None).await.expect_ok();

        // Back (empty, as a restart without persistence is): the same process recovers.
        redis.restart();
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            let r = s.verify(&partial, &s.code()).await;
            if r.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        r.expect_ok();
        let fresh_access = r.str("access_token");
        let fresh_refresh = r.str("refresh_token");
        s.refresh(&fresh_refresh).await.expect_ok();
        // The feed reconnects and catches up (within its 1 s backoff): authenticated
        // routes serve again.
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = loop {
            let r = s.get("/api/me", Some(&fresh_access)).await;
            if r.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        r.expect_ok();

        // Frozen: connections accepted, nothing answered.
        s.clock.advance(30);
        let partial2 = s.alice_partial().await;
        redis.freeze(true);
        let t = Instant::now();
        let r = s.verify(&partial2, &s.code()).await;
        let took = t.elapsed();
        redis.freeze(false);
        r.expect(503, "temporarily_unavailable");
        assert!(
            took < Duration::from_secs(1),
            "frozen: verify took {took:?}"
        );
        s.get("/api/me", Some(&fresh_access)).await.expect_ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            let r = s.verify(&partial2, &s.code()).await;
            if r.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        r.expect_ok();
    }
}

#[cfg(feature = "jwks")]
/// An identity provider on loopback: the crate's issuer with an ES256 key, `iss`
/// `https://idp.demo.test`, its key set at `/jwks`.
async fn identity_provider() -> (Issuer, Served) {
    let key = SigningKey::ec_pem(
        "idp-1",
        Algorithm::ES256,
        include_bytes!("keys/ec_private.pem"),
    )
    .unwrap();
    let idp = Issuer::builder()
        .issuer("https://idp.demo.test")
        .audience(app::AUDIENCE)
        .signing_key(key)
        .clock(ManualClock::new(T0))
        .build()
        .unwrap();
    let router = axum::Router::new().route_service("/jwks", idp.jwks_service());
    (idp, serve(router, "127.0.0.1:0").await)
}

#[cfg(feature = "jwks")]
#[tokio::test]
async fn an_identity_providers_tokens_reach_the_api_but_not_the_demos_own_endpoints() {
    let (idp, jwks) = identity_provider().await;
    let mut config = config();
    config.idp = Some(app::IdpConfig {
        issuer: "https://idp.demo.test".to_owned(),
        keys: app::IdpKeys::Jwks(format!("http://{}/jwks", jwks.addr)),
    });
    let demo = Demo::build(&config, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let grant = Grant::new("alice")
        .scope("orders:read")
        .amr(["pwd"])
        .auth_time(T0);
    let theirs = idp.issue_access(&grant).unwrap().token;
    // The first request names a key the demo has not fetched yet: it waits for it.
    let r = demo.get("/api/orders", Some(&theirs)).await;
    assert_eq!(r.expect_ok().body["sub"], "alice", "{}", r.body);
    // A step-up for the provider's token is delegated: no mfa_token.
    let r = demo.get("/api/billing", Some(&theirs)).await;
    r.expect(403, "mfa_required");
    assert!(r.body.get("mfa_token").is_none(), "{}", r.body);
    // Their alice is not the demo's alice.
    let r = demo
        .post("/auth/mfa/enroll", json!({}), Some(&theirs))
        .await;
    r.expect(401, "invalid_token");
    // `typ: JWT`, as many providers send: accepted for this provider (DESIGN §8.1).
    let claims = payload(&theirs);
    let header: jsonwebtoken::Header =
        serde_json::from_value(json!({"alg": "ES256", "typ": "JWT", "kid": "idp-1"})).unwrap();
    let key =
        jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("keys/ec_private.pem")).unwrap();
    let jwt_typed = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    demo.get("/api/orders", Some(&jwt_typed)).await.expect_ok();
    // Another audience: refused.
    let mut other = claims.clone();
    other["aud"] = json!("https://elsewhere.example/api");
    let other = jsonwebtoken::encode(&header, &other, &key).unwrap();
    demo.get("/api/orders", Some(&other))
        .await
        .expect(401, "invalid_token");
}
