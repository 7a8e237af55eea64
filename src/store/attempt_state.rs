//! The attempt state of one key (a user's codes, a login counter): failures, lockout
//! and reservations in flight. [`MemoryStore`](super::MemoryStore) keeps it as is; the
//! Redis store runs the same rules in Lua (`redis.rs`, `ATTEMPTS_LIB`), and the store
//! contract tests hold both to them.

use super::{AttemptPolicy, Attempts, Reservation, Settlement, RESERVATION_SECS};

/// Failures, lockout and reservations in flight of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AttemptEntry {
    pub(crate) failures: u32,
    locked_until: Option<u64>,
    /// When the failures (or the lockout) are forgotten.
    expires_at: u64,
    pending: u32,
    /// When the reservations in flight are forgotten (never settled).
    pending_until: u64,
}

impl AttemptEntry {
    /// The entry as it stands at `now`: forgotten failures, an ended lockout and
    /// abandoned reservations count as nothing.
    pub(crate) fn at(entry: Option<&AttemptEntry>, now: u64) -> AttemptEntry {
        let mut e = entry.copied().unwrap_or_default();
        let ended = e.locked_until.is_some_and(|until| until <= now);
        if e.expires_at <= now || ended {
            (e.failures, e.locked_until, e.expires_at) = (0, None, 0);
        }
        if e.pending_until <= now {
            (e.pending, e.pending_until) = (0, 0);
        }
        e
    }

    pub(crate) fn state(&self) -> Attempts {
        Attempts {
            failures: self.failures,
            locked_until: self.locked_until,
        }
    }

    /// Whether one more attempt fits: `Granted`, or why not. Changes nothing.
    pub(crate) fn check(&self, policy: AttemptPolicy) -> Reservation {
        if let Some(until) = self.locked_until {
            return Reservation::Locked { until };
        }
        if self.failures.saturating_add(self.pending) >= policy.max_attempts {
            return Reservation::Busy;
        }
        Reservation::Granted
    }

    /// Holds one attempt in flight.
    pub(crate) fn hold(&mut self, now: u64) {
        self.pending += 1;
        self.pending_until = now.saturating_add(RESERVATION_SECS);
    }

    pub(crate) fn reserve(&mut self, policy: AttemptPolicy, now: u64) -> Reservation {
        let answer = self.check(policy);
        if answer == Reservation::Granted {
            self.hold(now);
        }
        answer
    }

    /// May be forgotten to make room: no lockout and nothing in flight.
    pub(crate) fn evictable(&self) -> bool {
        self.locked_until.is_none() && self.pending == 0
    }

    pub(crate) fn settle(&mut self, settlement: Settlement, policy: AttemptPolicy, now: u64) {
        self.pending = self.pending.saturating_sub(1);
        match settlement {
            // Failures during a lockout do not extend it.
            Settlement::Failed if self.locked_until.is_none() => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= policy.max_attempts {
                    let until = now.saturating_add(policy.lockout_secs);
                    (self.locked_until, self.expires_at) = (Some(until), until);
                } else {
                    self.expires_at = now.saturating_add(policy.window_secs);
                }
            }
            // A running lockout stays.
            Settlement::Succeeded if self.locked_until.is_none() => {
                (self.failures, self.expires_at) = (0, 0);
            }
            _ => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.failures == 0 && self.locked_until.is_none() && self.pending == 0
    }

    pub(crate) fn keep_until(&self) -> u64 {
        self.expires_at.max(self.pending_until)
    }
}

/// The stricter of two answers: a lockout (the later one) over `Busy` over `Granted`.
pub(crate) fn stricter(a: Reservation, b: Reservation) -> Reservation {
    match (a, b) {
        (Reservation::Locked { until: x }, Reservation::Locked { until: y }) => {
            Reservation::Locked { until: x.max(y) }
        }
        (locked @ Reservation::Locked { .. }, _) | (_, locked @ Reservation::Locked { .. }) => {
            locked
        }
        (Reservation::Granted, Reservation::Granted) => Reservation::Granted,
        _ => Reservation::Busy,
    }
}
