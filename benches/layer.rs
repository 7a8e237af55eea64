//! The layer's cost, each group against its own baseline measured in the same run:
//!
//! - `public_route`: the bare inner service vs the same service behind the layer.
//! - `access_<alg>`: raw `jsonwebtoken::decode` of a token vs `Verifier::verify` of the same
//!   token vs a full authenticated request through the layer.
//! - `step_up_denial`: an authenticated pass vs a step-up refusal (mfa_token sealing
//!   included).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Method, Request, Response};
use tower::{service_fn, Layer, Service};
use tower_stepup::{
    Algorithm, Claims, Grant, Guard, Issuer, Policy, RouteTable, Sealer, SealingKey, SealingKeys,
    SigningKey, StepUp, Verifier, VerifyingKey,
};

const ISS: &str = "https://auth.bench";
const AUD: &str = "https://api.bench";

/// The services here answer at once; one poll with a no-op waker completes them.
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("bench services are ready at once"),
    }
}

async fn hello(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

struct Setup {
    verifier: Verifier,
    issuer: Issuer,
    guard: Guard,
    decoding: jsonwebtoken::DecodingKey,
    alg: Algorithm,
}

fn setup(alg: Algorithm) -> Setup {
    let (vk, sk, decoding) = match alg {
        Algorithm::HS256 => (
            VerifyingKey::hmac("k", alg, &[7; 32]).unwrap(),
            SigningKey::hmac("k", alg, &[7; 32]).unwrap(),
            jsonwebtoken::DecodingKey::from_secret(&[7; 32]),
        ),
        Algorithm::ES256 => (
            VerifyingKey::ec_pem("k", alg, include_bytes!("../tests/keys/ec_public.pem")).unwrap(),
            SigningKey::ec_pem("k", alg, include_bytes!("../tests/keys/ec_private.pem")).unwrap(),
            jsonwebtoken::DecodingKey::from_ec_pem(include_bytes!("../tests/keys/ec_public.pem"))
                .unwrap(),
        ),
        Algorithm::EdDSA => (
            VerifyingKey::ed_pem("k", include_bytes!("../tests/keys/ed_public.pem")).unwrap(),
            SigningKey::ed_pem("k", include_bytes!("../tests/keys/ed_private.pem")).unwrap(),
            jsonwebtoken::DecodingKey::from_ed_pem(include_bytes!("../tests/keys/ed_public.pem"))
                .unwrap(),
        ),
        _ => (
            VerifyingKey::rsa_pem("k", alg, include_bytes!("../tests/keys/rsa_public.pem"))
                .unwrap(),
            SigningKey::rsa_pem("k", alg, include_bytes!("../tests/keys/rsa_private.pem")).unwrap(),
            jsonwebtoken::DecodingKey::from_rsa_pem(include_bytes!("../tests/keys/rsa_public.pem"))
                .unwrap(),
        ),
    };
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([alg])
        .key(vk)
        .build()
        .unwrap();
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(sk)
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [3; 32]).unwrap())).unwrap();
    let guard = Guard::builder()
        .verifier(verifier.clone())
        .sealer(sealer)
        .build()
        .unwrap();
    Setup {
        verifier,
        issuer,
        guard,
        decoding,
        alg,
    }
}

fn token(s: &Setup) -> String {
    s.issuer
        .issue_access(
            &Grant::new("alice")
                .amr(["pwd"])
                .acr("urn:bench:pwd")
                .auth_time(s.issuer.clock().now())
                .scope("me billing:read"),
        )
        .unwrap()
        .token
}

fn table() -> RouteTable {
    RouteTable::new()
        .route(Method::GET, "/healthz", Policy::public())
        .route(Method::GET, "/api/me", Policy::authenticated())
        .route(
            Method::GET,
            "/api/billing",
            Policy::step_up(StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))),
        )
}

fn get(path: &str, token: Option<&str>) -> Request<String> {
    let mut b = Request::get(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(String::new()).unwrap()
}

fn public_route(c: &mut Criterion) {
    let s = setup(Algorithm::HS256);
    let mut bare = service_fn(hello);
    let mut guarded = s
        .guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    let mut g = c.benchmark_group("public_route");
    g.bench_function("bare_service", |b| {
        b.iter(|| now(bare.call(black_box(get("/healthz", None)))).unwrap())
    });
    g.bench_function("through_layer", |b| {
        b.iter(|| now(guarded.call(black_box(get("/healthz", None)))).unwrap())
    });
    g.finish();
}

fn access(c: &mut Criterion, alg: Algorithm) {
    let s = setup(alg);
    let t = token(&s);
    let mut validation = jsonwebtoken::Validation::new(s.alg);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let at = s.issuer.clock().now();
    let mut guarded = s
        .guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    let mut g = c.benchmark_group(format!("access_{alg:?}"));
    g.bench_function("raw_jsonwebtoken_decode", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(black_box(&t), &s.decoding, &validation).unwrap())
    });
    g.bench_function("verifier_verify", |b| {
        b.iter(|| s.verifier.verify(black_box(&t), at).unwrap())
    });
    g.bench_function("layer_authenticated_request", |b| {
        b.iter(|| now(guarded.call(black_box(get("/api/me", Some(&t))))).unwrap())
    });
    g.finish();
}

fn access_tokens(c: &mut Criterion) {
    for alg in [
        Algorithm::HS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::RS256,
    ] {
        access(c, alg);
    }
}

fn step_up_denial(c: &mut Criterion) {
    let s = setup(Algorithm::HS256);
    let t = token(&s);
    let mut guarded = s
        .guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    let mut g = c.benchmark_group("step_up_denial");
    g.bench_function("authenticated_pass", |b| {
        b.iter(|| now(guarded.call(black_box(get("/api/me", Some(&t))))).unwrap())
    });
    g.bench_function("mfa_required_with_sealed_token", |b| {
        b.iter(|| {
            let res = now(guarded.call(black_box(get("/api/billing", Some(&t))))).unwrap();
            assert_eq!(res.status(), 403);
            res
        })
    });
    g.finish();
}

criterion_group!(benches, public_route, access_tokens, step_up_denial);
criterion_main!(benches);
