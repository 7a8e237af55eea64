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
//! {"error":"mfa_required","error_description":"…","expires_in":300,
//!  "mfa_requirements":{"challenge":[{"type":"otp"}]},"mfa_token":"eyJ…"}
//! ```
//!
//! The `mfa_token` is an encrypted, authenticated JWE ([`Sealer`]) that only the verify
//! endpoint can open; `expires_in` is its lifetime in seconds
//! ([`GuardBuilder::mfa_token_ttl`](crate::layer::GuardBuilder::mfa_token_ttl)). Every other
//! refusal follows [`DENIAL_TABLE`]; an expired access token's body also says
//! `"token_expired": true` (its `error` stays `invalid_token`).
//!
//! ```
//! # use tower_stepup::*;
//! use tower_stepup::challenge::OpenError;
//! # fn guard_and_issuer() -> Result<(Guard, Issuer), ConfigError> {
//! #     let secret = [7u8; 32];
//! #     let verifier = Verifier::builder()
//! #         .issuer("https://auth.example")
//! #         .audience("https://api.example")
//! #         .algorithms([Algorithm::HS256])
//! #         .key(VerifyingKey::hmac("k1", Algorithm::HS256, &secret)?)
//! #         .build()?;
//! #     let sealer = Sealer::new(SealingKeys::new(SealingKey::generate("s1")?))?;
//! #     let issuer = Issuer::builder()
//! #         .issuer("https://auth.example")
//! #         .audience("https://api.example")
//! #         .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &secret)?)
//! #         .build()?;
//! #     Ok((Guard::builder().verifier(verifier).sealer(sealer).build()?, issuer))
//! # }
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (guard, issuer) = guard_and_issuer()?;
//! let billing = guard
//!     .require(Policy::step_up(StepUp::new().amr(["mfa"])))?
//!     .layer(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let token = issuer.issue_access(&Grant::new("alice").amr(["pwd"]))?.token;
//! let res = billing
//!     .oneshot(
//!         Request::get("/billing")
//!             .header("authorization", format!("Bearer {token}"))
//!             .body(String::new())?,
//!     )
//!     .await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//!
//! use http_body_util::BodyExt;
//! let body: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body["error"], "mfa_required");
//! let mfa_token = body["mfa_token"].as_str().unwrap_or_default();
//!
//! // Only the sealer opens it; it names who must step up, for what, where.
//! let now = guard.clock().now();
//! let sealer = guard.sealer().ok_or("a guard of the local issuer has a sealer")?;
//! let claims = sealer.open(mfa_token, now)?;
//! assert_eq!((claims.sub.as_str(), claims.path.as_str()), ("alice", "/billing"));
//! assert_eq!(sealer.open(mfa_token, now + 300), Err(OpenError::Expired));
//! # Ok(())
//! # }
//! ```

mod denial;
mod mfa_token;

pub(crate) use self::denial::{
    grpc_response, http_response, wants_grpc_denial, LocalCompletion, StepUpChallenge,
};
// The layer names it once DPoP is wired in.
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use self::denial::RequestScheme;
pub use self::denial::{
    Denial, DenialKind, DenialRow, FactorType, MfaRequirements, DENIAL_TABLE, DPOP_NONCE_HEADER,
    GRPC_DETAILS_HEADER, GRPC_MFA_TOKEN_HEADER,
};
pub use self::mfa_token::{
    MfaTokenClaims, OpenError, SealError, Sealer, SealingKey, SealingKeys, DEVICE_TYP,
    MAX_MFA_TOKEN_LEN, MFA_TOKEN_TYP,
};
