//! Target `credential`: arbitrary `Authorization` and `Cookie` headers (and valid tokens,
//! edited or not, in every spelling) sent through a guard-wrapped service.
//!
//! Oracles:
//! - no panic; the answer is 200 (passed, or a gRPC denial) or a row of the denial table
//!   with its status (401, 403, 414), never 500; its `Denial`, JSON `error` and
//!   `WWW-Authenticate` agree with the row;
//! - a guard whose verifier caches and one without give the same answer, at the time the
//!   cache was filled and at another one;
//! - claims handed to the inner service are those of a genuine, unexpired access token of
//!   the fixture (nothing forged passes), and meet the route's policy;
//! - a step-up denial's mfa_token opens and binds the request's method and path;
//! - one plain `Authorization: Bearer <valid token>` on an authenticated route passes with
//!   exactly that token's claims.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{
    HeaderName, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tower_stepup::{Claims, Denial, DenialKind, Guard, ManualClock, Policy, RouteTable, StepUp};

use super::fixture::{self, block_on, Tokens, ACCESS_TTL, LEEWAY, T0};
use super::input::{mutate, Input};

/// The inner service: 200, with the claims it was handed in the response extensions.
#[derive(Clone)]
pub struct Echo;

/// Marks a response of the inner service.
#[derive(Clone, Debug, PartialEq)]
pub struct Passed(pub Option<Claims>);

impl<B> Service<Request<B>> for Echo {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut res = Response::new(String::from("inner"));
        res.extensions_mut()
            .insert(Passed(req.extensions().get::<Claims>().cloned()));
        ready(Ok(res))
    }
}

/// The routes of the target.
pub fn table() -> RouteTable {
    let step_up = StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300));
    RouteTable::new()
        .route(Method::GET, "/public", Policy::public())
        .route(Method::GET, "/me", Policy::authenticated())
        .route(Method::GET, "/billing", Policy::step_up(step_up.clone()))
        .route(
            Method::GET,
            "/scoped",
            Policy::authenticated().scopes(["billing:read"]),
        )
        .route(Method::POST, "/verify", Policy::mfa_verify())
        .route(
            Method::GET,
            "/acr",
            Policy::step_up(StepUp::new().acr_values(["urn:gold"])),
        )
        .any("/deep/{*rest}", Policy::step_up(step_up))
}

/// What the target sends.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Headers, in order (values that are no header value are dropped).
    pub headers: Vec<(HeaderName, Vec<u8>)>,
}

impl Spec {
    /// Builds the request.
    pub fn request(&self) -> Option<Request<String>> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .body(String::new())
            .ok()?;
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                req.headers_mut().append(name.clone(), v);
            }
        }
        Some(req)
    }

    /// Whether the guard answers this request's denials the gRPC way: a `POST` with a
    /// gRPC content type (any other method gets the HTTP denial).
    fn is_grpc(&self) -> bool {
        self.method == Method::POST
            && self.headers.iter().any(|(n, v)| {
                *n == CONTENT_TYPE
                    && v.len() >= 16
                    && v[..16].eq_ignore_ascii_case(b"application/grpc")
                    && matches!(v.get(16), None | Some(b'+' | b';'))
            })
    }
}

fn token_text(input: &mut Input<'_>, tokens: &Tokens) -> String {
    match input.choose(4) {
        0 => tokens.all()[input.choose(5)].to_owned(),
        1 | 2 => mutate(tokens.all()[input.choose(5)], input, 3),
        _ => input.text(),
    }
}

fn header_value(input: &mut Input<'_>, tokens: &Tokens, name: &HeaderName) -> Vec<u8> {
    if input.choose(4) == 0 {
        return input.chunk().to_vec();
    }
    let token = token_text(input, tokens);
    if *name == COOKIE {
        let cookie = input.pick(&["sess", "sess", "SESS", "sess ", " sess", "x"]);
        let quote = if input.byte() & 3 == 0 { "\"" } else { "" };
        let before = input.pick(&["", "", "theme=dark; ", "sess=; ", ";;", "a"]);
        let after = input.pick(&["", "", "; other=1", "; sess=x", ";", " "]);
        format!("{before}{cookie}={quote}{token}{quote}{after}").into_bytes()
    } else {
        let prefix = input.pick(&[
            "Bearer ", "Bearer ", "Bearer ", "bearer ", "BEARER  ", "Bearer\t", "Basic ", "",
            "Bearer", "Token ", " Bearer ",
        ]);
        let suffix = input.pick(&["", "", "", " ", "=", "==", ",", "\"", ".", "\t"]);
        format!("{prefix}{token}{suffix}").into_bytes()
    }
}

/// Reads a request from the input.
pub fn spec(input: &mut Input<'_>, tokens: &Tokens) -> Spec {
    let routes = [
        (Method::GET, "/public"),
        (Method::GET, "/me"),
        (Method::GET, "/billing"),
        (Method::GET, "/scoped"),
        (Method::POST, "/verify"),
        (Method::GET, "/acr"),
        (Method::GET, "/unlisted"),
        (Method::HEAD, "/me"),
        (Method::DELETE, "/billing"),
        // A POST: the one method whose denials may take the gRPC form.
        (Method::POST, "/deep/x"),
    ];
    let (method, path) = routes[input.choose(routes.len())].clone();
    let path = if input.choose(8) == 0 {
        // A long step-up path: 414 once it cannot be bound into an mfa_token.
        format!("/deep/{}", "a".repeat(usize::from(input.u16() % 6_000)))
    } else {
        path.to_owned()
    };
    let mut headers = Vec::new();
    match input.choose(5) {
        0 => headers.push((CONTENT_TYPE, b"application/grpc".to_vec())),
        1 => headers.push((CONTENT_TYPE, input.chunk().to_vec())),
        _ => {}
    }
    for _ in 0..input.choose(4) {
        let name = match input.choose(5) {
            0..=2 => AUTHORIZATION,
            3 => COOKIE,
            _ => HeaderName::from_static("x-other"),
        };
        let value = header_value(input, tokens, &name);
        headers.push((name, value));
    }
    Spec {
        method,
        path,
        headers,
    }
}

fn time(input: &mut Input<'_>) -> u64 {
    match input.choose(6) {
        0..=2 => T0,
        3 => T0 + ACCESS_TTL - LEEWAY + u64::from(input.byte() % 16),
        4 => T0 + u64::from(input.u16() % 1_000),
        _ => T0 - u64::from(input.u16()),
    }
}

/// A guard on its own clock: (clock, guard).
pub fn guard(cache: usize) -> (ManualClock, Guard) {
    let clock = ManualClock::new(T0);
    let guard = fixture::guard(&clock, cache);
    (clock, guard)
}

/// One fuzz input. Returns the status of the last answer (`None`: no request).
pub fn run(data: &[u8]) -> Option<u16> {
    let mut input = Input::new(data);
    let tokens = Tokens::shared();
    let spec = spec(&mut input, tokens);
    let t1 = time(&mut input);
    let t2 = time(&mut input);
    spec.request()?;
    let (clock_c, cached) = guard(8);
    let (clock_p, plain) = guard(0);
    // Fill the cache at t1, then ask both at t2.
    clock_c.set(t1);
    let first = answer(&cached, &spec);
    check(&first, &spec, tokens, t1);
    clock_c.set(t2);
    clock_p.set(t2);
    let a = answer(&cached, &spec);
    let b = answer(&plain, &spec);
    check(&a, &spec, tokens, t2);
    check(&b, &spec, tokens, t2);
    assert_eq!(
        a.comparable(),
        b.comparable(),
        "the cache changed the answer"
    );
    if t1 == t2 {
        assert_eq!(
            first.comparable(),
            a.comparable(),
            "asked twice, answered twice"
        );
    }
    Some(a.status.as_u16())
}

/// The answer to one request.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// The inner service's marker, if it was reached.
    pub passed: Option<Passed>,
    /// The layer's denial, if any.
    pub denial: Option<Denial>,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body as JSON (Null when empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// Everything but the random parts (the mfa_token).
    pub fn comparable(
        &self,
    ) -> (
        StatusCode,
        Option<Passed>,
        Option<DenialKind>,
        Vec<String>,
        Value,
    ) {
        let mut body = self.body.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("mfa_token");
        }
        let headers = ["www-authenticate", "grpc-status", "grpc-message"]
            .iter()
            .map(|h| {
                self.headers
                    .get(*h)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default()
            })
            .collect();
        (
            self.status,
            self.passed.clone(),
            self.denial.as_ref().map(Denial::kind),
            headers,
            body,
        )
    }
}

/// Sends `spec` through `guard`'s route table.
pub fn answer(guard: &Guard, spec: &Spec) -> Answer {
    let layer = guard
        .route_table(table())
        .expect("the fixed table compiles");
    let mut svc = layer.layer(Echo);
    let req = spec.request().expect("request");
    let res = block_on(svc.call(req)).expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = block_on(body.collect()).expect("body").to_bytes();
    Answer {
        status: parts.status,
        passed: parts.extensions.get::<Passed>().cloned(),
        denial: parts.extensions.get::<Denial>().cloned(),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The oracles on one answer at time `now`.
pub fn check(a: &Answer, spec: &Spec, tokens: &Tokens, now: u64) {
    // Every fixture token that is a valid access token at `now` (none has `nbf`; the
    // "expired" one is valid early enough).
    let genuine: Vec<&Claims> = Tokens::access_claims()
        .iter()
        .filter(|c| now < c.exp().saturating_add(LEEWAY))
        .collect();
    let path = spec.path.as_str();
    assert_ne!(
        a.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 for {spec:?}"
    );
    if let Some(Passed(claims)) = &a.passed {
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.denial.is_none());
        if let Some(c) = claims {
            assert!(
                genuine.contains(&c),
                "claims of no genuine token passed: {c:?} for {spec:?}"
            );
        }
        let route = (&spec.method, path);
        let needs_claims = !matches!(
            route,
            (&Method::GET, "/public") | (&Method::POST, "/verify")
        );
        if needs_claims {
            let c = claims
                .as_ref()
                .unwrap_or_else(|| panic!("passed without claims: {spec:?}"));
            let get = spec.method == Method::GET;
            // `/deep/{*rest}` needs a non-empty rest: `/deep/` itself is unlisted.
            if (get && path == "/billing")
                || path.len() > "/deep/".len() && path.starts_with("/deep/")
            {
                assert!(c.has_amr("mfa"));
                let at = c.auth_time().expect("auth_time");
                assert!(at <= now + LEEWAY && now.saturating_sub(at) <= 300);
            }
            if get && path == "/scoped" {
                assert!(c.has_scope("billing:read"));
            }
            if get && path == "/acr" {
                assert_eq!(c.acr(), Some("urn:gold"));
            }
        }
        if route == (&Method::POST, "/verify") {
            assert_eq!(claims, &None, "the verify route hands on no claims");
        }
    } else if spec.is_grpc() {
        assert_eq!(a.status, StatusCode::OK, "gRPC denials are HTTP 200");
        assert_eq!(
            a.headers.get(CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "a gRPC denial may carry an mfa_token: never cached"
        );
        let denial = a.denial.as_ref().expect("a gRPC denial carries its Denial");
        let row = denial.kind().row();
        let code = a.headers.get("grpc-status").expect("grpc-status");
        assert_eq!(code.as_bytes(), row.grpc_status.to_string().as_bytes());
        assert_ne!(denial.kind(), DenialKind::ServerError);
    } else {
        let denial = a
            .denial
            .as_ref()
            .unwrap_or_else(|| panic!("neither passed nor denied: {a:?}"));
        let row = denial.kind().row();
        assert_eq!(a.status, row.status, "{denial:?}");
        assert!(
            matches!(a.status.as_u16(), 401 | 403 | 414),
            "status {} for {spec:?}",
            a.status
        );
        assert_eq!(a.body["error"], row.error);
        assert_eq!(a.headers.contains_key(WWW_AUTHENTICATE), row.challenge);
        assert_eq!(
            a.headers.get(CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "a denial is never cached"
        );
        if path == "/public" && spec.method == Method::GET {
            assert_eq!(
                denial.kind(),
                DenialKind::MfaIncomplete,
                "public route denied"
            );
        }
        if denial.kind() == DenialKind::MfaRequired {
            let token = a.body["mfa_token"].as_str().expect("mfa_token in the body");
            assert_eq!(denial.mfa_token(), Some(token));
            let claims = fixture::sealer()
                .open(token, now)
                .expect("the mfa_token opens");
            assert_eq!(claims.path, path);
            assert_eq!(claims.method, spec.method.as_str());
            assert!(genuine.iter().any(|c| c.sub() == claims.sub));
        }
    }
    // One plain bearer header with a genuine token: exactly its claims, on /me.
    if let [(name, value)] = spec.headers.as_slice() {
        let all = tokens.all();
        let canonical = all[..3]
            .iter()
            .find(|t| *name == AUTHORIZATION && *value == format!("Bearer {t}").into_bytes());
        if let (Some(t), true) = (canonical, spec.method == Method::GET && path == "/me") {
            let expected = fixture::verifier(0).verify(t, now).ok().map(|v| v.claims);
            if expected.is_some() {
                assert_eq!(a.passed, Some(Passed(expected)), "a genuine token refused");
            } else {
                assert_eq!(
                    a.denial.as_ref().map(Denial::kind),
                    Some(DenialKind::ExpiredToken)
                );
            }
        }
    }
}
