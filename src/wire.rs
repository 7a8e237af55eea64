//! The wire contract shared by the server and the client: every `error` code a refusal
//! carries, and the members of a refusal's JSON body a client acts on.
//!
//! The server writes these codes (the layer's denials,
//! [`DENIAL_TABLE`](crate::challenge::DENIAL_TABLE), and the completion endpoints'
//! errors); a client reads them back with [`ErrorCode::from_code`] instead of comparing
//! strings of its own:
//!
//! ```
//! use tower_stepup::wire::ErrorCode;
//!
//! let body = serde_json::json!({ "error": "mfa_required", "expires_in": 120 });
//! let code = body["error"].as_str().and_then(ErrorCode::from_code);
//! assert_eq!(code, Some(ErrorCode::MfaRequired));
//! assert_eq!(ErrorCode::MfaRequired.as_str(), "mfa_required");
//! // A code this crate does not know is not guessed at.
//! assert_eq!(ErrorCode::from_code("mfa_requried"), None);
//! ```
//!
//! Besides `error` and `error_description`, a refusal may carry:
//! - [`TOKEN_EXPIRED`] (`"token_expired": true`) in the `401 invalid_token` of an access
//!   token past its `exp`: refresh it. The `error` stays `invalid_token` (RFC 6750); this
//!   member, not the English `error_description`, is what says "expired".
//! - [`EXPIRES_IN`] (`"expires_in": <seconds>`) in a step-up denial (`mfa_required`):
//!   how long its `mfa_token` can be used.

use std::fmt;

/// Body member of the `401 invalid_token` denial of an expired access token; its value
/// is `true`. Absent (or anything but `true`) for every other invalid token.
pub const TOKEN_EXPIRED: &str = "token_expired";

/// Body member of a step-up denial (`mfa_required`): the lifetime of its `mfa_token`, in
/// seconds from when the denial was sent.
pub const EXPIRES_IN: &str = "expires_in";

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)*) => {
        /// An `error` code on the wire: one enum for the server that writes it and the
        /// client that reads it.
        ///
        /// Several server-side reasons may share a code (a body too large and a
        /// malformed one are both `invalid_request`); the reasons are
        /// [`DenialKind`](crate::DenialKind) and `complete::ErrorKind`, each row of
        /// their tables names its code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, each once.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it is written on the wire, e.g. `mfa_required`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The code written as `code` on the wire; `None` for a code this crate does
            /// not know (compared exactly: codes are lowercase ASCII).
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// No credential on a protected route, or none at an endpoint that needs one.
    Unauthorized => "unauthorized",
    /// The access token is invalid, or has expired (then with [`TOKEN_EXPIRED`]).
    InvalidToken => "invalid_token",
    /// A partial token outside the verify endpoint: finish the second factor first.
    MfaIncomplete => "mfa_incomplete",
    /// The access token lacks a scope the route requires.
    InsufficientScope => "insufficient_scope",
    /// The route needs a stronger or fresher authentication: the body carries an
    /// `mfa_token` (and [`EXPIRES_IN`]).
    MfaRequired => "mfa_required",
    /// The request is malformed, too large, or of a method the endpoint does not serve.
    InvalidRequest => "invalid_request",
    /// Wrong username or password, or an unknown user.
    InvalidCredentials => "invalid_credentials",
    /// The mfa_token or partial token is invalid or of the wrong kind.
    MfaTokenInvalid => "mfa_token_invalid",
    /// The mfa_token or partial token has expired.
    MfaTokenExpired => "mfa_token_expired",
    /// The mfa_token or partial token was already used, or is unknown.
    MfaTokenNotFound => "mfa_token_not_found",
    /// Wrong code; the body says how many attempts remain.
    InvalidCode => "invalid_code",
    /// Attempts exhausted: try again later.
    TooManyAttempts => "too_many_attempts",
    /// The pending enrollment was confirmed already.
    EnrollmentAlreadyConfirmed => "enrollment_already_confirmed",
    /// Changing factors needs a recent sign-in.
    ReauthenticationRequired => "reauthentication_required",
    /// The refresh token is unknown, expired, revoked or was reused.
    InvalidGrant => "invalid_grant",
    /// No such session, device or factor of the caller (also another user's).
    NotFound => "not_found",
    /// The factor is the account's last that signs in, and the application requires a
    /// second factor: enroll another first.
    LastFactor => "last_factor",
    /// A store or backend could not be reached: try again.
    TemporarilyUnavailable => "temporarily_unavailable",
    /// The server could not complete or decide the request.
    ServerError => "server_error",
    /// The DPoP proof of the request is missing, malformed, or does not match the
    /// request or its token (RFC 9449 §7.1); sent in a `DPoP` challenge.
    InvalidDpopProof => "invalid_dpop_proof",
    /// The DPoP proof lacks the server's current nonce: retry with the one in the
    /// `DPoP-Nonce` response header (RFC 9449 §8).
    UseDpopNonce => "use_dpop_nonce",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `code == "mfa_required"`: compares the wire form.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// `code == "mfa_required"`: compares the wire form.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `body["error"] == code`: a JSON string equal to the wire form.
impl PartialEq<ErrorCode> for serde_json::Value {
    fn eq(&self, other: &ErrorCode) -> bool {
        self.as_str() == Some(other.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::challenge::DENIAL_TABLE;

    #[test]
    fn every_code_round_trips_and_no_two_collide() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
            assert!(seen.insert(code.as_str()), "{code:?} is listed twice");
        }
        assert_eq!(seen.len(), 21);
    }

    #[test]
    fn every_denial_code_round_trips() {
        for row in DENIAL_TABLE {
            let code = ErrorCode::from_code(row.error.as_str());
            assert_eq!(code, Some(row.error), "{:?}", row.kind);
        }
    }

    #[test]
    fn compares_with_its_wire_form() {
        let body = serde_json::json!({ "error": "invalid_code", "n": 1 });
        assert_eq!(body["error"], ErrorCode::InvalidCode);
        assert_ne!(body["error"], ErrorCode::InvalidToken);
        assert_ne!(body["n"], ErrorCode::InvalidCode);
        assert_ne!(body["missing"], ErrorCode::InvalidCode);
        assert_eq!(ErrorCode::InvalidCode, "invalid_code");
        assert!(ErrorCode::InvalidCode == *"invalid_code");
        assert_ne!(ErrorCode::InvalidCode, "Invalid_Code");
    }

    #[test]
    fn unknown_codes_are_not_guessed() {
        for code in [
            "",
            "MFA_REQUIRED",
            "mfa_required ",
            " invalid_token",
            "expired",
        ] {
            assert_eq!(ErrorCode::from_code(code), None, "{code:?}");
        }
    }
}
