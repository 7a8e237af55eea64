//! Target `complete_body`: a short session of requests against the completion endpoints
//! (login, verify, enroll, confirm, refresh, logout) behind the guard, as an application
//! mounts them, with arbitrary bodies, content types, lengths, credentials and clock
//! steps. Each input starts from a fresh store, so it replays exactly.
//!
//! Oracles:
//! - no panic; never a 5xx; every status is one the endpoint documents, and every error
//!   body is the row of its `ErrorKind` (or `Denial`): status and `error` agree;
//! - a 2xx needs a JSON content type (`application/json`, parameters allowed);
//! - login succeeds only with the right password; verify only with a genuine challenge
//!   token (one the server issued), a right code, each token once, TOTP steps strictly
//!   increasing per user, each recovery code once; the access token it returns is a
//!   fresh second-factor session of that user;
//! - refresh succeeds only with an issued, unspent refresh token of a live family.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower_layer::Layer;
use tower_service::Service;
use tower_stepup::complete::{
    Account, Accounts, BackendFuture, Completion, CookieConfig, Endpoint, EndpointFuture,
    ErrorKind, MemoryFactors, TotpFactor,
};
use tower_stepup::factor::{recovery, totp, TotpSecret};
use tower_stepup::store::{MemoryStore, REFRESH_HISTORY};
use tower_stepup::token::TokenKind;
use tower_stepup::{
    Denial, Guard, ManualClock, Policy, RouteTable, Sealer, StepUp, StepUpService, Verifier,
};

use super::fixture::{self, block_on, Tokens, T0};
use super::input::{mutate, Input};

/// alice's TOTP secret.
pub const ALICE_SECRET: [u8; 20] = *b"fuzz-totp-secret-20b";
/// alice's recovery codes.
pub const ALICE_RECOVERY: [&str; 3] = [
    "ABCD-EFGH-IJKL-MNOP",
    "QRST-UVWX-YZ23-4567",
    "MFRG-GZDF-MZTW-Q2LK",
];
/// Largest body the endpoints read.
pub const LIMIT: usize = tower_stepup::complete::DEFAULT_BODY_LIMIT;

struct PlainAccounts;

impl Accounts for PlainAccounts {
    fn authenticate<'a>(&'a self, u: &'a str, p: &'a str) -> BackendFuture<'a, Option<Account>> {
        let ok = matches!((u, p), ("alice" | "bob", "pw"));
        let account = ok.then(|| Account::new(u).with_scope("me"));
        Box::pin(async move { Ok(account) })
    }
}

/// Mounts the endpoints by path, as an application's router would.
#[derive(Clone)]
pub struct Dispatch {
    completion: Completion,
}

impl Service<Request<Full<Bytes>>> for Dispatch {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> EndpointFuture {
        let c = &self.completion;
        let mut endpoint: Endpoint = match req.uri().path() {
            "/auth/login" => c.login(),
            "/auth/mfa/verify" => c.verify(),
            "/auth/mfa/enroll" => c.enroll(),
            "/auth/mfa/enroll/confirm" => c.enroll_confirm(),
            "/auth/refresh" => c.refresh(),
            "/auth/logout" => c.logout(),
            _ => {
                return Box::pin(std::future::ready(Ok(Response::new(Full::from("app")))));
            }
        };
        endpoint.call(req)
    }
}

/// The endpoints of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/mfa/verify`.
    Verify,
    /// `POST /auth/mfa/enroll`.
    Enroll,
    /// `POST /auth/mfa/enroll/confirm`.
    Confirm,
    /// `POST /auth/refresh`.
    Refresh,
    /// `POST /auth/logout`.
    Logout,
    /// `GET /billing`, a step-up route: where mfa_tokens come from.
    Billing,
}

impl Target {
    fn path(self) -> &'static str {
        match self {
            Target::Login => "/auth/login",
            Target::Verify => "/auth/mfa/verify",
            Target::Enroll => "/auth/mfa/enroll",
            Target::Confirm => "/auth/mfa/enroll/confirm",
            Target::Refresh => "/auth/refresh",
            Target::Logout => "/auth/logout",
            Target::Billing => "/billing",
        }
    }

    /// The statuses it may answer (the guard's included): login throttling (429), a
    /// first enrollment without a recent sign-in (403), an enrollment confirmed already
    /// (409).
    fn statuses(self) -> &'static [u16] {
        match self {
            Target::Login => &[200, 400, 401, 405, 413, 429],
            Target::Verify => &[200, 400, 401, 404, 405, 413, 429],
            Target::Enroll => &[200, 400, 401, 403, 405],
            Target::Confirm => &[200, 400, 401, 403, 405, 409, 413, 429],
            Target::Refresh => &[200, 400, 401, 405, 413],
            Target::Logout => &[204, 400, 401, 405, 413],
            Target::Billing => &[200, 401, 403],
        }
    }
}

/// One refresh family as the harness saw it.
#[derive(Debug)]
struct Family {
    sid: Option<String>,
    started: u64,
    /// Revoked for sure (reuse, a step-up replaced its session).
    revoked: bool,
    /// A logout may have revoked it: no oracle either way.
    unknown: bool,
}

/// A fresh application and what the harness knows about its state.
pub struct World {
    clock: ManualClock,
    guard: Guard,
    sealer: Sealer,
    verifier: Verifier,
    app: StepUpService<Dispatch>,
    /// Active TOTP secrets per user.
    secrets: BTreeMap<String, TotpSecret>,
    /// Enrollments started and not yet confirmed.
    pending: BTreeMap<String, TotpSecret>,
    /// Unused recovery codes per user.
    recovery: BTreeMap<String, Vec<String>>,
    /// Challenge tokens the server (or the fixture, with the real keys) issued.
    challenges: Vec<String>,
    /// Challenge tokens already completed.
    completed: BTreeSet<String>,
    /// Last accepted TOTP step per user.
    last_step: BTreeMap<String, u64>,
    access: Vec<String>,
    /// Successful enrollments: each renders a QR code (most of a run's time), so an
    /// input gets one and further enroll requests become confirms.
    enrolls: u32,
    /// Refresh tokens: family index.
    refresh: BTreeMap<String, usize>,
    /// The same, in the order they were issued (what the input picks from).
    refresh_order: Vec<String>,
    spent: BTreeSet<String>,
    families: Vec<Family>,
}

impl World {
    /// A fresh application at [`T0`].
    pub fn new() -> Self {
        let clock = ManualClock::new(T0);
        let guard = fixture::guard(&clock, 8);
        let secret = TotpSecret::from_bytes(ALICE_SECRET.to_vec()).expect("secret");
        let factors = Arc::new(MemoryFactors::new());
        factors.insert(
            "alice",
            TotpFactor::new(
                secret.clone(),
                ALICE_RECOVERY.iter().map(|c| recovery::hash(c)).collect(),
            ),
        );
        let completion = Completion::builder()
            .guard(guard.clone())
            .issuer(fixture::issuer(&clock))
            .store(MemoryStore::new())
            .accounts(PlainAccounts)
            .factors(factors)
            .cookies(CookieConfig::new().allow_insecure_http_for_testing())
            .build()
            .expect("completion");
        let step_up = StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300));
        let table = RouteTable::new()
            .any("/auth/login", Policy::public())
            .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify())
            .route(Method::POST, "/auth/mfa/enroll", Policy::authenticated())
            .route(
                Method::POST,
                "/auth/mfa/enroll/confirm",
                Policy::authenticated(),
            )
            .any("/auth/refresh", Policy::public())
            .route(Method::POST, "/auth/logout", Policy::authenticated())
            .route(Method::GET, "/billing", Policy::step_up(step_up));
        let app = guard
            .route_table(table)
            .expect("table")
            .layer(Dispatch { completion });
        let tokens = Tokens::issue();
        let mut challenges = vec![tokens.partial.clone(), super::mfa_token::genuine(false)];
        challenges.push(super::mfa_token::genuine(true));
        Self {
            sealer: guard
                .sealer()
                .expect("a local issuer's guard has a sealer")
                .clone(),
            verifier: guard.verifier().clone(),
            guard,
            clock,
            app,
            secrets: BTreeMap::from([("alice".to_owned(), secret)]),
            pending: BTreeMap::new(),
            recovery: BTreeMap::from([(
                "alice".to_owned(),
                ALICE_RECOVERY.iter().map(|c| (*c).to_owned()).collect(),
            )]),
            challenges,
            completed: BTreeSet::new(),
            last_step: BTreeMap::new(),
            access: vec![tokens.access_pwd.clone(), tokens.access_mfa.clone()],
            enrolls: 0,
            refresh: BTreeMap::new(),
            refresh_order: Vec::new(),
            spent: BTreeSet::new(),
            families: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.guard.clock().now()
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// How the request carries a credential.
#[derive(Clone, Debug, PartialEq)]
enum Credential {
    None,
    Bearer(String),
    PartialCookie(String),
    Raw(Vec<u8>),
}

/// The request the input describes, and what the harness knows it carries.
pub struct Step {
    target: Target,
    method: Method,
    content_type: Option<Vec<u8>>,
    content_length: Option<Vec<u8>>,
    credential: Credential,
    body: Vec<u8>,
    /// The JSON fields the body was built with, when it was built (not raw bytes).
    fields: Option<Value>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let body = lossy(&self.body[..self.body.len().min(300)]);
        f.debug_struct("Step")
            .field("target", &self.target)
            .field("method", &self.method)
            .field("content_type", &self.content_type.as_deref().map(lossy))
            .field("content_length", &self.content_length.as_deref().map(lossy))
            .field("credential", &self.credential)
            .field("body_len", &self.body.len())
            .field("body", &body)
            .field("fields", &self.fields)
            .finish()
    }
}

fn pick_from(input: &mut Input<'_>, pool: &[String]) -> Option<String> {
    (!pool.is_empty()).then(|| pool[input.choose(pool.len())].clone())
}

fn code(world: &World, input: &mut Input<'_>) -> String {
    let now = world.now();
    let secrets: Vec<&TotpSecret> = world
        .secrets
        .values()
        .chain(world.pending.values())
        .collect();
    match input.choose(8) {
        0..=3 if !secrets.is_empty() => {
            let s = secrets[input.choose(secrets.len())];
            let step = totp::step_at(now)
                .saturating_add(u64::from(input.byte() % 3))
                .saturating_sub(1);
            let mut c = totp::code_at(s, step);
            if input.choose(8) == 0 {
                c = format!(" {c}\t");
            }
            c
        }
        4 => "000000".to_owned(),
        5 => format!("{:06}", input.u16()),
        _ => input.text(),
    }
}

fn challenge(world: &World, input: &mut Input<'_>) -> Value {
    match input.choose(8) {
        0..=3 => pick_from(input, &world.challenges).map_or(Value::Null, Value::String),
        4 => {
            let original = pick_from(input, &world.challenges).unwrap_or_default();
            Value::String(mutate(&original, input, 3))
        }
        5 => pick_from(input, &world.access).map_or(Value::Null, Value::String),
        6 => json!(input.byte()),
        _ => Value::String(input.text()),
    }
}

/// Reads one request.
pub fn step(world: &World, input: &mut Input<'_>) -> Step {
    let target = input.pick(&[
        Target::Login,
        Target::Login,
        Target::Verify,
        Target::Verify,
        Target::Verify,
        Target::Enroll,
        Target::Confirm,
        Target::Refresh,
        Target::Logout,
        Target::Billing,
        // Enroll renders a QR code, by far the slowest step: 1 in 20.
        Target::Login,
        Target::Verify,
        Target::Verify,
        Target::Verify,
        Target::Confirm,
        Target::Refresh,
        Target::Refresh,
        Target::Logout,
        Target::Billing,
        Target::Billing,
    ]);
    let target = if target == Target::Enroll && world.enrolls > 0 {
        Target::Confirm
    } else {
        target
    };
    let method = match input.choose(12) {
        0 => Method::GET,
        1 => Method::PUT,
        _ if target == Target::Billing => Method::GET,
        _ => Method::POST,
    };
    let content_type = match input.choose(10) {
        0..=4 => Some(b"application/json".to_vec()),
        5 => Some(b"application/json; charset=utf-8".to_vec()),
        6 => Some(b"APPLICATION/JSON ".to_vec()),
        7 => None,
        8 => Some(
            input
                .pick(&[
                    &b"text/plain"[..],
                    b"application/jsonx",
                    b"application/grpc",
                    b";application/json",
                ])
                .to_vec(),
        ),
        _ => Some(input.chunk().to_vec()),
    };
    let credential = match input.choose(8) {
        0 | 1 => pick_from(input, &world.access).map_or(Credential::None, Credential::Bearer),
        2 => pick_from(input, &world.challenges).map_or(Credential::None, Credential::Bearer),
        3 => {
            pick_from(input, &world.challenges).map_or(Credential::None, Credential::PartialCookie)
        }
        4 => Credential::Raw(input.chunk().to_vec()),
        _ => Credential::None,
    };
    let (mut body, fields): (Vec<u8>, Option<Value>) = match input.choose(10) {
        0 => (input.long_chunk(4096).to_vec(), None),
        1 | 2 => {
            let user = match input.choose(4) {
                0 | 1 => Value::from("alice"),
                2 => Value::from("bob"),
                _ => Value::from(input.text()),
            };
            let password = match input.choose(3) {
                0 | 1 => Value::from("pw"),
                _ => Value::from(input.text()),
            };
            let v = json!({"username": user, "password": password});
            (v.to_string().into_bytes(), Some(v))
        }
        3..=5 => {
            let mut v = json!({});
            if input.choose(6) != 0 {
                v["mfa_token"] = challenge(world, input);
            }
            match input.choose(8) {
                0..=4 => v["code"] = Value::String(code(world, input)),
                5 => {
                    let codes: Vec<String> = world
                        .recovery
                        .values()
                        .flatten()
                        .cloned()
                        .chain(ALICE_RECOVERY.iter().map(|c| (*c).to_owned()))
                        .collect();
                    let mut c = pick_from(input, &codes).unwrap_or_default();
                    if input.byte() & 1 == 1 {
                        c = c.to_lowercase().replace('-', " ");
                    }
                    v["recovery_code"] = Value::String(c);
                }
                6 => {
                    v["code"] = Value::String(code(world, input));
                    v["recovery_code"] = Value::String(input.text());
                }
                _ => {}
            }
            (v.to_string().into_bytes(), Some(v))
        }
        6 | 7 => {
            let t = match input.choose(4) {
                0..=2 => pick_from(input, &world.refresh_order).unwrap_or_default(),
                _ => input.text(),
            };
            let v = json!({"refresh_token": t});
            (v.to_string().into_bytes(), Some(v))
        }
        8 => {
            let v = json!({"code": code(world, input)});
            (v.to_string().into_bytes(), Some(v))
        }
        _ => {
            // Valid fields with raw bytes spliced in.
            let mut b = br#"{"mfa_token":"x","code":"123456""#.to_vec();
            b.extend_from_slice(input.chunk());
            b.push(b'}');
            (b, None)
        }
    };
    if input.choose(24) == 0 {
        // Whitespace up to and past the body limit.
        let pad = LIMIT - 16 + usize::from(input.byte());
        body.splice(0..0, std::iter::repeat_n(b' ', pad));
    }
    let content_length = match input.choose(10) {
        0 => Some(body.len().to_string().into_bytes()),
        1 => Some(
            input
                .pick(&[&b"99999999"[..], b"65537", b"0", b"-1", b"1e3"])
                .to_vec(),
        ),
        2 => Some(input.chunk().to_vec()),
        _ => None,
    };
    Step {
        target,
        method,
        content_type,
        content_length,
        credential,
        body,
        fields,
    }
}

fn clock_step(input: &mut Input<'_>) -> u64 {
    match input.choose(10) {
        0..=4 => 0,
        5 => 1,
        6 => 30,
        7 => input.pick(&[299, 301, 600, 895, 905, 1_000, 86_400]),
        _ => u64::from(input.u16()),
    }
}

/// One fuzz input: up to 8 requests. Returns their statuses.
pub fn run(data: &[u8]) -> Vec<u16> {
    let mut input = Input::new(data);
    let mut world = World::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        if input.is_empty() {
            break;
        }
        let advance = clock_step(&mut input);
        world.clock.advance(advance);
        let s = step(&world, &mut input);
        statuses.push(send(&mut world, &s).status.as_u16());
    }
    statuses
}

/// The answer.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Body as JSON (Null if none).
    pub body: Value,
    /// The endpoint's error reason.
    pub kind: Option<ErrorKind>,
    /// The guard's denial.
    pub denial: Option<Denial>,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
    /// `grpc-status`, for a gRPC denial.
    pub grpc_status: Option<String>,
}

fn is_json(ct: Option<&[u8]>) -> bool {
    ct.and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Sends one request and checks the answer against what the harness knows.
pub fn send(world: &mut World, s: &Step) -> Reply {
    let mut req = Request::builder()
        .method(s.method.clone())
        .uri(s.target.path())
        .body(Full::new(Bytes::from(s.body.clone())))
        .expect("request");
    let h = req.headers_mut();
    if let Some(v) = s
        .content_type
        .as_deref()
        .and_then(|v| HeaderValue::from_bytes(v).ok())
    {
        h.insert(CONTENT_TYPE, v);
    }
    if let Some(v) = s
        .content_length
        .as_deref()
        .and_then(|v| HeaderValue::from_bytes(v).ok())
    {
        h.insert(CONTENT_LENGTH, v);
    }
    match &s.credential {
        Credential::None => {}
        Credential::Bearer(t) => {
            h.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {t}")).expect("token header"),
            );
        }
        Credential::PartialCookie(t) => {
            h.insert(
                COOKIE,
                HeaderValue::from_str(&format!("stepup-partial={t}")).expect("cookie"),
            );
        }
        Credential::Raw(v) => {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.insert(AUTHORIZATION, v);
            }
        }
    }
    let res = block_on(world.app.call(req)).expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = block_on(body.collect()).expect("body").to_bytes();
    let reply = Reply {
        status: parts.status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        kind: parts.extensions.get::<ErrorKind>().copied(),
        denial: parts.extensions.get::<Denial>().cloned(),
        cookies: parts
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
        grpc_status: parts
            .headers
            .get("grpc-status")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    check(world, s, &reply);
    reply
}

/// Whether the guard answers this request's denials the gRPC way (HTTP 200 with
/// `grpc-status`): a `POST` with `content-type: application/grpc`, `application/grpc+…`
/// or `…;…`.
fn is_grpc(method: &Method, ct: Option<&[u8]>) -> bool {
    *method == Method::POST
        && ct.is_some_and(|v| {
            v.len() >= 16
                && v[..16].eq_ignore_ascii_case(b"application/grpc")
                && matches!(v.get(16), None | Some(b'+' | b';'))
        })
}

fn check(world: &mut World, s: &Step, r: &Reply) {
    let status = r.status.as_u16();
    let grpc = is_grpc(&s.method, s.content_type.as_deref());
    if let (Some(d), true, 200) = (&r.denial, grpc, status) {
        // The guard's denial of a gRPC request: Trailers-Only, HTTP 200. (The step-up
        // answer of enroll and confirm comes from the endpoint, an HTTP service: a plain
        // 403 even then.)
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.grpc_status.as_deref(),
            Some(d.kind().row().grpc_status.to_string().as_str())
        );
        assert_ne!(d.kind(), tower_stepup::DenialKind::ServerError);
        return;
    }
    assert!(
        s.target.statuses().contains(&status),
        "{:?} answered {status}: {:?} to {s:?}",
        s.target,
        r.body
    );
    if let Some(kind) = r.kind {
        let row = kind.row();
        assert_eq!(r.status, row.status, "{kind:?}");
        assert_eq!(r.body["error"], row.error);
    } else if let Some(d) = &r.denial {
        let row = d.kind().row();
        assert_eq!(r.status, row.status, "{d:?}");
        assert_eq!(r.body["error"], row.error);
    } else {
        assert!(
            r.status.is_success(),
            "{status} with no reason: {:?}",
            r.body
        );
    }
    let now = world.now();
    if r.status.is_success() && s.target != Target::Billing {
        assert!(
            is_json(s.content_type.as_deref()),
            "{status} without a JSON content type: {s:?}"
        );
    }
    if status == 413 {
        let declared = s
            .content_length
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            s.body.len() > LIMIT || declared.is_some_and(|n| n > LIMIT as u64),
            "413 for a small body"
        );
    }
    match (s.target, status) {
        (Target::Login, 200) => login_ok(world, s, r),
        (Target::Verify, 200) => verify_ok(world, s, r, now),
        (Target::Refresh, 200) => refresh_ok(world, s, r, now),
        (Target::Refresh, _) => {
            // Presenting a spent token revokes its family.
            if let Some(t) = s.fields.as_ref().and_then(|f| f["refresh_token"].as_str()) {
                if world.spent.contains(t) && r.kind == Some(ErrorKind::InvalidGrant) {
                    if let Some(&f) = world.refresh.get(t) {
                        // Only the last REFRESH_HISTORY rotated tokens are remembered.
                        let newer = family_tokens(world, f)
                            .rev()
                            .take_while(|x| *x != t)
                            .count();
                        if newer <= REFRESH_HISTORY {
                            world.families[f].revoked = true;
                        }
                    }
                }
            }
        }
        (Target::Logout, 204) => {
            if let Some(t) = s.fields.as_ref().and_then(|f| f["refresh_token"].as_str()) {
                if let Some(&f) = world.refresh.get(t) {
                    world.families[f].unknown = true;
                }
            }
        }
        (Target::Enroll, 200) => {
            let secret = r.body["secret"].as_str().expect("secret");
            let secret = TotpSecret::from_base32(secret).expect("base32 secret");
            let user = bearer_sub(world, s).expect("enroll passed the guard with a token");
            world.pending.insert(user, secret);
            world.enrolls += 1;
        }
        (Target::Confirm, 200) => {
            let user = bearer_sub(world, s).expect("confirm passed the guard with a token");
            let secret = world.pending.remove(&user).expect("a pending enrollment");
            let code = s
                .fields
                .as_ref()
                .and_then(|f| f["code"].as_str())
                .expect("code");
            assert!(
                totp::verify(&secret, code, now).is_some(),
                "confirm took a wrong code"
            );
            world.secrets.insert(user.clone(), secret);
            let codes: Vec<String> = r.body["recovery_codes"]
                .as_array()
                .expect("recovery codes")
                .iter()
                .map(|c| c.as_str().expect("code").to_owned())
                .collect();
            world.recovery.insert(user.clone(), codes);
            world.last_step.remove(&user);
        }
        (Target::Billing, 403) => {
            if let Some(t) = r.body["mfa_token"].as_str() {
                world.challenges.push(t.to_owned());
            }
        }
        _ => {}
    }
}

fn bearer_sub(world: &World, s: &Step) -> Option<String> {
    match &s.credential {
        Credential::Bearer(t) => world
            .verifier
            .verify(t, world.now())
            .ok()
            .map(|v| v.claims.sub().to_owned()),
        _ => None,
    }
}

fn login_ok(world: &mut World, s: &Step, r: &Reply) {
    let f = s.fields.as_ref().expect("login succeeded on a raw body");
    let user = f["username"].as_str().expect("username");
    assert!(
        matches!(user, "alice" | "bob") && f["password"] == "pw",
        "login accepted {f}"
    );
    if world.secrets.contains_key(user) {
        assert_eq!(r.body["status"], "mfa_required", "{user} has a factor");
        let partial = r.body["partial_token"].as_str().expect("partial token");
        let v = world
            .verifier
            .verify(partial, world.now())
            .expect("partial verifies");
        assert_eq!(v.kind, TokenKind::Partial);
        assert_eq!(v.claims.sub(), user);
        world.challenges.push(partial.to_owned());
    } else {
        session(world, r, user, false);
    }
}

/// Takes in a token response (login without a factor, verify, refresh).
fn session(world: &mut World, r: &Reply, user: &str, stepped_up: bool) -> Option<usize> {
    let access = r.body["access_token"].as_str().expect("access token");
    let v = world
        .verifier
        .verify(access, world.now())
        .expect("issued access token verifies");
    assert_eq!(v.kind, TokenKind::Access);
    assert_eq!(v.claims.sub(), user);
    if stepped_up {
        assert!(v.claims.has_amr("mfa") && v.claims.has_amr("otp"));
        assert_eq!(v.claims.auth_time(), Some(world.now()));
    }
    world.access.push(access.to_owned());
    let refresh = r.body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    world.families.push(Family {
        sid: v.claims.sid().map(str::to_owned),
        started: world.now(),
        revoked: false,
        unknown: false,
    });
    let family = world.families.len() - 1;
    world.refresh_order.push(refresh.clone());
    world.refresh.insert(refresh, family);
    Some(family)
}

/// The token verify used: the body's mfa_token, else the bearer header, else the cookie.
fn effective_token(s: &Step) -> Option<String> {
    let f = s.fields.as_ref()?;
    match f.get("mfa_token") {
        Some(Value::String(t)) => return Some(t.clone()),
        Some(_) => return None,
        None => {}
    }
    match &s.credential {
        Credential::Bearer(t) | Credential::PartialCookie(t) => Some(t.clone()),
        _ => None,
    }
}

fn verify_ok(world: &mut World, s: &Step, r: &Reply, now: u64) {
    let token = effective_token(s).expect("verify succeeded without a known token");
    assert!(
        world.challenges.contains(&token),
        "verify accepted a token nobody issued: {token:?}"
    );
    assert!(
        world.completed.insert(token.clone()),
        "a challenge token completed twice: {token:?}"
    );
    let (user, sid) = if token.split('.').count() == 5 {
        let c = world
            .sealer
            .open(&token, now)
            .expect("an accepted mfa_token opens");
        (c.sub, c.sid)
    } else {
        let v = world
            .verifier
            .verify(&token, now)
            .expect("an accepted partial token verifies");
        (v.claims.sub().to_owned(), None)
    };
    let f = s.fields.as_ref().expect("fields");
    let secret = world
        .secrets
        .get(&user)
        .expect("verify succeeded for a user without a factor");
    if let Some(code) = f.get("code").and_then(Value::as_str) {
        let step = totp::verify(secret, code, now).expect("verify accepted a wrong TOTP code");
        if let Some(last) = world.last_step.insert(user.clone(), step) {
            assert!(step > last, "TOTP step {step} accepted after {last}");
        }
    } else {
        let code = f["recovery_code"].as_str().expect("a code of some kind");
        let codes = world.recovery.get_mut(&user).expect("recovery codes");
        let hashes: Vec<_> = codes.iter().map(|c| recovery::hash(c)).collect();
        let hit = recovery::find(&hashes, code).expect("verify accepted a wrong recovery code");
        codes.retain(|c| recovery::hash(c) != hit);
    }
    // A step-up continues its session (DESIGN §8.2): the same sid, new tokens in the
    // same family; it never revives an ended session nor starts one the store does not
    // know.
    if let Some(sid) = sid {
        let family = world
            .families
            .iter()
            .position(|f| f.sid.as_deref() == Some(sid.as_str()))
            .expect("a step-up succeeded for a session the store never started");
        assert!(
            !world.families[family].revoked,
            "a step-up revived an ended session"
        );
        continue_session(world, r, &user, family);
    } else {
        session(world, r, &user, true);
    }
    let _ = &r.cookies;
}

/// The refresh tokens of family `family`, oldest first.
fn family_tokens(world: &World, family: usize) -> impl DoubleEndedIterator<Item = &String> {
    world
        .refresh_order
        .iter()
        .filter(move |t| world.refresh.get(*t) == Some(&family))
}

/// The new tokens of a step-up inside family `family`.
fn continue_session(world: &mut World, r: &Reply, user: &str, family: usize) {
    let access = r.body["access_token"].as_str().expect("access token");
    let v = world
        .verifier
        .verify(access, world.now())
        .expect("issued access token verifies");
    assert_eq!(v.claims.sub(), user);
    assert_eq!(
        v.claims.sid(),
        world.families[family].sid.as_deref(),
        "same sid"
    );
    assert!(v.claims.has_amr("mfa") && v.claims.has_amr("otp"));
    assert_eq!(v.claims.auth_time(), Some(world.now()));
    world.access.push(access.to_owned());
    // The family's current refresh token is rotated away by the step-up.
    if let Some(current) = family_tokens(world, family).last().cloned() {
        world.spent.insert(current);
    }
    let refresh = r.body["refresh_token"].as_str().expect("refresh token");
    world.refresh_order.push(refresh.to_owned());
    world.refresh.insert(refresh.to_owned(), family);
}

fn refresh_ok(world: &mut World, s: &Step, r: &Reply, now: u64) {
    let f = s.fields.as_ref().expect("refresh succeeded on a raw body");
    let t = f["refresh_token"].as_str().expect("refresh token");
    let &family = world
        .refresh
        .get(t)
        .expect("refresh accepted a token nobody issued");
    assert!(
        world.spent.insert(t.to_owned()),
        "a refresh token worked twice"
    );
    let fam = &world.families[family];
    if !fam.unknown {
        assert!(!fam.revoked, "a revoked family refreshed");
    }
    assert!(
        now < fam.started + 24 * 3600 + 1,
        "a family refreshed past its lifetime"
    );
    let access = r.body["access_token"].as_str().expect("access token");
    let v = world
        .verifier
        .verify(access, now)
        .expect("refreshed access token verifies");
    assert_eq!(
        v.claims.sid(),
        fam.sid.as_deref(),
        "refresh keeps the session"
    );
    world.access.push(access.to_owned());
    let next = r.body["refresh_token"]
        .as_str()
        .expect("next refresh token")
        .to_owned();
    world.refresh_order.push(next.clone());
    world.refresh.insert(next, family);
}
