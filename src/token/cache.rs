//! The verifier's cache of verified access tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::claims::Claims;

/// Verified access tokens, so that each distinct token's signature is checked once.
///
/// Keyed by the whole token: the map hashes it (with a per-process random seed) to find
/// the entry and compares the whole string on a hit. Only successful verifications of
/// access tokens go in; every hit repeats the time checks (`nbf`, `exp` with leeway)
/// against `now`, and an entry is dropped once the token has expired, once it is older
/// than `max_age`, or when the keys rotate. Bounded: `capacity` entries, the least
/// useful evicted first (quick_cache's S3-FIFO).
pub(crate) struct TokenCache {
    map: quick_cache::sync::Cache<CacheKey, Arc<CachedToken>>,
    max_age: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A cached token. Compared in constant time: a lookup compares the presented token with
/// the entries its (randomly seeded) hash leads to, and how long that takes must not say
/// how much of a stored token the presented one got right.
struct CacheKey(Box<str>);

/// A token looked up in the cache, without copying it.
struct Lookup<'a>(&'a str);

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::hash::Hash for Lookup<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        ct_str_eq(&self.0, &other.0)
    }
}

impl Eq for CacheKey {}

impl quick_cache::Equivalent<CacheKey> for Lookup<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        ct_str_eq(self.0, &key.0)
    }
}

/// Equality of two strings in time that depends on their lengths only: the bytes are
/// folded word by word with no early exit, and the result is tested with `subtle`.
fn ct_str_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    let mut diff = wa
        .zip(wb)
        .fold(0u64, |acc, (x, y)| acc | (word(x) ^ word(y)));
    for (x, y) in ra.iter().zip(rb) {
        diff |= u64::from(x ^ y);
    }
    diff.ct_eq(&0).into()
}

/// One verification: the claims, when it was made, and by whose keys in which epoch.
pub(crate) struct CachedToken {
    pub(crate) claims: Claims,
    pub(crate) verified_at: u64,
    /// The issuer whose keys verified it (an index into the verifier's issuers).
    pub(crate) issuer: usize,
    /// The epoch of those keys then.
    pub(crate) epoch: u64,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize, max_age: u64) -> Self {
        Self {
            map: quick_cache::sync::Cache::new(capacity),
            max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The entry for `token`, if it is recent enough at `now` and `fresh` agrees that its
    /// keys' epoch is current; a stale one is dropped.
    pub(crate) fn get(
        &self,
        token: &str,
        now: u64,
        current_epoch: impl Fn(usize) -> Option<u64>,
    ) -> Option<Arc<CachedToken>> {
        let cached = self.map.get(&Lookup(token))?;
        let fresh = current_epoch(cached.issuer) == Some(cached.epoch)
            && now >= cached.verified_at
            && now < cached.verified_at.saturating_add(self.max_age);
        if !fresh {
            self.map.remove(&Lookup(token));
            return None;
        }
        Some(cached)
    }

    pub(crate) fn insert(&self, token: &str, entry: CachedToken) {
        self.map.insert(CacheKey(token.into()), Arc::new(entry));
    }

    pub(crate) fn remove(&self, token: &str) {
        self.map.remove(&Lookup(token));
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.map.len(),
        }
    }
}

/// How the verified-token cache has done, e.g. for a metrics gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing usable (the token was then verified in full).
    pub misses: u64,
    /// Tokens held now.
    pub entries: usize,
}

#[cfg(test)]
mod tests {
    use super::ct_str_eq;
    use crate::{Algorithm, Grant, Issuer, ManualClock, SigningKey, Verifier};

    #[test]
    fn a_cached_verification_keeps_the_dpop_binding() {
        const T: u64 = 1_800_000_000;
        let ed = |kid: &str, seed: u8| SigningKey::ed25519_from_seed(kid, &[seed; 32]).unwrap();
        let issuer = Issuer::builder()
            .issuer("https://auth.test")
            .audience("https://api.test")
            .signing_key(ed("k1", 1))
            .clock(ManualClock::new(T))
            .build()
            .unwrap();
        let verifier = Verifier::builder()
            .issuer("https://auth.test")
            .audience("https://api.test")
            .algorithms([Algorithm::EdDSA])
            .key_source(issuer.verifying_keys())
            .build()
            .unwrap();
        let jkt = crate::dpop::thumbprint(&ed("client", 9).public_jwk().unwrap()).unwrap();
        let token = issuer
            .issue_access(&Grant::new("alice").dpop_jkt(&jkt))
            .unwrap()
            .token;
        let full = verifier.verify(&token, T).unwrap();
        assert_eq!(verifier.cache_stats().hits, 0);
        let cached = verifier.verify(&token, T + 1).unwrap();
        assert_eq!(verifier.cache_stats().hits, 1);
        assert_eq!(cached.claims.dpop_jkt(), Some(jkt.as_str()));
        assert_eq!(cached, full);
        // The layer's cache-only lookup too.
        let hit = verifier.cached(&token, T + 2).unwrap();
        assert_eq!(verifier.cache_stats().hits, 2);
        assert_eq!(hit.claims.dpop_jkt(), Some(jkt.as_str()));
    }

    #[test]
    fn constant_time_equality_agrees_with_eq() {
        let base = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz";
        assert!(ct_str_eq(base, base));
        assert!(ct_str_eq("", ""));
        for i in 0..base.len() {
            let mut changed = base.as_bytes().to_vec();
            changed[i] ^= 1;
            let changed = String::from_utf8(changed).unwrap();
            assert!(!ct_str_eq(base, &changed), "byte {i}");
        }
        assert!(!ct_str_eq(base, &base[..base.len() - 1]));
        assert!(!ct_str_eq("abc", "abcd"));
    }
}
