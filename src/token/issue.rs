//! Issuing access tokens and partial tokens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::claims::{Claims, ClaimsParts};
use super::keys::SigningKey;
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
    /// `sid`, `scope`, `acr`, `amr`, `auth_time` and the other claims. For refreshing an
    /// access token without making an old authentication look fresh (RFC 9470 §6.1).
    pub fn from_claims(claims: &Claims) -> Self {
        Self {
            sub: claims.sub().to_owned(),
            sid: claims.sid().map(str::to_owned),
            scope: claims.scope().map(str::to_owned),
            acr: claims.acr().map(str::to_owned),
            amr: claims.amr().to_vec(),
            auth_time: claims.auth_time(),
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

    /// Any other claim. Registered claim names are ignored here.
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
}

/// Signs access tokens (`typ: at+jwt`) and partial tokens (their own `typ` and audience).
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    key: SigningKey,
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
    /// authenticated).
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

    /// Signs a partial token for `grant`: proof that the first factor passed, accepted by
    /// the verify endpoint only.
    pub fn issue_partial(&self, grant: &Grant) -> Result<IssuedToken, IssueError> {
        self.issue(TokenKind::Partial, grant, grant.sid.clone())
    }

    fn issue(
        &self,
        kind: TokenKind,
        grant: &Grant,
        sid: Option<String>,
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
        let mut header = Header::new(inner.key.algorithm());
        header.typ = Some(kind.typ().to_owned());
        header.kid = Some(inner.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, inner.key.encoding_key())
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token,
            claims,
            expires_in: ttl,
        })
    }

    /// The public keys that verify this issuer's tokens, as a JWKS document to publish
    /// (e.g. at `/.well-known/jwks.json`): empty for an HMAC signing key.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        jsonwebtoken::jwk::JwkSet {
            keys: self.inner.key.public_jwk().into_iter().collect(),
        }
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
            .field("key", &self.inner.key)
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
        Ok(Issuer {
            inner: Arc::new(Inner {
                key,
                issuer,
                audience,
                partial_audience,
                access_ttl,
                partial_ttl: partial_ttl.as_secs(),
                clock: self.clock.unwrap_or_else(clock::system),
            }),
        })
    }
}
