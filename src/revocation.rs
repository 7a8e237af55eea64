//! Ended sessions, refused by the layer: the in-process set of revoked session ids.
//!
//! An access token is stateless: it stays valid until its `exp` unless something tells
//! the layer otherwise. [`Revocations`] is what tells it. Logout, refresh-token reuse,
//! ending a session from the session list, [`Completion::revoke_user`] and a change of
//! factors put the ended sessions here; the layer then refuses every access token of
//! those sessions (`401 invalid_token`, "the session has ended").
//!
//! The check stays in-process and costs one atomic load when nothing is revoked, one
//! hash lookup otherwise: the set is an [`arc_swap`] snapshot, replaced as a whole when
//! revocations arrive (they are rare next to requests).
//!
//! # Several replicas
//! One process: the completion endpoints write into the set of their guard directly
//! ([`Revocations::new`]). Several replicas: the store records each revocation and
//! every replica follows the store's feed (`RedisStore::follow_revocations`, Redis
//! pub/sub plus a catch-up read every second and on every reconnect), so a revocation
//! reaches every replica within about a second. A replica that cannot read the feed for
//! longer than its staleness bound ([`Revocations::fed`], default 60 s) cannot know
//! what was revoked meanwhile: it answers `503 temporarily_unavailable` on
//! authenticated routes until it has caught up, or keeps serving if it was built with
//! [`WhenStale::Serve`].
//!
//! # Bounds
//! An entry lives only until every access token it can refuse has expired (the
//! revocation's time plus the longest access-token lifetime and the leeway). A user has
//! at most [`REVOKED_SESSIONS_PER_USER`] entries: past that, their entries collapse into
//! one cutoff that refuses every token of the user issued up to then (see
//! [`UserRevocations`]).
//!
//! [`Completion::revoke_user`]: crate::Completion

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::token::Claims;

/// How many revoked sessions of one user are remembered one by one; more collapse into
/// a cutoff for the user (every token issued up to then is refused). Bounds what one
/// account can make every replica keep, however often it signs in and out.
pub const REVOKED_SESSIONS_PER_USER: usize = 64;

/// The default staleness bound of a fed set: 60 s without reading the feed, and the
/// layer answers 503 on authenticated routes.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(60);

/// What a replica does when it has not read the revocation feed for longer than its
/// staleness bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenStale {
    /// Answer `503 temporarily_unavailable` on authenticated routes (public routes treat
    /// a token as absent) until caught up: no revoked session is honoured. The default.
    #[default]
    Refuse,
    /// Keep serving with what it knows: a session revoked meanwhile may be honoured until
    /// its access tokens expire.
    Serve,
}

/// The revocations of one user: what the store keeps and the feed carries.
///
/// Applying two of them, in any order, gives their union: the set only grows until its
/// entries expire, so messages that overtake each other lose nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct UserRevocations {
    /// The user (`sub`).
    pub sub: String,
    /// Revoked session ids, each with the time (Unix seconds) until which its tokens
    /// must be refused.
    pub sessions: Vec<(String, u64)>,
    /// A cutoff: every token of the user issued at or before `.0` is refused, until
    /// `.1` (everything the user's sessions issued then has expired by then).
    pub before: Option<(u64, u64)>,
}

impl UserRevocations {
    /// The revocations of `sub`: none yet.
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            ..Self::default()
        }
    }

    /// With session `sid` revoked until `until`.
    pub fn session(mut self, sid: impl Into<String>, until: u64) -> Self {
        self.sessions.push((sid.into(), until));
        self
    }

    /// With every token issued at or before `at` refused until `until`.
    pub fn before(mut self, at: u64, until: u64) -> Self {
        self.before = Some(merge_cutoff(self.before, (at, until)));
        self
    }
}

fn merge_cutoff(a: Option<(u64, u64)>, b: (u64, u64)) -> (u64, u64) {
    match a {
        Some((at, until)) => (at.max(b.0), until.max(b.1)),
        None => b,
    }
}

impl UserRevocations {
    /// Adds `other`'s revocations (a union; the later `until` of a session wins), forgets
    /// what has expired at `now`, and keeps the bound: past
    /// [`REVOKED_SESSIONS_PER_USER`] sessions, they collapse into a cutoff at `now`.
    /// The one rule for the in-process set and the stores.
    pub fn merge(&mut self, other: &UserRevocations, now: u64) {
        for (sid, until) in &other.sessions {
            match self.sessions.iter_mut().find(|(s, _)| s == sid) {
                Some((_, mine)) => *mine = (*mine).max(*until),
                None => self.sessions.push((sid.clone(), *until)),
            }
        }
        if let Some(cutoff) = other.before {
            self.before = Some(merge_cutoff(self.before, cutoff));
        }
        self.expire(now);
        if self.sessions.len() > REVOKED_SESSIONS_PER_USER {
            let until = self.sessions.iter().map(|(_, u)| *u).max().unwrap_or(now);
            self.before = Some(merge_cutoff(self.before, (now, until)));
            self.sessions.clear();
        }
    }

    /// Forgets the entries that have expired at `now`.
    pub fn expire(&mut self, now: u64) {
        self.sessions.retain(|(_, until)| *until > now);
        if self.before.is_some_and(|(_, until)| until <= now) {
            self.before = None;
        }
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.before.is_none()
    }

    /// The time until which something here must be remembered (0 if nothing).
    pub fn until(&self) -> u64 {
        let sessions = self.sessions.iter().map(|(_, u)| *u);
        sessions
            .chain(self.before.map(|(_, u)| u))
            .max()
            .unwrap_or(0)
    }
}

/// The hasher of the set: foldhash, seeded per process (the keys are session ids and
/// user names, which users partly choose).
type Hasher = foldhash::fast::RandomState;

/// Revoked session id → its owners (user, until when).
type SessionIndex = HashMap<Box<str>, Vec<(Box<str>, u64)>, Hasher>;

/// A snapshot: the users' records (what is merged), and two indexes the layer reads.
#[derive(Clone, Default)]
struct Set {
    users: HashMap<Box<str>, UserRevocations, Hasher>,
    /// Every revoked session id → whose, until when (session ids are random, so one
    /// user each in practice; an application's own ids may repeat across users).
    sessions: SessionIndex,
    /// Every user's cutoff.
    cutoffs: HashMap<Box<str>, (u64, u64), Hasher>,
}

impl Set {
    /// Merges `users` in, drops what has expired at `now`, and rebuilds the indexes.
    fn merged(&self, users: &[UserRevocations], now: u64) -> Set {
        let mut next = self.users.clone();
        for user in users {
            next.entry(user.sub.as_str().into())
                .or_insert_with(|| UserRevocations::new(user.sub.as_str()))
                .merge(user, now);
        }
        next.retain(|_, user| {
            user.expire(now);
            !user.is_empty()
        });
        let mut sessions = SessionIndex::default();
        for (sub, user) in &next {
            for (sid, until) in &user.sessions {
                let owners = sessions.entry(sid.as_str().into()).or_default();
                owners.push((sub.clone(), *until));
            }
        }
        let cutoffs = next
            .iter()
            .filter_map(|(sub, u)| u.before.map(|cut| (sub.clone(), cut)))
            .collect();
        Set {
            users: next,
            sessions,
            cutoffs,
        }
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn refuses(&self, claims: &Claims, now: u64) -> bool {
        let by_session = claims
            .sid()
            .and_then(|sid| self.sessions.get(sid))
            .is_some_and(|owners| {
                owners
                    .iter()
                    .any(|(sub, until)| &**sub == claims.sub() && *until > now)
            });
        let by_cutoff = !self.cutoffs.is_empty()
            && self.cutoffs.get(claims.sub()).is_some_and(|(at, until)| {
                // A token without `iat` cannot show it was issued after the cutoff.
                *until > now && claims.iat().is_none_or(|iat| iat <= *at)
            });
        by_session || by_cutoff
    }
}

/// What the layer learns about a token's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionCheck {
    /// Not revoked (as far as this replica knows, and it is up to date).
    Live,
    /// Revoked: refuse the token.
    Ended,
    /// The replica has not read the feed for too long: it cannot tell.
    Unknown,
}

/// The revoked sessions this process knows of. Cheap to clone; clones share the set.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    set: ArcSwap<Set>,
    /// Whether anything is in the set: the layer's check is one load when not.
    any: std::sync::atomic::AtomicBool,
    /// When the feed was last read in full (Unix seconds); `u64::MAX` when not fed.
    synced_at: AtomicU64,
    staleness: u64,
    when_stale: WhenStale,
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("users", &self.inner.set.load().users.len())
            .field("fed", &self.is_fed())
            .field("staleness_secs", &self.inner.staleness)
            .field("when_stale", &self.inner.when_stale)
            .finish()
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl Revocations {
    /// A set for one process: written directly by the completion endpoints, never stale.
    pub fn new() -> Self {
        Self::with(u64::MAX, 0, WhenStale::Refuse)
    }

    /// A set fed by a store's revocation feed (several replicas): stale until the feed's
    /// first full read, and again when it has not been read for longer than `staleness`.
    pub fn fed(staleness: Duration) -> Self {
        Self::with(0, staleness.as_secs(), WhenStale::Refuse)
    }

    /// What to do when stale (default [`WhenStale::Refuse`]).
    pub fn when_stale(self, when: WhenStale) -> Self {
        let inner = &self.inner;
        Self::with(
            inner.synced_at.load(Ordering::Acquire),
            inner.staleness,
            when,
        )
    }

    fn with(synced_at: u64, staleness: u64, when_stale: WhenStale) -> Self {
        Self {
            inner: Arc::new(Inner {
                set: ArcSwap::from_pointee(Set::default()),
                any: false.into(),
                synced_at: AtomicU64::new(synced_at),
                staleness,
                when_stale,
            }),
        }
    }

    /// Whether this set is fed by a store (and so can be stale).
    pub fn is_fed(&self) -> bool {
        self.inner.synced_at.load(Ordering::Acquire) != u64::MAX
    }

    /// Adds revocations (a union with what is known), forgetting expired entries.
    pub fn apply(&self, users: &[UserRevocations], now: u64) {
        if users.is_empty() {
            return;
        }
        self.inner.set.rcu(|set| set.merged(users, now));
        let any = !self.inner.set.load().is_empty();
        self.inner.any.store(any, Ordering::Release);
    }

    /// Records that the feed has been read in full at `now`: the set is up to date.
    pub fn mark_synced(&self, now: u64) {
        if self.is_fed() {
            self.inner.synced_at.fetch_max(now, Ordering::AcqRel);
        }
    }

    /// When the feed was last read in full (`None` if never, or if not fed).
    pub fn synced_at(&self) -> Option<u64> {
        match self.inner.synced_at.load(Ordering::Acquire) {
            0 | u64::MAX => None,
            t => Some(t),
        }
    }

    /// Whether the set is too old to decide at `now` (and the layer must answer 503).
    pub fn is_stale(&self, now: u64) -> bool {
        let synced = self.inner.synced_at.load(Ordering::Acquire);
        synced != u64::MAX
            && self.inner.when_stale == WhenStale::Refuse
            && now.saturating_sub(synced) > self.inner.staleness
    }

    /// Whether `claims` belong to a revoked session (or were issued before the user's
    /// cutoff) at `now`.
    pub fn is_revoked(&self, claims: &Claims, now: u64) -> bool {
        if !self.inner.any.load(Ordering::Acquire) {
            return false;
        }
        self.inner.set.load().refuses(claims, now)
    }

    /// How many users have revocations in the set.
    pub fn users(&self) -> usize {
        self.inner.set.load().users.len()
    }

    /// The layer's question: may this token's session still be honoured?
    pub(crate) fn check(&self, claims: &Claims, now: u64) -> SessionCheck {
        if self.is_stale(now) {
            SessionCheck::Unknown
        } else if self.is_revoked(claims, now) {
            SessionCheck::Ended
        } else {
            SessionCheck::Live
        }
    }
}

/// A handle that does not keep a [`Revocations`] alive: a feed task holds this one, and
/// ends when the last [`Revocations`] is dropped.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct WeakRevocations(Weak<Inner>);

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl WeakRevocations {
    /// The set, if anyone still holds it.
    pub(crate) fn upgrade(&self) -> Option<Revocations> {
        self.0.upgrade().map(|inner| Revocations { inner })
    }
}

impl Revocations {
    /// A handle for a feed task.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakRevocations {
        WeakRevocations(Arc::downgrade(&self.inner))
    }
}

#[cfg(test)]
mod tests;
