//! Token verification: signature, algorithm, `kid`, `typ`, `iss`, `aud`, `exp`, `nbf`.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::claims::Claims;
use super::keys::KeySet;
use super::{TokenKind, DEFAULT_PARTIAL_AUDIENCE};
use crate::error::ConfigError;

/// Longest token the verifier will look at, in bytes. Anything longer is rejected before
/// any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The default clock leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// The largest leeway the verifier accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

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
    keys: RwLock<Arc<KeySet>>,
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

impl Verifier {
    /// Starts a verifier configuration.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
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
        let keys = self.keys();
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
        let data = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), validation)
            .map_err(|e| map_error(e.kind()))?;
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
        Ok(VerifiedToken { kind, claims })
    }

    /// Replaces the verifying keys of this verifier and all its clones.
    ///
    /// Tokens signed by a key that is no longer in the set are rejected from the next
    /// request on.
    pub fn rotate_keys(&self, keys: KeySet) -> Result<(), ConfigError> {
        keys.validate(&self.inner.algorithms)?;
        let mut slot = self
            .inner
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Arc::new(keys);
        Ok(())
    }

    /// The clock leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.inner.leeway
    }

    fn keys(&self) -> Arc<KeySet> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys())
            .field("algorithms", &self.inner.algorithms)
            .field("leeway", &self.inner.leeway)
            .finish_non_exhaustive()
    }
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
#[derive(Debug, Default)]
#[must_use]
pub struct VerifierBuilder {
    keys: KeySet,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audiences: Vec<String>,
    partial_audience: Option<String>,
    leeway: Option<Duration>,
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
        self.keys.validate(&self.algorithms)?;

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
                keys: RwLock::new(Arc::new(self.keys)),
                partial_audience,
                algorithms: self.algorithms,
                leeway: leeway.as_secs(),
            }),
        })
    }
}
