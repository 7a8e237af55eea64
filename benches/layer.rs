//! The layer's cost, each group against its own baseline measured in the same run, so every
//! figure is also a ratio:
//!
//! - `public_route`: the bare inner service vs the same service behind the layer.
//! - `access_<alg>` (HS256, ES256, EdDSA, RS256): `raw_decode` (`jsonwebtoken::decode`)
//!   vs `verify_uncached` (a `Verifier` built with `.cache(0)`) vs `verify_cached` (the
//!   default verifier, the token verified once before timing), and a full authenticated
//!   request through the layer with each verifier: `request_uncached`, `request_cached`.
//! - `step_up_denial`: an authenticated pass vs a step-up refusal (mfa_token sealing
//!   included).
//! - `partial_rejected`: a valid access token passing an authenticated route (with the
//!   default, caching verifier, and with `.cache(0)`: partial tokens are never cached) vs
//!   a valid partial token refused there (401 `mfa_incomplete`).
//! - `revocation_check`: the cached verification alone (`verify_cached`, today's fast
//!   path) vs the same followed by the layer's check of ended sessions: with nothing
//!   revoked (`then_check/empty`), with 10,000 other users' sessions revoked
//!   (`then_check/10k_users`), and with 64 other sessions of the same user revoked
//!   (`then_check/same_user_64`); and a full cached request with nothing revoked vs with
//!   10,000 users revoked.
//! - `route_matching`: the bare inner service vs the layer with a table of 10, 1,000 and
//!   10,000 routes, for a public route near the end of the table (`matched/<n>`) and a
//!   path no route matches (`unmatched/<n>`: default policy, no token, 401). The lookup
//!   is a radix tree: the figures should stay flat as the table grows.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Method, Request, Response, StatusCode};
use tower::{service_fn, Layer, Service};
use tower_stepup::revocation::{Revocations, UserRevocations};
use tower_stepup::{
    Algorithm, Claims, Denial, DenialKind, Grant, Guard, Issuer, Policy, RouteTable, Sealer,
    SealingKey, SealingKeys, SigningKey, StepUp, Verifier, VerifyingKey,
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
    /// The default verifier: with the verified-token cache.
    verifier: Verifier,
    /// The same keys and rules, built with `.cache(0)`.
    uncached: Verifier,
    issuer: Issuer,
    /// Over `verifier`.
    guard: Guard,
    /// Over `uncached`.
    uncached_guard: Guard,
    decoding: jsonwebtoken::DecodingKey,
    alg: Algorithm,
}

fn keys(alg: Algorithm) -> (VerifyingKey, SigningKey, jsonwebtoken::DecodingKey) {
    match alg {
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
    }
}

fn setup(alg: Algorithm) -> Setup {
    let (vk, sk, decoding) = keys(alg);
    let builder = || {
        Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([alg])
            .key(vk.clone())
    };
    let verifier = builder().build().unwrap();
    let uncached = builder().cache(0).build().unwrap();
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(sk)
        .build()
        .unwrap();
    let guard = |verifier: &Verifier| {
        let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [3; 32]).unwrap())).unwrap();
        Guard::builder()
            .verifier(verifier.clone())
            .sealer(sealer)
            .build()
            .unwrap()
    };
    Setup {
        guard: guard(&verifier),
        uncached_guard: guard(&uncached),
        verifier,
        uncached,
        issuer,
        decoding,
        alg,
    }
}

fn grant(s: &Setup) -> Grant {
    Grant::new("alice")
        .amr(["pwd"])
        .acr("urn:bench:pwd")
        .auth_time(s.issuer.clock().now())
        .scope("me billing:read")
}

fn token(s: &Setup) -> String {
    s.issuer.issue_access(&grant(s)).unwrap().token
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
    let mut uncached = s
        .uncached_guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    let mut cached = s
        .guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    // Outside timing: every path accepts the token, and the cache holds it.
    for svc in [&mut uncached, &mut cached] {
        let res = now(svc.call(get("/api/me", Some(&t)))).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    s.uncached.verify(&t, at).unwrap();
    s.verifier.verify(&t, at).unwrap();
    let hits = s.verifier.cache_stats().hits;
    s.verifier.verify(&t, at).unwrap();
    assert_eq!(
        s.verifier.cache_stats().hits,
        hits + 1,
        "verify_cached must hit"
    );
    let off = s.uncached.cache_stats();
    assert_eq!(
        (off.hits, off.entries),
        (0, 0),
        "verify_uncached must not cache"
    );

    let mut g = c.benchmark_group(format!("access_{alg:?}"));
    g.bench_function("raw_decode", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(black_box(&t), &s.decoding, &validation).unwrap())
    });
    g.bench_function("verify_uncached", |b| {
        b.iter(|| s.uncached.verify(black_box(&t), at).unwrap())
    });
    g.bench_function("verify_cached", |b| {
        b.iter(|| s.verifier.verify(black_box(&t), at).unwrap())
    });
    g.bench_function("request_uncached", |b| {
        b.iter(|| now(uncached.call(black_box(get("/api/me", Some(&t))))).unwrap())
    });
    g.bench_function("request_cached", |b| {
        b.iter(|| now(cached.call(black_box(get("/api/me", Some(&t))))).unwrap())
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

/// A guard whose revocation set holds `users` users with one ended session each, and
/// `own` ended sessions of alice (none of them the token's).
fn revoked_guard(s: &Setup, users: usize, own: usize) -> (Guard, Revocations) {
    let set = Revocations::new();
    let at = s.issuer.clock().now();
    let until = at + 3600;
    let others: Vec<_> = (0..users)
        .map(|i| UserRevocations::new(format!("user-{i}")).session(format!("sid-{i}"), until))
        .collect();
    set.apply(&others, at);
    let alice = (0..own).fold(UserRevocations::new("alice"), |u, i| {
        u.session(format!("other-{i}"), until)
    });
    set.apply(&[alice], at);
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [3; 32]).unwrap())).unwrap();
    let guard = Guard::builder()
        .verifier(s.verifier.clone())
        .sealer(sealer)
        .revocations(set.clone())
        .build()
        .unwrap();
    (guard, set)
}

fn revocation_check(c: &mut Criterion) {
    let s = setup(Algorithm::EdDSA);
    let t = token(&s);
    let at = s.issuer.clock().now();
    let claims = s.verifier.verify(&t, at).unwrap().claims;
    let sets = [
        ("empty", revoked_guard(&s, 0, 0)),
        ("10k_users", revoked_guard(&s, 10_000, 0)),
        ("same_user_64", revoked_guard(&s, 0, 64)),
    ];
    for (_, (_, set)) in &sets {
        assert!(!set.is_revoked(&claims, at), "the token's session is live");
    }
    let mut g = c.benchmark_group("revocation_check");
    g.bench_function("verify_cached", |b| {
        b.iter(|| s.verifier.verify(black_box(&t), at).unwrap())
    });
    for (name, (_, set)) in &sets {
        g.bench_with_input(BenchmarkId::new("then_check", name), set, |b, set| {
            b.iter(|| {
                let v = s.verifier.verify(black_box(&t), at).unwrap();
                assert!(!set.is_revoked(&v.claims, at));
            })
        });
    }
    for (name, (guard, _)) in [&sets[0], &sets[1]] {
        let mut svc = guard.route_table(table()).unwrap().layer(service_fn(hello));
        let res = now(svc.call(get("/api/me", Some(&t)))).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        g.bench_function(BenchmarkId::new("request_cached", name), |b| {
            b.iter(|| now(svc.call(black_box(get("/api/me", Some(&t))))).unwrap())
        });
    }
    g.finish();
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

fn partial_rejected(c: &mut Criterion) {
    let s = setup(Algorithm::HS256);
    let access = token(&s);
    let partial = s.issuer.issue_partial(&grant(&s)).unwrap().token;
    let mut guarded = s
        .guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    let mut uncached = s
        .uncached_guard
        .route_table(table())
        .unwrap()
        .layer(service_fn(hello));
    // Outside timing: the access token passes, the partial token gets mfa_incomplete.
    for svc in [&mut guarded, &mut uncached] {
        let res = now(svc.call(get("/api/me", Some(&access)))).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = now(guarded.call(get("/api/me", Some(&partial)))).unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let denial = res.extensions().get::<Denial>().unwrap();
    assert_eq!(denial.kind(), DenialKind::MfaIncomplete);
    assert_eq!(denial.kind().row().error, "mfa_incomplete");

    let mut g = c.benchmark_group("partial_rejected");
    g.bench_function("access_token_pass", |b| {
        b.iter(|| now(guarded.call(black_box(get("/api/me", Some(&access))))).unwrap())
    });
    // Partial tokens are never cached: this is the like-for-like baseline for them.
    g.bench_function("access_token_pass_uncached", |b| {
        b.iter(|| now(uncached.call(black_box(get("/api/me", Some(&access))))).unwrap())
    });
    g.bench_function("partial_token_mfa_incomplete", |b| {
        b.iter(|| now(guarded.call(black_box(get("/api/me", Some(&partial))))).unwrap())
    });
    g.finish();
}

/// `n` routes, five per resource: static and parameterized patterns, several methods and
/// policies. `GET /api/v1/resource{k}/{id}` is public.
fn big_table(n: usize) -> RouteTable {
    let step_up = || Policy::step_up(StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300)));
    (0..n).fold(RouteTable::new(), |t, i| {
        let k = i / 5;
        match i % 5 {
            0 => t.route(
                Method::GET,
                &format!("/api/v1/resource{k}/items"),
                Policy::public(),
            ),
            1 => t.route(
                Method::POST,
                &format!("/api/v1/resource{k}/items"),
                Policy::authenticated(),
            ),
            2 => t.route(
                Method::GET,
                &format!("/api/v1/resource{k}/{{id}}"),
                Policy::public(),
            ),
            3 => t.route(
                Method::PUT,
                &format!("/api/v1/resource{k}/{{id}}"),
                Policy::authenticated().scopes([format!("resource{k}:write")]),
            ),
            _ => t.route(
                Method::DELETE,
                &format!("/api/v1/resource{k}/{{id}}/history"),
                step_up(),
            ),
        }
    })
}

fn route_matching(c: &mut Criterion) {
    let s = setup(Algorithm::HS256);
    let mut bare = service_fn(hello);
    let mut g = c.benchmark_group("route_matching");
    g.bench_function("bare_service", |b| {
        b.iter(|| now(bare.call(black_box(get("/api/v1/resource1/42", None)))).unwrap())
    });
    for n in [10, 1_000, 10_000] {
        let mut guarded = s
            .guard
            .route_table(big_table(n))
            .unwrap()
            .layer(service_fn(hello));
        // The public GET of the last resource: routes n-3 (of n) in insertion order.
        let last = (n - 1) / 5;
        let matched = format!("/api/v1/resource{last}/42");
        let unmatched = format!("/api/v1/resource{last}/42/unknown");
        let res = now(guarded.call(get(&matched, None))).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = now(guarded.call(get(&unmatched, None))).unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.extensions().get::<Denial>().unwrap().kind(),
            DenialKind::MissingCredential
        );
        g.bench_with_input(BenchmarkId::new("matched", n), &matched, |b, path| {
            b.iter(|| now(guarded.call(black_box(get(path, None)))).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("unmatched", n), &unmatched, |b, path| {
            b.iter(|| now(guarded.call(black_box(get(path, None)))).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    public_route,
    access_tokens,
    step_up_denial,
    partial_rejected,
    revocation_check,
    route_matching
);
criterion_main!(benches);
