//! The step-up challenge: sealed mfa_tokens and the denial responses.
//!
//! When an access token fails a route's [`StepUp`](crate::StepUp) requirement, the layer
//! answers (RFC 9470):
//!
//! ```text
//! HTTP/1.1 403 Forbidden
//! WWW-Authenticate: Bearer error="insufficient_user_authentication",
//!     error_description="…", max_age=300
//! Content-Type: application/json
//!
//! {"error":"mfa_required","error_description":"…","mfa_token":"eyJ…",
//!  "mfa_requirements":{"challenge":[{"type":"otp"}]}}
//! ```
//!
//! The `mfa_token` is an encrypted, authenticated JWE ([`Sealer`]) that only the verify
//! endpoint can open. Every other refusal follows [`DENIAL_TABLE`].

mod denial;
mod mfa_token;

pub(crate) use self::denial::{response, DenialDetails};
pub use self::denial::{Denial, DenialKind, DenialRow, Factor, MfaRequirements, DENIAL_TABLE};
pub use self::mfa_token::{
    MfaTokenClaims, OpenError, SealError, Sealer, SealingKey, SealingKeys, MAX_MFA_TOKEN_LEN,
    MFA_TOKEN_TYP,
};
