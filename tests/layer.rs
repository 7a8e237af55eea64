//! The layer, driven with `oneshot`: every row of the denial table, every policy kind,
//! the partial-token rule, the step-up challenge, and route table ≡ per-route layer.

use std::convert::Infallible;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{service_fn, Layer, ServiceExt};
use tower_stepup::challenge::{OpenError, DENIAL_TABLE};
use tower_stepup::revocation::{Revocations, UserRevocations};
use tower_stepup::{
    Algorithm, Claims, Denial, DenialKind, Grant, Guard, Issuer, ManualClock, MfaRequirements,
    Policy, RouteTable, Sealer, SealingKey, SealingKeys, SigningKey, StepUp, StepUpLayer,
    TokenError, TokenKind, Verifier, VerifyingKey,
};

#[path = "support/dpop.rs"]
mod dpop_key;
#[path = "support/reply.rs"]
mod reply;

use reply::Reply;

const T0: u64 = 1_700_000_000;
const SECRET: [u8; 32] = [42; 32];
const ISS: &str = "https://auth.test";
const AUD: &str = "https://api.test";

struct Fixture {
    clock: ManualClock,
    guard: Guard,
    issuer: Issuer,
}

fn fixture() -> Fixture {
    fixture_with(|b| b)
}

fn fixture_with(
    f: impl FnOnce(tower_stepup::layer::GuardBuilder) -> tower_stepup::layer::GuardBuilder,
) -> Fixture {
    let clock = ManualClock::new(T0);
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k1", Algorithm::HS256, &SECRET).unwrap())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s1", [9; 32]).unwrap())).unwrap();
    let guard = f(Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock.clone())
        .realm("test"))
    .build()
    .unwrap();
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &SECRET).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    Fixture {
        clock,
        guard,
        issuer,
    }
}

impl Fixture {
    fn pwd_token(&self) -> String {
        self.issuer
            .issue_access(
                &Grant::new("alice")
                    .sid("sess-1")
                    .amr(["pwd"])
                    .auth_time(T0)
                    .scope("me"),
            )
            .unwrap()
            .token
    }

    fn mfa_token_at(&self, auth_time: u64) -> String {
        self.issuer
            .issue_access(
                &Grant::new("alice")
                    .sid("sess-2")
                    .amr(["pwd", "otp", "mfa"])
                    .acr("urn:test:mfa")
                    .auth_time(auth_time)
                    .scope("me billing:read"),
            )
            .unwrap()
            .token
    }

    fn partial_token(&self) -> String {
        self.issuer
            .issue_partial(&Grant::new("alice").amr(["pwd"]))
            .unwrap()
            .token
    }
}

fn billing_requirement() -> StepUp {
    StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))
}

fn table() -> RouteTable {
    RouteTable::new()
        .route(Method::GET, "/healthz", Policy::public())
        .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify())
        .route(Method::GET, "/api/me", Policy::authenticated())
        .route(
            Method::GET,
            "/api/billing",
            Policy::step_up(billing_requirement()),
        )
        .route(
            Method::GET,
            "/api/invoices",
            Policy::authenticated().scopes(["billing:read"]),
        )
        .route(
            Method::GET,
            "/api/gold",
            Policy::step_up(StepUp::new().acr_values(["urn:test:gold", "urn:test:platinum"])),
        )
}

/// The protected app: answers 200 with the `sub` the layer attached, or "anonymous".
async fn app(req: Request<String>) -> Result<Response<String>, Infallible> {
    let who = req
        .extensions()
        .get::<Claims>()
        .map_or("anonymous".to_owned(), |c| c.sub().to_owned());
    Ok(Response::new(who))
}

/// What the layer answered (read as the shared [`Reply`]), with the denial it carries.
struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    denial: Option<DenialKind>,
    json: Value,
    text: String,
    cache_control: Option<String>,
}

async fn send_via(layer: &StepUpLayer, req: Request<String>) -> Answer {
    let res = layer.layer(service_fn(app)).oneshot(req).await.unwrap();
    let denial = res.extensions().get::<Denial>().map(Denial::kind);
    let r = Reply::read(res).await;
    if denial.is_some() {
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    Answer {
        status: r.status,
        www_authenticate: r.header("www-authenticate").map(str::to_owned),
        cache_control: r.header("cache-control").map(str::to_owned),
        denial,
        text: String::from_utf8(r.raw).unwrap(),
        json: r.body,
    }
}

async fn send(fx: &Fixture, req: Request<String>) -> Answer {
    send_via(&fx.guard.route_table(table()).unwrap(), req).await
}

fn get(path: &str, token: Option<&str>) -> Request<String> {
    request(Method::GET, path, token)
}

fn request(method: Method, path: &str, token: Option<&str>) -> Request<String> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(String::new()).unwrap()
}

/// One request per row of the denial table that must produce exactly that row.
async fn trigger(fx: &Fixture, kind: DenialKind) -> Answer {
    match kind {
        DenialKind::MissingCredential => send(fx, get("/api/me", None)).await,
        DenialKind::InvalidToken => send(fx, get("/api/me", Some("not.a.token"))).await,
        DenialKind::ExpiredToken => {
            let token = fx.pwd_token();
            fx.clock.advance(900 + 5);
            let r = send(fx, get("/api/me", Some(&token))).await;
            fx.clock.set(T0);
            r
        }
        DenialKind::MfaIncomplete => send(fx, get("/api/me", Some(&fx.partial_token()))).await,
        DenialKind::InsufficientScope => {
            send(fx, get("/api/invoices", Some(&fx.pwd_token()))).await
        }
        DenialKind::MfaRequired => send(fx, get("/api/billing", Some(&fx.pwd_token()))).await,
        DenialKind::PathTooLong => {
            let layer = fx
                .guard
                .require(Policy::step_up(billing_requirement()))
                .unwrap();
            let path = format!("/files/{}", "a".repeat(5000));
            send_via(&layer, get(&path, Some(&fx.pwd_token()))).await
        }
        DenialKind::ServerError => {
            // Sealing never fails with a working OS RNG; the row is checked by value below.
            unreachable!("not triggerable from outside")
        }
        DenialKind::SessionEnded => {
            let token = fx.pwd_token();
            let claims = fx.guard.verifier().verify(&token, T0).unwrap().claims;
            let ended = UserRevocations::new(claims.sub()).session(claims.sid().unwrap(), T0 + 900);
            fx.guard.revocations().apply(&[ended], T0);
            send(fx, get("/api/me", Some(&token))).await
        }
        DenialKind::Unavailable => {
            // A replica whose revocation feed was never read.
            let stale = fixture_with(|b| b.revocations(Revocations::fed(Duration::from_secs(60))));
            send(&stale, get("/api/me", Some(&stale.pwd_token()))).await
        }
        DenialKind::InvalidDpopProof => {
            // A DPoP-bound token in the DPoP scheme, without its proof.
            let dpop = fixture_with(|b| {
                b.dpop(
                    tower_stepup::dpop::DpopConfig::default(),
                    "https://api.test",
                    NoReplays,
                )
            });
            let grant = Grant::new("alice").amr(["pwd"]).dpop_jkt(JKT);
            let token = dpop.issuer.issue_access(&grant).unwrap().token;
            let req = Request::get("/api/me")
                .header("authorization", format!("DPoP {token}"))
                .body(String::new())
                .unwrap();
            send(&dpop, req).await
        }
        DenialKind::UseDpopNonce => {
            // A proof right in all but the server nonce (made by tests/support/dpop.rs).
            let nonces =
                tower_stepup::dpop::DpopNonces::new([5; 32], Duration::from_secs(60)).unwrap();
            let dpop = fixture_with(|b| {
                b.dpop(
                    tower_stepup::dpop::DpopConfig::default(),
                    "https://api.test",
                    NoReplays,
                )
                .dpop_nonces(nonces)
            });
            let key = dpop_key::Key::es256(3);
            let grant = Grant::new("alice").amr(["pwd"]).dpop_jkt(key.thumbprint());
            let token = dpop.issuer.issue_access(&grant).unwrap().token;
            let proof = key.proof("GET", "https://api.test/api/me", Some(&token), T0);
            let req = Request::get("/api/me")
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof)
                .body(String::new())
                .unwrap();
            send(&dpop, req).await
        }
        _ => unreachable!("a new denial kind needs a trigger here"),
    }
}

/// An RFC 7638 thumbprint (RFC 7638 §3.1's example key).
const JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

/// A proof store that has never seen a proof.
struct NoReplays;

impl tower_stepup::dpop::JtiStore for NoReplays {
    fn use_proof<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
        _: u64,
    ) -> tower_stepup::dpop::JtiFuture<'a> {
        Box::pin(async { Ok(tower_stepup::dpop::DpopUse::Fresh) })
    }
}

#[tokio::test]
async fn every_row_of_the_denial_table_is_what_the_wire_gets() {
    let fx = fixture();
    let expected_challenge = |kind: DenialKind| -> &'static str {
        match kind {
            DenialKind::MissingCredential => r#"Bearer realm="test""#,
            DenialKind::InvalidToken => {
                r#"Bearer error="invalid_token", error_description="the access token is invalid""#
            }
            DenialKind::ExpiredToken => {
                r#"Bearer error="invalid_token", error_description="the access token has expired""#
            }
            DenialKind::MfaIncomplete => {
                r#"Bearer error="invalid_token", error_description="multi-factor authentication is not complete; the partial token is accepted only by the verify endpoint""#
            }
            DenialKind::InsufficientScope => {
                r#"Bearer error="insufficient_scope", scope="billing:read""#
            }
            DenialKind::MfaRequired => {
                r#"Bearer error="insufficient_user_authentication", error_description="a second factor is required for this resource", max_age=300"#
            }
            DenialKind::SessionEnded => {
                r#"Bearer error="invalid_token", error_description="the session has ended; sign in again""#
            }
            DenialKind::InvalidDpopProof => {
                r#"DPoP algs="ES256 EdDSA", error="invalid_dpop_proof", error_description="the DPoP proof is invalid""#
            }
            DenialKind::UseDpopNonce => {
                r#"DPoP algs="ES256 EdDSA", error="use_dpop_nonce", error_description="the DPoP proof must carry the nonce of the DPoP-Nonce header""#
            }
            DenialKind::PathTooLong | DenialKind::Unavailable => "",
            _ => unreachable!(),
        }
    };
    let mut checked = 0;
    for row in DENIAL_TABLE {
        assert_eq!(row.kind.row(), row, "row() finds the table row");
        if row.kind == DenialKind::ServerError {
            assert_eq!(row.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(row.challenge_error, None);
            continue;
        }
        let reply = trigger(&fx, row.kind).await;
        assert_eq!(reply.status, row.status, "{:?}", row.kind);
        assert_eq!(reply.denial, Some(row.kind));
        assert_eq!(reply.json["error"], row.error, "{:?}", row.kind);
        assert!(reply.json["error_description"].is_string());
        let expected = Some(expected_challenge(row.kind)).filter(|c| !c.is_empty());
        assert_eq!(row.challenge, expected.is_some(), "{:?}", row.kind);
        assert_eq!(
            reply.www_authenticate.as_deref(),
            expected,
            "{:?}",
            row.kind
        );
        assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
        checked += 1;
    }
    assert_eq!(checked, DENIAL_TABLE.len() - 1);
}

#[tokio::test]
async fn public_route_passes_anonymous_and_attaches_valid_claims() {
    let fx = fixture();
    let r = send(&fx, get("/healthz", None)).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "anonymous"));
    let r = send(&fx, get("/healthz", Some(&fx.pwd_token()))).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "alice"));
    // A broken or expired token on a public route is ignored, not an error.
    let r = send(&fx, get("/healthz", Some("garbage"))).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "anonymous"));
}

/// A token bound to a DPoP key (`cnf.jkt`) is not a bearer token (RFC 9449 §7.2): sent
/// as `Bearer` it is refused on every protected route, cached or not, and a public route
/// takes the request as anonymous; the same grant unbound passes.
#[tokio::test]
async fn a_dpop_bound_token_is_refused_as_a_bearer_token() {
    let fx = fixture();
    let grant = Grant::new("alice")
        .sid("sess-1")
        .amr(["pwd"])
        .auth_time(T0)
        .scope("me");
    let jkt = JKT;
    let bound = fx
        .issuer
        .issue_access(&grant.clone().dpop_jkt(jkt))
        .unwrap()
        .token;
    for _ in 0..2 {
        // The second time from the verified-token cache.
        let r = send(&fx, get("/api/me", Some(&bound))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.denial, Some(DenialKind::InvalidToken));
        assert_eq!(r.json["error"], "invalid_token");
        let r = send(&fx, get("/healthz", Some(&bound))).await;
        assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "anonymous"));
    }
    let unbound = fx.issuer.issue_access(&grant).unwrap().token;
    let r = send(&fx, get("/api/me", Some(&unbound))).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "alice"));
}

#[tokio::test]
async fn authenticated_route_needs_a_valid_access_token() {
    let fx = fixture();
    let r = send(&fx, get("/api/me", Some(&fx.pwd_token()))).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "alice"));
    assert_eq!(
        send(&fx, get("/api/me", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn partial_token_is_rejected_outside_verify() {
    let fx = fixture();
    let partial = fx.partial_token();
    for path in [
        "/api/me",
        "/api/billing",
        "/api/invoices",
        "/healthz",
        "/not-listed",
    ] {
        let r = send(&fx, get(path, Some(&partial))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.json["error"], "mfa_incomplete", "{path}");
        // Never a step-up challenge, never an mfa_token.
        assert!(r.json.get("mfa_token").is_none(), "{path}");
    }
    let r = send(
        &fx,
        request(Method::POST, "/auth/mfa/verify", Some(&partial)),
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "anonymous"));
}

#[tokio::test]
async fn step_up_route_challenges_a_password_only_token() {
    let fx = fixture();
    let r = send(&fx, get("/api/billing", Some(&fx.pwd_token()))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["error"], "mfa_required");
    assert_eq!(
        r.json["mfa_requirements"],
        serde_json::json!({"challenge":[{"type":"otp"}]})
    );
    let mfa_token = r.json["mfa_token"].as_str().unwrap();
    // The mfa_token is opaque, and binds who, which session, what and where.
    assert!(!mfa_token.contains("alice"));
    let claims = fx.guard.sealer().unwrap().open(mfa_token, T0).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.sid.as_deref(), Some("sess-1"));
    assert_eq!(claims.requirement, billing_requirement());
    assert_eq!(
        (claims.method.as_str(), claims.path.as_str()),
        ("GET", "/api/billing")
    );
    assert_eq!((claims.iat, claims.exp), (T0, T0 + 300));
    assert!(!claims.jti.is_empty());
    // Each challenge has its own jti.
    let again = send(&fx, get("/api/billing", Some(&fx.pwd_token()))).await;
    let jti2 = fx
        .guard
        .sealer()
        .unwrap()
        .open(again.json["mfa_token"].as_str().unwrap(), T0)
        .unwrap()
        .jti;
    assert_ne!(claims.jti, jti2);
}

#[tokio::test]
async fn fresh_mfa_token_passes_step_up() {
    let fx = fixture();
    let r = send(&fx, get("/api/billing", Some(&fx.mfa_token_at(T0)))).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "alice"));
}

#[tokio::test]
async fn max_age_holds_exactly_at_the_boundary_and_fails_one_second_past() {
    let fx = fixture();
    let token = fx.mfa_token_at(T0);
    fx.clock.set(T0 + 300);
    assert_eq!(
        send(&fx, get("/api/billing", Some(&token))).await.status,
        StatusCode::OK
    );
    fx.clock.set(T0 + 301);
    let r = send(&fx, get("/api/billing", Some(&token))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["error"], "mfa_required");
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="a more recent authentication is required for this resource", max_age=300"#
        )
    );
}

#[tokio::test]
async fn missing_auth_time_fails_max_age() {
    let fx = fixture();
    // Our issuer always sets auth_time; another issuer may not.
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let claims = serde_json::json!({
        "sub": "alice", "iss": ISS, "aud": AUD, "exp": T0 + 60, "amr": ["pwd", "mfa"]
    });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&SECRET),
    )
    .unwrap();
    assert_eq!(
        send(&fx, get("/api/me", Some(&token))).await.status,
        StatusCode::OK
    );
    let r = send(&fx, get("/api/billing", Some(&token))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.denial, Some(DenialKind::MfaRequired));
}

#[tokio::test]
async fn acr_values_are_named_in_the_challenge() {
    let fx = fixture();
    let r = send(&fx, get("/api/gold", Some(&fx.mfa_token_at(T0)))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="a stronger authentication context is required for this resource", acr_values="urn:test:gold urn:test:platinum""#
        )
    );
    let gold = fx
        .issuer
        .issue_access(&Grant::new("alice").acr("urn:test:platinum"))
        .unwrap()
        .token;
    assert_eq!(
        send(&fx, get("/api/gold", Some(&gold))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn scopes_are_required_before_step_up_is_considered() {
    let fx = fixture();
    let r = send(&fx, get("/api/invoices", Some(&fx.pwd_token()))).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let r = send(&fx, get("/api/invoices", Some(&fx.mfa_token_at(T0)))).await;
    assert_eq!(r.status, StatusCode::OK);
    // A step-up route with a scope the token lacks says insufficient_scope, not mfa_required:
    // a second factor would not help.
    let layer = fx
        .guard
        .require(Policy::step_up(billing_requirement()).scopes(["admin"]))
        .unwrap();
    let r = send_via(&layer, get("/x", Some(&fx.pwd_token()))).await;
    assert_eq!(r.json["error"], "insufficient_scope");
}

#[tokio::test]
async fn strict_rfc9470_clients_get_401_for_step_up() {
    let fx = fixture_with(|b| b.strict_rfc9470_status(true));
    let r = send(&fx, get("/api/billing", Some(&fx.pwd_token()))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"], "mfa_required");
    assert!(r.json["mfa_token"].is_string());
    assert!(r
        .www_authenticate
        .unwrap()
        .contains("insufficient_user_authentication"));
}

#[tokio::test]
async fn users_without_a_factor_are_asked_to_enroll() {
    let fx = fixture_with(|b| {
        b.mfa_requirements(|c| {
            if c.get("mfa_enrolled") == Some(&Value::Bool(false)) {
                MfaRequirements::enroll(["otp"])
            } else {
                MfaRequirements::challenge(["otp"])
            }
        })
    });
    let bob = fx
        .issuer
        .issue_access(&Grant::new("bob").amr(["pwd"]).claim("mfa_enrolled", false))
        .unwrap()
        .token;
    let r = send(&fx, get("/api/billing", Some(&bob))).await;
    assert_eq!(
        r.json["mfa_requirements"],
        serde_json::json!({"enroll":[{"type":"otp"}]})
    );
}

#[tokio::test]
async fn unlisted_routes_are_denied_by_default_and_head_follows_get() {
    let fx = fixture();
    assert_eq!(
        send(&fx, get("/admin", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&fx, get("/api/billing/", Some(&fx.pwd_token())))
            .await
            .status,
        StatusCode::OK
    );
    let head = send(
        &fx,
        request(Method::HEAD, "/api/billing", Some(&fx.pwd_token())),
    )
    .await;
    assert_eq!(head.denial, Some(DenialKind::MfaRequired));
    let head = send(&fx, request(Method::HEAD, "/healthz", None)).await;
    assert_eq!(head.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_never_a_panic() {
    let fx = fixture();
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let cases: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_static("Bearer"),
        HeaderValue::from_static("Bearer "),
        HeaderValue::from_static("Bearer a b c"),
        HeaderValue::from_static("Bearer ....."),
        HeaderValue::from_bytes(b"Bearer \xc3\x28\xa0\xa1").unwrap(),
        HeaderValue::from_str(&huge).unwrap(),
        HeaderValue::from_static("Bearer eyJhbGciOiJub25lIn0.e30."),
    ];
    for value in cases {
        let mut req = get("/api/me", None);
        req.headers_mut().insert("authorization", value.clone());
        let r = send(&fx, req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{value:?}");
        assert_eq!(r.json["error"], "invalid_token", "{value:?}");
    }
    // Another scheme is no bearer credential at all.
    let mut req = get("/api/me", None);
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_static("Basic YWxpY2U6cHc="),
    );
    assert_eq!(send(&fx, req).await.json["error"], "unauthorized");
}

#[tokio::test]
async fn mfa_token_presented_as_bearer_is_an_invalid_token() {
    let fx = fixture();
    let challenge = send(&fx, get("/api/billing", Some(&fx.pwd_token()))).await;
    let mfa_token = challenge.json["mfa_token"].as_str().unwrap().to_owned();
    for path in ["/api/me", "/api/billing"] {
        let r = send(&fx, get(path, Some(&mfa_token))).await;
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token"))
        );
    }
}

#[tokio::test]
async fn mfa_token_from_the_layer_tampered_expired_retired_and_rotated() {
    let fx = fixture();
    let r = send(&fx, get("/api/billing", Some(&fx.pwd_token()))).await;
    let token = r.json["mfa_token"].as_str().unwrap().to_owned();
    let sealer = fx.guard.sealer().unwrap();

    // Tampered: flip one bit of the ciphertext.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut ct = URL_SAFE_NO_PAD.decode(&parts[3]).unwrap();
    ct[3] ^= 0x80;
    parts[3] = URL_SAFE_NO_PAD.encode(ct);
    assert_eq!(sealer.open(&parts.join("."), T0), Err(OpenError::Tampered));

    // Expired: valid until T0 + 299, expired from T0 + 300.
    assert!(sealer.open(&token, T0 + 299).is_ok());
    assert_eq!(sealer.open(&token, T0 + 300), Err(OpenError::Expired));

    // Rotated: the old key is still accepted, new tokens use the new key.
    let old = SealingKey::new("s1", [9; 32]).unwrap();
    let new = SealingKey::new("s2", [10; 32]).unwrap();
    sealer
        .rotate_keys(SealingKeys::new(new.clone()).accept(old))
        .unwrap();
    assert!(sealer.open(&token, T0).is_ok());
    let r = send(&fx, get("/api/billing", Some(&fx.pwd_token()))).await;
    let newer = r.json["mfa_token"].as_str().unwrap().to_owned();
    assert!(sealer.open(&newer, T0).is_ok());

    // Retired: the old key is gone, so its token is invalid (not expired).
    sealer.rotate_keys(SealingKeys::new(new)).unwrap();
    assert_eq!(sealer.open(&token, T0), Err(OpenError::UnknownKey));
    assert!(sealer.open(&newer, T0).is_ok());
}

#[tokio::test]
async fn cookie_credential_is_read_when_configured() {
    let fx = fixture_with(|b| b.cookie("__Host-session"));
    let mut req = get("/api/me", None);
    req.headers_mut().insert(
        "cookie",
        HeaderValue::from_str(&format!("theme=dark; __Host-session={}", fx.pwd_token())).unwrap(),
    );
    let r = send(&fx, req).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "alice"));
    let plain = fixture();
    let mut req = get("/api/me", None);
    req.headers_mut().insert(
        "cookie",
        HeaderValue::from_str(&format!("__Host-session={}", plain.pwd_token())).unwrap(),
    );
    assert_eq!(send(&plain, req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn claims_planted_by_an_outer_layer_do_not_survive_an_anonymous_pass() {
    let fx = fixture();
    let planted: Claims = serde_json::from_str(r#"{"sub":"mallory","exp":1}"#).unwrap();
    let mut req = get("/healthz", None);
    req.extensions_mut().insert(planted);
    let r = send(&fx, req).await;
    assert_eq!(r.text, "anonymous");
}

/// The same route, configured through the table and through a per-route layer, answers
/// the same for every kind of credential.
#[tokio::test]
async fn route_table_and_per_route_layer_give_the_same_answers() {
    let fx = fixture();
    let table_layer = fx.guard.route_table(table()).unwrap();
    let routes: [(&str, Policy); 5] = [
        ("/healthz", Policy::public()),
        ("/api/me", Policy::authenticated()),
        ("/api/billing", Policy::step_up(billing_requirement())),
        (
            "/api/invoices",
            Policy::authenticated().scopes(["billing:read"]),
        ),
        (
            "/api/gold",
            Policy::step_up(StepUp::new().acr_values(["urn:test:gold", "urn:test:platinum"])),
        ),
    ];
    let credentials = [
        None,
        Some("garbage".to_owned()),
        Some(fx.pwd_token()),
        Some(fx.mfa_token_at(T0)),
        Some(fx.mfa_token_at(T0 - 1000)),
        Some(fx.partial_token()),
    ];
    for (path, policy) in routes {
        let route_layer = fx.guard.require(policy).unwrap();
        for cred in &credentials {
            let a = send_via(&table_layer, get(path, cred.as_deref())).await;
            let b = send_via(&route_layer, get(path, cred.as_deref())).await;
            assert_eq!(a.status, b.status, "{path} {cred:?}");
            assert_eq!(a.denial, b.denial, "{path} {cred:?}");
            assert_eq!(a.www_authenticate, b.www_authenticate, "{path} {cred:?}");
            assert_eq!(a.json["error"], b.json["error"], "{path} {cred:?}");
            if a.denial.is_none() {
                assert_eq!(a.text, b.text, "{path} {cred:?}");
            }
        }
    }
}

/// The same equivalence through axum: one router with the table layer over everything,
/// one with `route_layer` per route.
#[tokio::test]
async fn axum_route_layer_and_table_layer_agree() {
    use axum::routing::{get as aget, post};
    use axum::Router;

    async fn who(claims: Option<Claims>) -> String {
        claims.map_or("anonymous".to_owned(), |c| c.sub().to_owned())
    }

    let fx = fixture();
    let by_table = Router::new()
        .route("/healthz", aget(who))
        .route("/auth/mfa/verify", post(who))
        .route("/api/me", aget(who))
        .route("/api/billing", aget(who))
        .layer(fx.guard.route_table(table()).unwrap());
    let by_route = Router::new()
        .route(
            "/healthz",
            aget(who).route_layer(fx.guard.require(Policy::public()).unwrap()),
        )
        .route(
            "/auth/mfa/verify",
            post(who).route_layer(fx.guard.require(Policy::mfa_verify()).unwrap()),
        )
        .route(
            "/api/me",
            aget(who).route_layer(fx.guard.require(Policy::authenticated()).unwrap()),
        )
        .route(
            "/api/billing",
            aget(who).route_layer(
                fx.guard
                    .require(Policy::step_up(billing_requirement()))
                    .unwrap(),
            ),
        );
    let credentials = [
        None,
        Some(fx.pwd_token()),
        Some(fx.mfa_token_at(T0)),
        Some(fx.partial_token()),
    ];
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::POST, "/auth/mfa/verify"),
        (Method::GET, "/api/me"),
        (Method::GET, "/api/billing"),
    ] {
        for cred in &credentials {
            let mk = || {
                let mut b = Request::builder().method(method.clone()).uri(path);
                if let Some(t) = cred {
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                b.body(axum::body::Body::empty()).unwrap()
            };
            let a = by_table.clone().oneshot(mk()).await.unwrap();
            let b = by_route.clone().oneshot(mk()).await.unwrap();
            assert_eq!(a.status(), b.status(), "{method} {path} {cred:?}");
            assert_eq!(
                a.extensions().get::<Denial>().map(Denial::kind),
                b.extensions().get::<Denial>().map(Denial::kind),
                "{method} {path}"
            );
            let a = a.into_body().collect().await.unwrap().to_bytes();
            let b = b.into_body().collect().await.unwrap().to_bytes();
            let strip = |v: &[u8]| {
                let mut j: Value = serde_json::from_slice(v)
                    .unwrap_or(Value::String(String::from_utf8_lossy(v).into()));
                if let Some(o) = j.as_object_mut() {
                    o.remove("mfa_token");
                }
                j
            };
            assert_eq!(strip(&a), strip(&b), "{method} {path} {cred:?}");
        }
    }
}

#[tokio::test]
async fn axum_claims_extractor_refuses_a_route_without_a_token() {
    use axum::routing::get as aget;
    use axum::Router;
    async fn me(claims: Claims) -> String {
        claims.sub().to_owned()
    }
    let fx = fixture();
    // The policy of this route was forgotten (public): the extractor still refuses.
    let app = Router::new().route(
        "/me",
        aget(me).route_layer(fx.guard.require(Policy::public()).unwrap()),
    );
    let res = app
        .clone()
        .oneshot(Request::get("/me").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .oneshot(
            Request::get("/me")
                .header("authorization", format!("Bearer {}", fx.pwd_token()))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"alice"
    );
}

#[tokio::test]
async fn expired_partial_token_is_invalid_not_expired_access() {
    // An expired access token invites a silent refresh; an expired partial token must not.
    let fx = fixture();
    let partial = fx.partial_token();
    fx.clock.advance(300 + 5);
    let r = send(&fx, get("/api/me", Some(&partial))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.denial, Some(DenialKind::InvalidToken));
}

#[tokio::test]
async fn access_tokens_get_auth_time_now_unless_carried_over() {
    let fx = fixture();
    fx.clock.set(T0 + 50);
    let fresh = fx.issuer.issue_access(&Grant::new("alice")).unwrap();
    assert_eq!(fresh.claims.auth_time(), Some(T0 + 50));
    // A refresh carries the old auth_time and amr over: an old login does not look fresh.
    let old = fx
        .issuer
        .issue_access(&Grant::new("alice").amr(["pwd", "mfa"]).auth_time(T0 - 1000))
        .unwrap();
    let refreshed = fx
        .issuer
        .issue_access(&Grant::from_claims(&old.claims))
        .unwrap();
    assert_eq!(refreshed.claims.auth_time(), Some(T0 - 1000));
    assert_eq!(refreshed.claims.amr(), ["pwd".to_owned(), "mfa".to_owned()]);
    assert_eq!(refreshed.claims.sid(), old.claims.sid());
    assert_ne!(refreshed.claims.jti(), old.claims.jti());
    let r = send(&fx, get("/api/billing", Some(&refreshed.token))).await;
    assert_eq!(r.denial, Some(DenialKind::MfaRequired));
}

/// The layer answers a token verified before from the verifier's cache, before the
/// credential's syntax checks: that shortcut must never accept what the full path
/// refuses, nor refuse what it accepts.
#[tokio::test]
async fn cached_tokens_get_the_answers_of_the_full_path() {
    let fx = fixture();
    let token = fx.pwd_token();
    let stats = || fx.guard.verifier().cache_stats();
    assert_eq!(
        send(&fx, get("/api/me", Some(&token))).await.status,
        StatusCode::OK
    );
    let hits = stats().hits;
    assert_eq!(
        send(&fx, get("/api/me", Some(&token))).await.status,
        StatusCode::OK
    );
    assert_eq!(stats().hits, hits + 1, "the second request was a cache hit");

    // The same token twice in two headers: ambiguous, refused as before.
    let mut req = get("/api/me", Some(&token));
    req.headers_mut()
        .append("authorization", format!("Bearer {token}").parse().unwrap());
    let r = send(&fx, req).await;
    assert_eq!(r.denial, Some(DenialKind::InvalidToken));
    // Lower-case scheme and extra spaces before the token: accepted as before.
    for header in [format!("bearer {token}"), format!("Bearer   {token}")] {
        let req = Request::builder()
            .uri("/api/me")
            .header("authorization", header)
            .body(String::new())
            .unwrap();
        assert_eq!(send(&fx, req).await.status, StatusCode::OK);
    }
    // Step-up and scope rules still apply to a cached token.
    let r = send(&fx, get("/api/billing", Some(&token))).await;
    assert_eq!(r.denial, Some(DenialKind::MfaRequired));
    // Expiry still applies.
    fx.clock.advance(900 + 5);
    let r = send(&fx, get("/api/me", Some(&token))).await;
    assert_eq!(r.denial, Some(DenialKind::ExpiredToken));
}

/// Status, headers (sorted, the mfa_token's value masked) and body of a response.
async fn snapshot<B>(res: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut out = format!("{}\n", res.status().as_u16());
    let mut headers: Vec<String> = res
        .headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    headers.sort();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    for h in headers {
        out.push_str(&h);
        out.push('\n');
    }
    out.push_str(std::str::from_utf8(&bytes).unwrap());
    mask_mfa_token(&out)
}

/// Replaces every `eyJ…` JWE (five dot-separated parts) with `<mfa_token>`.
fn mask_mfa_token(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("eyJ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(tail.len());
        out.push_str("<mfa_token>");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Every triggerable denial, over HTTP (`GET`) and gRPC (`POST` with a gRPC content
/// type), rendered byte for byte: what the layer answers is pinned here.
async fn rendered_denials(fx: &Fixture) -> Vec<(String, String)> {
    let expired = {
        let token = fx.pwd_token();
        fx.clock.advance(900 + 5);
        token
    };
    let partial = fx.partial_token();
    let pwd = fx.pwd_token();
    let cases: Vec<(&str, Policy, String, Option<String>)> = vec![
        ("missing", Policy::authenticated(), "/me".into(), None),
        (
            "invalid",
            Policy::authenticated(),
            "/me".into(),
            Some("not.a.token".into()),
        ),
        (
            "expired",
            Policy::authenticated(),
            "/me".into(),
            Some(expired),
        ),
        (
            "partial",
            Policy::authenticated(),
            "/me".into(),
            Some(partial),
        ),
        (
            "scope",
            Policy::authenticated().scopes(["billing:read", "admin"]),
            "/me".into(),
            Some(pwd.clone()),
        ),
        (
            "step_up",
            Policy::step_up(
                StepUp::new()
                    .amr(["mfa"])
                    .acr_values(["urn:test:gold"])
                    .max_age(Duration::from_secs(300)),
            ),
            "/billing".into(),
            Some(pwd.clone()),
        ),
        (
            "too_long",
            Policy::step_up(billing_requirement()),
            format!("/files/{}", "a".repeat(5000)),
            Some(pwd.clone()),
        ),
    ];
    let mut out = Vec::new();
    for (name, policy, path, token) in cases {
        let layer = fx.guard.require(policy).unwrap();
        for grpc in [false, true] {
            let mut b = Request::builder().uri(path.as_str());
            b = if grpc {
                b.method(Method::POST)
                    .header("content-type", "application/grpc")
            } else {
                b.method(Method::GET)
            };
            if let Some(t) = &token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            let res = layer
                .layer(service_fn(app))
                .oneshot(b.body(String::new()).unwrap())
                .await
                .unwrap();
            let label = format!("{name} {}", if grpc { "grpc" } else { "http" });
            out.push((label, snapshot(res).await));
        }
    }
    fx.clock.set(T0);
    out
}

/// The pinned rendering; `UPDATE_GOLDEN=1` rewrites it (then review the diff: on the wire,
/// changes are additive only).
const GOLDEN: &str = "tests/golden/denials.txt";

#[tokio::test]
async fn denials_are_rendered_byte_for_byte() {
    let fx = fixture();
    let mut text = String::new();
    for (label, rendered) in rendered_denials(&fx).await {
        text.push_str(&format!("==== {label}\n{rendered}\n\n"));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    for (got, want) in text.lines().zip(golden.lines()) {
        assert_eq!(got, want);
    }
    assert_eq!(text, golden);
}

/// The inner service of the rejection-hook tests: counts its calls.
fn counted(
    calls: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let calls = calls.clone();
    service_fn(move |req: Request<String>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        app(req)
    })
}

/// An RFC 9457 problem+json rendering of every denial, with the mfa_token of a step-up.
fn problem_json(denial: &Denial, _req: &http::request::Parts) -> Option<Response<bytes::Bytes>> {
    let mut body = serde_json::json!({
        "type": format!("https://errors.example/{}", denial.error()),
        "title": denial.error().as_str(),
        "status": denial.status().as_u16(),
        "detail": denial.description(),
    });
    if let Some(token) = denial.mfa_token() {
        body["mfa_token"] = token.into();
        body["expires_in"] = denial.expires_in().into();
    }
    Response::builder()
        .status(denial.status())
        .header("content-type", "application/problem+json")
        .body(bytes::Bytes::from(body.to_string()))
        .ok()
}

/// Browsers (`Accept: text/html`) without a credential go to the login page; the rest
/// gets the default rendering.
fn login_redirect(denial: &Denial, req: &http::request::Parts) -> Option<Response<bytes::Bytes>> {
    let browser = req
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    (browser && denial.kind() == DenialKind::MissingCredential).then(|| {
        let mut res = Response::new(bytes::Bytes::new());
        *res.status_mut() = StatusCode::SEE_OTHER;
        res.headers_mut().insert(
            "location",
            HeaderValue::from_static("/login?next=%2Fapi%2Fme"),
        );
        res
    })
}

async fn call_counted(
    fx: &Fixture,
    req: Request<String>,
    calls: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Response<String> {
    let res = fx
        .guard
        .route_table(table())
        .unwrap()
        .layer(counted(calls))
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn rejection_hook_renders_problem_json_and_the_inner_service_is_not_called() {
    let fx = fixture_with(|b| b.rejection(problem_json));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cases = [
        (get("/api/me", None), DenialKind::MissingCredential, 401),
        (
            get("/api/me", Some("not.a.token")),
            DenialKind::InvalidToken,
            401,
        ),
        (
            get("/api/invoices", Some(&fx.pwd_token())),
            DenialKind::InsufficientScope,
            403,
        ),
        (
            get("/api/billing", Some(&fx.pwd_token())),
            DenialKind::MfaRequired,
            403,
        ),
    ];
    for (req, kind, status) in cases {
        let res = call_counted(&fx, req, &calls).await;
        assert_eq!(res.status().as_u16(), status, "{kind:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        // The layer adds no-store, and puts the Denial in the extensions.
        assert_eq!(res.headers()["cache-control"], "no-store", "{kind:?}");
        let denial = res.extensions().get::<Denial>().unwrap();
        assert_eq!(denial.kind(), kind);
        let body: Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(body["title"], kind.row().error);
        assert_eq!(body["status"], status);
        assert_eq!(body["detail"], denial.description());
        if kind == DenialKind::MfaRequired {
            let token = body["mfa_token"].as_str().unwrap();
            assert_eq!(Some(token), denial.mfa_token());
            assert_eq!(body["expires_in"], 300);
            assert_eq!(
                fx.guard.sealer().unwrap().open(token, T0).unwrap().sub,
                "alice"
            );
        }
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    // A request that passes still reaches the service.
    let res = call_counted(&fx, get("/api/me", Some(&fx.pwd_token())), &calls).await;
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::OK, "alice")
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rejection_hook_redirects_browsers_and_leaves_the_rest_to_the_default() {
    let fx = fixture_with(|b| b.rejection(login_redirect));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let browser = |token: Option<&str>| {
        let mut req = get("/api/me", token);
        req.headers_mut().insert(
            "accept",
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        req
    };
    let res = call_counted(&fx, browser(None), &calls).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/login?next=%2Fapi%2Fme");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers().get("www-authenticate").is_none());
    assert_eq!(res.body(), "");
    assert_eq!(
        res.extensions().get::<Denial>().map(Denial::kind),
        Some(DenialKind::MissingCredential)
    );
    // A browser with a bad token, and an API client without one: the default rendering.
    let res = call_counted(&fx, browser(Some("not.a.token")), &calls).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/json");
    let res = call_counted(&fx, get("/api/me", None), &calls).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="test""#);
    assert_eq!(
        res.body(),
        r#"{"error":"unauthorized","error_description":"an access token is required"}"#
    );
    // A browser with a token passes.
    let res = call_counted(&fx, browser(Some(&fx.pwd_token())), &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rejection_hook_cannot_turn_a_denial_into_a_pass() {
    // A hook that answers 200 with a body of its own (and its own cache policy).
    let fx = fixture_with(|b| {
        b.rejection(|_: &Denial, _: &http::request::Parts| {
            let mut res = Response::new(bytes::Bytes::from_static(b"welcome"));
            res.headers_mut()
                .insert("cache-control", HeaderValue::from_static("private"));
            Some(res)
        })
    });
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for req in [
        get("/api/me", None),
        get("/api/billing", Some(&fx.pwd_token())),
        get("/api/me", Some(&fx.partial_token())),
    ] {
        let res = call_counted(&fx, req, &calls).await;
        assert_eq!(res.body(), "welcome");
        assert_eq!(res.headers()["cache-control"], "private");
        assert!(res.extensions().get::<Denial>().is_some());
        assert!(res.extensions().get::<Claims>().is_none());
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rejection_hook_is_not_asked_for_grpc_requests() {
    let hook_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hook_calls.clone();
    let fx = fixture_with(move |b| {
        b.rejection(move |d: &Denial, r: &http::request::Parts| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            problem_json(d, r)
        })
    });
    let layer = fx.guard.require(Policy::authenticated()).unwrap();
    let grpc = Request::post("/demo.Billing/GetInvoices")
        .header("content-type", "application/grpc")
        .body(String::new())
        .unwrap();
    let res = layer.layer(service_fn(app)).oneshot(grpc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(hook_calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The same request over plain HTTP asks the hook.
    let http = get("/demo.Billing/GetInvoices", None);
    let res = layer.layer(service_fn(app)).oneshot(http).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(hook_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// An axum app whose `/me` handler names `Claims` on a route whose policy was forgotten.
fn forgotten_policy_app(layer: Option<StepUpLayer>) -> axum::Router {
    async fn me(claims: Claims) -> String {
        claims.sub().to_owned()
    }
    let route = axum::routing::get(me);
    let route = match layer {
        Some(layer) => route.route_layer(layer),
        None => route,
    };
    axum::Router::new().route("/me", route)
}

async fn axum_get(app: axum::Router, accept: Option<&'static str>) -> Response<String> {
    let mut req = Request::get("/me");
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let res = app
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn axum_claims_rejection_uses_the_guards_realm_and_rendering() {
    // The fixture's guard has realm "test".
    let fx = fixture();
    let layer = fx.guard.require(Policy::public()).unwrap();
    let res = axum_get(forgotten_policy_app(Some(layer)), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="test""#);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(
        res.body(),
        r#"{"error":"unauthorized","error_description":"an access token is required"}"#
    );
    assert_eq!(
        res.extensions().get::<Denial>().map(Denial::kind),
        Some(DenialKind::MissingCredential)
    );
    // No layer in front: the default realm.
    let res = axum_get(forgotten_policy_app(None), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
    // The guard's rejection hook renders it too.
    let fx = fixture_with(|b| b.realm("portal").rejection(login_redirect));
    let layer = fx.guard.require(Policy::public()).unwrap();
    let app = forgotten_policy_app(Some(layer));
    let res = axum_get(app.clone(), Some("text/html")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/login?next=%2Fapi%2Fme");
    let res = axum_get(app, None).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer realm="portal""#
    );
}

/// The JSON body of an HTTP denial, or the `stepup-details` of a gRPC one.
async fn details(layer: &StepUpLayer, path: &str, token: &str, grpc: bool) -> Value {
    let mut b = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    b = if grpc {
        b.method(Method::POST)
            .header("content-type", "application/grpc+proto")
    } else {
        b.method(Method::GET)
    };
    let res = layer
        .layer(service_fn(app))
        .oneshot(b.body(String::new()).unwrap())
        .await
        .unwrap();
    let text = match res.headers().get("stepup-details") {
        Some(d) if grpc => d.to_str().unwrap().to_owned(),
        _ => {
            assert!(!grpc, "a gRPC denial carries stepup-details");
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(bytes.to_vec()).unwrap()
        }
    };
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn step_up_denial_says_the_configured_mfa_token_lifetime() {
    for (ttl, strict) in [(120, false), (600, true), (1, false)] {
        let fx = fixture_with(|b| {
            b.mfa_token_ttl(Duration::from_secs(ttl))
                .strict_rfc9470_status(strict)
        });
        let layer = fx
            .guard
            .require(Policy::step_up(billing_requirement()))
            .unwrap();
        for grpc in [false, true] {
            let body = details(&layer, "/billing", &fx.pwd_token(), grpc).await;
            assert_eq!(body["error"], "mfa_required", "{ttl} {grpc}");
            assert_eq!(body["expires_in"], ttl, "{ttl} {grpc}");
            assert!(body.get("token_expired").is_none());
            // It is the mfa_token's true lifetime.
            let claims = fx
                .guard
                .sealer()
                .unwrap()
                .open(body["mfa_token"].as_str().unwrap(), T0)
                .unwrap();
            assert_eq!(claims.exp - claims.iat, ttl);
        }
        // Other denials do not carry it.
        let me = fx.guard.require(Policy::authenticated()).unwrap();
        for grpc in [false, true] {
            let body = details(&me, "/me", "not.a.token", grpc).await;
            assert!(body.get("expires_in").is_none(), "{grpc}");
        }
    }
}

#[tokio::test]
async fn only_an_expired_access_token_says_token_expired() {
    let fx = fixture();
    let layer = fx.guard.require(Policy::authenticated()).unwrap();
    let token = fx.pwd_token();
    let partial = fx.partial_token();
    fx.clock.advance(900 + 5);
    for grpc in [false, true] {
        let body = details(&layer, "/me", &token, grpc).await;
        assert_eq!(
            body,
            serde_json::json!({
                "error": "invalid_token",
                "error_description": "the access token has expired",
                "token_expired": true,
            }),
            "{grpc}"
        );
        // An expired partial token is no expired access token: no refresh will help.
        let body = details(&layer, "/me", &partial, grpc).await;
        assert_eq!(body["error"], "invalid_token");
        assert!(body.get("token_expired").is_none(), "{grpc}");
        // A forged one neither.
        let body = details(&layer, "/me", "not.a.token", grpc).await;
        assert!(body.get("token_expired").is_none(), "{grpc}");
    }
    // The challenge is as before: the field is the machine-readable sign.
    let r = send_via(&layer, get("/me", Some(&token))).await;
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="the access token has expired""#)
    );
    assert_eq!(r.denial, Some(DenialKind::ExpiredToken));
}

/// A token of the fixture's key with these header and claim changes.
fn forged(fx: &Fixture, kid: &str, typ: &str, iss: &str, exp: u64) -> String {
    let _ = fx;
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    header.typ = Some(typ.into());
    let claims = serde_json::json!({"iss": iss, "aud": AUD, "sub": "alice", "iat": T0,
        "exp": exp, "jti": "j1", "amr": ["pwd"], "auth_time": T0});
    let key = jsonwebtoken::EncodingKey::from_secret(&SECRET);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn a_refused_token_says_why_to_the_operator_not_the_client() {
    let fx = fixture();
    let cases = [
        (forged(&fx, "k1", "at+jwt", ISS, T0 + 60), None),
        (
            forged(&fx, "k9", "at+jwt", ISS, T0 + 60),
            Some(TokenError::UnknownKey),
        ),
        (
            forged(&fx, "k1", "JWT", ISS, T0 + 60),
            Some(TokenError::WrongType),
        ),
        (
            forged(&fx, "k1", "at+jwt", "https://other.test", T0 + 60),
            Some(TokenError::WrongIssuer),
        ),
        (
            forged(&fx, "k1", "at+jwt", ISS, T0 - 60),
            Some(TokenError::Expired {
                kind: TokenKind::Access,
            }),
        ),
        ("a b".to_owned(), Some(TokenError::Malformed)),
    ];
    for (token, want) in cases {
        let res = fx
            .guard
            .route_table(table())
            .unwrap()
            .layer(service_fn(app))
            .oneshot(get("/api/me", Some(&token)))
            .await
            .unwrap();
        let denial = res.extensions().get::<Denial>().cloned();
        assert_eq!(denial.as_ref().and_then(Denial::token_error), want.as_ref());
        if let Some(want) = want {
            // The client learns no more than the RFC 6750 row says (expiry is that row's
            // whole point: `token_expired`).
            let body = Reply::read(res).await;
            assert_eq!(body.error(), "invalid_token", "{want:?}");
            let text = String::from_utf8(body.raw).unwrap();
            let expired = matches!(want, TokenError::Expired { .. });
            assert!(expired || !text.contains(want.reason()), "{want:?}: {text}");
        } else {
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
}
