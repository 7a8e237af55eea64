//! Cookie transport: the partial cookie goes to the verify endpoint only, verify swaps it
//! for a session cookie, the layer reads the session cookie, logout clears it.

use std::sync::Arc;

use http::header::{COOKIE, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, ServiceExt};
use tower_stepup::complete::{Completion, CookieConfig, MemoryFactors, TotpFactor};
use tower_stepup::factor::{recovery, totp, TotpSecret};
use tower_stepup::store::MemoryStore;
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
    assert!(partial
        .ends_with("; Path=/auth/mfa/verify; Max-Age=300; HttpOnly; Secure; SameSite=Strict"));
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
    assert!(cookies.contains(
        &"__Secure-stepup-partial=; Path=/auth/mfa/verify; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
            .to_owned()
    ), "the partial cookie is cleared: {cookies:?}");
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
}
