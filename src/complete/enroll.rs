//! Enrollment of a TOTP factor: start, then confirm with a first code.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use serde::Deserialize;
use serde_json::json;

use super::endpoint::json_ok;
use super::error::{ErrorKind, Failure};
use super::request::{read_json, require_json};
use super::{Completion, TotpFactor, ENROLLMENT_TTL};
use crate::audit::{Outcome, Record};
use crate::factor::{recovery, totp, TotpSecret};
use crate::token::Claims;

fn pending_key(sub: &str) -> String {
    format!("enroll:{sub}")
}

/// Who asks, from the request, copied out so no borrow of it lives across an await.
struct Caller {
    claims: Option<Claims>,
    method: http::Method,
    path: String,
}

impl Caller {
    fn of<B>(req: &Request<B>) -> Self {
        Self {
            claims: req.extensions().get::<Claims>().cloned(),
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
        }
    }
}

/// The verified claims, and — for a user who already has a factor — the step-up answer
/// when the claims do not meet the enrollment requirement.
async fn authorize(
    completion: &Completion,
    caller: Caller,
    now: u64,
    audit: &mut Record,
) -> Result<Result<Claims, Response<Bytes>>, Failure> {
    let inner = completion.inner();
    let claims = caller.claims.ok_or(Failure::new(ErrorKind::Unauthorized))?;
    audit.sub(claims.sub());
    if inner.factors.totp(claims.sub()).await?.is_some() {
        let requirement = &inner.enroll_step_up;
        let leeway = inner.guard.verifier().leeway();
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
    }
    Ok(Ok(claims))
}

/// `POST …/mfa/enroll` → `{"secret","otpauth_uri","qr_svg"}`. Nothing changes until
/// the confirmation.
pub(crate) async fn start<B>(
    completion: &Completion,
    req: Request<B>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    // No body is read, but the content type is required all the same (CSRF, see
    // `require_json`).
    require_json(req.headers())?;
    let now = inner.guard.clock().now();
    let claims = match authorize(completion, Caller::of(&req), now, audit).await? {
        Ok(claims) => claims,
        Err(step_up) => return Ok(step_up),
    };
    let secret = TotpSecret::generate().map_err(|_| Failure::new(ErrorKind::ServerError))?;
    inner
        .store
        .put(
            &pending_key(claims.sub()),
            secret.as_bytes().to_vec(),
            now.saturating_add(ENROLLMENT_TTL.as_secs()),
            now,
        )
        .await?;
    let uri = totp::otpauth_uri(&secret, &inner.totp_issuer, claims.sub());
    Ok(json_ok(&json!({
        "secret": secret.to_base32(),
        "otpauth_uri": uri,
        "qr_svg": totp::qr_svg(&uri),
    })))
}

#[derive(Deserialize)]
struct ConfirmBody {
    code: String,
}

/// `POST …/mfa/enroll/confirm` `{"code"}` → `{"recovery_codes":[…]}`, shown once.
pub(crate) async fn confirm<B>(
    completion: &Completion,
    req: Request<B>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let claims = match authorize(completion, Caller::of(&req), now, audit).await? {
        Ok(claims) => claims,
        Err(step_up) => return Ok(step_up),
    };
    let sub = claims.sub();
    let (_, body): (_, ConfirmBody) = read_json(req, inner.body_limit).await?;
    let attempts = inner.store.attempts(sub, now).await?;
    if attempts.is_locked(now) {
        audit.reason("locked_out");
        let retry_after = attempts
            .locked_until
            .map_or(1, |u| u.saturating_sub(now).max(1));
        return Err(Failure {
            retry_after: Some(retry_after),
            ..Failure::new(ErrorKind::TooManyAttempts)
        });
    }
    let key = pending_key(sub);
    let pending = inner
        .store
        .get(&key, now)
        .await?
        .ok_or(Failure::invalid_request(
            "no enrollment in progress; start one",
        ))?;
    let secret =
        TotpSecret::from_bytes(pending).map_err(|_| Failure::new(ErrorKind::ServerError))?;
    let Some(step) = totp::verify(&secret, &body.code, now) else {
        let policy = inner.attempts;
        let a = inner.store.record_failure(sub, policy, now).await?;
        return Err(if a.is_locked(now) {
            audit.outcome(Outcome::Lockout, Some("wrong_code"));
            Failure {
                retry_after: Some(a.locked_until.map_or(1, |u| u.saturating_sub(now).max(1))),
                ..Failure::new(ErrorKind::TooManyAttempts)
            }
        } else {
            audit.reason("wrong_code");
            Failure {
                attempts_remaining: Some(policy.max_attempts.saturating_sub(a.failures)),
                ..Failure::new(ErrorKind::InvalidCode)
            }
        });
    };
    // The confirming code must never log anyone in later.
    let forget_at = step.saturating_add(2).saturating_mul(totp::STEP_SECS);
    inner
        .store
        .advance_totp_step(sub, step, forget_at, now)
        .await?;
    let (codes, hashes) = recovery::generate().map_err(|_| Failure::new(ErrorKind::ServerError))?;
    inner
        .factors
        .save_totp(sub, TotpFactor::new(secret, hashes))
        .await?;
    inner.store.delete(&key).await?;
    inner.store.clear_failures(sub, now).await?;
    Ok(json_ok(&json!({ "recovery_codes": codes })))
}
