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
use http::request::Parts;
use http::Response;
use serde::Deserialize;

use super::error::{ErrorKind, Failure};
use super::{attempt, device, session, Completion, TotpFactor};
use crate::audit::Record;
use crate::challenge::OpenError;
use crate::factor::{recovery, totp};
use crate::layer::credential::{self, Credential, Flaw};
use crate::token::{Grant, TokenError, TokenKind};

/// The body of a verify.
#[derive(Deserialize)]
pub(crate) struct VerifyBody {
    #[serde(default)]
    mfa_token: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
    /// Remember this browser (cookie mode, with `CompletionBuilder::remember_device`).
    #[serde(default)]
    remember_device: bool,
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

/// `POST …/mfa/verify`, its body as the endpoint read it; then [`verify`]. The answer
/// is the session's tokens (and cookies, in cookie mode), and the device cookie when
/// the body asked to remember this browser.
pub(crate) async fn handle(
    completion: &Completion,
    parts: Parts,
    body: Result<VerifyBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let body = body?;
    let partial_cookie = completion.cookies().map(|c| c.partial_name());
    let presented = Presented::from_body(&parts.headers, &body, partial_cookie);
    let session = verify(completion, presented, audit).await?;
    let mut response = session.response(completion);
    if let Some(v) = completion.cookies().and_then(|c| c.clear_partial()) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    if body.remember_device {
        let sub = session.access.claims.sub();
        let now = completion.inner().guard.clock().now();
        // The second factor is done and its tokens are issued: a device that cannot be
        // remembered now (a store error) is only asked for the code again next time.
        match device::remember(completion, &parts.headers, sub, now).await {
            Ok(cookie) => response
                .headers_mut()
                .extend(cookie.map(|v| (SET_COOKIE, v))),
            Err(failure) => {
                tracing::warn!(error = ?failure.kind, "this device could not be remembered");
            }
        }
    }
    Ok(response)
}

/// What a verify request presents, however it came: the HTTP endpoint's JSON body and
/// headers, or the gRPC service's message and metadata.
pub(crate) struct Presented<'a> {
    /// The body's (message's) `mfa_token`.
    mfa_token: Option<&'a str>,
    /// A TOTP code.
    code: Option<&'a str>,
    /// A recovery code.
    recovery_code: Option<&'a str>,
    /// The `Authorization: Bearer` credential, by the layer's parser.
    bearer: Credential<'a>,
    /// The partial cookie (cookie mode), by the layer's parser.
    partial_cookie: Credential<'a>,
}

impl<'a> Presented<'a> {
    /// The HTTP endpoint's: the body, the bearer token and the partial cookie (named
    /// `partial_cookie` in cookie mode) of `headers`.
    fn from_body(
        headers: &'a http::HeaderMap,
        body: &'a VerifyBody,
        partial_cookie: Option<&str>,
    ) -> Self {
        Self {
            mfa_token: body.mfa_token.as_deref(),
            code: body.code.as_deref(),
            recovery_code: body.recovery_code.as_deref(),
            bearer: credential::authorization(headers),
            partial_cookie: partial_cookie
                .map_or(Credential::None, |name| credential::cookie(headers, name)),
        }
    }

    /// The gRPC service's: the message's fields (an empty `mfa_token` is none: the
    /// partial token then comes as the bearer) and the bearer token of `headers` (the
    /// call's `authorization` metadata). No cookies.
    #[cfg(feature = "tonic")]
    pub(crate) fn from_message(
        headers: &'a http::HeaderMap,
        mfa_token: &'a str,
        code: Option<&'a str>,
        recovery_code: Option<&'a str>,
    ) -> Self {
        Self {
            mfa_token: Some(mfa_token).filter(|t| !t.is_empty()),
            code,
            recovery_code,
            bearer: credential::authorization(headers),
            partial_cookie: Credential::None,
        }
    }

    /// The proof, the challenge token (the body's `mfa_token`, else the bearer token, else
    /// the partial cookie) and the access token sent beside a body's `mfa_token`, if any.
    ///
    /// The bearer token and the cookie are found by the layer's parser, with its rules. A
    /// malformed one is not skipped for the next place: a token that is not one (too
    /// long, not a `b64token`) is `mfa_token_invalid`, an ambiguous, unreadable or empty
    /// one `invalid_request`, as when no token is sent. (A malformed `Authorization`
    /// beside a body's `mfa_token` is no access token, as one that does not verify.)
    fn resolve(&self) -> Result<(Proof, &'a str, Option<&'a str>), Failure> {
        let proof = match (self.code, self.recovery_code) {
            (Some(code), None) => Proof::Totp(code.to_owned()),
            (None, Some(code)) => Proof::Recovery(code.to_owned()),
            _ => {
                return Err(Failure::invalid_request(
                    "send exactly one of code and recovery_code",
                ))
            }
        };
        if let Some(token) = self.mfa_token {
            let access = match self.bearer {
                Credential::Bearer(access) => Some(access),
                Credential::None | Credential::Malformed(_) => None,
            };
            return Ok((proof, token, access));
        }
        let token = match self.bearer {
            Credential::None => self.partial_cookie,
            presented => presented,
        };
        match token {
            Credential::Bearer(token) => Ok((proof, token, None)),
            Credential::Malformed(Flaw::Invalid) => Err(Failure::new(ErrorKind::MfaTokenInvalid)),
            Credential::None | Credential::Malformed(_) => {
                Err(Failure::invalid_request("mfa_token is required"))
            }
        }
    }
}

/// The verify logic, whatever the transport: challenge token genuine → a factor enrolled
/// → an attempt reserved → the proof judged and the challenge spent → the attempt
/// settled → the session started (login) or continued (step-up).
pub(crate) async fn verify(
    completion: &Completion,
    presented: Presented<'_>,
    audit: &mut Record,
) -> Result<session::Session, Failure> {
    let inner = completion.inner();
    let (proof, token, access) = presented.resolve()?;
    audit.token(token);
    let now = inner.guard.clock().now();
    let challenge = open(completion, token, access, now, audit)?;
    audit.sub(&challenge.sub);
    let factor = inner.factors.totp(&challenge.sub).await?.ok_or_else(|| {
        Failure::invalid_request("no second factor is enrolled; enroll one first")
    })?;
    let attempt = reserve(completion, &challenge, now, audit).await?;
    let judged = judge(completion, &challenge, &factor, &proof, now).await;
    let method = settle(completion, attempt, judged, &challenge, now, audit).await?;
    audit.reason(method);
    elevate(completion, &challenge, now, audit).await
}

/// A verify from the gRPC service: [`verify`] with the endpoint's one audit event, and
/// `size` (the request message's) held to the endpoint's body limit (`413`'s row,
/// `PayloadTooLarge`).
#[cfg(feature = "tonic")]
pub(crate) async fn verify_message(
    completion: &Completion,
    presented: Presented<'_>,
    size: usize,
) -> Result<session::Session, Failure> {
    let mut audit = Record::new(crate::audit::Action::Verify);
    let result = if size > completion.inner().body_limit {
        Err(Failure::new(ErrorKind::PayloadTooLarge))
    } else {
        verify(completion, presented, &mut audit).await
    };
    // One audit event per request, as the endpoint emits it.
    match &result {
        Ok(_) => audit.emit(crate::audit::Outcome::Ok, None),
        Err(failure) => audit.emit(failure.outcome(), Some(failure.kind.reason())),
    }
    result
}

/// [`Presented::resolve`] of the HTTP endpoint's body and headers.
#[cfg(test)]
fn presented<'r>(
    headers: &'r http::HeaderMap,
    body: &'r VerifyBody,
    partial_cookie: Option<&str>,
) -> Result<(Proof, &'r str, Option<&'r str>), Failure> {
    Presented::from_body(headers, body, partial_cookie).resolve()
}

/// Reserves an attempt of the challenge's user; a double submission whose twin has
/// spent the challenge meanwhile is told so (`404`) rather than to retry.
async fn reserve<'c>(
    completion: &'c Completion,
    challenge: &Challenge,
    now: u64,
    audit: &mut Record,
) -> Result<attempt::Attempt<'c>, Failure> {
    let inner = completion.inner();
    match attempt::reserve(completion, challenge.sub.clone(), inner.attempts, now).await {
        Ok(attempt) => Ok(attempt),
        Err(attempt::Refused::Busy)
            if inner.store.is_consumed(&challenge.jti_key(), now).await? =>
        {
            audit.reason("token_used");
            Err(Failure::new(ErrorKind::MfaTokenNotFound))
        }
        Err(refused) => Err(refused.into_failure(now, audit)),
    }
}

/// Settles the attempt as the judgment says: the method of a right proof; a recorded
/// failure (whose lockout kills the challenge too); or the attempt given back.
async fn settle(
    completion: &Completion,
    attempt: attempt::Attempt<'_>,
    judged: Judged,
    challenge: &Challenge,
    now: u64,
    audit: &mut Record,
) -> Result<&'static str, Failure> {
    let inner = completion.inner();
    match judged {
        Judged::Right(method) => {
            attempt.succeeded(now).await?;
            Ok(method)
        }
        Judged::Wrong(why) => {
            let attempts = attempt.failed(now).await?;
            if attempts.is_locked(now) {
                let (key, expires_at) = (challenge.jti_key(), challenge.expires_at);
                inner.store.consume(&key, expires_at, now).await?;
            }
            let policy = inner.attempts;
            Err(attempt::wrong_proof(attempts, policy, now, audit, why))
        }
        Judged::Skipped(failure, why) => {
            if let Some(why) = why {
                audit.reason(why);
            }
            Err(attempt.release(failure, now).await)
        }
    }
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
        // Completion's build made sure of a sealer (its probe needs a local issuer).
        let sealer = guard.sealer().ok_or(Failure::new(ErrorKind::ServerError))?;
        let claims = sealer.open(token, now).map_err(|e| match e {
            OpenError::Expired => Failure::new(ErrorKind::MfaTokenExpired),
            _ => Failure::new(ErrorKind::MfaTokenInvalid),
        })?;
        if let Some(access) = access {
            if let Ok(v) = guard.verifier().verify(access, now) {
                let same_session = v.kind == TokenKind::Access
                    && guard.verifier().is_local(&v.claims)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> VerifyBody {
        serde_json::from_str(json).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn exactly_one_proof_is_required() {
        let h = headers(&[]);
        for json in [
            r#"{"mfa_token":"t"}"#,
            r#"{"mfa_token":"t","code":"123456","recovery_code":"AAAA-BBBB"}"#,
        ] {
            let b = body(json);
            let err = presented(&h, &b, None).err().unwrap();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{json}");
        }
        let b = body(r#"{"mfa_token":"t","recovery_code":"AAAA-BBBB"}"#);
        assert!(matches!(
            presented(&h, &b, None),
            Ok((Proof::Recovery(_), "t", None))
        ));
    }

    #[test]
    fn the_token_comes_from_the_body_then_the_bearer_then_the_cookie() {
        let b = body(r#"{"code":"123456"}"#);
        let cookie = headers(&[("cookie", "p=from-cookie")]);
        assert!(matches!(
            presented(&cookie, &b, Some("p")),
            Ok((_, "from-cookie", None))
        ));
        assert!(
            presented(&cookie, &b, None).is_err(),
            "no cookie mode, no cookie"
        );
        let both = headers(&[("authorization", "Bearer from-bearer"), ("cookie", "p=c")]);
        assert!(matches!(
            presented(&both, &b, Some("p")),
            Ok((_, "from-bearer", None))
        ));
        // With the token in the body, the bearer token is the access token beside it.
        let b = body(r#"{"mfa_token":"from-body","code":"123456"}"#);
        let r = presented(&both, &b, Some("p"));
        assert!(matches!(
            r,
            Ok((Proof::Totp(_), "from-body", Some("from-bearer")))
        ));
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn a_grpc_message_presents_like_a_body() {
        let h = headers(&[("authorization", "Bearer from-bearer")]);
        // An empty mfa_token is none: the bearer is the challenge token.
        let p = Presented::from_message(&h, "", Some("123456"), None);
        assert!(matches!(
            p.resolve(),
            Ok((Proof::Totp(_), "from-bearer", None))
        ));
        // With an mfa_token, the bearer is the access token beside it.
        let p = Presented::from_message(&h, "mfa", None, Some("AAAA-BBBB"));
        assert!(matches!(
            p.resolve(),
            Ok((Proof::Recovery(_), "mfa", Some("from-bearer")))
        ));
        // No cookies over gRPC, and exactly one proof as over HTTP.
        let cookie = headers(&[("cookie", "p=from-cookie")]);
        let p = Presented::from_message(&cookie, "", Some("123456"), None);
        assert_eq!(
            p.resolve().err().map(|e| e.description),
            Some(Some("mfa_token is required"))
        );
        let p = Presented::from_message(&h, "mfa", Some("1"), Some("2"));
        assert_eq!(p.resolve().err().unwrap().kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn a_malformed_bearer_or_cookie_is_refused_not_skipped() {
        let b = body(r#"{"code":"123456"}"#);
        let kind = |pairs: &[(&'static str, &str)]| {
            presented(&headers(pairs), &b, Some("p"))
                .err()
                .map(|f| f.kind)
        };
        let cookie = ("cookie", "p=from-cookie");
        // Ambiguous or empty: as if no token were sent, and the cookie is not read.
        for auth in [
            [("authorization", "Bearer a"), ("authorization", "Bearer a")].as_slice(),
            &[("authorization", "Bearer")],
        ] {
            let with_cookie = [auth, &[cookie]].concat();
            assert_eq!(
                kind(&with_cookie),
                Some(ErrorKind::InvalidRequest),
                "{auth:?}"
            );
        }
        assert_eq!(
            kind(&[("cookie", "p=a; p=b")]),
            Some(ErrorKind::InvalidRequest)
        );
        assert_eq!(kind(&[("cookie", "p=")]), Some(ErrorKind::InvalidRequest));
        // Not a token: an invalid mfa_token.
        assert_eq!(
            kind(&[("authorization", "Bearer a b"), cookie]),
            Some(ErrorKind::MfaTokenInvalid)
        );
        assert_eq!(
            kind(&[("cookie", "p=a b")]),
            Some(ErrorKind::MfaTokenInvalid)
        );
        // Another scheme carries no bearer token: the cookie is read.
        let h = headers(&[("authorization", "Basic YTpi"), cookie]);
        assert!(matches!(
            presented(&h, &b, Some("p")),
            Ok((_, "from-cookie", None))
        ));
        // Beside a body's mfa_token, a malformed header is no access token.
        let b = body(r#"{"mfa_token":"from-body","code":"123456"}"#);
        let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(
            presented(&two, &b, Some("p")),
            Ok((_, "from-body", None))
        ));
    }
}
