//! Audit events: every decision writes exactly one event with the documented fields, the
//! counters follow, and nothing secret is ever in an event — in any event of the crate,
//! at any level.
//!
//! The demo router runs in-process on a current-thread runtime, so the events of the
//! test's thread (`support/log_capture.rs`: one global subscriber, a watch per test) are
//! everything the crate emits while a test drives it. The counters are process-wide: the
//! tests of this file take one lock so that deltas are exact.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use tower_stepup::audit::{self, Action, Outcome};
use tower_stepup::complete::TotpFactor;
use tower_stepup::factor::recovery;
use tower_stepup::factor::totp::TotpSecret;
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::{Grant, ManualClock};

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/dpop.rs"]
mod dpop;
#[path = "support/failing_store.rs"]
mod failing_store;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/reply.rs"]
mod reply;

use log_capture::{Captured, Watch};

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

// ---------------------------------------------------------------------------------------
// The demo, in-process
// ---------------------------------------------------------------------------------------

/// The shared demo (`support/demo_app.rs`), alice with recovery codes too.
struct Demo {
    app: demo_app::Demo,
    recovery_codes: Vec<String>,
}

impl std::ops::Deref for Demo {
    type Target = demo_app::Demo;

    fn deref(&self) -> &demo_app::Demo {
        &self.app
    }
}

fn demo_on(store: Arc<dyn Store>) -> Demo {
    log_capture::install();
    let app = demo_app::Demo::build(&demo_config::demo_config(3), ManualClock::new(T0), store);
    let (codes, hashes) = recovery::generate().unwrap();
    app.factors
        .insert("alice", TotpFactor::new(app.alice.clone(), hashes));
    Demo {
        app,
        recovery_codes: codes,
    }
}

fn demo() -> Demo {
    demo_on(Arc::new(MemoryStore::new()))
}

impl Demo {
    fn code(&self) -> String {
        codes::code_now(&self.alice, self.now())
    }

    /// A six-digit code the server cannot accept now (none of the steps around now).
    fn wrong(&self) -> String {
        codes::wrong_code(&self.alice, self.now())
    }

    /// Moves to the next TOTP step (a new code).
    fn next_step(&self) {
        self.clock.advance(30);
    }
}

fn short_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[track_caller]
fn assert_event(
    e: &Captured,
    event: Action,
    outcome: Outcome,
    reason: Option<&str>,
    sub: Option<&str>,
) {
    assert_eq!(e.field("event"), Some(event.as_str()), "{e:#?}");
    assert_eq!(e.field("outcome"), Some(outcome.as_str()), "{e:#?}");
    assert_eq!(e.field("reason"), reason, "{e:#?}");
    assert_eq!(e.field("sub"), sub, "{e:#?}");
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn every_decision_emits_one_audit_event() {
    let _serial = serial().await;
    let capture = log_capture::watch();
    let d = demo();

    // Login: a wrong password, no username in the event.
    let r = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "nope"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let e = d_one(&capture);
    assert_event(
        &e,
        Action::Login,
        Outcome::Failed,
        Some("invalid_credentials"),
        None,
    );
    assert_eq!(e.level, tracing::Level::INFO);
    assert_eq!(e.field("token_hash"), None);

    // Login without a factor: a session at once.
    let r = d
        .post(
            "/auth/login",
            json!({"username": "bob", "password": "bob-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = capture.one();
    assert_event(
        &e,
        Action::Login,
        Outcome::Ok,
        Some("no_second_factor"),
        Some("bob"),
    );
    assert_eq!(
        e.field("token_hash"),
        Some(short_hash(&r.str("access_token")).as_str())
    );

    // Login with a factor: a partial token, and its hash in the event.
    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let partial = login.str("partial_token");
    let e = capture.one();
    assert_event(&e, Action::Login, Outcome::MfaRequired, None, Some("alice"));
    let partial_hash = short_hash(&partial);
    assert_eq!(e.field("token_hash"), Some(partial_hash.as_str()));

    // The partial token outside the verify endpoint: a refusal by the layer, at debug.
    let r = d.get("/api/me", Some(&partial)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let e = capture.one();
    assert_event(
        &e,
        Action::Access,
        Outcome::Denied,
        Some("partial_token"),
        Some("alice"),
    );
    assert_eq!(e.level, tracing::Level::DEBUG);
    assert_eq!(e.field("token_hash"), Some(partial_hash.as_str()));

    // No credential, a forged one.
    assert_eq!(
        d.get("/api/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_event(
        &capture.one(),
        Action::Access,
        Outcome::Denied,
        Some("missing_credential"),
        None,
    );
    // The signature's first character changed: well-formed, wrongly signed.
    let (signed, signature) = partial.rsplit_once('.').unwrap();
    let other = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{other}{}", &signature[1..]);
    assert_eq!(
        d.get("/api/me", Some(&forged)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_event(
        &capture.one(),
        Action::Access,
        Outcome::Denied,
        Some("bad_signature"),
        None,
    );

    // A wrong code, then the right one: verify failed, verify ok; the token hash ties
    // both to the login.
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.wrong()}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let e = capture.one();
    assert_event(
        &e,
        Action::Verify,
        Outcome::Failed,
        Some("wrong_code"),
        Some("alice"),
    );
    assert_eq!(e.field("token_hash"), Some(partial_hash.as_str()));
    let session = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.code()}),
            None,
        )
        .await;
    assert_eq!(session.status, StatusCode::OK, "{}", session.body);
    let e = capture.one();
    assert_event(&e, Action::Verify, Outcome::Ok, Some("otp"), Some("alice"));
    assert_eq!(e.field("token_hash"), Some(partial_hash.as_str()));
    let access = session.str("access_token");
    let refresh = session.str("refresh_token");

    // The partial token again: already used.
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.code()}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_event(
        &capture.one(),
        Action::Verify,
        Outcome::Failed,
        Some("token_used"),
        Some("alice"),
    );

    // A request the layer lets through is not an event.
    assert_eq!(d.get("/api/me", Some(&access)).await.status, StatusCode::OK);
    assert_eq!(capture.audit().len(), 0);

    // Step-up: the challenge is an event with the mfa_token's hash, its verify another.
    d.clock.advance(301);
    let r = d.get("/api/billing", Some(&access)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mfa_token = r.str("mfa_token");
    let e = capture.one();
    assert_event(
        &e,
        Action::StepUp,
        Outcome::Issued,
        Some("max_age"),
        Some("alice"),
    );
    assert_eq!(e.field("token_hash"), Some(short_hash(&mfa_token).as_str()));
    d.next_step();
    let stepped = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": mfa_token, "code": d.code()}),
            Some(&access),
        )
        .await;
    assert_eq!(stepped.status, StatusCode::OK, "{}", stepped.body);
    let e = capture.one();
    assert_event(&e, Action::Verify, Outcome::Ok, Some("otp"), Some("alice"));
    assert_eq!(e.field("token_hash"), Some(short_hash(&mfa_token).as_str()));

    // Refresh, then reuse of the rotated token: ok, then reuse detected at warn.
    let stepped_refresh = stepped.str("refresh_token");
    let r = d
        .post(
            "/auth/refresh",
            json!({"refresh_token": stepped_refresh}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = capture.one();
    assert_event(&e, Action::Refresh, Outcome::Ok, None, Some("alice"));
    assert_eq!(
        e.field("token_hash"),
        Some(short_hash(&stepped_refresh).as_str())
    );
    let r = d
        .post(
            "/auth/refresh",
            json!({"refresh_token": stepped_refresh}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = capture.one();
    assert_event(
        &e,
        Action::Refresh,
        Outcome::ReuseDetected,
        Some("refresh_token_reused"),
        Some("alice"),
    );
    assert_eq!(e.level, tracing::Level::WARN);
    // The first session was replaced by the step-up: its refresh token is dead.
    let r = d
        .post("/auth/refresh", json!({"refresh_token": refresh}), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_event(
        &capture.one(),
        Action::Refresh,
        Outcome::Failed,
        Some("invalid_grant"),
        None,
    );

    // Logout.
    let fresh = d
        .post(
            "/auth/login",
            json!({"username": "bob", "password": "bob-password"}),
            None,
        )
        .await;
    capture.audit();
    let r = d
        .post(
            "/auth/logout",
            json!({"refresh_token": fresh.str("refresh_token")}),
            Some(&fresh.str("access_token")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_event(
        &capture.one(),
        Action::Logout,
        Outcome::Ok,
        None,
        Some("bob"),
    );

    // A recovery code.
    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    capture.audit();
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": login.str("partial_token"), "recovery_code": d.recovery_codes[0]}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_event(
        &capture.one(),
        Action::Verify,
        Outcome::Ok,
        Some("recovery_code"),
        Some("alice"),
    );

    // Malformed input is an event too (no user known).
    let r = d
        .post("/auth/mfa/verify", json!({"code": "123456"}), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_event(
        &capture.one(),
        Action::Verify,
        Outcome::Failed,
        Some("invalid_request"),
        None,
    );
}

/// `capture.one()`, kept apart so the first assertion names the helper in a failure.
#[track_caller]
fn d_one(capture: &Watch) -> Captured {
    capture.one()
}

#[tokio::test(flavor = "current_thread")]
async fn lockout_and_replay_events() {
    let _serial = serial().await;
    let capture = log_capture::watch();
    let d = demo();

    // A code accepted once, replayed on a second challenge: code_replayed.
    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    let code = d.code();
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": login.str("partial_token"), "code": code}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    let partial = login.str("partial_token");
    capture.audit();
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": code}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_event(
        &capture.one(),
        Action::Verify,
        Outcome::Failed,
        Some("code_replayed"),
        Some("alice"),
    );

    // Two more wrong codes exhaust the 3 attempts: the last one is a lockout, at warn.
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.wrong()}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_event(
        &capture.one(),
        Action::Verify,
        Outcome::Failed,
        Some("wrong_code"),
        Some("alice"),
    );
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.wrong()}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let e = capture.one();
    assert_event(
        &e,
        Action::Verify,
        Outcome::Lockout,
        Some("wrong_code"),
        Some("alice"),
    );
    assert_eq!(e.level, tracing::Level::WARN);

    // While locked out, even a right code on a new challenge is refused: locked_out.
    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    capture.audit();
    d.next_step();
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": login.str("partial_token"), "code": d.code()}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_event(
        &capture.one(),
        Action::Verify,
        Outcome::Failed,
        Some("locked_out"),
        Some("alice"),
    );
}

#[tokio::test(flavor = "current_thread")]
async fn store_failure_is_an_error_event() {
    let _serial = serial().await;
    let capture = log_capture::watch();
    let d = demo_on(Arc::new(failing_store::FailingStore::new()));

    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    let e = capture.one();
    assert_event(
        &e,
        Action::Login,
        Outcome::Error,
        Some("temporarily_unavailable"),
        None,
    );
    let partial = d
        .issuer
        .issue_partial(&Grant::new("alice").amr(["pwd"]))
        .unwrap()
        .token;
    let r = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.code()}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let e = capture.one();
    assert_event(
        &e,
        Action::Verify,
        Outcome::Error,
        Some("temporarily_unavailable"),
        Some("alice"),
    );
    assert_eq!(e.level, tracing::Level::ERROR);
}

#[tokio::test(flavor = "current_thread")]
async fn audit_counters_count_outcomes() {
    let _serial = serial().await;
    let d = demo();
    let before = audit::counters();

    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    d.post(
        "/auth/login",
        json!({"username": "alice", "password": "x"}),
        None,
    )
    .await;
    d.post(
        "/auth/login",
        json!({"username": "mallory", "password": "x"}),
        None,
    )
    .await;
    let partial = login.str("partial_token");
    for _ in 0..3 {
        d.post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": d.wrong()}),
            None,
        )
        .await;
    }
    d.get("/api/me", None).await;

    let after = audit::counters();
    let delta = |e, o| after.get(e, o) - before.get(e, o);
    assert_eq!(delta(Action::Login, Outcome::MfaRequired), 1);
    assert_eq!(delta(Action::Login, Outcome::Failed), 2);
    assert_eq!(delta(Action::Verify, Outcome::Failed), 2);
    assert_eq!(delta(Action::Verify, Outcome::Lockout), 1);
    assert_eq!(delta(Action::Verify, Outcome::Ok), 0);
    assert_eq!(delta(Action::Access, Outcome::Denied), 1);
    assert!(after
        .iter()
        .any(|(e, o, n)| e == Action::Verify && o == Outcome::Lockout && n >= 1));
}

/// Everything the crate emits while the whole flow runs — every event, every field, at
/// every level, whatever the target — is searched for every secret that flowed.
#[tokio::test(flavor = "current_thread")]
async fn audit_events_hold_no_secret() {
    let _serial = serial().await;
    let capture = log_capture::watch();
    let d = demo();
    let mut secrets: Vec<String> = vec![
        "alice-password".into(),
        "bob-password".into(),
        "wrong-password-typed-as-username".into(),
        demo_config::ALICE_SECRET.into(),
    ];
    secrets.extend(d.recovery_codes.iter().cloned());

    // A password typed into the username field.
    d.post(
        "/auth/login",
        json!({"username": "wrong-password-typed-as-username", "password": "x"}),
        None,
    )
    .await;
    let login = d
        .post(
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
            None,
        )
        .await;
    let partial = login.str("partial_token");
    secrets.push(partial.clone());
    let wrong = d.wrong();
    d.post(
        "/auth/mfa/verify",
        json!({"mfa_token": partial, "code": wrong}),
        None,
    )
    .await;
    secrets.push(wrong);
    let code = d.code();
    secrets.push(code.clone());
    let session = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": partial, "code": code}),
            None,
        )
        .await;
    let access = session.str("access_token");
    let refresh = session.str("refresh_token");
    secrets.extend([access.clone(), refresh.clone()]);
    d.clock.advance(301);
    let challenge = d.get("/api/billing", Some(&access)).await;
    let mfa_token = challenge.str("mfa_token");
    secrets.push(mfa_token.clone());
    d.next_step();
    let stepped = d
        .post(
            "/auth/mfa/verify",
            json!({"mfa_token": mfa_token, "recovery_code": d.recovery_codes[1]}),
            Some(&access),
        )
        .await;
    assert_eq!(stepped.status, StatusCode::OK, "{}", stepped.body);
    let refreshed = d
        .post(
            "/auth/refresh",
            json!({"refresh_token": stepped.str("refresh_token")}),
            None,
        )
        .await;
    secrets.extend([
        stepped.str("access_token"),
        stepped.str("refresh_token"),
        refreshed.str("access_token"),
        refreshed.str("refresh_token"),
    ]);
    d.post(
        "/auth/refresh",
        json!({"refresh_token": stepped.str("refresh_token")}),
        None,
    )
    .await;
    d.post(
        "/auth/logout",
        json!({"refresh_token": refreshed.str("refresh_token")}),
        Some(&refreshed.str("access_token")),
    )
    .await;
    // Enrollment: the new secret and the recovery codes it shows once.
    let bob = d
        .post(
            "/auth/login",
            json!({"username": "bob", "password": "bob-password"}),
            None,
        )
        .await;
    let bob_access = bob.str("access_token");
    secrets.push(bob_access.clone());
    let enroll = d
        .post("/auth/mfa/enroll", json!({}), Some(&bob_access))
        .await;
    assert_eq!(enroll.status, StatusCode::OK, "{}", enroll.body);
    let bob_secret = TotpSecret::from_base32(&enroll.str("secret")).unwrap();
    secrets.push(enroll.str("secret"));
    d.post(
        "/auth/mfa/enroll/confirm",
        json!({"code": codes::wrong_code(&bob_secret, d.now())}),
        Some(&bob_access),
    )
    .await;
    let bob_code = codes::code_now(&bob_secret, d.now());
    secrets.push(bob_code.clone());
    let confirmed = d
        .post(
            "/auth/mfa/enroll/confirm",
            json!({"code": bob_code}),
            Some(&bob_access),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    secrets.extend(
        confirmed.body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned()),
    );
    // Keys, in the forms a careless log line would use.
    // The Ed25519 seed derived from the signing secret is the private key.
    let seed = app::signing_seed(&demo_config::SIGNING_KEY);
    for key in [demo_config::SIGNING_KEY, demo_config::SEALING_KEY, seed] {
        secrets.push(hex(&key));
        secrets.push(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            key,
        ));
    }

    let events = capture.take();
    let audit_events: Vec<_> = events
        .iter()
        .filter(|e| e.target == audit::TARGET)
        .collect();
    // 13 requests, and the `factor_enrolled` event of bob's confirmation.
    assert_eq!(audit_events.len(), 14, "{audit_events:#?}");
    for event in &events {
        for (name, value) in &event.fields {
            for secret in &secrets {
                // Codes are 6 digits: look for them as whole field values or words.
                let leaked = if secret.len() <= 8 {
                    value == secret
                        || value
                            .split(|c: char| !c.is_ascii_alphanumeric())
                            .any(|w| w == secret)
                } else {
                    value.contains(secret.as_str())
                };
                assert!(!leaked, "field `{name}` of {event:#?} holds a secret");
            }
        }
        // Only documented fields in audit events.
        if event.target == audit::TARGET {
            for name in event.fields.keys() {
                assert!(
                    ["message", "event", "outcome", "reason", "sub", "token_hash"]
                        .contains(&name.as_str()),
                    "undocumented field `{name}` in {event:#?}"
                );
            }
            if let Some(h) = event.field("token_hash") {
                assert_eq!(h.len(), 16);
                assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "metrics")]
mod metrics_facade {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Counts(Mutex<BTreeMap<String, u64>>);

    struct One(Arc<Counts>, String);

    impl CounterFn for One {
        fn increment(&self, value: u64) {
            *self.0 .0.lock().unwrap().entry(self.1.clone()).or_default() += value;
        }
        fn absolute(&self, value: u64) {
            self.0 .0.lock().unwrap().insert(self.1.clone(), value);
        }
    }

    struct Rec(Arc<Counts>);

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(One(self.0.clone(), name)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn audit_outcomes_reach_the_metrics_facade() {
        let _serial = serial().await;
        let counts = Arc::new(Counts::default());
        metrics::set_global_recorder(Rec(counts.clone())).unwrap();
        let d = demo();
        d.post(
            "/auth/login",
            json!({"username": "alice", "password": "x"}),
            None,
        )
        .await;
        d.post(
            "/auth/login",
            json!({"username": "alice", "password": "x"}),
            None,
        )
        .await;
        d.get("/api/me", None).await;
        let counts = counts.0.lock().unwrap();
        assert_eq!(
            counts.get(&format!("{}{{event=login,outcome=failed}}", audit::METRIC)),
            Some(&2),
            "{counts:?}"
        );
        assert_eq!(
            counts.get(&format!("{}{{event=access,outcome=denied}}", audit::METRIC)),
            Some(&1),
            "{counts:?}"
        );
    }
}

/// A `GET path` of the demo in process, `Authorization: <scheme> <token>`, with a `DPoP`
/// proof when given.
async fn dpop_get(
    d: &Demo,
    path: &str,
    scheme: &str,
    token: &str,
    proof: Option<&str>,
) -> reply::Reply {
    let mut req = http::Request::get(path).header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    d.send(req.body(axum::body::Body::empty()).unwrap()).await
}

#[tokio::test(flavor = "current_thread")]
async fn dpop_refusals_are_audited_by_reason_without_the_proof_or_the_token() {
    let _serial = serial().await;
    let capture = log_capture::watch();
    let d = demo();
    let key = dpop::Key::es256(3);
    let base = demo_config::DEMO_PUBLIC_URL;
    let login_proof = key.proof("POST", &format!("{base}/auth/login"), None, d.now());
    let req = http::Request::post("/auth/login")
        .header("content-type", "application/json")
        .header("dpop", &login_proof)
        .body(axum::body::Body::from(
            json!({"username": "bob", "password": "bob-password"}).to_string(),
        ))
        .unwrap();
    let r = d.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    let token = r.str("access_token");
    let e = capture.one();
    assert_event(
        &e,
        Action::Login,
        Outcome::Ok,
        Some("no_second_factor"),
        Some("bob"),
    );

    let url = format!("{base}/api/me");
    let proof = key.proof("GET", &url, Some(&token), d.now());
    let r = dpop_get(&d, "/api/me", "DPoP", &token, Some(&proof)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A pass is not an audit event of the layer.
    assert!(capture.audit().is_empty());

    let refusals = [
        ("Bearer", None, "dpop_bound_token_without_proof"),
        ("DPoP", Some(proof.clone()), "dpop_proof_replayed"),
        (
            "DPoP",
            Some(key.proof("POST", &url, Some(&token), d.now())),
            "invalid_dpop_proof",
        ),
    ];
    for (scheme, proof, reason) in refusals {
        let r = dpop_get(&d, "/api/me", scheme, &token, proof.as_deref()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{reason}: {}", r.body);
        let e = capture.one();
        assert_event(
            &e,
            Action::Access,
            Outcome::Denied,
            Some(reason),
            Some("bob"),
        );
        for (name, value) in &e.fields {
            assert!(!value.contains(&token), "{reason}: the token in {name}");
            for p in [&login_proof, &proof.clone().unwrap_or_default()] {
                assert!(
                    p.is_empty() || !value.contains(p.as_str()),
                    "{reason}: a proof in {name}"
                );
            }
        }
    }
}
