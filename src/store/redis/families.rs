//! Refresh families in Redis: one hash a family, `P:fam:{T}:<family>`, and one sorted
//! set of a user's families, `P:uf:{T}:<user>`, both in the user's slot (`T` the user's
//! tag), so that starting a family and ending the user's oldest is one script, and a
//! refresh token, which carries `T` and the family id, is rotated by one script on its
//! family's hash.
//!
//! A family's hash: `r` the session's claims (JSON), `s` the user, `c` the current
//! token's hash (hex), `h` the last [`REFRESH_HISTORY`] rotated ones (64 hex digits each,
//! oldest first), `x` revoked (`1`), `e` the absolute end, `t` when it started, `l` when
//! it was last started, rotated or stepped up, `i` the idle bound (0: none), `u` when it
//! was last stepped up.

use redis::{Script, Value};

use super::{code, horizon, num, script_text, tagged_key, user_tag, RedisStore, NOW};
use crate::factor::recovery::hex;
use crate::store::record::session_json;
use crate::store::{
    Elevation, FamilyRef, RefreshRecord, Rotation, StoreError, TokenHash, MAX_SESSIONS_PER_USER,
    REFRESH_HISTORY,
};
use crate::token::Claims;

/// The family functions, on named keys (`now` and `family_idle` declared before):
///
/// - `family_has(hist, token)`: whether `token` is in history `hist`;
/// - `family_advance(fam, old, new, bound)`: `new` becomes current, `old` joins the
///   history (at most `bound` tokens), `l` is now;
/// - `family_create_at(fam, uf, i)`: starts family `ARGV[i]` (session `ARGV[i+1]`, user
///   `ARGV[i+2]`, token `ARGV[i+3]`, end `ARGV[i+4]`, ttl ms `ARGV[i+5]`, idle bound
///   `ARGV[i+6]`) in `fam`, and lists it in the user's set `uf` scored by its end,
///   ending the user's oldest families past `ARGV[i+7]` (their hashes `ARGV[i+8] .. id`
///   deleted);
/// - `family_elevate_at(fam, i)`: steps up the family in `fam` of user `ARGV[i]` with
///   session `ARGV[i+1]` and new token `ARGV[i+2]` (history bound `ARGV[i+3]`) for a
///   challenge issued at `ARGV[i+4]`: {FAMILY_CHANGED, end, idle bound} (elevated),
///   {FAMILY_REVOKED} (ended), {FAMILY_SUPERSEDED}, or {FAMILY_UNKNOWN} (also idle, or
///   another user's).
///
/// A user's set: families started in the same second end in the same second, and Redis
/// orders equal scores by member, i.e. by the random family id: a new family that ends
/// no later than the newest one in the set is scored 1/1024 s after it, so the set stays
/// in order of creation and the oldest is the one ended. (Exact in a double: 2^-10 steps
/// on a Unix time; `%.17g` writes the score back without rounding.)
const FAMILY_LIB: &str = r"
local function family_has(hist, token)
  hist = hist or ''
  for i = 1, #hist, 64 do
    if string.sub(hist, i, i + 63) == token then return true end
  end
  return false
end
local function family_advance(fam, old, new, bound)
  local hist = (redis.call('HGET', fam, 'h') or '') .. old
  local keep = 64 * tonumber(bound)
  if #hist > keep then hist = string.sub(hist, #hist - keep + 1) end
  redis.call('HSET', fam, 'c', new, 'h', hist, 'l', now)
end
local function family_create_at(fam, uf, i)
  local id, ttl = ARGV[i], ARGV[i + 5]
  redis.call('DEL', fam)
  redis.call('HSET', fam, 'r', ARGV[i + 1], 's', ARGV[i + 2], 'c', ARGV[i + 3], 'x', 0,
    'e', ARGV[i + 4], 't', now, 'l', now, 'i', ARGV[i + 6])
  redis.call('PEXPIRE', fam, ttl)
  redis.call('ZREMRANGEBYSCORE', uf, '-inf', now)
  local score = tonumber(ARGV[i + 4])
  local newest = redis.call('ZRANGE', uf, -1, -1, 'WITHSCORES')
  if newest[2] and tonumber(newest[2]) >= score then score = tonumber(newest[2]) + 1 / 1024 end
  redis.call('ZADD', uf, string.format('%.17g', score), id)
  if redis.call('PTTL', uf) < tonumber(ttl) then redis.call('PEXPIRE', uf, ttl) end
  local over = redis.call('ZCARD', uf) - tonumber(ARGV[i + 7])
  if over > 0 then
    for n, v in ipairs(redis.call('ZPOPMIN', uf, over)) do
      if n % 2 == 1 then redis.call('DEL', ARGV[i + 8] .. v) end
    end
  end
end
local function family_elevate_at(fam, i)
  local h = redis.call('HMGET', fam, 'c', 'x', 'e', 'u', 'l', 'i', 's')
  if not h[1] or h[7] ~= ARGV[i] or tonumber(h[3]) <= now or family_idle(h[5], h[6]) then
    return {FAMILY_UNKNOWN}
  end
  if h[2] == '1' then return {FAMILY_REVOKED} end
  if tonumber(h[4] or '0') >= tonumber(ARGV[i + 4]) then return {FAMILY_SUPERSEDED} end
  redis.call('HSET', fam, 'r', ARGV[i + 1], 'u', now)
  family_advance(fam, h[1], ARGV[i + 2], ARGV[i + 3])
  return {FAMILY_CHANGED, h[3], h[6]}
end
";

/// KEYS: the family, the user's set. ARGV: now, then the family as `family_create_at`
/// reads it from ARGV[2]. Returns DONE.
const FAMILY_CREATE: &str = r"
family_create_at(KEYS[1], KEYS[2], 2)
return DONE
";

/// KEYS: the family. ARGV: now, presented token hex, new token hex, history bound.
/// Returns {FAMILY_CHANGED, session, user, end, idle bound} (rotated), {FAMILY_REVOKED,
/// session, user, end, idle bound} (a rotated token came back: revoked now), or
/// {FAMILY_UNKNOWN} (unknown, ended, revoked, idle; a token it does not know).
const FAMILY_ROTATE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'r', 'c', 'x', 'e', 'l', 'i', 'h', 's')
if not h[1] or tonumber(h[4]) <= now or h[3] == '1' or family_idle(h[5], h[6]) then
  return {FAMILY_UNKNOWN}
end
if h[2] == ARGV[2] then
  family_advance(KEYS[1], h[2], ARGV[3], ARGV[4])
  return {FAMILY_CHANGED, h[1], h[8], h[4], h[6]}
end
if not family_has(h[7], ARGV[2]) then return {FAMILY_UNKNOWN} end
redis.call('HSET', KEYS[1], 'x', 1)
return {FAMILY_REVOKED, h[1], h[8], h[4], h[6]}
";

/// KEYS: the family. ARGV: now, then the step-up as `family_elevate_at` reads it from
/// ARGV[2]. Returns what it does.
const FAMILY_ELEVATE: &str = r"
return family_elevate_at(KEYS[1], 2)
";

/// KEYS: the family. ARGV: now, user, a token hex ('' = any). FAMILY_CHANGED if this
/// call revoked the user's live family (that knows the token: current or rotated),
/// FAMILY_REVOKED if it had been revoked already, else FAMILY_UNKNOWN.
const FAMILY_REVOKE: &str = r"
local h = redis.call('HMGET', KEYS[1], 's', 'x', 'e', 'c', 'h')
if not h[1] or h[1] ~= ARGV[2] or tonumber(h[3]) <= now then return FAMILY_UNKNOWN end
if ARGV[3] ~= '' and h[4] ~= ARGV[3] and not family_has(h[5], ARGV[3]) then
  return FAMILY_UNKNOWN
end
if h[2] == '1' then return FAMILY_REVOKED end
redis.call('HSET', KEYS[1], 'x', 1)
return FAMILY_CHANGED
";

/// The idle rule, for the scripts on a family's hash (`ARGV[1]` is `now`): a family is
/// idle once it has not been started, rotated or stepped up (field `l`) for its idle
/// bound (field `i`; absent or 0: none). Families written before the bound existed have
/// neither field and never idle.
pub(super) const FAMILY_IDLE: &str = r"
local function family_idle(l, i)
  i = tonumber(i) or 0
  return i > 0 and (tonumber(l) or 0) + i <= tonumber(ARGV[1])
end
";

/// The libraries every family script starts with.
pub(super) const FAMILY_PARTS: [&str; 3] = [NOW, FAMILY_IDLE, FAMILY_LIB];

struct Scripts {
    create: Script,
    rotate: Script,
    elevate: Script,
    revoke: Script,
}

/// The parts of every script of this module, as [`scripts`] joins them.
pub(super) fn script_parts() -> [[&'static str; 4]; 4] {
    let [now, idle, lib] = FAMILY_PARTS;
    [FAMILY_CREATE, FAMILY_ROTATE, FAMILY_ELEVATE, FAMILY_REVOKE].map(|main| [now, idle, lib, main])
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let [create, rotate, elevate, revoke] =
            script_parts().map(|p| Script::new(&script_text(&p)));
        Scripts {
            create,
            rotate,
            elevate,
            revoke,
        }
    })
}

/// A new family as the scripts take it: its hash, the user's set, and the arguments of
/// `family_create_at`.
pub(super) struct NewFamily {
    pub(super) fam: String,
    pub(super) uf: String,
    pub(super) args: [Vec<u8>; 9],
}

/// A step-up as the scripts take it: the family's hash and the arguments of
/// `family_elevate_at`.
pub(super) struct StepUp {
    pub(super) fam: String,
    pub(super) args: [Vec<u8>; 5],
}

/// The keys of starting family `family` of `user`, all in the user's slot: the family's
/// hash, the user's set of families, and the start of the key of a family of the user
/// (to which the script appends the id of a family it ends).
pub(super) fn family_keys(prefix: &str, user: &str, family: &str) -> [String; 3] {
    let tag = user_tag(user);
    [
        tagged_key(prefix, "fam", &tag, family),
        tagged_key(prefix, "uf", &tag, user),
        tagged_key(prefix, "fam", &tag, ""),
    ]
}

impl RedisStore {
    /// The hash of the family `at` names.
    pub(super) fn fam_key(&self, at: &FamilyRef) -> String {
        self.tagged("fam", at.user_tag(), at.family())
    }

    /// The set of `user`'s families.
    pub(super) fn uf_key(&self, user: &str) -> String {
        self.tagged("uf", &user_tag(user), user)
    }

    /// Family `record` with first token `token`, started at `now`, as the scripts take it.
    pub(super) fn new_family(
        &self,
        token: &TokenHash,
        record: &RefreshRecord,
        now: u64,
    ) -> Result<NewFamily, StoreError> {
        let [fam, uf, fam_prefix] = family_keys(&self.prefix, &record.sub, &record.family);
        let (exp, ttl) = horizon(record.expires_at, now);
        Ok(NewFamily {
            fam,
            uf,
            args: [
                record.family.as_bytes().to_vec(),
                session_json(&record.session)?.into_bytes(),
                record.sub.as_bytes().to_vec(),
                hex(token).into_bytes(),
                num(exp),
                num(ttl),
                num(record.idle_secs.unwrap_or(0)),
                num(MAX_SESSIONS_PER_USER as u64),
                fam_prefix.into_bytes(),
            ],
        })
    }

    /// A step-up of `family` of `session.sub()` to `session` and `new_token`, as the
    /// scripts take it.
    pub(super) fn step_up(
        &self,
        family: &str,
        new_token: &TokenHash,
        session: &Claims,
        issued_at: u64,
    ) -> Result<StepUp, StoreError> {
        let sub = session.sub();
        Ok(StepUp {
            fam: self.fam_key(&FamilyRef::new(sub, family)),
            args: [
                sub.as_bytes().to_vec(),
                session_json(session)?.into_bytes(),
                hex(new_token).into_bytes(),
                num(REFRESH_HISTORY as u64),
                num(issued_at),
            ],
        })
    }

    pub(super) async fn family_create(
        &self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        let new = self.new_family(&token, &record, now)?;
        let now_arg = num(now);
        let mut args: Vec<&[u8]> = vec![&now_arg];
        args.extend(new.args.iter().map(Vec::as_slice));
        self.script_on::<i64>(&scripts().create, &[&new.fam, &new.uf], &args)
            .await
            .map(drop)
    }

    pub(super) async fn family_rotate(
        &self,
        at: &FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let reply: Vec<Value> = self
            .script(
                &scripts().rotate,
                &self.fam_key(at),
                &[
                    &num(now),
                    hex(&token).as_bytes(),
                    hex(&new_token).as_bytes(),
                    &num(REFRESH_HISTORY as u64),
                ],
            )
            .await?;
        Ok(match reply_int(&reply, 0)? {
            code::FAMILY_CHANGED => Rotation::Rotated(reply_record(&reply, at.family())?),
            code::FAMILY_REVOKED => Rotation::Reused {
                family: at.family().to_owned(),
                sub: reply_string(&reply, 2)?,
            },
            _ => Rotation::Invalid,
        })
    }

    /// Revokes the family `at` names if it is `user`'s (and knows `token`, if given):
    /// the script's code.
    pub(super) async fn family_revoke(
        &self,
        at: &FamilyRef,
        user: &str,
        token: Option<&TokenHash>,
        now: u64,
    ) -> Result<i64, StoreError> {
        let token = token.map(|t| hex(t)).unwrap_or_default();
        self.script(
            &scripts().revoke,
            &self.fam_key(at),
            &[&num(now), user.as_bytes(), token.as_bytes()],
        )
        .await
    }

    pub(super) async fn family_elevate(
        &self,
        family: &str,
        new_token: TokenHash,
        session: Claims,
        issued_at: u64,
        now: u64,
    ) -> Result<Elevation, StoreError> {
        let step = self.step_up(family, &new_token, &session, issued_at)?;
        let now_arg = num(now);
        let mut args: Vec<&[u8]> = vec![&now_arg];
        args.extend(step.args.iter().map(Vec::as_slice));
        let reply: Vec<Value> = self.script(&scripts().elevate, &step.fam, &args).await?;
        elevation(&reply, 0, family, session)
    }
}

/// What `family_elevate_at` answered, from element `i` of `reply` on, for a step-up of
/// `family` to `session`.
pub(super) fn elevation(
    reply: &[Value],
    i: usize,
    family: &str,
    session: Claims,
) -> Result<Elevation, StoreError> {
    Ok(match reply_int(reply, i)? {
        code::FAMILY_CHANGED => {
            let idle = reply_u64(reply, i + 2)?;
            Elevation::Elevated(RefreshRecord {
                family: family.to_owned(),
                sub: session.sub().to_owned(),
                expires_at: reply_u64(reply, i + 1)?,
                idle_secs: (idle > 0).then_some(idle),
                session,
            })
        }
        code::FAMILY_REVOKED => Elevation::Ended,
        code::FAMILY_SUPERSEDED => Elevation::Superseded,
        _ => Elevation::Unknown,
    })
}

/// The family's record in `FAMILY_ROTATE`'s reply (session, user, end, idle bound).
fn reply_record(reply: &[Value], family: &str) -> Result<RefreshRecord, StoreError> {
    let session = decode_session(&reply_bytes(reply, 1)?)?;
    let idle = reply_u64(reply, 4)?;
    Ok(RefreshRecord {
        family: family.to_owned(),
        sub: reply_string(reply, 2)?,
        session,
        expires_at: reply_u64(reply, 3)?,
        idle_secs: (idle > 0).then_some(idle),
    })
}

/// A session's claims as a family keeps them (JSON); unreadable ones are corrupt.
pub(super) fn decode_session(json: &[u8]) -> Result<Claims, StoreError> {
    serde_json::from_slice(json)
        .map_err(|_| StoreError::Corrupt("refresh session decoding".to_owned()))
}

/// Element `i` of a reply, as a number (`FAMILY_UNKNOWN`, 0, when absent).
pub(super) fn reply_int(reply: &[Value], i: usize) -> Result<i64, StoreError> {
    match reply.get(i) {
        Some(v) => parse(v),
        None => Ok(code::FAMILY_UNKNOWN),
    }
}

/// Element `i` of a reply, as an unsigned number (0 when absent).
pub(super) fn reply_u64(reply: &[Value], i: usize) -> Result<u64, StoreError> {
    reply.get(i).map_or(Ok(0), parse)
}

/// Element `i` of a reply, as bytes (empty when absent).
fn reply_bytes(reply: &[Value], i: usize) -> Result<Vec<u8>, StoreError> {
    reply.get(i).map_or(Ok(Vec::new()), parse)
}

/// Element `i` of a reply, as text.
fn reply_string(reply: &[Value], i: usize) -> Result<String, StoreError> {
    String::from_utf8(reply_bytes(reply, i)?)
        .map_err(|_| StoreError::Corrupt("refresh family user decoding".to_owned()))
}

fn parse<T: redis::FromRedisValue>(v: &Value) -> Result<T, StoreError> {
    redis::from_redis_value(v.clone()).map_err(|e| super::redis_error(&e.into()))
}
