//! The sessions a user can see and end, and remembered devices, in Redis.
//!
//! Sessions are the refresh families (`P:fam:{T}:<family>`, listed per user in
//! `P:uf:{T}:<user>`, see `families.rs`); this module reads them, ends one on behalf of
//! its user, and holds the idle rule the family scripts share. Devices live in one hash per user, `P:dev:<user>`: field = the
//! device id, value = `created:last_used:expires:seq` (`seq` orders devices remembered
//! in the same second). Every script touches `KEYS[1]` only.

use redis::Value;

use super::families::{decode_session, FAMILY_IDLE};
use super::{code, horizon, num, script_text, RedisStore};
use crate::store::{
    DeviceInfo, FamilyRef, FamilyRevocation, SessionInfo, StoreError, MAX_DEVICES_PER_USER,
};

/// ARGV: now, user. FAMILY_CHANGED if this call revoked a live session of the user,
/// FAMILY_REVOKED if it had been revoked already, else FAMILY_UNKNOWN (another user's,
/// unknown, past its end, idle).
const SESSION_END: &str = r"
local h = redis.call('HMGET', KEYS[1], 's', 'x', 'e', 'l', 'i')
if not h[1] or ARGV[2] == '' or h[1] ~= ARGV[2] or tonumber(h[3]) <= tonumber(ARGV[1])
  or family_idle(h[4], h[5]) then
  return FAMILY_UNKNOWN
end
if h[2] == '1' then return FAMILY_REVOKED end
redis.call('HSET', KEYS[1], 'x', 1)
return FAMILY_CHANGED
";

/// The device records of a user's hash, as the scripts read them: `device(v)` is
/// `created, last_used, expires, seq` (numbers), or nil for a value that is not one.
const DEVICE_LIB: &str = r"
local function device(v)
  if not v then return nil end
  local c, u, e, n = string.match(v, '^(%d+):(%d+):(%d+):(%d+)$')
  if not n then return nil end
  return tonumber(c), tonumber(u), tonumber(e), tonumber(n)
end
";

/// ARGV: now, id, expires_at, bound, ttl ms. Forgets expired devices (and an older
/// record of `id`), then the oldest live ones past the bound, and remembers `id`.
/// Returns DONE.
const DEVICE_ADD: &str = r"
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local live, seq = {}, 0
for i = 1, #all, 2 do
  local c, u, e, n = device(all[i + 1])
  if not e or e <= now or all[i] == ARGV[2] then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(live, {all[i], c, n})
    if n > seq then seq = n end
  end
end
table.sort(live, function(x, y) return x[2] < y[2] or (x[2] == y[2] and x[3] < y[3]) end)
for i = 1, #live - tonumber(ARGV[4]) + 1 do redis.call('HDEL', KEYS[1], live[i][1]) end
redis.call('HSET', KEYS[1], ARGV[2], string.format('%d:%d:%d:%d', now, now, tonumber(ARGV[3]), seq + 1))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return DONE
";

/// ARGV: now, id. ACCEPTED (and last_used = now) if the device is live, else REFUSED
/// (an expired record is forgotten).
const DEVICE_USE: &str = r"
local c, u, e, n = device(redis.call('HGET', KEYS[1], ARGV[2]))
if not c then return REFUSED end
if e <= tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], ARGV[2]); return REFUSED end
redis.call('HSET', KEYS[1], ARGV[2], string.format('%d:%d:%d:%d', c, tonumber(ARGV[1]), e, n))
return ACCEPTED
";

/// ARGV: now, id. Forgets the device: ACCEPTED if it was live, else REFUSED.
const DEVICE_REMOVE: &str = r"
local c, u, e, n = device(redis.call('HGET', KEYS[1], ARGV[2]))
if not c then return REFUSED end
redis.call('HDEL', KEYS[1], ARGV[2])
if e <= tonumber(ARGV[1]) then return REFUSED end
return ACCEPTED
";

/// The scripts of this module.
pub(super) struct Scripts {
    session_end: redis::Script,
    device_add: redis::Script,
    device_use: redis::Script,
    device_remove: redis::Script,
}

/// The parts of every script of this module, as [`scripts`] joins them.
pub(super) fn script_parts() -> [&'static [&'static str]; 4] {
    [
        &[FAMILY_IDLE, SESSION_END],
        &[DEVICE_LIB, DEVICE_ADD],
        &[DEVICE_LIB, DEVICE_USE],
        &[DEVICE_LIB, DEVICE_REMOVE],
    ]
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let [end, add, used, remove] = script_parts().map(|p| redis::Script::new(&script_text(p)));
        Scripts {
            session_end: end,
            device_add: add,
            device_use: used,
            device_remove: remove,
        }
    })
}

/// A family's hash as [`RedisStore::sessions_of`] reads it: `r s x e t l i`.
type FamilyFields = (
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

/// `created:last_used:expires:seq` of a device, or `None`.
fn parse_device(id: String, value: &str) -> Option<(DeviceInfo, u64)> {
    let mut parts = value.split(':').map(|p| p.parse::<u64>().ok());
    let (Some(Some(c)), Some(Some(u)), Some(Some(e)), Some(Some(n)), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let device = DeviceInfo {
        id,
        created_at: c,
        last_used_at: u,
        expires_at: e,
    };
    Some((device, n))
}

impl RedisStore {
    /// The live sessions of `user`: the families of its set, each read from its own
    /// hash (concurrently; one key a command).
    pub(super) async fn sessions_of(
        &self,
        user: &str,
        now: u64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let mut conn = self.conn.clone();
        let families: Vec<String> = self
            .run(
                redis::cmd("ZRANGE")
                    .arg(self.uf_key(user))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .await?;
        if families.is_empty() {
            return Ok(Vec::new());
        }
        // One slot: the pipeline goes to one node of a cluster.
        let mut pipe = redis::pipe();
        for family in &families {
            pipe.cmd("HMGET")
                .arg(self.fam_key(&FamilyRef::new(user, family.as_str())))
                .arg(&["r", "s", "x", "e", "t", "l", "i"]);
        }
        let rows: Vec<FamilyFields> = self.run(pipe.query_async(&mut conn)).await?;
        let mut sessions = Vec::with_capacity(rows.len());
        for (family, row) in families.into_iter().zip(rows) {
            if let Some(session) = live_session(user, family, row, now)? {
                sessions.push(session);
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    pub(super) async fn end_session_of(
        &self,
        user: &str,
        family: &str,
        now: u64,
    ) -> Result<FamilyRevocation, StoreError> {
        let n: i64 = self
            .script(
                &scripts().session_end,
                &self.fam_key(&FamilyRef::new(user, family)),
                &[&num(now), user.as_bytes()],
            )
            .await?;
        Ok(match n {
            code::FAMILY_CHANGED => FamilyRevocation::Revoked,
            code::FAMILY_REVOKED => FamilyRevocation::AlreadyRevoked,
            _ => FamilyRevocation::Unknown,
        })
    }

    pub(super) async fn device_add_of(
        &self,
        user: &str,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let (exp, ttl) = horizon(expires_at, now);
        self.script::<i64>(
            &scripts().device_add,
            &self.key("dev", user),
            &[
                &num(now),
                id.as_bytes(),
                &num(exp),
                &num(MAX_DEVICES_PER_USER as u64),
                &num(ttl),
            ],
        )
        .await
        .map(drop)
    }

    pub(super) async fn device_use_of(
        &self,
        user: &str,
        id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.on_device(&scripts().device_use, user, id, now).await
    }

    /// Runs `script` (one of a user's devices: use or remove) on device `id` of `user`:
    /// whether it found the device live.
    async fn on_device(
        &self,
        script: &redis::Script,
        user: &str,
        id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        let key = self.key("dev", user);
        let n: i64 = self
            .script(script, &key, &[&num(now), id.as_bytes()])
            .await?;
        Ok(n == code::ACCEPTED)
    }

    pub(super) async fn devices_of(
        &self,
        user: &str,
        now: u64,
    ) -> Result<Vec<DeviceInfo>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = self
            .run(
                redis::cmd("HGETALL")
                    .arg(self.key("dev", user))
                    .query_async(&mut conn),
            )
            .await?;
        let mut devices: Vec<(DeviceInfo, u64)> = all
            .into_iter()
            .filter_map(|(id, value)| parse_device(id, &value))
            .filter(|(d, _)| d.expires_at > now)
            .collect();
        devices.sort_by_key(|(d, seq)| (d.created_at, *seq));
        Ok(devices.into_iter().map(|(d, _)| d).collect())
    }

    pub(super) async fn device_remove_of(
        &self,
        user: &str,
        id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.on_device(&scripts().device_remove, user, id, now)
            .await
    }

    pub(super) async fn devices_clear_of(&self, user: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.run(
            redis::cmd("DEL")
                .arg(self.key("dev", user))
                .query_async::<Value>(&mut conn),
        )
        .await
        .map(drop)
    }
}

/// The session of family `family`'s fields, if it is a live session of `user`.
fn live_session(
    user: &str,
    family: String,
    (session, sub, revoked, expires_at, created_at, last_seen_at, idle): FamilyFields,
    now: u64,
) -> Result<Option<SessionInfo>, StoreError> {
    let (Some(session), Some(expires_at), Some(created_at)) = (session, expires_at, created_at)
    else {
        return Ok(None);
    };
    if sub.as_deref() != Some(user) || revoked.as_deref() == Some("1") || expires_at <= now {
        return Ok(None);
    }
    let last_seen_at = last_seen_at.unwrap_or(created_at);
    let idle = idle.unwrap_or(0);
    if idle > 0 && last_seen_at.saturating_add(idle) <= now {
        return Ok(None);
    }
    Ok(Some(SessionInfo {
        family,
        session: decode_session(&session)?,
        created_at,
        last_seen_at,
        expires_at,
    }))
}
