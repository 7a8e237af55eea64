//! Shared state: what must be atomic across requests and replicas.
//!
//! Stateless tokens carry identity; the [`Store`] carries what must be decided exactly
//! once, even when several replicas answer at the same time:
//!
//! - single use of each partial token and mfa_token (their `jti`), and of each recovery
//!   code ([`Store::consume`]; verify's in [`Store::settle_challenge`]);
//! - single use of each DPoP proof's `jti`, per key ([`Store::use_dpop_proof`]);
//! - failed attempts and lockout per user, reserved before a proof is evaluated
//!   ([`Store::reserve_attempt`], [`Store::settle_attempt`]; verify's in
//!   [`Store::reserve_challenge`] and [`Store::settle_challenge`], each one step);
//! - the last accepted TOTP time step per user, so no code is accepted twice
//!   ([`Store::advance_totp_step`]);
//! - pending enrollments ([`Store::put`]);
//! - refresh-token families: rotation, reuse detection, revocation
//!   ([`Store::refresh_rotate`]), step-up inside a session ([`Store::refresh_elevate`]),
//!   an idle bound, and the list of a user's sessions ([`Store::sessions`],
//!   [`Store::end_session`]);
//! - remembered devices ([`Store::device_add`], [`Store::device_use`]).
//!
//! Every entry expires, and nothing one user does grows without bound: a user has one
//! attempt record, one TOTP step and one pending enrollment; at most
//! [`MAX_SESSIONS_PER_USER`] sessions, each remembering at most [`REFRESH_HISTORY`]
//! rotated tokens; at most [`MAX_DEVICES_PER_USER`] remembered devices; a DPoP key at
//! most [`MAX_DPOP_PROOFS_PER_KEY`] live proofs. Every method is atomic on its own.
//! Any error fails closed: the endpoints answer `503 temporarily_unavailable` (`500
//! server_error` for a stored value that cannot be read back, [`StoreError::Corrupt`]).
//!
//! [`MemoryStore`] is the in-process default; several replicas need a shared store:
//! `RedisStore` (feature `redis`).

mod attempt_state;
mod challenge;
mod dpop;
mod memory;
mod record;
#[cfg(feature = "redis")]
mod redis;
mod revoked;
pub mod stepwise;

use std::future::Future;
use std::pin::Pin;

use crate::revocation::UserRevocations;
use crate::token::Claims;

pub use self::challenge::{
    ChallengeOutcome, ChallengeReservation, ChallengeSettlement, FamilyRef, JudgedProof,
    SessionChange, USER_TAG_LEN,
};
pub use self::dpop::{DpopUse, MAX_DPOP_PROOFS_PER_KEY};
pub use self::memory::{MemoryStore, DEFAULT_MAX_ENTRIES};
#[cfg(feature = "redis")]
pub use self::redis::{
    RedisStore, RedisStoreBuilder, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT, MAX_TTL_SECS,
};

/// The future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store operation failed. The request it served fails closed (503).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer in time.
    #[error("store timed out")]
    Timeout,
    /// The store is at its size bound and nothing has expired yet.
    #[error("store full")]
    Full,
    /// A stored value cannot be read back (e.g. a session's claims written by a version
    /// that this one cannot read). The request fails with 500, not 503: retrying will
    /// not help.
    #[error("stored value unreadable: {0}")]
    Corrupt(String),
}

/// How failed second-factor attempts are counted, per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// Failures that lock the user out (default 5).
    pub max_attempts: u32,
    /// How long a lockout lasts, in seconds (default 900).
    pub lockout_secs: u64,
    /// How long a failure is remembered without a new one, in seconds (default 900).
    pub window_secs: u64,
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            lockout_secs: 900,
            window_secs: 900,
        }
    }
}

/// The failed-attempt state of one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Failures counted so far (reset by a success or when a lockout ends).
    pub failures: u32,
    /// Until when the user is locked out, if they are.
    pub locked_until: Option<u64>,
}

impl Attempts {
    /// Whether the user is locked out at `now`.
    pub fn is_locked(&self, now: u64) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// How long a reservation of [`Store::reserve_attempt`] that is never settled holds
/// its attempt (a crashed request): 30 s after the latest reservation of its key.
pub const RESERVATION_SECS: u64 = 30;

/// The answer to [`Store::reserve_attempt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reservation {
    /// One attempt is reserved: evaluate one proof, then settle it.
    Granted,
    /// Recorded failures reached the limit: locked out until then (Unix seconds).
    Locked {
        /// The end of the lockout.
        until: u64,
    },
    /// Only reservations in flight fill the remaining attempts: try again in a second
    /// (a user's own double submission is not a lockout).
    Busy,
}

/// How a granted reservation ended (see [`Store::settle_attempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settlement {
    /// The proof was wrong (or a replay): one more recorded failure.
    Failed,
    /// The proof was right: the failures are forgotten.
    Succeeded,
    /// The proof was not judged (token already spent, store error): nothing recorded.
    Released,
}

/// The limits of login throttling: per (account, client) and per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of one account from one client.
    pub per_client: AttemptPolicy,
    /// Failures of one account from all clients.
    pub per_account: AttemptPolicy,
}

/// Login counters live in their own bounded space: 256 buckets (by the first two hex
/// digits of the account key) of at most this many records each, 65,536 in all. A
/// bucket that is full forgets an expired record, else the unlocked one with the fewest
/// failures: names sprayed once are forgotten before an account under attack.
pub const LOGIN_RECORDS_PER_BUCKET: usize = 256;

/// One refresh-token family: the session it continues.
///
/// How a store keeps it is the store's business: both stores keep the claims as compact
/// JSON (and Redis the same record format as before the claims were typed).
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshRecord {
    /// The family id (the session id, `sid`).
    pub family: String,
    /// The user.
    pub sub: String,
    /// The session's claims, from which refreshed access tokens are made.
    pub session: Claims,
    /// The absolute end of the family: no refresh after this, however recent.
    pub expires_at: u64,
    /// The idle bound, in seconds: the family ends when it has not been refreshed or
    /// stepped up (nor started) for this long. `None`: only the absolute end applies.
    pub idle_secs: Option<u64>,
}

/// One live session of a user, as [`Store::sessions`] lists it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The family id (the session id, `sid`).
    pub family: String,
    /// The session's current claims (its `auth_time` and `amr` are the last sign-in's
    /// or step-up's).
    pub session: Claims,
    /// When the family started (the `now` of [`Store::refresh_create`]).
    pub created_at: u64,
    /// The last sign-in, refresh or step-up of the family (no write per request).
    pub last_seen_at: u64,
    /// The absolute end of the family.
    pub expires_at: u64,
}

/// One remembered device of a user, as [`Store::devices`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// The device id (random, named in the device's sealed cookie).
    pub id: String,
    /// When it was remembered.
    pub created_at: u64,
    /// When it last stood in for the second factor (`created_at` if never).
    pub last_used_at: u64,
    /// When it is forgotten, however often it is used.
    pub expires_at: u64,
}

/// How many remembered devices one user can have: remembering one more forgets the
/// user's oldest.
pub const MAX_DEVICES_PER_USER: usize = 10;

/// What [`Store::revoke_family`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FamilyRevocation {
    /// The family was live: it is revoked now.
    Revoked,
    /// The family had been revoked already (logout, refresh token reuse, an earlier
    /// step-up).
    AlreadyRevoked,
    /// No such family, or past its absolute lifetime (e.g. a session of another issuer).
    Unknown,
}

/// What [`Store::refresh_elevate`] found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Elevation {
    /// The family was live: its new record (the new session, the same absolute end).
    Elevated(RefreshRecord),
    /// The family was revoked (logout, refresh token reuse): it stays ended.
    Ended,
    /// The session was stepped up at or after the challenge was issued: the challenge
    /// is stale (of concurrent step-ups of one session, one wins).
    Superseded,
    /// No such family, or past its absolute lifetime (or ended to make room).
    Unknown,
}

/// How many rotated refresh tokens a family remembers for reuse detection: a replay of
/// one of the last 16 is detected (and revokes the family); an older one is merely
/// invalid. Bounds what one family keeps, however often it is refreshed.
pub const REFRESH_HISTORY: usize = 16;

/// How many live sessions (refresh families) one user can have: starting one more ends
/// the user's oldest. Bounds what one account can make the store keep.
pub const MAX_SESSIONS_PER_USER: usize = 32;

/// The outcome of presenting a refresh token.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Rotation {
    /// It was the family's current token: it is now spent and `new_hash` is current.
    Rotated(RefreshRecord),
    /// It had been rotated already: someone replayed it. The whole family is revoked.
    Reused {
        /// The revoked family.
        family: String,
        /// Its user.
        sub: String,
    },
    /// Unknown, expired, or of a revoked family.
    Invalid,
}

/// What [`Store::revocations_since`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationBatch {
    /// The users whose recorded revocations changed after the cursor asked from, each
    /// with everything recorded for them (apply with
    /// [`Revocations::apply`](crate::revocation::Revocations::apply)).
    pub users: Vec<UserRevocations>,
    /// The cursor to ask from next time.
    pub cursor: u64,
}

/// SHA-256 of a refresh token: only hashes are stored.
pub type TokenHash = [u8; 32];

/// The operations the completion endpoints need, each atomic.
///
/// Times are seconds since the Unix epoch and are passed in, so tests can set them.
///
/// The methods serve seven concerns, in this order:
///
/// | concern | methods |
/// | --- | --- |
/// | single use | [`consume`](Store::consume), [`is_consumed`](Store::is_consumed), [`release`](Store::release), [`advance_totp_step`](Store::advance_totp_step), [`use_dpop_proof`](Store::use_dpop_proof) |
/// | attempts and lockout | [`attempts`](Store::attempts), [`reserve_attempt`](Store::reserve_attempt), [`settle_attempt`](Store::settle_attempt) |
/// | a verify's two steps | [`reserve_challenge`](Store::reserve_challenge), [`settle_challenge`](Store::settle_challenge) |
/// | login throttling | [`reserve_login`](Store::reserve_login), [`settle_login`](Store::settle_login) |
/// | short-lived values | [`put`](Store::put), [`get`](Store::get), [`delete`](Store::delete) |
/// | refresh families | [`refresh_create`](Store::refresh_create), [`refresh_rotate`](Store::refresh_rotate), [`refresh_revoke`](Store::refresh_revoke), [`revoke_family`](Store::revoke_family), [`refresh_elevate`](Store::refresh_elevate), [`sessions`](Store::sessions), [`end_session`](Store::end_session) |
/// | remembered devices | [`device_add`](Store::device_add), [`device_use`](Store::device_use), [`devices`](Store::devices), [`device_remove`](Store::device_remove), [`devices_clear`](Store::devices_clear) |
/// | ended sessions' access tokens | [`revoke_sessions`](Store::revoke_sessions), [`revocations_since`](Store::revocations_since) |
///
/// They stay one trait: every backend serves all seven from one connection and one
/// keyspace, and the endpoints hold one `Arc<dyn Store>`. A backend implements each
/// method once; a decorator (a test double, metrics) is best written once as a generic
/// wrapper that delegates every method and calls a hook around it.
///
/// A verify's two steps have provided implementations ([`stepwise`]) made of the
/// single-purpose methods, one call after the other, as [`MemoryStore`] uses them; a
/// backend with round trips does each in one (`RedisStore`: one script each). A
/// decorator should delegate them too, or the backend's single step is lost (the
/// answers stay the same). So with [`use_dpop_proof`](Store::use_dpop_proof), whose
/// provided method is one [`consume`](Store::consume) and bounds nothing per key.
pub trait Store: Send + Sync + 'static {
    // Single use: a key is consumed once, a TOTP step accepted once.

    /// Marks `key` used. `true` the first time, `false` ever after (until `expires_at`,
    /// when it is forgotten: use the expiry of what it protects).
    fn consume<'a>(&'a self, key: &'a str, expires_at: u64, now: u64) -> StoreFuture<'a, bool>;

    /// Whether `key` has been consumed.
    fn is_consumed<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, bool>;

    /// Forgets that `key` was consumed, so that the next [`consume`](Store::consume) of
    /// it is `true` again.
    ///
    /// Only the caller whose `consume` returned `true` may release the key, and only
    /// when what it guarded did not happen after all (a verify in
    /// [`stepwise`] releases a challenge whose code turned out to be a replay, so that
    /// the challenge stays usable as its `401 invalid_code` answer promises).
    fn release<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Accepts TOTP time step `step` for `user` only if it is later than every step
    /// accepted for them before; remembered until `expires_at`.
    fn advance_totp_step<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, bool>;

    /// Uses DPoP proof `jti` of the key whose RFC 7638 thumbprint is `jkt`:
    /// [`Fresh`](DpopUse::Fresh) the first time, and then remembered until `expires_at`
    /// (the end of the proof's `iat` window); [`Replayed`](DpopUse::Replayed) while
    /// remembered; [`TooMany`](DpopUse::TooMany), and nothing remembered, while the key
    /// has [`MAX_DPOP_PROOFS_PER_KEY`] live `jti`s (a replay is `Replayed` still). The
    /// same `jti` of another key is another proof.
    ///
    /// The provided method is one [`consume`](Store::consume) of `dpop:` and the SHA-256
    /// of `jkt` and `jti`: it bounds nothing per key (the store's own bound and the
    /// expiry do) and never answers `TooMany`. [`MemoryStore`] and `RedisStore` keep a
    /// key's proofs together (by their digests) and bound them, each in one step.
    fn use_dpop_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, DpopUse> {
        Box::pin(dpop::consume_once(self, jkt, jti, expires_at, now))
    }

    // Second-factor attempts and lockout, per user.

    /// The failed-attempt state of `user`.
    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts>;

    /// Reserves one attempt of `key` (a user, or a login counter) before a proof is
    /// evaluated, atomically: granted only while recorded failures plus reservations in
    /// flight stay below `policy.max_attempts` and no lockout runs. So N concurrent
    /// guesses evaluate at most `max_attempts` proofs, whatever the store's latency.
    ///
    /// Every [`Reservation::Granted`] must be settled with
    /// [`settle_attempt`](Store::settle_attempt); a reservation never settled (the
    /// process died) is forgotten after [`RESERVATION_SECS`].
    fn reserve_attempt<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Reservation>;

    /// Settles one granted reservation of `key`:
    /// [`Failed`](Settlement::Failed) records a failure (the failure that reaches
    /// `max_attempts` starts a lockout; failures during a lockout do not extend it),
    /// [`Succeeded`](Settlement::Succeeded) forgets the failures (a running lockout
    /// stays), [`Released`](Settlement::Released) only gives the reservation back (the
    /// request ended without judging the proof: 404, 503). Returns the new state.
    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        settlement: Settlement,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Attempts>;

    // A verify's two steps, each one atomic step where the backend can.

    /// Step one of a verify: reserves one attempt of `user` (as
    /// [`reserve_attempt`](Store::reserve_attempt)) unless the user is locked out or
    /// `challenge` (the challenge's single-use key) is spent, checked in that order:
    /// [`Locked`](ChallengeReservation::Locked) before
    /// [`Spent`](ChallengeReservation::Spent) before
    /// [`Busy`](ChallengeReservation::Busy). Only
    /// [`Granted`](ChallengeReservation::Granted) holds an attempt, to be settled with
    /// [`settle_challenge`](Store::settle_challenge).
    ///
    /// `challenge` is one of `user`'s keys: a backend may keep it apart from
    /// [`consume`](Store::consume)'s keys (`RedisStore` keeps it beside the user's
    /// attempts). The provided method: [`stepwise::reserve_challenge`].
    fn reserve_challenge<'a>(
        &'a self,
        user: &'a str,
        challenge: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, ChallengeReservation> {
        Box::pin(stepwise::reserve_challenge(
            self, user, challenge, policy, now,
        ))
    }

    /// Step two of a verify, after a granted
    /// [`reserve_challenge`](Store::reserve_challenge) and the proof judged: a
    /// challenge spent meanwhile gives the attempt back
    /// ([`Spent`](ChallengeOutcome::Spent)); a wrong or replayed proof is a recorded
    /// failure ([`Failed`](ChallengeOutcome::Failed), whose lockout spends the challenge
    /// too); a right and fresh one spends the challenge and the proof, forgets the
    /// failures and makes the [`SessionChange`]
    /// ([`Succeeded`](ChallengeOutcome::Succeeded)).
    ///
    /// An error leaves the attempt to run out by itself (after [`RESERVATION_SECS`])
    /// where it was not given back. The provided method:
    /// [`stepwise::settle_challenge`].
    fn settle_challenge<'a>(
        &'a self,
        settlement: &'a ChallengeSettlement,
        now: u64,
    ) -> StoreFuture<'a, ChallengeOutcome> {
        Box::pin(stepwise::settle_challenge(self, settlement, now))
    }

    // Login throttling, per account and per (account, client).

    /// Reserves one login attempt of `account` from `client`, on both counters at once
    /// (`limits`): granted only if each has room (failures plus reservations in flight
    /// below its limit, no lockout). Reserved before the password is checked, so that
    /// concurrent guesses cannot overrun the limits. `account` is a hex digest of the
    /// canonical username; login records live in their own bounded space
    /// ([`LOGIN_RECORDS_PER_BUCKET`]).
    fn reserve_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, Reservation>;

    /// Settles a granted [`reserve_login`](Store::reserve_login) on both counters, as
    /// [`settle_attempt`](Store::settle_attempt) does for one.
    fn settle_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, ()>;

    // Short-lived values (pending enrollments).

    /// Stores a short-lived value (e.g. a pending enrollment).
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()>;

    /// Reads a value stored with [`put`](Store::put).
    fn get<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Removes a value stored with [`put`](Store::put).
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    // Refresh-token families (sessions).

    /// Starts a refresh family whose current token has hash `token`.
    fn refresh_create<'a>(
        &'a self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> StoreFuture<'a, ()>;

    /// Presents refresh token `token` of family `family`: rotates to `new_token` if it
    /// is the family's current token; detects reuse and revokes the family if it is one
    /// of the last [`REFRESH_HISTORY`] rotated ones; else (another token, an unknown,
    /// ended, revoked or idle family, a tag not the family's user's) refuses and changes
    /// nothing.
    fn refresh_rotate<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation>;

    /// Revokes family `family` if it belongs to `sub` and `token` is its current token or
    /// one of its last [`REFRESH_HISTORY`] rotated ones (logout works with a token rotated
    /// since). `true` if it was revoked.
    fn refresh_revoke<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool>;

    /// Revokes family `family` of `user`, and says what it found (another user's family
    /// is [`Unknown`](FamilyRevocation::Unknown)).
    fn revoke_family<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation>;

    /// A step-up inside session `family` of `session.sub()` (another user's family is
    /// [`Unknown`](Elevation::Unknown)) by a challenge issued at `issued_at`:
    /// `new_token` becomes its current refresh token (the old one joins the rotated
    /// history) and `session` its claims; the family id and absolute end stay. A revoked
    /// family stays ended: a step-up must not revive a session, nor extend its life. A
    /// challenge issued no later than the session's last step-up is
    /// [`Superseded`](Elevation::Superseded).
    fn refresh_elevate<'a>(
        &'a self,
        family: &'a str,
        new_token: TokenHash,
        session: Claims,
        issued_at: u64,
        now: u64,
    ) -> StoreFuture<'a, Elevation>;

    // Ended sessions: what every replica's layer must refuse (see crate::revocation).

    /// Records `revoked` (the ended sessions of one user, or a cutoff) for every
    /// replica: merged into what is recorded for the user by
    /// [`UserRevocations::merge`] (so bounded per user), kept until its entries expire,
    /// and published to the replicas that follow the store's feed. Returns everything
    /// now recorded for the user.
    fn revoke_sessions<'a>(
        &'a self,
        revoked: &'a UserRevocations,
        now: u64,
    ) -> StoreFuture<'a, UserRevocations>;

    /// The catch-up read of a replica: the users whose recorded revocations changed
    /// after `cursor` (0: every user with revocations still recorded), each with all of
    /// them, and the cursor to ask from next. A user may come back again in the next
    /// batch (reads overlap), never be left out.
    fn revocations_since<'a>(&'a self, cursor: u64, now: u64) -> StoreFuture<'a, RevocationBatch>;
    /// The live sessions of `user`, oldest first: its families that are neither revoked,
    /// past their absolute end, nor idle past their [`idle_secs`](RefreshRecord::idle_secs).
    /// (A family is idle from `last_seen_at + idle_secs` on: then it neither rotates nor
    /// steps up.)
    fn sessions<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<SessionInfo>>;

    /// Revokes session `family` if it is a live session of `user` (as
    /// [`sessions`](Store::sessions) lists it): [`Revoked`](FamilyRevocation::Revoked).
    /// Another user's family, an unknown, ended or idle one is
    /// [`Unknown`](FamilyRevocation::Unknown) and nothing changes; one revoked before is
    /// [`AlreadyRevoked`](FamilyRevocation::AlreadyRevoked).
    fn end_session<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation>;

    // Remembered devices, per user.

    /// Remembers device `id` of `user` until `expires_at`; a user with
    /// [`MAX_DEVICES_PER_USER`] live devices forgets the oldest first.
    fn device_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()>;

    /// Whether device `id` of `user` is remembered and live; if so its `last_used_at`
    /// becomes `now`.
    fn device_use<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool>;

    /// The live devices of `user`, oldest first.
    fn devices<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<DeviceInfo>>;

    /// Forgets device `id` of `user`. `true` if it was remembered and live.
    fn device_remove<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool>;

    /// Forgets every device of `user` (their factors changed).
    fn devices_clear<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, ()>;
}
