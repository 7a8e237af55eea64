//! The verify endpoint: a challenge token plus a second factor → a new session (after
//! login), or new tokens of the same session (after a step-up).
//!
//! Checks run in the order of DESIGN §4: body well-formed → token genuine, of a
//! challenge kind, not expired → (a factor enrolled: without one `400`, or the lockout's
//! `429` for a locked-out user) → an attempt reserved (`429` when locked out, or with
//! `Retry-After: 1` when other attempts fill the limit, DESIGN §8.2) → token not yet
//! used → code. A bad token therefore costs no attempt and burns no code, and N
//! concurrent codes judge at most the attempts left.
//!
//! Two store steps ([`Store::reserve_challenge`], then [`Store::settle_challenge`]; one
//! round trip each on Redis): the attempt reserved unless locked out or the token used;
//! then, the code judged here in between, the token and the code spent, the attempt
//! settled and the session started or stepped up, at once. The tokens of the session
//! are signed before the second step, for a code that matched. A recovery code is
//! removed from the user's factor after the second step, and its session made in a
//! third; remembering the browser (`remember_device`) is one more.
//!
//! [`Store::reserve_challenge`]: crate::store::Store::reserve_challenge
//! [`Store::settle_challenge`]: crate::store::Store::settle_challenge

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::request::Parts;
use http::Response;
use serde::Deserialize;

use super::challenged::{self, Challenge, TokenPlaces};
use super::dpop::{self, Target};
use super::enrolled::Enrolled;
use super::error::{ErrorKind, Failure};
use super::proof::{self, Accepted, After, Judging, Level, Proof};
use super::session::{self, Tokens};
use super::{attempt, device, Completion};
use crate::audit::Record;
use crate::store::{
    ChallengeOutcome, ChallengeReservation, ChallengeSettlement, JudgedProof, SessionChange,
    Settlement,
};
use crate::token::Grant;

/// The body of a verify.
#[derive(Deserialize)]
pub(crate) struct VerifyBody {
    #[serde(default)]
    mfa_token: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
    /// A passkey assertion (`PublicKeyCredential.toJSON()`).
    #[serde(default)]
    passkey: Option<serde_json::Value>,
    /// Remember this browser (cookie mode, with `CompletionBuilder::remember_device`).
    #[serde(default)]
    remember_device: bool,
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
    let presented = Presented::from_body(&parts, &body, partial_cookie);
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
    /// Where the challenge token may be.
    places: TokenPlaces<'a>,
    /// Where a DPoP proof is checked (a bound challenge needs one).
    target: Target<'a>,
    /// A TOTP code.
    code: Option<&'a str>,
    /// A recovery code.
    recovery_code: Option<&'a str>,
    /// A passkey assertion.
    passkey: Option<&'a serde_json::Value>,
}

impl<'a> Presented<'a> {
    /// The HTTP endpoint's: the body, the bearer token and the partial cookie (named
    /// `partial_cookie` in cookie mode) of the request's headers, and the request as a
    /// DPoP proof's target.
    fn from_body(parts: &'a Parts, body: &'a VerifyBody, partial_cookie: Option<&str>) -> Self {
        Self {
            places: TokenPlaces::of_request(
                &parts.headers,
                body.mfa_token.as_deref(),
                partial_cookie,
            ),
            target: Target::of(parts),
            code: body.code.as_deref(),
            recovery_code: body.recovery_code.as_deref(),
            passkey: body.passkey.as_ref(),
        }
    }

    /// The gRPC service's: the message's fields (an empty `mfa_token` is none: the
    /// partial token then comes as the bearer) and the bearer token of `headers` (the
    /// call's `authorization` metadata); a DPoP proof is the call's `dpop` metadata, for
    /// `POST` [`MFA_VERIFY_PATH`](crate::tonic::MFA_VERIFY_PATH). No cookies.
    #[cfg(feature = "tonic")]
    pub(crate) fn from_message(
        headers: &'a http::HeaderMap,
        mfa_token: &'a str,
        code: Option<&'a str>,
        recovery_code: Option<&'a str>,
    ) -> Self {
        Self {
            places: TokenPlaces::of_message(headers, mfa_token),
            target: Target {
                headers,
                method: &GRPC_METHOD,
                path: crate::tonic::MFA_VERIFY_PATH,
            },
            code,
            recovery_code,
            passkey: None,
        }
    }

    /// The proof, the challenge token and the access token sent beside a body's
    /// `mfa_token`, if any ([`TokenPlaces::resolve`]).
    fn resolve(&self) -> Result<(Proof, &'a str, Option<&'a str>), Failure> {
        let proof = match (self.code, self.recovery_code, self.passkey) {
            (Some(code), None, None) => Proof::Code(code.to_owned()),
            (None, Some(code), None) => Proof::Recovery(code.to_owned()),
            (None, None, Some(response)) => Proof::Passkey(response.clone()),
            _ => {
                return Err(Failure::invalid_request(
                    "send exactly one of code, recovery_code and passkey",
                ))
            }
        };
        let (token, access) = self.places.resolve()?;
        Ok((proof, token, access))
    }
}

/// The method a gRPC call's DPoP proof names (`htm`).
#[cfg(feature = "tonic")]
static GRPC_METHOD: http::Method = http::Method::POST;

/// The verify logic, whatever the transport: challenge token genuine → a factor enrolled
/// → an attempt reserved → the proof judged → the challenge and the proof spent, the
/// attempt settled and the session started (login) or continued (step-up), in one
/// store step.
pub(crate) async fn verify(
    completion: &Completion,
    presented: Presented<'_>,
    audit: &mut Record,
) -> Result<session::Session, Failure> {
    let inner = completion.inner();
    let (proof, token, access) = presented.resolve()?;
    audit.token(token);
    let now = inner.guard.clock().now();
    let challenge = challenged::open(completion, token, access, now, audit)?;
    audit.sub(&challenge.sub);
    // A bound challenge's proof, before anything is spent (no attempt, no code).
    let bound = challenge.bound_proof(completion, &presented.places, presented.target, now)?;
    let enrolled = Enrolled::load(completion, &challenge.sub).await?;
    if enrolled.is_empty() {
        let failure = Failure::invalid_request("no second factor is enrolled; enroll one first");
        return Err(attempt::lockout_first(completion, &challenge.sub, failure, now, audit).await);
    }
    reserve(completion, &challenge, now, audit).await?;
    let judging = Judging {
        sub: &challenge.sub,
        jti: &challenge.jti,
        now,
    };
    let judged = proof::judge(completion, &enrolled, &proof, &judging).await;
    let prepared = judged.and_then(|m| Ok((prepare(completion, &challenge, m.as_ref(), now)?, m)));
    let ((tokens, change), matched) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => return Err(release(completion, &challenge, failure, now).await),
    };
    if let (Some(proof), Some(_)) = (&bound, &matched) {
        // The factor checked out: the proof is used now, before the challenge is spent
        // (a replayed proof gives the attempt back and spends nothing).
        if let Err(failure) = dpop::use_once(completion, proof, now).await {
            return Err(release(completion, &challenge, failure, now).await);
        }
    }
    let settlement = ChallengeSettlement {
        user: challenge.sub.clone(),
        challenge: challenge.jti_key(),
        expires_at: challenge.expires_at,
        proof: matched
            .as_ref()
            .map_or(JudgedProof::Wrong, |m| m.once.clone()),
        policy: inner.attempts,
        session: change,
    };
    match (
        inner.store.settle_challenge(&settlement, now).await?,
        matched,
    ) {
        (ChallengeOutcome::Succeeded(elevation), Some(accepted)) => {
            audit.reason(accepted.method);
            let finish = Finish { tokens, elevation };
            finish
                .session(completion, &challenge, accepted, now, audit)
                .await
        }
        (ChallengeOutcome::Failed { attempts, replayed }, _) => {
            let why = if replayed {
                "code_replayed"
            } else {
                "wrong_code"
            };
            Err(attempt::wrong_proof(
                attempts,
                inner.attempts,
                now,
                audit,
                why,
            ))
        }
        _ => {
            audit.reason("token_used");
            Err(Failure::new(ErrorKind::MfaTokenNotFound))
        }
    }
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
    static POST: http::Method = http::Method::POST;
    let target = Target {
        headers,
        method: &POST,
        path: "/auth/mfa/verify",
    };
    Presented {
        places: TokenPlaces::of_request(headers, body.mfa_token.as_deref(), partial_cookie),
        target,
        code: body.code.as_deref(),
        recovery_code: body.recovery_code.as_deref(),
        passkey: body.passkey.as_ref(),
    }
    .resolve()
}

/// Reserves an attempt of the challenge's user unless they are locked out (`429`) or the
/// challenge is spent (`404`: a double submission whose twin has spent it is told so
/// rather than to retry); other attempts in flight filling the limit: `429` with
/// `Retry-After: 1`.
async fn reserve(
    completion: &Completion,
    challenge: &Challenge,
    now: u64,
    audit: &mut Record,
) -> Result<(), Failure> {
    let inner = completion.inner();
    let (user, key) = (&challenge.sub, challenge.jti_key());
    let refused = match inner
        .store
        .reserve_challenge(user, &key, inner.attempts, now)
        .await?
    {
        ChallengeReservation::Granted => return Ok(()),
        ChallengeReservation::Spent => {
            audit.reason("token_used");
            return Err(Failure::new(ErrorKind::MfaTokenNotFound));
        }
        ChallengeReservation::Locked { until } => attempt::Refused::Locked(until),
        // `Busy`, and anything else refuses too.
        _ => attempt::Refused::Busy,
    };
    Err(refused.into_failure(now, audit))
}

/// Gives the reserved attempt back (the request ends without judging the proof), and
/// answers `failure`. A store error while giving it back is dropped: the reservation
/// then runs out by itself.
async fn release(
    completion: &Completion,
    challenge: &Challenge,
    failure: Failure,
    now: u64,
) -> Failure {
    let inner = completion.inner();
    let released = Settlement::Released;
    let _ = inner
        .store
        .settle_attempt(&challenge.sub, released, inner.attempts, now)
        .await;
    failure
}

/// The session a matched proof earns, made before the store step that spends it: its
/// tokens and the change the store makes with the proof. Nothing for a wrong proof, nor
/// for one that changes a factor once spent (a recovery code, removed from the set
/// first: [`Finish::session`]).
fn prepare(
    completion: &Completion,
    challenge: &Challenge,
    matched: Option<&Accepted>,
    now: u64,
) -> Result<(Option<Tokens>, SessionChange), Failure> {
    let Some(accepted) = matched.filter(|m| matches!(m.after, After::Nothing)) else {
        return Ok((None, SessionChange::None));
    };
    let grant = grant(completion, challenge, accepted, now);
    let (tokens, change) = match &challenge.replaces {
        // A step-up continues the session that asked for it (same `sid`, same absolute
        // end), and cannot revive one that has ended: an mfa_token outlives neither.
        Some(sid) => session::prepare_elevate(completion, sid, challenge.issued_at, grant)?,
        None => session::prepare_start(completion, &grant)?,
    };
    Ok((Some(tokens), change))
}

/// The end of a verify whose proof was right: the tokens made before and what the store
/// said of the step-up, if any.
struct Finish {
    tokens: Option<Tokens>,
    elevation: Option<crate::store::Elevation>,
}

impl Finish {
    /// The session: the one prepared before the store step; else (a proof that changes
    /// its factor) the factor changed first, then one made now.
    async fn session(
        self,
        completion: &Completion,
        challenge: &Challenge,
        accepted: Accepted,
        now: u64,
        audit: &mut Record,
    ) -> Result<session::Session, Failure> {
        match (self.tokens, self.elevation) {
            (Some(tokens), Some(elevation)) => tokens.elevated(elevation, now, audit),
            (Some(tokens), None) => Ok(tokens.started(completion)),
            (None, _) => {
                let grant = grant(completion, challenge, &accepted, now);
                proof::apply(completion, &challenge.sub, accepted.after).await?;
                start_or_elevate(completion, challenge, grant, audit).await
            }
        }
    }
}

/// The grant of a completed challenge: `amr` gains the factor's method and `mfa`, `acr`
/// is the factor's level, `auth_time` is now.
fn grant(completion: &Completion, challenge: &Challenge, accepted: &Accepted, now: u64) -> Grant {
    let inner = completion.inner();
    let mut amr = challenge.amr.clone();
    for method in [accepted.amr, "mfa"] {
        if !amr.iter().any(|m| m == method) {
            amr.push(method.to_owned());
        }
    }
    let acr = match accepted.level {
        Level::Mfa => inner.mfa_acr.clone(),
        Level::PhishingResistant => crate::policy::PHISHING_RESISTANT_ACR.to_owned(),
        Level::PhishingResistantHardware => {
            crate::policy::PHISHING_RESISTANT_HARDWARE_ACR.to_owned()
        }
    };
    let mut grant = Grant::new(challenge.sub.clone())
        .amr(amr)
        .acr(acr)
        .auth_time(now);
    if let Some(scope) = &challenge.scope {
        grant = grant.scope(scope.clone());
    }
    // A bound challenge (its proof checked) binds the session's tokens to the same key;
    // a step-up of a bound session keeps its binding.
    if let Some(jkt) = &challenge.jkt {
        grant = grant.dpop_jkt(jkt.clone());
    }
    grant
}

/// The tokens of a completed challenge, in a store step of their own: a login's challenge
/// starts a session, a step-up's continues its own.
async fn start_or_elevate(
    completion: &Completion,
    challenge: &Challenge,
    grant: Grant,
    audit: &mut Record,
) -> Result<session::Session, Failure> {
    match &challenge.replaces {
        Some(sid) => session::elevate(completion, sid, challenge.issued_at, grant, audit).await,
        None => session::start(completion, &grant).await,
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
            Ok((Proof::Code(_), "from-body", Some("from-bearer")))
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
            Ok((Proof::Code(_), "from-bearer", None))
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
