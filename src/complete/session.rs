//! Sessions: issuing access + refresh tokens, refresh with rotation, logout.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::SET_COOKIE;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::{ErrorKind, Failure};
use super::response::{json_ok, no_content};
use super::revoke;
use super::sessions::{self, Ending};
use super::Completion;
use crate::audit::{Outcome, Record};
use crate::layer::credential::{self, Credential};
use crate::random;
use crate::store::{Elevation, RefreshRecord, Rotation, TokenHash};
use crate::token::{Grant, IssuedToken};

/// Longest refresh token looked at.
const MAX_REFRESH_TOKEN_LEN: usize = 256;

/// A new access token plus the refresh token that continues it.
pub(crate) struct Session {
    pub(crate) access: IssuedToken,
    pub(crate) refresh: String,
    /// Seconds until the refresh family's absolute end (the refresh cookie's lifetime).
    pub(crate) refresh_expires_in: u64,
}

impl Session {
    /// The token response body (RFC 6749 §5.1).
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "access_token": self.access.token,
            "token_type": "Bearer",
            "expires_in": self.access.expires_in,
            "refresh_token": self.refresh,
        });
        if let (Some(scope), Some(obj)) = (self.access.claims.scope(), body.as_object_mut()) {
            obj.insert("scope".into(), scope.into());
        }
        body
    }

    /// The token response, with the session and refresh cookies when cookies are on.
    pub(crate) fn response(&self, completion: &Completion) -> Response<Bytes> {
        let mut response = json_ok(&self.body());
        if let Some(cookies) = completion.cookies() {
            let set = [
                cookies.set_session(&self.access.token, self.access.expires_in),
                cookies.set_refresh(&self.refresh, self.refresh_expires_in),
            ];
            for v in set.into_iter().flatten() {
                response.headers_mut().append(SET_COOKIE, v);
            }
        }
        response
    }
}

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

fn new_refresh_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 32];
    random::fill(&mut bytes).map_err(|_| Failure::new(ErrorKind::ServerError))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn issue(completion: &Completion, grant: &Grant) -> Result<IssuedToken, Failure> {
    completion.inner().issuer.issue_access(grant).map_err(|e| {
        tracing::error!(error = %e, "could not issue an access token");
        Failure::new(ErrorKind::ServerError)
    })
}

/// Issues an access token for `grant` and starts its refresh family (the family id is the
/// session id).
pub(crate) async fn start(completion: &Completion, grant: &Grant) -> Result<Session, Failure> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let access = issue(completion, grant)?;
    let refresh = new_refresh_token()?;
    let family = sid(&access)?;
    let record = RefreshRecord {
        family,
        sub: access.claims.sub().to_owned(),
        session: access.claims.clone(),
        expires_at: now.saturating_add(inner.refresh_lifetime),
        idle_secs: inner.session_idle,
    };
    inner
        .store
        .refresh_create(hash(&refresh), record, now)
        .await?;
    Ok(Session {
        access,
        refresh,
        refresh_expires_in: inner.refresh_lifetime,
    })
}

/// A step-up inside session `sid` (DESIGN §8.2): new tokens for `grant` (a new `jti`, a
/// fresh `auth_time` and `amr`) in the same family, which keeps its `sid` and its
/// absolute end. A session that has ended, or that the store does not know, is not
/// revived, and a challenge issued before the session's last step-up is stale: `404
/// mfa_token_not_found`.
pub(crate) async fn elevate(
    completion: &Completion,
    sid: &str,
    issued_at: u64,
    grant: Grant,
    audit: &mut Record,
) -> Result<Session, Failure> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let access = issue(completion, &grant.sid(sid))?;
    let refresh = new_refresh_token()?;
    match inner
        .store
        .refresh_elevate(sid, hash(&refresh), access.claims.clone(), issued_at, now)
        .await?
    {
        Elevation::Elevated(record) => Ok(Session {
            access,
            refresh,
            refresh_expires_in: record.expires_at.saturating_sub(now),
        }),
        Elevation::Superseded => {
            audit.reason("session_stepped_up_since");
            Err(Failure::new(ErrorKind::MfaTokenNotFound).describe(
                "the session was stepped up since this challenge was issued; use its new tokens",
            ))
        }
        _ => {
            audit.reason("session_ended");
            Err(Failure::new(ErrorKind::MfaTokenNotFound)
                .describe("the session this challenge belongs to has ended; sign in again"))
        }
    }
}

fn sid(access: &IssuedToken) -> Result<String, Failure> {
    access
        .claims
        .sid()
        .map(str::to_owned)
        .ok_or(Failure::new(ErrorKind::ServerError))
}

/// The body of a refresh or a logout.
#[derive(Deserialize)]
pub(crate) struct RefreshBody {
    /// Absent (or empty) in cookie mode: the refresh cookie carries it.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The refresh token of a request: the body's, else the refresh cookie's. A malformed
/// refresh cookie (two of them, empty, not a token) is no token: `400 invalid_grant` at
/// refresh, nothing revoked at logout.
fn presented(
    completion: &Completion,
    headers: &http::HeaderMap,
    body: RefreshBody,
) -> Option<String> {
    body.refresh_token.filter(|t| !t.is_empty()).or_else(|| {
        let name = completion.cookies()?.refresh_name();
        match credential::cookie(headers, name) {
            Credential::Bearer(token) => Some(token.to_owned()),
            Credential::None | Credential::Malformed(_) => None,
        }
    })
}

fn checked(token: &str) -> Result<&str, Failure> {
    let ok = !token.is_empty()
        && token.len() <= MAX_REFRESH_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(token)
    } else {
        Err(Failure::new(ErrorKind::InvalidGrant))
    }
}

/// `POST …/refresh`: rotation on every use; the new access token keeps the session's
/// `sid`, `auth_time`, `amr` and `acr` (RFC 9470 §6.1). The body as the endpoint read
/// it.
pub(crate) async fn refresh(
    completion: &Completion,
    parts: Parts,
    body: Result<RefreshBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let body = body?;
    let token = presented(completion, &parts.headers, body).unwrap_or_default();
    audit.token(&token);
    let presented = checked(&token)?;
    let now = inner.guard.clock().now();
    let next = new_refresh_token()?;
    match inner
        .store
        .refresh_rotate(hash(presented), hash(&next), now)
        .await?
    {
        Rotation::Rotated(record) => {
            audit.sub(&record.sub);
            let access = issue(completion, &Grant::from_claims(&record.session))?;
            Ok(Session {
                access,
                refresh: next,
                refresh_expires_in: record.expires_at.saturating_sub(now),
            }
            .response(completion))
        }
        Rotation::Reused { sub, family } => {
            audit.sub(&sub);
            audit.outcome(Outcome::ReuseDetected, Some("refresh_token_reused"));
            // The family is revoked; its access tokens end with it.
            revoke::end_sessions(completion, &sub, &[&family]).await?;
            Err(Failure::new(ErrorKind::InvalidGrant))
        }
        _ => Err(Failure::new(ErrorKind::InvalidGrant)),
    }
}

/// `POST …/logout`: revokes the refresh family of the caller's refresh token. The
/// caller is answered before the body (as the endpoint read it).
pub(crate) async fn logout(
    completion: &Completion,
    parts: Parts,
    body: Result<RefreshBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let claims = completion
        .local_caller(&parts.extensions)
        .ok_or(Failure::new(ErrorKind::Unauthorized))?;
    audit.sub(claims.sub());
    let body = body?;
    let now = inner.guard.clock().now();
    let token = presented(completion, &parts.headers, body).unwrap_or_default();
    audit.token(&token);
    // The caller's own session ends, with its access tokens, refresh token or not.
    let mut revoked = false;
    if let Some(sid) = claims.sid() {
        revoked = sessions::end(completion, claims.sub(), Ending::Caller(sid), now).await?;
    }
    // Idempotent: an unknown or foreign refresh token changes nothing and says nothing.
    revoked |= match checked(&token) {
        Ok(token) => {
            let ending = Ending::RefreshToken(&hash(token));
            sessions::end(completion, claims.sub(), ending, now).await?
        }
        Err(_) => false,
    };
    if !revoked {
        audit.reason("no_family_revoked");
    }
    let mut response = no_content();
    if let Some(c) = completion.cookies() {
        for v in [c.clear_session(), c.clear_refresh()].into_iter().flatten() {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    Ok(response)
}
