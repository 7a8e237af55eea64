//! The in-process record of ended sessions (the [`MemoryStore`](super::MemoryStore)'s
//! half of [`Store::revoke_sessions`](super::Store::revoke_sessions)).

use std::collections::HashMap;

use super::RevocationBatch;
use crate::revocation::UserRevocations;

/// Each user's recorded revocations, with the sequence number of their last change.
///
/// Bounded per user by [`UserRevocations::merge`]; entries are dropped once expired
/// (swept on every write), so it holds only users who ended a session within the
/// longest access-token lifetime.
#[derive(Debug, Default)]
pub(super) struct RevocationLog {
    users: HashMap<String, (UserRevocations, u64)>,
    seq: u64,
}

impl RevocationLog {
    /// Merges `revoked` into its user's record and returns the record.
    pub(super) fn record(&mut self, revoked: &UserRevocations, now: u64) -> UserRevocations {
        self.users.retain(|_, (user, _)| {
            user.expire(now);
            !user.is_empty()
        });
        self.seq += 1;
        let seq = self.seq;
        let (user, changed) = self
            .users
            .entry(revoked.sub.clone())
            .or_insert_with(|| (UserRevocations::new(revoked.sub.as_str()), seq));
        user.merge(revoked, now);
        *changed = seq;
        let out = user.clone();
        if out.is_empty() {
            self.users.remove(&revoked.sub);
        }
        out
    }

    /// The users changed after `cursor`, unexpired at `now`.
    pub(super) fn since(&self, cursor: u64, now: u64) -> RevocationBatch {
        let users = self
            .users
            .values()
            .filter(|(_, changed)| *changed > cursor)
            .map(|(user, _)| {
                let mut user = user.clone();
                user.expire(now);
                user
            })
            .filter(|user| !user.is_empty())
            .collect();
        RevocationBatch {
            users,
            cursor: self.seq,
        }
    }

    /// How many users have revocations recorded.
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }
}
