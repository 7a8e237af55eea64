//! The sessions a user can see and end (DESIGN §8.3): `GET …/sessions` and `DELETE
//! …/sessions/{id}`, and [`end`], the one function through which every session a user
//! or the endpoints end comes to its end (logout, `DELETE …/sessions/{id}`, a change of
//! factors).
//!
//! A session is a refresh family; its id is the `sid` of its access tokens.

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use serde_json::{json, Value};

use super::error::{ErrorKind, Failure};
use super::recent::{authorize_delete, signed_in};
use super::response::{json_ok, no_content, signed_out};
use super::revoke;
use super::Completion;
use crate::audit::Record;
use crate::store::{FamilyRef, FamilyRevocation, SessionInfo, StoreError, TokenHash};

/// Which session [`end`] ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ending<'a> {
    /// The session (refresh family) with this id.
    Session(&'a str),
    /// The caller's own session: the `sid` of their verified access token (so theirs).
    /// Its access tokens end whatever the store says of its family, which may have
    /// reached its absolute end while its last access tokens live on.
    Caller(&'a str),
    /// The family of this refresh token (logout: the caller presents it, current or
    /// rotated since): where the token says it is, and the token's hash.
    RefreshToken(&'a FamilyRef, &'a TokenHash),
}

/// Ends a session of `sub`, if it is theirs and live: `true` when this call ended it.
/// Another user's session, an unknown, ended or idle one changes nothing (but the
/// access tokens of [`Ending::Caller`]'s session end in any case).
///
/// Every session the completion side ends goes through here (logout, `DELETE
/// …/sessions/{id}`, the other sessions at a change of factors and
/// [`Completion::factors_changed`]): the one place to hook what else an ended session
/// must stop: the access tokens of its `sid` ([`revoke`](super::revoke)). (The store itself also ends
/// families: a replayed refresh token's, and a user's oldest past
/// [`MAX_SESSIONS_PER_USER`](crate::store::MAX_SESSIONS_PER_USER).)
pub(crate) async fn end(
    completion: &Completion,
    sub: &str,
    ending: Ending<'_>,
    now: u64,
) -> Result<bool, StoreError> {
    let store = &completion.inner().store;
    match ending {
        Ending::Session(sid) => {
            let outcome = store.end_session(sub, sid, now).await?;
            // The session's access tokens end with it; also when it had ended before
            // (a retry after a failed first attempt). An id that is not the user's
            // records nothing.
            if matches!(
                outcome,
                FamilyRevocation::Revoked | FamilyRevocation::AlreadyRevoked
            ) {
                revoke::end_sessions(completion, sub, &[sid]).await?;
            }
            Ok(outcome == FamilyRevocation::Revoked)
        }
        Ending::Caller(sid) => {
            let outcome = store.end_session(sub, sid, now).await?;
            revoke::end_sessions(completion, sub, &[sid]).await?;
            Ok(outcome == FamilyRevocation::Revoked)
        }
        Ending::RefreshToken(family, token) => {
            // The token names its family: if it was the user's and this call revoked
            // it, that session's access tokens end too.
            let revoked = store.refresh_revoke(family, *token, sub, now).await?;
            if revoked {
                revoke::end_sessions(completion, sub, &[family.family()]).await?;
            }
            Ok(revoked)
        }
    }
}

/// Ends every live session of `sub` but `keep` (the caller's own, when there is one);
/// how many it ended.
pub(crate) async fn end_others(
    completion: &Completion,
    sub: &str,
    keep: Option<&str>,
    now: u64,
) -> Result<usize, StoreError> {
    let sessions = completion.inner().store.sessions(sub, now).await?;
    let mut ended = 0;
    for session in sessions.iter().filter(|s| Some(s.family.as_str()) != keep) {
        if end(completion, sub, Ending::Session(&session.family), now).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Ends every session of `sub` ([`Completion::revoke_user`]): first every access token
/// issued so far is refused (a cutoff), then each live family is ended. How many it
/// ended.
pub(crate) async fn end_user(completion: &Completion, sub: &str) -> Result<usize, StoreError> {
    revoke::end_all(completion, sub).await?;
    let now = completion.inner().guard.clock().now();
    end_others(completion, sub, None, now).await
}

/// One session as `GET …/sessions` shows it.
fn session_json(session: &SessionInfo, current: Option<&str>) -> Value {
    json!({
        "id": session.family,
        "created_at": session.created_at,
        "last_seen_at": session.last_seen_at,
        "auth_time": session.session.auth_time(),
        "amr": session.session.amr(),
        "current": current == Some(session.family.as_str()),
    })
}

/// `GET …/sessions` → `{"sessions":[{"id","created_at","last_seen_at","auth_time","amr",
/// "current"}],"devices":[…]}`, the caller's live sessions, oldest first (Unix seconds;
/// `current` marks the caller's own), and remembered devices (`device::listed`).
pub(crate) async fn list(
    completion: &Completion,
    parts: Parts,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let claims = signed_in(completion, &parts, audit)?;
    let now = inner.guard.clock().now();
    let sessions = inner.store.sessions(claims.sub(), now).await?;
    let current = claims.sid();
    let sessions: Vec<Value> = sessions.iter().map(|s| session_json(s, current)).collect();
    let devices = super::device::listed(completion, &parts.headers, claims.sub(), now).await?;
    Ok(json_ok(
        &json!({ "sessions": sessions, "devices": devices }),
    ))
}

/// `DELETE …/sessions/{id}` → `204`: ends one of the caller's sessions. It needs a
/// recent authentication (see `recent.rs`); another user's or an unknown id is `404`
/// and changes nothing. Ending one's own session clears the session cookies.
pub(crate) async fn delete(
    completion: &Completion,
    parts: Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let now = completion.inner().guard.clock().now();
    let (claims, id) = match authorize_delete(completion, &parts, content_type, now, audit).await? {
        Ok(authorized) => authorized,
        Err(step_up) => return Ok(step_up),
    };
    if !end(completion, claims.sub(), Ending::Session(id), now).await? {
        audit.reason("no_such_session");
        return Err(Failure::new(ErrorKind::NotFound));
    }
    if claims.sid() == Some(id) {
        audit.reason("own_session");
        return Ok(signed_out(completion.cookies()));
    }
    Ok(no_content())
}
