//! Ended sessions on Redis: each user's revocations in one key, a log of who changed
//! when for the replicas' catch-up, and a pub/sub channel that tells them at once.
//!
//! - `<prefix>:rv:<user>`: the user's [`UserRevocations`] as JSON, expiring with its
//!   last entry. Written by compare-and-set: the merge is
//!   [`UserRevocations::merge`], in Rust, the one rule for every store; the script only
//!   checks that nobody wrote in between, writes and publishes.
//! - `<prefix>:rvlog`: a sorted set of users scored by the Redis server's time (ms) of
//!   their last change, trimmed to the entries' lifetime. A replica that connects or
//!   reconnects reads the users changed since its cursor (with an overlap), then their
//!   keys.
//! - channel `<prefix>:revoked`: the user's new revocations, published by the write
//!   itself. Published messages reach the subscribers of every node of a cluster.
//!
//! Each script touches one key; on a cluster the three live in different slots, and the
//! log is written before the user's key so a catch-up can never miss a change.

use redis::{Script, Value};

use super::{redis_error, script_text, RedisStore};
use crate::revocation::UserRevocations;
use crate::store::{RevocationBatch, StoreError};

/// How far back a catch-up reads before its cursor: a user's key is written at most a
/// few store timeouts after its log entry, so a change whose log entry a catch-up has
/// passed is still read by the next one.
const OVERLAP_MS: u64 = 5_000;

/// How often the compare-and-set is tried before giving up (503).
const CAS_TRIES: usize = 8;

/// KEYS[1]: the log. ARGV: user, keep ms. Scores the user with the server's time and
/// forgets users unchanged for longer than keep. Returns the time.
const LOG_CHANGE: &str = r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return ms
";

/// KEYS[1]: the log. ARGV: from ms (exclusive). Returns {server time ms, users...}.
const CHANGED_SINCE: &str = r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
table.insert(users, 1, ms)
return users
";

/// KEYS[1]: the user's key. ARGV: the value read before ('' = none), the new value,
/// ttl ms, channel. Writes and publishes only if the key still holds what was read:
/// ACCEPTED, else REFUSED (read again and merge again).
const WRITE_IF_UNCHANGED: &str = r"
local old = redis.call('GET', KEYS[1]) or ''
if old ~= ARGV[1] then return REFUSED end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return ACCEPTED
";

pub(super) struct RevocationScripts {
    log_change: Script,
    changed_since: Script,
    write_if_unchanged: Script,
}

pub(super) fn texts() -> [String; 3] {
    [
        script_text(&[LOG_CHANGE]),
        script_text(&[CHANGED_SINCE]),
        script_text(&[WRITE_IF_UNCHANGED]),
    ]
}

fn scripts() -> &'static RevocationScripts {
    static SCRIPTS: std::sync::OnceLock<RevocationScripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let [log_change, changed_since, write_if_unchanged] = texts();
        RevocationScripts {
            log_change: Script::new(&log_change),
            changed_since: Script::new(&changed_since),
            write_if_unchanged: Script::new(&write_if_unchanged),
        }
    })
}

fn decode(raw: &[u8]) -> Result<UserRevocations, StoreError> {
    serde_json::from_slice(raw).map_err(|_| StoreError::Corrupt("revocations".to_owned()))
}

fn encode(user: &UserRevocations) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(user).map_err(|_| StoreError::Corrupt("revocations".to_owned()))
}

/// A published message: one user's revocations (`None` if unreadable).
pub(super) fn message(payload: &[u8]) -> Option<UserRevocations> {
    decode(payload).ok()
}

impl RedisStore {
    /// The pub/sub channel of revocations.
    pub(super) fn revocation_channel(&self) -> String {
        format!("{}:revoked", self.prefix)
    }

    /// [`Store::revoke_sessions`](crate::store::Store::revoke_sessions).
    pub(super) async fn record_revocations(
        &self,
        revoked: &UserRevocations,
        now: u64,
    ) -> Result<UserRevocations, StoreError> {
        let keep_ms = revoked.until().saturating_sub(now).max(1) * 1000 + OVERLAP_MS;
        let user_key = self.key("rv", &revoked.sub);
        let _: Value = self
            .script(
                &scripts().log_change,
                &self.key("rvlog", ""),
                &[revoked.sub.as_bytes(), &super::num(keep_ms)],
            )
            .await?;
        for _ in 0..CAS_TRIES {
            let old = self.get_raw(&user_key).await?.unwrap_or_default();
            let mut user = if old.is_empty() {
                UserRevocations::new(revoked.sub.as_str())
            } else {
                decode(&old)?
            };
            user.merge(revoked, now);
            let ttl_ms = user.until().saturating_sub(now).max(1) * 1000;
            let new = encode(&user)?;
            let written: i64 = self
                .script(
                    &scripts().write_if_unchanged,
                    &user_key,
                    &[
                        &old,
                        &new,
                        &super::num(ttl_ms),
                        self.revocation_channel().as_bytes(),
                    ],
                )
                .await?;
            if written == super::code::ACCEPTED {
                return Ok(user);
            }
        }
        Err(StoreError::Unavailable("revocations: contended".to_owned()))
    }

    /// [`Store::revocations_since`](crate::store::Store::revocations_since).
    pub(super) async fn read_revocations(
        &self,
        cursor: u64,
        now: u64,
    ) -> Result<RevocationBatch, StoreError> {
        let from = cursor.saturating_sub(OVERLAP_MS);
        let reply: Vec<Value> = self
            .script(
                &scripts().changed_since,
                &self.key("rvlog", ""),
                &[&super::num(from)],
            )
            .await?;
        let mut reply = reply.into_iter();
        let server_ms: u64 = match reply.next() {
            Some(v) => redis::from_redis_value(v).map_err(|e| redis_error(&e.into()))?,
            None => return Err(StoreError::Corrupt("revocation log".to_owned())),
        };
        let mut users = Vec::new();
        for user in reply {
            let user: String = redis::from_redis_value(user).map_err(|e| redis_error(&e.into()))?;
            if let Some(raw) = self.get_raw(&self.key("rv", &user)).await? {
                let mut revoked = decode(&raw)?;
                revoked.expire(now);
                if !revoked.is_empty() {
                    users.push(revoked);
                }
            }
        }
        Ok(RevocationBatch {
            users,
            cursor: server_ms,
        })
    }
}
