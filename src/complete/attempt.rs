//! Attempt limits: an attempt is reserved before a proof is evaluated, and settled after.
//!
//! The store counts recorded failures plus reservations in flight (DESIGN §8.2), so N
//! concurrent guesses evaluate at most `max_attempts` proofs, on any store and across
//! any network latency. Verify, enrollment confirm and login all go through here.

use super::error::{ErrorKind, Failure};
use super::Completion;
use crate::audit::{Outcome, Record};
use crate::store::{AttemptPolicy, Attempts, Reservation, Settlement};

/// One reserved attempt of `key`. Settle it exactly once: [`Attempt::failed`],
/// [`Attempt::succeeded`] or [`Attempt::release`].
#[must_use = "a reserved attempt must be settled"]
pub(crate) struct Attempt<'c> {
    completion: &'c Completion,
    key: String,
    policy: AttemptPolicy,
}

/// Why no attempt was reserved.
pub(crate) enum Refused {
    /// Recorded failures reached the limit: locked out until then.
    Locked(u64),
    /// Only reservations in flight fill the limit.
    Busy,
    /// The store failed (503).
    Store(Failure),
}

impl Refused {
    /// `429 too_many_attempts` with the lockout's `Retry-After`, or `Retry-After: 1` when
    /// only reservations in flight fill the limit; the store's 503.
    pub(crate) fn into_failure(self, now: u64, audit: &mut Record) -> Failure {
        match self {
            Refused::Locked(until) => {
                audit.reason("locked_out");
                too_many(until.saturating_sub(now).max(1))
            }
            Refused::Busy => {
                audit.reason("attempt_in_flight");
                too_many(1).describe("another attempt is in progress; try again in a second")
            }
            Refused::Store(failure) => failure,
        }
    }
}

/// Reserves one attempt of `key`, or says why not.
pub(crate) async fn reserve(
    completion: &Completion,
    key: String,
    policy: AttemptPolicy,
    now: u64,
) -> Result<Attempt<'_>, Refused> {
    let store = &completion.inner().store;
    let reservation = store.reserve_attempt(&key, policy, now).await;
    match reservation.map_err(|e| Refused::Store(e.into()))? {
        Reservation::Granted => Ok(Attempt {
            completion,
            key,
            policy,
        }),
        Reservation::Locked { until } => Err(Refused::Locked(until)),
        // `Reservation` is non-exhaustive: anything else refuses too.
        _ => Err(Refused::Busy),
    }
}

/// `failure` for a request of `user` that has nothing to judge (no factor, no pending
/// enrollment), unless the user is locked out: the lockout is said first, as for any
/// other request of theirs, but nothing is reserved or written (one read of the store).
pub(crate) async fn lockout_first(
    completion: &Completion,
    user: &str,
    failure: Failure,
    now: u64,
    audit: &mut Record,
) -> Failure {
    match completion.inner().store.attempts(user, now).await {
        Ok(attempts) => match attempts.locked_until.filter(|_| attempts.is_locked(now)) {
            Some(until) => Refused::Locked(until).into_failure(now, audit),
            None => failure,
        },
        Err(e) => e.into(),
    }
}

/// `429 too_many_attempts` with `Retry-After: secs`.
pub(crate) fn too_many(secs: u64) -> Failure {
    Failure {
        retry_after: Some(secs),
        ..Failure::new(ErrorKind::TooManyAttempts)
    }
}

impl Attempt<'_> {
    async fn settle(&self, settlement: Settlement, now: u64) -> Result<Attempts, Failure> {
        let store = &self.completion.inner().store;
        Ok(store
            .settle_attempt(&self.key, settlement, self.policy, now)
            .await?)
    }

    /// The proof was right: the failures are forgotten.
    pub(crate) async fn succeeded(self, now: u64) -> Result<(), Failure> {
        self.settle(Settlement::Succeeded, now).await.map(drop)
    }

    /// The request ends without judging the proof (`failure`: a spent token, a store
    /// error): the attempt is given back, and `failure` is the answer. A store error
    /// while giving it back is dropped: the reservation then runs out by itself.
    pub(crate) async fn release(self, failure: Failure, now: u64) -> Failure {
        let _ = self.settle(Settlement::Released, now).await;
        failure
    }

    /// A wrong (or replayed) proof: one more failure. Returns the recorded state, or the
    /// store's failure.
    pub(crate) async fn failed(self, now: u64) -> Result<Attempts, Failure> {
        self.settle(Settlement::Failed, now).await
    }
}

/// The answer to a recorded failure: `429` with the lockout when it started one, else
/// `401 invalid_code` with `attempts_remaining`.
pub(crate) fn wrong_proof(
    attempts: Attempts,
    policy: AttemptPolicy,
    now: u64,
    audit: &mut Record,
    why: &'static str,
) -> Failure {
    if let Some(until) = attempts.locked_until.filter(|u| *u > now) {
        audit.outcome(Outcome::Lockout, Some(why));
        return too_many(until.saturating_sub(now).max(1));
    }
    audit.reason(why);
    Failure {
        attempts_remaining: Some(policy.max_attempts.saturating_sub(attempts.failures)),
        ..Failure::new(ErrorKind::InvalidCode)
    }
}
