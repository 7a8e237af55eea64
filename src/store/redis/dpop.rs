//! Single use of DPoP proofs in Redis: the used proofs of one key (one `jkt`) in one
//! sorted set, `P:dpop:{T}:<digest>` (`<digest>` the hex SHA-256 of the thumbprint, `T`
//! its first 16 digits, tagged as a user's keys are), whose members are the hex SHA-256
//! of each `jti` scored by when it is forgotten. One script decides a use: one round
//! trip, one key.

use super::{code, horizon, num, script_text, RedisStore};
use crate::factor::recovery::hex;
use crate::store::challenge::user_tag;
use crate::store::dpop::digest;
use crate::store::{DpopUse, StoreError, MAX_DPOP_PROOFS_PER_KEY};

/// KEYS[1]: the key's proofs. ARGV: now, the `jti`'s member, its expiry, the bound.
/// Forgets the expired proofs (scored at or before now); then DPOP_REPLAYED if the member
/// is there, DPOP_TOO_MANY if the bound is, else remembers it (DPOP_FRESH) and makes the
/// key live as long as its latest proof (at least 1 s).
const USE_DPOP: &str = r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return DPOP_REPLAYED end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return DPOP_TOO_MANY end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(last[2]) - now, 1) * 1000)
return DPOP_FRESH
";

/// The parts of every script of this module, as [`script`] joins them.
pub(super) fn script_parts() -> [&'static [&'static str]; 1] {
    [&[USE_DPOP]]
}

fn script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        let [parts] = script_parts();
        redis::Script::new(&script_text(parts))
    })
}

impl RedisStore {
    /// The key of the used proofs of `jkt`.
    pub(super) fn dpop_key(&self, jkt: &str) -> String {
        self.tagged("dpop", &user_tag(jkt), &hex(&digest(jkt)))
    }

    /// [`Store::use_dpop_proof`](crate::store::Store::use_dpop_proof): one script.
    pub(super) async fn dpop_use(
        &self,
        jkt: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<DpopUse, StoreError> {
        let (exp, _) = horizon(expires_at, now);
        let n: i64 = self
            .script(
                script(),
                &self.dpop_key(jkt),
                &[
                    &num(now),
                    hex(&digest(jti)).as_bytes(),
                    &num(exp),
                    &num(MAX_DPOP_PROOFS_PER_KEY as u64),
                ],
            )
            .await?;
        // Anything but the two known answers refuses, as a replay would.
        Ok(match n {
            code::DPOP_FRESH => DpopUse::Fresh,
            code::DPOP_TOO_MANY => DpopUse::TooMany,
            _ => DpopUse::Replayed,
        })
    }
}
