//! The Redis store (feature `redis`): one state for several replicas.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};

use crate::factor::recovery::hex;
use crate::token::Claims;

use super::record::{session_json, StoredRecord};

#[cfg(feature = "redis-cluster")]
mod cluster;
mod connection;
mod feed;
mod revoked;
mod sessions;
#[cfg(feature = "redis-tls")]
mod tls;

use connection::{Connection, Subscribers};

use super::{
    AttemptPolicy, Attempts, DeviceInfo, Elevation, FamilyRevocation, LoginLimits, RefreshRecord,
    Reservation, RevocationBatch, Rotation, SessionInfo, Settlement, Store, StoreError,
    StoreFuture, TokenHash, LOGIN_RECORDS_PER_BUCKET, MAX_SESSIONS_PER_USER, REFRESH_HISTORY,
    RESERVATION_SECS,
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
/// Every operation is one atomic command or one Lua script, and every script touches
/// exactly one key, so the layout works unchanged on Redis Cluster: a script never
/// spans two slots. (Rotating a refresh token reads the token's family, written once
/// and never changed, and then decides in one script on the family's key.)
///
/// Keys (`P` is the prefix, [`DEFAULT_REDIS_PREFIX`] unless set):
///
/// | key | holds |
/// | --- | --- |
/// | `P:used:<key>` | a consumed token id or recovery code |
/// | `P:att:<user>` | failed attempts and lockout of a user |
/// | `P:totp:<user>` | the last accepted TOTP step of a user |
/// | `P:val:<key>` | a short-lived value (a pending enrollment) |
/// | `P:rt:<sha256 hex>` | the family of a refresh token (only its hash is stored) |
/// | `P:fam:<family>` | a refresh family: its session, current token, the last [`REFRESH_HISTORY`] rotated ones, revocation, when it started and was last seen, its idle bound |
/// | `P:uf:<user>` | the user's live families, at most [`MAX_SESSIONS_PER_USER`] |
/// | `P:dev:<user>` | the user's remembered devices, at most [`MAX_DEVICES_PER_USER`](super::MAX_DEVICES_PER_USER) |
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
/// are routed by slot; operations that touch several keys send one command a key. The
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
        let mut conn = self.conn.clone();
        let mut invocation = script.key(key);
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

    /// Reads the family a refresh token belongs to, if the token is known and live.
    async fn token_family(
        &self,
        token: &TokenHash,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        let Some(raw) = self.get_raw(&self.key("rt", &hex(token))).await? else {
            return Ok(None);
        };
        Ok(split_expiry(&raw)
            .filter(|(exp, _)| *exp > now)
            .and_then(|(_, family)| String::from_utf8(family.to_vec()).ok()))
    }

    async fn put_token(
        &self,
        token: &TokenHash,
        family: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (exp, ttl) = horizon(expires_at, now);
        let value = with_expiry(exp, family.as_bytes());
        self.run(
            redis::cmd("SET")
                .arg(self.key("rt", &hex(token)))
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query_async::<Value>(&mut conn),
        )
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

    async fn hget(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        self.run(
            redis::cmd("HGET")
                .arg(key)
                .arg(field)
                .query_async(&mut conn),
        )
        .await
    }

    /// Deletes the family index of a token forgotten by its family ('' = none).
    async fn forget_token(&self, token_hex: &[u8]) -> Result<(), StoreError> {
        match std::str::from_utf8(token_hex) {
            Ok(hex) if !hex.is_empty() => self.delete_raw(&self.key("rt", hex)).await,
            _ => Ok(()),
        }
    }

    /// Deletes a family ended to make room, with the index keys of its tokens. (One key
    /// a command: on a cluster they live in different slots.)
    async fn drop_family(&self, family: &str) -> Result<(), StoreError> {
        let family_key = self.key("fam", family);
        let mut conn = self.conn.clone();
        let (current, history): (Option<String>, Option<String>) = self
            .run(
                redis::cmd("HMGET")
                    .arg(&family_key)
                    .arg(&["c", "h"])
                    .query_async(&mut conn),
            )
            .await?;
        self.delete_raw(&family_key).await?;
        let history = history.unwrap_or_default();
        let tokens = history
            .as_bytes()
            .chunks(64)
            .chain(current.as_deref().map(str::as_bytes));
        for token in tokens {
            self.forget_token(token).await?;
        }
        Ok(())
    }
}

/// The first element of a script's reply, a code (`FAMILY_UNKNOWN` when absent).
fn reply_int(reply: &[Value]) -> Result<i64, StoreError> {
    match reply.first() {
        Some(v) => redis::from_redis_value(v.clone()).map_err(|e| redis_error(&e.into())),
        None => Ok(code::FAMILY_UNKNOWN),
    }
}

/// Element `i` of a script's reply, as bytes (empty when absent).
fn reply_bytes(reply: &[Value], i: usize) -> Result<Vec<u8>, StoreError> {
    reply
        .get(i)
        .cloned()
        .map(redis::from_redis_value)
        .transpose()
        .map_err(|e| redis_error(&e.into()))
        .map(Option::unwrap_or_default)
}

/// A refresh record as stored (JSON).
fn decode_record(raw: &[u8]) -> Result<StoredRecord, StoreError> {
    serde_json::from_slice(raw)
        .map_err(|_| StoreError::Unavailable("refresh record decoding".to_owned()))
}

/// A refresh record to store (JSON).
fn encode_record(record: &StoredRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record)
        .map_err(|_| StoreError::Unavailable("refresh record encoding".to_owned()))
}

/// The refresh record in the second element of a script's reply, as stored.
fn reply_record(reply: &[Value]) -> Result<StoredRecord, StoreError> {
    decode_record(&reply_bytes(reply, 1)?)
}

impl RedisStoreBuilder {
    /// The prefix of every key (default [`DEFAULT_REDIS_PREFIX`]). Replicas that must
    /// share state use the same prefix; unrelated deployments on one Redis use
    /// different ones.
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
    /// timeout, or refuses the TLS handshake or the credentials. The errors name the
    /// kind of failure only, never the URL or its password.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
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
    /// Settlement argument: the reservation is given back unjudged.
    pub(super) const RELEASED: i64 = 0;
    /// Settlement argument: the proof was wrong.
    pub(super) const FAILED: i64 = 1;
    /// Settlement argument: the proof was right.
    pub(super) const SUCCEEDED: i64 = 2;
    /// The family scripts: no such family, past its end, or (revoke) another user's.
    pub(super) const FAMILY_UNKNOWN: i64 = 0;
    /// The family scripts: rotated, elevated, revoked by this call.
    pub(super) const FAMILY_CHANGED: i64 = 1;
    /// `FAMILY_ROTATE`: a rotated token came back, the family is revoked now.
    /// `FAMILY_ELEVATE`, `FAMILY_REVOKE`: the family had been revoked already.
    pub(super) const FAMILY_REVOKED: i64 = 2;
    /// `FAMILY_ELEVATE`: the session was stepped up since the challenge was issued.
    pub(super) const FAMILY_SUPERSEDED: i64 = 3;

    /// Every code by its Lua name.
    pub(super) const ALL: [(&str, i64); 13] = [
        ("ACCEPTED", ACCEPTED),
        ("REFUSED", REFUSED),
        ("DONE", DONE),
        ("GRANTED", GRANTED),
        ("BUSY", BUSY),
        ("LOCKED", LOCKED),
        ("RELEASED", RELEASED),
        ("FAILED", FAILED),
        ("SUCCEEDED", SUCCEEDED),
        ("FAMILY_UNKNOWN", FAMILY_UNKNOWN),
        ("FAMILY_CHANGED", FAMILY_CHANGED),
        ("FAMILY_REVOKED", FAMILY_REVOKED),
        ("FAMILY_SUPERSEDED", FAMILY_SUPERSEDED),
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

// The scripts. Each touches KEYS[1] only. Numbers come in as decimal strings and are
// compared with tonumber (exact below 2^53: every value here is a Unix time, a count or
// a step, capped by `horizon`).

/// ARGV: now, value (expiry + nothing), ttl ms. ACCEPTED if newly consumed, else
/// REFUSED.
const CONSUME: &str = r"
local v = redis.call('GET', KEYS[1])
if v and tonumber(string.sub(v, 1, 20)) > tonumber(ARGV[1]) then return REFUSED end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ACCEPTED
";

/// The attempt rules, as `attempt_state.rs` has them for the memory store: a state `a` of
/// `f` failures, `l` locked until (0 none), `e` when f/l are forgotten, `p` reservations
/// in flight, `q` when they are forgotten. Every script below starts with this.
const ATTEMPTS_LIB: &str = r"
local now = tonumber(ARGV[1])
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

/// One user's state in the fields of KEYS[1] (`f l e p q`); `attempts_save` writes it
/// back (or deletes the key when it holds nothing) with a TTL to the later of `e`, `q`.
const ATTEMPTS_KEY: &str = r"
local h = redis.call('HMGET', KEYS[1], 'f', 'l', 'e', 'p', 'q')
local a = att(h[1], h[2], h[3], h[4], h[5])
local function attempts_save()
  if att_empty(a) then redis.call('DEL', KEYS[1]); return end
  redis.call('HSET', KEYS[1], 'f', a.f, 'l', a.l, 'e', a.e, 'p', a.p, 'q', a.q)
  redis.call('PEXPIRE', KEYS[1], math.max(att_keep(a) - now, 1) * 1000)
end
";

/// ARGV: now, max_attempts, pending_until. Returns {GRANTED | BUSY, 0} or
/// {LOCKED, locked_until}.
const RESERVE_ATTEMPT: &str = r"
local answer = att_check(a, ARGV[2])
if answer == LOCKED then return {LOCKED, a.l} end
if answer == BUSY then return {BUSY, 0} end
att_hold(a, ARGV[3])
attempts_save()
return {GRANTED, 0}
";

/// ARGV: now, settlement (RELEASED, FAILED, SUCCEEDED), max_attempts, lock_until, window_until.
/// Returns {failures, locked_until (0 = none)}.
const SETTLE_ATTEMPT: &str = r"
att_settle(a, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
attempts_save()
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

/// ARGV: now, step, expires_at, ttl ms. ACCEPTED if the step is later than the last
/// one, else REFUSED.
const ADVANCE_TOTP: &str = r"
local h = redis.call('HMGET', KEYS[1], 's', 'e')
if h[1] and tonumber(h[2]) > tonumber(ARGV[1]) and tonumber(h[1]) >= tonumber(ARGV[2]) then
  return REFUSED
end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return ACCEPTED
";

/// ARGV: record JSON, sub, current token hex, expires_at, ttl ms, now, idle bound (0:
/// none). Returns DONE.
const FAMILY_CREATE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[1], 's', ARGV[2], 'c', ARGV[3], 'x', 0, 'e', ARGV[4])
redis.call('HSET', KEYS[1], 't', ARGV[6], 'l', ARGV[6], 'i', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return DONE
";

/// Shared by the two scripts below: makes ARGV[3] the current token of the family in
/// KEYS[1] and ARGV[1] (now) its last seen time `l`; the old one joins the history `h`
/// (64 hex digits a token, oldest first), and the oldest past ARGV[4] tokens is returned
/// for its index key to be deleted ('' if none).
const FAMILY_ADVANCE: &str = r"
local function family_advance(old)
  local hist = (redis.call('HGET', KEYS[1], 'h') or '') .. old
  local forgotten = ''
  if #hist > 64 * tonumber(ARGV[4]) then
    forgotten = string.sub(hist, 1, 64); hist = string.sub(hist, 65)
  end
  redis.call('HSET', KEYS[1], 'c', ARGV[3], 'h', hist, 'l', ARGV[1])
  return forgotten
end
";

/// ARGV: now, presented token hex, new token hex, history bound.
/// Returns {FAMILY_CHANGED, record, forgotten} (rotated), {FAMILY_REVOKED, record} (a
/// rotated token came back: revoked now), or {FAMILY_UNKNOWN} (unknown, ended, revoked,
/// idle).
const FAMILY_ROTATE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'r', 'c', 'x', 'e', 'l', 'i')
if not h[1] or tonumber(h[4]) <= tonumber(ARGV[1]) or h[3] == '1' or family_idle(h[5], h[6]) then
  return {FAMILY_UNKNOWN}
end
if h[2] ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'x', 1)
  return {FAMILY_REVOKED, h[1]}
end
return {FAMILY_CHANGED, h[1], family_advance(h[2])}
";

/// ARGV: now, record JSON (the new session), new token hex, history bound, issued_at.
/// Returns {FAMILY_CHANGED, record, forgotten} (elevated), {FAMILY_REVOKED} (ended),
/// {FAMILY_SUPERSEDED}, or {FAMILY_UNKNOWN} (also idle).
const FAMILY_ELEVATE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'c', 'x', 'e', 'u', 'l', 'i')
if not h[1] or tonumber(h[3]) <= tonumber(ARGV[1]) or family_idle(h[5], h[6]) then
  return {FAMILY_UNKNOWN}
end
if h[2] == '1' then return {FAMILY_REVOKED} end
if tonumber(h[4] or '0') >= tonumber(ARGV[5]) then return {FAMILY_SUPERSEDED} end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'u', ARGV[1])
return {FAMILY_CHANGED, ARGV[2], family_advance(h[1])}
";

/// On a user's set of families (KEYS[1], scored by their end). ARGV: now, family,
/// expires_at, bound, ttl ms. Forgets ended families, adds this one, and returns the
/// oldest ones past the bound (removed from the set), for their keys to be deleted.
///
/// Families started in the same second end in the same second, and Redis orders equal
/// scores by member, i.e. by the random family id: a new family that ends no later than
/// the newest one in the set is scored 1/1024 s after it, so the set stays in order of
/// creation and the oldest is the one ended. (Exact in a double: 2^-10 steps on a Unix
/// time; `%.17g` writes the score back without rounding.)
const USER_FAMILIES: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local score = tonumber(ARGV[3])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= score then score = tonumber(newest[2]) + 1 / 1024 end
redis.call('ZADD', KEYS[1], string.format('%.17g', score), ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if over <= 0 then return {} end
local evicted = {}
for i, v in ipairs(redis.call('ZPOPMIN', KEYS[1], over)) do
  if i % 2 == 1 then table.insert(evicted, v) end
end
return evicted
";

/// ARGV: now, sub ('' = anyone). FAMILY_CHANGED if this call revoked the family,
/// FAMILY_REVOKED if it had been revoked already, else FAMILY_UNKNOWN.
const FAMILY_REVOKE: &str = r"
local h = redis.call('HMGET', KEYS[1], 's', 'x', 'e')
if not h[1] or tonumber(h[3]) <= tonumber(ARGV[1]) then return FAMILY_UNKNOWN end
if ARGV[2] ~= '' and h[1] ~= ARGV[2] then return FAMILY_UNKNOWN end
if h[2] == '1' then return FAMILY_REVOKED end
redis.call('HSET', KEYS[1], 'x', 1)
return FAMILY_CHANGED
";

struct Scripts {
    consume: Script,
    reserve_attempt: Script,
    settle_attempt: Script,
    reserve_login: Script,
    settle_login: Script,
    advance_totp: Script,
    family_create: Script,
    family_rotate: Script,
    family_elevate: Script,
    user_families: Script,
    family_revoke: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        consume: Script::new(&script_text(&[CONSUME])),
        reserve_attempt: Script::new(&script_text(&[ATTEMPTS_LIB, ATTEMPTS_KEY, RESERVE_ATTEMPT])),
        settle_attempt: Script::new(&script_text(&[ATTEMPTS_LIB, ATTEMPTS_KEY, SETTLE_ATTEMPT])),
        reserve_login: Script::new(&script_text(&[ATTEMPTS_LIB, LOGIN_BUCKET, RESERVE_LOGIN])),
        settle_login: Script::new(&script_text(&[ATTEMPTS_LIB, LOGIN_BUCKET, SETTLE_LOGIN])),
        advance_totp: Script::new(&script_text(&[ADVANCE_TOTP])),
        family_create: Script::new(&script_text(&[FAMILY_CREATE])),
        family_rotate: Script::new(&script_text(&[
            sessions::FAMILY_IDLE,
            FAMILY_ADVANCE,
            FAMILY_ROTATE,
        ])),
        family_elevate: Script::new(&script_text(&[
            sessions::FAMILY_IDLE,
            FAMILY_ADVANCE,
            FAMILY_ELEVATE,
        ])),
        user_families: Script::new(&script_text(&[USER_FAMILIES])),
        family_revoke: Script::new(&script_text(&[FAMILY_REVOKE])),
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

    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (f, l, e): (Option<u64>, Option<u64>, Option<u64>) = self
                .run(
                    redis::cmd("HMGET")
                        .arg(self.key("att", user))
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
                    &self.key("att", key),
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
                    &self.key("att", key),
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
                    &self.key("totp", user),
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
        Box::pin(async move {
            let record = StoredRecord::new(record)?;
            let json = encode_record(&record)?;
            let (exp, ttl) = horizon(record.expires_at, now);
            self.script::<i64>(
                &scripts().family_create,
                &self.key("fam", &record.family),
                &[
                    &json,
                    record.sub.as_bytes(),
                    hex(&token).as_bytes(),
                    &num(exp),
                    &num(ttl),
                    &num(now),
                    &num(record.idle_secs.unwrap_or(0)),
                ],
            )
            .await?;
            self.put_token(&token, &record.family, record.expires_at, now)
                .await?;
            let evicted: Vec<String> = self
                .script(
                    &scripts().user_families,
                    &self.key("uf", &record.sub),
                    &[
                        &num(now),
                        record.family.as_bytes(),
                        &num(exp),
                        &num(MAX_SESSIONS_PER_USER as u64),
                        &num(ttl),
                    ],
                )
                .await?;
            for family in evicted {
                self.drop_family(&family).await?;
            }
            Ok(())
        })
    }

    fn refresh_rotate<'a>(
        &'a self,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        Box::pin(async move {
            let Some(family) = self.token_family(&token, now).await? else {
                return Ok(Rotation::Invalid);
            };
            // The new token's link to its family is written before the script makes the
            // token current (until then nobody holds it), and only when the presented
            // token looks current: a replayed or revoked token adds no key. If a
            // concurrent rotation wins meanwhile, the script refuses and the link leads
            // to a family that never takes that token.
            let family_key = self.key("fam", &family);
            let mut conn = self.conn.clone();
            let (exp, revoked, current): (Option<u64>, Option<String>, Option<String>) = self
                .run(
                    redis::cmd("HMGET")
                        .arg(&family_key)
                        .arg(&["e", "x", "c"])
                        .query_async(&mut conn),
                )
                .await?;
            let Some(exp) = exp.filter(|e| *e > now) else {
                return Ok(Rotation::Invalid);
            };
            if revoked.as_deref() == Some("1") {
                return Ok(Rotation::Invalid);
            }
            if current.as_deref() == Some(hex(&token).as_str()) {
                self.put_token(&new_token, &family, exp, now).await?;
            }
            let reply: Vec<Value> = self
                .script(
                    &scripts().family_rotate,
                    &family_key,
                    &[
                        &num(now),
                        hex(&token).as_bytes(),
                        hex(&new_token).as_bytes(),
                        &num(REFRESH_HISTORY as u64),
                    ],
                )
                .await?;
            Ok(match reply_int(&reply)? {
                code::FAMILY_CHANGED => {
                    self.forget_token(&reply_bytes(&reply, 2)?).await?;
                    Rotation::Rotated(reply_record(&reply)?.record()?)
                }
                code::FAMILY_REVOKED => {
                    let r = reply_record(&reply)?;
                    Rotation::Reused {
                        family: r.family,
                        sub: r.sub,
                    }
                }
                _ => Rotation::Invalid,
            })
        })
    }

    fn refresh_revoke<'a>(
        &'a self,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            // The family of any token of it, live or not: logout works with a token
            // that has been rotated since.
            let Some(raw) = self.get_raw(&self.key("rt", &hex(&token))).await? else {
                return Ok(false);
            };
            let Some(family) =
                split_expiry(&raw).and_then(|(_, f)| String::from_utf8(f.to_vec()).ok())
            else {
                return Ok(false);
            };
            if sub.is_empty() {
                return Ok(false);
            }
            let n: i64 = self
                .script(
                    &scripts().family_revoke,
                    &self.key("fam", &family),
                    &[&num(now), sub.as_bytes()],
                )
                .await?;
            Ok(n == code::FAMILY_CHANGED)
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, now: u64) -> StoreFuture<'a, FamilyRevocation> {
        Box::pin(async move {
            let n: i64 = self
                .script(
                    &scripts().family_revoke,
                    &self.key("fam", family),
                    &[&num(now), b""],
                )
                .await?;
            Ok(match n {
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
        Box::pin(async move {
            let family_key = self.key("fam", family);
            let Some(raw) = self.hget(&family_key, "r").await? else {
                return Ok(Elevation::Unknown);
            };
            let mut record = decode_record(&raw)?;
            if record.expires_at <= now {
                return Ok(Elevation::Unknown);
            }
            record.session = session_json(&session)?;
            let json = encode_record(&record)?;
            self.put_token(&new_token, family, record.expires_at, now)
                .await?;
            let reply: Vec<Value> = self
                .script(
                    &scripts().family_elevate,
                    &family_key,
                    &[
                        &num(now),
                        &json,
                        hex(&new_token).as_bytes(),
                        &num(REFRESH_HISTORY as u64),
                        &num(issued_at),
                    ],
                )
                .await?;
            Ok(match reply_int(&reply)? {
                code::FAMILY_CHANGED => {
                    self.forget_token(&reply_bytes(&reply, 2)?).await?;
                    Elevation::Elevated(reply_record(&reply)?.with_session(session))
                }
                code::FAMILY_REVOKED => Elevation::Ended,
                code::FAMILY_SUPERSEDED => Elevation::Superseded,
                _ => Elevation::Unknown,
            })
        })
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

    /// Every script's text, as [`scripts`] loads it.
    fn all_scripts() -> Vec<String> {
        [
            &[CONSUME][..],
            &[ATTEMPTS_LIB, ATTEMPTS_KEY, RESERVE_ATTEMPT],
            &[ATTEMPTS_LIB, ATTEMPTS_KEY, SETTLE_ATTEMPT],
            &[ATTEMPTS_LIB, LOGIN_BUCKET, RESERVE_LOGIN],
            &[ATTEMPTS_LIB, LOGIN_BUCKET, SETTLE_LOGIN],
            &[ADVANCE_TOTP],
            &[FAMILY_CREATE],
            &[sessions::FAMILY_IDLE, FAMILY_ADVANCE, FAMILY_ROTATE],
            &[sessions::FAMILY_IDLE, FAMILY_ADVANCE, FAMILY_ELEVATE],
            &[USER_FAMILIES],
            &[FAMILY_REVOKE],
        ]
        .iter()
        .copied()
        .chain(sessions::script_parts())
        .map(script_text)
        .chain(revoked::texts())
        .collect()
    }

    #[test]
    fn every_script_touches_one_key() {
        // Redis Cluster runs a script only if its keys share one slot: every script
        // here uses KEYS[1] and nothing else.
        for script in all_scripts() {
            assert!(script.contains("KEYS[1]"));
            assert!(!script.contains("KEYS[2]"), "{script}");
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
            &[GRANTED, BUSY, LOCKED],
            &[RELEASED, FAILED, SUCCEEDED],
            &[
                FAMILY_UNKNOWN,
                FAMILY_CHANGED,
                FAMILY_REVOKED,
                FAMILY_SUPERSEDED,
            ],
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
