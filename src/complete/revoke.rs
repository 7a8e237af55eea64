//! Ending sessions' access tokens: the one place where a session's end reaches them.
//!
//! Every way a session ends (logout, refresh-token reuse, a session revoked from the
//! list, [`Completion::revoke_user`], a change of factors) comes through here, most of
//! them by way of [`sessions::end`](super::sessions): the store records the revocation
//! for every replica, and this process's guard refuses the session's access tokens from
//! the next request on.

use super::Completion;
use crate::revocation::UserRevocations;
use crate::store::StoreError;

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
) -> Result<(), StoreError> {
    if sids.is_empty() {
        return Ok(());
    }
    let now = completion.inner().guard.clock().now();
    let until = until(completion, now);
    let revoked = sids
        .iter()
        .fold(UserRevocations::new(sub), |r, sid| r.session(*sid, until));
    record(completion, revoked, now).await
}

/// Refuses every access token of `sub` issued up to now, whichever its session.
pub(crate) async fn end_all(completion: &Completion, sub: &str) -> Result<(), StoreError> {
    let now = completion.inner().guard.clock().now();
    let revoked = UserRevocations::new(sub).before(now, until(completion, now));
    record(completion, revoked, now).await
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
