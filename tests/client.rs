//! The client against the demo over loopback: login → MFA → step-up handled by the
//! client layer → silent refresh after expiry → logout; and the refusals on the way.
//!
//! The demo router (`examples/axum_app/app.rs`) runs on `127.0.0.1:0` on a
//! [`ManualClock`] that the client shares, so expiry is reached by moving the clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::{Service, ServiceExt};
use tower_stepup::client::{AuthClient, Challenge, ClientError, DpopKey, HttpClient, Proof};
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::flow::{ErrorReason, Recovery, SignedOutReason, State};
use tower_stepup::store::MemoryStore;
use tower_stepup::{Clock, ManualClock};

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

use demo_app::{serve, serve_on, Served};

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

struct Demo {
    base: String,
    clock: ManualClock,
    alice: TotpSecret,
    /// Requests that reached the server through `http`.
    sent: Arc<AtomicUsize>,
    http: Counting,
    _served: Served,
}

/// hyper-util's client, counting what it sends.
#[derive(Clone)]
struct Counting {
    inner: HttpClient,
    sent: Arc<AtomicUsize>,
}

impl Service<Request<Full<Bytes>>> for Counting {
    type Response = <HttpClient as Service<Request<Full<Bytes>>>>::Response;
    type Error = <HttpClient as Service<Request<Full<Bytes>>>>::Error;
    type Future = <HttpClient as Service<Request<Full<Bytes>>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.sent.fetch_add(1, Ordering::SeqCst);
        Service::call(&mut self.inner, req)
    }
}

async fn demo() -> Demo {
    demo_with(demo_config::demo_config(5)).await
}

async fn demo_with(config: app::DemoConfig) -> Demo {
    let built = demo_app::Demo::build(&config, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let served = serve(built.router.clone(), "127.0.0.1:0").await;
    demo_served(built, served)
}

/// The demo whose public URL is where it listens, as DPoP proofs name it.
async fn demo_at_its_public_url() -> Demo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = app::DemoConfig {
        public_url: format!("http://{}", listener.local_addr().unwrap()),
        ..demo_config::demo_config(5)
    };
    let built = demo_app::Demo::build(&config, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let served = serve_on(listener, built.router.clone());
    demo_served(built, served)
}

fn demo_served(built: demo_app::Demo, served: Served) -> Demo {
    let base = format!("http://{}", served.addr);
    let sent = Arc::new(AtomicUsize::new(0));
    let http = Counting {
        inner: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
        sent: sent.clone(),
    };
    Demo {
        base,
        clock: built.clock,
        alice: built.alice,
        sent,
        http,
        _served: served,
    }
}

impl Demo {
    fn client(&self) -> AuthClient<Counting> {
        AuthClient::builder(&self.base)
            .clock(self.clock.clone())
            .build(self.http.clone())
            .unwrap()
    }

    fn code(&self) -> String {
        codes::code_now(&self.alice, self.clock.now())
    }

    fn wrong_code(&self) -> String {
        codes::wrong_code(&self.alice, self.clock.now())
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    async fn get<S, B>(&self, api: &mut S, path: &str) -> Result<(StatusCode, Value), ClientError>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = ClientError>,
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let req = Request::get(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = api.ready().await?.call(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A code provider that computes alice's code on the shared clock, counting calls.
    fn alice_codes(
        &self,
        calls: Arc<AtomicUsize>,
    ) -> impl Fn(Challenge) -> std::future::Ready<Option<Proof>> + Send + Sync + 'static {
        let (clock, alice) = (self.clock.clone(), self.alice.clone());
        move |challenge: Challenge| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(challenge.uri.path(), "/api/billing");
            assert_eq!(challenge.requirements["challenge"][0]["type"], "otp");
            // A later step than any code used before: a TOTP step is accepted once.
            clock.advance(30);
            std::future::ready(Some(Proof::Totp(totp::code_at(
                &alice,
                totp::step_at(clock.now()),
            ))))
        }
    }
}

/// Another origin on loopback (same host, another port): it records the
/// `Authorization` header of every request and answers `/echo` with `200`, `/api/billing`
/// with a `403 mfa_required` carrying a challenge of its own, and `/api/me` with the
/// `401` of an expired access token.
struct Other {
    base: String,
    seen: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Other {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const FOREIGN_MFA_TOKEN: &str = "foreign.mfa.token.from.another.origin";

async fn other_origin() -> Other {
    use axum::response::IntoResponse;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = record.clone();
        async move {
            let auth = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            record.lock().unwrap().push(auth);
            let json = [(http::header::CONTENT_TYPE, "application/json")];
            match req.uri().path() {
                "/api/billing" => (
                    StatusCode::FORBIDDEN,
                    json,
                    serde_json::json!({
                        "error": "mfa_required",
                        "error_description": "a second factor is required",
                        "mfa_token": FOREIGN_MFA_TOKEN,
                        "mfa_requirements": { "challenge": [{ "type": "otp" }] },
                    })
                    .to_string(),
                )
                    .into_response(),
                "/api/me" => (
                    StatusCode::UNAUTHORIZED,
                    [(
                        http::header::WWW_AUTHENTICATE,
                        r#"Bearer error="invalid_token", error_description="the access token has expired""#,
                    )],
                    json,
                    r#"{"error":"invalid_token","error_description":"the access token has expired"}"#,
                )
                    .into_response(),
                _ => (StatusCode::OK, json, r#"{"ok":true}"#).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Other { base, seen, task }
}

impl Other {
    /// Whether each request received so far carried an `Authorization` header, in order
    /// (not the values: a failing assertion must not print a token).
    fn seen(&self) -> Vec<bool> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(Option::is_some)
            .collect()
    }

    /// Whether the last request carried exactly this `Authorization` header.
    fn last_was(&self, authorization: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
            .as_deref()
            == Some(authorization)
    }
}

/// alice, signed in with her code.
async fn signed_in_alice(d: &Demo) -> AuthClient<Counting> {
    let auth = d.client();
    auth.login("alice", "alice-password").await.unwrap();
    let state = auth.submit(Proof::Totp(d.code())).await.unwrap();
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    auth
}

/// A code provider that must not be asked: it counts its calls and declines.
fn counted_codes(
    calls: Arc<AtomicUsize>,
) -> impl Fn(Challenge) -> std::future::Ready<Option<Proof>> + Send + Sync + 'static {
    move |_: Challenge| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(None)
    }
}

/// Finding 8 of issue 14: the layer added the access token to a request for any URI.
/// Only the base URL's origin gets it; a request elsewhere goes out untouched.
#[tokio::test]
async fn access_token_is_not_sent_to_another_origin() {
    let d = demo().await;
    let other = other_origin().await;
    let auth = signed_in_alice(&d).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(counted_codes(calls.clone())))
        .service(d.http.clone());

    // The demo's own origin gets the token (the request succeeds on it).
    let (status, me) = d.get(&mut api, "/api/me").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["sub"], "alice");

    // Another origin: no Authorization header at all.
    let req = Request::get(format!("{}/echo", other.base))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = api.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        other.seen(),
        [false],
        "an Authorization header went to another origin"
    );

    // A header the caller set for that origin is passed on as it is, not replaced.
    let req = Request::get(format!("{}/echo", other.base))
        .header("authorization", "Bearer the-other-services-own-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = api.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        other.last_was("Bearer the-other-services-own-token"),
        "the caller's own Authorization header was not passed on as it was"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(matches!(auth.state().await, State::SignedIn(_)));
}

/// Finding 8 of issue 14: the layer answered a `403 mfa_required` from any host, asking
/// the user for a code and spending it on that host's challenge. Only the base URL's
/// origin is answered: another origin's challenge (and its "expired token" 401) comes
/// back untouched, with no code asked for, no verify and no refresh sent.
#[tokio::test]
async fn step_up_challenge_from_another_origin_is_not_completed() {
    let d = demo().await;
    let other = other_origin().await;
    let auth = signed_in_alice(&d).await;
    let session = session_access(&auth.state().await);
    // Past max_age: the demo itself would challenge billing now.
    d.clock.advance(301);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(counted_codes(calls.clone())))
        .service(d.http.clone());

    let before = d.sent();
    let req = Request::get(format!("{}/api/billing", other.base))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = api.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "mfa_required");
    assert_eq!(
        body["mfa_token"], FOREIGN_MFA_TOKEN,
        "the answer, untouched"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no code was asked for");
    assert_eq!(
        d.sent() - before,
        1,
        "the request only: no verify, no retry"
    );
    assert!(matches!(auth.state().await, State::SignedIn(_)));

    // Its "expired token" answer does not make the client refresh.
    let before = d.sent();
    let req = Request::get(format!("{}/api/me", other.base))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = api.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(d.sent() - before, 1, "the request only: no refresh");
    let state = auth.state().await;
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    assert_eq!(session_access(&state), session, "the same session");
    assert_eq!(other.seen(), [false, false], "no token went there");

    // The demo's own challenge is still completed (the provider is asked, declines).
    let (status, body) = d.get(&mut api, "/api/billing").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "mfa_required");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the own origin's challenge"
    );
}

fn session_access(state: &State) -> String {
    state.session().unwrap().access_token.expose().to_owned()
}

#[tokio::test]
async fn login_mfa_step_up_silent_refresh_logout() {
    let d = demo().await;
    let auth = d.client();

    // Login: password OK is not signed in.
    let state = auth.login("alice", "alice-password").await.unwrap();
    let State::MfaRequired(pending) = &state else {
        panic!("{state:?}")
    };
    assert_eq!(pending.expires_at, T0 + 300);
    // A wrong code, then the right one.
    let state = auth.submit(Proof::Totp(d.wrong_code())).await.unwrap();
    let State::MfaRequired(pending) = &state else {
        panic!("{state:?}")
    };
    assert_eq!(pending.attempts_remaining, Some(4));
    let state = auth.submit(Proof::Totp(d.code())).await.unwrap();
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    let first_access = session_access(&state);

    // API calls through the layer.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(d.alice_codes(calls.clone())))
        .service(d.http.clone());
    let (status, me) = d.get(&mut api, "/api/me").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["sub"], "alice");

    // Billing needs a second factor within 300 s: the layer completes the challenge
    // with a code from the provider and retries once.
    d.clock.advance(301);
    let before = d.sent();
    let (status, billing) = d.get(&mut api, "/api/billing").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{billing}");
    assert_eq!(billing["invoices"][0]["id"], "INV-1001");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(d.sent() - before, 3, "request, verify, retry");
    let state = auth.state().await;
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    let elevated = session_access(&state);
    assert_ne!(elevated, first_access, "verify issued a new session");

    // The access token expires (900 s): the next call refreshes silently.
    d.clock.advance(901);
    let before = d.sent();
    let (status, me) = d.get(&mut api, "/api/me").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(d.sent() - before, 2, "refresh, request");
    let refreshed = auth.state().await;
    assert!(matches!(refreshed, State::SignedIn(_)));
    assert_ne!(session_access(&refreshed), elevated);
    // Refresh keeps the authentication's age: billing asks again, and is completed again.
    let (status, _) = d.get(&mut api, "/api/billing").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Logout: signed out here, and the server revoked the refresh family.
    let old_refresh = auth
        .state()
        .await
        .session()
        .unwrap()
        .refresh_token
        .clone()
        .unwrap();
    let state = auth.logout().await.unwrap();
    assert_eq!(state, State::SignedOut(Some(SignedOutReason::LoggedOut)));
    assert!(state.session().is_none());
    let res = reqwest_post(
        &format!("{}/auth/refresh", d.base),
        &serde_json::json!({ "refresh_token": old_refresh.expose() }),
    )
    .await;
    assert_eq!(res.0, StatusCode::BAD_REQUEST, "{}", res.1);
    match d.get(&mut api, "/api/me").await {
        Err(ClientError::NotSignedIn(_)) => {}
        other => panic!("{other:?}"),
    }
}

async fn reqwest_post(url: &str, body: &Value) -> (StatusCode, Value) {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let http: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let res = http.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_expired_partial_token_is_not_sent() {
    let d = demo().await;
    let auth = d.client();
    auth.login("alice", "alice-password").await.unwrap();
    assert_eq!(d.sent(), 1);
    d.clock.advance(300);
    let state = auth.submit(Proof::Totp(d.code())).await.unwrap();
    let State::Failed(error) = state else {
        panic!("{state:?}")
    };
    assert_eq!(error.reason(), ErrorReason::PartialTokenExpired);
    assert_eq!(error.recovery(), Recovery::StartAgain);
    assert_eq!(d.sent(), 1, "nothing was sent");
    // The way out: sign in again.
    let state = auth.login("alice", "alice-password").await.unwrap();
    assert!(matches!(state, State::MfaRequired(_)));
}

#[tokio::test]
async fn no_second_factor_signs_in_at_once_and_wrong_password_signs_out() {
    let d = demo().await;
    let auth = d.client();
    let state = auth.login("bob", "wrong").await.unwrap();
    assert_eq!(
        state,
        State::SignedOut(Some(SignedOutReason::InvalidCredentials))
    );
    let state = auth.login("bob", "bob-password").await.unwrap();
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    // A code now makes no sense.
    match auth.submit(Proof::Totp("123456".into())).await {
        Err(ClientError::Illegal(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(auth.state().await, State::SignedIn(_)));
}

#[tokio::test]
async fn too_many_wrong_codes_sign_out_with_the_retry_time() {
    let d = demo().await;
    let auth = d.client();
    auth.login("alice", "alice-password").await.unwrap();
    for left in (1..=4).rev() {
        let state = auth.submit(Proof::Totp(d.wrong_code())).await.unwrap();
        let State::MfaRequired(p) = state else {
            panic!("{state:?}")
        };
        assert_eq!(p.attempts_remaining, Some(left));
    }
    let state = auth.submit(Proof::Totp(d.wrong_code())).await.unwrap();
    assert_eq!(
        state,
        State::SignedOut(Some(SignedOutReason::LockedOut { retry_at: T0 + 900 }))
    );
}

#[tokio::test]
async fn a_declined_or_wrong_step_up_returns_the_403_once() {
    let d = demo().await;
    let auth = d.client();
    auth.login("alice", "alice-password").await.unwrap();
    auth.submit(Proof::Totp(d.code())).await.unwrap();
    d.clock.advance(301);

    // The provider declines: the original 403, the session unchanged.
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(|_: Challenge| async { None }))
        .service(d.http.clone());
    let (status, body) = d.get(&mut api, "/api/billing").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "mfa_required");
    assert!(matches!(auth.state().await, State::SignedIn(_)));

    // A wrong code: asked once, no loop, the 403 comes back.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let wrong = d.wrong_code();
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(move |_: Challenge| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Some(Proof::Totp(wrong.clone())))
        }))
        .service(d.http.clone());
    let before = d.sent();
    let (status, body) = d.get(&mut api, "/api/billing").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "mfa_required");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(d.sent() - before, 2, "request, verify; no retry");
    assert!(matches!(auth.state().await, State::SignedIn(_)));
}

#[tokio::test]
async fn concurrent_calls_after_expiry_refresh_once() {
    let d = demo().await;
    let auth = d.client();
    auth.login("alice", "alice-password").await.unwrap();
    auth.submit(Proof::Totp(d.code())).await.unwrap();
    d.clock.advance(901);
    let api = tower::ServiceBuilder::new()
        .layer(auth.layer(|_: Challenge| async { None }))
        .service(d.http.clone());
    let calls = (0..4).map(|_| {
        let mut api = api.clone();
        let base = d.base.clone();
        tokio::spawn(async move {
            let req = Request::get(format!("{base}/api/me"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            api.ready().await.unwrap().call(req).await.unwrap().status()
        })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    // A second refresh with the rotated token would have revoked the family and signed
    // the client out.
    assert!(matches!(auth.state().await, State::SignedIn(_)));
}

#[tokio::test]
async fn a_refused_refresh_signs_out() {
    let d = demo().await;
    let auth = d.client();
    auth.login("alice", "alice-password").await.unwrap();
    let state = auth.submit(Proof::Totp(d.code())).await.unwrap();
    let refresh = state.session().unwrap().refresh_token.clone().unwrap();
    // Someone else rotates the refresh token first (a thief, say): the client's copy is
    // now a reuse, the server revokes the family.
    let (status, _) = reqwest_post(
        &format!("{}/auth/refresh", d.base),
        &serde_json::json!({ "refresh_token": refresh.expose() }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    d.clock.advance(901);
    match auth.access_token().await {
        Err(ClientError::NotSignedIn(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        auth.state().await,
        State::SignedOut(Some(SignedOutReason::RefreshFailed))
    );
}

/// The step-up challenge lives the `expires_in` the server sends (60 s here, not the
/// client's old assumption of 300 s): a code that comes later is not sent, and the 403
/// goes back to the caller; one that comes in time completes the challenge.
#[tokio::test]
async fn the_servers_step_up_lifetime_is_honoured() {
    for (delay, want) in [(59, StatusCode::OK), (61, StatusCode::FORBIDDEN)] {
        let mut config = demo_config::demo_config(5);
        config.mfa_token_ttl_secs = 60;
        let d = demo_with(config).await;
        let auth = signed_in_alice(&d).await;
        d.clock.advance(301);
        let (clock, alice) = (d.clock.clone(), d.alice.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let codes = move |_: Challenge| {
            counted.fetch_add(1, Ordering::SeqCst);
            clock.advance(delay);
            std::future::ready(Some(Proof::Totp(codes::code_now(&alice, clock.now()))))
        };
        let mut api = tower::ServiceBuilder::new()
            .layer(auth.layer(codes))
            .service(d.http.clone());
        let before = d.sent();
        let (status, body) = d.get(&mut api, "/api/billing").await.unwrap();
        assert_eq!(status, want, "{delay} s: {body}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let sent = if want == StatusCode::OK { 3 } else { 1 };
        assert_eq!(d.sent() - before, sent, "{delay} s");
        assert!(matches!(auth.state().await, State::SignedIn(_)));
    }
}

/// The client's clock lags the server's: the server refuses the access token as expired
/// (`401 invalid_token`, `"token_expired": true`) while the client thinks it good. The
/// layer refreshes once and retries.
#[tokio::test]
async fn an_access_token_the_server_finds_expired_is_refreshed_and_retried() {
    let d = demo().await;
    let lagging = ManualClock::new(T0);
    let auth = AuthClient::builder(&d.base)
        .clock(lagging.clone())
        .build(d.http.clone())
        .unwrap();
    auth.login("alice", "alice-password").await.unwrap();
    let state = auth.submit(Proof::Totp(d.code())).await.unwrap();
    let first = session_access(&state);
    // Past exp (900 s) and the verifier's leeway (5 s) on the server's clock only.
    d.clock.advance(910);
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(|_: Challenge| async { None }))
        .service(d.http.clone());
    let before = d.sent();
    let (status, me) = d.get(&mut api, "/api/me").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(d.sent() - before, 3, "request, refresh, retry");
    let state = auth.state().await;
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    assert_ne!(session_access(&state), first);
}

/// The claims of a JWS, unverified (the test reads what the server put in).
fn payload(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The crate's client with a DPoP key against the demo over loopback: every token the
/// demo issues is bound to the key, every request carries a proof (the layer and the
/// endpoints check them), and the whole flow works as with bearer tokens.
#[tokio::test]
async fn with_a_dpop_key_the_whole_flow_runs_on_tokens_bound_to_it() {
    let d = demo_at_its_public_url().await;
    let key = DpopKey::generate_es256().unwrap();
    let jkt = key.jkt().to_owned();
    let auth = AuthClient::builder(&d.base)
        .clock(d.clock.clone())
        .dpop(key)
        .build(d.http.clone())
        .unwrap();
    let state = auth.login("alice", "alice-password").await.unwrap();
    assert!(matches!(state, State::MfaRequired(_)), "{state:?}");
    let state = auth.submit(Proof::Totp(d.code())).await.unwrap();
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    let access = session_access(&state);
    assert_eq!(payload(&access)["cnf"]["jkt"], jkt.as_str());

    let calls = Arc::new(AtomicUsize::new(0));
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(d.alice_codes(calls.clone())))
        .service(d.http.clone());
    let (status, me) = d.get(&mut api, "/api/me").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["sub"], "alice");
    // The same token without its key is refused.
    let stolen = reqwest::Client::new()
        .get(format!("{}/api/me", d.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);

    // A step-up, completed with a proof of the same key; the new session stays bound.
    d.clock.advance(301);
    let (status, billing) = d.get(&mut api, "/api/billing").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{billing}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let elevated = session_access(&auth.state().await);
    assert_ne!(elevated, access);
    assert_eq!(payload(&elevated)["cnf"]["jkt"], jkt.as_str());

    // A silent refresh with a proof; still bound.
    d.clock.advance(901);
    let (status, _) = d.get(&mut api, "/api/me").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let state = auth.state().await;
    let refreshed = session_access(&state);
    assert_ne!(refreshed, elevated);
    assert_eq!(payload(&refreshed)["cnf"]["jkt"], jkt.as_str());
    let refresh = state.session().unwrap().refresh_token.clone().unwrap();
    assert!(refresh.expose().ends_with(&format!(".{jkt}")));
    // The refresh token without its key's proof is refused, and the session goes on.
    let (status, body) = reqwest_post(
        &format!("{}/auth/refresh", d.base),
        &serde_json::json!({ "refresh_token": refresh.expose() }),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof"))
    );

    let state = auth.logout().await.unwrap();
    assert_eq!(state, State::SignedOut(Some(SignedOutReason::LoggedOut)));
}
