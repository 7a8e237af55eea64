//! What a DPoP-protected request costs (group `dpop_request`), against its baselines in
//! the same run:
//!
//! - `es256_verify`: one raw ES256 verification of a proof's signature through
//!   jsonwebtoken (`crypto::verify`, the crate's backend: aws-lc-rs by default), with the
//!   key decoded once. The floor: a proof check cannot cost less than its signature.
//! - `es256_fresh`: the same verification timed as the two DPoP measurements below are,
//!   one fresh proof at a time, each signed (untimed) just before: what the signature
//!   costs in their conditions, with caches and branch predictors cooled by the signing.
//!   The gap to `es256_verify` is that setting's, not the check's; `dpop_check` and
//!   `dpop_cached` are best read against this one.
//! - `bearer_cached`: a Bearer request through the layer, its token served from the
//!   verified-token cache (the fast path without DPoP).
//! - `dpop_check`: [`dpop::check`] alone: the header parsed, the `jwk` decoded, the
//!   signature, `htm`, `htu`, `iat`, `ath`, and the RFC 7638 thumbprint.
//! - `dpop_cached`: a DPoP request through the layer: the bound token from the cache,
//!   the proof checked, `cnf.jkt` compared, the `jti` used once in a `MemoryStore`, the
//!   inner service called.
//!
//! The goal of issue 19: `dpop_cached` at most 1.15× `es256_verify`.
//!
//! Not timed (`iter_batched`, one input at a time so that a proof is used at the time it
//! was made): a fresh proof per request, signed with p256 by the tests' independent proof
//! maker (`tests/support/dpop.rs`). Every 500 requests the clock moves 61 s on, so the key's remembered proofs expire (the store bounds one key to 1,000 live
//! proofs) and the iteration count does not matter. Before timing, a replayed proof is
//! shown refused, so the bench times the real check.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::{service_fn, Layer, Service};
use tower_stepup::dpop::{self as proofs, DpopConfig, Expected, Htu};
use tower_stepup::store::MemoryStore;
use tower_stepup::{
    Algorithm, Clock as _, Grant, Guard, Issuer, ManualClock, Policy, Sealer, SealingKey,
    SealingKeys, SigningKey, Verifier, VerifyingKey,
};

#[path = "../tests/support/dpop.rs"]
mod dpop;

const ISS: &str = "https://auth.bench";
const AUD: &str = "https://api.bench";
const BASE: &str = "https://api.bench";
const T0: u64 = 1_800_000_000;

async fn hello(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn request(scheme: &str, token: &str, proof: Option<&str>) -> Request<String> {
    let mut b = Request::get("/api/me").header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        b = b.header("dpop", proof);
    }
    b.body(String::new()).unwrap()
}

fn dpop_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = ManualClock::new(T0);
    let secret = [7u8; 32];
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k", Algorithm::HS256, &secret).unwrap())
        .build()
        .unwrap();
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("k", Algorithm::HS256, &secret).unwrap())
        .access_ttl(Duration::from_secs(365 * 86_400))
        .clock(clock.clone())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [3; 32]).unwrap())).unwrap();
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock.clone())
        .dpop(DpopConfig::default(), BASE, MemoryStore::new())
        .build()
        .unwrap();
    let mut svc = guard
        .require(Policy::authenticated())
        .unwrap()
        .layer(service_fn(hello));
    let key = dpop::Key::es256(5);
    let bound = issuer
        .issue_access(&Grant::new("alice").dpop_jkt(key.thumbprint()))
        .unwrap()
        .token;
    let bearer = issuer.issue_access(&Grant::new("bob")).unwrap().token;
    let url = format!("{BASE}/api/me");
    let made = AtomicU64::new(0);
    let fresh_proof = || {
        if made.fetch_add(1, Ordering::Relaxed) % 500 == 499 {
            clock.advance(61);
        }
        key.proof("GET", &url, Some(&bound), clock.now())
    };
    let mut call = |req| rt.block_on(svc.call(req)).unwrap().status();

    // Outside timing: both paths pass and their tokens are cached; a replay is refused.
    assert_eq!(call(request("Bearer", &bearer, None)), StatusCode::OK);
    let proof = fresh_proof();
    assert_eq!(call(request("DPoP", &bound, Some(&proof))), StatusCode::OK);
    assert_eq!(
        call(request("DPoP", &bound, Some(&proof))),
        StatusCode::UNAUTHORIZED
    );

    // The baseline: the proof's signature alone.
    let (message, signature) = proof.rsplit_once('.').unwrap();
    let jwk = key.jwk();
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    assert!(jsonwebtoken::crypto::verify(
        signature,
        message.as_bytes(),
        &decoding,
        Algorithm::ES256
    )
    .unwrap());
    let config = DpopConfig::default();
    let htu = Htu::parse(&url).unwrap();

    let mut g = c.benchmark_group("dpop_request");
    g.bench_function("es256_verify", |b| {
        b.iter(|| {
            assert!(jsonwebtoken::crypto::verify(
                black_box(signature),
                black_box(message.as_bytes()),
                &decoding,
                Algorithm::ES256
            )
            .unwrap())
        })
    });
    g.bench_function("es256_fresh", |b| {
        b.iter_batched(
            fresh_proof,
            |proof| {
                let (message, signature) = proof.rsplit_once('.').unwrap();
                assert!(jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    &decoding,
                    Algorithm::ES256
                )
                .unwrap())
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("bearer_cached", |b| {
        b.iter_batched(
            || request("Bearer", &bearer, None),
            |req| assert_eq!(call(req), StatusCode::OK),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("dpop_check", |b| {
        b.iter_batched(
            || {
                let mut headers = HeaderMap::new();
                headers.insert("dpop", HeaderValue::from_str(&fresh_proof()).unwrap());
                (headers, clock.now())
            },
            |(headers, now)| {
                let expected = Expected {
                    method: &Method::GET,
                    url: &htu,
                    access_token: Some(&bound),
                    nonce: None,
                    now,
                };
                proofs::check(&config, &headers, &expected).unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("dpop_cached", |b| {
        b.iter_batched(
            || request("DPoP", &bound, Some(&fresh_proof())),
            |req| assert_eq!(call(req), StatusCode::OK),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, dpop_request);
criterion_main!(benches);
