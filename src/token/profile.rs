//! Trusted issuers: identity providers whose access tokens a [`Verifier`] accepts beside
//! (or instead of) the crate's own, each with its own keys and token profile.
//!
//! [`Verifier`]: crate::Verifier

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::source::{KeySource, SharedKeys};
use super::KeySet;

/// Where a trusted issuer puts the scopes of its access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeClaim {
    /// `scope`, a space-separated string (RFC 9068 §2.2.3; Auth0, Keycloak, Cognito).
    Scope,
    /// `scp`, a space-separated string or an array of strings (Okta, Entra ID).
    Scp,
}

/// An identity provider whose access tokens the verifier accepts: its `iss`, its keys
/// and its token profile.
///
/// A token's keys are looked up only in its own issuer's set (chosen by its `iss`), and
/// it is checked against its own issuer's profile:
///
/// - **`typ`**: RFC 9068's `at+jwt` (or `application/at+jwt`) by default; `JWT`
///   ([`allow_typ_jwt`](Self::allow_typ_jwt)) or no `typ` at all
///   ([`allow_missing_typ`](Self::allow_missing_typ)) only when chosen, for providers
///   that send them. The crate's partial-token `typ` is never accepted.
/// - **audience**: `aud` must name one of [`audience`](Self::audience) (or another
///   claim, [`audience_claim`](Self::audience_claim), for providers whose access tokens
///   carry none, as Cognito's `client_id`).
/// - **algorithms**: an allow-list of its own; a key is pinned to one of them.
/// - **access, not ID tokens**: where `typ` does not tell them apart, a claim does
///   ([`require_claim`](Self::require_claim), e.g. Cognito's `token_use: access`,
///   Keycloak's `typ: Bearer`); and an ID token's `aud` is the client's id, never the
///   API's audience.
/// - **scopes** from `scope` or `scp` ([`scopes_from`](Self::scopes_from)); `acr`,
///   `amr` and `auth_time` are read as they are.
///
/// Its tokens are access tokens only (never partial tokens), and step-up for them is
/// *delegated*: the provider performs the second factor, so a step-up denial carries
/// the RFC 9470 challenge (`acr_values`, `max_age`) and no `mfa_token`. Identity is
/// (`iss`, `sub`): the completion endpoints accept the local issuer's tokens only.
#[derive(Clone)]
#[must_use]
pub struct TrustedIssuer {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) audience_claim: String,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) typ_jwt: bool,
    pub(crate) typ_missing: bool,
    pub(crate) scopes: ScopeClaim,
    pub(crate) required: Vec<(String, String)>,
    pub(crate) refused: Vec<String>,
    pub(crate) keys: Arc<dyn KeySource>,
    pub(crate) jwks_uri: Option<String>,
}

impl TrustedIssuer {
    /// The issuer whose tokens carry `iss` equal to `issuer` (compared exactly). It has
    /// no keys yet (set them with [`keys`](Self::keys) or
    /// [`key_source`](Self::key_source)), no audience and no algorithms: the verifier
    /// refuses to build until both are given.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            audience_claim: "aud".to_owned(),
            algorithms: Vec::new(),
            typ_jwt: false,
            typ_missing: false,
            scopes: ScopeClaim::Scope,
            required: Vec::new(),
            refused: Vec::new(),
            keys: Arc::new(SharedKeys::empty()),
            jwks_uri: None,
        }
    }

    /// The `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An accepted audience (the API's identifier at this provider); call again for
    /// several. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The claim that holds the audience, when it is not `aud` (a string or an array of
    /// strings). Cognito's access tokens carry no `aud` but the app client's id in
    /// `client_id`.
    pub fn audience_claim(mut self, claim: impl Into<String>) -> Self {
        self.audience_claim = claim.into();
        self
    }

    /// The algorithm allow-list of this issuer. Required.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The allowed algorithms.
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Also accept `typ: JWT` (many providers send it on access tokens).
    ///
    /// # Security
    /// `typ` then no longer tells an access token from an ID token: the audience does
    /// (an ID token's `aud` is the client's id), or a claim
    /// ([`require_claim`](Self::require_claim)). Never list a client id as an audience.
    pub fn allow_typ_jwt(mut self) -> Self {
        self.typ_jwt = true;
        self
    }

    /// Also accept tokens without `typ`. The same caution as
    /// [`allow_typ_jwt`](Self::allow_typ_jwt).
    pub fn allow_missing_typ(mut self) -> Self {
        self.typ_missing = true;
        self
    }

    /// Where the scopes are. Default [`ScopeClaim::Scope`].
    pub fn scopes_from(mut self, claim: ScopeClaim) -> Self {
        self.scopes = claim;
        self
    }

    /// Accept only tokens whose claim `name` is the string `value`: what tells the
    /// provider's access tokens from its ID tokens where `typ` does not (Cognito:
    /// `token_use` = `access`; Keycloak: `typ` = `Bearer`). Call again for several.
    pub fn require_claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.required.push((name.into(), value.into()));
        self
    }

    /// Refuse tokens that carry the claim `name` at all: what marks an ID token where
    /// nothing else does (`nonce`, `at_hash`). Call again for several.
    pub fn refuse_claim(mut self, name: impl Into<String>) -> Self {
        self.refused.push(name.into());
        self
    }

    /// Where the provider publishes its keys, when known (the ready-made profiles know
    /// it): give it to a key source (`jwks::JwksSource`, feature `jwks`).
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref()
    }

    /// The OpenID Connect discovery document of this issuer:
    /// `{iss}/.well-known/openid-configuration` (OpenID Connect Discovery §4).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }

    pub(crate) fn with_jwks_uri(mut self, uri: String) -> Self {
        self.jwks_uri = Some(uri);
        self
    }

    /// Fixed keys.
    pub fn keys(self, keys: KeySet) -> Self {
        self.key_source(SharedKeys::new(keys))
    }

    /// Keys that change while the verifier runs: a JWKS fetched and refreshed in the
    /// background (`jwks::JwksSource`, feature `jwks`), or your own [`KeySource`].
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.keys = Arc::new(source);
        self
    }

    /// Whether a `typ` header (`None`: absent) names an access token of this issuer.
    pub(crate) fn accepts_typ(&self, typ: Option<&str>) -> bool {
        let Some(typ) = typ else {
            return self.typ_missing;
        };
        let typ = super::strip_prefix_ignore_case(typ, "application/").unwrap_or(typ);
        typ.eq_ignore_ascii_case(super::ACCESS_TOKEN_TYP)
            || (self.typ_jwt && typ.eq_ignore_ascii_case("JWT"))
    }
}

impl fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("audience_claim", &self.audience_claim)
            .field("algorithms", &self.algorithms)
            .field("typ_jwt", &self.typ_jwt)
            .field("typ_missing", &self.typ_missing)
            .field("scopes", &self.scopes)
            .field("required", &self.required)
            .field("refused", &self.refused)
            .field("jwks_uri", &self.jwks_uri)
            .field("keys", self.keys.shared_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_at_jwt_unless_chosen_otherwise() {
        let strict = TrustedIssuer::new("https://idp");
        assert!(strict.accepts_typ(Some("at+jwt")));
        assert!(strict.accepts_typ(Some("application/AT+JWT")));
        assert!(!strict.accepts_typ(Some("JWT")));
        assert!(!strict.accepts_typ(None));
        assert!(!strict.accepts_typ(Some("stepup-partial+jwt")));
        let relaxed = strict.allow_typ_jwt().allow_missing_typ();
        assert!(relaxed.accepts_typ(Some("jwt")));
        assert!(relaxed.accepts_typ(Some("application/JWT")));
        assert!(relaxed.accepts_typ(None));
        assert!(!relaxed.accepts_typ(Some("stepup-partial+jwt")));
        assert!(!relaxed.accepts_typ(Some("id+jwt")));
        assert!(!relaxed.accepts_typ(Some("")));
    }
}
