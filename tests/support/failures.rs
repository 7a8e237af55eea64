//! The old one-step failure operations, for store tests that count failures directly:
//! `record_failure` is a reservation settled as a failure, `clear_failures` one settled
//! as a success. The endpoints always reserve first (see `Store::reserve_attempt`).
#![allow(dead_code)]

use std::future::Future;

use tower_stepup::store::{AttemptPolicy, Attempts, Reservation, Settlement, Store, StoreError};

/// A reservation that only a lockout refuses: these helpers count, they do not limit.
fn unlimited(policy: AttemptPolicy) -> AttemptPolicy {
    AttemptPolicy {
        max_attempts: u32::MAX,
        ..policy
    }
}

/// `record_failure` and `clear_failures` on any store.
pub trait Failures: Store {
    /// Counts one failure of `key` (a reservation settled as failed); during a lockout,
    /// changes nothing and returns the state.
    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> impl Future<Output = Result<Attempts, StoreError>> + Send + 'a {
        async move {
            match self.reserve_attempt(key, unlimited(policy), now).await? {
                Reservation::Granted => {
                    self.settle_attempt(key, Settlement::Failed, policy, now)
                        .await
                }
                _ => self.attempts(key, now).await,
            }
        }
    }

    /// Forgets the failures of `key` (a reservation settled as a success); a running
    /// lockout stays.
    fn clear_failures<'a>(
        &'a self,
        key: &'a str,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        async move {
            let policy = unlimited(AttemptPolicy::default());
            if self.reserve_attempt(key, policy, now).await? == Reservation::Granted {
                self.settle_attempt(key, Settlement::Succeeded, policy, now)
                    .await?;
            }
            Ok(())
        }
    }
}

impl<S: Store + ?Sized> Failures for S {}
