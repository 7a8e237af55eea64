//! Token verification: signature, algorithm, `kid`, `typ`, `iss`, `aud`, `exp`, `nbf`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::cache::{CacheStats, CachedToken, TokenCache};
use super::claims::Claims;
use super::header::{peek_issuer, JoseHeader};
use super::keys::KeySet;
use super::profile::TrustedIssuer;
use super::rules::IssuerRules;
use super::source::{KeySource, KeyWait, SharedKeys};
pub use super::verdict::{TokenError, VerifiedToken};
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

/// Verifies access tokens and partial tokens: the crate's own issuer's, and the access
/// tokens of the identity providers it trusts ([`TrustedIssuer`]).
///
/// Each token kind has its own `typ` and its own audience, and a token is checked against
/// the rules of the kind it claims, so one kind is never taken for another (RFC 8725
/// §3.11–3.12). A token is checked with its own issuer's keys and profile only (chosen
/// by its `iss`); only the local issuer's tokens can be partial tokens. Cheap to clone:
/// clones share the keys, so [`rotate_keys`](Verifier::rotate_keys) reaches every clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every issuer whose tokens are accepted, the local one (if any) first. Their keys
    /// are read lock-free on every verification; a verification made in one epoch of an
    /// issuer's keys is never reused in another.
    issuers: Vec<IssuerRules>,
    cache: Option<TokenCache>,
    leeway: u64,
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
            cache.miss();
        }
        let (verified, issuer, epoch) = self.verify_in_full(token, now)?;
        if let (Some(cache), TokenKind::Access) = (&self.inner.cache, verified.kind) {
            let entry = CachedToken {
                claims: verified.claims.clone(),
                verified_at: now,
                issuer,
                epoch,
            };
            cache.insert(token, entry);
        }
        Ok(verified)
    }

    /// The cached answer for `token` at `now`, if the cache holds a usable one: the
    /// verification is recent enough and of its issuer's current keys, and `token` passes
    /// the time checks now (`Err` if it no longer does: the entry is dropped).
    fn lookup(
        &self,
        cache: &TokenCache,
        token: &str,
        now: u64,
    ) -> Option<Result<VerifiedToken, TokenError>> {
        let issuers = &self.inner.issuers;
        let epoch_of = |i: usize| issuers.get(i).map(|r| r.shared.epoch());
        let cached = cache.get(token, now, epoch_of)?;
        Some(
            match self.check_times(&cached.claims, TokenKind::Access, now) {
                Ok(()) => {
                    cache.hit();
                    Ok(VerifiedToken {
                        kind: TokenKind::Access,
                        claims: cached.claims.clone(),
                    })
                }
                Err(e) => {
                    // Expired (or the clock went back before nbf): gone for good.
                    cache.remove(token);
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

    /// The full check: the issuer's rules, with its keys now, then the times. Also
    /// returns which issuer verified it, and the epoch of its keys.
    fn verify_in_full(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(VerifiedToken, usize, u64), TokenError> {
        let mut buf = [0u8; 256];
        let mut heap = Vec::new();
        let header = JoseHeader::parse(token, &mut buf, &mut heap)?;
        // RFC 7515 §4.1.11: extensions named critical must be understood; none are here.
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let (index, rules) = self.issuer_of(token)?;
        let snapshot = rules.keys.shared_keys().snapshot();
        let verified = rules.check(token, &header, &snapshot.keys)?;
        self.check_times(&verified.claims, verified.kind, now)?;
        Ok((verified, index, snapshot.epoch))
    }

    /// Whose rules check `token`: the only issuer there is, or the one its `iss` names
    /// (which the check then confirms).
    fn issuer_of(&self, token: &str) -> Result<(usize, &IssuerRules), TokenError> {
        let issuers = &self.inner.issuers;
        if let [only] = issuers.as_slice() {
            return Ok((0, only));
        }
        let iss = peek_issuer(token)?.ok_or(TokenError::WrongIssuer)?;
        issuers
            .iter()
            .enumerate()
            .find(|(_, r)| r.issuer == iss)
            .ok_or(TokenError::WrongIssuer)
    }

    /// When `token` was refused for an unknown `kid`: a wait for its issuer's key source
    /// to fetch new keys (started or joined now), after which verifying again may
    /// succeed; `None` when the source will not fetch (fixed keys, or throttled).
    ///
    /// The layer waits once and verifies again; use this in your own integrations to
    /// accept a key on its first use after an identity provider rotated.
    pub fn unknown_key_wait(&self, token: &str) -> Option<KeyWait> {
        let mut buf = [0u8; 256];
        let mut heap = Vec::new();
        let header = JoseHeader::parse(token, &mut buf, &mut heap).ok()?;
        let (_, rules) = self.issuer_of(token).ok()?;
        rules.keys.unknown_kid(header.kid.as_deref())
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

    /// The local issuer's rules, if this verifier has a local issuer.
    fn local(&self) -> Option<&IssuerRules> {
        self.inner.issuers.first().filter(|r| r.is_local())
    }

    /// The crate's own issuer (`iss` of the tokens it issues), if this verifier accepts
    /// its tokens; `None` for a verifier of identity providers' tokens only.
    pub fn local_issuer(&self) -> Option<&str> {
        self.local().map(|r| r.issuer.as_str())
    }

    /// Whether `claims` are of a token of the crate's own issuer: identity is (`iss`,
    /// `sub`), and only the local issuer's users are known to the completion endpoints.
    pub fn is_local(&self, claims: &Claims) -> bool {
        self.local_issuer()
            .is_some_and(|iss| claims.iss() == Some(iss))
    }

    /// Replaces the verifying keys of the local issuer, for this verifier and all its
    /// clones, and forgets every cached verification.
    ///
    /// Tokens signed by a key that is no longer in the set are rejected from the next
    /// request on.
    pub fn rotate_keys(&self, keys: KeySet) -> Result<(), ConfigError> {
        let local = self.local().ok_or(ConfigError::Missing("issuer"))?;
        keys.validate(&local.algorithms)?;
        local.keys.shared_keys().replace_forgetting(keys);
        // Entries of the old epoch would never be used again; free them now. (One
        // inserted by a verification still running with the old keys is refused on
        // lookup by its epoch.)
        self.clear_cache();
        Ok(())
    }

    /// Forgets every cached verification.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
    }

    /// The cache's counters (all zero when the cache is off).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(TokenCache::stats)
            .unwrap_or_default()
    }

    /// The clock leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.inner.leeway
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<_> = self
            .inner
            .issuers
            .iter()
            .map(|r| (&r.issuer, &r.algorithms, r.keys.shared_keys()))
            .collect();
        f.debug_struct("Verifier")
            .field("issuers", &issuers)
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
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
    trusted: Vec<TrustedIssuer>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("keys", &self.keys)
            .field("key_source", &self.source.is_some())
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("trusted", &self.trusted)
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

    /// Also accept the access tokens of an identity provider, with its keys and its
    /// token profile. Call again for several; each `iss` at most once, and never the
    /// local issuer's.
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.trusted.push(issuer);
        self
    }

    /// The algorithm allow-list of the local issuer. Required with
    /// [`issuer`](Self::issuer): there is no default, and `none` does not exist.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The `iss` of the crate's own tokens (the local issuer). Required, unless the
    /// verifier only accepts [trusted issuers](Self::trust)' tokens.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An accepted `aud` of the local issuer's access tokens. Required with
    /// [`issuer`](Self::issuer); call again for several.
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
    pub fn build(mut self) -> Result<Verifier, ConfigError> {
        super::ensure_crypto_provider();
        let leeway = self.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::invalid("leeway", "at most 60 s"));
        }
        let cache_max_age = self
            .cache_max_age
            .unwrap_or(DEFAULT_CACHE_MAX_AGE)
            .as_secs();
        if cache_max_age == 0 {
            return Err(ConfigError::invalid("cache_max_age", "at least 1 s"));
        }
        let cache = match self.cache_capacity.unwrap_or(DEFAULT_CACHE_CAPACITY) {
            0 => None,
            capacity => Some(TokenCache::new(capacity, cache_max_age)),
        };
        let trusted = std::mem::take(&mut self.trusted);
        let mut issuers = Vec::with_capacity(trusted.len() + 1);
        let mut partial_audience = None;
        if self.issuer.is_some() || trusted.is_empty() {
            let (local, partial) = self.local()?;
            issuers.push(local);
            partial_audience = Some(partial);
        }
        for profile in trusted {
            check_trusted(&profile, &issuers, partial_audience.as_deref())?;
            issuers.push(IssuerRules::trusted(profile));
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                cache,
                leeway: leeway.as_secs(),
            }),
        })
    }
}

impl VerifierBuilder {
    /// The local issuer's rules and its partial audience, checked.
    fn local(self) -> Result<(IssuerRules, String), ConfigError> {
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
        let keys: Arc<dyn KeySource> = match self.source {
            Some(source) => source,
            None => Arc::new(SharedKeys::new(self.keys)),
        };
        keys.shared_keys().keys().validate(&self.algorithms)?;
        let rules = IssuerRules::local(
            issuer,
            &self.audiences,
            partial_audience.clone(),
            self.algorithms,
            keys,
        );
        Ok((rules, partial_audience))
    }
}

/// A trusted issuer's profile is complete, and can never be taken for the local issuer
/// or another trusted one.
fn check_trusted(
    profile: &TrustedIssuer,
    earlier: &[IssuerRules],
    partial_audience: Option<&str>,
) -> Result<(), ConfigError> {
    let name = profile.issuer.as_str();
    if name.is_empty() {
        return Err(ConfigError::invalid("trusted issuer", "an empty iss"));
    }
    if earlier.iter().any(|r| r.issuer == name) {
        return Err(ConfigError::invalid(
            "trusted issuer",
            format!("{name} is the local issuer or trusted twice"),
        ));
    }
    if profile.algorithms.is_empty() {
        return Err(ConfigError::Missing(
            "trusted issuer's algorithm allow-list",
        ));
    }
    if profile.audiences.is_empty() {
        return Err(ConfigError::Missing("trusted issuer's audience"));
    }
    let partial = partial_audience.unwrap_or(DEFAULT_PARTIAL_AUDIENCE);
    if profile.audiences.iter().any(|a| a == partial) {
        return Err(ConfigError::invalid(
            "trusted issuer",
            "an audience equal to the partial tokens' audience",
        ));
    }
    // Keys from a source may still be on their way (an identity provider down at
    // start-up); fixed ones that are there must fit the allow-list.
    let keys = profile.keys.shared_keys().keys();
    if !keys.keys().is_empty() {
        keys.validate(&profile.algorithms)?;
    }
    Ok(())
}
