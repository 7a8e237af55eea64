//! Enrollment of a TOTP factor: start, then confirm with a first code.

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use serde_json::json;

use super::error::{ErrorKind, Failure};
use super::recent::{authorize, authorize_start, Caller};
use super::response::json_ok;
use super::{attempt, device, sessions, Completion, TotpFactor, ENROLLMENT_TTL};
use crate::audit::{Action, Outcome, Record};
use crate::factor::{recovery, totp, TotpSecret};

fn pending_key(sub: &str) -> String {
    format!("enroll:{sub}")
}

/// `POST …/mfa/enroll` → `{"secret","otpauth_uri","qr_svg"}`. Nothing changes until
/// the confirmation. No body is read: `content_type` is the endpoint's check of it,
/// answered first.
pub(crate) async fn start(
    completion: &Completion,
    parts: Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let (claims, now) = match authorize_start(completion, &parts, content_type, audit).await? {
        Ok(authorized) => authorized,
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

/// The body of an enrollment confirmation.
#[derive(Deserialize)]
pub(crate) struct ConfirmBody {
    code: String,
}

/// `POST …/mfa/enroll/confirm` `{"code"}` → `{"recovery_codes":[…]}`, shown once.
///
/// Exactly one confirmation succeeds per pending enrollment, however many arrive at once:
/// the others get `409 enrollment_already_confirmed`. The code is judged under a reserved
/// attempt (the user's attempt limit, shared with verify). The caller and the step-up
/// are answered before the body (as the endpoint read it).
pub(crate) async fn confirm(
    completion: &Completion,
    parts: Parts,
    body: Result<ConfirmBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let claims = match authorize(completion, Caller::of(completion, &parts), now, audit).await? {
        Ok(claims) => claims,
        Err(step_up) => return Ok(step_up),
    };
    let sub = claims.sub();
    let body = body?;
    let secret = match pending(completion, sub, now).await {
        Ok(secret) => secret,
        Err(failure) => {
            return Err(attempt::lockout_first(completion, sub, failure, now, audit).await)
        }
    };
    let attempt = attempt::reserve(completion, sub.to_owned(), inner.attempts, now)
        .await
        .map_err(|refused| refused.into_failure(now, audit))?;
    let Some(step) = totp::verify(&secret, &body.code, now) else {
        let attempts = attempt.failed(now).await?;
        return Err(attempt::wrong_proof(
            attempts,
            inner.attempts,
            now,
            audit,
            "wrong_code",
        ));
    };
    match activate(completion, &claims, secret, step, now).await {
        Ok(codes) => {
            attempt.succeeded(now).await?;
            Ok(json_ok(&json!({ "recovery_codes": codes })))
        }
        Err(failure) => Err(attempt.release(failure, now).await),
    }
}

/// The secret of the user's pending enrollment: `400` when none is in progress, `409`
/// when it has been confirmed already.
async fn pending(completion: &Completion, sub: &str, now: u64) -> Result<TotpSecret, Failure> {
    let pending = completion
        .inner()
        .store
        .get(&pending_key(sub), now)
        .await?
        .ok_or(Failure::invalid_request(
            "no enrollment in progress; start one",
        ))?;
    if pending.is_empty() {
        return Err(Failure::new(ErrorKind::EnrollmentAlreadyConfirmed));
    }
    TotpSecret::from_bytes(pending).map_err(|_| Failure::new(ErrorKind::ServerError))
}

/// Turns the factor on, exactly once per pending enrollment: the recovery codes. The
/// factors change, so every remembered device of the user is forgotten and their
/// sessions but the caller's end (OWASP ASVS 5.0 V7.4.3), before the factor is saved: a
/// failure leaves the old factor with fewer devices and sessions, never the new one
/// with the old.
async fn activate(
    completion: &Completion,
    claims: &crate::Claims,
    secret: TotpSecret,
    step: u64,
    now: u64,
) -> Result<Vec<String>, Failure> {
    let inner = completion.inner();
    let sub = claims.sub();
    let key = pending_key(sub);
    let expires_at = now.saturating_add(ENROLLMENT_TTL.as_secs());
    // Of N concurrent confirmations of one pending enrollment, one gets past this line.
    let once = format!("enrolled:{sub}:{}", secret.fingerprint());
    if !inner.store.consume(&once, expires_at, now).await? {
        return Err(Failure::new(ErrorKind::EnrollmentAlreadyConfirmed));
    }
    // The confirming code must never log anyone in later. (When a later step was
    // accepted for the user already, this one can log nobody in either: exactly once
    // rests on `once` above, not on this answer.)
    let forget_at = step.saturating_add(2).saturating_mul(totp::STEP_SECS);
    inner
        .store
        .advance_totp_step(sub, step, forget_at, now)
        .await?;
    let (codes, hashes) = recovery::generate().map_err(|_| Failure::new(ErrorKind::ServerError))?;
    device::forget_all(completion, sub, now).await?;
    sessions::end_others(completion, sub, claims.sid(), now).await?;
    let records = TotpFactor::new(secret, hashes)
        .records(now)
        .map_err(|_| Failure::new(ErrorKind::ServerError))?;
    for record in records {
        inner.factors.add_factor(sub, record).await?;
    }
    // A tombstone: later confirmations of this enrollment answer 409, not 400.
    inner.store.put(&key, Vec::new(), expires_at, now).await?;
    let mut enrolled = Record::new(Action::FactorEnrolled);
    enrolled.sub(sub);
    enrolled.emit(Outcome::Ok, Some("totp"));
    inner.hooks.factor_enrolled(sub);
    Ok(codes)
}
