//! The recent-authentication rule of the endpoints that change what protects an account
//! or end its sessions: enrollment, ending a session, forgetting a device (OWASP ASVS
//! 5.0 V6.4, V7.5). One rule, [`CompletionBuilder::enroll_step_up`]'s requirement
//! (default: `amr` contains `mfa`, `auth_time` within 300 s):
//!
//! - a user who has a second factor must meet it whole: otherwise the guard's step-up
//!   challenge (`403 mfa_required` with an mfa_token for this very request);
//! - a user who has none must have signed in within its `max_age`: otherwise `403
//!   reauthentication_required`.
//!
//! [`CompletionBuilder::enroll_step_up`]: super::CompletionBuilder::enroll_step_up

use bytes::Bytes;
use http::request::Parts;
use http::Response;

use super::error::{ErrorKind, Failure};
use super::Completion;
use crate::audit::{Outcome, Record};
use crate::token::Claims;

/// Who asks, from the request, copied out so no borrow of it lives across an await.
pub(crate) struct Caller {
    pub(crate) claims: Option<Claims>,
    method: http::Method,
    path: String,
}

impl Caller {
    /// The local caller of `parts` (see [`Completion::local_caller`]), with the method
    /// and path a step-up challenge binds.
    pub(crate) fn of(completion: &Completion, parts: &Parts) -> Self {
        Self {
            claims: completion.local_caller(&parts.extensions),
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
        }
    }
}

/// The verified claims, if recent enough; else, for a user who has a factor, the
/// step-up answer (`Ok(Err(…))`), and for one who has none, `403
/// reauthentication_required`. No caller: `401`.
pub(crate) async fn authorize(
    completion: &Completion,
    caller: Caller,
    now: u64,
    audit: &mut Record,
) -> Result<Result<Claims, Response<Bytes>>, Failure> {
    let inner = completion.inner();
    let claims = caller.claims.ok_or(Failure::new(ErrorKind::Unauthorized))?;
    audit.sub(claims.sub());
    let requirement = &inner.enroll_step_up;
    let leeway = inner.guard.verifier().leeway();
    if inner.factors.totp(claims.sub()).await?.is_none() {
        // No factor to step up with: a stolen access token must not be enough to plant
        // one or to end the owner's sessions; a recent sign-in is.
        if let Some(max_age) = requirement.required_max_age() {
            if !requirement.recent_enough(&claims, now, leeway) {
                audit.reason("reauthentication_required");
                return Err(Failure::reauthentication(max_age));
            }
        }
        return Ok(Ok(claims));
    }
    if let Some(unmet) = requirement.unmet(&claims, now, leeway) {
        audit.outcome(Outcome::Failed, Some("mfa_required"));
        return Ok(Err(inner.guard.challenge(
            requirement,
            unmet,
            &claims,
            &caller.method,
            &caller.path,
            now,
        )));
    }
    Ok(Ok(claims))
}
