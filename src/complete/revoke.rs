//! Ending sessions: the one place where a session's end reaches its access tokens.
//!
//! Every way a session ends (logout, refresh-token reuse, a session revoked from the
//! list, [`Completion::revoke_user`], a change of factors) comes through here: the store
//! records the revocation for every replica, and this process's guard refuses the
//! session's access tokens from the next request on.

use super::error::Failure;
use super::Completion;
use crate::revocation::UserRevocations;
use crate::store::{FamilyRevocation, StoreError};

/// Until when a revocation made at `now` must be remembered: until every access token
/// the session may have been issued has expired (their lifetime plus the verifier's
/// leeway).
fn until(completion: &Completion, now: u64) -> u64 {
    let inner = completion.inner();
    let lifetime = inner.issuer.access_lifetime();
    let leeway = inner.guard.verifier().leeway();
    now.saturating_add(lifetime)
        .saturating_add(leeway)
        .saturating_add(1)
}

/// Ends sessions `sids` of `sub` for their access tokens (the refresh families are the
/// caller's business).
pub(crate) async fn end_sessions(
    completion: &Completion,
    sub: &str,
    sids: &[&str],
) -> Result<(), Failure> {
    if sids.is_empty() {
        return Ok(());
    }
    let now = completion.inner().guard.clock().now();
    let until = until(completion, now);
    let revoked = sids
        .iter()
        .fold(UserRevocations::new(sub), |r, sid| r.session(*sid, until));
    Ok(record(completion, revoked, now).await?)
}

/// Ends every session of `sub`: a cutoff refuses every token issued up to now, then
/// each live refresh family is revoked. The number of families ended.
pub(crate) async fn end_user(completion: &Completion, sub: &str) -> Result<usize, StoreError> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let revoked = UserRevocations::new(sub).before(now, until(completion, now));
    record(completion, revoked, now).await?;
    let mut ended = 0;
    for session in inner.store.sessions(sub, now).await? {
        let outcome = inner.store.end_session(sub, &session.family, now).await?;
        ended += usize::from(outcome == FamilyRevocation::Revoked);
    }
    Ok(ended)
}

/// Records `revoked` in the store, then in this process's set. A store error changes
/// nothing (the request answers 503 and can be retried).
async fn record(
    completion: &Completion,
    revoked: UserRevocations,
    now: u64,
) -> Result<(), StoreError> {
    let inner = completion.inner();
    let all = inner.store.revoke_sessions(&revoked, now).await?;
    inner.guard.revocations().apply(&[all], now);
    Ok(())
}
