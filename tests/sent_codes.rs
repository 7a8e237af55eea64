//! One-time codes sent by email or SMS (issue 18, DESIGN §8.4), over real HTTP on
//! 127.0.0.1: `POST /auth/mfa/send` sends a code for a challenge, verify takes it in
//! `code`. Each test serves the demo app (`examples/axum_app/app.rs`: alice has TOTP and
//! an email factor, codes go to a `LogSender`) on a `ManualClock`, with its test-only
//! route `GET /test/last-code/{user}` on (`STEPUP_TEST_ROUTES=1`) to read the code sent.
//!
//! The rules proven here: a sent code signs in with `amr` `otp` (email) or `sms` plus
//! `mfa`; a wrong one is a failed attempt like a wrong TOTP code, under the same lockout;
//! it is single use, bound to the challenge it was sent for and to a factor the user still
//! has, and dies after 5 minutes; sends are limited per user (5 per 15 minutes), also
//! under a burst; neither the code nor the destination reaches a log or an audit event.

#[path = "support/accounts.rs"]
mod accounts;
#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/burst.rs"]
mod burst;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/completion_app.rs"]
mod completion_app;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/demo_server.rs"]
mod demo_server;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/reply.rs"]
mod reply;

use std::sync::Arc;

use axum::routing::post_service;
use burst::RawResponse;
use demo_server::DemoServer;
use http::Method;
use log_capture::Captured;
use serde_json::{json, Value};
use tower_stepup::complete::{Completion, Factors};
use tower_stepup::factor::sent::Channel;
use tower_stepup::factor::totp::TotpSecret;
use tower_stepup::store::MemoryStore;
use tower_stepup::{ManualClock, Policy, RouteTable};

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;
const MAX_ATTEMPTS: u32 = 5;
const SEND: &str = "/auth/mfa/send";
const VERIFY: &str = "/auth/mfa/verify";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The demo's configuration with the test route on and mfa_tokens of `ttl` seconds.
fn config(ttl: u64) -> app::DemoConfig {
    app::DemoConfig {
        test_routes: true,
        mfa_token_ttl_secs: ttl,
        ..demo_config::demo_config(MAX_ATTEMPTS)
    }
}

async fn server() -> DemoServer {
    server_with(config(300)).await
}

async fn server_with(config: app::DemoConfig) -> DemoServer {
    log_capture::install();
    DemoServer::start_with(&config, Arc::new(MemoryStore::new()), T0).await
}

fn alice_secret() -> TotpSecret {
    TotpSecret::from_base32(demo_config::ALICE_SECRET).unwrap()
}

/// A `GET` with `Authorization: Bearer` when given.
async fn get(s: &DemoServer, path: &str, bearer: Option<&str>) -> RawResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    s.send(burst::get(path, &s.addr.to_string(), &headers))
        .await
}

/// alice's password: her partial token.
async fn login(s: &DemoServer) -> String {
    let body = json!({"username": "alice", "password": "alice-password"});
    let r = s.post("/auth/login", &body, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["partial_token"].as_str().unwrap().to_owned()
}

/// `POST /auth/mfa/send` for `token` by `channel`.
async fn send(s: &DemoServer, token: &str, channel: &str) -> RawResponse {
    s.post(SEND, &json!({"mfa_token": token, "channel": channel}), None)
        .await
}

/// Sends a code for `token` by `channel` (204) and reads it from the test route.
async fn sent_code(s: &DemoServer, token: &str, channel: &str) -> String {
    let r = send(s, token, channel).await;
    assert_eq!(r.status, 204, "{}", r.text());
    last_code(s).await
}

/// alice's last code, from `GET /test/last-code/alice`.
async fn last_code(s: &DemoServer) -> String {
    let r = get(s, "/test/last-code/alice", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["code"].as_str().unwrap().to_owned()
}

async fn verify(s: &DemoServer, token: &str, code: &str) -> RawResponse {
    s.post(VERIFY, &json!({"mfa_token": token, "code": code}), None)
        .await
}

/// The `amr` of the session `verified` (a 200 of verify) started, from `GET /api/me`.
async fn amr(s: &DemoServer, verified: &RawResponse) -> Vec<String> {
    assert_eq!(verified.status, 200, "{}", verified.text());
    let access = verified.json()["access_token"].as_str().unwrap().to_owned();
    let me = get(s, "/api/me", Some(&access)).await;
    assert_eq!(me.status, 200, "{}", me.text());
    serde_json::from_value(me.json()["amr"].clone()).unwrap()
}

#[track_caller]
fn assert_error(r: &RawResponse, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], error, "{}", r.text());
}

/// Six-digit codes that are neither alice's TOTP codes around now nor `sent`.
fn wrong_codes(s: &DemoServer, sent: &str, n: usize) -> Vec<String> {
    let mut wrong = codes::wrong_codes(&alice_secret(), s.now(), n + 1);
    wrong.retain(|c| c != sent);
    wrong.truncate(n);
    wrong
}

// ---------------------------------------------------------------------------------------
// Signing in with a sent code
// ---------------------------------------------------------------------------------------

/// An emailed code completes the login: `amr` gains `otp` (RFC 8176 has no email value)
/// and `mfa`.
#[tokio::test]
async fn an_emailed_code_signs_in_with_otp_and_mfa() {
    let s = server().await;
    let partial = login(&s).await;
    let r = send(&s, &partial, "email").await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.body.is_empty());
    let code = last_code(&s).await;
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let verified = verify(&s, &partial, &code).await;
    assert_eq!(amr(&s, &verified).await, ["pwd", "otp", "mfa"]);
    assert_eq!(s.sender.sent(), 1);
}

/// A code by SMS (to a phone number the application added with
/// `Completion::add_code_factor`) gives `amr` `sms`, and the partial token may come as the
/// bearer token, as at verify.
#[tokio::test]
async fn a_code_sent_by_sms_gives_amr_sms() {
    let s = server().await;
    let partial = login(&s).await;
    // No phone yet: nothing to send to.
    assert_error(&send(&s, &partial, "sms").await, 400, "invalid_request");
    let id = s
        .completion
        .add_code_factor("alice", Channel::Sms, "+15550100", Some("phone"))
        .await
        .unwrap();
    let listed = s.factors.factors("alice").await.unwrap();
    let phone = listed.iter().find(|f| f.id == id).unwrap();
    assert_eq!(
        (phone.kind.as_str(), phone.data.as_bytes()),
        ("sms", &b"+15550100"[..])
    );
    assert_eq!(phone.name.as_deref(), Some("phone"));
    let r = s
        .post(SEND, &json!({"channel": "sms"}), Some(&partial))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let code = last_code(&s).await;
    let verified = verify(&s, &partial, &code).await;
    assert_eq!(amr(&s, &verified).await, ["pwd", "sms", "mfa"]);
}

/// Bad sends are clear 4xx and send nothing: a malformed body or channel, no token, a
/// forged token, a `factor_id` that names no factor of the channel, a destination the
/// application cannot add.
#[tokio::test]
async fn bad_sends_are_refused_and_send_nothing() {
    let s = server().await;
    let partial = login(&s).await;
    let cases = [
        (
            json!({"mfa_token": partial, "channel": "voice"}),
            400,
            "invalid_request",
        ),
        (json!({"mfa_token": partial}), 400, "invalid_request"),
        (json!({"channel": "email"}), 400, "invalid_request"),
        (
            json!({"mfa_token": "not.a.token", "channel": "email"}),
            400,
            "mfa_token_invalid",
        ),
        (
            json!({"mfa_token": partial, "channel": "email", "factor_id": "0".repeat(32)}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, error) in cases {
        let r = s.post(SEND, &body, None).await;
        assert_error(&r, status, error);
    }
    // alice's email factor is no SMS factor.
    let email = s.factors.factors("alice").await.unwrap();
    let email = email.iter().find(|f| f.kind == "email").unwrap();
    let body = json!({"mfa_token": partial, "channel": "sms", "factor_id": email.id});
    assert_error(&s.post(SEND, &body, None).await, 400, "invalid_request");
    assert_eq!(s.sender.sent(), 0);
    for bad in ["", "a\nb", &"x".repeat(321)] {
        let added = s
            .completion
            .add_code_factor("alice", Channel::Email, bad, None)
            .await;
        assert!(added.is_err(), "{bad:?}");
    }
    // And named, it is sent to.
    let body = json!({"mfa_token": partial, "channel": "email", "factor_id": email.id});
    assert_eq!(s.post(SEND, &body, None).await.status, 204);
    assert_eq!(s.sender.sent(), 1);
}

// ---------------------------------------------------------------------------------------
// Attempts, single use, binding, expiry
// ---------------------------------------------------------------------------------------

/// A wrong code after a send is a failed attempt of the user, counted with wrong TOTP
/// codes: `attempts_remaining` goes down, the fifth locks the user out, and then even the
/// right sent code is refused.
#[tokio::test]
async fn wrong_sent_codes_count_like_wrong_totp_codes_and_lock_out() {
    let s = server().await;
    let partial = login(&s).await;
    let code = sent_code(&s, &partial, "email").await;
    let wrong = wrong_codes(&s, &code, MAX_ATTEMPTS as usize);
    for (i, w) in wrong.iter().take(MAX_ATTEMPTS as usize - 1).enumerate() {
        let r = verify(&s, &partial, w).await;
        assert_error(&r, 401, "invalid_code");
        let left = u64::from(MAX_ATTEMPTS) - 1 - i as u64;
        assert_eq!(r.json()["attempts_remaining"], left, "{}", r.text());
    }
    let r = verify(&s, &partial, &wrong[MAX_ATTEMPTS as usize - 1]).await;
    assert_error(&r, 429, "too_many_attempts");
    assert_eq!(r.header("retry-after"), Some("900"));
    // Locked out: the right code does not get through, on this challenge or a new one.
    assert_error(&verify(&s, &partial, &code).await, 429, "too_many_attempts");
    let again = login(&s).await;
    let fresh = sent_code(&s, &again, "email").await;
    assert_error(&verify(&s, &again, &fresh).await, 429, "too_many_attempts");
}

/// A used code is spent: its challenge is spent with it (`404`), and it is no code for a
/// new challenge either (`401`).
#[tokio::test]
async fn a_used_code_is_refused_when_replayed() {
    let s = server().await;
    let partial = login(&s).await;
    let code = sent_code(&s, &partial, "email").await;
    assert_eq!(verify(&s, &partial, &code).await.status, 200);
    assert_error(
        &verify(&s, &partial, &code).await,
        404,
        "mfa_token_not_found",
    );
    let next = login(&s).await;
    let r = verify(&s, &next, &code).await;
    assert_error(&r, 401, "invalid_code");
    assert_eq!(r.json()["attempts_remaining"], 4);
}

/// A code is bound to the challenge it was sent for: another challenge's code is a wrong
/// code, and a second send for one challenge replaces its first code.
#[tokio::test]
async fn a_code_sent_for_another_challenge_is_refused() {
    let s = server().await;
    let (first, second) = (login(&s).await, login(&s).await);
    let code = sent_code(&s, &first, "email").await;
    assert_error(&verify(&s, &second, &code).await, 401, "invalid_code");
    // Sent again for the first challenge: the new code works, the old one no longer.
    let newer = sent_code(&s, &first, "email").await;
    if newer != code {
        assert_error(&verify(&s, &first, &code).await, 401, "invalid_code");
    }
    assert_eq!(verify(&s, &first, &newer).await.status, 200);
}

/// A code dies after 5 minutes, even while its challenge lives on (the partial token
/// lives 300 s too, but is accepted until 5 s past its `exp`, the verifier's leeway); a
/// code is also dead once the factor it was sent to is removed.
#[tokio::test]
async fn an_expired_code_is_refused() {
    let s = server().await;
    let partial = login(&s).await;
    let code = sent_code(&s, &partial, "email").await;
    s.clock.advance(301);
    assert_error(&verify(&s, &partial, &code).await, 401, "invalid_code");
    // The challenge lives: a new code for it (alive as long as the challenge) works.
    let fresh = sent_code(&s, &partial, "email").await;
    assert_eq!(verify(&s, &partial, &fresh).await.status, 200);

    // Sent, then its factor removed (another one kept): refused.
    let partial = login(&s).await;
    let code = sent_code(&s, &partial, "email").await;
    let phone = Some("phone");
    let added = s
        .completion
        .add_code_factor("alice", Channel::Sms, "+15550100", phone);
    added.await.unwrap();
    let listed = s.factors.factors("alice").await.unwrap();
    let email = listed.iter().find(|f| f.kind == "email").unwrap();
    assert!(s.factors.remove_factor("alice", &email.id).await.unwrap());
    assert_error(&verify(&s, &partial, &code).await, 401, "invalid_code");
}

// ---------------------------------------------------------------------------------------
// The send limit
// ---------------------------------------------------------------------------------------

/// Five sends per user in 15 minutes: the sixth is `429 too_many_attempts` with
/// `Retry-After` (the window, on a clock that stands still), and nothing is sent; the
/// limit is per user, apart from the attempts: alice can still verify the last code.
#[tokio::test]
async fn the_sixth_send_in_the_window_is_429_with_retry_after() {
    let s = server().await;
    let partial = login(&s).await;
    for i in 0..5 {
        assert_eq!(send(&s, &partial, "email").await.status, 204, "send {i}");
    }
    let code = last_code(&s).await;
    let r = send(&s, &partial, "email").await;
    assert_error(&r, 429, "too_many_attempts");
    assert_eq!(r.header("retry-after"), Some("900"));
    assert_eq!(r.json()["retry_after"], 900);
    assert_eq!(s.sender.sent(), 5);
    // Another challenge of the same user is refused too.
    let other = login(&s).await;
    assert_error(&send(&s, &other, "email").await, 429, "too_many_attempts");
    assert_eq!(verify(&s, &partial, &code).await.status, 200);
    // After the window, sends resume.
    s.clock.advance(900);
    let later = login(&s).await;
    assert_eq!(send(&s, &later, "email").await.status, 204);
    assert_eq!(s.sender.sent(), 6);
}

/// 20 sends at once (a synchronized burst of raw requests): at most 5 codes reach the
/// sender, one per `204`; every other answer is `429` with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_twenty_concurrent_sends_sends_at_most_five() {
    let s = server().await;
    let partial = login(&s).await;
    let body = json!({"mfa_token": partial, "channel": "email"});
    let replies = s.burst(vec![s.request(SEND, &body, None); 20]).await;
    let sent = replies.iter().filter(|r| r.status == 204).count();
    for r in replies.iter().filter(|r| r.status != 204) {
        assert_error(r, 429, "too_many_attempts");
        assert!(r.header("retry-after").is_some(), "{}", r.text());
    }
    assert!((1..=5).contains(&sent), "{sent} sent");
    assert_eq!(s.sender.sent(), sent as u64);
}

// ---------------------------------------------------------------------------------------
// Logs and audit
// ---------------------------------------------------------------------------------------

/// Every event of the crate at every level, while the demo (on this thread: a
/// current-thread runtime) sends and verifies codes: the audit events say what happened
/// (`code_sent` with the channel, the verify's method), and no event holds a code sent or
/// the whole destination.
#[tokio::test(flavor = "current_thread")]
async fn sent_codes_never_reach_the_logs_or_the_audit() {
    let log = log_capture::watch();
    let s = server().await;
    let partial = login(&s).await;
    let first = sent_code(&s, &partial, "email").await;
    let wrong = wrong_codes(&s, &first, 1).remove(0);
    assert_eq!(verify(&s, &partial, &wrong).await.status, 401);
    let code = sent_code(&s, &partial, "email").await;
    assert_eq!(verify(&s, &partial, &code).await.status, 200);

    let events = log.take();
    let audit: Vec<&Captured> = events
        .iter()
        .filter(|e| e.target == tower_stepup::audit::TARGET)
        .collect();
    let field = |e: &Captured, name: &str| e.fields.get(name).cloned();
    let sends: Vec<_> = audit
        .iter()
        .filter(|e| field(e, "event").as_deref() == Some("code_sent"))
        .collect();
    assert_eq!(sends.len(), 2, "{audit:#?}");
    for e in sends {
        assert_eq!(field(e, "outcome").as_deref(), Some("ok"));
        assert_eq!(field(e, "reason").as_deref(), Some("email"));
        assert_eq!(field(e, "sub").as_deref(), Some("alice"));
        assert!(field(e, "token_hash").is_some());
    }
    let verified = audit
        .iter()
        .filter(|e| field(e, "event").as_deref() == Some("verify"))
        .filter_map(|e| field(e, "reason"))
        .collect::<Vec<_>>();
    assert_eq!(verified, ["wrong_code", "email"]);
    // The log sender said it sent, with the destination masked.
    assert!(events.iter().any(|e| e
        .fields
        .get("destination")
        .is_some_and(|d| d == "a…@example.com")));
    for e in &events {
        for (name, value) in &e.fields {
            for secret in [first.as_str(), code.as_str(), "alice@example.com"] {
                assert!(!value.contains(secret), "{name} holds {secret:?}: {e:#?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A completion without a `code_sender` answers `400 invalid_request` to a send, even for
/// a genuine challenge, and sends nothing.
#[tokio::test]
async fn without_a_sender_a_send_is_400() {
    log_capture::install();
    let demo = demo_app::Demo::build(
        &config(300),
        ManualClock::new(T0),
        Arc::new(MemoryStore::new()),
    );
    let completion = Completion::builder()
        .guard(demo.guard.clone())
        .issuer(demo.issuer.clone())
        .store(MemoryStore::new())
        .accounts(accounts::PlainAccounts::new(&[("alice", "pw")]))
        .factors(demo.factors.clone())
        .build()
        .unwrap();
    let table =
        completion_app::policies(RouteTable::new()).route(Method::POST, SEND, Policy::mfa_verify());
    let router = completion_app::routes(axum::Router::new(), &completion)
        .route(SEND, post_service(completion.send_code()))
        .layer(demo.guard.route_table(table).unwrap());
    let served = demo_app::serve(router, "127.0.0.1:0").await;
    let host = served.addr.to_string();
    let post = |path: &str, body: Value| burst::post_json(path, &host, &body, &[]);
    let mut replies = burst::burst(
        served.addr,
        vec![post(
            "/auth/login",
            json!({"username": "alice", "password": "pw"}),
        )],
    )
    .await;
    let partial = replies.remove(0).json()["partial_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"mfa_token": partial, "channel": "email"});
    let r = burst::burst(served.addr, vec![post(SEND, body)])
        .await
        .remove(0);
    assert_error(&r, 400, "invalid_request");
    assert_eq!(r.json()["error_description"], "codes cannot be sent here");
    assert_eq!(demo.sender.sent(), 0);
}

/// Digits of a sent code: 6 to 8, anything else a configuration error.
#[test]
fn sent_code_digits_are_six_to_eight() {
    log_capture::install();
    let demo = demo_app::Demo::build(
        &config(300),
        ManualClock::new(T0),
        Arc::new(MemoryStore::new()),
    );
    let build = |digits: u8| {
        Completion::builder()
            .guard(demo.guard.clone())
            .issuer(demo.issuer.clone())
            .store(MemoryStore::new())
            .accounts(accounts::PlainAccounts::new(&[("alice", "pw")]))
            .factors(demo.factors.clone())
            .sent_code_digits(digits)
            .build()
    };
    for ok in 6..=8 {
        assert!(build(ok).is_ok(), "{ok}");
    }
    for bad in [0, 5, 9] {
        let err = build(bad).err().unwrap().to_string();
        assert!(err.contains("sent_code_digits"), "{bad}: {err}");
    }
}

/// The test route exists only with `STEPUP_TEST_ROUTES=1`: without it, the path is an
/// ordinary authenticated route the demo does not serve.
#[tokio::test]
async fn the_last_code_route_exists_only_with_the_test_flag() {
    let on = server().await;
    assert_eq!(get(&on, "/test/last-code/bob", None).await.status, 404);
    let off = server_with(demo_config::demo_config(MAX_ATTEMPTS)).await;
    let partial = login(&off).await;
    assert_eq!(send(&off, &partial, "email").await.status, 204);
    let r = get(&off, "/test/last-code/alice", None).await;
    assert_error(&r, 401, "unauthorized");
    let code = off.sender.last_code("alice").unwrap();
    let verified = verify(&off, &partial, &code).await;
    let access = verified.json()["access_token"].as_str().unwrap().to_owned();
    let r = get(&off, "/test/last-code/alice", Some(&access)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!r.text().contains(code.as_str()));
}
