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
//!   - `swap_added`: the same set plus one more key each time (the epoch stays). Real
//!     sets are small: after [`EXTRA_KEYS`] swaps the full set is re-installed as it
//!     is, so in a criterion sample (2 to 120 ms) only the first 16 swaps add; the
//!     paired comparison below resets the set often enough that nearly all of its do;
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
//! **Paired ratios.** On a busy machine the load changes from one 3-second case to the
//! next more than the 5 % these comparisons look for. So after each group, each
//! comparison is also run *paired*: [`ROUNDS`] rounds of one ~2 ms chunk of the baseline
//! and one of the variant, back to back (which goes first alternates), and the median
//! and quartiles of the per-round ratios go to stderr (`paired ...: x1.012 (quartiles
//! ...)`), with the ratio of the two sides' 10th-percentile chunk times (`p10 chunks`:
//! robust to preemptions, but for `swap_removed` it favours chunks with fewer swaps).
//! For the swap cases one refresh thread runs throughout and swaps during the variant's
//! chunks only. Only for cases criterion measured (not under `--test`, nor for cases a
//! filter left out).
//!
//! Run: `cargo bench --bench jwks`; CI's `cargo bench --bench jwks -- --test` runs every
//! case once.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
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
/// The keys the swaps add: `swap_added` adds one per swap, up to all of them, then
/// re-installs the full set.
const EXTRA_KEYS: usize = 16;
/// A paired `swap_added` resets the set every this many rounds (about 2 swaps a round),
/// so that its swaps keep adding.
const RESET_EVERY: usize = 5;
/// The length of one chunk of a paired comparison.
const CHUNK: Duration = Duration::from_millis(2);
/// The rounds of a paired comparison (one chunk of each side per round).
const ROUNDS: usize = 200;

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
    /// [`EXTRA_KEYS`] more keys (the same public key under other `kid`s) for the swaps.
    extras: Arc<[VerifyingKey]>,
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
    let kids: Vec<String> = (0..EXTRA_KEYS).map(|i| format!("extra-{i}")).collect();
    let extras = from_jwks(&signing, alg, &kids).keys().into();
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
        extras,
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
    // How many times criterion ran each case: once under `--test`, never when filtered out.
    let calls: [[Cell<u32>; 3]; 2] = Default::default();
    let mut g = c.benchmark_group(format!("jwks_{alg:?}"));
    for ((mode, set), calls) in [("uncached", &s.uncached), ("cached", &s.cached)]
        .into_iter()
        .zip(&calls)
    {
        for ((name, verifier), calls) in ["local", "jwks", "both"].iter().zip(set).zip(calls) {
            g.bench_function(format!("{name}_{mode}"), |b| {
                b.iter_custom(|iters| {
                    calls.set(calls.get() + 1);
                    run(verifier, &s, iters)
                })
            });
        }
    }
    g.finish();
    for (mode, [local, jwks, both], [l, j, b]) in [
        ("uncached", &s.uncached, &calls[0]),
        ("cached", &s.cached, &calls[1]),
    ] {
        for (name, verifier, calls) in [("jwks", jwks, j), ("both", both, b)] {
            if !measured(&[l, calls]) {
                continue;
            }
            let ratio = paired(
                &mut |n| run(local, &s, n),
                &mut |n| run(verifier, &s, n),
                &mut |_| {},
            );
            ratio.report(&format!("jwks_{alg:?}/{name}_{mode} vs local_{mode}"));
        }
    }
}

fn provider_keys_all(c: &mut Criterion) {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        provider_keys(c, alg);
    }
}

/// Times `n` verifications of the token by `verifier`.
fn run(verifier: &Verifier, s: &Setup, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(verifier.verify(black_box(&s.token), s.at).unwrap());
    }
    start.elapsed()
}

/// Whether criterion measured every one of these cases (ran it more than once): the
/// paired comparison of cases filtered out, or run once under `--test`, is skipped.
fn measured(calls: &[&Cell<u32>]) -> bool {
    calls.iter().all(|c| c.get() > 1)
}

/// The chunk times of a paired comparison, round by round: `(a, b)` in seconds.
struct Rounds(Vec<(f64, f64)>);

/// The `q` quantile (0..=1) of `values`.
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i]
}

impl Rounds {
    /// The `q` quantile of the per-round ratios `b`/`a`.
    fn ratio(&self, q: f64) -> f64 {
        quantile(
            self.0
                .iter()
                .map(|(a, b)| b / a.max(f64::MIN_POSITIVE))
                .collect(),
            q,
        )
    }

    /// The ratio of the 10th-percentile chunk times, `b` over `a`: each side's
    /// undisturbed chunks, so a preemption that hit one side of a round does not count.
    fn fast_ratio(&self) -> f64 {
        let a = quantile(self.0.iter().map(|r| r.0).collect(), 0.1);
        let b = quantile(self.0.iter().map(|r| r.1).collect(), 0.1);
        b / a.max(f64::MIN_POSITIVE)
    }

    fn report(&self, label: &str) {
        eprintln!(
            "paired {label}: x{:.3} (quartiles {:.3}-{:.3}; p10 chunks x{:.3}; {} rounds of ~{} ms each side)",
            self.ratio(0.5),
            self.ratio(0.25),
            self.ratio(0.75),
            self.fast_ratio(),
            self.0.len(),
            CHUNK.as_millis()
        );
    }
}

/// A comparison in the same moments, against the machine's changing load: [`ROUNDS`]
/// rounds of one [`CHUNK`] of `a` and one of `b` (which goes first alternates), each
/// given the calls it should make and answering the time they took; `between(round)`
/// runs untimed before each round.
fn paired(
    a: &mut dyn FnMut(u64) -> Duration,
    b: &mut dyn FnMut(u64) -> Duration,
    between: &mut dyn FnMut(usize),
) -> Rounds {
    let n = calls_per_chunk(a);
    let rounds = (0..ROUNDS)
        .map(|round| {
            between(round);
            let (ta, tb) = if round % 2 == 0 {
                let ta = a(n);
                (ta, b(n))
            } else {
                let tb = b(n);
                (a(n), tb)
            };
            (ta.as_secs_f64(), tb.as_secs_f64())
        })
        .collect();
    Rounds(rounds)
}

/// How many calls of `f` take about a [`CHUNK`]: the fastest of five timings, so that
/// a preemption while calibrating does not shorten every chunk.
fn calls_per_chunk(f: &mut dyn FnMut(u64) -> Duration) -> u64 {
    let mut n = 1u64;
    while f(n) < CHUNK / 4 {
        n *= 2;
    }
    let took = (0..5).map(|_| f(n)).min().unwrap_or(CHUNK);
    let per_chunk = n as f64 * CHUNK.as_secs_f64() / took.as_secs_f64().max(1e-9);
    (per_chunk as u64).max(1)
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
            .take(n)
            .fold(base.clone(), |set, k| set.with(k.clone())),
        Swap::Removed => base.clone().with(extras[n % extras.len()].clone()),
    }
}

/// A background refresh: while active, `SharedKeys::replace` at once and then every
/// [`PERIOD`] (on a schedule, so a late wake-up is caught up), until stopped.
struct Swapper {
    stop: Arc<AtomicBool>,
    active: Arc<AtomicBool>,
    handle: JoinHandle<SwapStats>,
}

/// What a [`Swapper`] did.
#[derive(Default)]
struct SwapStats {
    swaps: u64,
    /// How long it ran.
    alive: Duration,
    /// How long it spent building sets and replacing them (its own CPU time, roughly).
    busy: Duration,
}

impl Swapper {
    fn start(s: &Setup, swap: Swap) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicBool::new(true));
        let (stopped, swapping) = (Arc::clone(&stop), Arc::clone(&active));
        let (shared, base, extras) = (s.shared.clone(), s.base.clone(), Arc::clone(&s.extras));
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let (mut tick, mut swaps, mut busy) = (0u32, 0u32, Duration::ZERO);
            loop {
                if swapping.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    swaps += 1;
                    shared.replace(swap_set(&base, &extras, swap, swaps as usize));
                    busy += t.elapsed();
                }
                tick += 1;
                let due = start + PERIOD * tick;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
            }
            SwapStats {
                swaps: u64::from(swaps),
                alive: start.elapsed(),
                busy,
            }
        });
        Self {
            stop,
            active,
            handle,
        }
    }

    /// Swaps from the next tick on (`true`), or not (`false`).
    fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    /// Stops it: what it did.
    fn stop(self) -> SwapStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// What the samples of one case did besides verifying.
#[derive(Default)]
struct Tally {
    swapper: SwapStats,
    misses: u64,
    verifies: u64,
}

/// One swap case of `verifier`, the state shared across its samples.
struct SwapCase<'a> {
    s: &'a Setup,
    verifier: &'a Verifier,
    swap: Option<Swap>,
    tally: RefCell<Tally>,
    /// How many samples criterion took.
    calls: Cell<u32>,
}

impl SwapCase<'_> {
    /// Untimed: the set back to the token's key alone, the token verified (cached) again.
    fn reset(&self) {
        self.s.shared.replace(self.s.base.clone());
        self.verifier.verify(&self.s.token, self.s.at).unwrap();
    }

    /// One sample: reset, start the refresh, verify `iters` times (timed), stop it.
    fn sample(&self, iters: u64) -> Duration {
        self.calls.set(self.calls.get() + 1);
        self.reset();
        let misses = self.verifier.cache_stats().misses;
        let swapper = self.swap.map(|swap| Swapper::start(self.s, swap));
        let elapsed = run(self.verifier, self.s, iters);
        if let Some(swapper) = swapper {
            self.count_swaps(swapper.stop());
        }
        self.count_misses(self.verifier.cache_stats().misses - misses, iters);
        elapsed
    }

    fn count_swaps(&self, stats: SwapStats) {
        let t = &mut self.tally.borrow_mut().swapper;
        t.swaps += stats.swaps;
        t.alive += stats.alive;
        t.busy += stats.busy;
    }

    /// A swap that keeps every key must never drop a cached verification.
    fn count_misses(&self, missed: u64, verifies: u64) {
        if self.swap != Some(Swap::Removed) {
            assert_eq!(missed, 0, "{:?} dropped a cached verification", self.swap);
        }
        let mut tally = self.tally.borrow_mut();
        tally.misses += missed;
        tally.verifies += verifies;
    }

    /// The swaps and misses so far, on stderr, and forgets them. `over`: the time the
    /// swaps' rate is reckoned over (default: the refresh thread's life).
    fn report(&self, label: &str, over: Option<Duration>) {
        let t = self.tally.take();
        let w = &t.swapper;
        let over = over.unwrap_or(w.alive).as_secs_f64();
        let per_swap = w.busy.as_secs_f64() * 1e6 / (w.swaps.max(1) as f64);
        eprintln!(
            "{label}: {} swaps in {over:.2} s ({:.2} per ms, {per_swap:.1} us each on the refresh thread); {} cache misses in {} verifications",
            w.swaps,
            w.swaps as f64 / (over * 1e3).max(f64::MIN_POSITIVE),
            t.misses,
            t.verifies
        );
    }

    /// The paired comparison with `no_swap`: one refresh thread throughout, swapping
    /// during this case's chunks only; the set reset every [`RESET_EVERY`] rounds (so
    /// that `swap_added` keeps adding).
    fn paired(&self, swap: Swap, label: &str) {
        self.reset();
        let swapper = Swapper::start(self.s, swap);
        swapper.set_active(false);
        // Misses in the timed chunks only (a reset's own is not the swaps').
        let missed = Cell::new(0);
        let timed = |n| {
            let misses = self.verifier.cache_stats().misses;
            let took = run(self.verifier, self.s, n);
            missed.set(missed.get() + self.verifier.cache_stats().misses - misses);
            took
        };
        let (mut verifies, mut swapping) = (0, Duration::ZERO);
        let ratios = paired(
            &mut |n| timed(n),
            &mut |n| {
                swapper.set_active(true);
                let took = timed(n);
                swapper.set_active(false);
                (verifies, swapping) = (verifies + n, swapping + took);
                took
            },
            &mut |round| {
                if round % RESET_EVERY == 0 {
                    self.reset();
                }
            },
        );
        self.count_swaps(swapper.stop());
        self.count_misses(missed.get(), verifies);
        ratios.report(label);
        self.report(&format!("paired {label}"), Some(swapping));
    }
}

fn swap_group(c: &mut Criterion, mode: &str, s: &Setup, verifier: &Verifier) {
    let group = format!("refresh_swap_{mode}");
    let cases = [
        ("no_swap", None),
        ("swap_same", Some(Swap::Same)),
        ("swap_added", Some(Swap::Added)),
        ("swap_removed", Some(Swap::Removed)),
    ]
    .map(|(name, swap)| {
        let case = SwapCase {
            s,
            verifier,
            swap,
            tally: RefCell::default(),
            calls: Cell::default(),
        };
        (name, case)
    });
    let mut g = c.benchmark_group(&group);
    for (name, case) in &cases {
        g.bench_function(*name, |b| b.iter_custom(|iters| case.sample(iters)));
        if case.calls.get() > 0 {
            case.report(&format!("{group}/{name}"), None);
        }
    }
    g.finish();
    let baseline = &cases[0].1.calls;
    for (name, case) in &cases {
        if let (Some(swap), true) = (case.swap, measured(&[baseline, &case.calls])) {
            case.paired(swap, &format!("{group}/{name} vs no_swap"));
        }
    }
}

/// Outside timing, the premise of each swap case: after two swaps a cached verification
/// survives `Same` and `Added` and is dropped by `Removed` (its token still verifies).
fn check_swaps(s: &Setup) {
    let cached = &s.cached[1];
    for swap in [Swap::Same, Swap::Added, Swap::Removed] {
        s.shared.replace(s.base.clone());
        cached.verify(&s.token, s.at).unwrap();
        let before = cached.cache_stats();
        for n in 1..=2 {
            s.shared.replace(swap_set(&s.base, &s.extras, swap, n));
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
    let s = setup(Algorithm::ES256);
    check(&s);
    check_swaps(&s);
    swap_group(c, "uncached", &s, &s.uncached[1]);
    swap_group(c, "cached", &s, &s.cached[1]);
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
