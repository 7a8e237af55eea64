//! The client against a *delegated* step-up over loopback (issue 16, item 3): routes that
//! answer the step-up denial of an identity provider's token — the RFC 9470 challenge
//! and `"error": "mfa_required"`, no `mfa_token` — beside the demo's own endpoints
//! (`examples/axum_app/app.rs`), all on one server that counts the requests it receives
//! per path. The client must return `ClientError::StepUpDelegated` with the challenge's
//! `acr_values` and `max_age`, and never call `/auth/mfa/verify` for it, ask for a code
//! or retry.
//!
//! The delegated routes are written by hand here (the contract's form of DESIGN §8.1),
//! so this tests the client alone, whatever the server side renders.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tower::{Service, ServiceExt};
use tower_stepup::client::{http_client, AuthClient, Challenge, ClientError, HttpClient, Proof};
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::flow::{DelegatedStepUp, State};
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

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;

const DESCRIPTION: &str = "a stronger authentication at your identity provider is required";

/// The server: the demo plus the delegated routes, counting requests per path.
struct Server {
    base: String,
    clock: ManualClock,
    alice: TotpSecret,
    /// Requests received, per path.
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Requests to the delegated routes that carried an `Authorization` header.
    with_token: Arc<AtomicUsize>,
    _served: demo_app::Served,
}

impl Server {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn client(&self) -> AuthClient<HttpClient> {
        AuthClient::builder(&self.base)
            .clock(self.clock.clone())
            .build(http_client())
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A delegated step-up answer: `status`, the `WWW-Authenticate` lines, the JSON body.
fn delegated(
    status: StatusCode,
    challenges: &[&'static str],
    body: serde_json::Value,
) -> axum::response::Response {
    let mut headers = HeaderMap::new();
    for c in challenges {
        headers.append(WWW_AUTHENTICATE, c.parse().unwrap());
    }
    headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
    (status, headers, body.to_string()).into_response()
}

/// The delegated routes, as DESIGN §8.1 renders them for an IdP that performs MFA.
fn idp_routes(with_token: Arc<AtomicUsize>) -> axum::Router {
    let seen = move |headers: &HeaderMap| {
        if headers.contains_key(AUTHORIZATION) {
            with_token.fetch_add(1, Ordering::SeqCst);
        }
    };
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen);
    axum::Router::new()
        // The default 403, a Basic challenge before the Bearer one in the same value.
        .route(
            "/idp/transfers",
            axum::routing::post(move |headers: HeaderMap| async move {
                s1(&headers);
                delegated(
                    StatusCode::FORBIDDEN,
                    &[r#"Basic realm="legacy", Bearer error="insufficient_user_authentication", error_description="a stronger authentication at your identity provider is required", acr_values="urn:idp:loa:mfa phr", max_age=120"#],
                    json!({
                        "error": "mfa_required",
                        "error_description": DESCRIPTION,
                        "acr_values": "urn:idp:loa:mfa phr",
                        "max_age": 120,
                    }),
                )
            }),
        )
        // Strict RFC 9470 (401), the challenge on its own line after a DPoP one; the
        // route asks for a fresh login only (no acr_values), the body names nothing.
        .route(
            "/idp/profile",
            axum::routing::get(move |headers: HeaderMap| async move {
                s2(&headers);
                delegated(
                    StatusCode::UNAUTHORIZED,
                    &[
                        r#"DPoP algs="ES256 EdDSA""#,
                        r#"Bearer error="insufficient_user_authentication", error_description="fresh login", max_age=0"#,
                    ],
                    json!({ "error": "mfa_required", "error_description": "fresh login" }),
                )
            }),
        )
        // A broken challenge (unterminated quote): the body's fields are used.
        .route(
            "/idp/keys",
            axum::routing::get(move |headers: HeaderMap| async move {
                s3(&headers);
                delegated(
                    StatusCode::FORBIDDEN,
                    &[r#"Bearer error="insufficient_user_authentication", acr_values="urn:idp:loa:hwk, max_age=5"#],
                    json!({
                        "error": "mfa_required",
                        "error_description": DESCRIPTION,
                        "acr_values": "urn:idp:loa:hwk",
                        "max_age": 600,
                    }),
                )
            }),
        )
}

async fn server() -> Server {
    let config = demo_config::demo_config(5);
    let demo = demo_app::Demo::build(&config, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let with_token = Arc::new(AtomicUsize::new(0));
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let count = hits.clone();
    let router = demo
        .router
        .clone()
        .merge(idp_routes(with_token.clone()))
        .layer(tower::util::MapRequestLayer::new(
            move |req: axum::extract::Request| {
                *count
                    .lock()
                    .unwrap()
                    .entry(req.uri().path().to_owned())
                    .or_default() += 1;
                req
            },
        ));
    let served = demo_app::serve(router, "127.0.0.1:0").await;
    Server {
        base: format!("http://{}", served.addr),
        clock: demo.clock,
        alice: demo.alice,
        hits,
        with_token,
        _served: served,
    }
}

/// alice, signed in with her code (one request to the verify endpoint).
async fn signed_in_alice(s: &Server) -> AuthClient<HttpClient> {
    let auth = s.client();
    auth.login("alice", "alice-password").await.unwrap();
    let code = codes::code_now(&s.alice, s.clock.now());
    let state = auth.submit(Proof::Totp(code)).await.unwrap();
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    assert_eq!(s.hits("/auth/mfa/verify"), 1, "the counter sees verify");
    auth
}

/// A code provider that counts its calls and gives alice's code of a later step.
fn alice_codes(
    s: &Server,
    calls: Arc<AtomicUsize>,
) -> impl Fn(Challenge) -> std::future::Ready<Option<Proof>> + Send + Sync + 'static {
    let (clock, alice) = (s.clock.clone(), s.alice.clone());
    move |_: Challenge| {
        calls.fetch_add(1, Ordering::SeqCst);
        clock.advance(30);
        let code = totp::code_at(&alice, totp::step_at(clock.now()));
        std::future::ready(Some(Proof::Totp(code)))
    }
}

fn request(method: http::Method, url: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(url)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{\"amount\":100}")))
        .unwrap()
}

fn access(state: &State) -> String {
    state.session().unwrap().access_token.expose().to_owned()
}

/// The call's delegated step-up, or a panic saying what came instead.
async fn delegated_of<S, B>(api: &mut S, req: Request<Full<Bytes>>) -> DelegatedStepUp
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>, Error = ClientError>,
{
    match api.ready().await.unwrap().call(req).await {
        Err(ClientError::StepUpDelegated(d)) => d,
        Err(e) => panic!("another error: {e}"),
        Ok(res) => panic!("an answer instead of the error: {}", res.status()),
    }
}

#[tokio::test]
async fn a_delegated_step_up_is_returned_without_verify_code_or_retry() {
    let s = server().await;
    let auth = signed_in_alice(&s).await;
    let session = access(&auth.state().await);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(alice_codes(&s, calls.clone())))
        .service(http_client());

    let req = request(http::Method::POST, s.url("/idp/transfers"));
    let d = delegated_of(&mut api, req).await;
    assert_eq!(d.acr_values, ["urn:idp:loa:mfa", "phr"]);
    assert_eq!(d.max_age, Some(120));
    assert_eq!(d.acr_values_param().as_deref(), Some("urn:idp:loa:mfa phr"));
    assert_eq!(d.description.as_deref(), Some(DESCRIPTION));

    assert_eq!(s.hits("/idp/transfers"), 1, "sent once: no retry");
    assert_eq!(s.with_token.load(Ordering::SeqCst), 1, "with the token");
    assert_eq!(s.hits("/auth/mfa/verify"), 1, "no verify beyond sign-in");
    assert_eq!(s.hits("/auth/refresh"), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no code asked for");
    let state = auth.state().await;
    assert!(matches!(state, State::SignedIn(_)), "{state:?}");
    assert_eq!(access(&state), session, "the session unchanged");

    // The demo's own step-up beside it still goes through verify (the counter works).
    s.clock.advance(301);
    let req = request(http::Method::GET, s.url("/api/billing"));
    let res = api.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.hits("/auth/mfa/verify"),
        2,
        "the local step-up did verify"
    );
    assert_eq!(s.hits("/api/billing"), 2, "challenged, then retried");
}

#[tokio::test]
async fn strict_401_and_a_broken_challenge_are_read_too() {
    let s = server().await;
    let auth = signed_in_alice(&s).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut api = tower::ServiceBuilder::new()
        .layer(auth.layer(alice_codes(&s, calls.clone())))
        .service(http_client());

    // 401, the step-up challenge after a DPoP line: max_age 0, no acr_values.
    let d = delegated_of(&mut api, request(http::Method::GET, s.url("/idp/profile"))).await;
    assert_eq!((d.acr_values.is_empty(), d.max_age), (true, Some(0)));
    assert_eq!(d.acr_values_param(), None);

    // An unterminated quote: nothing of the header is trusted, the body's fields count.
    let d = delegated_of(&mut api, request(http::Method::GET, s.url("/idp/keys"))).await;
    assert_eq!(d.acr_values, ["urn:idp:loa:hwk"]);
    assert_eq!(d.max_age, Some(600));

    assert_eq!(
        (s.hits("/idp/profile"), s.hits("/idp/keys")),
        (1, 1),
        "no retry"
    );
    assert_eq!(s.with_token.load(Ordering::SeqCst), 2);
    assert_eq!(s.hits("/auth/mfa/verify"), 1, "no verify beyond sign-in");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no code asked for");
    assert!(matches!(auth.state().await, State::SignedIn(_)));
}
