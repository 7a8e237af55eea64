//! The in-process store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{
    AttemptPolicy, Attempts, FamilyRevocation, RefreshRecord, Rotation, Store, StoreError,
    StoreFuture, TokenHash,
};

/// Default bound on the entries of a [`MemoryStore`].
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Sweep expired entries at least every this many writes.
const SWEEP_EVERY: u64 = 1024;

/// An in-memory [`Store`] for a single process.
///
/// Bounded: at most `max_entries` entries in all. Expired entries are swept on writes
/// (every 1024 writes, and whenever the bound is reached), so no background task is
/// needed; when the store is full of live entries, writes fail with
/// [`StoreError::Full`] and the endpoints answer 503 rather than forget a used token.
/// One mutex guards all state, so every operation is atomic.
///
/// # Security
/// Replicas do not share it: with several instances, single use and lockout hold per
/// instance only. Use a shared store there.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct State {
    consumed: HashMap<String, u64>,
    attempts: HashMap<String, AttemptEntry>,
    totp_steps: HashMap<String, (u64, u64)>,
    values: HashMap<String, (Vec<u8>, u64)>,
    refresh_tokens: HashMap<TokenHash, RefreshToken>,
    families: HashMap<String, Family>,
    writes: u64,
    max_entries: usize,
    now: u64,
}

#[derive(Debug, Clone, Copy)]
struct AttemptEntry {
    failures: u32,
    locked_until: Option<u64>,
    expires_at: u64,
}

#[derive(Debug)]
struct RefreshToken {
    family: String,
    expires_at: u64,
}

#[derive(Debug)]
struct Family {
    record: RefreshRecord,
    current: TokenHash,
    revoked: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store bounded at [`DEFAULT_MAX_ENTRIES`].
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store bounded at `max_entries`.
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_entries,
        }
    }

    /// Live and not yet swept entries, in all maps.
    pub fn len(&self) -> usize {
        self.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A panic while holding the lock may have left the state half-written: fail
        // closed rather than trust it.
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store poisoned".to_owned()))
    }

    /// Runs a write under the lock; sweeps when due. `f` calls [`State::room`] before
    /// adding a key, so only writes that really grow the store can be refused.
    fn write<T>(
        &self,
        now: u64,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.lock()?;
        state.writes = state.writes.wrapping_add(1);
        state.max_entries = self.max_entries;
        state.now = now;
        if state.writes % SWEEP_EVERY == 0 {
            state.sweep(now);
        }
        f(&mut state)
    }
}

impl State {
    /// Makes room for `n` new entries (sweeping if needed) or refuses: a full store never
    /// forgets a live entry to make room.
    fn room(&mut self, n: usize) -> Result<(), StoreError> {
        if self.len() + n > self.max_entries {
            self.sweep(self.now);
        }
        if self.len() + n > self.max_entries {
            return Err(StoreError::Full);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.consumed.len()
            + self.attempts.len()
            + self.totp_steps.len()
            + self.values.len()
            + self.refresh_tokens.len()
            + self.families.len()
    }

    fn sweep(&mut self, now: u64) {
        self.consumed.retain(|_, exp| *exp > now);
        self.attempts.retain(|_, a| a.expires_at > now);
        self.totp_steps.retain(|_, (_, exp)| *exp > now);
        self.values.retain(|_, (_, exp)| *exp > now);
        self.refresh_tokens.retain(|_, t| t.expires_at > now);
        self.families.retain(|_, f| f.record.expires_at > now);
    }

    fn attempts(&self, user: &str, now: u64) -> Attempts {
        match self.attempts.get(user) {
            Some(a) if a.expires_at > now => Attempts {
                failures: a.failures,
                locked_until: a.locked_until,
            },
            _ => Attempts::default(),
        }
    }

    fn live_family(&mut self, family: &str, now: u64) -> Option<&mut Family> {
        self.families
            .get_mut(family)
            .filter(|f| f.record.expires_at > now)
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl Store for MemoryStore {
    fn consume<'a>(&'a self, key: &'a str, expires_at: u64, now: u64) -> StoreFuture<'a, bool> {
        ready(self.write(now, |s| match s.consumed.get(key) {
            Some(exp) if *exp > now => Ok(false),
            existing => {
                if existing.is_none() {
                    s.room(1)?;
                }
                s.consumed.insert(key.to_owned(), expires_at);
                Ok(true)
            }
        }))
    }

    fn is_consumed<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, bool> {
        ready(
            self.lock()
                .map(|s| s.consumed.get(key).is_some_and(|exp| *exp > now)),
        )
    }

    fn release<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        ready(self.lock().map(|mut s| {
            s.consumed.remove(key);
        }))
    }

    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        ready(self.lock().map(|s| {
            let a = s.attempts(user, now);
            if a.is_locked(now) || a.locked_until.is_none() {
                a
            } else {
                // The lockout has run out: the slate is clean.
                Attempts::default()
            }
        }))
    }

    fn record_failure<'a>(
        &'a self,
        user: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Attempts> {
        ready(self.write(now, |s| {
            let current = s.attempts(user, now);
            if current.is_locked(now) {
                return Ok(current);
            }
            if !s.attempts.contains_key(user) {
                s.room(1)?;
            }
            let failures = if current.locked_until.is_some() {
                1
            } else {
                current.failures.saturating_add(1)
            };
            let entry = if failures >= policy.max_attempts {
                let until = now.saturating_add(policy.lockout_secs);
                AttemptEntry {
                    failures,
                    locked_until: Some(until),
                    expires_at: until,
                }
            } else {
                AttemptEntry {
                    failures,
                    locked_until: None,
                    expires_at: now.saturating_add(policy.window_secs),
                }
            };
            s.attempts.insert(user.to_owned(), entry);
            Ok(Attempts {
                failures: entry.failures,
                locked_until: entry.locked_until,
            })
        }))
    }

    fn clear_failures<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, ()> {
        ready(self.write(now, |s| {
            if !s.attempts(user, now).is_locked(now) {
                s.attempts.remove(user);
            }
            Ok(())
        }))
    }

    fn advance_totp_step<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        ready(self.write(now, |s| match s.totp_steps.get(user) {
            Some((last, exp)) if *exp > now && *last >= step => Ok(false),
            existing => {
                if existing.is_none() {
                    s.room(1)?;
                }
                s.totp_steps.insert(user.to_owned(), (step, expires_at));
                Ok(true)
            }
        }))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        ready(self.write(now, |s| {
            if !s.values.contains_key(key) {
                s.room(1)?;
            }
            s.values.insert(key.to_owned(), (value, expires_at));
            Ok(())
        }))
    }

    fn get<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        ready(self.lock().map(|s| {
            s.values
                .get(key)
                .filter(|(_, exp)| *exp > now)
                .map(|(v, _)| v.clone())
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        ready(self.lock().map(|mut s| {
            s.values.remove(key);
        }))
    }

    fn refresh_create<'a>(
        &'a self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        ready(self.write(now, |s| {
            s.room(2)?;
            s.refresh_tokens.insert(
                token,
                RefreshToken {
                    family: record.family.clone(),
                    expires_at: record.expires_at,
                },
            );
            s.families.insert(
                record.family.clone(),
                Family {
                    record,
                    current: token,
                    revoked: false,
                },
            );
            Ok(())
        }))
    }

    fn refresh_rotate<'a>(
        &'a self,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        ready(self.write(now, |s| {
            let Some(family_id) = s
                .refresh_tokens
                .get(&token)
                .filter(|t| t.expires_at > now)
                .map(|t| t.family.clone())
            else {
                return Ok(Rotation::Invalid);
            };
            let Some(family) = s.live_family(&family_id, now) else {
                return Ok(Rotation::Invalid);
            };
            if family.revoked {
                return Ok(Rotation::Invalid);
            }
            if family.current != token {
                family.revoked = true;
                return Ok(Rotation::Reused {
                    family: family.record.family.clone(),
                    sub: family.record.sub.clone(),
                });
            }
            // Only a rotation adds an entry: make room before changing anything.
            s.room(1)?;
            let Some(family) = s.live_family(&family_id, now) else {
                return Ok(Rotation::Invalid);
            };
            family.current = new_token;
            let record = family.record.clone();
            s.refresh_tokens.insert(
                new_token,
                RefreshToken {
                    family: family_id,
                    expires_at: record.expires_at,
                },
            );
            Ok(Rotation::Rotated(record))
        }))
    }

    fn refresh_revoke<'a>(
        &'a self,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        ready(self.write(now, |s| {
            let Some(family_id) = s.refresh_tokens.get(&token).map(|t| t.family.clone()) else {
                return Ok(false);
            };
            Ok(match s.live_family(&family_id, now) {
                Some(f) if f.record.sub == sub && !f.revoked => {
                    f.revoked = true;
                    true
                }
                _ => false,
            })
        }))
    }

    fn revoke_family<'a>(&'a self, family: &'a str, now: u64) -> StoreFuture<'a, FamilyRevocation> {
        ready(self.write(now, |s| {
            Ok(match s.live_family(family, now) {
                Some(f) if f.revoked => FamilyRevocation::AlreadyRevoked,
                Some(f) => {
                    f.revoked = true;
                    FamilyRevocation::Revoked
                }
                None => FamilyRevocation::Unknown,
            })
        }))
    }
}
