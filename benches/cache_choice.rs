//! Which concurrent cache for verified tokens: key = the whole JWT (~350–450 bytes),
//! value = decoded claims (~250 bytes of strings plus a few integers).
//!
//! - `cache_hit`: look up one of 1,000 hot tokens (all present) and get an owned value:
//!   the claims cloned, or only an `Arc` cloned.
//! - `cache_miss_insert`: look up a token never seen before, then insert it (the owned key
//!   is allocated per iteration, as a real insert must).
//! - `cache_hit_2_threads`: `cache_hit` from two threads at once over the same cache; the
//!   time is the wall time per pair of lookups (one on each thread).
//!
//! `cache_hit` also has baselines: hashing one token, cloning one value.
//!
//! Candidates, capacity 10,000 entries each: `quick_cache::sync::Cache` (default hasher,
//! and with std's SipHash `RandomState`), `moka::sync::Cache`, and 16 shards of
//! `RwLock<HashMap>` with std's `RandomState`.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

const CAPACITY: usize = 10_000;
const HOT: usize = 1_000;
const SHARDS: usize = 16;

/// Roughly what a verified token decodes to; the strings total ~250 bytes.
#[derive(Clone, Debug)]
#[expect(dead_code, reason = "only cloned and moved here, as a cache would")]
struct CachedClaims {
    sub: String,
    iss: String,
    aud: String,
    jti: String,
    sid: String,
    scope: String,
    acr: String,
    amr: String,
    exp: u64,
    iat: u64,
    auth_time: u64,
}

/// splitmix64: deterministic, dependency-free randomness for the fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn b64(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.next() & 63) as usize]))
            .collect()
    }

    /// A JWT-shaped string of 350–450 bytes: header.payload.signature.
    fn token(&mut self) -> String {
        let total = 350 + self.below(101) as usize;
        let header = 36;
        let signature = 86;
        let payload = total - header - signature - 2;
        format!(
            "{}.{}.{}",
            self.b64(header),
            self.b64(payload),
            self.b64(signature)
        )
    }

    fn claims(&mut self) -> CachedClaims {
        CachedClaims {
            sub: format!("user-{}", self.b64(31)),
            iss: "https://auth.example.com/realms/main".to_owned(),
            aud: "https://api.example.com".to_owned(),
            jti: self.b64(22),
            sid: self.b64(22),
            scope: "openid profile email orders:read orders:write payments:read admin:audit"
                .to_owned(),
            acr: "urn:example:acr:mfa".to_owned(),
            amr: "pwd otp mfa".to_owned(),
            exp: 1_900_000_000 + self.below(3600),
            iat: 1_900_000_000,
            auth_time: 1_900_000_000,
        }
    }
}

/// The operations measured, over owned (`CachedClaims`) or shared (`Arc`) values.
trait TokenCache<V>: Sync {
    fn name(&self) -> &'static str;
    fn get(&self, token: &str) -> Option<V>;
    fn insert(&self, token: String, value: V);
}

struct Quick<V, B: BuildHasher + Clone = quick_cache::DefaultHashBuilder>(
    quick_cache::sync::Cache<String, V, quick_cache::UnitWeighter, B>,
    &'static str,
);

impl<V: Clone> Quick<V> {
    fn new() -> Self {
        Self(quick_cache::sync::Cache::new(CAPACITY), "quick_cache")
    }
}

impl<V: Clone> Quick<V, RandomState> {
    fn siphash() -> Self {
        Self(
            quick_cache::sync::Cache::with(
                CAPACITY,
                CAPACITY as u64,
                quick_cache::UnitWeighter,
                RandomState::new(),
                Default::default(),
            ),
            "quick_cache_siphash",
        )
    }
}

impl<V, B> TokenCache<V> for Quick<V, B>
where
    V: Clone + Send + Sync,
    B: BuildHasher + Clone + Send + Sync,
{
    fn name(&self) -> &'static str {
        self.1
    }

    fn get(&self, token: &str) -> Option<V> {
        // `str: Equivalent<String>`: no owned key for a lookup.
        self.0.get(token)
    }

    fn insert(&self, token: String, value: V) {
        self.0.insert(token, value);
    }
}

struct Moka<V>(moka::sync::Cache<String, V>);

impl<V: Clone + Send + Sync + 'static> Moka<V> {
    fn new() -> Self {
        Self(moka::sync::Cache::new(CAPACITY as u64))
    }
}

impl<V: Clone + Send + Sync + 'static> TokenCache<V> for Moka<V> {
    fn name(&self) -> &'static str {
        "moka"
    }

    fn get(&self, token: &str) -> Option<V> {
        self.0.get(token)
    }

    fn insert(&self, token: String, value: V) {
        self.0.insert(token, value);
    }
}

/// 16 × `RwLock<HashMap>`, shard chosen by a SipHash of the key (so the key is hashed
/// twice: once for the shard, once inside the map). Bounded naively: a full shard drops
/// one arbitrary entry.
struct Sharded<V> {
    hasher: RandomState,
    shards: Vec<RwLock<HashMap<String, V>>>,
}

impl<V> Sharded<V> {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_capacity(CAPACITY / SHARDS)))
                .collect(),
        }
    }

    fn shard(&self, token: &str) -> &RwLock<HashMap<String, V>> {
        let hash = self.hasher.hash_one(token);
        &self.shards[(hash % SHARDS as u64) as usize]
    }
}

impl<V: Clone + Send + Sync> TokenCache<V> for Sharded<V> {
    fn name(&self) -> &'static str {
        "sharded_rwlock_hashmap"
    }

    fn get(&self, token: &str) -> Option<V> {
        self.shard(token)
            .read()
            .expect("not poisoned")
            .get(token)
            .cloned()
    }

    fn insert(&self, token: String, value: V) {
        let mut shard = self.shard(&token).write().expect("not poisoned");
        if shard.len() >= CAPACITY / SHARDS && !shard.contains_key(&token) {
            shard.extract_if(|_, _| true).next();
        }
        shard.insert(token, value);
    }
}

struct Fixture {
    hot: Vec<String>,
    claims: Vec<CachedClaims>,
    /// Templates for never-seen tokens: a counter is written into their last 11 bytes.
    templates: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        let mut rng = Rng(0x5EED);
        let hot: Vec<String> = (0..HOT).map(|_| rng.token()).collect();
        let claims = (0..HOT).map(|_| rng.claims()).collect();
        let templates = (0..1024).map(|_| rng.token()).collect();
        Self {
            hot,
            claims,
            templates,
        }
    }

    /// A token never generated before (for `n` distinct), freshly allocated.
    fn fresh(&self, n: u64) -> String {
        const DIGITS: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut token = self.templates[(n % 1024) as usize].clone().into_bytes();
        let len = token.len();
        let mut v = n;
        for b in &mut token[len - 11..] {
            *b = DIGITS[(v & 63) as usize];
            v >>= 6;
        }
        String::from_utf8(token).expect("ASCII")
    }
}

/// Fills `cache` with the hot set and checks every hot token is a hit.
fn filled<V, C: TokenCache<V>>(cache: C, fx: &Fixture, wrap: impl Fn(&CachedClaims) -> V) -> C {
    for (token, claims) in fx.hot.iter().zip(&fx.claims) {
        cache.insert(token.clone(), wrap(claims));
    }
    let hits = fx.hot.iter().filter(|t| cache.get(t).is_some()).count();
    assert_eq!(hits, HOT, "{}: hot set not all resident", cache.name());
    cache
}

fn bench_hit<V, C: TokenCache<V>>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    cache: &C,
    fx: &Fixture,
    kind: &str,
) {
    group.bench_function(format!("{}/{kind}", cache.name()), |b| {
        let mut i = 0usize;
        b.iter(|| {
            // A stride through the hot set (coprime with 1,000): no trivially repeating key.
            i = (i + 7) % HOT;
            black_box(cache.get(black_box(&fx.hot[i])).expect("hit"))
        })
    });
}

fn bench_miss_insert<V: Clone, C: TokenCache<V>>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    cache: &C,
    fx: &Fixture,
    kind: &str,
    wrap: impl Fn(&CachedClaims) -> V,
) {
    let values: Vec<V> = fx.claims.iter().map(&wrap).collect();
    group.bench_function(format!("{}/{kind}", cache.name()), |b| {
        // Continue the counter across criterion's calls so a token is never repeated.
        let mut n = 0u64;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n += 1;
                let token = fx.fresh(n);
                if cache.get(black_box(&token)).is_none() {
                    cache.insert(token, values[(n % HOT as u64) as usize].clone());
                }
            }
            start.elapsed()
        })
    });
}

fn bench_hit_2_threads<V: Send, C: TokenCache<V>>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    cache: &C,
    fx: &Fixture,
    kind: &str,
) {
    group.bench_function(format!("{}/{kind}", cache.name()), |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..2usize)
                    .map(|t| {
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            let start = Instant::now();
                            let mut i = t * 500;
                            for _ in 0..iters {
                                i = (i + 7) % HOT;
                                black_box(cache.get(black_box(&fx.hot[i])).expect("hit"));
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("worker"))
                    .max()
                    .unwrap_or(Duration::ZERO)
            })
        })
    });
}

fn owned(c: &CachedClaims) -> CachedClaims {
    c.clone()
}

fn shared(c: &CachedClaims) -> Arc<CachedClaims> {
    Arc::new(c.clone())
}

/// Runs `$body` once per (cache, value kind).
macro_rules! each_cache {
    ($fx:expr, |$cache:ident, $kind:ident, $wrap:ident| $body:block) => {{
        {
            let $kind = "clone";
            let $wrap = owned;
            {
                let $cache = filled(Quick::new(), $fx, $wrap);
                $body
            }
            {
                let $cache = filled(Quick::siphash(), $fx, $wrap);
                $body
            }
            {
                let $cache = filled(Moka::new(), $fx, $wrap);
                $body
            }
            {
                let $cache = filled(Sharded::new(), $fx, $wrap);
                $body
            }
        }
        {
            let $kind = "arc";
            let $wrap = shared;
            {
                let $cache = filled(Quick::new(), $fx, $wrap);
                $body
            }
            {
                let $cache = filled(Quick::siphash(), $fx, $wrap);
                $body
            }
            {
                let $cache = filled(Moka::new(), $fx, $wrap);
                $body
            }
            {
                let $cache = filled(Sharded::new(), $fx, $wrap);
                $body
            }
        }
    }};
}

fn cache_hit(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("cache_hit");
    // Baselines: hashing one token (std SipHash, quick_cache's default hasher) and
    // cloning one value, the parts a hit cannot avoid.
    let sip = RandomState::new();
    let quick = quick_cache::DefaultHashBuilder::default();
    let mut i = 0usize;
    group.bench_function("baseline/hash_siphash", |b| {
        b.iter(|| {
            i = (i + 7) % HOT;
            sip.hash_one(black_box(&fx.hot[i]))
        })
    });
    group.bench_function("baseline/hash_quick_cache_default", |b| {
        b.iter(|| {
            i = (i + 7) % HOT;
            quick.hash_one(black_box(&fx.hot[i]))
        })
    });
    group.bench_function("baseline/clone_claims", |b| {
        b.iter(|| {
            i = (i + 7) % HOT;
            black_box(&fx.claims[i]).clone()
        })
    });
    each_cache!(&fx, |cache, kind, wrap| {
        let _ = wrap;
        bench_hit(&mut group, &cache, &fx, kind);
    });
    group.finish();
}

fn cache_miss_insert(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("cache_miss_insert");
    each_cache!(&fx, |cache, kind, wrap| {
        bench_miss_insert(&mut group, &cache, &fx, kind, wrap);
    });
    group.finish();
}

fn cache_hit_2_threads(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("cache_hit_2_threads");
    each_cache!(&fx, |cache, kind, wrap| {
        let _ = wrap;
        bench_hit_2_threads(&mut group, &cache, &fx, kind);
    });
    group.finish();
}

criterion_group!(benches, cache_hit, cache_miss_insert, cache_hit_2_threads);
criterion_main!(benches);
