//! Users manage their factors (DESIGN §8.4, issue 18), over real sockets: the demo app
//! (`examples/axum_app/app.rs`) on `127.0.0.1:0`, on a [`ManualClock`] the tests move,
//! and reqwest.
//!
//! `GET /auth/factors` lists the caller's factors by type, never their data; `PATCH
//! /auth/factors/{id}` names one; `DELETE /auth/factors/{id}` removes one after a recent
//! second factor, never another user's, never the last that signs in (unless the
//! application allows accounts without MFA), also when two removals race; `POST
//! /auth/mfa/recovery-codes` replaces the recovery codes, and the old ones stop working.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CACHE_CONTROL;
use reqwest::Method;
use serde_json::{json, Value};
use tower_stepup::audit::{self, Action, Outcome};
use tower_stepup::complete::{Factors, MemoryFactors};
use tower_stepup::factor::stored::kind;
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::factor::{FactorData, StoredFactor};
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::ManualClock;

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/reply.rs"]
mod reply;

use demo_app::{serve, Demo, Http, Served};
use hooked_store::{Call, CallResult, HookFuture, HookedStore, StoreHook};
use reply::Reply;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

/// The demo's store, whose `devices_clear` (the first step of a change of factors, after
/// a removal's check and before the removal) waits, while armed, until two callers are
/// there: two removals then both pass their check before either removes.
struct Gate {
    armed: AtomicBool,
    barrier: tokio::sync::Barrier,
}

impl StoreHook for Gate {
    fn before<'a>(
        &'a self,
        _: &'a dyn Store,
        call: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        Box::pin(async move {
            if matches!(call, Call::DevicesClear { .. }) && self.armed.load(Ordering::SeqCst) {
                // Not a clock: a bound on how long a missing caller is waited for.
                let _ = tokio::time::timeout(Duration::from_secs(5), self.barrier.wait()).await;
            }
            None
        })
    }
}

/// The demo on its own port and clock, and a client.
struct Server {
    http: Http,
    clock: ManualClock,
    alice: TotpSecret,
    factors: Arc<MemoryFactors>,
    store: Arc<HookedStore<Gate>>,
    _served: Served,
}

/// One signed-in session, as its client holds it.
#[derive(Clone, Debug)]
struct Session {
    access: String,
    refresh: String,
}

async fn start_with(allow_accounts_without_mfa: bool) -> Server {
    let mut config = demo_config::demo_config(5);
    config.allow_accounts_without_mfa = allow_accounts_without_mfa;
    let gate = Gate {
        armed: AtomicBool::new(false),
        barrier: tokio::sync::Barrier::new(2),
    };
    let store = Arc::new(HookedStore::with_hook(Arc::new(MemoryStore::new()), gate));
    let demo = Demo::build(&config, ManualClock::new(T0), store.clone());
    // The demo gives alice an email factor too; these tests choose her factors.
    for f in Factors::factors(&*demo.factors, "alice").await.unwrap() {
        if f.kind == kind::EMAIL {
            Factors::remove_factor(&*demo.factors, "alice", &f.id)
                .await
                .unwrap();
        }
    }
    let served = serve(demo.router.clone(), "127.0.0.1:0").await;
    Server {
        http: Http::to(&served),
        clock: demo.clock,
        alice: demo.alice,
        factors: demo.factors,
        store,
        _served: served,
    }
}

async fn start() -> Server {
    start_with(false).await
}

impl Server {
    fn now(&self) -> u64 {
        tower_stepup::Clock::now(&self.clock)
    }

    /// Moves the clock to the next TOTP step (a code is accepted once per step).
    fn next_step(&self) {
        self.clock.advance(30);
    }

    fn code(&self) -> String {
        totp::code_at(&self.alice, totp::step_at(self.now()))
    }

    async fn list(&self, access: &str) -> Reply {
        self.api(Method::GET, "/auth/factors", None, Some(access))
            .await
    }

    /// The caller's factors as listed (`200` asserted).
    async fn listed(&self, access: &str) -> Vec<Value> {
        let r = self.list(access).await;
        r.expect_ok();
        r.body["factors"].as_array().unwrap().clone()
    }

    async fn rename(&self, access: &str, id: &str, body: &Value) -> Reply {
        let path = format!("/auth/factors/{id}");
        self.api(Method::PATCH, &path, Some(body), Some(access))
            .await
    }

    async fn remove(&self, access: &str, id: &str) -> Reply {
        let path = format!("/auth/factors/{id}");
        self.api(Method::DELETE, &path, None, Some(access)).await
    }

    async fn regenerate(&self, access: &str) -> Reply {
        let path = "/auth/mfa/recovery-codes";
        self.post(path, &json!({}), Some(access)).await
    }

    async fn verify(&self, body: &Value, bearer: Option<&str>) -> Reply {
        self.post("/auth/mfa/verify", body, bearer).await
    }

    fn session(r: &Reply) -> Session {
        r.expect_ok();
        Session {
            access: r.str("access_token"),
            refresh: r.str("refresh_token"),
        }
    }

    /// alice signs in (password, then the code of a fresh step).
    async fn alice(&self) -> Session {
        self.next_step();
        let partial = self.login("alice").await.str("partial_token");
        let body = json!({"mfa_token": partial, "code": self.code()});
        Self::session(&self.verify(&body, None).await)
    }

    async fn bob(&self) -> Session {
        Self::session(&self.login("bob").await)
    }

    /// alice answers the step-up challenge `denied` of session `s` with a code: its new
    /// tokens.
    async fn step_up(&self, s: &Session, denied: &Reply) -> Session {
        denied.expect(403, "mfa_required");
        self.next_step();
        let body = json!({"mfa_token": denied.str("mfa_token"), "code": self.code()});
        Self::session(&self.verify(&body, Some(&s.access)).await)
    }

    async fn refresh(&self, s: &Session) -> Reply {
        let body = json!({ "refresh_token": s.refresh });
        self.post("/auth/refresh", &body, None).await
    }

    /// The `amr` of an access token, from `/api/me`.
    async fn amr(&self, access: &str) -> Value {
        let r = self.api(Method::GET, "/api/me", None, Some(access)).await;
        r.expect_ok();
        r.body["amr"].clone()
    }

    /// Adds a factor of `k` for `user` directly, `created_at` now.
    fn add(&self, user: &str, k: &str, data: &[u8]) -> StoredFactor {
        let factor = StoredFactor::new(k, FactorData::new(data.to_vec()), self.now()).unwrap();
        self.factors.add(user, factor.clone());
        factor
    }
}

impl std::ops::Deref for Server {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

/// The id of the listed factor of `type`.
fn id_of(factors: &[Value], type_: &str) -> String {
    factors
        .iter()
        .find(|f| f["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {factors:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn types(factors: &[Value]) -> Vec<&str> {
    factors
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------
// GET /auth/factors

/// The shape of DESIGN §8.4, oldest first, the caller's own only; exactly these keys (no
/// data, nothing of a secret on the wire); a recovery-code set says how many are left.
#[tokio::test(flavor = "multi_thread")]
async fn factors_are_listed_by_type_without_secret_data() {
    let s = start().await;
    let a = s.alice().await;
    let email = s.add("alice", kind::EMAIL, b"alice@example.test");
    s.clock.advance(1);
    let passkey = s.add("alice", kind::PASSKEY, b"credential-secret-bytes");

    let r = s.list(&a.access).await;
    r.expect_ok();
    assert_eq!(r.header(CACHE_CONTROL), Some("no-store"));
    assert_eq!(keys(&r.body), BTreeSet::from(["factors"]));
    let factors = r.body["factors"].as_array().unwrap();
    assert_eq!(types(factors), ["otp", "recovery-code", "email", "passkey"]);
    let plain = BTreeSet::from(["id", "type", "name", "created_at"]);
    for f in factors {
        let expected = match f["type"].as_str() {
            Some("recovery-code") => {
                BTreeSet::from(["id", "type", "name", "created_at", "remaining"])
            }
            _ => plain.clone(),
        };
        assert_eq!(keys(f), expected, "{f}");
        assert_eq!(f["name"], Value::Null);
    }
    assert_eq!(factors[0]["created_at"], 0, "the demo enrolled alice at 0");
    assert_eq!(factors[1]["remaining"], 10);
    assert_eq!(
        factors[2],
        json!({"id": email.id, "type": "email", "name": null, "created_at": email.created_at})
    );
    assert_eq!(factors[3]["id"], passkey.id.as_str());
    assert!(factors[2]["created_at"].as_u64() < factors[3]["created_at"].as_u64());
    // Nothing of a factor's data: not the address, not the credential, not the secret.
    let raw = String::from_utf8(r.raw.clone()).unwrap();
    let secret = s.alice.to_base32();
    for data in [
        "alice@example.test",
        "credential-secret-bytes",
        secret.as_str(),
    ] {
        assert!(!raw.contains(data), "{data} in {raw}");
    }

    // bob has none; no token is 401.
    let bob = s.bob().await;
    assert_eq!(s.listed(&bob.access).await, Vec::<Value>::new());
    let r = s.api(Method::GET, "/auth/factors", None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// PATCH /auth/factors/{id}

/// A name is trimmed and kept; an empty, long or control-character name is `400` and
/// changes nothing; another user's or an unknown id `404`, a malformed one `400`.
#[tokio::test(flavor = "multi_thread")]
async fn a_factor_is_renamed_and_bad_names_are_refused() {
    let s = start().await;
    let a = s.alice().await;
    let id = id_of(&s.listed(&a.access).await, "otp");

    let longest = "ü".repeat(64);
    for (name, kept) in [
        (longest.as_str(), longest.as_str()),
        ("  Work phone  ", "Work phone"),
    ] {
        let r = s.rename(&a.access, &id, &json!({ "name": name })).await;
        assert_eq!(r.status, 204, "{}", r.body);
        assert_eq!(r.header(CACHE_CONTROL), Some("no-store"));
        assert_eq!(s.listed(&a.access).await[0]["name"], kept);
    }

    let too_long = "a".repeat(65);
    for bad in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({ "name": too_long }),
        json!({"name": "line\nbreak"}),
        json!({"name": "nul\u{0}"}),
        json!({"name": "\u{202e}evil"}),
        json!({"name": 5}),
        json!({"name": null}),
        json!({}),
    ] {
        s.rename(&a.access, &id, &bad)
            .await
            .expect_for(400, "invalid_request", &bad.to_string());
    }
    // Not JSON: 400 too.
    let req = s
        .client
        .patch(s.url(&format!("/auth/factors/{id}")))
        .bearer_auth(&a.access)
        .header("content-type", "text/plain")
        .body(r#"{"name":"x"}"#);
    Reply::sent(req).await.expect(400, "invalid_request");
    // A cross-site PATCH is refused by the demo before the endpoint (cookie mode's CSRF
    // rule: every write, not only POST and DELETE).
    let req = s
        .client
        .patch(s.url(&format!("/auth/factors/{id}")))
        .bearer_auth(&a.access)
        .header("content-type", "application/json")
        .header("origin", "https://evil.example")
        .body(r#"{"name":"pwned"}"#);
    Reply::sent(req).await.expect(403, "cross_site_request");
    assert_eq!(s.listed(&a.access).await[0]["name"], "Work phone");

    // bob cannot rename alice's factor: the same answer as an unknown id.
    let bob = s.bob().await;
    let unknown = "0123456789abcdef0123456789abcdef";
    for (who, target) in [(&bob, id.as_str()), (&a, unknown)] {
        s.rename(&who.access, target, &json!({"name": "mine"}))
            .await
            .expect(404, "not_found");
    }
    assert_eq!(s.listed(&a.access).await[0]["name"], "Work phone");
    for malformed in ["xyz", &id.to_uppercase(), &format!("{id}0")] {
        s.rename(&a.access, malformed, &json!({"name": "x"}))
            .await
            .expect_for(400, "invalid_request", malformed);
    }
    let path = format!("/auth/factors/{id}");
    let r = s
        .api(Method::PATCH, &path, Some(&json!({"name": "x"})), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// DELETE /auth/factors/{id}

/// Removing needs `mfa` within `max_age`: an old sign-in gets the step-up challenge and
/// nothing changes; after the step-up the factor goes (`204`), the user's other sessions
/// end (the caller's lives on), and the removal is audited.
#[tokio::test(flavor = "multi_thread")]
async fn removing_a_factor_needs_a_recent_second_factor_and_ends_other_sessions() {
    let s = start().await;
    let other = s.alice().await;
    let a = s.alice().await;
    let email = s.add("alice", kind::EMAIL, b"alice@example.test");

    s.clock.advance(301);
    let denied = s.remove(&a.access, &email.id).await;
    denied.expect(403, "mfa_required");
    assert!(!denied.str("mfa_token").is_empty());
    assert_eq!(
        types(&s.listed(&a.access).await),
        ["otp", "recovery-code", "email"]
    );
    let other = Server::session(&s.refresh(&other).await);

    let a = s.step_up(&a, &denied).await;
    let removed_before = audit::counters().get(Action::FactorRemoved, Outcome::Ok);
    let r = s.remove(&a.access, &email.id).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.header(CACHE_CONTROL), Some("no-store"));
    assert_eq!(types(&s.listed(&a.access).await), ["otp", "recovery-code"]);
    assert!(audit::counters().get(Action::FactorRemoved, Outcome::Ok) > removed_before);
    // A change of factors: the other session ended, the caller's did not.
    s.refresh(&other).await.expect(400, "invalid_grant");
    s.refresh(&a).await.expect_ok();
    // Gone: a second removal is 404.
    s.remove(&a.access, &email.id)
        .await
        .expect(404, "not_found");
}

/// Another user's factor is `404`, as an unknown one, and stays; a malformed id is
/// `400` before the recent-authentication rule; no token `401`.
#[tokio::test(flavor = "multi_thread")]
async fn another_users_factor_is_not_found_and_stays() {
    let s = start().await;
    let a = s.alice().await;
    let before = s.listed(&a.access).await;
    // bob, signed in just now and without a factor, meets the recent-authentication rule.
    let bob = s.bob().await;
    for id in [id_of(&before, "otp"), id_of(&before, "recovery-code")] {
        s.remove(&bob.access, &id).await.expect(404, "not_found");
    }
    s.remove(&a.access, "0123456789abcdef0123456789abcdef")
        .await
        .expect(404, "not_found");
    assert_eq!(s.listed(&a.access).await, before);

    s.clock.advance(301);
    for malformed in ["nope", "0123456789ABCDEF0123456789ABCDEF", "a.b"] {
        s.remove(&a.access, malformed)
            .await
            .expect_for(400, "invalid_request", malformed);
    }
    let path = format!("/auth/factors/{}", id_of(&before, "otp"));
    let r = s.api(Method::DELETE, &path, None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // Without `Content-Type: application/json` (what a cross-site form can send): 400.
    let req = s.client.delete(s.url(&path)).bearer_auth(&a.access);
    Reply::sent(req).await.expect(400, "invalid_request");
    assert_eq!(s.listed(&a.access).await, before);
}

/// The last factor that signs in stays: `409 last_factor`, also while recovery codes
/// remain (they do not count), and the user still needs the second factor. The recovery
/// codes themselves can go.
#[tokio::test(flavor = "multi_thread")]
async fn the_last_factor_that_signs_in_stays() {
    let s = start().await;
    let a = s.alice().await;
    let listed = s.listed(&a.access).await;
    let (otp, codes) = (id_of(&listed, "otp"), id_of(&listed, "recovery-code"));

    let r = s.remove(&a.access, &otp).await;
    r.expect(409, "last_factor");
    assert_eq!(s.listed(&a.access).await, listed, "nothing changed");
    s.refresh(&a).await.expect_ok();

    let r = s.remove(&a.access, &codes).await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.remove(&a.access, &otp).await.expect(409, "last_factor");
    assert_eq!(types(&s.listed(&a.access).await), ["otp"]);
    s.login("alice").await.expect_partial();

    // With another factor that signs in, the TOTP factor can go.
    s.add("alice", kind::PASSKEY, b"credential");
    let r = s.remove(&a.access, &otp).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(types(&s.listed(&a.access).await), ["passkey"]);
}

/// When the application allows accounts without MFA, the last factor goes (`204`) and
/// takes the recovery codes with it; the user then signs in with the password alone.
#[tokio::test(flavor = "multi_thread")]
async fn when_allowed_the_last_factor_goes_with_the_recovery_codes() {
    let s = start_with(true).await;
    let a = s.alice().await;
    let otp = id_of(&s.listed(&a.access).await, "otp");
    let r = s.remove(&a.access, &otp).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(s.listed(&a.access).await, Vec::<Value>::new());
    assert!(!s.factors.contains("alice"));

    let r = s.login("alice").await;
    let session = Server::session(&r);
    assert_eq!(s.amr(&session.access).await, json!(["pwd"]));
}

/// Two removals at once of a user's last two factors that sign in (both past the check
/// before either removes, by the store's gate) leave at least one: whichever finds none
/// left puts its factor back and answers `409 last_factor`.
#[tokio::test(flavor = "multi_thread")]
async fn two_removals_of_the_last_two_factors_leave_one() {
    let s = start().await;
    let a = s.alice().await;
    let email = s.add("alice", kind::EMAIL, b"alice@example.test");
    let otp = id_of(&s.listed(&a.access).await, "otp");

    s.store.armed.store(true, Ordering::SeqCst);
    let (r1, r2) = tokio::join!(s.remove(&a.access, &otp), s.remove(&a.access, &email.id));
    s.store.armed.store(false, Ordering::SeqCst);

    let left: Vec<String> = s
        .listed(&a.access)
        .await
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    for (r, id) in [(&r1, &otp), (&r2, &email.id)] {
        match r.status.as_u16() {
            204 => assert!(!left.contains(id), "{id} was removed"),
            409 => {
                r.expect(409, "last_factor");
                assert!(left.contains(id), "{id} was put back");
            }
            other => panic!("{other}: {}", r.body),
        }
    }
    assert!(
        r1.status != 204 || r2.status != 204,
        "both removed: {left:?}"
    );
    assert!(left.contains(&otp) || left.contains(&email.id), "{left:?}");
    s.login("alice").await.expect_partial();
}

// ---------------------------------------------------------------------------------------
// POST /auth/mfa/recovery-codes

/// A new set replaces the old: an old code is refused at verify as a wrong code is, a
/// new one works once; the set is listed with what is left of it. It needs a recent
/// second factor, and a factor that signs in.
#[tokio::test(flavor = "multi_thread")]
async fn new_recovery_codes_replace_the_old_set() {
    let s = start().await;
    let other = s.alice().await;
    let a = s.alice().await;
    let old = s.regenerate(&a.access).await;
    old.expect_ok();
    assert_eq!(old.header(CACHE_CONTROL), Some("no-store"));
    assert_eq!(keys(&old.body), BTreeSet::from(["recovery_codes"]));
    let old_codes: Vec<String> =
        serde_json::from_value(old.body["recovery_codes"].clone()).unwrap();
    assert_eq!(old_codes.len(), 10);
    s.refresh(&other).await.expect(400, "invalid_grant");

    let new = s.regenerate(&a.access).await;
    let new_codes: Vec<String> =
        serde_json::from_value(new.body["recovery_codes"].clone()).unwrap();
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !old_codes.contains(c)));
    let listed = s.listed(&a.access).await;
    assert_eq!(types(&listed), ["otp", "recovery-code"]);
    assert_eq!(listed[1]["created_at"], s.now());

    // An old code: the answer of a wrong code.
    let wrong = {
        let partial = s.login("alice").await.str("partial_token");
        let body = json!({"mfa_token": partial, "recovery_code": "AAAA-BBBB-CCCC-DDDD"});
        s.verify(&body, None).await
    };
    wrong.expect(401, "invalid_code");
    let partial = s.login("alice").await.str("partial_token");
    let body = json!({"mfa_token": partial, "recovery_code": old_codes[0]});
    let r = s.verify(&body, None).await;
    r.expect(401, "invalid_code");
    assert_eq!(r.status, wrong.status);

    // A new code: once.
    let body = json!({"mfa_token": partial, "recovery_code": new_codes[0]});
    let b = Server::session(&s.verify(&body, None).await);
    assert_eq!(s.listed(&b.access).await[1]["remaining"], 9);
    let partial = s.login("alice").await.str("partial_token");
    let body = json!({"mfa_token": partial, "recovery_code": new_codes[0]});
    s.verify(&body, None).await.expect(401, "invalid_code");

    // An old sign-in steps up first; bob has no factor to back up; no token is 401.
    s.clock.advance(301);
    let denied = s.regenerate(&a.access).await;
    denied.expect(403, "mfa_required");
    let bob = s.bob().await;
    s.regenerate(&bob.access)
        .await
        .expect(400, "invalid_request");
    let r = s.post("/auth/mfa/recovery-codes", &json!({}), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
}
