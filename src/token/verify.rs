//! Token verification: signature, algorithm, `kid`, `typ`, `iss`, `aud`, `exp`, `nbf`.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::claims::Claims;
use super::keys::KeySet;
use super::source::{KeySource, SharedKeys};
use super::{TokenKind, DEFAULT_PARTIAL_AUDIENCE};
use crate::error::ConfigError;

/// Longest token the verifier will look at, in bytes. Anything longer is rejected before
/// any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The default clock leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// The largest leeway the verifier accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Default number of verified access tokens the verifier remembers.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Default longest time a verification is reused before the token is verified again.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(300);

/// Why a token was not accepted.
///
/// The `Display` text is safe to log: it never contains the token or a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS, not base64url, not JSON, or longer than [`MAX_TOKEN_LEN`].
    #[error("malformed token")]
    Malformed,
    /// The `typ` header names no token kind this verifier accepts.
    #[error("wrong token type")]
    WrongType,
    /// The algorithm is not in the allow-list or does not match the key.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No key with the token's `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `iss` missing or not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` missing or not the audience of this token kind.
    #[error("wrong audience")]
    WrongAudience,
    /// A claim is missing or has the wrong type.
    #[error("invalid claims")]
    InvalidClaims,
    /// `nbf` lies in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// A genuine token, past its `exp` (beyond the leeway).
    #[error("token expired")]
    Expired {
        /// The kind of the expired token.
        kind: TokenKind,
    },
}

impl TokenError {
    /// A short snake_case name of the reason, e.g. for the `reason` of an
    /// [audit](crate::audit) event: `malformed`, `wrong_type`, `bad_signature`, …
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::WrongType => "wrong_type",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::InvalidClaims => "invalid_claims",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired { .. } => "expired",
        }
    }
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// Its kind, from its `typ` and audience.
    pub kind: TokenKind,
    /// Its claims.
    pub claims: Claims,
}

/// Verifies access tokens and partial tokens.
///
/// Each token kind has its own `typ` and its own audience, and a token is checked against
/// the rules of the kind it claims, so one kind is never taken for another (RFC 8725
/// §3.11–3.12). Cheap to clone: clones share the keys, so
/// [`rotate_keys`](Verifier::rotate_keys) reaches every clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// The keys, read lock-free on every verification; their epoch changes when a key
    /// leaves the set, and a verification made in one epoch is never reused in another.
    keys: Arc<dyn KeySource>,
    cache: Option<TokenCache>,
    algorithms: Vec<Algorithm>,
    /// One pair of rules per allowed algorithm, each allowing only that algorithm:
    /// jsonwebtoken refuses a validation whose allow-list mixes algorithm families.
    rules: Vec<Rules>,
    partial_audience: String,
    leeway: u64,
}

struct Rules {
    alg: Algorithm,
    access: Validation,
    partial: Validation,
}

/// Verified access tokens, so that each distinct token's signature is checked once.
///
/// Keyed by the whole token: the map hashes it (with a per-process random seed) to find
/// the entry and compares the whole string on a hit. Only successful verifications of
/// access tokens go in; every hit repeats the time checks (`nbf`, `exp` with leeway)
/// against `now`, and an entry is dropped once the token has expired, once it is older
/// than `max_age`, or when the keys rotate. Bounded: `capacity` entries, the least
/// useful evicted first (quick_cache's S3-FIFO).
struct TokenCache {
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

struct CachedToken {
    claims: Claims,
    verified_at: u64,
    generation: u64,
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

impl Verifier {
    /// Starts a verifier configuration.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch).
    ///
    /// A token verified before (an access token, with the same keys, at most
    /// `cache_max_age` ago) is answered from the cache: the time checks run again, the
    /// signature check does not. See [`VerifierBuilder::cache`].
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        if let Some(cache) = &self.inner.cache {
            if let Some(answer) = self.lookup(cache, token, now) {
                return answer;
            }
            cache.misses.fetch_add(1, Ordering::Relaxed);
        }
        let snapshot = self.inner.keys.shared_keys().snapshot();
        let generation = snapshot.epoch;
        let verified = self.verify_in_full(token, &snapshot.keys, now)?;
        if let (Some(cache), TokenKind::Access) = (&self.inner.cache, verified.kind) {
            cache.map.insert(
                CacheKey(token.into()),
                Arc::new(CachedToken {
                    claims: verified.claims.clone(),
                    verified_at: now,
                    generation,
                }),
            );
        }
        Ok(verified)
    }

    /// The cached answer for `token` at `now`, if the cache holds a usable one: the
    /// verification is recent enough and of the current keys, and `token` passes the
    /// time checks now (`Err` if it no longer does: the entry is dropped).
    fn lookup(
        &self,
        cache: &TokenCache,
        token: &str,
        now: u64,
    ) -> Option<Result<VerifiedToken, TokenError>> {
        let cached = cache.map.get(&Lookup(token))?;
        let generation = self.inner.keys.shared_keys().epoch();
        let fresh = cached.generation == generation
            && now >= cached.verified_at
            && now < cached.verified_at.saturating_add(cache.max_age);
        if !fresh {
            cache.map.remove(&Lookup(token));
            return None;
        }
        Some(
            match self.check_times(&cached.claims, TokenKind::Access, now) {
                Ok(()) => {
                    cache.hits.fetch_add(1, Ordering::Relaxed);
                    Ok(VerifiedToken {
                        kind: TokenKind::Access,
                        claims: cached.claims.clone(),
                    })
                }
                Err(e) => {
                    // Expired (or the clock went back before nbf): gone for good.
                    cache.map.remove(&Lookup(token));
                    Err(e)
                }
            },
        )
    }

    /// A cache hit for `token` at `now`, or `None` (the caller then verifies in full).
    ///
    /// Every token in the cache passed a full verification, so it is a well-formed
    /// compact JWS: the layer asks here before checking the credential's syntax.
    pub(crate) fn cached(&self, token: &str, now: u64) -> Option<VerifiedToken> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let cache = self.inner.cache.as_ref()?;
        self.lookup(cache, token, now)?.ok()
    }

    fn verify_in_full(
        &self,
        token: &str,
        keys: &KeySet,
        now: u64,
    ) -> Result<VerifiedToken, TokenError> {
        let mut buf = [0u8; 256];
        let mut heap = Vec::new();
        let header = JoseHeader::parse(token, &mut buf, &mut heap)?;
        // RFC 7515 §4.1.11: extensions named critical must be understood; none are here.
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let kind = header
            .typ
            .as_deref()
            .and_then(TokenKind::from_typ)
            .ok_or(TokenError::WrongType)?;
        if !self.inner.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let key = keys
            .select(header.kid.as_deref())
            .ok_or(TokenError::UnknownKey)?;
        if key.algorithm() != header.alg {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let rules = self
            .inner
            .rules
            .iter()
            .find(|r| r.alg == header.alg)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let validation = match kind {
            TokenKind::Access => &rules.access,
            TokenKind::Partial => &rules.partial,
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key.decoding_key(), validation).map_err(|e| {
                match e.kind() {
                    // jsonwebtoken names the first missing claim in a `HashSet`'s randomly
                    // seeded order: with both missing, decide here, `iss` first, so that one
                    // token always gets one answer.
                    ErrorKind::MissingRequiredClaim(c) if c == "iss" || c == "aud" => {
                        if payload_has(token, "iss") {
                            TokenError::WrongAudience
                        } else {
                            TokenError::WrongIssuer
                        }
                    }
                    other => map_error(other),
                }
            })?;
        let claims = data.claims;
        // The audiences of the two kinds are mutually exclusive (RFC 8725 §3.12): an access
        // token never names the partial audience, a partial token names nothing else.
        let partial_aud = &self.inner.partial_audience;
        let exclusive = match kind {
            TokenKind::Access => !claims.aud().contains(partial_aud),
            TokenKind::Partial => claims.aud().iter().all(|a| a == partial_aud),
        };
        if !exclusive {
            return Err(TokenError::WrongAudience);
        }
        self.check_times(&claims, kind, now)?;
        Ok(VerifiedToken { kind, claims })
    }

    /// `nbf` and `exp` against `now`, with the leeway.
    fn check_times(&self, claims: &Claims, kind: TokenKind, now: u64) -> Result<(), TokenError> {
        let leeway = self.inner.leeway;
        if claims
            .nbf()
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        // RFC 7519 §4.1.4: the token is valid only while now < exp.
        if now >= claims.exp().saturating_add(leeway) {
            return Err(TokenError::Expired { kind });
        }
        Ok(())
    }

    /// Replaces the verifying keys of this verifier and all its clones, and forgets every
    /// cached verification.
    ///
    /// Tokens signed by a key that is no longer in the set are rejected from the next
    /// request on.
    pub fn rotate_keys(&self, keys: KeySet) -> Result<(), ConfigError> {
        keys.validate(&self.inner.algorithms)?;
        self.inner.keys.shared_keys().replace_forgetting(keys);
        // Entries of the old generation would never be used again; free them now. (One
        // inserted by a verification still running with the old keys is refused on
        // lookup by its generation.)
        self.clear_cache();
        Ok(())
    }

    /// Forgets every cached verification.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.map.clear();
        }
    }

    /// The cache's counters (all zero when the cache is off).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(|c| CacheStats {
                hits: c.hits.load(Ordering::Relaxed),
                misses: c.misses.load(Ordering::Relaxed),
                entries: c.map.len(),
            })
            .unwrap_or_default()
    }

    /// The clock leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.inner.leeway
    }

    fn keys(&self) -> KeySet {
        self.inner.keys.shared_keys().keys()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys())
            .field("algorithms", &self.inner.algorithms)
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

/// Whether the (already authenticated) payload of `token` has the claim `name`.
fn payload_has(token: &str, name: &str) -> bool {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|json| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json).ok()
        })
        .is_some_and(|claims| claims.contains_key(name))
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::Json(_) => TokenError::InvalidClaims,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenError::AlgorithmNotAllowed,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed
        }
        // Key or provider trouble while checking: the token is not accepted.
        _ => TokenError::BadSignature,
    }
}

/// Configuration of a [`Verifier`].
#[derive(Default)]
#[must_use]
pub struct VerifierBuilder {
    keys: KeySet,
    source: Option<Arc<dyn KeySource>>,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audiences: Vec<String>,
    partial_audience: Option<String>,
    leeway: Option<Duration>,
    cache_capacity: Option<usize>,
    cache_max_age: Option<Duration>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("keys", &self.keys)
            .field("key_source", &self.source.is_some())
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// The verifying keys.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = keys;
        self
    }

    /// Adds one verifying key.
    pub fn key(mut self, key: super::VerifyingKey) -> Self {
        self.keys = self.keys.with(key);
        self
    }

    /// Keys that change while the verifier runs, e.g. a rotating
    /// [`Issuer`](crate::Issuer)'s (`Issuer::verifying_keys`). Replaces
    /// [`keys`](Self::keys) and [`key`](Self::key).
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The algorithm allow-list. Required: there is no default, and `none` does not exist.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The expected `iss`. Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An accepted `aud` of access tokens. Required; call again for several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The `aud` of partial tokens. It must differ from every access-token audience.
    /// Default: [`DEFAULT_PARTIAL_AUDIENCE`].
    pub fn partial_audience(mut self, audience: impl Into<String>) -> Self {
        self.partial_audience = Some(audience.into());
        self
    }

    /// Clock leeway for `exp` and `nbf`. Default 5 s, at most 60 s.
    ///
    /// # Security
    /// Leeway lengthens every token's life by that much; keep it small.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// How many verified access tokens to remember (default
    /// [`DEFAULT_CACHE_CAPACITY`]); `0` turns the cache off.
    ///
    /// On by default, because checking a signature is nearly all of the cost of a
    /// request (about 3 µs for HS256, 20–60 µs for RS256, EdDSA and ES256) and a client
    /// sends the same token many times. Reusing a verification changes no decision:
    /// only access tokens that passed every check go in, keyed by the whole token; every
    /// hit repeats the `nbf`/`exp` checks at the request's time; an entry lives at most
    /// [`cache_max_age`](Self::cache_max_age) and never past the token's `exp`; rotating
    /// the keys empties the cache; partial tokens are always verified in full, and
    /// step-up mfa_tokens never pass through the verifier. Memory: about the size of
    /// the token plus its claims per entry (roughly 1 KiB), so ~10 MiB at the default
    /// capacity when full.
    pub fn cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// The longest time a verification is reused (default [`DEFAULT_CACHE_MAX_AGE`], at
    /// least 1 s). After it, the token is verified in full again.
    pub fn cache_max_age(mut self, max_age: Duration) -> Self {
        self.cache_max_age = Some(max_age);
        self
    }

    /// Checks the configuration and builds the verifier.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        super::ensure_crypto_provider();
        if self.algorithms.is_empty() {
            return Err(ConfigError::Missing("algorithm allow-list"));
        }
        let issuer = self.issuer.ok_or(ConfigError::Missing("issuer"))?;
        if self.audiences.is_empty() {
            return Err(ConfigError::Missing("audience"));
        }
        let partial_audience = self
            .partial_audience
            .unwrap_or_else(|| DEFAULT_PARTIAL_AUDIENCE.to_owned());
        if self.audiences.contains(&partial_audience) {
            return Err(ConfigError::invalid(
                "partial_audience",
                "must differ from every access-token audience",
            ));
        }
        let leeway = self.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::invalid("leeway", "at most 60 s"));
        }
        let keys: Arc<dyn KeySource> = match self.source {
            Some(source) => source,
            None => Arc::new(SharedKeys::new(self.keys)),
        };
        keys.shared_keys().keys().validate(&self.algorithms)?;
        let cache_max_age = self
            .cache_max_age
            .unwrap_or(DEFAULT_CACHE_MAX_AGE)
            .as_secs();
        if cache_max_age == 0 {
            return Err(ConfigError::invalid("cache_max_age", "at least 1 s"));
        }
        let cache = match self.cache_capacity.unwrap_or(DEFAULT_CACHE_CAPACITY) {
            0 => None,
            capacity => Some(TokenCache {
                map: quick_cache::sync::Cache::new(capacity),
                max_age: cache_max_age,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        };

        let validation = |alg: Algorithm, audiences: &[String]| {
            let mut v = Validation::new(alg);
            // exp and nbf are checked against the injected clock, after the signature.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.leeway = 0;
            v.required_spec_claims = HashSet::from(["iss".to_owned(), "aud".to_owned()]);
            v.set_issuer(&[issuer.as_str()]);
            v.set_audience(audiences);
            v
        };
        Ok(Verifier {
            inner: Arc::new(Inner {
                rules: self
                    .algorithms
                    .iter()
                    .map(|&alg| Rules {
                        alg,
                        access: validation(alg, &self.audiences),
                        partial: validation(alg, std::slice::from_ref(&partial_audience)),
                    })
                    .collect(),
                keys,
                cache,
                partial_audience,
                algorithms: self.algorithms,
                leeway: leeway.as_secs(),
            }),
        })
    }
}

/// The JOSE header fields the verifier looks at before the signature check: `alg`,
/// `typ`, `kid` and whether `crit` is present.
///
/// `jsonwebtoken::decode_header` would do, but it parses jsonwebtoken's whole `Header`
/// (14 fields and a flattened map, which makes serde buffer everything), and `decode`
/// parses it again: for HS256 that was most of the verifier's overhead over a bare
/// `decode` (callgrind: 6.2k of 7.1k instructions). The same bytes are read by the same
/// rules (base64url without padding, strict JSON, duplicate fields refused), and
/// `decode` still checks the header it parses against the chosen key and algorithm.
#[derive(serde::Deserialize)]
struct JoseHeader<'a> {
    alg: Algorithm,
    #[serde(borrow, default)]
    typ: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    kid: Option<JsonStr<'a>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl<'a> JoseHeader<'a> {
    /// Parses the header of a compact JWS of exactly three segments. The decoded JSON
    /// goes to `buf` (or `heap` when longer), which the result may borrow from.
    fn parse(
        token: &str,
        buf: &'a mut [u8; 256],
        heap: &'a mut Vec<u8>,
    ) -> Result<Self, TokenError> {
        use base64::Engine as _;
        let first = token.find('.').ok_or(TokenError::Malformed)?;
        let last = token.rfind('.').ok_or(TokenError::Malformed)?;
        let middle = token.get(first + 1..last).ok_or(TokenError::Malformed)?;
        if first == last || middle.contains('.') {
            return Err(TokenError::Malformed);
        }
        let encoded = token.as_bytes().get(..first).ok_or(TokenError::Malformed)?;
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let json: &'a [u8] = if base64::decoded_len_estimate(encoded.len()) <= buf.len() {
            let n = engine
                .decode_slice(encoded, &mut buf[..])
                .map_err(|_| TokenError::Malformed)?;
            buf.get(..n).ok_or(TokenError::Malformed)?
        } else {
            *heap = engine.decode(encoded).map_err(|_| TokenError::Malformed)?;
            &heap[..]
        };
        serde_json::from_slice(json).map_err(|_| TokenError::Malformed)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct JsonStr<'a>(std::borrow::Cow<'a, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod header_tests {
    use base64::Engine as _;

    use super::*;

    fn token_with_header(json: &str) -> String {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        format!("{h}.e30.c2ln")
    }

    fn parse(token: &str) -> Result<(Algorithm, Option<String>, Option<String>, bool), TokenError> {
        let mut buf = [0u8; 256];
        let mut heap = Vec::new();
        let h = JoseHeader::parse(token, &mut buf, &mut heap)?;
        Ok((
            h.alg,
            h.typ.as_deref().map(str::to_owned),
            h.kid.as_deref().map(str::to_owned),
            h.crit.is_some(),
        ))
    }

    #[test]
    fn reads_alg_typ_kid_crit_like_decode_header() {
        let cases = [
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"alg":"ES256","typ":"application\/at+jwt","kid":"k\u0031"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"EdDSA","typ":null,"crit":["exp"],"x":{"y":[1,2]}}"#,
        ];
        for json in cases {
            let token = token_with_header(json);
            let theirs = jsonwebtoken::decode_header(&token).unwrap();
            let ours = parse(&token).unwrap();
            assert_eq!(ours.0, theirs.alg, "{json}");
            assert_eq!(ours.1, theirs.typ, "{json}");
            assert_eq!(ours.2, theirs.kid, "{json}");
            assert_eq!(ours.3, theirs.crit.is_some(), "{json}");
        }
    }

    #[test]
    fn long_headers_take_the_heap_path() {
        let kid = "k".repeat(400);
        let token = token_with_header(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        assert_eq!(parse(&token).unwrap().2.as_deref(), Some(kid.as_str()));
    }

    #[test]
    fn refuses_what_decode_header_refuses() {
        let bad = [
            token_with_header(r#"{"typ":"at+jwt"}"#),
            token_with_header(r#"{"alg":"none"}"#),
            token_with_header(r#"{"alg":"HS256","typ":"a","typ":"b"}"#),
            token_with_header(r#"{"alg":"HS256","kid":7}"#),
            token_with_header("not json"),
            "eyJhbGciOiJIUzI1NiJ9=.e30.c2ln".to_owned(),
            "e30.e30".to_owned(),
            "e30.e30.e30.e30".to_owned(),
            "nodots".to_owned(),
        ];
        for token in &bad {
            assert!(parse(token).is_err(), "{token}");
            assert!(
                jsonwebtoken::decode_header(token).is_err() || token.matches('.').count() != 2,
                "jsonwebtoken accepts {token}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ct_str_eq;

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
