//! The Redis store (feature `redis`): one state for several replicas.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};

use crate::token::Claims;

use super::challenge::user_tag;

mod challenge;
#[cfg(feature = "redis-cluster")]
mod cluster;
mod connection;
mod dpop;
mod families;
mod feed;
mod revoked;
mod sessions;
#[cfg(feature = "redis-tls")]
mod tls;

use connection::{Connection, Subscribers};

use super::{
    AttemptPolicy, Attempts, ChallengeOutcome, ChallengeReservation, ChallengeSettlement,
    DeviceInfo, DpopUse, Elevation, FamilyRef, FamilyRevocation, LoginLimits, RefreshRecord,
    Reservation, RevocationBatch, Rotation, SessionInfo, Settlement, Store, StoreError,
    StoreFuture, TokenHash, LOGIN_RECORDS_PER_BUCKET, RESERVATION_SECS,
};
use crate::revocation::UserRevocations;

/// The default bound on one store operation (including reconnecting).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The default prefix of every key.
pub const DEFAULT_REDIS_PREFIX: &str = "stepup";

/// No key lives longer than this (400 days), whatever expiry it is given: a key that
/// never expires would let the keyspace grow without bound.
pub const MAX_TTL_SECS: u64 = 400 * 24 * 3600;

/// A [`Store`] in Redis, shared by every replica that uses the same server and prefix.
///
/// Every operation is one atomic command or one Lua script (or, listing sessions, one
/// read and then one pipeline), and every script's keys share one hash tag, so the
/// layout works unchanged on Redis Cluster: a script never spans two slots. A user's
/// attempts, TOTP step, spent challenges, refresh families and list of them are keys of
/// one slot, tagged `{T}` with `T` the user's tag (16 hex digits of the SHA-256 of the
/// user, [`FamilyRef::user_tag`]), so that one script decides a verify and one a
/// refresh: a verify costs 2 round trips (reserve an attempt unless the challenge is
/// spent; then spend the challenge and the code, settle the attempt and start or step
/// up the session), a refresh 1, a DPoP proof's single use 1. A refresh token carries
/// its user's tag and its family id, so no index finds its family.
///
/// Keys (`P` is the prefix, [`DEFAULT_REDIS_PREFIX`] unless set; it may not contain `{`
/// or `}`):
///
/// | key | holds |
/// | --- | --- |
/// | `P:used:<key>` | a key consumed with [`Store::consume`] |
/// | `P:used:{T}:<key>` | a challenge (`jti:<id>`) or recovery code spent by a verify |
/// | `P:att:{T}:<user>` | failed attempts and lockout of a user |
/// | `P:totp:{T}:<user>` | the last accepted TOTP step of a user |
/// | `P:val:<key>` | a short-lived value (a pending enrollment) |
/// | `P:fam:{T}:<family>` | a refresh family: its session, user, current token hash and the last [`REFRESH_HISTORY`](super::REFRESH_HISTORY) rotated ones, revocation, when it started and was last seen, its idle bound |
/// | `P:uf:{T}:<user>` | the user's live families, at most [`MAX_SESSIONS_PER_USER`](super::MAX_SESSIONS_PER_USER) |
/// | `P:dev:<user>` | the user's remembered devices, at most [`MAX_DEVICES_PER_USER`](super::MAX_DEVICES_PER_USER) |
/// | `P:dpop:{K}:<digest>` | the used DPoP proofs of one key (`<digest>` the hex SHA-256 of its thumbprint, `K` its first 16 digits): the SHA-256 of each `jti` scored by its expiry, at most [`MAX_DPOP_PROOFS_PER_KEY`](super::MAX_DPOP_PROOFS_PER_KEY) live |
/// | `P:login:<00–ff>` | login counters of accounts (by digest) and their clients, at most [`LOGIN_RECORDS_PER_BUCKET`] a bucket |
///
/// Every key carries a Redis expiry (the expiry of what it protects, at most
/// [`MAX_TTL_SECS`]); expiry decisions themselves are made against the `now` the caller
/// passes in, so the application's clock rules, as with [`MemoryStore`].
///
/// Each operation is bounded by a timeout ([`DEFAULT_REDIS_TIMEOUT`] unless set):
/// when Redis is down or slow, it fails with [`StoreError::Timeout`] or
/// [`StoreError::Unavailable`] and the endpoint answers 503. The connection is
/// re-established in the background when Redis returns; no restart is needed.
///
/// A `Timeout` means "unknown", not "not done": a command sent before Redis froze may
/// still be applied when it thaws (a token consumed although the request got 503). That
/// errs on the closed side.
///
/// Prefixes are not escaped: use prefixes that are not prefixes of one another plus
/// `:` (`app` and `app:used` could collide; `app-a` and `app-b` cannot).
///
/// # TLS and credentials
/// With feature `redis-tls`, `rediss://host:port` connects over TLS (rustls through the
/// redis crate), verifying the server's certificate against the system's roots, or only
/// against `RedisStoreBuilder::root_certificates` when given; there is no way to skip
/// verification. An ACL user and password go in the URL (`rediss://user:password@host`);
/// neither the URL nor the password appears in any error or `Debug` output.
///
/// rustls's crypto provider follows the signature backend (aws-lc-rs, or ring with
/// `rust-crypto` alone). The redis crate reads it from rustls's process default and
/// offers no way to pass it, so connecting to a `rediss://` URL installs the crate's
/// provider as the process default when none is installed; one the application
/// installed before is kept and used.
///
/// # Redis Cluster
/// With feature `redis-cluster`, `RedisStoreBuilder::connect_cluster` connects to a
/// cluster through the URLs of one or more of its nodes; the store is the same. Keys
/// are routed by slot; a script's keys are in one slot (one user's, by their hash tag),
/// and the revocation log, a user's revocations and the user's own keys are written
/// one command a key. The
/// timeout bounds every call; a master that stops answering makes its slots fail with
/// [`StoreError::Timeout`] until its replica takes over, after which the same store
/// serves again (a timed-out call makes it re-read the slot map in the background).
///
/// # Security
/// Single use lives in Redis: a Redis that loses its data (a restart without
/// persistence, a failover to a replica that lagged) forgets which challenges were
/// used within their short lifetime and who is locked out. Run it with persistence
/// (AOF) where that matters.
///
/// [`MemoryStore`]: super::MemoryStore
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    /// For the revocation feed's own pub/sub connection.
    subscribers: Subscribers,
    prefix: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisStore`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    timeout: Duration,
    #[cfg(feature = "redis-tls")]
    roots: Option<Vec<u8>>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisStoreBuilder");
        out.field("prefix", &self.prefix)
            .field("timeout", &self.timeout);
        #[cfg(feature = "redis-tls")]
        out.field("root_certificates", &self.roots.is_some());
        out.finish()
    }
}

impl RedisStore {
    /// Connects with the default prefix and timeout. `url` is a Redis URL:
    /// `redis://host:port/db`, `redis://:password@host` or, with an ACL user,
    /// `redis://user:password@host`; `rediss://…` (TLS) with feature `redis-tls`.
    ///
    /// Fails if Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// Connects to a Redis Cluster (feature `redis-cluster`) with the default prefix and
    /// timeout, through the URLs of one or more of its nodes: see
    /// [`RedisStoreBuilder::connect_cluster`].
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub async fn connect_cluster<I>(nodes: I) -> Result<Self, StoreError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().connect_cluster(nodes).await
    }

    /// A builder for a store with another prefix or timeout.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            #[cfg(feature = "redis-tls")]
            roots: None,
        }
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bound on one operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.prefix)
    }

    /// Key `rest` of kind `kind` in the slot of the user whose tag is `tag`.
    fn tagged(&self, kind: &str, tag: &str, rest: &str) -> String {
        tagged_key(&self.prefix, kind, tag, rest)
    }

    /// The key of `user`'s attempts.
    fn att_key(&self, user: &str) -> String {
        self.tagged("att", &user_tag(user), user)
    }

    /// The key of `user`'s last TOTP step.
    fn totp_key(&self, user: &str) -> String {
        self.tagged("totp", &user_tag(user), user)
    }

    /// Runs one Redis operation within the timeout.
    async fn run<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(redis_error(&e)),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        self.script_on(script, &[key], args).await
    }

    /// Runs `script` on `keys`, which must share one hash tag (one Cluster slot).
    async fn script_on<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        if !one_slot(keys) {
            return Err(StoreError::Unavailable(
                "redis: a script's keys are in different slots".to_owned(),
            ));
        }
        let mut conn = self.conn.clone();
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        self.run(invocation.invoke_async(&mut conn)).await
    }

    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        self.run(redis::cmd("GET").arg(key).query_async(&mut conn))
            .await
    }

    async fn delete_raw(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.run(redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}

impl RedisStore {
    /// The bucket key of an account's login counters, and the field of its counter for
    /// `client`.
    fn login_fields(&self, account: &str, client: &str) -> (String, String) {
        let bucket = self.key("login", account.get(..2).unwrap_or(account));
        (bucket, format!("{account}|{client}"))
    }
}

impl RedisStoreBuilder {
    /// The prefix of every key (default [`DEFAULT_REDIS_PREFIX`]). Replicas that must
    /// share state use the same prefix; unrelated deployments on one Redis use
    /// different ones. It may not contain `{` or `}` (a Redis Cluster hash tag: the
    /// store tags its keys itself), or [`connect`](Self::connect) fails.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on one operation, reconnecting included (default
    /// [`DEFAULT_REDIS_TIMEOUT`]). A request that needs the store answers 503 after at
    /// most about this long when Redis is down or slow.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trust only these roots for `rediss://` (PEM, one or more certificates: a
    /// company or test CA) instead of the system's. The URL must then be `rediss://`.
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots = Some(pem.into());
        self
    }

    /// Connects. Fails if the URL is invalid, Redis cannot be reached within the
    /// timeout, or refuses the TLS handshake or the credentials, and for a prefix with
    /// `{` or `}`. The errors name the kind of failure only, never the URL or its
    /// password.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        check_prefix(&self.prefix)?;
        let connected = connection::node(url, self.roots(), self.timeout).await?;
        Ok(self.store(connected))
    }

    /// Connects to a Redis Cluster (feature `redis-cluster`) through `nodes`, the URLs
    /// of one or more of its nodes (`redis://host:port`, or `rediss://` with feature
    /// `redis-tls`; one scheme and one ACL user and password for all). The other nodes
    /// and the slot map are found through the cluster. Fails as [`connect`](Self::connect)
    /// does, and when no node URL is given.
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub async fn connect_cluster<I>(self, nodes: I) -> Result<RedisStore, StoreError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        check_prefix(&self.prefix)?;
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        let connected = connection::cluster(&nodes, self.roots(), self.timeout).await?;
        Ok(self.store(connected))
    }

    /// The roots for `rediss://` (always `None` without feature `redis-tls`).
    fn roots(&self) -> Option<&[u8]> {
        #[cfg(feature = "redis-tls")]
        return self.roots.as_deref();
        #[cfg(not(feature = "redis-tls"))]
        None
    }

    fn store(self, (conn, subscribers): (Connection, Subscribers)) -> RedisStore {
        RedisStore {
            conn,
            subscribers,
            prefix: self.prefix.into(),
            timeout: self.timeout,
        }
    }
}

/// A prefix without `{` and `}`, which would make a hash tag of part of it: the keys of
/// one script could then land in different slots of a Redis Cluster.
fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.contains(['{', '}']) {
        return Err(StoreError::Unavailable(
            "redis: the key prefix may not contain '{' or '}'".to_owned(),
        ));
    }
    Ok(())
}

/// `P:kind:{tag}:rest`: a key in the slot of hash tag `tag`.
fn tagged_key(prefix: &str, kind: &str, tag: &str, rest: &str) -> String {
    format!("{prefix}:{kind}:{{{tag}}}:{rest}")
}

/// What Redis Cluster hashes of `key` to find its slot: the part between the first `{`
/// and the next `}` if that is not empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    let Some(open) = key.find('{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.find('}') {
        Some(len) if len > 0 => &rest[..len],
        _ => key,
    }
}

/// Whether `keys` are in one slot: they share one hash tag (or are one key).
fn one_slot(keys: &[&str]) -> bool {
    keys.split_first().is_none_or(|(first, rest)| {
        let tag = hash_tag(first);
        rest.iter().all(|k| hash_tag(k) == tag)
    })
}

/// Awaits `connecting` for at most `timeout`.
pub(super) async fn bounded<T>(
    timeout: Duration,
    connecting: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(redis_error(&e)),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// A Redis error, described by its kind only: messages may quote keys.
fn redis_error(e: &redis::RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable(format!("redis: {:?}", e.kind()))
    }
}

/// The logical expiry (capped at `now` + [`MAX_TTL_SECS`]) and the Redis TTL in
/// milliseconds for it (at least 1 s, so an already expired entry still disappears).
fn horizon(expires_at: u64, now: u64) -> (u64, u64) {
    let exp = expires_at.min(now.saturating_add(MAX_TTL_SECS));
    let ttl_secs = exp.saturating_sub(now).max(1);
    (exp, ttl_secs * 1000)
}

/// `expires_at` as 20 decimal digits, then `data`.
fn with_expiry(expires_at: u64, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{expires_at:020}").into_bytes();
    out.extend_from_slice(data);
    out
}

fn split_expiry(raw: &[u8]) -> Option<(u64, &[u8])> {
    if raw.len() < 20 {
        return None;
    }
    let (exp, data) = raw.split_at(20);
    let exp = std::str::from_utf8(exp).ok()?.parse().ok()?;
    Some((exp, data))
}

fn num(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The numbers the scripts answer with, and the settlements they are given: named once
/// here, and declared to every script under the same names by [`lua_codes`], so neither
/// side compares a bare number.
mod code {
    /// `CONSUME`, `ADVANCE_TOTP`: the key was newly consumed, the step is later.
    pub(super) const ACCEPTED: i64 = 1;
    /// `CONSUME`, `ADVANCE_TOTP`: already consumed, not a later step.
    pub(super) const REFUSED: i64 = 0;
    /// `FAMILY_CREATE`, `SETTLE_LOGIN`: done (they cannot refuse).
    pub(super) const DONE: i64 = 1;
    /// The reservation scripts: one attempt is reserved.
    pub(super) const GRANTED: i64 = 0;
    /// The reservation scripts: reservations in flight fill the remaining attempts.
    pub(super) const BUSY: i64 = 1;
    /// The reservation scripts: locked out (the second element says until when).
    pub(super) const LOCKED: i64 = 2;
    /// `RESERVE_CHALLENGE`: the challenge is spent, nothing reserved.
    pub(super) const SPENT: i64 = 3;
    /// Settlement argument: the reservation is given back unjudged.
    pub(super) const RELEASED: i64 = 0;
    /// Settlement argument: the proof was wrong.
    pub(super) const FAILED: i64 = 1;
    /// Settlement argument: the proof was right.
    pub(super) const SUCCEEDED: i64 = 2;
    /// The family scripts: no such family, past its end, or another user's.
    pub(super) const FAMILY_UNKNOWN: i64 = 0;
    /// The family scripts: rotated, elevated, revoked by this call.
    pub(super) const FAMILY_CHANGED: i64 = 1;
    /// `FAMILY_ROTATE`: a rotated token came back, the family is revoked now.
    /// `FAMILY_ELEVATE`, `FAMILY_REVOKE`: the family had been revoked already.
    pub(super) const FAMILY_REVOKED: i64 = 2;
    /// `FAMILY_ELEVATE`: the session was stepped up since the challenge was issued.
    pub(super) const FAMILY_SUPERSEDED: i64 = 3;
    /// `SETTLE_CHALLENGE`: the challenge had been spent, the attempt is given back.
    pub(super) const SETTLED_SPENT: i64 = 0;
    /// `SETTLE_CHALLENGE`: a failure recorded.
    pub(super) const SETTLED_FAILED: i64 = 1;
    /// `SETTLE_CHALLENGE`: right and fresh, everything spent and settled.
    pub(super) const SETTLED_SUCCEEDED: i64 = 2;
    /// Proof argument of `SETTLE_CHALLENGE`: it matched nothing.
    pub(super) const PROOF_WRONG: i64 = 0;
    /// Proof argument: it matched a TOTP step.
    pub(super) const PROOF_TOTP: i64 = 1;
    /// Proof argument: it matched a recovery code.
    pub(super) const PROOF_RECOVERY: i64 = 2;
    /// Session argument of `SETTLE_CHALLENGE`: no change.
    pub(super) const SESSION_NONE: i64 = 0;
    /// Session argument: start a family.
    pub(super) const SESSION_START: i64 = 1;
    /// Session argument: step a family up.
    pub(super) const SESSION_ELEVATE: i64 = 2;
    /// `USE_DPOP`: a proof new for its key, remembered now.
    pub(super) const DPOP_FRESH: i64 = 0;
    /// `USE_DPOP`: a proof its key used before (a replay).
    pub(super) const DPOP_REPLAYED: i64 = 1;
    /// `USE_DPOP`: the key has its bound of live proofs; nothing remembered.
    pub(super) const DPOP_TOO_MANY: i64 = 2;

    /// Every code by its Lua name.
    pub(super) const ALL: [(&str, i64); 26] = [
        ("ACCEPTED", ACCEPTED),
        ("REFUSED", REFUSED),
        ("DONE", DONE),
        ("GRANTED", GRANTED),
        ("BUSY", BUSY),
        ("LOCKED", LOCKED),
        ("SPENT", SPENT),
        ("RELEASED", RELEASED),
        ("FAILED", FAILED),
        ("SUCCEEDED", SUCCEEDED),
        ("FAMILY_UNKNOWN", FAMILY_UNKNOWN),
        ("FAMILY_CHANGED", FAMILY_CHANGED),
        ("FAMILY_REVOKED", FAMILY_REVOKED),
        ("FAMILY_SUPERSEDED", FAMILY_SUPERSEDED),
        ("SETTLED_SPENT", SETTLED_SPENT),
        ("SETTLED_FAILED", SETTLED_FAILED),
        ("SETTLED_SUCCEEDED", SETTLED_SUCCEEDED),
        ("PROOF_WRONG", PROOF_WRONG),
        ("PROOF_TOTP", PROOF_TOTP),
        ("PROOF_RECOVERY", PROOF_RECOVERY),
        ("SESSION_NONE", SESSION_NONE),
        ("SESSION_START", SESSION_START),
        ("SESSION_ELEVATE", SESSION_ELEVATE),
        ("DPOP_FRESH", DPOP_FRESH),
        ("DPOP_REPLAYED", DPOP_REPLAYED),
        ("DPOP_TOO_MANY", DPOP_TOO_MANY),
    ];
}

/// The Lua declarations of [`code`] (`local GRANTED = 0` …), the start of every script.
fn lua_codes() -> String {
    code::ALL
        .iter()
        .map(|(name, value)| format!("local {name} = {value}\n"))
        .collect()
}

/// A script: the code declarations, then `parts` in order.
fn script_text(parts: &[&str]) -> String {
    let mut text = lua_codes();
    text.extend(parts.iter().copied());
    text
}

// The scripts: libraries of functions that name their keys, and main parts that use
// `KEYS`. Every script's keys share one hash tag (`one_slot`); `ARGV[1]` is `now`
// wherever a script needs the time. Numbers come in as decimal strings and are compared
// with tonumber (exact below 2^53: every value here is a Unix time, a count or a step,
// capped by `horizon`).

/// `now`, for the scripts whose `ARGV[1]` is the time.
const NOW: &str = r"
local now = tonumber(ARGV[1])
";

/// Consumed keys: the value is the expiry (20 digits) then nothing. `used_live(key)`:
/// consumed and not expired; `used_consume(key, value, ttl)`: consumes it, false if it
/// was live.
const USED_LIB: &str = r"
local function used_live(key)
  local v = redis.call('GET', key)
  return v and tonumber(string.sub(v, 1, 20)) > now
end
local function used_consume(key, value, ttl)
  if used_live(key) then return false end
  redis.call('SET', key, value, 'PX', ttl)
  return true
end
";

/// ARGV: now, value (expiry + nothing), ttl ms. ACCEPTED if newly consumed, else
/// REFUSED.
const CONSUME: &str = r"
if used_consume(KEYS[1], ARGV[2], ARGV[3]) then return ACCEPTED end
return REFUSED
";

/// The attempt rules, as `attempt_state.rs` has them for the memory store: a state `a` of
/// `f` failures, `l` locked until (0 none), `e` when f/l are forgotten, `p` reservations
/// in flight, `q` when they are forgotten. Every script below starts with this.
const ATTEMPTS_LIB: &str = r"
local function att(f, l, e, p, q)
  local a = {f = 0, l = 0, e = 0, p = 0, q = 0}
  f, l, e, p, q = tonumber(f), tonumber(l), tonumber(e), tonumber(p), tonumber(q)
  if e and e > now and not (l and l > 0 and l <= now) then a.f = f; a.l = l; a.e = e end
  if q and q > now then a.p = p; a.q = q end
  return a
end
local function att_empty(a) return a.f == 0 and a.l == 0 and a.p == 0 end
local function att_keep(a) return math.max(a.e, a.q) end
local function att_check(a, max)
  if a.l > 0 then return LOCKED end
  if a.f + a.p >= tonumber(max) then return BUSY end
  return GRANTED
end
local function att_hold(a, pending_until) a.p = a.p + 1; a.q = tonumber(pending_until) end
-- settlement: RELEASED, FAILED or SUCCEEDED
local function att_settle(a, settlement, max, lock_until, window_until)
  settlement = tonumber(settlement)
  if a.p > 0 then a.p = a.p - 1 end
  if settlement == FAILED and a.l == 0 then
    a.f = a.f + 1
    if a.f >= tonumber(max) then a.l = tonumber(lock_until); a.e = a.l else a.e = tonumber(window_until) end
  elseif settlement == SUCCEEDED and a.l == 0 then
    a.f = 0; a.e = 0
  end
end
";

/// One user's state in the fields of a hash (`f l e p q`): `att_load(key)` reads it,
/// `att_save(key, a)` writes it back (or deletes the key when it holds nothing) with a
/// TTL to the later of `e`, `q`.
const ATTEMPTS_KEY: &str = r"
local function att_load(key)
  local h = redis.call('HMGET', key, 'f', 'l', 'e', 'p', 'q')
  return att(h[1], h[2], h[3], h[4], h[5])
end
local function att_save(key, a)
  if att_empty(a) then redis.call('DEL', key); return end
  redis.call('HSET', key, 'f', a.f, 'l', a.l, 'e', a.e, 'p', a.p, 'q', a.q)
  redis.call('PEXPIRE', key, math.max(att_keep(a) - now, 1) * 1000)
end
";

/// KEYS: the user's attempts. ARGV: now, max_attempts, pending_until. Returns
/// {GRANTED | BUSY, 0} or {LOCKED, locked_until}.
const RESERVE_ATTEMPT: &str = r"
local a = att_load(KEYS[1])
local answer = att_check(a, ARGV[2])
if answer == LOCKED then return {LOCKED, a.l} end
if answer == BUSY then return {BUSY, 0} end
att_hold(a, ARGV[3])
att_save(KEYS[1], a)
return {GRANTED, 0}
";

/// KEYS: the user's attempts. ARGV: now, settlement (RELEASED, FAILED, SUCCEEDED),
/// max_attempts, lock_until, window_until. Returns {failures, locked_until (0 = none)}.
const SETTLE_ATTEMPT: &str = r"
local a = att_load(KEYS[1])
att_settle(a, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
att_save(KEYS[1], a)
return {a.f, a.l}
";

/// A bucket of login counters (KEYS[1], a hash): field ARGV[2] the account's, ARGV[3]
/// its counter for one client, each `f:l:e:p:q`. `login_save` writes both back, making
/// room first (expired records go, then the unlocked, idle ones with the fewest
/// failures); false, and nothing written, when there is none.
const LOGIN_BUCKET: &str = r"
local function unpack_att(v)
  if not v then return att(nil) end
  local f, l, e, p, q = string.match(v, '^(%d+):(%d+):(%d+):(%d+):(%d+)$')
  return att(f, l, e, p, q)
end
local A = unpack_att(redis.call('HGET', KEYS[1], ARGV[2]))
local C = unpack_att(redis.call('HGET', KEYS[1], ARGV[3]))
local function login_save(cap)
  local new = 0
  for field, s in pairs({[ARGV[2]] = A, [ARGV[3]] = C}) do
    if not att_empty(s) and redis.call('HEXISTS', KEYS[1], field) == 0 then new = new + 1 end
  end
  local len = redis.call('HLEN', KEYS[1])
  if len + new > cap then
    local all = redis.call('HGETALL', KEYS[1])
    local victims = {}
    for i = 1, #all, 2 do
      local field, s = all[i], unpack_att(all[i + 1])
      if att_empty(s) then
        redis.call('HDEL', KEYS[1], field); len = len - 1
      elseif field ~= ARGV[2] and field ~= ARGV[3] and s.l == 0 and s.p == 0 then
        table.insert(victims, {field, s.f})
      end
    end
    table.sort(victims, function(x, y) return x[2] < y[2] end)
    local i = 1
    while len + new > cap do
      if not victims[i] then return false end
      redis.call('HDEL', KEYS[1], victims[i][1]); len = len - 1; i = i + 1
    end
  end
  local keep = 0
  for field, s in pairs({[ARGV[2]] = A, [ARGV[3]] = C}) do
    if att_empty(s) then
      redis.call('HDEL', KEYS[1], field)
    else
      redis.call('HSET', KEYS[1], field, string.format('%d:%d:%d:%d:%d', s.f, s.l, s.e, s.p, s.q))
      keep = math.max(keep, att_keep(s))
    end
  end
  local ttl = (keep - now) * 1000
  if ttl > redis.call('PTTL', KEYS[1]) then redis.call('PEXPIRE', KEYS[1], ttl) end
  return true
end
";

/// ARGV: now, account field, client field, account max, client max, pending_until,
/// bucket bound. Returns {GRANTED | BUSY, 0} or {LOCKED, locked_until}.
const RESERVE_LOGIN: &str = r"
local ra, rc = att_check(A, ARGV[4]), att_check(C, ARGV[5])
if ra == LOCKED or rc == LOCKED then
  return {LOCKED, math.max(A.l, C.l)}
end
if ra == BUSY or rc == BUSY then return {BUSY, 0} end
att_hold(A, ARGV[6]); att_hold(C, ARGV[6])
if not login_save(tonumber(ARGV[7])) then return {BUSY, 0} end
return {GRANTED, 0}
";

/// ARGV: now, account field, client field, settlement, bucket bound, then max,
/// lock_until, window_until of the account and of the client. Returns DONE.
const SETTLE_LOGIN: &str = r"
att_settle(A, ARGV[4], ARGV[6], ARGV[7], ARGV[8])
att_settle(C, ARGV[4], ARGV[9], ARGV[10], ARGV[11])
login_save(tonumber(ARGV[5]))
return DONE
";

/// A reservation script's reply. Anything but GRANTED and BUSY is a lockout (fails
/// closed).
fn reservation(outcome: i64, until: u64) -> Reservation {
    match outcome {
        code::GRANTED => Reservation::Granted,
        code::BUSY => Reservation::Busy,
        _ => Reservation::Locked { until },
    }
}

/// A policy's max attempts, lockout end and window end from `now`, as script arguments.
fn policy_args(policy: AttemptPolicy, now: u64) -> [Vec<u8>; 3] {
    let (lock_until, _) = horizon(now.saturating_add(policy.lockout_secs), now);
    let (window_until, _) = horizon(now.saturating_add(policy.window_secs), now);
    [
        num(policy.max_attempts.into()),
        num(lock_until),
        num(window_until),
    ]
}

/// [`SETTLE_ATTEMPT`]'s and [`SETTLE_LOGIN`]'s settlement argument.
fn settlement_arg(settlement: Settlement) -> Vec<u8> {
    let code = match settlement {
        Settlement::Released => code::RELEASED,
        Settlement::Failed => code::FAILED,
        Settlement::Succeeded => code::SUCCEEDED,
    };
    code.to_string().into_bytes()
}

/// A user's last accepted TOTP step in a hash (`s` the step, `e` until when it is
/// remembered): `totp_advance(key, step, expires_at, ttl)` accepts `step` only if it is
/// later than the last one (true), and remembers it.
const TOTP_LIB: &str = r"
local function totp_advance(key, step, exp, ttl)
  local h = redis.call('HMGET', key, 's', 'e')
  if h[1] and tonumber(h[2]) > now and tonumber(h[1]) >= tonumber(step) then return false end
  redis.call('HSET', key, 's', step, 'e', exp)
  redis.call('PEXPIRE', key, ttl)
  return true
end
";

/// KEYS: the user's TOTP step. ARGV: now, step, expires_at, ttl ms. ACCEPTED if the
/// step is later than the last one, else REFUSED.
const ADVANCE_TOTP: &str = r"
if totp_advance(KEYS[1], ARGV[2], ARGV[3], ARGV[4]) then return ACCEPTED end
return REFUSED
";

struct Scripts {
    consume: Script,
    reserve_attempt: Script,
    settle_attempt: Script,
    reserve_login: Script,
    settle_login: Script,
    advance_totp: Script,
}

/// The parts of every script of this file, as [`scripts`] joins them.
fn script_parts() -> [&'static [&'static str]; 6] {
    [
        &[NOW, USED_LIB, CONSUME],
        &[NOW, ATTEMPTS_LIB, ATTEMPTS_KEY, RESERVE_ATTEMPT],
        &[NOW, ATTEMPTS_LIB, ATTEMPTS_KEY, SETTLE_ATTEMPT],
        &[NOW, ATTEMPTS_LIB, LOGIN_BUCKET, RESERVE_LOGIN],
        &[NOW, ATTEMPTS_LIB, LOGIN_BUCKET, SETTLE_LOGIN],
        &[NOW, TOTP_LIB, ADVANCE_TOTP],
    ]
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let [consume, reserve_attempt, settle_attempt, reserve_login, settle_login, totp] =
            script_parts().map(|p| Script::new(&script_text(p)));
        Scripts {
            consume,
            reserve_attempt,
            settle_attempt,
            reserve_login,
            settle_login,
            advance_totp: totp,
        }
    })
}

impl Store for RedisStore {
    fn consume<'a>(&'a self, key: &'a str, expires_at: u64, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let (exp, ttl) = horizon(expires_at, now);
            let n: i64 = self
                .script(
                    &scripts().consume,
                    &self.key("used", key),
                    &[&num(now), &with_expiry(exp, b""), &num(ttl)],
                )
                .await?;
            Ok(n == code::ACCEPTED)
        })
    }

    fn is_consumed<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let raw = self.get_raw(&self.key("used", key)).await?;
            Ok(raw
                .as_deref()
                .and_then(split_expiry)
                .is_some_and(|(exp, _)| exp > now))
        })
    }

    fn release<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.delete_raw(&self.key("used", key)).await })
    }

    fn use_dpop_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, DpopUse> {
        Box::pin(self.dpop_use(jkt, jti, expires_at, now))
    }

    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (f, l, e): (Option<u64>, Option<u64>, Option<u64>) = self
                .run(
                    redis::cmd("HMGET")
                        .arg(self.att_key(user))
                        .arg(&["f", "l", "e"])
                        .query_async(&mut conn),
                )
                .await?;
            let live = e.is_some_and(|e| e > now);
            let locked_until = l.filter(|l| live && *l > 0);
            Ok(match (live, locked_until) {
                (false, _) => Attempts::default(),
                // The lockout has run out: the slate is clean.
                (true, Some(until)) if until <= now => Attempts::default(),
                (true, locked_until) => Attempts {
                    failures: f.unwrap_or(0).try_into().unwrap_or(u32::MAX),
                    locked_until,
                },
            })
        })
    }

    fn reserve_attempt<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        Box::pin(async move {
            let (pending_until, _) = horizon(now.saturating_add(RESERVATION_SECS), now);
            let (outcome, until): (i64, u64) = self
                .script(
                    &scripts().reserve_attempt,
                    &self.att_key(key),
                    &[
                        &num(now),
                        &num(policy.max_attempts.into()),
                        &num(pending_until),
                    ],
                )
                .await?;
            Ok(reservation(outcome, until))
        })
    }

    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        settlement: Settlement,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Attempts> {
        Box::pin(async move {
            let [max, lock_until, window_until] = policy_args(policy, now);
            let (failures, locked): (u64, u64) = self
                .script(
                    &scripts().settle_attempt,
                    &self.att_key(key),
                    &[
                        &num(now),
                        &settlement_arg(settlement),
                        &max,
                        &lock_until,
                        &window_until,
                    ],
                )
                .await?;
            Ok(Attempts {
                failures: failures.try_into().unwrap_or(u32::MAX),
                locked_until: (locked > 0).then_some(locked),
            })
        })
    }

    fn reserve_challenge<'a>(
        &'a self,
        user: &'a str,
        challenge: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, ChallengeReservation> {
        Box::pin(self.challenge_reserve(user, challenge, policy, now))
    }

    fn settle_challenge<'a>(
        &'a self,
        settlement: &'a ChallengeSettlement,
        now: u64,
    ) -> StoreFuture<'a, ChallengeOutcome> {
        Box::pin(self.challenge_settle(settlement, now))
    }

    fn reserve_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        Box::pin(async move {
            let (bucket, field) = self.login_fields(account, client);
            let (pending_until, _) = horizon(now.saturating_add(RESERVATION_SECS), now);
            let (outcome, until): (i64, u64) = self
                .script(
                    &scripts().reserve_login,
                    &bucket,
                    &[
                        &num(now),
                        account.as_bytes(),
                        field.as_bytes(),
                        &num(limits.per_account.max_attempts.into()),
                        &num(limits.per_client.max_attempts.into()),
                        &num(pending_until),
                        &num(LOGIN_RECORDS_PER_BUCKET as u64),
                    ],
                )
                .await?;
            Ok(reservation(outcome, until))
        })
    }

    fn settle_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (bucket, field) = self.login_fields(account, client);
            let [a_max, a_lock, a_window] = policy_args(limits.per_account, now);
            let [c_max, c_lock, c_window] = policy_args(limits.per_client, now);
            self.script::<i64>(
                &scripts().settle_login,
                &bucket,
                &[
                    &num(now),
                    account.as_bytes(),
                    field.as_bytes(),
                    &settlement_arg(settlement),
                    &num(LOGIN_RECORDS_PER_BUCKET as u64),
                    &a_max,
                    &a_lock,
                    &a_window,
                    &c_max,
                    &c_lock,
                    &c_window,
                ],
            )
            .await
            .map(drop)
        })
    }

    fn advance_totp_step<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let (exp, ttl) = horizon(expires_at, now);
            let n: i64 = self
                .script(
                    &scripts().advance_totp,
                    &self.totp_key(user),
                    &[&num(now), &num(step), &num(exp), &num(ttl)],
                )
                .await?;
            Ok(n == code::ACCEPTED)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (exp, ttl) = horizon(expires_at, now);
            self.run(
                redis::cmd("SET")
                    .arg(self.key("val", key))
                    .arg(with_expiry(exp, &value))
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<Value>(&mut conn),
            )
            .await
            .map(drop)
        })
    }

    fn get<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let raw = self.get_raw(&self.key("val", key)).await?;
            Ok(raw
                .as_deref()
                .and_then(split_expiry)
                .and_then(|(exp, v)| (exp > now).then(|| v.to_vec())))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.delete_raw(&self.key("val", key)).await })
    }

    fn refresh_create<'a>(
        &'a self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.family_create(token, record, now))
    }

    fn refresh_rotate<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        Box::pin(self.family_rotate(family, token, new_token, now))
    }

    fn refresh_revoke<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n = self.family_revoke(family, sub, Some(&token), now).await?;
            Ok(n == code::FAMILY_CHANGED)
        })
    }

    fn revoke_family<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation> {
        Box::pin(async move {
            let at = FamilyRef::new(user, family);
            Ok(match self.family_revoke(&at, user, None, now).await? {
                code::FAMILY_CHANGED => FamilyRevocation::Revoked,
                code::FAMILY_REVOKED => FamilyRevocation::AlreadyRevoked,
                _ => FamilyRevocation::Unknown,
            })
        })
    }

    fn refresh_elevate<'a>(
        &'a self,
        family: &'a str,
        new_token: TokenHash,
        session: Claims,
        issued_at: u64,
        now: u64,
    ) -> StoreFuture<'a, Elevation> {
        Box::pin(self.family_elevate(family, new_token, session, issued_at, now))
    }

    fn revoke_sessions<'a>(
        &'a self,
        revoked: &'a UserRevocations,
        now: u64,
    ) -> StoreFuture<'a, UserRevocations> {
        Box::pin(self.record_revocations(revoked, now))
    }

    fn revocations_since<'a>(&'a self, cursor: u64, now: u64) -> StoreFuture<'a, RevocationBatch> {
        Box::pin(self.read_revocations(cursor, now))
    }

    fn sessions<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<SessionInfo>> {
        Box::pin(self.sessions_of(user, now))
    }

    fn end_session<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation> {
        Box::pin(self.end_session_of(user, family, now))
    }

    fn device_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.device_add_of(user, id, expires_at, now))
    }

    fn device_use<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(self.device_use_of(user, id, now))
    }

    fn devices<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<DeviceInfo>> {
        Box::pin(self.devices_of(user, now))
    }

    fn device_remove<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(self.device_remove_of(user, id, now))
    }

    fn devices_clear<'a>(&'a self, user: &'a str, _now: u64) -> StoreFuture<'a, ()> {
        Box::pin(self.devices_clear_of(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JudgedProof;

    #[test]
    fn expiry_round_trips() {
        let raw = with_expiry(1_795_000_000, b"family-1");
        assert_eq!(split_expiry(&raw), Some((1_795_000_000, &b"family-1"[..])));
        assert_eq!(
            split_expiry(&with_expiry(u64::MAX, b"")),
            Some((u64::MAX, &b""[..]))
        );
        assert_eq!(split_expiry(b"short"), None);
        assert_eq!(split_expiry(b"0000000000000000000x"), None);
    }

    #[test]
    fn horizon_caps_and_floors() {
        assert_eq!(horizon(1300, 1000), (1300, 300_000));
        assert_eq!(horizon(900, 1000), (900, 1000));
        assert_eq!(
            horizon(u64::MAX, 1000),
            (1000 + MAX_TTL_SECS, MAX_TTL_SECS * 1000)
        );
    }

    /// Every script's text, as the store loads it.
    fn all_scripts() -> Vec<String> {
        let families = families::script_parts();
        let challenges = challenge::script_parts();
        script_parts()
            .iter()
            .copied()
            .chain(families.iter().map(|p| &p[..]))
            .chain(challenges.iter().map(Vec::as_slice))
            .chain(sessions::script_parts())
            .chain(dpop::script_parts())
            .map(script_text)
            .chain(revoked::texts())
            .collect()
    }

    /// The highest `KEYS[n]` a script reads.
    fn keys_read(script: &str) -> usize {
        (1..10)
            .filter(|n| script.contains(&format!("KEYS[{n}]")))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn hash_tags_follow_the_redis_cluster_rule() {
        // The examples of the Redis Cluster specification.
        assert_eq!(hash_tag("{user1000}.following"), "user1000");
        assert_eq!(hash_tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(hash_tag("foo{{bar}}zap"), "{bar");
        assert_eq!(hash_tag("foo{bar}{zap}"), "bar");
        assert_eq!(hash_tag("no-tag"), "no-tag");
        assert!(one_slot(&[]) && one_slot(&["a"]) && !one_slot(&["a", "b"]));
        assert!(one_slot(&["x{t}1", "y{t}2"]));
        assert_eq!(
            tagged_key("stepup", "fam", "0123456789abcdef", "f-1"),
            "stepup:fam:{0123456789abcdef}:f-1"
        );
        assert!(check_prefix("app-1:stepup").is_ok());
        for bad in ["a{b", "a}b", "{x}"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_scripts_keys_share_one_hash_tag() {
        // Redis Cluster runs a script only if its keys share one slot. A script reads
        // one key, or several built from one user's tag by the functions the store uses
        // (whatever the user and the rest of each key hold).
        let many: Vec<String> = all_scripts()
            .into_iter()
            .filter(|s| keys_read(s) > 1)
            .collect();
        let reads: Vec<usize> = many.iter().map(|s| keys_read(s)).collect();
        assert_eq!(
            reads,
            [2, 2, 5],
            "family create, reserve and settle a challenge"
        );
        for script in all_scripts() {
            assert!(keys_read(&script) >= 1, "{script}");
        }
        for user in ["alice", "", "a}b{c", "{x}", "}{", "ü:{}", "user{1}"] {
            for family in ["", "f-1", "{f}", "}"] {
                let fam = families::family_keys("stepup", user, family);
                let [a, b, prefix] = fam.each_ref().map(String::as_str);
                assert!(one_slot(&[a, b]), "{user:?} {family:?}");
                assert!(one_slot(&[a, &format!("{prefix}{family}-evicted")]));
                let proofs = [
                    JudgedProof::Wrong,
                    JudgedProof::TotpStep {
                        step: 1,
                        forget_at: 2,
                    },
                    JudgedProof::Once {
                        key: format!("rc:{user}:{{h}}"),
                        forget_at: 2,
                    },
                ];
                for proof in &proofs {
                    let keys =
                        challenge::ChallengeKeys::new("stepup", user, "jti:{j}", proof, family);
                    assert!(one_slot(&keys.all()), "{user:?} {family:?} {proof:?}");
                    assert!(one_slot(&[keys.attempts.as_str(), a]));
                    assert_eq!(keys.family, a);
                    assert_eq!(keys.families, b);
                }
            }
        }
    }

    #[test]
    fn scripts_answer_with_named_codes() {
        // Every script starts with the declarations of the codes, and returns none of
        // them as a bare number.
        let declared = lua_codes();
        assert!(declared.contains("local LOCKED = 2\n"), "{declared}");
        assert!(
            declared.contains("local FAMILY_SUPERSEDED = 3\n"),
            "{declared}"
        );
        let bare = ["return 0", "return 1", "return 2", "return 3"];
        for script in all_scripts() {
            assert!(script.starts_with(&declared));
            for line in script.lines() {
                let line = line.replace('{', "");
                assert!(!bare.iter().any(|b| line.contains(b)), "{line}");
                assert!(!line.contains("settlement == '"), "{line}");
            }
        }
    }

    #[test]
    fn codes_are_distinct_within_each_reply() {
        use code::*;
        for group in [
            &[ACCEPTED, REFUSED][..],
            &[GRANTED, BUSY, LOCKED, SPENT],
            &[RELEASED, FAILED, SUCCEEDED],
            &[
                FAMILY_UNKNOWN,
                FAMILY_CHANGED,
                FAMILY_REVOKED,
                FAMILY_SUPERSEDED,
            ],
            &[SETTLED_SPENT, SETTLED_FAILED, SETTLED_SUCCEEDED],
            &[PROOF_WRONG, PROOF_TOTP, PROOF_RECOVERY],
            &[SESSION_NONE, SESSION_START, SESSION_ELEVATE],
            &[DPOP_FRESH, DPOP_REPLAYED, DPOP_TOO_MANY],
        ] {
            let mut sorted = group.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), group.len(), "{group:?}");
        }
        let mut names: Vec<_> = ALL.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
