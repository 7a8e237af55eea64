//! Cookie transport: the partial cookie goes to the verify endpoint only, verify swaps it
//! for a session cookie, the layer reads the session cookie, logout clears it.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, ServiceExt};
use tower_stepup::complete::{Completion, CookieConfig, MemoryFactors, TotpFactor};
use tower_stepup::factor::{recovery, totp, TotpSecret};
use tower_stepup::layer::CookieNames;
use tower_stepup::store::MemoryStore;
use tower_stepup::token::MAX_TOKEN_LEN;
use tower_stepup::{
    Algorithm, Claims, Guard, Issuer, ManualClock, Policy, Sealer, SealingKey, SealingKeys,
    SigningKey, Verifier, VerifyingKey,
};

#[path = "support/accounts.rs"]
mod accounts;

use accounts::PlainAccounts;

const T0: u64 = 1_800_000_010;

struct Setup {
    clock: ManualClock,
    guard: Guard,
    completion: Completion,
    secret: TotpSecret,
}

fn setup(cookies: CookieConfig) -> Setup {
    let clock = ManualClock::new(T0);
    let key = [5u8; 32];
    let verifier = Verifier::builder()
        .issuer("i")
        .audience("a")
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k", Algorithm::HS256, &key).unwrap())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [6; 32]).unwrap())).unwrap();
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock.clone())
        .cookie(cookies.session_name())
        .build()
        .unwrap();
    let issuer = Issuer::builder()
        .issuer("i")
        .audience("a")
        .signing_key(SigningKey::hmac("k", Algorithm::HS256, &key).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let secret = TotpSecret::generate().unwrap();
    let factors = Arc::new(MemoryFactors::new());
    factors.insert(
        "alice",
        TotpFactor::new(secret.clone(), recovery::generate().unwrap().1),
    );
    let completion = Completion::builder()
        .guard(guard.clone())
        .issuer(issuer)
        .store(MemoryStore::new())
        .accounts(PlainAccounts::new(&[("alice", "pw")]))
        .factors(factors)
        .cookies(cookies)
        .build()
        .unwrap();
    Setup {
        clock,
        guard,
        completion,
        secret,
    }
}

fn post(path: &str, body: &str) -> Request<Full<bytes::Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::from(body.to_owned()))
        .unwrap()
}

fn set_cookies<B>(res: &Response<B>) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
}

#[tokio::test]
async fn partial_cookie_to_verify_then_session_cookie_to_the_app_then_cleared() {
    let s = setup(CookieConfig::new());

    // Login: the partial token comes as an HttpOnly cookie scoped to the verify path.
    let res = s
        .completion
        .login()
        .oneshot(post(
            "/auth/login",
            r#"{"username":"alice","password":"pw"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 1);
    let partial = &cookies[0];
    assert!(partial.starts_with("__Secure-stepup-partial="), "{partial}");
    assert!(partial.ends_with("; Path=/auth; Max-Age=300; HttpOnly; Secure; SameSite=Strict"));
    let partial_token = cookie_value(partial).to_owned();

    // Verify with the cookie alone (no token in the body or header).
    let code = totp::code_at(&s.secret, totp::step_at(T0));
    let mut req = post("/auth/mfa/verify", &format!(r#"{{"code":"{code}"}}"#));
    req.headers_mut().insert(
        COOKIE,
        format!("__Secure-stepup-partial={partial_token}")
            .parse()
            .unwrap(),
    );
    let res = s.completion.verify().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookies = set_cookies(&res);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-stepup-session="))
        .expect("a session cookie");
    assert!(session.ends_with("; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=Strict"));
    assert!(
        cookies.contains(
            &"__Secure-stepup-partial=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
                .to_owned()
        ),
        "the partial cookie is cleared: {cookies:?}"
    );
    let refresh_cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Secure-stepup-refresh="))
        .expect("a refresh cookie");
    assert!(
        refresh_cookie.ends_with("; Path=/auth; Max-Age=86400; HttpOnly; Secure; SameSite=Strict"),
        "{refresh_cookie}"
    );
    let body: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["refresh_token"], cookie_value(refresh_cookie));

    // Refresh with the cookie alone (an empty JSON body): both cookies are replaced, the
    // family's end is kept.
    s.clock.advance(100);
    let mut req = post("/auth/refresh", "{}");
    req.headers_mut().insert(
        COOKIE,
        format!("__Secure-stepup-refresh={}", cookie_value(refresh_cookie))
            .parse()
            .unwrap(),
    );
    let res = s.completion.refresh().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rotated = set_cookies(&res);
    assert!(rotated
        .iter()
        .any(|c| c.starts_with("__Host-stepup-session=")));
    let refresh_cookie = rotated
        .iter()
        .find(|c| c.starts_with("__Secure-stepup-refresh="))
        .expect("a new refresh cookie")
        .clone();
    assert!(
        refresh_cookie.contains("; Max-Age=86300;"),
        "{refresh_cookie}"
    );
    let refresh = cookie_value(&refresh_cookie).to_owned();
    // Without body token or cookie: invalid_grant.
    let res = s
        .completion
        .refresh()
        .oneshot(post("/auth/refresh", "{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The layer reads the session cookie.
    let app = s
        .guard
        .require(Policy::authenticated())
        .unwrap()
        .layer(service_fn(|req: Request<String>| async move {
            let sub = req.extensions().get::<Claims>().unwrap().sub().to_owned();
            Ok::<_, std::convert::Infallible>(Response::new(sub))
        }));
    let req = Request::get("/api/me")
        .header(
            COOKIE,
            format!("theme=x; __Host-stepup-session={}", cookie_value(session)),
        )
        .body(String::new())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The partial cookie is no session.
    let req = Request::get("/api/me")
        .header(COOKIE, format!("__Host-stepup-session={partial_token}"))
        .body(String::new())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Logout with the refresh cookie alone revokes the family and clears both cookies.
    let access = body["access_token"].as_str().unwrap();
    let claims = s.guard.verifier().verify(access, T0).unwrap().claims;
    let mut req = post("/auth/logout", "{}");
    req.headers_mut().insert(
        COOKIE,
        format!("__Secure-stepup-refresh={refresh}")
            .parse()
            .unwrap(),
    );
    req.extensions_mut().insert(claims);
    let res = s.completion.logout().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        set_cookies(&res),
        [
            "__Host-stepup-session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
            "__Secure-stepup-refresh=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        ]
    );
    let res = s
        .completion
        .refresh()
        .oneshot(post(
            "/auth/refresh",
            &format!(r#"{{"refresh_token":"{refresh}"}}"#),
        ))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "the family is revoked"
    );
}

#[tokio::test]
async fn insecure_http_cookies_are_an_explicit_opt_in_without_prefixes() {
    let s = setup(CookieConfig::new().allow_insecure_http_for_testing());
    let res = s
        .completion
        .login()
        .oneshot(post(
            "/auth/login",
            r#"{"username":"alice","password":"pw"}"#,
        ))
        .await
        .unwrap();
    let cookies = set_cookies(&res);
    assert!(cookies[0].starts_with("stepup-partial="));
    assert!(!cookies[0].contains("Secure"));
    assert!(cookies[0].contains("HttpOnly"));
}

#[tokio::test]
async fn endpoints_answer_405_to_other_methods() {
    let s = setup(CookieConfig::new());
    let req = Request::builder()
        .method(Method::GET)
        .uri("/auth/login")
        .body(Full::<bytes::Bytes>::default())
        .unwrap();
    let res = s.completion.login().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
    // The sessions endpoints serve GET and DELETE, and say so.
    let c = &s.completion;
    for (endpoint, wrong, allow) in [
        (c.sessions(), Method::POST, "GET"),
        (c.sessions(), Method::DELETE, "GET"),
        (c.end_session(), Method::GET, "DELETE"),
        (c.end_session(), Method::POST, "DELETE"),
    ] {
        let req = Request::builder()
            .method(wrong.clone())
            .uri("/auth/sessions/abc")
            .body(Full::<bytes::Bytes>::default())
            .unwrap();
        let res = endpoint.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{wrong}");
        assert_eq!(res.headers()["allow"], allow, "{wrong}");
        let (_, error) = error_of(res).await;
        assert_eq!(error, "invalid_request");
    }
}

/// Hostile spellings of a credential: `Authorization` values (each vector one request's
/// headers) carrying `token`, and `Cookie` values for a cookie named `name`.
fn hostile_authorization(token: &str) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let bearer = format!("Bearer {token}").into_bytes();
    let mut not_utf8 = b"Bearer \xff".to_vec();
    not_utf8.extend_from_slice(token.as_bytes());
    vec![
        ("two headers", vec![bearer.clone(), bearer]),
        ("not UTF-8", vec![not_utf8]),
        ("no token", vec![b"Bearer".to_vec()]),
        ("only spaces", vec![b"Bearer   ".to_vec()]),
        (
            "trailing space",
            vec![format!("Bearer {token} ").into_bytes()],
        ),
        (
            "a space inside",
            vec![format!("Bearer {token} x").into_bytes()],
        ),
        (
            "a quote inside",
            vec![format!("Bearer {token}\"").into_bytes()],
        ),
        (
            "over the length cap",
            vec![format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1)).into_bytes()],
        ),
    ]
}

fn hostile_cookies(name: &str, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("two cookies", format!("{name}={token}; {name}={token}")),
        ("empty", format!("{name}=")),
        ("a space inside", format!("{name}={token} x")),
        (
            "over the length cap",
            format!("{name}={}", "a".repeat(MAX_TOKEN_LEN + 1)),
        ),
    ]
}

fn with_credentials(
    mut req: Request<Full<Bytes>>,
    auth: &[Vec<u8>],
    cookie: &str,
) -> Request<Full<Bytes>> {
    for value in auth {
        req.headers_mut()
            .append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
    }
    if !cookie.is_empty() {
        req.headers_mut()
            .append(COOKIE, HeaderValue::from_str(cookie).unwrap());
    }
    req
}

async fn error_of<B>(res: Response<B>) -> (StatusCode, String)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The layer and the verify endpoint find credentials with one parser: on the same
/// hostile `Authorization` headers and cookies both refuse (the layer `401
/// invalid_token`, verify `400` with one of its documented errors), neither skips a
/// malformed header for the valid cookie sent beside it, and a refused verify costs
/// nothing; both accept the same lenient spelling (`bearer`, two spaces).
#[tokio::test]
async fn layer_and_verify_endpoint_agree_on_hostile_credentials() {
    let s = setup(CookieConfig::new());
    let names = CookieNames::SECURE;
    let alice = r#"{"username":"alice","password":"pw"}"#;
    let res = s
        .completion
        .login()
        .oneshot(post("/auth/login", alice))
        .await
        .unwrap();
    let partial = cookie_value(&set_cookies(&res)[0]).to_owned();
    let code = |at: u64| totp::code_at(&s.secret, totp::step_at(at));
    let verify_body = |at: u64| format!(r#"{{"code":"{}"}}"#, code(at));
    let app = s
        .guard
        .require(Policy::authenticated())
        .unwrap()
        .layer(service_fn(|_req: Request<Full<Bytes>>| async move {
            Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let get = || {
        Request::get("/api/me")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    // An access token of alice's, from a first verify.
    let res = s
        .completion
        .verify()
        .oneshot(with_credentials(
            post("/auth/mfa/verify", &verify_body(T0)),
            &[format!("Bearer {partial}").into_bytes()],
            "",
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    s.clock.advance(30);
    let res = s
        .completion
        .login()
        .oneshot(post("/auth/login", alice))
        .await
        .unwrap();
    let partial = cookie_value(&set_cookies(&res)[0]).to_owned();
    let (session_cookie, partial_cookie) = (
        format!("{}={access}", names.session),
        format!("{}={partial}", names.partial),
    );
    let verify_errors = ["mfa_token_invalid", "invalid_request"];

    for ((what, for_layer), (_, for_verify)) in hostile_authorization(&access)
        .into_iter()
        .zip(hostile_authorization(&partial))
    {
        let res = app
            .clone()
            .oneshot(with_credentials(get(), &for_layer, &session_cookie));
        let (status, error) = error_of(res.await.unwrap()).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "layer, {what}"
        );
        let req = post("/auth/mfa/verify", &verify_body(T0 + 30));
        let res =
            s.completion
                .verify()
                .oneshot(with_credentials(req, &for_verify, &partial_cookie));
        let (status, error) = error_of(res.await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "verify, {what}: {error}");
        assert!(
            verify_errors.contains(&error.as_str()),
            "verify, {what}: {error}"
        );
    }
    for ((what, for_layer), (_, for_verify)) in hostile_cookies(names.session, &access)
        .into_iter()
        .zip(hostile_cookies(names.partial, &partial))
    {
        let res = app
            .clone()
            .oneshot(with_credentials(get(), &[], &for_layer));
        let (status, error) = error_of(res.await.unwrap()).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "layer, {what}"
        );
        let req = post("/auth/mfa/verify", &verify_body(T0 + 30));
        let res = s
            .completion
            .verify()
            .oneshot(with_credentials(req, &[], &for_verify));
        let (status, error) = error_of(res.await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "verify, {what}: {error}");
        assert!(
            verify_errors.contains(&error.as_str()),
            "verify, {what}: {error}"
        );
    }

    // The same lenient spelling passes both; the refusals above spent nothing.
    let lenient = |token: &str| vec![format!("bearer  {token}").into_bytes()];
    let res = app
        .oneshot(with_credentials(get(), &lenient(&access), ""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let req = post("/auth/mfa/verify", &verify_body(T0 + 30));
    let res = s
        .completion
        .verify()
        .oneshot(with_credentials(req, &lenient(&partial), ""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// The order in which an endpoint answers, now that the body is read and checked once
/// before dispatch: `405` before anything about the body; enroll's content type before
/// its caller; logout's and confirm's caller (`401`) before their body; a body's content
/// type before its declared length.
#[tokio::test]
async fn the_body_is_judged_after_the_method_and_the_caller() {
    let s = setup(CookieConfig::new());
    let c = &s.completion;
    let raw = |method: Method, content_type: Option<&str>, length: Option<&str>, body: &str| {
        let mut req = Request::builder().method(method).uri("/auth/x");
        if let Some(v) = content_type {
            req = req.header("content-type", v);
        }
        if let Some(v) = length {
            req = req.header("content-length", v);
        }
        req.body(Full::<Bytes>::from(body.to_owned())).unwrap()
    };
    let huge = Some("1000000000");
    let cases = [
        // A GET with a bad body and no caller: 405.
        (
            c.logout(),
            raw(Method::GET, None, huge, "{"),
            405,
            "invalid_request",
        ),
        (
            c.login(),
            raw(Method::PUT, Some("text/plain"), huge, "{"),
            405,
            "invalid_request",
        ),
        // No caller: 401 before the content type, the length or the JSON.
        (
            c.logout(),
            raw(Method::POST, None, huge, "{"),
            401,
            "unauthorized",
        ),
        (
            c.enroll_confirm(),
            raw(Method::POST, Some("text/plain"), None, "{"),
            401,
            "unauthorized",
        ),
        // Enroll reads no body but checks the content type first.
        (
            c.enroll(),
            raw(Method::POST, None, None, ""),
            400,
            "invalid_request",
        ),
        (
            c.enroll(),
            raw(Method::POST, Some("application/json"), None, ""),
            401,
            "unauthorized",
        ),
        // The content type before the declared length, the length before the JSON.
        (
            c.login(),
            raw(Method::POST, None, huge, "{"),
            400,
            "invalid_request",
        ),
        (
            c.refresh(),
            raw(Method::POST, Some("application/json"), huge, "{"),
            413,
            "invalid_request",
        ),
        (
            c.verify(),
            raw(Method::POST, Some("application/json"), None, "{"),
            400,
            "invalid_request",
        ),
        // Ending a session reads no body: its caller first, then the content type.
        (
            c.end_session(),
            raw(Method::DELETE, None, None, ""),
            401,
            "unauthorized",
        ),
        (
            c.sessions(),
            raw(Method::GET, None, huge, "{"),
            401,
            "unauthorized",
        ),
    ];
    for (i, (endpoint, req, status, error)) in cases.into_iter().enumerate() {
        let (got, got_error) = error_of(endpoint.oneshot(req).await.unwrap()).await;
        assert_eq!(
            (got.as_u16(), got_error.as_str()),
            (status, error),
            "case {i}"
        );
    }
}
