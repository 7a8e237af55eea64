//! Sessions: issuing access + refresh tokens, refresh with rotation, logout.
//!
//! A refresh token is `<user tag>.<family>.<secret>`: the tag of the session's user
//! ([`FamilyRef::user_tag`]), the family id (the session id) and 256 random bits,
//! base64url; a DPoP-bound session's adds `.<jkt>`, the thumbprint of its key. It stays
//! opaque to clients; the store finds the family from the first two parts, without an
//! index, and keeps only the hash of the whole token, so the key a token names cannot
//! be changed or dropped (the token would be unknown): a bound token's proof is checked
//! before the store sees it, and a refused one leaves the family as it was.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::SET_COOKIE;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::dpop::{self, Target};
use super::error::{ErrorKind, Failure};
use super::recent::signed_in;
use super::response::{json_ok, signed_out};
use super::revoke;
use super::sessions::{self, Ending};
use super::Completion;
use crate::audit::{Outcome, Record};
use crate::layer::credential::{self, Credential};
use crate::random;
use crate::store::{Elevation, FamilyRef, RefreshRecord, Rotation, SessionChange, TokenHash};
use crate::token::{Grant, IssuedToken};

/// Longest refresh token looked at.
const MAX_REFRESH_TOKEN_LEN: usize = 256;

/// The length of a refresh token's secret: 32 random bytes, base64url without padding.
const SECRET_LEN: usize = 43;

/// The longest family id a refresh token carries (the local issuer's are 22 characters).
const MAX_FAMILY_LEN: usize = 64;

/// The length of a DPoP key's thumbprint (`cnf.jkt`): SHA-256, base64url without padding.
const JKT_LEN: usize = 43;

/// A new access token plus the refresh token that continues it.
pub(crate) struct Session {
    pub(crate) access: IssuedToken,
    pub(crate) refresh: String,
    /// Seconds until the refresh family's absolute end (the refresh cookie's lifetime).
    pub(crate) refresh_expires_in: u64,
}

impl Session {
    /// The token response body (RFC 6749 §5.1): `token_type` `DPoP` for a session bound
    /// to a key (RFC 9449 §5), else `Bearer`.
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "access_token": self.access.token,
            "token_type": self.token_type(),
            "expires_in": self.access.expires_in,
            "refresh_token": self.refresh,
        });
        if let (Some(scope), Some(obj)) = (self.access.claims.scope(), body.as_object_mut()) {
            obj.insert("scope".into(), scope.into());
        }
        body
    }

    /// `DPoP` for an access token bound to a key, else `Bearer`.
    pub(crate) fn token_type(&self) -> &'static str {
        if self.access.claims.dpop_jkt().is_some() {
            "DPoP"
        } else {
            "Bearer"
        }
    }

    /// The token response, with the session and refresh cookies when cookies are on (not
    /// for a session bound to a key: a cookie cannot carry its proof).
    pub(crate) fn response(&self, completion: &Completion) -> Response<Bytes> {
        let mut response = json_ok(&self.body());
        let bound = self.access.claims.dpop_jkt().is_some();
        if let Some(cookies) = completion.cookies().filter(|_| !bound) {
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

/// A new refresh token of family `at`, naming `jkt`, the key of a bound session.
fn new_refresh_token(at: &FamilyRef, jkt: Option<&str>) -> Result<String, Failure> {
    if !is_family_id(at.family()) {
        // Not a family id of the local issuer: no token could carry it.
        tracing::error!("a session id that a refresh token cannot carry");
        return Err(Failure::new(ErrorKind::ServerError));
    }
    if jkt.is_some_and(|jkt| !is_jkt(jkt)) {
        tracing::error!("a DPoP key thumbprint that a refresh token cannot carry");
        return Err(Failure::new(ErrorKind::ServerError));
    }
    let mut bytes = [0u8; 32];
    random::fill(&mut bytes).map_err(|_| Failure::new(ErrorKind::ServerError))?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let token = format!("{}.{}.{secret}", at.user_tag(), at.family());
    Ok(match jkt {
        Some(jkt) => format!("{token}.{jkt}"),
        None => token,
    })
}

/// A SHA-256 JWK thumbprint: 43 base64url characters.
fn is_jkt(jkt: &str) -> bool {
    jkt.len() == JKT_LEN && is_base64url(jkt)
}

/// 1 to [`MAX_FAMILY_LEN`] base64url characters.
fn is_family_id(family: &str) -> bool {
    (1..=MAX_FAMILY_LEN).contains(&family.len()) && is_base64url(family)
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The family a refresh token names, if it has the shape of one.
fn family_of(token: &str) -> Option<FamilyRef> {
    parse(token).map(|(family, _)| family)
}

/// The family a refresh token names and the key it is bound to, if it has the shape of
/// one: `<user tag>.<family>.<secret>`, a tag of 16 lowercase hex digits, a family id, a
/// secret of 43 base64url characters, then `.<jkt>` (43 base64url characters) for a bound
/// session's, nothing else.
fn parse(token: &str) -> Option<(FamilyRef, Option<&str>)> {
    if token.len() > MAX_REFRESH_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (tag, family, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let jkt = parts.next();
    let shaped = parts.next().is_none()
        && secret.len() == SECRET_LEN
        && is_base64url(secret)
        && is_family_id(family)
        && jkt.is_none_or(is_jkt);
    let family = shaped
        .then(|| FamilyRef::from_parts(tag, family))
        .flatten()?;
    Some((family, jkt))
}

fn issue(completion: &Completion, grant: &Grant) -> Result<IssuedToken, Failure> {
    completion.inner().issuer.issue_access(grant).map_err(|e| {
        tracing::error!(error = %e, "could not issue an access token");
        Failure::new(ErrorKind::ServerError)
    })
}

/// A session's tokens, made before the store takes the [`SessionChange`] that makes them
/// work (in the same step as the verify that earned them: [`prepare_start`],
/// [`prepare_elevate`]).
pub(crate) struct Tokens {
    access: IssuedToken,
    refresh: String,
}

/// The tokens of a new session for `grant` (the family id is the session id) and the
/// family the store must start for them.
pub(crate) fn prepare_start(
    completion: &Completion,
    grant: &Grant,
) -> Result<(Tokens, SessionChange), Failure> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let access = issue(completion, grant)?;
    let family = sid(&access)?;
    let sub = access.claims.sub().to_owned();
    let at = FamilyRef::new(&sub, family.as_str());
    let refresh = new_refresh_token(&at, access.claims.dpop_jkt())?;
    let record = RefreshRecord {
        family,
        sub,
        session: access.claims.clone(),
        expires_at: now.saturating_add(inner.refresh_lifetime),
        idle_secs: inner.session_idle,
    };
    let token = hash(&refresh);
    Ok((
        Tokens { access, refresh },
        SessionChange::Start { token, record },
    ))
}

/// The tokens of a step-up inside session `sid` for `grant` (a new `jti`, a fresh
/// `auth_time` and `amr`) and the step-up the store must make for them: the family keeps
/// its `sid` and its absolute end.
pub(crate) fn prepare_elevate(
    completion: &Completion,
    sid: &str,
    issued_at: u64,
    grant: Grant,
) -> Result<(Tokens, SessionChange), Failure> {
    let access = issue(completion, &grant.sid(sid))?;
    let at = FamilyRef::new(access.claims.sub(), sid);
    let refresh = new_refresh_token(&at, access.claims.dpop_jkt())?;
    let change = SessionChange::Elevate {
        family: sid.to_owned(),
        new_token: hash(&refresh),
        session: access.claims.clone(),
        issued_at,
    };
    Ok((Tokens { access, refresh }, change))
}

impl Tokens {
    /// The session, its family started.
    pub(crate) fn started(self, completion: &Completion) -> Session {
        Session {
            access: self.access,
            refresh: self.refresh,
            refresh_expires_in: completion.inner().refresh_lifetime,
        }
    }

    /// The session if the store stepped its family up (`elevation`). A session that has
    /// ended, or that the store does not know, is not revived, and a challenge issued
    /// before the session's last step-up is stale: `404 mfa_token_not_found`.
    pub(crate) fn elevated(
        self,
        elevation: Elevation,
        now: u64,
        audit: &mut Record,
    ) -> Result<Session, Failure> {
        match elevation {
            Elevation::Elevated(record) => Ok(Session {
                access: self.access,
                refresh: self.refresh,
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
}

/// Issues an access token for `grant` and starts its refresh family (the family id is the
/// session id).
pub(crate) async fn start(completion: &Completion, grant: &Grant) -> Result<Session, Failure> {
    let (tokens, change) = prepare_start(completion, grant)?;
    apply(completion, change).await?;
    Ok(tokens.started(completion))
}

/// A step-up inside session `sid` (DESIGN §8.2): new tokens for `grant` in the same
/// family, as [`prepare_elevate`] and [`Tokens::elevated`] say.
pub(crate) async fn elevate(
    completion: &Completion,
    sid: &str,
    issued_at: u64,
    grant: Grant,
    audit: &mut Record,
) -> Result<Session, Failure> {
    let (tokens, change) = prepare_elevate(completion, sid, issued_at, grant)?;
    let now = completion.inner().guard.clock().now();
    let elevation = apply(completion, change).await?;
    tokens.elevated(elevation.unwrap_or(Elevation::Unknown), now, audit)
}

/// Makes `change` in the store on its own: what the step-up found, if it is one.
async fn apply(
    completion: &Completion,
    change: SessionChange,
) -> Result<Option<Elevation>, Failure> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    Ok(match change {
        SessionChange::Start { token, record } => {
            inner.store.refresh_create(token, record, now).await?;
            None
        }
        SessionChange::Elevate {
            family,
            new_token,
            session,
            issued_at,
        } => Some(
            inner
                .store
                .refresh_elevate(&family, new_token, session, issued_at, now)
                .await?,
        ),
        _ => None,
    })
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
            Credential::None | Credential::Dpop(_) | Credential::Malformed(_) => None,
        }
    })
}

/// The family of a refresh token that has the shape of one and the key it is bound to,
/// else `400 invalid_grant`.
fn checked(token: &str) -> Result<(FamilyRef, Option<&str>), Failure> {
    parse(token).ok_or(Failure::new(ErrorKind::InvalidGrant))
}

/// A refresh token bound to `jkt`, presented at refresh or logout: the request's proof
/// of that key (`ath` the hash of `access`, the token sent as `Authorization: DPoP`, if
/// any), checked, then used once; before the store sees the refresh token.
async fn prove_key(
    completion: &Completion,
    parts: &Parts,
    jkt: &str,
    access: Option<&str>,
    now: u64,
) -> Result<(), Failure> {
    let proof = dpop::required(completion, Target::of(parts), jkt, access, now)?;
    dpop::use_once(completion, &proof, now).await
}

/// `POST …/refresh`: rotation on every use; the new access token keeps the session's
/// `sid`, `auth_time`, `amr` and `acr` (RFC 9470 §6.1), and its key binding: a bound
/// session's refresh token needs a proof of its key (missing or another key's is `400
/// invalid_dpop_proof`, the token not rotated, the family alive), and its new tokens are
/// bound to it. The body as the endpoint read it.
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
    let (family, jkt) = checked(&token)?;
    let now = inner.guard.clock().now();
    if let Some(jkt) = jkt {
        prove_key(completion, &parts, jkt, None, now).await?;
    }
    let next = new_refresh_token(&family, jkt)?;
    match inner
        .store
        .refresh_rotate(&family, hash(&token), hash(&next), now)
        .await?
    {
        Rotation::Rotated(record) => {
            audit.sub(&record.sub);
            if record.session.dpop_jkt() != jkt {
                // The token's key is the one its family was started with (the token's
                // hash covers it): anything else is a fault, refused.
                tracing::error!("a refresh family's key binding differs from its token's");
                return Err(Failure::new(ErrorKind::ServerError));
            }
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
/// caller is answered before the body (as the endpoint read it). A refresh token bound
/// to a key needs a proof of it, unless the caller's access token is bound to the same
/// key (the layer checked that proof): `400 invalid_dpop_proof`, nothing ended.
pub(crate) async fn logout(
    completion: &Completion,
    parts: Parts,
    body: Result<RefreshBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let claims = signed_in(completion, &parts, audit)?;
    let body = body?;
    let now = inner.guard.clock().now();
    let token = presented(completion, &parts.headers, body).unwrap_or_default();
    audit.token(&token);
    if let Some((_, Some(jkt))) = parse(&token) {
        if claims.dpop_jkt() != Some(jkt) {
            let access = match credential::authorization(&parts.headers) {
                Credential::Dpop(access) => Some(access),
                _ => None,
            };
            prove_key(completion, &parts, jkt, access, now).await?;
        }
    }
    // The caller's own session ends, with its access tokens, refresh token or not.
    let mut revoked = false;
    if let Some(sid) = claims.sid() {
        revoked = sessions::end(completion, claims.sub(), Ending::Caller(sid), now).await?;
    }
    // Idempotent: an unknown or foreign refresh token changes nothing and says nothing.
    revoked |= match family_of(&token) {
        Some(family) => {
            let ending = Ending::RefreshToken(&family, &hash(&token));
            sessions::end(completion, claims.sub(), ending, now).await?
        }
        None => false,
    };
    if !revoked {
        audit.reason("no_family_revoked");
    }
    Ok(signed_out(completion.cookies()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_names_its_family_and_user_tag() {
        let at = FamilyRef::new("alice", "Ab3_-x");
        let token = new_refresh_token(&at, None).unwrap();
        let (head, secret) = token.rsplit_once('.').unwrap();
        assert_eq!(head, "2bd806c97f0e00af.Ab3_-x");
        assert_eq!(secret.len(), SECRET_LEN);
        assert_eq!(family_of(&token), Some(at.clone()));
        assert_ne!(
            new_refresh_token(&at, None).unwrap(),
            token,
            "random secrets"
        );
    }

    #[test]
    fn a_bound_sessions_refresh_token_names_its_key() {
        let at = FamilyRef::new("alice", "Ab3_-x");
        let jkt = "Jk_-".repeat(11)[..JKT_LEN].to_owned();
        let token = new_refresh_token(&at, Some(&jkt)).unwrap();
        assert!(token.ends_with(&format!(".{jkt}")));
        assert_eq!(parse(&token), Some((at.clone(), Some(jkt.as_str()))));
        assert_eq!(family_of(&token), Some(at.clone()));
        let unbound = new_refresh_token(&at, None).unwrap();
        assert_eq!(parse(&unbound), Some((at.clone(), None)));
        for bad in [
            format!("{unbound}."),
            format!("{unbound}.{}", &jkt[1..]),
            format!("{unbound}.{jkt}A"),
            format!("{unbound}.{jkt}.{jkt}"),
            format!("{unbound}.{}=", &jkt[1..]),
            format!("{unbound}.{}", jkt.replace('J', "+")),
        ] {
            assert_eq!(parse(&bad), None, "{bad:?}");
        }
        for bad in ["", "short", &jkt.replace('J', ".")] {
            let err = new_refresh_token(&at, Some(bad)).err().map(|f| f.kind);
            assert_eq!(err, Some(ErrorKind::ServerError), "{bad:?}");
        }
    }

    #[test]
    fn only_the_exact_shape_is_a_refresh_token() {
        let secret = "A".repeat(SECRET_LEN);
        let tag = "2bd806c97f0e00af";
        assert!(family_of(&format!("{tag}.fam.{secret}")).is_some());
        let family_too_long = "f".repeat(MAX_FAMILY_LEN + 1);
        for bad in [
            String::new(),
            "..".to_owned(),
            secret.clone(),
            format!("fam.{secret}"),
            format!("{tag}.fam.{secret}.x"),
            format!("{tag}..{secret}"),
            format!("{tag}.fam.{}", &secret[1..]),
            format!("{tag}.fam.{secret}A"),
            format!("{tag}.fa+m.{secret}"),
            format!("{tag}.fam.{}=", &secret[1..]),
            format!("{}.fam.{secret}", tag.to_uppercase()),
            format!("{}.fam.{secret}", &tag[1..]),
            format!("{tag}.{family_too_long}.{secret}"),
            format!("{tag}.fam.{secret}\n"),
        ] {
            assert_eq!(family_of(&bad), None, "{bad:?}");
            assert!(checked(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_family_id_no_token_can_carry_is_a_server_error_not_a_token() {
        for family in ["", "a.b", "a b", &"f".repeat(MAX_FAMILY_LEN + 1)] {
            let at = FamilyRef::new("alice", family);
            let err = new_refresh_token(&at, None).err().map(|f| f.kind);
            assert_eq!(err, Some(ErrorKind::ServerError), "{family:?}");
        }
    }
}
