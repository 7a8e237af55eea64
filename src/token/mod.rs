//! Tokens: claims, verification and issuing.
//!
//! Two kinds of signed token exist, and they can never be taken for one another
//! (RFC 8725 §3.11–3.12): each has its own `typ` header and its own audience, and the
//! verifier applies the rules of the kind a token claims to be.
//!
//! | kind | `typ` | `aud` | accepted by |
//! | --- | --- | --- | --- |
//! | access token | `at+jwt` (RFC 9068) | the API's audience | every protected route |
//! | partial token | `stepup-partial+jwt` | [`DEFAULT_PARTIAL_AUDIENCE`] (configurable) | the verify endpoint only |
//!
//! The third kind, the step-up `mfa_token`, is not a JWS at all but an encrypted JWE
//! (see [`challenge`](crate::challenge)); a verifier never accepts it.
//!
//! A verifier may also accept the access tokens of identity providers
//! ([`TrustedIssuer`], with ready-made profiles for Auth0, Keycloak, Okta, Entra ID and
//! Cognito): each with its own keys (fixed, or a [`KeySource`] such as the `jwks`
//! feature's fetcher) and its own token profile, chosen by the token's `iss`. Their
//! tokens are never partial tokens.
//!
//! ```
//! use tower_stepup::{Algorithm, Clock, Grant, Issuer, ManualClock, SigningKey, TokenError, TokenKind,
//!     Verifier, VerifyingKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = [7u8; 32];
//! let clock = ManualClock::new(1_700_000_000);
//! let issuer = Issuer::builder()
//!     .issuer("https://auth.example")
//!     .audience("https://api.example")
//!     .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &secret)?)
//!     .clock(clock.clone())
//!     .build()?;
//! let verifier = Verifier::builder()
//!     .issuer("https://auth.example")
//!     .audience("https://api.example")
//!     .algorithms([Algorithm::HS256])
//!     .key(VerifyingKey::hmac("k1", Algorithm::HS256, &secret)?)
//!     .build()?;
//!
//! let partial = issuer.issue_partial(&Grant::new("alice").amr(["pwd"]))?;
//! let verified = verifier.verify(&partial.token, clock.now())?;
//! assert_eq!(verified.kind, TokenKind::Partial); // never Access
//!
//! clock.advance(partial.expires_in + 5);
//! assert_eq!(
//!     verifier.verify(&partial.token, clock.now()),
//!     Err(TokenError::Expired { kind: TokenKind::Partial })
//! );
//! # Ok(())
//! # }
//! ```

mod cache;
mod claims;
mod header;
mod issue;
mod jwks;
mod keys;
mod profile;
mod providers;
mod publish;
mod rotation;
mod rules;
mod source;
mod verdict;
mod verify;

pub use self::cache::CacheStats;
pub use self::claims::Claims;
pub use self::issue::{
    Grant, IssueError, IssuedToken, Issuer, IssuerBuilder, DEFAULT_ACCESS_TTL, DEFAULT_PARTIAL_TTL,
    DEFAULT_RETIRE_MARGIN, MAX_PARTIAL_TTL,
};
pub use self::jwks::{JwkSkip, SkippedJwk};
pub use self::keys::{KeySet, SigningKey, VerifyingKey};
pub use self::profile::{ScopeClaim, TrustedIssuer};
pub use self::publish::{JwksService, DEFAULT_JWKS_MAX_AGE};
pub use self::rotation::IssuerKeys;
pub use self::source::{KeySource, KeyWait, SharedKeys};
pub use self::verify::{
    TokenError, VerifiedToken, Verifier, VerifierBuilder, DEFAULT_CACHE_CAPACITY,
    DEFAULT_CACHE_MAX_AGE, DEFAULT_LEEWAY, MAX_LEEWAY, MAX_TOKEN_LEN,
};
/// The system's random number generator failed (issuing a token, sealing a challenge,
/// making a TOTP secret or recovery codes).
pub use crate::random::RandomError;
/// A JSON Web Key and Key Set (RFC 7517), jsonwebtoken's types: read an identity
/// provider's published keys with [`KeySet::from_jwks`] without adding jsonwebtoken (and
/// matching its version) yourself.
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
pub use jsonwebtoken::Algorithm;

/// `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// `typ` of partial tokens.
pub const PARTIAL_TOKEN_TYP: &str = "stepup-partial+jwt";
/// Default `aud` of partial tokens.
pub const DEFAULT_PARTIAL_AUDIENCE: &str = "urn:tower-stepup:mfa-verify";

/// The kinds of signed token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// A full access token.
    Access,
    /// Password accepted, second factor outstanding.
    Partial,
}

impl TokenKind {
    /// The `typ` header value of this kind.
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Access => ACCESS_TOKEN_TYP,
            TokenKind::Partial => PARTIAL_TOKEN_TYP,
        }
    }

    /// The kind a `typ` header names. Compared case-insensitively, with an optional
    /// `application/` prefix (RFC 7515 §4.1.9). `JWT` and anything else name no kind.
    pub fn from_typ(typ: &str) -> Option<Self> {
        let typ = strip_prefix_ignore_case(typ, "application/").unwrap_or(typ);
        [TokenKind::Access, TokenKind::Partial]
            .into_iter()
            .find(|k| typ.eq_ignore_ascii_case(k.typ()))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-stepup needs a signature backend: enable feature `aws-lc-rs` (default) or `rust-crypto`"
);

/// With both backends enabled (e.g. `--all-features`), jsonwebtoken cannot pick one by
/// itself; aws-lc-rs wins. A provider the application installed first is kept.
pub(crate) fn ensure_crypto_provider() {
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
                &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
            );
        });
    }
}
