//! What a verification decides: the token that passed ([`VerifiedToken`]) or why it did
//! not ([`TokenError`]). A leaf module: the verifier, the issuers' rules and the header
//! reader all speak in these terms.

use super::claims::Claims;
use super::TokenKind;

/// Why a token was not accepted.
///
/// The `Display` text is safe to log: it never contains the token or a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS, not base64url, not JSON, or longer than
    /// [`MAX_TOKEN_LEN`](crate::token::MAX_TOKEN_LEN).
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
