//! DPoP at the completion endpoints (issue 19, RFC 9449 §5, DESIGN §8.5), over real HTTP
//! on 127.0.0.1 with reqwest: login, verify, the send endpoint, refresh and logout with
//! proofs signed by `support/dpop.rs` (p256 and ed25519-dalek, independently of the
//! crate), and the layer in front accepting the bound tokens they issue.
//!
//! The app: alice has TOTP (and an email factor for sent codes), bob has no second factor;
//! the guard accepts DPoP with `htu` the server's own `http://127.0.0.1:<port>`; the store
//! logs every call, so a refused request can be shown to have spent nothing.

#[path = "support/accounts.rs"]
mod accounts;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/completion_app.rs"]
mod completion_app;
#[path = "support/dpop.rs"]
mod dpop;
#[path = "support/hooked_store.rs"]
mod hooked_store;
#[path = "support/reply.rs"]
mod reply;
#[path = "support/served.rs"]
mod served;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post_service};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Method;
use serde_json::{json, Value};
use tower_stepup::complete::{Completion, CookieConfig, LogSender, MemoryFactors, TotpFactor};
use tower_stepup::dpop::{DpopConfig, DpopNonces};
#[cfg(feature = "passkey")]
use tower_stepup::factor::passkey::PasskeyConfig;
use tower_stepup::factor::sent::Channel;
use tower_stepup::factor::{recovery, TotpSecret};
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::{
    Algorithm, Claims, Clock, Guard, Issuer, ManualClock, Policy, RouteTable, Sealer, SealingKey,
    SealingKeys, SigningKey, StepUp, Verifier, VerifyingKey,
};

use accounts::PlainAccounts;
use dpop::Key;
use hooked_store::{Call, CallResult, HookFuture, HookedStore, StoreHook};
use reply::Reply;
use served::Served;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;
const ISS: &str = "https://auth.dpop.test";
const AUD: &str = "https://api.dpop.test";
const SIGNING_KEY: [u8; 32] = [0x5e; 32];
const SEALING_KEY: [u8; 32] = [0x6f; 32];
const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const LOGIN: &str = "/auth/login";
const VERIFY: &str = "/auth/mfa/verify";
const SEND: &str = "/auth/mfa/send";
const PASSKEY_CHALLENGE: &str = "/auth/passkey/challenge";
const REFRESH: &str = "/auth/refresh";
const LOGOUT: &str = "/auth/logout";
const ME: &str = "/api/me";
const TRANSFER: &str = "/api/transfer";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Every store call, by name, in order.
#[derive(Default)]
struct CallLog(Mutex<Vec<&'static str>>);

impl StoreHook for CallLog {
    fn after<'a>(
        &'a self,
        _: &'a dyn Store,
        call: &'a Call<'a>,
        outcome: CallResult,
    ) -> HookFuture<'a, CallResult> {
        self.0.lock().unwrap().push(call.name());
        Box::pin(async move { outcome })
    }
}

impl CallLog {
    /// The calls since the last `take`, forgotten.
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct App {
    completion: Completion,
    clock: ManualClock,
    store: Arc<HookedStore<CallLog>>,
    sender: Arc<LogSender>,
    alice: TotpSecret,
    base: String,
    http: reqwest::Client,
    _served: Served,
}

async fn me(claims: Claims) -> Json<Value> {
    Json(json!({"sub": claims.sub(), "sid": claims.sid()}))
}

async fn transfer(claims: Claims) -> Json<Value> {
    Json(json!({"transferred_by": claims.sub()}))
}

impl App {
    /// The app with DPoP on the guard.
    async fn new() -> Self {
        Self::build(true, false).await
    }

    /// The app, with DPoP on the guard or not, in cookie mode or not.
    async fn build(with_dpop: bool, cookies: bool) -> Self {
        Self::build_with(with_dpop, cookies, None).await
    }

    /// [`App::build`], with server nonces on the guard when given.
    async fn build_with(with_dpop: bool, cookies: bool, nonces: Option<DpopNonces>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = ManualClock::new(T0);
        let store = Arc::new(HookedStore::whole(
            Arc::new(MemoryStore::new()),
            CallLog::default(),
        ));
        let verifier = Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("k1", Algorithm::HS256, &SIGNING_KEY).unwrap())
            .build()
            .unwrap();
        let sealer = Sealer::new(SealingKeys::new(
            SealingKey::new("s1", SEALING_KEY).unwrap(),
        ))
        .unwrap();
        let mut guard = Guard::builder()
            .verifier(verifier)
            .sealer(sealer)
            .clock(clock.clone());
        if with_dpop {
            guard = guard.dpop(DpopConfig::default(), base.clone(), store.clone());
        }
        if let Some(nonces) = nonces {
            guard = guard.dpop_nonces(nonces);
        }
        let guard = guard.build().unwrap();
        let issuer = Issuer::builder()
            .issuer(ISS)
            .audience(AUD)
            .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &SIGNING_KEY).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let alice = TotpSecret::from_base32(ALICE_SECRET).unwrap();
        let factors = Arc::new(MemoryFactors::new());
        factors.insert(
            "alice",
            TotpFactor::new(alice.clone(), recovery::generate().unwrap().1),
        );
        let sender = Arc::new(LogSender::new());
        let mut completion = Completion::builder()
            .guard(guard.clone())
            .issuer(issuer)
            .shared_store(store.clone())
            .accounts(PlainAccounts::new(&[
                ("alice", "alice-pw"),
                ("bob", "bob-pw"),
            ]))
            .factors(factors)
            .code_sender(sender.clone());
        if cookies {
            completion = completion.cookies(CookieConfig::new());
        }
        #[cfg(feature = "passkey")]
        {
            let config = PasskeyConfig::new("localhost", "http://localhost:3000", "DPoP test");
            completion = completion.passkeys(config.unwrap());
        }
        let completion = completion.build().unwrap();
        completion
            .add_code_factor("alice", Channel::Email, "alice@example.test", None)
            .await
            .unwrap();
        let step_up = StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300));
        let table = completion_app::policies(
            RouteTable::new()
                .route(Method::GET, ME, Policy::authenticated())
                .route(Method::GET, TRANSFER, Policy::step_up(step_up))
                .route(Method::POST, SEND, Policy::mfa_verify())
                .route(Method::POST, PASSKEY_CHALLENGE, Policy::mfa_verify()),
        );
        let api = Router::new()
            .route(ME, get(me))
            .route(TRANSFER, get(transfer))
            .route(SEND, post_service(completion.send_code()));
        #[cfg(feature = "passkey")]
        let api = api.route(
            PASSKEY_CHALLENGE,
            post_service(completion.passkey_challenge()),
        );
        let router =
            completion_app::routes(api, &completion).layer(guard.route_table(table).unwrap());
        let served = served::serve_on(listener, router);
        store.take();
        App {
            completion,
            clock,
            store,
            sender,
            alice,
            base,
            http: reqwest::Client::new(),
            _served: served,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A fresh proof of `key` for `htm` on `path`, with `ath` of `token` when given.
    fn proof(&self, key: &Key, htm: &str, path: &str, token: Option<&str>) -> String {
        key.proof(htm, &self.url(path), token, self.now())
    }

    /// `POST path` with a JSON body, an `Authorization` value and a `DPoP` proof when
    /// given.
    async fn post(
        &self,
        path: &str,
        body: &Value,
        authorization: Option<&str>,
        proof: Option<&str>,
    ) -> Reply {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(auth) = authorization {
            req = req.header("authorization", auth);
        }
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        Reply::sent(req).await
    }

    /// `GET path` with an `Authorization` value and a `DPoP` proof when given.
    async fn get(&self, path: &str, authorization: &str, proof: Option<&str>) -> Reply {
        let mut req = self
            .http
            .get(self.url(path))
            .header("authorization", authorization);
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        Reply::sent(req).await
    }

    /// `user`'s password, with a proof of `key` when given.
    async fn login(&self, user: &str, key: Option<&Key>) -> Reply {
        let proof = key.map(|k| self.proof(k, "POST", LOGIN, None));
        let body = json!({"username": user, "password": format!("{user}-pw")});
        self.post(LOGIN, &body, None, proof.as_deref()).await
    }

    /// alice's TOTP code now.
    fn code(&self) -> String {
        codes::code_now(&self.alice, self.now())
    }

    /// Verify with `{mfa_token, code}`, a proof of `key` (`ath` of `access`) and
    /// `Authorization: DPoP <access>` when given.
    async fn verify(
        &self,
        mfa_token: &str,
        code: &str,
        key: Option<&Key>,
        access: Option<&str>,
    ) -> Reply {
        let proof = key.map(|k| self.proof(k, "POST", VERIFY, access));
        let auth = access.map(|a| format!("DPoP {a}"));
        let body = json!({"mfa_token": mfa_token, "code": code});
        self.post(VERIFY, &body, auth.as_deref(), proof.as_deref())
            .await
    }

    /// Refresh `token` with a proof of `key` when given.
    async fn refresh(&self, token: &str, key: Option<&Key>) -> Reply {
        let proof = key.map(|k| self.proof(k, "POST", REFRESH, None));
        let body = json!({"refresh_token": token});
        self.post(REFRESH, &body, None, proof.as_deref()).await
    }

    /// A session of `user` bound to `key`: bob's at login, alice's after her code.
    async fn bound_session(&self, user: &str, key: &Key) -> Reply {
        let login = self.login(user, Some(key)).await;
        if user == "bob" {
            login.expect_ok();
            return login;
        }
        let partial = login.expect_partial();
        let r = self.verify(&partial, &self.code(), Some(key), None).await;
        r.expect_ok();
        r
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(secs);
    }
}

/// A JWT's claims.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The `cnf.jkt` of a token response's access token, if any.
fn access_jkt(r: &Reply) -> Option<String> {
    payload(&r.str("access_token"))["cnf"]["jkt"]
        .as_str()
        .map(str::to_owned)
}

fn count(calls: &[&str], name: &str) -> usize {
    calls.iter().filter(|c| **c == name).count()
}

// ---------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_login_with_a_proof_issues_a_dpop_token_the_layer_takes_only_with_a_proof() {
    let app = App::new().await;
    let key = Key::es256(7);
    let r = app.login("bob", Some(&key)).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "DPoP", "{}", r.body);
    assert_eq!(access_jkt(&r), Some(key.thumbprint()));
    assert!(
        r.str("refresh_token")
            .ends_with(&format!(".{}", key.thumbprint())),
        "the refresh token names its key"
    );
    assert_eq!(count(&app.store.take(), "use_dpop_proof"), 1);
    let access = r.str("access_token");
    // The layer: DPoP with a fresh proof of the key passes, once per proof.
    let proof = app.proof(&key, "GET", ME, Some(&access));
    let ok = app.get(ME, &format!("DPoP {access}"), Some(&proof)).await;
    ok.expect_ok();
    assert_eq!(ok.body["sub"], "bob");
    // As a bearer token it is refused, and so is another key's proof.
    app.get(ME, &format!("Bearer {access}"), None)
        .await
        .expect(401, "invalid_token");
    let other = app.proof(&Key::ed(8), "GET", ME, Some(&access));
    app.get(ME, &format!("DPoP {access}"), Some(&other))
        .await
        .expect(401, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_replayed_login_proof_is_refused() {
    let app = App::new().await;
    let key = Key::ed(3);
    let proof = app.proof(&key, "POST", LOGIN, None);
    let body = json!({"username": "bob", "password": "bob-pw"});
    app.post(LOGIN, &body, None, Some(&proof)).await.expect_ok();
    let again = app.post(LOGIN, &body, None, Some(&proof)).await;
    again.expect(400, "invalid_dpop_proof");
    assert!(again.body.get("access_token").is_none());
}

#[tokio::test]
async fn a_login_proof_costs_no_store_write_before_the_password_checks_out() {
    let app = App::new().await;
    let key = Key::es256(4);
    // A wrong password with a good proof: the proof is never used.
    let proof = app.proof(&key, "POST", LOGIN, None);
    let body = json!({"username": "bob", "password": "wrong"});
    app.post(LOGIN, &body, None, Some(&proof))
        .await
        .expect(401, "invalid_credentials");
    let calls = app.store.take();
    assert_eq!(count(&calls, "use_dpop_proof"), 0, "{calls:?}");
    assert_eq!(count(&calls, "reserve_login"), 1, "{calls:?}");
    // A bad proof (another URL) is refused before the password: nothing in the store.
    let bad = key.proof("POST", &app.url("/auth/elsewhere"), None, app.now());
    let body = json!({"username": "bob", "password": "bob-pw"});
    app.post(LOGIN, &body, None, Some(&bad))
        .await
        .expect(400, "invalid_dpop_proof");
    let calls = app.store.take();
    assert!(calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn without_dpop_on_the_guard_a_proof_changes_nothing() {
    let app = App::build(false, false).await;
    let key = Key::es256(5);
    let r = app.login("bob", Some(&key)).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(access_jkt(&r), None);
    assert_eq!(r.str("refresh_token").split('.').count(), 3);
    // alice: an unbound partial token, a bearer session.
    let partial = app.login("alice", Some(&key)).await.expect_partial();
    assert!(payload(&partial).get("cnf").is_none());
    let v = app.verify(&partial, &app.code(), Some(&key), None).await;
    v.expect_ok();
    assert_eq!(v.body["token_type"], "Bearer");
    assert_eq!(access_jkt(&v), None);
    let refreshed = app.refresh(&v.str("refresh_token"), Some(&key)).await;
    refreshed.expect_ok();
    assert_eq!(refreshed.body["token_type"], "Bearer");
    assert_eq!(count(&app.store.take(), "use_dpop_proof"), 0);
    let access = refreshed.str("access_token");
    app.get(ME, &format!("Bearer {access}"), None)
        .await
        .expect_ok();
}

#[tokio::test]
async fn in_cookie_mode_a_login_with_a_proof_is_bound_and_gets_no_cookies() {
    let app = App::build(true, true).await;
    let key = Key::ed(6);
    // An API client (it sends a proof): bound, tokens in the body only.
    let r = app.login("bob", Some(&key)).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(access_jkt(&r), Some(key.thumbprint()));
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    let r = app.login("alice", Some(&key)).await;
    let partial = r.expect_partial();
    assert_eq!(
        payload(&partial)["cnf"]["jkt"].as_str(),
        Some(key.thumbprint().as_str())
    );
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(count(&app.store.take(), "use_dpop_proof"), 2);
    // A browser (no proof): bearer, in cookies.
    let r = app.login("bob", None).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(access_jkt(&r), None);
    assert!(!r.set_cookies().is_empty(), "the session cookies are set");
    let r = app.login("alice", None).await;
    assert!(payload(&r.expect_partial()).get("cnf").is_none());
    assert!(!r.set_cookies().is_empty(), "the partial cookie is set");
}

// ---------------------------------------------------------------------------------------
// Verify and the send endpoint
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bound_partial_token_needs_a_proof_of_its_key_and_a_refused_one_spends_nothing() {
    let app = App::new().await;
    let key = Key::ed(11);
    let partial = app.login("alice", Some(&key)).await.expect_partial();
    assert_eq!(
        payload(&partial)["cnf"]["jkt"].as_str(),
        Some(key.thumbprint().as_str())
    );
    app.store.take();
    // The right code with another key's proof, then with none: refused, nothing spent.
    let other = Key::es256(12);
    for proof_key in [Some(&other), None] {
        let r = app.verify(&partial, &app.code(), proof_key, None).await;
        r.expect(400, "invalid_dpop_proof");
        let calls = app.store.take();
        for spent in [
            "reserve_challenge",
            "settle_challenge",
            "use_dpop_proof",
            "reserve_attempt",
        ] {
            assert_eq!(count(&calls, spent), 0, "{spent}: {calls:?}");
        }
    }
    // The key's proof: the challenge and the code are still good.
    let r = app.verify(&partial, &app.code(), Some(&key), None).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(access_jkt(&r), Some(key.thumbprint()));
    assert!(r
        .str("refresh_token")
        .ends_with(&format!(".{}", key.thumbprint())));
    let calls = app.store.take();
    assert_eq!(count(&calls, "use_dpop_proof"), 1, "{calls:?}");
    let attempts = app.store.inner.attempts("alice", app.now()).await.unwrap();
    assert_eq!(attempts.failures, 0);
}

#[tokio::test]
async fn a_partial_token_sent_as_dpop_needs_a_proof_with_its_ath() {
    let app = App::new().await;
    let key = Key::es256(13);
    let partial = app.login("alice", Some(&key)).await.expect_partial();
    let body = json!({"code": app.code()});
    let auth = format!("DPoP {partial}");
    for (what, ath) in [("another token's ath", Some("other")), ("no ath", None)] {
        let proof = app.proof(&key, "POST", VERIFY, ath);
        let r = app.post(VERIFY, &body, Some(&auth), Some(&proof)).await;
        r.expect_for(400, "invalid_dpop_proof", what);
    }
    let proof = app.proof(&key, "POST", VERIFY, Some(&partial));
    let r = app.post(VERIFY, &body, Some(&auth), Some(&proof)).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "DPoP");
}

#[tokio::test]
async fn an_unbound_challenge_ignores_a_proof() {
    let app = App::new().await;
    let partial = app.login("alice", None).await.expect_partial();
    assert!(payload(&partial).get("cnf").is_none());
    let r = app
        .verify(&partial, &app.code(), Some(&Key::ed(14)), None)
        .await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(access_jkt(&r), None);
    assert_eq!(count(&app.store.take(), "use_dpop_proof"), 0);
}

#[tokio::test]
async fn a_bound_sessions_mfa_token_is_redeemed_only_with_its_key() {
    let app = App::new().await;
    let key = Key::ed(15);
    let session = app.bound_session("alice", &key).await;
    let (access, sid) = (
        session.str("access_token"),
        payload(&session.str("access_token"))["sid"].clone(),
    );
    // Past the step-up's five minutes: the route asks for the second factor again.
    app.advance(301);
    let proof = app.proof(&key, "GET", TRANSFER, Some(&access));
    let denied = app
        .get(TRANSFER, &format!("DPoP {access}"), Some(&proof))
        .await;
    denied.expect(403, "mfa_required");
    let mfa_token = denied.str("mfa_token");
    app.store.take();
    // Another key's proof: refused, nothing spent.
    let other = Key::ed(16);
    let r = app
        .verify(&mfa_token, &app.code(), Some(&other), Some(&access))
        .await;
    r.expect(400, "invalid_dpop_proof");
    let calls = app.store.take();
    assert_eq!(count(&calls, "reserve_challenge"), 0, "{calls:?}");
    assert_eq!(count(&calls, "use_dpop_proof"), 0, "{calls:?}");
    // The session's key: the step-up's tokens stay bound, in the same session.
    let up = app
        .verify(&mfa_token, &app.code(), Some(&key), Some(&access))
        .await;
    up.expect_ok();
    assert_eq!(up.body["token_type"], "DPoP");
    assert_eq!(access_jkt(&up), Some(key.thumbprint()));
    assert_eq!(payload(&up.str("access_token"))["sid"], sid);
    assert!(up
        .str("refresh_token")
        .ends_with(&format!(".{}", key.thumbprint())));
    let access = up.str("access_token");
    let proof = app.proof(&key, "GET", TRANSFER, Some(&access));
    app.get(TRANSFER, &format!("DPoP {access}"), Some(&proof))
        .await
        .expect_ok();
    // Its refresh token still needs the key.
    app.refresh(&up.str("refresh_token"), Some(&other))
        .await
        .expect(400, "invalid_dpop_proof");
    let refreshed = app.refresh(&up.str("refresh_token"), Some(&key)).await;
    refreshed.expect_ok();
    assert_eq!(access_jkt(&refreshed), Some(key.thumbprint()));
}

#[tokio::test]
async fn a_code_for_a_bound_challenge_is_sent_only_with_a_proof_of_its_key() {
    let app = App::new().await;
    let key = Key::es256(17);
    let partial = app.login("alice", Some(&key)).await.expect_partial();
    let body = json!({"mfa_token": partial, "channel": "email"});
    for proof_key in [Some(Key::es256(18)), None] {
        let proof = proof_key.map(|k| app.proof(&k, "POST", SEND, None));
        app.post(SEND, &body, None, proof.as_deref())
            .await
            .expect(400, "invalid_dpop_proof");
    }
    assert_eq!(app.sender.sent(), 0, "no code was sent");
    let proof = app.proof(&key, "POST", SEND, None);
    let r = app.post(SEND, &body, None, Some(&proof)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(app.sender.sent(), 1);
    // The proof was used: sent again, it is refused.
    app.post(SEND, &body, None, Some(&proof))
        .await
        .expect(400, "invalid_dpop_proof");
    let code = app.sender.last_code("alice").unwrap().to_string();
    let r = app.verify(&partial, &code, Some(&key), None).await;
    r.expect_ok();
    assert_eq!(access_jkt(&r), Some(key.thumbprint()));
}

#[cfg(feature = "passkey")]
#[tokio::test]
async fn a_passkey_challenge_for_a_bound_challenge_needs_a_proof_of_its_key() {
    let app = App::new().await;
    let key = Key::es256(19);
    let partial = app.login("alice", Some(&key)).await.expect_partial();
    let body = json!({"mfa_token": partial});
    for proof_key in [Some(Key::es256(20)), None] {
        let proof = proof_key.map(|k| app.proof(&k, "POST", PASSKEY_CHALLENGE, None));
        app.post(PASSKEY_CHALLENGE, &body, None, proof.as_deref())
            .await
            .expect(400, "invalid_dpop_proof");
    }
    // The key's proof passes: alice has no passkey, which is the next answer.
    let proof = app.proof(&key, "POST", PASSKEY_CHALLENGE, None);
    let r = app.post(PASSKEY_CHALLENGE, &body, None, Some(&proof)).await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error_description"], "no passkey is registered");
}

// ---------------------------------------------------------------------------------------
// Refresh and logout
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bound_refresh_token_needs_its_key_and_a_refused_refresh_leaves_the_family_alive() {
    let app = App::new().await;
    let key = Key::es256(21);
    let session = app.bound_session("bob", &key).await;
    let refresh = session.str("refresh_token");
    app.store.take();
    // Another key's proof, or none: refused before the store sees the token.
    for (what, proof_key) in [("another key", Some(&Key::es256(22))), ("no proof", None)] {
        app.refresh(&refresh, proof_key)
            .await
            .expect_for(400, "invalid_dpop_proof", what);
        let calls = app.store.take();
        assert_eq!(count(&calls, "refresh_rotate"), 0, "{what}: {calls:?}");
        assert_eq!(count(&calls, "use_dpop_proof"), 0, "{what}: {calls:?}");
    }
    // The token without its key is another token: unknown, and it changes nothing.
    let (stripped, _) = refresh.rsplit_once('.').unwrap();
    app.refresh(stripped, Some(&key))
        .await
        .expect(400, "invalid_grant");
    // The family is alive: the key's proof rotates it, and the new tokens stay bound.
    let r = app.refresh(&refresh, Some(&key)).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(access_jkt(&r), Some(key.thumbprint()));
    let next = r.str("refresh_token");
    assert!(next.ends_with(&format!(".{}", key.thumbprint())));
    app.refresh(&next, None)
        .await
        .expect(400, "invalid_dpop_proof");
    let again = app.refresh(&next, Some(&key)).await;
    again.expect_ok();
    assert_eq!(access_jkt(&again), Some(key.thumbprint()));
}

#[tokio::test]
async fn logout_of_a_bound_session_needs_a_proof_of_its_key() {
    let app = App::new().await;
    let key = Key::ed(31);
    let bound = app.bound_session("bob", &key).await;
    let bound_refresh = bound.str("refresh_token");
    // bob's other session, a bearer one, ends the bound one: only with the key's proof.
    let bearer = app.login("bob", None).await;
    bearer.expect_ok();
    let bearer_auth = format!("Bearer {}", bearer.str("access_token"));
    let body = json!({"refresh_token": bound_refresh});
    let wrong = app.proof(&Key::ed(32), "POST", LOGOUT, None);
    for proof in [None, Some(wrong.as_str())] {
        app.post(LOGOUT, &body, Some(&bearer_auth), proof)
            .await
            .expect(400, "invalid_dpop_proof");
    }
    // Nothing ended: the bearer session works, the bound family refreshes.
    app.get(ME, &bearer_auth, None).await.expect_ok();
    let r = app.refresh(&bound_refresh, Some(&key)).await;
    r.expect_ok();
    let bound_refresh = r.str("refresh_token");
    let body = json!({"refresh_token": bound_refresh});
    let proof = app.proof(&key, "POST", LOGOUT, None);
    let out = app
        .post(LOGOUT, &body, Some(&bearer_auth), Some(&proof))
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    app.refresh(&bound_refresh, Some(&key))
        .await
        .expect(400, "invalid_grant");
}

#[tokio::test]
async fn a_bound_session_logs_itself_out_with_the_proof_the_layer_checked() {
    let app = App::new().await;
    let key = Key::es256(33);
    let session = app.bound_session("bob", &key).await;
    let access = session.str("access_token");
    let refresh = session.str("refresh_token");
    let body = json!({"refresh_token": refresh});
    // The layer checks (and uses) the proof of the access token's key: the same key's
    // refresh token needs no second one.
    let proof = app.proof(&key, "POST", LOGOUT, Some(&access));
    let out = app
        .post(LOGOUT, &body, Some(&format!("DPoP {access}")), Some(&proof))
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    app.refresh(&refresh, Some(&key))
        .await
        .expect(400, "invalid_grant");
}

// ---------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------

#[cfg(feature = "tonic")]
#[tokio::test]
async fn grpc_verify_of_a_bound_partial_token_needs_a_proof_in_the_dpop_metadata() {
    use tonic::transport::{server::TcpIncoming, Channel, Server};
    use tower_stepup::challenge::GRPC_DETAILS_HEADER;
    use tower_stepup::tonic::{MfaVerifyClient, MfaVerifyServer, VerifyRequest, MFA_VERIFY_PATH};

    let app = App::new().await;
    let key = Key::ed(41);
    let partial = app.login("alice", Some(&key)).await.expect_partial();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(
        Server::builder()
            .add_service(MfaVerifyServer::new(&app.completion))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = MfaVerifyClient::new(channel);
    let message = VerifyRequest {
        mfa_token: partial,
        code: Some(app.code()),
        recovery_code: None,
    };
    // htu: the guard's public URL plus the method's path.
    for proof_key in [Some(Key::ed(42)), None] {
        let mut request = tonic::Request::new(message.clone());
        if let Some(k) = &proof_key {
            let proof = app.proof(k, "POST", MFA_VERIFY_PATH, None);
            request
                .metadata_mut()
                .insert("dpop", proof.parse().unwrap());
        }
        let status = client.verify(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let details = status.metadata().get(GRPC_DETAILS_HEADER).unwrap();
        let details: Value = serde_json::from_slice(details.as_bytes()).unwrap();
        assert_eq!(details["error"], "invalid_dpop_proof");
    }
    let mut request = tonic::Request::new(message);
    let proof = app.proof(&key, "POST", MFA_VERIFY_PATH, None);
    request
        .metadata_mut()
        .insert("dpop", proof.parse().unwrap());
    let reply = client.verify(request).await.unwrap().into_inner();
    assert_eq!(reply.token_type, "DPoP");
    assert_eq!(
        payload(&reply.access_token)["cnf"]["jkt"].as_str(),
        Some(key.thumbprint().as_str())
    );
    assert!(reply
        .refresh_token
        .ends_with(&format!(".{}", key.thumbprint())));
    task.abort();
}

#[tokio::test]
async fn with_server_nonces_a_login_proof_without_the_nonce_gets_use_dpop_nonce_and_the_nonce() {
    let nonces = DpopNonces::new([8; 32], Duration::from_secs(300)).unwrap();
    let app = App::build_with(true, false, Some(nonces.clone())).await;
    let key = Key::es256(21);
    let r = app.login("bob", Some(&key)).await;
    r.expect(400, "use_dpop_nonce");
    let nonce = r
        .header("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_owned();
    assert_eq!(nonce, nonces.current(app.now()));
    // Nothing was spent: the proof was refused before the store.
    assert_eq!(count(&app.store.take(), "use_dpop_proof"), 0);
    let proof = key.proof_with("POST", &app.url(LOGIN), None, app.now(), |_, c| {
        c["nonce"] = serde_json::json!(nonce);
    });
    let body = json!({"username": "bob", "password": "bob-pw"});
    let r = app.post(LOGIN, &body, None, Some(&proof)).await;
    r.expect_ok();
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(access_jkt(&r), Some(key.thumbprint()));
}
