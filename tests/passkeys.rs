//! Passkeys over HTTP (DESIGN §8.4): the demo on a loopback port, a reqwest client, and
//! software authenticators (`support/authenticator.rs`) that answer the demo's options
//! as a browser would, honestly or not.
//!
//! Registration needs a recent second factor (alice signs in with TOTP first); then a
//! passkey signs her in as the second factor and steps her up to `/api/admin`, the
//! phishing-resistant route. Every refused ceremony is a 4xx and gives no tokens.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use tower_stepup::complete::Factors;
use tower_stepup::factor::passkey::StoredPasskey;
use tower_stepup::factor::totp;
use tower_stepup::store::MemoryStore;
use tower_stepup::ManualClock;

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/authenticator.rs"]
mod authenticator;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/reply.rs"]
mod reply;

use authenticator::{Ceremony, SoftAuthenticator};
use demo_app::{serve, Demo, Http, Served};
use demo_config::DEMO_WEBAUTHN_ORIGIN as ORIGIN;
use reply::Reply;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

/// The demo on its own port and clock, and a client.
struct Server {
    http: Http,
    demo: Demo,
    _served: Served,
}

async fn start() -> Server {
    let config = demo_config::demo_config(5);
    let demo = Demo::build(&config, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let served = serve(demo.router.clone(), "127.0.0.1:0").await;
    Server {
        http: Http::to(&served),
        demo,
        _served: served,
    }
}

impl Server {
    /// alice signed in with her TOTP code: her access token.
    async fn alice_with_totp(&self) -> String {
        let partial = self.login("alice").await.str("partial_token");
        let now = self.demo.now();
        let code = totp::code_at(&self.demo.alice, totp::step_at(now));
        let body = json!({"mfa_token": partial, "code": code});
        let r = self.post("/auth/mfa/verify", &body, None).await;
        r.expect_ok();
        self.demo.clock.advance(30);
        r.str("access_token")
    }

    /// Registers a passkey with `auth` for the holder of `access`: its id.
    async fn register(&self, access: &str, auth: &mut SoftAuthenticator) -> String {
        let start = self
            .post("/auth/passkey/register/start", &json!({}), Some(access))
            .await;
        start.expect_ok();
        let credential = auth
            .register(&start.body)
            .await
            .expect("the authenticator registers");
        let body = json!({
            "registration_id": start.str("registration_id"),
            "credential": credential,
            "name": "test key",
        });
        let finish = self
            .post("/auth/passkey/register/finish", &body, Some(access))
            .await;
        finish.expect_ok();
        finish.str("passkey_id")
    }

    /// The request options for `token` (a partial token or an mfa_token).
    async fn challenge(&self, token: &str) -> Value {
        let r = self
            .post(
                "/auth/passkey/challenge",
                &json!({"mfa_token": token}),
                None,
            )
            .await;
        r.expect_ok();
        r.body
    }

    /// `key`'s assertion for a challenge asked now for `token`.
    async fn assertion(&self, key: &mut SoftAuthenticator, token: &str) -> Value {
        let options = self.challenge(token).await;
        key.authenticate(&options)
            .await
            .expect("the authenticator answers")
    }

    /// A verify of `token` with a passkey assertion.
    async fn verify_passkey(&self, token: &str, assertion: &Value) -> Reply {
        let body = json!({"mfa_token": token, "passkey": assertion});
        self.post("/auth/mfa/verify", &body, None).await
    }
}

impl std::ops::Deref for Server {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn amr(token: &str) -> Vec<String> {
    serde_json::from_value(claims(token)["amr"].clone()).unwrap()
}

/// No tokens in a refusal.
fn assert_no_session(r: &Reply, what: &str) {
    assert!(
        r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(),
        "{what}: {}",
        r.body
    );
    assert!(
        r.status.is_client_error(),
        "{what}: {} {}",
        r.status,
        r.body
    );
}

#[tokio::test]
async fn a_passkey_signs_in_and_steps_up_to_the_phishing_resistant_route() {
    let s = start().await;
    let totp_access = s.alice_with_totp().await;
    // A TOTP session is not phishing-resistant: /api/admin asks for a passkey, which
    // alice must enroll first.
    let denied = s.get("/api/admin", Some(&totp_access)).await;
    denied.expect(403, "mfa_required");
    assert_eq!(
        denied.body["mfa_requirements"],
        json!({"enroll": [{"type": "passkey"}]})
    );

    let mut key = SoftAuthenticator::hwk(ORIGIN);
    let passkey_id = s.register(&totp_access, &mut key).await;
    assert_eq!(passkey_id.len(), 32, "{passkey_id}");

    // Registration ended her other sessions; she signs in again, now offered both.
    let login = s.login("alice").await;
    assert_eq!(
        login.body["mfa_requirements"],
        json!({"challenge": [{"type": "passkey"}, {"type": "otp"}, {"type": "email"}]})
    );
    let partial = login.str("partial_token");
    let options = s.challenge(&partial).await;
    assert_eq!(
        options["publicKey"]["userVerification"], "required",
        "{options}"
    );
    let assertion = key.authenticate(&options).await.unwrap();
    let signed_in = s.verify_passkey(&partial, &assertion).await;
    signed_in.expect_ok();
    let access = signed_in.str("access_token");
    let a = amr(&access);
    assert!(
        a.contains(&"hwk".to_owned()) && a.contains(&"mfa".to_owned()),
        "{a:?}"
    );
    assert_eq!(claims(&access)["acr"], "phrh");
    s.get("/api/admin", Some(&access)).await.expect_ok();

    // A TOTP step-up after it sets the level back: /api/admin asks for the passkey.
    let totp_only = s.alice_with_totp().await;
    let denied = s.get("/api/admin", Some(&totp_only)).await;
    denied.expect(403, "mfa_required");
    assert_eq!(
        denied.body["mfa_requirements"],
        json!({"challenge": [{"type": "passkey"}]})
    );
    let mfa_token = denied.str("mfa_token");
    let assertion = s.assertion(&mut key, &mfa_token).await;
    let body = json!({"mfa_token": mfa_token, "passkey": assertion});
    let stepped = s.post("/auth/mfa/verify", &body, Some(&totp_only)).await;
    stepped.expect_ok();
    let stepped_access = stepped.str("access_token");
    assert_eq!(
        claims(&stepped_access)["sid"],
        claims(&totp_only)["sid"],
        "same session"
    );
    s.get("/api/admin", Some(&stepped_access)).await.expect_ok();
}

#[tokio::test]
async fn a_synced_passkey_is_swk_and_phr() {
    let s = start().await;
    let access = s.alice_with_totp().await;
    let mut key = SoftAuthenticator::swk(ORIGIN);
    s.register(&access, &mut key).await;
    let partial = s.login("alice").await.str("partial_token");
    let assertion = s.assertion(&mut key, &partial).await;
    let r = s.verify_passkey(&partial, &assertion).await;
    r.expect_ok();
    let access = r.str("access_token");
    assert!(
        amr(&access).contains(&"swk".to_owned()),
        "{:?}",
        amr(&access)
    );
    assert_eq!(claims(&access)["acr"], "phr");
    s.get("/api/admin", Some(&access)).await.expect_ok();
}

#[tokio::test]
async fn refused_ceremonies_are_4xx_and_open_no_session() {
    let s = start().await;
    let access = s.alice_with_totp().await;
    let mut key = SoftAuthenticator::hwk(ORIGIN);
    s.register(&access, &mut key).await;
    let cases = [
        ("wrong origin", Ceremony::at_origin("http://localhost:9999")),
        ("wrong RP ID", Ceremony::with_rp_id("example.com")),
        (
            "no user verification",
            Ceremony::without_user_verification(),
        ),
    ];
    for (what, how) in cases {
        let partial = s.login("alice").await.str("partial_token");
        let options = s.challenge(&partial).await;
        let assertion = key.authenticate_with(&options, &how).await;
        let assertion = assertion.unwrap_or_else(|e| panic!("{what}: {e}"));
        let r = s.verify_passkey(&partial, &assertion).await;
        assert_no_session(&r, what);
        assert_eq!(
            r.error(),
            "invalid_code",
            "{what}: a failed ceremony is a wrong proof"
        );
    }
    // Three wrong proofs counted: two attempts are left of the demo's five.
    let partial = s.login("alice").await.str("partial_token");
    let wrong = s
        .post(
            "/auth/mfa/verify",
            &json!({"mfa_token": partial, "code": "000000"}),
            None,
        )
        .await;
    assert_eq!(wrong.body["attempts_remaining"], 1, "{}", wrong.body);
}

#[tokio::test]
async fn an_assertion_works_once_and_for_its_own_token_only() {
    let s = start().await;
    let access = s.alice_with_totp().await;
    let mut key = SoftAuthenticator::hwk(ORIGIN);
    s.register(&access, &mut key).await;
    let first = s.login("alice").await.str("partial_token");
    let assertion = s.assertion(&mut key, &first).await;
    // Another token's challenge is pending now: the assertion does not answer it.
    let second = s.login("alice").await.str("partial_token");
    let second_options = s.challenge(&second).await;
    let r = s.verify_passkey(&second, &assertion).await;
    assert_no_session(&r, "an assertion for another token");
    let r = s.verify_passkey(&first, &assertion).await;
    assert_no_session(&r, "its challenge was replaced by the newer one");
    // The newer challenge, answered, works once.
    let assertion = key.authenticate(&second_options).await.unwrap();
    s.verify_passkey(&second, &assertion).await.expect_ok();
    let replay = s.verify_passkey(&second, &assertion).await;
    assert_no_session(&replay, "a replayed assertion");
    replay.expect(404, "mfa_token_not_found");
}

#[tokio::test]
async fn another_users_passkey_and_a_cloned_counter_are_refused() {
    let s = start().await;
    // bob has no second factor: a fresh sign-in lets him register a passkey.
    let bob = s.login("bob").await;
    bob.expect_ok();
    let mut bobs_key = SoftAuthenticator::swk(ORIGIN);
    s.register(&bob.str("access_token"), &mut bobs_key).await;
    let access = s.alice_with_totp().await;
    let mut key = SoftAuthenticator::swk_with_counter(ORIGIN);
    s.register(&access, &mut key).await;

    let partial = s.login("alice").await.str("partial_token");
    let mut options = s.challenge(&partial).await;
    // A browser that ignores allowCredentials: bob's key answers alice's challenge.
    let bobs = Factors::factors(&*s.demo.factors, "bob").await.unwrap();
    let bobs = StoredPasskey::from_bytes(bobs[0].data.as_bytes()).unwrap();
    let bobs_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bobs.credential_id());
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": bobs_id}]);
    let assertion = bobs_key.authenticate(&options).await;
    let assertion = assertion.unwrap_or_else(|e| panic!("bob's key answers: {e}"));
    let r = s.verify_passkey(&partial, &assertion).await;
    assert_no_session(&r, "bob's passkey for alice");

    // A clone of alice's authenticator falls behind the counter the server saw.
    let clone = key.fork();
    let partial = s.login("alice").await.str("partial_token");
    let assertion = s.assertion(&mut key, &partial).await;
    s.verify_passkey(&partial, &assertion).await.expect_ok();
    let mut clone = clone;
    let partial = s.login("alice").await.str("partial_token");
    let assertion = s.assertion(&mut clone, &partial).await;
    let r = s.verify_passkey(&partial, &assertion).await;
    assert_no_session(&r, "a counter that went back");
}

#[tokio::test]
async fn registration_needs_a_recent_second_factor_and_is_finished_once() {
    let s = start().await;
    let access = s.alice_with_totp().await;
    s.demo.clock.advance(301);
    let stale = s
        .post("/auth/passkey/register/start", &json!({}), Some(&access))
        .await;
    stale.expect(403, "mfa_required");
    assert!(stale.body.get("publicKey").is_none(), "{}", stale.body);

    let access = s.alice_with_totp().await;
    let mut key = SoftAuthenticator::hwk(ORIGIN);
    let start = s
        .post("/auth/passkey/register/start", &json!({}), Some(&access))
        .await;
    start.expect_ok();
    let credential = key.register(&start.body).await.unwrap();
    let body = json!({"registration_id": start.str("registration_id"), "credential": credential});
    s.post("/auth/passkey/register/finish", &body, Some(&access))
        .await
        .expect_ok();
    let again = s
        .post("/auth/passkey/register/finish", &body, Some(&access))
        .await;
    again.expect(400, "invalid_request");
    let factors = Factors::factors(&*s.demo.factors, "alice").await.unwrap();
    let passkeys = factors.iter().filter(|f| f.kind == "passkey").count();
    assert_eq!(passkeys, 1, "one finish, one passkey");
}

/// Factors are interchangeable under one attempt count: wrong codes, wrong recovery codes
/// and refused passkey ceremonies add up to one lockout, which then refuses a right
/// passkey too.
#[tokio::test]
async fn wrong_proofs_of_every_factor_share_one_lockout() {
    let s = start().await;
    let access = s.alice_with_totp().await;
    let mut key = SoftAuthenticator::hwk(ORIGIN);
    s.register(&access, &mut key).await;
    let partial = s.login("alice").await.str("partial_token");
    let wrong = |field: &str, value: &str| json!({"mfa_token": partial, field: value});
    let mut remaining = Vec::new();
    for body in [
        wrong("code", "000000"),
        wrong("recovery_code", "AAAA-AAAA-AAAA-AAAA"),
        wrong("code", "111111"),
        wrong("recovery_code", "BBBB-BBBB-BBBB-BBBB"),
    ] {
        let r = s.post("/auth/mfa/verify", &body, None).await;
        r.expect(401, "invalid_code");
        remaining.push(r.body["attempts_remaining"].clone());
    }
    assert_eq!(remaining, [json!(4), json!(3), json!(2), json!(1)]);
    // The fifth, a passkey signed for another origin, locks alice out.
    let options = s.challenge(&partial).await;
    let how = Ceremony::at_origin("http://localhost:9999");
    let forged = key.authenticate_with(&options, &how).await.unwrap();
    let r = s.verify_passkey(&partial, &forged).await;
    r.expect(429, "too_many_attempts");
    // Now even her real passkey is refused until the lockout ends.
    let partial = s.login("alice").await.str("partial_token");
    let assertion = s.assertion(&mut key, &partial).await;
    let r = s.verify_passkey(&partial, &assertion).await;
    r.expect(429, "too_many_attempts");
    assert_no_session(&r, "locked out");
}
