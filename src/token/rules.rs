//! The rules of one issuer: the crate's own (strict: access and partial tokens) or a
//! trusted identity provider's (access tokens by its profile).

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::claims::Claims;
use super::header::JoseHeader;
use super::keys::KeySet;
use super::profile::{ScopeClaim, TrustedIssuer};
use super::source::{KeySource, SharedKeys};
use super::verdict::{TokenError, VerifiedToken};
use super::TokenKind;

/// Whose tokens these are, and what that means for them.
enum Profile {
    /// The crate's own issuer: access tokens (`at+jwt`) and partial tokens, each with its
    /// own audience.
    Local { partial_audience: String },
    /// An identity provider: access tokens only, by its profile.
    Trusted(TrustedIssuer),
}

/// One allowed algorithm's validations: jsonwebtoken refuses a validation whose
/// allow-list mixes algorithm families, so each allows exactly one.
struct Validations {
    alg: Algorithm,
    access: Validation,
    /// Partial tokens (the local issuer only).
    partial: Option<Validation>,
}

/// Everything needed to verify one issuer's tokens.
pub(crate) struct IssuerRules {
    pub(crate) issuer: String,
    pub(crate) keys: Arc<dyn KeySource>,
    /// The source's keys, held to read their epoch on a cache hit without asking the
    /// source (whose `shared_keys` may do work, such as pruning an issuer's retired keys).
    pub(crate) shared: SharedKeys,
    pub(crate) algorithms: Vec<Algorithm>,
    validations: Vec<Validations>,
    profile: Profile,
}

/// A validation of signature, `iss` and `aud` only: `exp` and `nbf` are checked against
/// the injected clock, after the signature. `audiences` `None`: no `aud` check here.
fn validation(alg: Algorithm, issuer: &str, audiences: Option<&[String]>) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    let mut required = HashSet::from(["iss".to_owned()]);
    match audiences {
        Some(audiences) => {
            required.insert("aud".to_owned());
            v.set_audience(audiences);
        }
        None => v.validate_aud = false,
    }
    v.required_spec_claims = required;
    v.set_issuer(&[issuer]);
    v
}

impl IssuerRules {
    /// The crate's own issuer.
    pub(crate) fn local(
        issuer: String,
        audiences: &[String],
        partial_audience: String,
        algorithms: Vec<Algorithm>,
        keys: Arc<dyn KeySource>,
    ) -> Self {
        let validations = algorithms
            .iter()
            .map(|&alg| Validations {
                alg,
                access: validation(alg, &issuer, Some(audiences)),
                partial: Some(validation(
                    alg,
                    &issuer,
                    Some(std::slice::from_ref(&partial_audience)),
                )),
            })
            .collect();
        Self {
            issuer,
            shared: keys.shared_keys().clone(),
            keys,
            algorithms,
            validations,
            profile: Profile::Local { partial_audience },
        }
    }

    /// A trusted identity provider.
    pub(crate) fn trusted(profile: TrustedIssuer) -> Self {
        let by_aud = profile.audience_claim == "aud";
        let validations = profile
            .algorithms
            .iter()
            .map(|&alg| Validations {
                alg,
                access: validation(
                    alg,
                    &profile.issuer,
                    by_aud.then_some(profile.audiences.as_slice()),
                ),
                partial: None,
            })
            .collect();
        Self {
            issuer: profile.issuer.clone(),
            shared: profile.keys.shared_keys().clone(),
            keys: Arc::clone(&profile.keys),
            algorithms: profile.algorithms.clone(),
            validations,
            profile: Profile::Trusted(profile),
        }
    }

    /// Whether these are the crate's own issuer's rules.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self.profile, Profile::Local { .. })
    }

    /// The kind of token a `typ` header names under these rules.
    fn kind_of(&self, typ: Option<&str>) -> Result<TokenKind, TokenError> {
        match &self.profile {
            Profile::Local { .. } => typ.and_then(TokenKind::from_typ),
            Profile::Trusted(p) => p.accepts_typ(typ).then_some(TokenKind::Access),
        }
        .ok_or(TokenError::WrongType)
    }

    /// Checks `token` (whose header is `header`) with `keys`: type, algorithm, key,
    /// signature, `iss`, `aud` and the profile's claims. Not the times.
    pub(crate) fn check(
        &self,
        token: &str,
        header: &JoseHeader<'_>,
        keys: &KeySet,
    ) -> Result<VerifiedToken, TokenError> {
        let kind = self.kind_of(header.typ.as_deref())?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let key = keys
            .select(header.kid.as_deref())
            .ok_or(TokenError::UnknownKey)?;
        if key.algorithm() != header.alg {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let rules = self
            .validations
            .iter()
            .find(|v| v.alg == header.alg)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let validation = match kind {
            TokenKind::Access => &rules.access,
            TokenKind::Partial => rules.partial.as_ref().ok_or(TokenError::WrongType)?,
        };
        // The claims' shapes are checked as they are read (`Claims`' deserializer): `aud`
        // a string or strings, `cnf` exactly `{"jkt": <SHA-256 thumbprint>}` (a bound
        // token never passes as unbound); a refusal there is `InvalidClaims`.
        let claims = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), validation)
            .map_err(|e| decode_error(token, e.kind()))?
            .claims;
        let claims = self.profile_checks(kind, claims)?;
        Ok(VerifiedToken { kind, claims })
    }

    /// What the profile requires beyond signature, `iss` and `aud`.
    fn profile_checks(&self, kind: TokenKind, claims: Claims) -> Result<Claims, TokenError> {
        match &self.profile {
            Profile::Local { partial_audience } => {
                // The audiences of the two kinds are mutually exclusive (RFC 8725 §3.12):
                // an access token never names the partial audience, a partial token names
                // nothing else.
                let exclusive = match kind {
                    TokenKind::Access => !claims.aud().contains(partial_audience),
                    TokenKind::Partial => claims.aud().iter().all(|a| a == partial_audience),
                };
                exclusive.then_some(claims).ok_or(TokenError::WrongAudience)
            }
            Profile::Trusted(p) => trusted_checks(p, claims),
        }
    }
}

/// A trusted issuer's profile applied to a token its key signed: the audience claim
/// when it is not `aud`, the claims that mark an access token, and its scopes.
fn trusted_checks(profile: &TrustedIssuer, claims: Claims) -> Result<Claims, TokenError> {
    if profile.audience_claim != "aud" {
        let named = |v: &Value| {
            v.as_str()
                .is_some_and(|s| profile.audiences.iter().any(|a| a == s))
        };
        let ok = match claims.get(&profile.audience_claim) {
            Some(Value::Array(values)) => values.iter().any(named),
            Some(value) => named(value),
            None => false,
        };
        if !ok {
            return Err(TokenError::WrongAudience);
        }
    }
    let marked = profile
        .required
        .iter()
        .all(|(name, value)| claims.get(name).and_then(Value::as_str) == Some(value.as_str()));
    let unmarked = profile
        .refused
        .iter()
        .all(|name| claims.get(name).is_none());
    if !marked || !unmarked {
        return Err(TokenError::WrongType);
    }
    Ok(match profile.scopes {
        ScopeClaim::Scope => claims,
        ScopeClaim::Scp => {
            let scp = match claims.get("scp") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(values)) => Some(
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                _ => None,
            };
            claims.with_scope(scp)
        }
    })
}

/// A refusal from jsonwebtoken, as a [`TokenError`].
fn decode_error(token: &str, kind: &ErrorKind) -> TokenError {
    match kind {
        // jsonwebtoken names the first missing claim in a `HashSet`'s randomly seeded
        // order: with both missing, decide here, `iss` first, so that one token always
        // gets one answer.
        ErrorKind::MissingRequiredClaim(c) if c == "iss" || c == "aud" => {
            if payload_has(token, "iss") {
                TokenError::WrongAudience
            } else {
                TokenError::WrongIssuer
            }
        }
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
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
