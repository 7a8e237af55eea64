//! Issuing access tokens and partial tokens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::claims::{is_sha256_thumbprint, Claims, ClaimsParts};
use super::keys::SigningKey;
use super::publish::JwksService;
use super::rotation::{IssuerKeys, KeyRing};
use super::{TokenKind, DEFAULT_PARTIAL_AUDIENCE};
use crate::clock::{self, Clock, SharedClock};
use crate::error::ConfigError;
use crate::random::{self, RandomError};

/// Default lifetime of an access token.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(900);
/// Default lifetime of a partial token.
pub const DEFAULT_PARTIAL_TTL: Duration = Duration::from_secs(300);
/// Longest lifetime allowed for a partial token (DESIGN §2: at most five minutes).
pub const MAX_PARTIAL_TTL: Duration = Duration::from_secs(300);
/// Default margin a retired signing key keeps verifying beyond the longest token
/// lifetime: the largest verifier leeway ([`MAX_LEEWAY`](super::MAX_LEEWAY)).
pub const DEFAULT_RETIRE_MARGIN: Duration = Duration::from_secs(60);

/// What a token says about its user; the issuer adds `iss`, `aud`, `iat`, `exp` and `jti`.
///
/// ```
/// use tower_stepup::Grant;
///
/// let grant = Grant::new("alice")
///     .amr(["pwd", "otp", "mfa"])
///     .acr("urn:example:mfa")
///     .auth_time(1_700_000_000)
///     .scope("me billing:read");
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Grant {
    sub: String,
    sid: Option<String>,
    scope: Option<String>,
    acr: Option<String>,
    amr: Vec<String>,
    auth_time: Option<u64>,
    dpop_jkt: Option<String>,
    extra: Map<String, Value>,
}

impl Grant {
    /// A grant for user `sub`.
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            ..Self::default()
        }
    }

    /// A grant that carries over what `claims` say about the user and the session: `sub`,
    /// `sid`, `scope`, `acr`, `amr`, `auth_time`, the DPoP binding (`cnf.jkt`) and the
    /// other claims. For refreshing an access token without making an old authentication
    /// look fresh (RFC 9470 §6.1), nor a bound session's tokens unbound.
    pub fn from_claims(claims: &Claims) -> Self {
        Self {
            sub: claims.sub().to_owned(),
            sid: claims.sid().map(str::to_owned),
            scope: claims.scope().map(str::to_owned),
            acr: claims.acr().map(str::to_owned),
            amr: claims.amr().to_vec(),
            auth_time: claims.auth_time(),
            dpop_jkt: claims.dpop_jkt().map(str::to_owned),
            extra: claims.extra().clone(),
        }
    }

    /// The session id. Access tokens get a fresh random one when none is given.
    pub fn sid(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// The space-delimited scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The authentication context class.
    pub fn acr(mut self, acr: impl Into<String>) -> Self {
        self.acr = Some(acr.into());
        self
    }

    /// The authentication methods (RFC 8176).
    pub fn amr<I, S>(mut self, amr: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.amr = amr.into_iter().map(Into::into).collect();
        self
    }

    /// When the user last actively authenticated (seconds since the Unix epoch).
    pub fn auth_time(mut self, auth_time: u64) -> Self {
        self.auth_time = Some(auth_time);
        self
    }

    /// Binds the access token to a DPoP key (RFC 9449 §6.1): it carries
    /// `"cnf": {"jkt": jkt}`, where `jkt` is the key's RFC 7638 SHA-256 thumbprint, as
    /// [`dpop::thumbprint`](crate::dpop::thumbprint) computes it (43 base64url
    /// characters). Access tokens only: a partial token of this grant is not bound.
    /// [`Issuer::issue_access`] refuses (with [`IssueError::InvalidJkt`]) a `jkt` that is
    /// not such a thumbprint.
    pub fn dpop_jkt(mut self, jkt: impl Into<String>) -> Self {
        self.dpop_jkt = Some(jkt.into());
        self
    }

    /// Any other claim. Registered claim names (and `cnf`) are ignored here.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if !RESERVED.contains(&name.as_str()) {
            self.extra.insert(name, value.into());
        }
        self
    }
}

const RESERVED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "sid",
    "scope",
    "acr",
    "amr",
    "auth_time",
    "cnf",
];

/// A freshly signed token.
#[derive(Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("claims", &self.claims)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a token could not be issued. A server fault: answer 5xx.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// No randomness for `jti` / `sid`.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The grant's [`dpop_jkt`](Grant::dpop_jkt) is not a SHA-256 JWK thumbprint (43
    /// base64url characters).
    #[error("the DPoP key thumbprint (cnf.jkt) is not 43 base64url characters (SHA-256)")]
    InvalidJkt,
}

/// Signs access tokens (`typ: at+jwt`) and partial tokens (their own `typ` and audience).
///
/// # Rotating the signing key
/// [`rotate`](Self::rotate) makes a new key sign from the next token on, with no
/// restart. The key it replaces is *retired*: it signs nothing more, but keeps verifying
/// (in [`verifying_keys`](Self::verifying_keys)) and stays published (in
/// [`jwks`](Self::jwks)) until every token it signed has expired: for the longest token
/// lifetime this issuer hands out plus a margin ([`IssuerBuilder::retire_margin`],
/// default [`DEFAULT_RETIRE_MARGIN`]); then it is dropped. Several rotations in a row
/// keep several retired keys. Retired keys are dropped on this issuer's clock, when it
/// next signs, publishes, rotates or is read by a verifier. Clones share the keys.
///
/// An HMAC key rotates too (its verifying keys are the secrets; it publishes nothing).
/// A rotation may change the algorithm (e.g. HS256 to EdDSA): a verifier accepts both
/// keys only if its allow-list holds both algorithms; a key whose algorithm it does not
/// allow verifies nothing there (its tokens get 401), so widen the allow-list first.
///
/// ```
/// use tower_stepup::{Algorithm, Clock, Grant, Issuer, ManualClock, SigningKey, Verifier};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = ManualClock::new(1_700_000_000);
/// let issuer = Issuer::builder()
///     .issuer("https://auth.example")
///     .audience("https://api.example")
///     .signing_key(SigningKey::ed25519_from_seed("k1", &[1; 32])?)
///     .clock(clock.clone())
///     .build()?;
/// let verifier = Verifier::builder()
///     .issuer("https://auth.example")
///     .audience("https://api.example")
///     .algorithms([Algorithm::EdDSA])
///     .key_source(issuer.verifying_keys())
///     .build()?;
/// let old = issuer.issue_access(&Grant::new("alice"))?.token;
/// issuer.rotate(SigningKey::ed25519_from_seed("k2", &[2; 32])?)?;
/// let new = issuer.issue_access(&Grant::new("alice"))?.token;
/// assert!(verifier.verify(&old, clock.now()).is_ok()); // retired, still verifying
/// assert!(verifier.verify(&new, clock.now()).is_ok());
/// assert_eq!(issuer.jwks().keys.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    /// The signing key and the retired ones, shared by every clone (and by the copies
    /// [`Issuer::with_clock`] makes).
    ring: Arc<KeyRing>,
    issuer: String,
    audience: String,
    partial_audience: String,
    access_ttl: u64,
    partial_ttl: u64,
    clock: SharedClock,
}

impl Issuer {
    /// Starts an issuer configuration.
    pub fn builder() -> IssuerBuilder {
        IssuerBuilder::default()
    }

    /// Signs an access token for `grant`, valid for the access TTL from now.
    ///
    /// A grant without `sid` gets a fresh random one; a grant without `auth_time` gets
    /// now (issuing an access token without carried-over claims means the user has just
    /// authenticated). A grant with a [`dpop_jkt`](Grant::dpop_jkt) gets a bound token
    /// (`cnf.jkt`), or [`IssueError::InvalidJkt`] when that is not a thumbprint.
    pub fn issue_access(&self, grant: &Grant) -> Result<IssuedToken, IssueError> {
        let sid = match &grant.sid {
            Some(sid) => sid.clone(),
            None => random::id()?,
        };
        if grant.auth_time.is_none() {
            let grant = grant.clone().auth_time(self.inner.clock.now());
            return self.issue(TokenKind::Access, &grant, Some(sid));
        }
        self.issue(TokenKind::Access, grant, Some(sid))
    }

    /// How long the access tokens of this issuer live (seconds).
    pub fn access_lifetime(&self) -> u64 {
        self.inner.access_ttl
    }

    /// Signs a partial token for `grant`: proof that the first factor passed, accepted by
    /// the verify endpoint only. Never bound: the grant's `dpop_jkt` is not used here.
    pub fn issue_partial(&self, grant: &Grant) -> Result<IssuedToken, IssueError> {
        self.issue(TokenKind::Partial, grant, grant.sid.clone())
    }

    /// [`issue_partial`](Self::issue_partial), bound like an access token when the grant
    /// has a [`dpop_jkt`](Grant::dpop_jkt): the login of a DPoP client, whose partial
    /// token the verify endpoint then redeems only with a proof of that key.
    #[cfg_attr(not(feature = "server"), allow(dead_code))] // the login endpoint's
    pub(crate) fn issue_bound_partial(&self, grant: &Grant) -> Result<IssuedToken, IssueError> {
        self.issue_with(TokenKind::Partial, grant, grant.sid.clone(), true)
    }

    fn issue(
        &self,
        kind: TokenKind,
        grant: &Grant,
        sid: Option<String>,
    ) -> Result<IssuedToken, IssueError> {
        self.issue_with(kind, grant, sid, kind == TokenKind::Access)
    }

    /// Signs a token of `kind`; `bind`: with the grant's `cnf.jkt`, if it has one.
    fn issue_with(
        &self,
        kind: TokenKind,
        grant: &Grant,
        sid: Option<String>,
        bind: bool,
    ) -> Result<IssuedToken, IssueError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let (aud, ttl) = match kind {
            TokenKind::Access => (&inner.audience, inner.access_ttl),
            TokenKind::Partial => (&inner.partial_audience, inner.partial_ttl),
        };
        let mut claims = Claims::from_parts(ClaimsParts {
            sub: grant.sub.clone(),
            iss: inner.issuer.clone(),
            aud: vec![aud.clone()],
            iat: now,
            exp: now.saturating_add(ttl),
            jti: random::id()?,
        });
        claims.set_session(
            sid,
            grant.scope.clone(),
            grant.acr.clone(),
            grant.amr.clone(),
            grant.auth_time,
            grant.extra.clone(),
        );
        if let (true, Some(jkt)) = (bind, &grant.dpop_jkt) {
            if !is_sha256_thumbprint(jkt) {
                return Err(IssueError::InvalidJkt);
            }
            claims.set_dpop_jkt(jkt.clone());
        }
        let keys = inner.ring.at(now);
        let key = &keys.current.signing;
        let mut header = Header::new(key.algorithm());
        header.typ = Some(kind.typ().to_owned());
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key.encoding_key())
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token,
            claims,
            expires_in: ttl,
        })
    }

    /// The public keys that verify this issuer's tokens, as a JWKS document to publish
    /// (e.g. at `/.well-known/jwks.json`): the signing key first, then the retired keys
    /// still verifying; public halves only (never `d`). Empty for HMAC signing keys.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.inner.ring.jwks(self.inner.clock.now())
    }

    /// A tower service answering `GET` with [`jwks`](Self::jwks) as JSON, to mount at
    /// `/.well-known/jwks.json`. It follows rotations.
    pub fn jwks_service(&self) -> JwksService {
        JwksService::new(self.inner.ring.clone(), self.inner.clock.clone())
    }

    /// The keys that verify this issuer's tokens, kept up to date by
    /// [`rotate`](Self::rotate) and by dropping retired keys when their time is up: give
    /// them to [`VerifierBuilder::key_source`](super::VerifierBuilder::key_source) and the
    /// verifier follows every rotation. For an HMAC issuer, the secrets as
    /// [`VerifyingKey::hmac`](super::VerifyingKey::hmac) keys.
    pub fn verifying_keys(&self) -> IssuerKeys {
        IssuerKeys::new(self.inner.ring.clone(), self.inner.clock.clone())
    }

    /// Makes `key` sign from the next token on, and retires the key that signed until
    /// now: it verifies and stays published until the longest token lifetime plus the
    /// retire margin from now, then is dropped. Thread-safe; signing never waits for it.
    ///
    /// Refused (nothing changes) when `key`'s `kid` is that of a key still kept, or its
    /// verifying key cannot be derived.
    pub fn rotate(&self, key: SigningKey) -> Result<(), ConfigError> {
        self.inner.ring.rotate(key, self.inner.clock.now())
    }

    /// The `kid` of the key that signs now.
    pub fn signing_kid(&self) -> String {
        let keys = self.inner.ring.at(self.inner.clock.now());
        keys.current.signing.kid().to_owned()
    }

    /// The `kid`s of the retired keys still verifying, oldest first.
    pub fn retired_kids(&self) -> Vec<String> {
        self.inner.ring.retired_kids(self.inner.clock.now())
    }

    /// The clock this issuer reads.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// This issuer reading `clock` instead: a completion signs with its guard's clock.
    #[cfg(feature = "server")]
    pub(crate) fn with_clock(&self, clock: SharedClock) -> Self {
        let mut inner = (*self.inner).clone();
        inner.clock = clock;
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("keys", &self.inner.ring)
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("partial_audience", &self.inner.partial_audience)
            .field("access_ttl", &self.inner.access_ttl)
            .field("partial_ttl", &self.inner.partial_ttl)
            .finish_non_exhaustive()
    }
}

/// Configuration of an [`Issuer`].
#[derive(Default)]
#[must_use]
pub struct IssuerBuilder {
    key: Option<SigningKey>,
    issuer: Option<String>,
    audience: Option<String>,
    partial_audience: Option<String>,
    access_ttl: Option<Duration>,
    partial_ttl: Option<Duration>,
    retire_margin: Option<Duration>,
    clock: Option<SharedClock>,
}

impl IssuerBuilder {
    /// The signing key. Required.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// `iss`. Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// `aud` of access tokens. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// `aud` of partial tokens. Default: [`DEFAULT_PARTIAL_AUDIENCE`].
    pub fn partial_audience(mut self, audience: impl Into<String>) -> Self {
        self.partial_audience = Some(audience.into());
        self
    }

    /// Lifetime of access tokens. Default 900 s.
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = Some(ttl);
        self
    }

    /// Lifetime of partial tokens. Default and maximum 300 s.
    pub fn partial_ttl(mut self, ttl: Duration) -> Self {
        self.partial_ttl = Some(ttl);
        self
    }

    /// How long a retired signing key keeps verifying beyond the longest token
    /// lifetime (see [`Issuer::rotate`]): at least the verifiers' leeway plus the clock
    /// skew between this issuer and them. Default [`DEFAULT_RETIRE_MARGIN`].
    ///
    /// # Security
    /// Too short, and tokens signed just before a rotation are refused before they
    /// expire; too long, and a retired key (perhaps retired because it leaked) is
    /// trusted longer than any token of it needs.
    pub fn retire_margin(mut self, margin: Duration) -> Self {
        self.retire_margin = Some(margin);
        self
    }

    /// The clock. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the configuration and builds the issuer.
    pub fn build(self) -> Result<Issuer, ConfigError> {
        super::ensure_crypto_provider();
        let key = self.key.ok_or(ConfigError::Missing("signing key"))?;
        let issuer = self.issuer.ok_or(ConfigError::Missing("issuer"))?;
        let audience = self.audience.ok_or(ConfigError::Missing("audience"))?;
        let partial_audience = self
            .partial_audience
            .unwrap_or_else(|| DEFAULT_PARTIAL_AUDIENCE.to_owned());
        if partial_audience == audience {
            return Err(ConfigError::invalid(
                "partial_audience",
                "must differ from the access-token audience",
            ));
        }
        let access_ttl = self.access_ttl.unwrap_or(DEFAULT_ACCESS_TTL).as_secs();
        let partial_ttl = self.partial_ttl.unwrap_or(DEFAULT_PARTIAL_TTL);
        if partial_ttl > MAX_PARTIAL_TTL || partial_ttl.is_zero() || access_ttl == 0 {
            return Err(ConfigError::invalid(
                "ttl",
                "partial tokens live 1..=300 s, access tokens at least 1 s",
            ));
        }
        let partial_ttl = partial_ttl.as_secs();
        let margin = self
            .retire_margin
            .unwrap_or(DEFAULT_RETIRE_MARGIN)
            .as_secs();
        let retain = access_ttl.max(partial_ttl).saturating_add(margin);
        Ok(Issuer {
            inner: Arc::new(Inner {
                ring: Arc::new(KeyRing::new(key, retain)?),
                issuer,
                audience,
                partial_audience,
                access_ttl,
                partial_ttl,
                clock: self.clock.unwrap_or_else(clock::system),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{KeySource, TokenError, Verifier, VerifyingKey};
    use crate::ManualClock;
    use jsonwebtoken::Algorithm;

    const T: u64 = 1_800_000_000;
    const ISS: &str = "https://auth.test";
    const AUD: &str = "https://api.test";

    fn ed(kid: &str, seed: u8) -> SigningKey {
        SigningKey::ed25519_from_seed(kid, &[seed; 32]).unwrap()
    }

    /// Access tokens 900 s, partial tokens 300 s, default margin (60 s): a retired key
    /// stays 960 s.
    fn issuer(key: SigningKey, clock: &ManualClock) -> Issuer {
        Issuer::builder()
            .issuer(ISS)
            .audience(AUD)
            .signing_key(key)
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    fn verifier(source: impl KeySource, algs: &[Algorithm]) -> Verifier {
        Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms(algs.iter().copied())
            .key_source(source)
            .build()
            .unwrap()
    }

    fn token(issuer: &Issuer) -> String {
        issuer.issue_access(&Grant::new("alice")).unwrap().token
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    fn kids(issuer: &Issuer) -> Vec<String> {
        let published = issuer.jwks().keys;
        published
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect()
    }

    fn source_kids(source: &IssuerKeys) -> Vec<String> {
        let keys = source.keys();
        keys.keys().iter().map(|k| k.kid().to_owned()).collect()
    }

    #[test]
    fn after_a_rotation_the_new_key_signs_and_the_old_one_verifies_until_its_last_token_expires() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        let source = issuer.verifying_keys();
        let verifier = verifier(source.clone(), &[Algorithm::EdDSA]);
        clock.set(T + 100);
        let old = token(&issuer); // the old key's last token: exp = T + 1000
        issuer.rotate(ed("k2", 2)).unwrap();
        let new = token(&issuer);
        assert_eq!((kid_of(&old), kid_of(&new)), ("k1".into(), "k2".into()));
        assert_eq!(issuer.signing_kid(), "k2");
        assert_eq!(issuer.retired_kids(), vec!["k1".to_owned()]);
        assert!(verifier.verify(&new, T + 100).is_ok());
        // Until its expiry (plus the verifier's 5 s leeway) the old token verifies.
        clock.set(T + 1004);
        assert_eq!(
            verifier.verify(&old, T + 1004).unwrap().claims.sub(),
            "alice"
        );
        // Past it, it is refused as expired: its key is still kept (the margin).
        clock.set(T + 1059);
        assert_eq!(
            verifier.verify(&old, T + 1059),
            Err(TokenError::Expired {
                kind: crate::TokenKind::Access
            })
        );
        assert_eq!(source_kids(&source), ["k2", "k1"]);
        // At rotation + 900 s + 60 s the old key is dropped, read through the verifier
        // alone: the issuer signs nothing meanwhile.
        clock.set(T + 1060);
        assert_eq!(verifier.verify(&old, T + 1060), Err(TokenError::UnknownKey));
        assert_eq!(source_kids(&source), ["k2"]);
        assert_eq!(kids(&issuer), ["k2"]);
        assert!(issuer.retired_kids().is_empty());
    }

    #[test]
    fn the_margin_and_the_longest_lifetime_set_how_long_a_retired_key_stays() {
        let clock = ManualClock::new(T);
        let issuer = Issuer::builder()
            .issuer(ISS)
            .audience(AUD)
            .signing_key(ed("k1", 1))
            .access_ttl(Duration::from_secs(120))
            .partial_ttl(Duration::from_secs(300))
            .retire_margin(Duration::from_secs(10))
            .clock(clock.clone())
            .build()
            .unwrap();
        issuer.rotate(ed("k2", 2)).unwrap();
        // The partial tokens (300 s) outlive the access tokens (120 s).
        clock.set(T + 309);
        assert_eq!(kids(&issuer), ["k2", "k1"]);
        clock.set(T + 310);
        assert_eq!(kids(&issuer), ["k2"]);
    }

    #[test]
    fn several_rotations_keep_several_retired_keys_each_for_its_own_time() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        let verifier = verifier(issuer.verifying_keys(), &[Algorithm::EdDSA]);
        let mut tokens = vec![token(&issuer)];
        for (i, kid) in ["k2", "k3", "k4"].into_iter().enumerate() {
            clock.set(T + 10 * (i as u64 + 1));
            issuer.rotate(ed(kid, i as u8 + 2)).unwrap();
            tokens.push(token(&issuer));
        }
        assert_eq!(issuer.retired_kids(), ["k1", "k2", "k3"]);
        assert_eq!(kids(&issuer), ["k4", "k1", "k2", "k3"]);
        for t in &tokens {
            assert!(verifier.verify(t, T + 30).is_ok(), "{}", kid_of(t));
        }
        // k1 retired at T+10, k2 at T+20, k3 at T+30: each leaves 960 s later.
        clock.set(T + 970);
        assert_eq!(kids(&issuer), ["k4", "k2", "k3"]);
        clock.set(T + 985);
        assert_eq!(kids(&issuer), ["k4", "k3"]);
        clock.set(T + 990);
        assert_eq!(kids(&issuer), ["k4"]);
        // The current key is never dropped.
        clock.set(T + 100_000);
        assert!(verifier.verify(&token(&issuer), T + 100_000).is_ok());
    }

    #[test]
    fn the_published_set_lists_current_and_retired_public_halves_only() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        issuer.rotate(ed("k2", 2)).unwrap();
        let text = serde_json::to_string(&issuer.jwks()).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{text}");
        for k in keys {
            assert_eq!(k["kty"], "OKP", "{text}");
            assert_eq!(k["use"], "sig", "{text}");
            assert!(k.get("d").is_none(), "no private part: {text}");
        }
        assert!(!text.contains("\"d\""), "{text}");
        // What is published is what a verifier loads.
        let (set, skipped) = crate::KeySet::from_jwks(&issuer.jwks(), &[Algorithm::EdDSA]);
        assert!(skipped.is_empty());
        assert_eq!(set.keys().len(), 2);
    }

    #[test]
    fn an_hmac_issuer_rotates_its_secrets_and_publishes_nothing() {
        let clock = ManualClock::new(T);
        let hmac = |kid: &str, b: u8| SigningKey::hmac(kid, Algorithm::HS256, &[b; 32]).unwrap();
        let issuer = issuer(hmac("h1", 1), &clock);
        let source = issuer.verifying_keys();
        let verifier = verifier(source.clone(), &[Algorithm::HS256]);
        let old = token(&issuer);
        issuer.rotate(hmac("h2", 2)).unwrap();
        let new = token(&issuer);
        assert!(verifier.verify(&old, T).is_ok());
        assert!(verifier.verify(&new, T).is_ok());
        assert!(issuer.jwks().keys.is_empty());
        assert_eq!(source_kids(&source), ["h2", "h1"]);
        // The verifying keys are the secrets themselves.
        let fixed = Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("h2", Algorithm::HS256, &[2; 32]).unwrap())
            .build()
            .unwrap();
        assert!(fixed.verify(&new, T).is_ok());
        assert_eq!(fixed.verify(&old, T), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_rotation_across_algorithms_verifies_only_within_the_allow_list() {
        let clock = ManualClock::new(T);
        let hs = SigningKey::hmac("h1", Algorithm::HS256, &[1; 32]).unwrap();
        let issuer = issuer(hs, &clock);
        let both = verifier(
            issuer.verifying_keys(),
            &[Algorithm::HS256, Algorithm::EdDSA],
        );
        let hmac_only = verifier(issuer.verifying_keys(), &[Algorithm::HS256]);
        let old = token(&issuer);
        issuer.rotate(ed("e1", 1)).unwrap();
        let new = token(&issuer);
        assert!(both.verify(&old, T).is_ok());
        assert!(both.verify(&new, T).is_ok());
        assert!(hmac_only.verify(&old, T).is_ok());
        assert_eq!(
            hmac_only.verify(&new, T),
            Err(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn rotating_to_a_kid_still_kept_is_refused_and_changes_nothing() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        issuer.rotate(ed("k2", 2)).unwrap();
        for kid in ["k1", "k2"] {
            assert!(matches!(
                issuer.rotate(ed(kid, 9)),
                Err(ConfigError::DuplicateKid(k)) if k == kid
            ));
        }
        assert_eq!(issuer.signing_kid(), "k2");
        assert_eq!(kids(&issuer), ["k2", "k1"]);
        // Once k1 is gone its kid may come back.
        clock.set(T + 960);
        issuer.rotate(ed("k1", 3)).unwrap();
        assert_eq!(kids(&issuer), ["k1", "k2"]);
    }

    #[test]
    fn signing_goes_on_while_keys_rotate_and_every_token_verifies() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k0", 0), &clock);
        let verifier = verifier(issuer.verifying_keys(), &[Algorithm::EdDSA]);
        let tokens = std::thread::scope(|s| {
            let signers: Vec<_> = (0..3)
                .map(|_| s.spawn(|| (0..100).map(|_| token(&issuer)).collect::<Vec<_>>()))
                .collect();
            for i in 1..=40u8 {
                issuer.rotate(ed(&format!("k{i}"), i)).unwrap();
            }
            let all: Vec<String> = signers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all
        });
        assert_eq!(tokens.len(), 300);
        for t in &tokens {
            assert!(verifier.verify(t, T).is_ok(), "{}", kid_of(t));
        }
        assert_eq!(issuer.retired_kids().len(), 40);
        assert_eq!(issuer.signing_kid(), "k40");
    }

    #[cfg(feature = "server")]
    #[test]
    fn a_completion_copy_on_another_clock_shares_the_keys() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        let copy = issuer.with_clock(Arc::new(clock.clone()));
        issuer.rotate(ed("k2", 2)).unwrap();
        assert_eq!(kid_of(&token(&copy)), "k2");
    }

    fn get(service: &mut JwksService, method: http::Method) -> http::Response<String> {
        let req = http::Request::builder()
            .method(method)
            .uri("/.well-known/jwks.json")
            .body(())
            .unwrap();
        tower_service::Service::call(service, req)
            .into_inner()
            .unwrap()
    }

    #[test]
    fn the_jwks_service_answers_get_with_the_current_set_and_405_otherwise() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        let mut service = issuer.jwks_service();
        let res = get(&mut service, http::Method::GET);
        assert_eq!(res.status(), http::StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["cache-control"], "public, max-age=300");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(res.body()).unwrap();
        assert_eq!(set, issuer.jwks());
        // It follows a rotation.
        issuer.rotate(ed("k2", 2)).unwrap();
        let res = get(&mut service, http::Method::GET);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(res.body()).unwrap();
        assert_eq!(set.keys.len(), 2);
        for method in [http::Method::POST, http::Method::PUT, http::Method::DELETE] {
            let res = get(&mut service, method);
            assert_eq!(res.status(), http::StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(res.headers()["allow"], "GET, HEAD");
            assert!(res.body().is_empty());
        }
        let mut short = issuer.jwks_service().max_age(Duration::from_secs(60));
        let res = get(&mut short, http::Method::GET);
        assert_eq!(res.headers()["cache-control"], "public, max-age=60");
        // An HMAC issuer publishes an empty set.
        let hmac = SigningKey::hmac("h", Algorithm::HS256, &[1; 32]).unwrap();
        let res = get(&mut issuer_hmac(hmac, &clock), http::Method::GET);
        assert_eq!(res.body(), r#"{"keys":[]}"#);
    }

    fn issuer_hmac(key: SigningKey, clock: &ManualClock) -> JwksService {
        issuer(key, clock).jwks_service()
    }

    /// RFC 8032 §7.1, TEST 1.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn an_ed25519_key_from_a_seed_is_the_rfc8032_key_and_deterministic() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let seed: [u8; 32] = unhex(RFC8032_SEED).try_into().unwrap();
        let key = SigningKey::ed25519_from_seed("k", &seed).unwrap();
        let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
            unhex(RFC8032_PUBLIC)
        );
        let again = SigningKey::ed25519_from_seed("other", &seed).unwrap();
        assert_eq!(key.thumbprint(), again.thumbprint());
        let other = SigningKey::ed25519_from_seed("k", &[1; 32]).unwrap();
        assert_ne!(key.thumbprint(), other.thumbprint());
        // The thumbprint as kid: every replica derives the same one.
        let a = SigningKey::ed25519_from_seed("a", &seed)
            .unwrap()
            .with_thumbprint_kid()
            .unwrap();
        let b = SigningKey::ed25519_from_seed("b", &seed)
            .unwrap()
            .with_thumbprint_kid()
            .unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(Some(a.kid().to_owned()), key.thumbprint());
        assert_eq!(
            a.public_jwk().unwrap().common.key_id.as_deref(),
            Some(a.kid())
        );
        // A token signed with it verifies with the RFC's public key, loaded on its own.
        let public = jsonwebtoken::DecodingKey::from_ed_der(&unhex(RFC8032_PUBLIC));
        let vk = VerifyingKey::from_decoding_key(a.kid(), Algorithm::EdDSA, public).unwrap();
        let clock = ManualClock::new(T);
        let issuer = issuer(a, &clock);
        let fixed = Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([Algorithm::EdDSA])
            .key(vk)
            .build()
            .unwrap();
        assert!(fixed.verify(&token(&issuer), T).is_ok());
    }

    /// The payload of `token`, as JSON.
    fn payload(token: &str) -> serde_json::Value {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn jkt_of(seed: u8) -> String {
        crate::dpop::thumbprint(&ed("client", seed).public_jwk().unwrap()).unwrap()
    }

    #[test]
    fn a_bound_grant_puts_cnf_jkt_in_access_tokens_only() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        let verifier = verifier(issuer.verifying_keys(), &[Algorithm::EdDSA]);
        let jkt = jkt_of(7);
        let grant = Grant::new("alice").amr(["pwd"]).dpop_jkt(&jkt);
        let access = issuer.issue_access(&grant).unwrap();
        assert_eq!(
            payload(&access.token)["cnf"],
            serde_json::json!({ "jkt": jkt })
        );
        assert_eq!(access.claims.dpop_jkt(), Some(jkt.as_str()));
        let verified = verifier.verify(&access.token, T).unwrap();
        assert_eq!(verified.claims.dpop_jkt(), Some(jkt.as_str()));
        assert!(verified.claims.extra().is_empty());
        // A partial token of the same grant is not bound, unless the login asks for it.
        let partial = issuer.issue_partial(&grant).unwrap();
        assert!(payload(&partial.token).get("cnf").is_none());
        assert_eq!(partial.claims.dpop_jkt(), None);
        let bound = issuer.issue_bound_partial(&grant).unwrap();
        assert_eq!(
            payload(&bound.token)["cnf"],
            serde_json::json!({ "jkt": jkt })
        );
        let verified_partial = verifier.verify(&bound.token, T).unwrap();
        assert_eq!(verified_partial.kind, TokenKind::Partial);
        assert_eq!(verified_partial.claims.dpop_jkt(), Some(jkt.as_str()));
        let unbound = issuer.issue_bound_partial(&Grant::new("alice")).unwrap();
        assert!(payload(&unbound.token).get("cnf").is_none());
        // Unbound grants: no cnf at all.
        let plain = issuer.issue_access(&Grant::new("alice")).unwrap();
        assert!(payload(&plain.token).get("cnf").is_none());
        assert_eq!(
            verifier.verify(&plain.token, T).unwrap().claims.dpop_jkt(),
            None
        );
        // A grant carried over from bound claims stays bound; `claim("cnf", …)` is
        // ignored like every registered claim.
        let again = Grant::from_claims(&verified.claims).claim("cnf", "x");
        let refreshed = issuer.issue_access(&again).unwrap();
        assert_eq!(
            payload(&refreshed.token)["cnf"],
            serde_json::json!({ "jkt": jkt })
        );
        let spoofed = Grant::new("alice").claim("cnf", serde_json::json!({ "jkt": jkt }));
        let spoofed = issuer.issue_access(&spoofed).unwrap();
        assert!(payload(&spoofed.token).get("cnf").is_none());
    }

    #[test]
    fn a_jkt_that_is_not_a_sha256_thumbprint_is_refused_for_access_tokens() {
        let clock = ManualClock::new(T);
        let issuer = issuer(ed("k1", 1), &clock);
        let jkt = jkt_of(7);
        for bad in [
            String::new(),
            "x".to_owned(),
            format!("{jkt}A"),
            jkt[..42].to_owned(),
            format!("{}=", &jkt[..42]),
            jkt.replace(|c: char| c.is_ascii_alphanumeric(), "+"),
            "a".repeat(64),
        ] {
            let grant = Grant::new("alice").dpop_jkt(bad.clone());
            assert!(
                matches!(issuer.issue_access(&grant), Err(IssueError::InvalidJkt)),
                "{bad:?}"
            );
            // Partial tokens do not use it, unless bound on purpose.
            assert_eq!(
                issuer.issue_partial(&grant).unwrap().claims.dpop_jkt(),
                None
            );
            assert!(
                matches!(
                    issuer.issue_bound_partial(&grant),
                    Err(IssueError::InvalidJkt)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_hmac_secret_has_no_thumbprint_kid() {
        let hmac = SigningKey::hmac("h", Algorithm::HS256, &[1; 32]).unwrap();
        assert!(matches!(
            hmac.with_thumbprint_kid(),
            Err(ConfigError::Key { kid, .. }) if kid == "h"
        ));
    }
}
