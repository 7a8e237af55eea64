//! The verify endpoint: a challenge token plus a second factor → a new session (after
//! login), or new tokens of the same session (after a step-up).
//!
//! Checks run in the order of DESIGN §4: body well-formed → token genuine, of a
//! challenge kind, not expired → (a factor enrolled) → an attempt reserved (`429` when
//! locked out, or with `Retry-After: 1` when other attempts fill the limit, DESIGN
//! §8.2) → token not yet used → code. A bad token therefore costs no attempt and burns
//! no code, and N concurrent codes judge at most the attempts left.

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::{Request, Response};
use http_body::Body;
use serde::Deserialize;

use super::error::{ErrorKind, Failure};
use super::request::{bearer, cookie, read_json};
use super::{attempt, session, Completion, TotpFactor};
use crate::audit::Record;
use crate::challenge::OpenError;
use crate::factor::{recovery, totp};
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
    /// The session a step-up continues.
    replaces: Option<String>,
    /// When the challenge was issued.
    issued_at: u64,
}

impl Challenge {
    /// The store key that spends this challenge.
    fn jti_key(&self) -> String {
        format!("jti:{}", self.jti)
    }
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
    let access = body
        .mfa_token
        .is_some()
        .then_some(presented_bearer)
        .flatten();
    let challenge = open(completion, token, access, now, audit)?;
    audit.sub(&challenge.sub);
    let factor = inner.factors.totp(&challenge.sub).await?.ok_or_else(|| {
        Failure::invalid_request("no second factor is enrolled; enroll one first")
    })?;
    let attempt =
        match attempt::reserve(completion, challenge.sub.clone(), inner.attempts, now).await {
            Ok(attempt) => attempt,
            // A double submission whose twin has spent the challenge meanwhile: say so.
            Err(attempt::Refused::Busy)
                if inner.store.is_consumed(&challenge.jti_key(), now).await? =>
            {
                audit.reason("token_used");
                return Err(Failure::new(ErrorKind::MfaTokenNotFound));
            }
            Err(refused) => return Err(refused.into_failure(now, audit)),
        };
    let method = match judge(completion, &challenge, &factor, &proof, now).await {
        Judged::Right(method) => method,
        Judged::Wrong(why) => {
            let attempts = attempt.failed(now).await?;
            if attempts.is_locked(now) {
                // The failure that exhausts the attempts kills the challenge too.
                inner
                    .store
                    .consume(&challenge.jti_key(), challenge.expires_at, now)
                    .await?;
            }
            return Err(attempt::wrong_proof(
                attempts,
                inner.attempts,
                now,
                audit,
                why,
            ));
        }
        Judged::Skipped(failure, why) => {
            if let Some(why) = why {
                audit.reason(why);
            }
            return Err(attempt.release(failure, now).await);
        }
    };
    attempt.succeeded(now).await?;
    audit.reason(method);
    let session = elevate(completion, &challenge, now, audit).await?;
    let mut response = session.response(completion);
    if let Some(v) = completion.cookies().and_then(|c| c.clear_partial()) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    Ok(response)
}

/// How the proof of one reserved attempt turned out.
enum Judged {
    /// Right, fresh, and the challenge is spent now: the method, for the audit.
    Right(&'static str),
    /// Wrong, or a replayed code: a recorded failure.
    Wrong(&'static str),
    /// Not judged (the challenge was spent already, no factor, a store error): the
    /// attempt is given back.
    Skipped(Failure, Option<&'static str>),
}

impl From<Failure> for Judged {
    fn from(failure: Failure) -> Self {
        Judged::Skipped(failure, None)
    }
}

/// Evaluates the proof against the user's factor and spends the challenge exactly once.
async fn judge(
    completion: &Completion,
    challenge: &Challenge,
    factor: &TotpFactor,
    proof: &Proof,
    now: u64,
) -> Judged {
    match judge_steps(completion, challenge, factor, proof, now).await {
        Ok(judged) | Err(judged) => judged,
    }
}

async fn judge_steps(
    completion: &Completion,
    challenge: &Challenge,
    factor: &TotpFactor,
    proof: &Proof,
    now: u64,
) -> Result<Judged, Judged> {
    let inner = completion.inner();
    let (sub, jti_key) = (challenge.sub.as_str(), challenge.jti_key());
    if inner
        .store
        .is_consumed(&jti_key, now)
        .await
        .map_err(store)?
    {
        return Ok(spent());
    }
    let Some(accepted) = match_proof(factor, proof, now) else {
        return Ok(Judged::Wrong("wrong_code"));
    };
    // The token is spent now, exactly once: of N concurrent verifies of one token, one
    // gets past this line. (It is released again only if the code is a replay.)
    let expires_at = challenge.expires_at;
    if !inner
        .store
        .consume(&jti_key, expires_at, now)
        .await
        .map_err(store)?
    {
        return Ok(spent());
    }
    if !spend_proof(completion, sub, accepted, now)
        .await
        .map_err(Judged::from)?
    {
        // A replayed code: the challenge did not complete, so it is not spent either.
        // It is answered (and counted) like a wrong code, and `401 invalid_code` with
        // `attempts_remaining` promises that the same challenge takes another code.
        inner.store.release(&jti_key).await.map_err(store)?;
        return Ok(Judged::Wrong("code_replayed"));
    }
    Ok(Judged::Right(match proof {
        Proof::Totp(_) => "otp",
        Proof::Recovery(_) => "recovery_code",
    }))
}

fn spent() -> Judged {
    Judged::Skipped(
        Failure::new(ErrorKind::MfaTokenNotFound),
        Some("token_used"),
    )
}

fn store(e: crate::store::StoreError) -> Judged {
    Failure::from(e).into()
}

/// A proof that matched the factor, not yet spent.
enum Accepted {
    Step(u64),
    Recovery(crate::factor::RecoveryCodeHash),
}

fn match_proof(factor: &TotpFactor, proof: &Proof, now: u64) -> Option<Accepted> {
    match proof {
        Proof::Totp(code) => totp::verify(&factor.secret, code, now).map(Accepted::Step),
        Proof::Recovery(code) => {
            recovery::find(&factor.recovery_codes, code).map(Accepted::Recovery)
        }
    }
}

/// Spends a matched proof: a TOTP step is accepted once per user, a recovery code once
/// ever. `false` when it was used before (a replay).
async fn spend_proof(
    completion: &Completion,
    sub: &str,
    accepted: Accepted,
    now: u64,
) -> Result<bool, Failure> {
    let inner = completion.inner();
    match accepted {
        Accepted::Step(step) => {
            let forget_at = step.saturating_add(2).saturating_mul(totp::STEP_SECS);
            Ok(inner
                .store
                .advance_totp_step(sub, step, forget_at, now)
                .await?)
        }
        Accepted::Recovery(hash) => {
            let key = format!("rc:{sub}:{}", hash.to_hex());
            let forget_at = now.saturating_add(super::RECOVERY_CODE_MEMORY.as_secs());
            let fresh = inner.store.consume(&key, forget_at, now).await?;
            if fresh {
                inner.factors.remove_recovery_code(sub, hash).await?;
            }
            Ok(fresh)
        }
    }
}

/// The tokens of a completed challenge: `amr` gains `otp` and `mfa`, `auth_time` is now;
/// a login's challenge starts a session, a step-up's continues its own.
async fn elevate(
    completion: &Completion,
    challenge: &Challenge,
    now: u64,
    audit: &mut Record,
) -> Result<session::Session, Failure> {
    let inner = completion.inner();
    let mut amr = challenge.amr.clone();
    for method in ["otp", "mfa"] {
        if !amr.iter().any(|m| m == method) {
            amr.push(method.to_owned());
        }
    }
    let mut grant = Grant::new(challenge.sub.clone())
        .amr(amr)
        .acr(inner.mfa_acr.clone())
        .auth_time(now);
    if let Some(scope) = &challenge.scope {
        grant = grant.scope(scope.clone());
    }
    match &challenge.replaces {
        // A step-up continues the session that asked for it (same `sid`, same absolute
        // end), and cannot revive one that has ended: an mfa_token outlives neither.
        Some(sid) => session::elevate(completion, sid, challenge.issued_at, grant, audit).await,
        None => session::start(completion, &grant).await,
    }
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
            issued_at: claims.iat,
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
                issued_at: c.iat().unwrap_or(0),
            })
        }
        Err(TokenError::Expired {
            kind: TokenKind::Partial,
        }) => Err(Failure::new(ErrorKind::MfaTokenExpired)),
        _ => Err(Failure::new(ErrorKind::MfaTokenInvalid)),
    }
}
