//! The challenge a request answers (verify, a passkey challenge, a sent code): its token
//! found where the client put it, and opened: a login's partial token (a JWS) or a
//! step-up's mfa_token (a JWE).

use super::dpop::{self, Target};
use super::error::{ErrorKind, Failure};
use super::Completion;
use crate::audit::Record;
use crate::challenge::OpenError;
use crate::dpop::CheckedProof;
use crate::layer::credential::{self, Credential, Flaw};
use crate::token::{TokenError, TokenKind};

/// Where a request may carry its challenge token: the body's (message's) `mfa_token`, the
/// `Authorization: Bearer` credential and the partial cookie (cookie mode), by the
/// layer's parser.
pub(crate) struct TokenPlaces<'a> {
    mfa_token: Option<&'a str>,
    bearer: Credential<'a>,
    partial_cookie: Credential<'a>,
}

impl<'a> TokenPlaces<'a> {
    /// An HTTP request's: the body's `mfa_token`, the bearer token and the partial
    /// cookie (named `partial_cookie` in cookie mode) of `headers`.
    pub(crate) fn of_request(
        headers: &'a http::HeaderMap,
        mfa_token: Option<&'a str>,
        partial_cookie: Option<&str>,
    ) -> Self {
        Self {
            mfa_token,
            bearer: credential::authorization(headers),
            partial_cookie: partial_cookie
                .map_or(Credential::None, |name| credential::cookie(headers, name)),
        }
    }

    /// A gRPC message's: its `mfa_token` (an empty one is none: the partial token then
    /// comes as the bearer) and the bearer token of `headers` (the call's
    /// `authorization` metadata). No cookies.
    #[cfg(feature = "tonic")]
    pub(crate) fn of_message(headers: &'a http::HeaderMap, mfa_token: &'a str) -> Self {
        Self {
            mfa_token: Some(mfa_token).filter(|t| !t.is_empty()),
            bearer: credential::authorization(headers),
            partial_cookie: Credential::None,
        }
    }

    /// The challenge token (the body's `mfa_token`, else the bearer token, else the
    /// partial cookie) and the access token sent beside a body's `mfa_token`, if any.
    ///
    /// The bearer token and the cookie are found by the layer's parser, with its rules. A
    /// malformed one is not skipped for the next place: a token that is not one (too
    /// long, not a `b64token`) is `mfa_token_invalid`, an ambiguous, unreadable or empty
    /// one `invalid_request`, as when no token is sent. (A malformed `Authorization`
    /// beside a body's `mfa_token` is no access token, as one that does not verify.)
    pub(crate) fn resolve(&self) -> Result<(&'a str, Option<&'a str>), Failure> {
        if let Some(token) = self.mfa_token {
            let access = match self.bearer {
                Credential::Bearer(access) | Credential::Dpop(access) => Some(access),
                Credential::None | Credential::Malformed(_) => None,
            };
            return Ok((token, access));
        }
        let token = match self.bearer {
            Credential::None => self.partial_cookie,
            presented => presented,
        };
        match token {
            Credential::Bearer(token) | Credential::Dpop(token) => Ok((token, None)),
            Credential::Malformed(Flaw::Invalid) => Err(Failure::new(ErrorKind::MfaTokenInvalid)),
            Credential::None | Credential::Malformed(_) => {
                Err(Failure::invalid_request("mfa_token is required"))
            }
        }
    }

    /// The token sent as `Authorization: DPoP` (the partial token, or the access token
    /// beside a body's `mfa_token`): what a proof's `ath` must be the hash of.
    pub(crate) fn dpop_token(&self) -> Option<&'a str> {
        match self.bearer {
            Credential::Dpop(token) => Some(token),
            _ => None,
        }
    }
}

/// What a genuine, unexpired challenge token says.
pub(crate) struct Challenge {
    /// The user.
    pub(crate) sub: String,
    /// The token's id: what spends it.
    pub(crate) jti: String,
    /// Until when it must be remembered as spent.
    pub(crate) expires_at: u64,
    /// The scope the session gets.
    pub(crate) scope: Option<String>,
    /// The methods of the session so far.
    pub(crate) amr: Vec<String>,
    /// The session a step-up continues.
    pub(crate) replaces: Option<String>,
    /// When the challenge was issued.
    pub(crate) issued_at: u64,
    /// The key the challenge is bound to (a partial token's `cnf.jkt`, an mfa_token's
    /// `jkt`): its completion needs a proof of that key, and its tokens are bound to it.
    pub(crate) jkt: Option<String>,
}

impl Challenge {
    /// The store key that spends this challenge.
    pub(crate) fn jti_key(&self) -> String {
        format!("jti:{}", self.jti)
    }

    /// The proof a bound challenge needs (checked without the store: missing or of
    /// another key is `400 invalid_dpop_proof`, before anything is spent), with `ath`
    /// the hash of the token `places` sent as `Authorization: DPoP`. `None` for an
    /// unbound challenge: a proof beside it is ignored, its session stays bearer.
    pub(crate) fn bound_proof(
        &self,
        completion: &Completion,
        places: &TokenPlaces<'_>,
        target: Target<'_>,
        now: u64,
    ) -> Result<Option<CheckedProof>, Failure> {
        let Some(jkt) = &self.jkt else {
            return Ok(None);
        };
        dpop::required(completion, target, jkt, places.dpop_token(), now).map(Some)
    }
}

/// Opens a step-up mfa_token (a JWE) or verifies a login partial token (a JWS).
///
/// `access` is the access token sent beside a step-up mfa_token, if any: it must belong
/// to the user and session the mfa_token was issued for.
pub(crate) fn open(
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
            jkt: claims.jkt,
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
                jkt: c.dpop_jkt().map(str::to_owned),
            })
        }
        Err(TokenError::Expired {
            kind: TokenKind::Partial,
        }) => Err(Failure::new(ErrorKind::MfaTokenExpired)),
        _ => Err(Failure::new(ErrorKind::MfaTokenInvalid)),
    }
}
