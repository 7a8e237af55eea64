//! The in-process store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use super::attempt_state::{stricter, AttemptEntry};
use super::dpop::digest;
use super::record::{session_json, StoredRecord};
use super::revoked::RevocationLog;
use super::{
    AttemptPolicy, Attempts, DeviceInfo, DpopUse, Elevation, FamilyRef, FamilyRevocation,
    LoginLimits, RefreshRecord, Reservation, RevocationBatch, Rotation, SessionInfo, Settlement,
    Store, StoreError, StoreFuture, TokenHash, LOGIN_RECORDS_PER_BUCKET, MAX_DEVICES_PER_USER,
    MAX_DPOP_PROOFS_PER_KEY, MAX_SESSIONS_PER_USER, REFRESH_HISTORY,
};
use crate::revocation::UserRevocations;
use crate::token::Claims;

/// Default bound on the entries of a [`MemoryStore`].
///
/// An entry takes about 50–1,000 bytes (a used DPoP proof 50–100, a used token id 70,
/// a remembered refresh token about 80, a refresh family about 900 with its session's
/// claims): a full store holds at most about 500 MB (all of it new sessions, two entries
/// each), about 125 MB of sessions refreshed past their history. A signed-in user who refreshes all day keeps
/// about 19 entries (their session, its current and last 16 rotated tokens, their list
/// of sessions), and one at every per-user bound about 580: the store serves some 50,000
/// such active users.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

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
pub struct MemoryStore {
    state: Mutex<State>,
    max_entries: usize,
}

#[derive(Default)]
struct State {
    consumed: HashMap<String, u64>,
    attempts: HashMap<String, AttemptEntry>,
    totp_steps: HashMap<String, (u64, u64)>,
    values: HashMap<String, (Vec<u8>, u64)>,
    families: HashMap<String, Family>,
    /// The refresh tokens the families remember (each family's current one and its
    /// rotated ones), each counted as an entry.
    family_tokens: usize,
    /// The families of each user (id and absolute end), oldest first, at most
    /// [`MAX_SESSIONS_PER_USER`].
    user_families: HashMap<String, VecDeque<(String, u64)>>,
    /// The remembered devices of each user, oldest first, at most
    /// [`MAX_DEVICES_PER_USER`] (each counted as an entry).
    devices: HashMap<String, Vec<DeviceInfo>>,
    /// The used DPoP proofs of each key (by the SHA-256 of its thumbprint): each `jti`'s
    /// SHA-256 and when it is forgotten, at most [`MAX_DPOP_PROOFS_PER_KEY`] live a key.
    dpop: HashMap<[u8; 32], DpopProofs, DigestHasher>,
    /// The proofs `dpop` holds, each counted as an entry.
    dpop_proofs: usize,
    /// Login counters, in their own bounded space (not counted in `max_entries`).
    logins: HashMap<String, LoginBucket>,
    /// Ended sessions, per user (one entry each).
    revocations: RevocationLog,
    writes: u64,
    max_entries: usize,
    now: u64,
}

/// The hasher of the DPoP maps: their keys are SHA-256 digests, which no client can aim
/// at one bucket, so foldhash (seeded per process) does at a fraction of SipHash's cost.
type DigestHasher = foldhash::fast::RandomState;

/// The used proofs of one key: each `jti`'s SHA-256 and when it is forgotten.
type DpopProofs = HashMap<[u8; 32], u64, DigestHasher>;

/// One bucket of login counters: the account's own (`<account>`) and one per client
/// (`<account>|<client>`), at most [`LOGIN_RECORDS_PER_BUCKET`].
type LoginBucket = HashMap<String, AttemptEntry>;

/// The bucket of an account key, and the field of its counter for `client`.
fn login_fields(account: &str, client: &str) -> (String, String) {
    let bucket = account.get(..2).unwrap_or(account).to_owned();
    (bucket, format!("{account}|{client}"))
}

/// Writes `entries` back into `bucket` (dropping empty ones), first making room: expired
/// records go, then the evictable ones with the fewest failures. `false`, and nothing
/// written, when no room can be made.
fn save_login(bucket: &mut LoginBucket, entries: [(&str, AttemptEntry); 2], now: u64) -> bool {
    let new = entries
        .iter()
        .filter(|(k, e)| !e.is_empty() && !bucket.contains_key(*k))
        .count();
    if bucket.len() + new > LOGIN_RECORDS_PER_BUCKET {
        bucket.retain(|_, e| !AttemptEntry::at(Some(e), now).is_empty());
    }
    while bucket.len() + new > LOGIN_RECORDS_PER_BUCKET {
        let victim = bucket
            .iter()
            .filter(|(k, _)| entries.iter().all(|(own, _)| own != k))
            .map(|(k, e)| (k, AttemptEntry::at(Some(e), now)))
            .filter(|(_, e)| e.evictable())
            .min_by_key(|(_, e)| e.failures)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => bucket.remove(&k),
            None => return false,
        };
    }
    for (key, entry) in entries {
        if entry.is_empty() {
            bucket.remove(key);
        } else {
            bucket.insert(key.to_owned(), entry);
        }
    }
    true
}

#[derive(Debug)]
struct Family {
    record: StoredRecord,
    current: TokenHash,
    /// The tokens rotated away, oldest first, at most [`REFRESH_HISTORY`]: presenting
    /// one is a detected reuse. Older ones are forgotten (then merely invalid).
    history: VecDeque<TokenHash>,
    /// When the session was last stepped up (0: never).
    elevated_at: u64,
    revoked: bool,
    /// When the family started.
    created_at: u64,
    /// Its last start, rotation or step-up.
    last_seen_at: u64,
}

impl Family {
    /// Whether it can still rotate or step up at `now`: not revoked, not idle (the
    /// absolute end is [`State::live_family`]'s).
    fn active(&self, now: u64) -> bool {
        !self.revoked && !self.record.idle(self.last_seen_at, now)
    }
}

/// Sizes only: the values may be pending TOTP secrets, the keys users and token ids.
impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("login_len", &self.login_len())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
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

    /// Login counters held, in their own bounded space (at most 256 ×
    /// [`LOGIN_RECORDS_PER_BUCKET`]; not part of [`len`](Self::len)).
    pub fn login_len(&self) -> usize {
        self.lock()
            .map(|s| s.logins.values().map(HashMap::len).sum())
            .unwrap_or(0)
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
            + self.families.len()
            + self.family_tokens
            + self.user_families.len()
            + self.revocations.len()
            + self.devices.values().map(Vec::len).sum::<usize>()
            + self.dpop_proofs
    }

    fn sweep(&mut self, now: u64) {
        self.consumed.retain(|_, exp| *exp > now);
        self.attempts.retain(|_, a| a.keep_until() > now);
        self.totp_steps.retain(|_, (_, exp)| *exp > now);
        self.values.retain(|_, (_, exp)| *exp > now);
        self.families.retain(|_, f| f.record.expires_at > now);
        self.family_tokens = self.families.values().map(Family::tokens).sum();
        self.user_families.retain(|_, ids| {
            ids.retain(|(_, end)| *end > now);
            !ids.is_empty()
        });
        self.devices.retain(|_, devices| {
            devices.retain(|d| d.expires_at > now);
            !devices.is_empty()
        });
        self.dpop.retain(|_, proofs| {
            proofs.retain(|_, exp| *exp > now);
            !proofs.is_empty()
        });
        self.dpop_proofs = self.dpop.values().map(DpopProofs::len).sum();
    }

    /// Runs `f` on the attempt entry of `key` as it stands at `now`, and keeps the
    /// result (or drops the entry when it holds nothing).
    fn with_attempts<T>(
        &mut self,
        key: &str,
        now: u64,
        f: impl FnOnce(&mut AttemptEntry) -> T,
    ) -> Result<T, StoreError> {
        let mut entry = AttemptEntry::at(self.attempts.get(key), now);
        let out = f(&mut entry);
        if entry.is_empty() {
            self.attempts.remove(key);
        } else {
            if !self.attempts.contains_key(key) {
                self.room(1)?;
            }
            self.attempts.insert(key.to_owned(), entry);
        }
        Ok(out)
    }

    /// Starts a family; the user's oldest family ends when they would have more than
    /// [`MAX_SESSIONS_PER_USER`].
    fn add_family(&mut self, token: TokenHash, record: StoredRecord) -> Result<(), StoreError> {
        let new_user = !self.user_families.contains_key(&record.sub);
        self.room(1 + usize::from(new_user))?;
        let ids = self.user_families.entry(record.sub.clone()).or_default();
        let now = self.now;
        ids.retain(|(_, end)| *end > now);
        let evicted = if ids.len() >= MAX_SESSIONS_PER_USER {
            ids.pop_front().map(|(id, _)| id)
        } else {
            None
        };
        ids.push_back((record.family.clone(), record.expires_at));
        if let Some(old) = evicted.and_then(|id| self.families.remove(&id)) {
            self.family_tokens -= old.tokens();
        }
        self.family_tokens += 1;
        let family = Family {
            record,
            current: token,
            history: VecDeque::new(),
            elevated_at: 0,
            revoked: false,
            created_at: now,
            last_seen_at: now,
        };
        self.families.insert(family.record.family.clone(), family);
        Ok(())
    }

    /// Makes `new_token` the current token of live family `id` (see [`Family::advance`]),
    /// counting the token it remembers more unless it forgets one.
    fn advance(&mut self, id: &str, new_token: TokenHash, now: u64) -> Result<(), StoreError> {
        let full = self
            .live_family(id, now)
            .is_some_and(|f| f.history.len() >= REFRESH_HISTORY);
        if !full {
            self.room(1)?;
        }
        if let Some(f) = self.live_family(id, now) {
            f.advance(new_token, now);
            self.family_tokens += usize::from(!full);
        }
        Ok(())
    }

    fn live_family(&mut self, family: &str, now: u64) -> Option<&mut Family> {
        self.families
            .get_mut(family)
            .filter(|f| f.record.expires_at > now)
    }

    /// The live family `r` names: its id, and its user by the tag.
    fn family_at(&mut self, r: &FamilyRef, now: u64) -> Option<&mut Family> {
        self.live_family(r.family(), now)
            .filter(|f| r.tags(&f.record.sub))
    }
}

impl Family {
    /// Makes `new_token` the current token: the old one joins the history, whose oldest
    /// token is forgotten past [`REFRESH_HISTORY`].
    fn advance(&mut self, new_token: TokenHash, now: u64) {
        let old = std::mem::replace(&mut self.current, new_token);
        self.last_seen_at = now;
        self.history.push_back(old);
        if self.history.len() > REFRESH_HISTORY {
            self.history.pop_front();
        }
    }

    /// The tokens it remembers: the current one and the rotated ones.
    fn tokens(&self) -> usize {
        1 + self.history.len()
    }

    /// Whether `token` is the current token or one of the remembered rotated ones.
    fn knows(&self, token: &TokenHash) -> bool {
        self.current == *token || self.history.contains(token)
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

    fn use_dpop_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, DpopUse> {
        ready(self.write(now, |s| s.use_dpop(jkt, jti, expires_at)))
    }

    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        ready(
            self.lock()
                .map(|s| AttemptEntry::at(s.attempts.get(user), now).state()),
        )
    }

    fn reserve_attempt<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        ready(self.write(now, |s| {
            s.with_attempts(key, now, |e| e.reserve(policy, now))
        }))
    }

    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        settlement: Settlement,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Attempts> {
        ready(self.write(now, |s| {
            s.with_attempts(key, now, |e| {
                e.settle(settlement, policy, now);
                e.state()
            })
        }))
    }

    fn reserve_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        ready(self.lock().map(|mut s| {
            let (bucket, field) = login_fields(account, client);
            let bucket = s.logins.entry(bucket).or_default();
            let mut a = AttemptEntry::at(bucket.get(account), now);
            let mut c = AttemptEntry::at(bucket.get(&field), now);
            let answer = stricter(a.check(limits.per_account), c.check(limits.per_client));
            if answer != Reservation::Granted {
                return answer;
            }
            a.hold(now);
            c.hold(now);
            if save_login(bucket, [(account, a), (&field, c)], now) {
                Reservation::Granted
            } else {
                Reservation::Busy
            }
        }))
    }

    fn settle_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        ready(self.lock().map(|mut s| {
            let (bucket, field) = login_fields(account, client);
            let bucket = s.logins.entry(bucket).or_default();
            let mut a = AttemptEntry::at(bucket.get(account), now);
            let mut c = AttemptEntry::at(bucket.get(&field), now);
            a.settle(settlement, limits.per_account, now);
            c.settle(settlement, limits.per_client, now);
            // A record forgotten meanwhile (its reservation ran out) may find no room:
            // then this settlement is lost, which errs on the user's side only.
            save_login(bucket, [(account, a), (&field, c)], now);
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
        let stored = StoredRecord::new(record);
        ready(stored.and_then(|record| self.write(now, |s| s.add_family(token, record))))
    }

    fn refresh_rotate<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        ready(self.write(now, |s| {
            let Some(f) = s.family_at(family, now).filter(|f| f.active(now)) else {
                return Ok(Rotation::Invalid);
            };
            if f.current == token {
                let record = f.record.record()?;
                s.advance(family.family(), new_token, now)?;
                return Ok(Rotation::Rotated(record));
            }
            if !f.history.contains(&token) {
                return Ok(Rotation::Invalid);
            }
            f.revoked = true;
            Ok(Rotation::Reused {
                family: f.record.family.clone(),
                sub: f.record.sub.clone(),
            })
        }))
    }

    fn refresh_revoke<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        ready(self.write(now, |s| {
            Ok(match s.family_at(family, now) {
                Some(f) if f.record.sub == sub && !f.revoked && f.knows(&token) => {
                    f.revoked = true;
                    true
                }
                _ => false,
            })
        }))
    }

    fn revoke_family<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation> {
        ready(self.write(now, |s| {
            let live = s.live_family(family, now).filter(|f| f.record.sub == user);
            Ok(match live {
                Some(f) if f.revoked => FamilyRevocation::AlreadyRevoked,
                Some(f) => {
                    f.revoked = true;
                    FamilyRevocation::Revoked
                }
                None => FamilyRevocation::Unknown,
            })
        }))
    }

    fn refresh_elevate<'a>(
        &'a self,
        family: &'a str,
        new_token: TokenHash,
        session: Claims,
        issued_at: u64,
        now: u64,
    ) -> StoreFuture<'a, Elevation> {
        let json = session_json(&session);
        ready(json.and_then(|json| {
            self.write(now, |s| {
                let live = s.live_family(family, now);
                let Some(f) = live.filter(|f| f.record.sub == session.sub()) else {
                    return Ok(Elevation::Unknown);
                };
                if f.record.idle(f.last_seen_at, now) {
                    return Ok(Elevation::Unknown);
                }
                if f.revoked {
                    return Ok(Elevation::Ended);
                }
                if f.elevated_at >= issued_at {
                    return Ok(Elevation::Superseded);
                }
                f.elevated_at = now;
                f.record.session = json;
                let record = f.record.with_session(session);
                s.advance(family, new_token, now)?;
                Ok(Elevation::Elevated(record))
            })
        }))
    }

    fn revoke_sessions<'a>(
        &'a self,
        revoked: &'a UserRevocations,
        now: u64,
    ) -> StoreFuture<'a, UserRevocations> {
        ready(self.write(now, |s| {
            s.room(1)?;
            Ok(s.revocations.record(revoked, now))
        }))
    }

    fn revocations_since<'a>(&'a self, cursor: u64, now: u64) -> StoreFuture<'a, RevocationBatch> {
        ready(self.lock().map(|s| s.revocations.since(cursor, now)))
    }

    fn sessions<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<SessionInfo>> {
        self.sessions_of(user, now)
    }

    fn end_session<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation> {
        self.end_session_of(user, family, now)
    }

    fn device_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        self.device_add_of(user, id, expires_at, now)
    }

    fn device_use<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool> {
        self.device_use_of(user, id, now)
    }

    fn devices<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<DeviceInfo>> {
        self.devices_of(user, now)
    }

    fn device_remove<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool> {
        self.device_remove_of(user, id, now)
    }

    fn devices_clear<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, ()> {
        self.devices_clear_of(user, now)
    }
}

impl State {
    /// The live sessions of `user`, oldest first.
    fn sessions(&self, user: &str, now: u64) -> Result<Vec<SessionInfo>, StoreError> {
        let Some(ids) = self.user_families.get(user) else {
            return Ok(Vec::new());
        };
        let live = ids
            .iter()
            .filter_map(|(id, _)| self.families.get(id))
            .filter(|f| f.record.sub == user && f.record.expires_at > now && f.active(now));
        live.map(|f| {
            Ok(SessionInfo {
                family: f.record.family.clone(),
                session: f.record.record()?.session,
                created_at: f.created_at,
                last_seen_at: f.last_seen_at,
                expires_at: f.record.expires_at,
            })
        })
        .collect()
    }

    /// Revokes `family` if it is a live session of `user`.
    fn end_session(&mut self, user: &str, family: &str, now: u64) -> FamilyRevocation {
        match self.live_family(family, now) {
            Some(f) if f.record.sub != user || f.record.idle(f.last_seen_at, now) => {
                FamilyRevocation::Unknown
            }
            Some(f) if f.revoked => FamilyRevocation::AlreadyRevoked,
            Some(f) => {
                f.revoked = true;
                FamilyRevocation::Revoked
            }
            None => FamilyRevocation::Unknown,
        }
    }

    /// Remembers a device, forgetting the user's oldest past [`MAX_DEVICES_PER_USER`].
    fn add_device(&mut self, user: &str, device: DeviceInfo) -> Result<(), StoreError> {
        let now = self.now;
        let live = self.devices.get(user).map_or(0, |list| {
            list.iter()
                .filter(|d| d.expires_at > now && d.id != device.id)
                .count()
        });
        if live < MAX_DEVICES_PER_USER {
            self.room(1)?;
        }
        let list = self.devices.entry(user.to_owned()).or_default();
        list.retain(|d| d.expires_at > now && d.id != device.id);
        while list.len() >= MAX_DEVICES_PER_USER {
            list.remove(0);
        }
        list.push(device);
        Ok(())
    }

    /// Uses DPoP proof `jti` of key `jkt` (see [`Store::use_dpop_proof`]). A key's expired
    /// proofs are forgotten when its bound is reached (and by the sweep).
    fn use_dpop(&mut self, jkt: &str, jti: &str, expires_at: u64) -> Result<DpopUse, StoreError> {
        let (now, key, proof) = (self.now, digest(jkt), digest(jti));
        if let Some(proofs) = self.dpop.get_mut(&key) {
            let held = proofs.len();
            match proofs.get_mut(&proof) {
                Some(exp) if *exp > now => return Ok(DpopUse::Replayed),
                // Remembered but expired, under the bound: used again in place (no new
                // entry).
                Some(exp) if held < MAX_DPOP_PROOFS_PER_KEY => {
                    *exp = expires_at;
                    return Ok(DpopUse::Fresh);
                }
                _ => {}
            }
            if held >= MAX_DPOP_PROOFS_PER_KEY {
                // Also forgets this proof, if it was remembered (then it had expired).
                proofs.retain(|_, exp| *exp > now);
                let live = proofs.len();
                self.dpop_proofs -= held - live;
                if live >= MAX_DPOP_PROOFS_PER_KEY {
                    return Ok(DpopUse::TooMany);
                }
            }
        }
        // A new entry: this proof is not among the key's now.
        self.room(1)?;
        self.dpop.entry(key).or_default().insert(proof, expires_at);
        self.dpop_proofs += 1;
        Ok(DpopUse::Fresh)
    }

    /// The live device `id` of `user`.
    fn device(&mut self, user: &str, id: &str, now: u64) -> Option<&mut DeviceInfo> {
        self.devices
            .get_mut(user)?
            .iter_mut()
            .find(|d| d.id == id && d.expires_at > now)
    }
}

fn ready_lock<'a, T: Send + 'a>(
    store: &MemoryStore,
    f: impl FnOnce(&mut State) -> Result<T, StoreError>,
) -> StoreFuture<'a, T> {
    ready(store.lock().and_then(|mut s| f(&mut s)))
}

/// Sessions and devices (the trait's last two concerns), beside the rest of the impl.
impl MemoryStore {
    fn sessions_of(&self, user: &str, now: u64) -> StoreFuture<'_, Vec<SessionInfo>> {
        ready_lock(self, |s| s.sessions(user, now))
    }

    fn end_session_of(
        &self,
        user: &str,
        family: &str,
        now: u64,
    ) -> StoreFuture<'_, FamilyRevocation> {
        ready(self.write(now, |s| Ok(s.end_session(user, family, now))))
    }

    fn device_add_of(
        &self,
        user: &str,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'_, ()> {
        let device = DeviceInfo {
            id: id.to_owned(),
            created_at: now,
            last_used_at: now,
            expires_at,
        };
        ready(self.write(now, |s| s.add_device(user, device)))
    }

    fn device_use_of(&self, user: &str, id: &str, now: u64) -> StoreFuture<'_, bool> {
        ready(self.write(now, |s| {
            Ok(match s.device(user, id, now) {
                Some(device) => {
                    device.last_used_at = now;
                    true
                }
                None => false,
            })
        }))
    }

    fn devices_of(&self, user: &str, now: u64) -> StoreFuture<'_, Vec<DeviceInfo>> {
        ready_lock(self, |s| {
            Ok(s.devices.get(user).map_or_else(Vec::new, |list| {
                list.iter()
                    .filter(|d| d.expires_at > now)
                    .cloned()
                    .collect()
            }))
        })
    }

    fn device_remove_of(&self, user: &str, id: &str, now: u64) -> StoreFuture<'_, bool> {
        ready(self.write(now, |s| {
            let Some(list) = s.devices.get_mut(user) else {
                return Ok(false);
            };
            let live = list.iter().any(|d| d.id == id && d.expires_at > now);
            list.retain(|d| d.id != id);
            if list.is_empty() {
                s.devices.remove(user);
            }
            Ok(live)
        }))
    }

    fn devices_clear_of(&self, user: &str, now: u64) -> StoreFuture<'_, ()> {
        ready(self.write(now, |s| {
            s.devices.remove(user);
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_shows_sizes_not_secrets_or_keys() {
        let store = MemoryStore::new();
        let secret = b"JBSWY3DPEHPK3PXP-pending-secret".to_vec();
        store.put("enroll:alice", secret, 2000, 1000).await.unwrap();
        store
            .consume("jti:some-token-id", 2000, 1000)
            .await
            .unwrap();
        let printed = format!("{store:?} {store:#?}");
        for hidden in ["JBSWY3DP", "74, 66", "alice", "some-token-id"] {
            assert!(!printed.contains(hidden), "{hidden} in {printed}");
        }
        assert!(printed.contains("len: 2"), "{printed}");
    }
}
