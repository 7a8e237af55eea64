//! The verify endpoint: a challenge token plus a second factor → a new session.
//!
//! Checks run in the order of DESIGN §4: body well-formed → token genuine, of a
//! challenge kind, not expired → attempts not exhausted → token not yet used → code. A
//! bad token therefore costs no attempt and burns no code.

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::{Request, Response};
use http_body::Body;
use serde::Deserialize;

use super::error::{ErrorKind, Failure};
use super::request::{bearer, cookie, read_json};
use super::{session, Completion};
use crate::audit::{Outcome, Record};
use crate::challenge::OpenError;
use crate::factor::{recovery, totp};
use crate::store::{Attempts, FamilyRevocation};
use crate::token::{Grant, TokenError, TokenKind};

#[derive(Deserialize)]
struct VerifyBody {
    #[serde(default)]
    mfa_token: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

enum Proof {
    Totp(String),
    Recovery(String),
}

/// What a genuine, unexpired challenge token says.
struct Challenge {
    sub: String,
    jti: String,
    expires_at: u64,
    scope: Option<String>,
    amr: Vec<String>,
    /// The session a step-up replaces (revoked on success).
    replaces: Option<String>,
}

pub(crate) async fn handle<B>(
    completion: &Completion,
    req: Request<B>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let inner = completion.inner();
    let (parts, body): (_, VerifyBody) = read_json(req, inner.body_limit).await?;
    let proof = match (body.code, body.recovery_code) {
        (Some(code), None) => Proof::Totp(code),
        (None, Some(code)) => Proof::Recovery(code),
        _ => {
            return Err(Failure::invalid_request(
                "send exactly one of code and recovery_code",
            ))
        }
    };
    let presented_bearer = bearer(&parts.headers);
    let token = body
        .mfa_token
        .as_deref()
        .or(presented_bearer)
        .or_else(|| {
            completion
                .cookies()
                .and_then(|c| cookie(&parts.headers, c.partial_name()))
        })
        .ok_or(Failure::invalid_request("mfa_token is required"))?;
    audit.token(token);

    let now = inner.guard.clock().now();
    let challenge = open(
        completion,
        token,
        body.mfa_token
            .is_some()
            .then_some(presented_bearer)
            .flatten(),
        now,
        audit,
    )?;
    let sub = challenge.sub.as_str();
    audit.sub(sub);
    let jti_key = format!("jti:{}", challenge.jti);

    let attempts = inner.store.attempts(sub, now).await?;
    if attempts.is_locked(now) {
        audit.reason("locked_out");
        return Err(too_many(attempts, now));
    }
    if inner.store.is_consumed(&jti_key, now).await? {
        audit.reason("token_used");
        return Err(Failure::new(ErrorKind::MfaTokenNotFound));
    }

    let factor = inner.factors.totp(sub).await?.ok_or_else(|| {
        Failure::invalid_request("no second factor is enrolled; enroll one first")
    })?;
    enum Accepted {
        Step(u64),
        Recovery(crate::factor::RecoveryCodeHash),
    }
    let accepted = match &proof {
        Proof::Totp(code) => totp::verify(&factor.secret, code, now).map(Accepted::Step),
        Proof::Recovery(code) => {
            recovery::find(&factor.recovery_codes, code).map(Accepted::Recovery)
        }
    };
    let Some(accepted) = accepted else {
        return Err(fail(
            completion,
            sub,
            &jti_key,
            challenge.expires_at,
            now,
            audit,
            "wrong_code",
        )
        .await);
    };

    // The token is spent now, exactly once: of N concurrent verifies of one token, one
    // gets past this line. (It is released again only if the code is a replay.)
    if !inner
        .store
        .consume(&jti_key, challenge.expires_at, now)
        .await?
    {
        audit.reason("token_used");
        return Err(Failure::new(ErrorKind::MfaTokenNotFound));
    }
    let fresh = match accepted {
        Accepted::Step(step) => {
            let forget_at = step.saturating_add(2).saturating_mul(totp::STEP_SECS);
            inner
                .store
                .advance_totp_step(sub, step, forget_at, now)
                .await?
        }
        Accepted::Recovery(hash) => {
            let key = format!("rc:{sub}:{}", hash.to_hex());
            let forget_at = now.saturating_add(super::RECOVERY_CODE_MEMORY.as_secs());
            let fresh = inner.store.consume(&key, forget_at, now).await?;
            if fresh {
                inner.factors.remove_recovery_code(sub, hash).await?;
            }
            fresh
        }
    };
    if !fresh {
        // A replayed code: the challenge did not complete, so it is not spent either.
        // It is answered (and counted) like a wrong code, and `401 invalid_code` with
        // `attempts_remaining` promises that the same challenge takes another code.
        inner.store.release(&jti_key).await?;
        return Err(fail(
            completion,
            sub,
            &jti_key,
            challenge.expires_at,
            now,
            audit,
            "code_replayed",
        )
        .await);
    }

    inner.store.clear_failures(sub, now).await?;
    let mut amr = challenge.amr.clone();
    for method in ["otp", "mfa"] {
        if !amr.iter().any(|m| m == method) {
            amr.push(method.to_owned());
        }
    }
    let mut grant = Grant::new(sub)
        .amr(amr)
        .acr(inner.mfa_acr.clone())
        .auth_time(now);
    if let Some(scope) = &challenge.scope {
        grant = grant.scope(scope.clone());
    }
    // A step-up replaces the session that asked for it, and cannot revive one that has
    // ended (logout, refresh token reuse): an mfa_token outlives neither.
    if let Some(old) = &challenge.replaces {
        if inner.store.revoke_family(old, now).await? == FamilyRevocation::AlreadyRevoked {
            audit.reason("session_ended");
            return Err(Failure::new(ErrorKind::MfaTokenNotFound)
                .describe("the session this challenge belongs to has ended; sign in again"));
        }
    }
    let session = session::start(completion, &grant).await?;
    audit.reason(match proof {
        Proof::Totp(_) => "otp",
        Proof::Recovery(_) => "recovery_code",
    });
    let mut response = session.response(completion);
    if let Some(v) = completion.cookies().and_then(|c| c.clear_partial()) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    Ok(response)
}

/// Opens a step-up mfa_token (a JWE) or verifies a login partial token (a JWS).
///
/// `access` is the access token sent beside a step-up mfa_token, if any: it must belong
/// to the user and session the mfa_token was issued for.
fn open(
    completion: &Completion,
    token: &str,
    access: Option<&str>,
    now: u64,
    audit: &mut Record,
) -> Result<Challenge, Failure> {
    let guard = &completion.inner().guard;
    if token.split('.').count() == 5 {
        let claims = guard.sealer().open(token, now).map_err(|e| match e {
            OpenError::Expired => Failure::new(ErrorKind::MfaTokenExpired),
            _ => Failure::new(ErrorKind::MfaTokenInvalid),
        })?;
        if let Some(access) = access {
            if let Ok(v) = guard.verifier().verify(access, now) {
                let same_session = v.kind == TokenKind::Access
                    && v.claims.sub() == claims.sub
                    && v.claims.sid() == claims.sid.as_deref();
                if !same_session {
                    audit.sub(&claims.sub);
                    audit.reason("other_session");
                    return Err(Failure::new(ErrorKind::MfaTokenInvalid)
                        .describe("the mfa_token belongs to another session"));
                }
            }
        }
        return Ok(Challenge {
            replaces: claims.sid.clone(),
            sub: claims.sub,
            jti: claims.jti,
            expires_at: claims.exp,
            scope: claims.scope,
            amr: claims.amr,
        });
    }
    match guard.verifier().verify(token, now) {
        Ok(v) if v.kind == TokenKind::Partial => {
            let c = v.claims;
            let jti = c
                .jti()
                .ok_or(Failure::new(ErrorKind::MfaTokenInvalid))?
                .to_owned();
            Ok(Challenge {
                sub: c.sub().to_owned(),
                jti,
                // The verifier accepts the token until `exp` + leeway: its id must be
                // remembered as long, or a spent token would be new again meanwhile.
                expires_at: c.exp().saturating_add(guard.verifier().leeway()),
                scope: c.scope().map(str::to_owned),
                amr: c.amr().to_vec(),
                replaces: None,
            })
        }
        Err(TokenError::Expired {
            kind: TokenKind::Partial,
        }) => Err(Failure::new(ErrorKind::MfaTokenExpired)),
        _ => Err(Failure::new(ErrorKind::MfaTokenInvalid)),
    }
}

fn too_many(attempts: Attempts, now: u64) -> Failure {
    let retry_after = attempts
        .locked_until
        .map_or(1, |until| until.saturating_sub(now).max(1));
    Failure {
        retry_after: Some(retry_after),
        ..Failure::new(ErrorKind::TooManyAttempts)
    }
}

/// Counts a wrong (or replayed) code; the failure that exhausts the attempts kills the
/// challenge and locks the user out.
async fn fail(
    completion: &Completion,
    sub: &str,
    jti_key: &str,
    expires_at: u64,
    now: u64,
    audit: &mut Record,
    why: &'static str,
) -> Failure {
    let inner = completion.inner();
    let policy = inner.attempts;
    let attempts = match inner.store.record_failure(sub, policy, now).await {
        Ok(a) => a,
        Err(e) => return e.into(),
    };
    if attempts.is_locked(now) {
        if let Err(e) = inner.store.consume(jti_key, expires_at, now).await {
            return e.into();
        }
        audit.outcome(Outcome::Lockout, Some(why));
        return too_many(attempts, now);
    }
    audit.reason(why);
    Failure {
        attempts_remaining: Some(policy.max_attempts.saturating_sub(attempts.failures)),
        ..Failure::new(ErrorKind::InvalidCode)
    }
}
