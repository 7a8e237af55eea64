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

use super::enrolled::Enrolled;
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
    if Enrolled::load(completion, claims.sub()).await?.is_empty() {
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

/// The caller of an endpoint that starts a change of what protects the account and reads
/// no body (a TOTP enrollment, a passkey registration), in the order both answer: the
/// content type (`content_type`, as the endpoint checked it), then [`authorize`] at the
/// guard's time (`401` without a caller, `403`, or the step-up answer in `Err`). The
/// claims come with that time.
pub(crate) async fn authorize_start(
    completion: &Completion,
    parts: &Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Result<(Claims, u64), Response<Bytes>>, Failure> {
    content_type?;
    let now = completion.inner().guard.clock().now();
    let caller = Caller::of(completion, parts);
    Ok(authorize(completion, caller, now, audit)
        .await?
        .map(|claims| (claims, now)))
}

/// The local caller of `parts` (`401 unauthorized` without one), its `sub` audited: the
/// first check of every endpoint that acts for a signed-in user.
pub(crate) fn signed_in(
    completion: &Completion,
    parts: &Parts,
    audit: &mut Record,
) -> Result<Claims, Failure> {
    let claims = completion
        .local_caller(&parts.extensions)
        .ok_or(Failure::new(ErrorKind::Unauthorized))?;
    audit.sub(claims.sub());
    Ok(claims)
}

/// Longest session or device id a path may name.
pub(crate) const MAX_ID_LEN: usize = 128;

/// The id a `DELETE …/{id}` path ends with: 1 to [`MAX_ID_LEN`] characters of
/// base64url's alphabet (what `sid`s and device ids are made of), else `400`.
pub(crate) fn path_id(path: &str) -> Result<&str, Failure> {
    let id = path.rsplit('/').next().unwrap_or_default();
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(Failure::invalid_request("the id is malformed"))
    }
}

/// The caller of a `DELETE …/{id}`, in the order every endpoint answers: `401` without
/// one, then the content type (as the endpoint checked it), then the id (`400`), then
/// the recent-authentication rule (`403`, or the step-up answer in `Err`).
pub(crate) async fn authorize_delete<'p>(
    completion: &Completion,
    parts: &'p Parts,
    content_type: Result<(), Failure>,
    now: u64,
    audit: &mut Record,
) -> Result<Result<(crate::Claims, &'p str), Response<Bytes>>, Failure> {
    let caller = Caller::of(completion, parts);
    if caller.claims.is_none() {
        return Err(Failure::new(ErrorKind::Unauthorized));
    }
    content_type?;
    let id = path_id(parts.uri.path())?;
    Ok(authorize(completion, caller, now, audit)
        .await?
        .map(|claims| (claims, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_id_is_base64url_and_bounded() {
        for ok in ["/auth/sessions/abc-DEF_123", "/x/y/z"] {
            assert!(path_id(ok).is_ok(), "{ok}");
        }
        let long = format!("/auth/sessions/{}", "a".repeat(MAX_ID_LEN + 1));
        let max = format!("/auth/sessions/{}", "a".repeat(MAX_ID_LEN));
        assert!(path_id(&max).is_ok());
        for bad in [
            "/auth/sessions/",
            "/auth/sessions/a.b",
            "/auth/sessions/%2e%2e",
            "/auth/sessions/a%20b",
            "/auth/sessions/é",
            "/auth/sessions/a:b",
            long.as_str(),
        ] {
            let err = path_id(bad).err().map(|f| f.kind);
            assert_eq!(err, Some(ErrorKind::InvalidRequest), "{bad}");
        }
    }
}
