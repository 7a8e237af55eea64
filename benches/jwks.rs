//! Keys from an identity provider's JWKS against the same keys loaded locally, and
//! verification while a refresh swaps the key set (issue 16), each group against its own
//! baseline measured in the same run, so every figure is also a ratio:
//!
//! - `jwks_<alg>` (RS256, ES256, EdDSA): one token, one key, three verifiers, each built
//!   with the cache off (`.cache(0)`: `*_uncached`) and with the default cache, the token
//!   verified once before timing (`*_cached`):
//!   - `local`: the key as the local issuer's (`VerifyingKey::rsa_pem`/`ec_pem`/`ed_pem`
//!     from `tests/keys`): the baseline;
//!   - `jwks`: the same key as a [`TrustedIssuer`]'s, read by `KeySet::from_jwks` from
//!     its public JWK (`SigningKey::public_jwk`) and held in [`SharedKeys`];
//!   - `both`: a verifier with a local issuer (another `iss`) *and* that trusted issuer,
//!     so the token is first routed by its `iss` (a peek at the payload).
//! - `refresh_swap_uncached`, `refresh_swap_cached` (ES256, the `jwks` verifier): verifying
//!   with no refresh (`no_swap`, the baseline) vs while a background thread calls
//!   [`SharedKeys::replace`] every millisecond with
//!   - `swap_same`: a fresh copy of the same set (the key epoch stays);
//!   - `swap_added`: the same set plus one more key each time (the epoch stays; after
//!     [`ADDED_CAP`] keys, fresh copies of that full set);
//!   - `swap_removed`: the token's key plus one other key, a different one each time: a
//!     key leaves the set on every swap, so the epoch moves and every cached
//!     verification is dropped (the next request verifies the signature again).
//!
//! The swapping thread runs only around the timed loop of each sample (started before
//! it, stopped after it); before each sample the set is reset to the token's key alone
//! and the token verified once, untimed. After each case a line on stderr gives the
//! swaps made, their rate and the cache misses during the timed loops (none allowed
//! for `swap_same` and `swap_added`: a swap that keeps every key never drops the cache).
//!
//! Run: `cargo bench --bench jwks`; CI's `cargo bench --bench jwks -- --test` runs every
//! case once.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use tower_stepup::token::{JwkSet, SharedKeys, TrustedIssuer};
use tower_stepup::{Algorithm, Grant, Issuer, KeySet, SigningKey, Verifier, VerifyingKey};

/// The identity provider's `iss` (and the local issuer's in the `local` baseline, so
/// that all three verifiers check the very same token).
const ISS: &str = "https://idp.bench";
const AUD: &str = "https://api.bench";
/// The local issuer of the `both` verifier.
const LOCAL_ISS: &str = "https://auth.bench";
/// How often the refresh thread swaps the set.
const PERIOD: Duration = Duration::from_millis(1);
/// The most keys `swap_added` adds before it re-installs the full set.
const ADDED_CAP: usize = 64;

fn keys(alg: Algorithm) -> (VerifyingKey, SigningKey) {
    match alg {
        Algorithm::ES256 => (
            VerifyingKey::ec_pem("k", alg, include_bytes!("../tests/keys/ec_public.pem")).unwrap(),
            SigningKey::ec_pem("k", alg, include_bytes!("../tests/keys/ec_private.pem")).unwrap(),
        ),
        Algorithm::EdDSA => (
            VerifyingKey::ed_pem("k", include_bytes!("../tests/keys/ed_public.pem")).unwrap(),
            SigningKey::ed_pem("k", include_bytes!("../tests/keys/ed_private.pem")).unwrap(),
        ),
        _ => (
            VerifyingKey::rsa_pem("k", alg, include_bytes!("../tests/keys/rsa_public.pem"))
                .unwrap(),
            SigningKey::rsa_pem("k", alg, include_bytes!("../tests/keys/rsa_private.pem")).unwrap(),
        ),
    }
}

/// The public key of `signing` under each of `kids`, read from a JWKS as a trusted
/// issuer's keys are.
fn from_jwks(signing: &SigningKey, alg: Algorithm, kids: &[String]) -> KeySet {
    let jwk = signing
        .public_jwk()
        .expect("an asymmetric key has a public JWK");
    let keys = kids
        .iter()
        .map(|kid| {
            let mut jwk = jwk.clone();
            jwk.common.key_id = Some(kid.clone());
            jwk
        })
        .collect();
    let (set, skipped) = KeySet::from_jwks(&JwkSet { keys }, &[alg]);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(set.keys().len(), kids.len());
    set
}

/// One token and the three verifiers of it, with the cache on and off.
struct Setup {
    token: String,
    at: u64,
    /// The trusted issuer's keys, shared by its `jwks` and `both` verifiers.
    shared: SharedKeys,
    /// The token's key alone, as the JWKS gave it.
    base: KeySet,
    /// `(local, jwks, both)` with the cache off, then with the default cache.
    uncached: [Verifier; 3],
    cached: [Verifier; 3],
}

fn trusted(shared: &SharedKeys, alg: Algorithm) -> TrustedIssuer {
    TrustedIssuer::new(ISS)
        .audience(AUD)
        .algorithms([alg])
        .key_source(shared.clone())
}

/// `(local, jwks, both)` with a cache of `capacity` (0: off).
fn verifiers(
    local: &VerifyingKey,
    shared: &SharedKeys,
    alg: Algorithm,
    capacity: Option<usize>,
) -> [Verifier; 3] {
    let cache = |b: tower_stepup::token::VerifierBuilder| match capacity {
        Some(capacity) => b.cache(capacity),
        None => b,
    };
    let local = cache(
        Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([alg])
            .key(local.clone()),
    );
    let jwks = cache(Verifier::builder().trust(trusted(shared, alg)));
    let both = cache(
        Verifier::builder()
            .issuer(LOCAL_ISS)
            .audience(AUD)
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("local", Algorithm::HS256, &[7; 32]).unwrap())
            .trust(trusted(shared, alg)),
    );
    [local, jwks, both].map(|b| b.build().unwrap())
}

fn setup(alg: Algorithm) -> Setup {
    let (local, signing) = keys(alg);
    let base = from_jwks(&signing, alg, &["k".to_owned()]);
    let shared = SharedKeys::new(base.clone());
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(signing)
        .build()
        .unwrap();
    let at = issuer.clock().now();
    let grant = Grant::new("alice")
        .amr(["pwd"])
        .acr("urn:bench:pwd")
        .auth_time(at)
        .scope("me billing:read");
    let token = issuer.issue_access(&grant).unwrap().token;
    Setup {
        token,
        at,
        uncached: verifiers(&local, &shared, alg, Some(0)),
        cached: verifiers(&local, &shared, alg, None),
        shared,
        base,
    }
}

/// Outside timing: every verifier accepts the token as the provider's; the cached ones
/// answer a second time from the cache, the uncached ones never cache.
fn check(s: &Setup) {
    for v in s.uncached.iter().chain(&s.cached) {
        let verified = v.verify(&s.token, s.at).unwrap();
        assert_eq!(verified.claims.iss(), Some(ISS));
        assert_eq!(verified.claims.sub(), "alice");
    }
    for v in &s.cached {
        let hits = v.cache_stats().hits;
        v.verify(&s.token, s.at).unwrap();
        assert_eq!(
            v.cache_stats().hits,
            hits + 1,
            "the cached verifier must hit"
        );
    }
    for v in &s.uncached {
        let stats = v.cache_stats();
        assert_eq!(
            (stats.hits, stats.entries),
            (0, 0),
            "cache(0) must not cache"
        );
    }
    // `both` has a local issuer of its own, and the token is not its.
    let both = &s.cached[2];
    assert_eq!(both.local_issuer(), Some(LOCAL_ISS));
    assert!(!both.is_local(&both.verify(&s.token, s.at).unwrap().claims));
}

fn provider_keys(c: &mut Criterion, alg: Algorithm) {
    let s = setup(alg);
    check(&s);
    let mut g = c.benchmark_group(format!("jwks_{alg:?}"));
    for (mode, set) in [("uncached", &s.uncached), ("cached", &s.cached)] {
        for (name, verifier) in ["local", "jwks", "both"].iter().zip(set) {
            g.bench_function(format!("{name}_{mode}"), |b| {
                b.iter(|| verifier.verify(black_box(&s.token), s.at).unwrap())
            });
        }
    }
    g.finish();
}

fn provider_keys_all(c: &mut Criterion) {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        provider_keys(c, alg);
    }
}

/// What the refresh thread swaps in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Swap {
    Same,
    Added,
    Removed,
}

/// The set the `n`th swap (from 1) installs.
fn swap_set(base: &KeySet, extras: &[VerifyingKey], swap: Swap, n: usize) -> KeySet {
    match swap {
        Swap::Same => base.clone(),
        Swap::Added => extras
            .iter()
            .take(n.min(ADDED_CAP))
            .fold(base.clone(), |set, k| set.with(k.clone())),
        Swap::Removed => base.clone().with(extras[n % extras.len()].clone()),
    }
}

/// A background refresh: `SharedKeys::replace` at once and then every [`PERIOD`] (on a
/// schedule, so a late wake-up is caught up) until stopped.
struct Swapper {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, Duration)>,
}

impl Swapper {
    fn start(shared: SharedKeys, base: KeySet, extras: Arc<[VerifyingKey]>, swap: Swap) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0u32;
            // The first swap at once, then one per period until stopped.
            loop {
                n += 1;
                shared.replace(swap_set(&base, &extras, swap, n as usize));
                let due = start + PERIOD * n;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
            }
            (u64::from(n), start.elapsed())
        });
        Self { stop, handle }
    }

    /// Stops it: the swaps made and for how long it ran.
    fn stop(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// What the samples of one case did besides verifying.
#[derive(Default)]
struct Tally {
    swaps: u64,
    swapping: Duration,
    misses: u64,
    verifies: u64,
}

/// One swap case of `verifier`, the state shared across its samples.
struct SwapCase<'a> {
    s: &'a Setup,
    verifier: &'a Verifier,
    extras: Arc<[VerifyingKey]>,
    swap: Option<Swap>,
    tally: RefCell<Tally>,
}

impl SwapCase<'_> {
    /// One sample: reset the set and re-cache the token (untimed), start the refresh,
    /// verify `iters` times (timed), stop it.
    fn sample(&self, iters: u64) -> Duration {
        let s = self.s;
        s.shared.replace(s.base.clone());
        self.verifier.verify(&s.token, s.at).unwrap();
        let misses = self.verifier.cache_stats().misses;
        let swapper = self.swap.map(|swap| {
            Swapper::start(
                s.shared.clone(),
                s.base.clone(),
                Arc::clone(&self.extras),
                swap,
            )
        });
        let start = Instant::now();
        for _ in 0..iters {
            black_box(self.verifier.verify(black_box(&s.token), s.at).unwrap());
        }
        let elapsed = start.elapsed();
        let mut tally = self.tally.borrow_mut();
        if let Some(swapper) = swapper {
            let (swaps, swapping) = swapper.stop();
            tally.swaps += swaps;
            tally.swapping += swapping;
        }
        let missed = self.verifier.cache_stats().misses - misses;
        if self.swap != Some(Swap::Removed) {
            assert_eq!(
                missed, 0,
                "{:?}: a swap keeping every key dropped the cache",
                self.swap
            );
        }
        tally.misses += missed;
        tally.verifies += iters;
        elapsed
    }

    fn report(&self, group: &str, name: &str) {
        let t = self.tally.borrow();
        let per_ms = t.swaps as f64 / (t.swapping.as_secs_f64() * 1e3).max(f64::MIN_POSITIVE);
        eprintln!(
            "{group}/{name}: {} swaps in {:.2} s ({per_ms:.2} per ms); {} cache misses in {} verifications",
            t.swaps,
            t.swapping.as_secs_f64(),
            t.misses,
            t.verifies
        );
    }
}

fn swap_group(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    s: &Setup,
    verifier: &Verifier,
    extras: &Arc<[VerifyingKey]>,
) {
    let cases = [
        ("no_swap", None),
        ("swap_same", Some(Swap::Same)),
        ("swap_added", Some(Swap::Added)),
        ("swap_removed", Some(Swap::Removed)),
    ];
    for (name, swap) in cases {
        let case = SwapCase {
            s,
            verifier,
            extras: Arc::clone(extras),
            swap,
            tally: RefCell::default(),
        };
        g.bench_function(name, |b| b.iter_custom(|iters| case.sample(iters)));
        case.report(group, name);
    }
}

/// Outside timing, the premise of each swap case: after two swaps a cached verification
/// survives `Same` and `Added` and is dropped by `Removed` (its token still verifies).
fn check_swaps(s: &Setup, extras: &[VerifyingKey]) {
    let cached = &s.cached[1];
    for swap in [Swap::Same, Swap::Added, Swap::Removed] {
        s.shared.replace(s.base.clone());
        cached.verify(&s.token, s.at).unwrap();
        let before = cached.cache_stats();
        for n in 1..=2 {
            s.shared.replace(swap_set(&s.base, extras, swap, n));
        }
        cached.verify(&s.token, s.at).unwrap();
        let after = cached.cache_stats();
        let dropped = swap == Swap::Removed;
        assert_eq!(after.hits - before.hits, u64::from(!dropped), "{swap:?}");
        assert_eq!(after.misses - before.misses, u64::from(dropped), "{swap:?}");
    }
    s.shared.replace(s.base.clone());
}

fn refresh_swap(c: &mut Criterion) {
    let alg = Algorithm::ES256;
    let s = setup(alg);
    check(&s);
    let (_, signing) = keys(alg);
    let kids: Vec<String> = (0..ADDED_CAP).map(|i| format!("extra-{i}")).collect();
    let extras: Arc<[VerifyingKey]> = from_jwks(&signing, alg, &kids).keys().into();
    check_swaps(&s, &extras);
    for (mode, verifier) in [("uncached", &s.uncached[1]), ("cached", &s.cached[1])] {
        let group = format!("refresh_swap_{mode}");
        let mut g = c.benchmark_group(&group);
        swap_group(&mut g, &group, &s, verifier, &extras);
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = provider_keys_all, refresh_swap
}
criterion_main!(benches);
