//! Login throttling (DESIGN §8.2): failed passwords are counted per (account, client)
//! and per account, and the attempt is reserved before the password is checked.
//!
//! # Security
//! The account-wide limit (100 failures an hour by default, NIST SP 800-63B's ceiling)
//! bounds guessing spread over many clients, and so lets anyone who knows a username
//! lock its owner out of password sign-in for an hour by failing 100 times. That is the
//! trade-off of every account lockout; the per-client limit (10 in 15 minutes) applies
//! first, so a single client cannot do it alone. Raise the account-wide limit, or give
//! a second factor the weight instead, if that denial of service matters more to you.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::peer::{client_ip, client_key, PeerAddr, TrustedProxies};
use crate::factor::recovery::hex;
use crate::store::{AttemptPolicy, LoginLimits};

/// How password sign-in is throttled. [`Default`]: 10 failures per (account, client) in
/// 15 minutes, 100 per account in an hour, no trusted proxies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginThrottle {
    limits: LoginLimits,
    trusted_proxies: TrustedProxies,
}

/// The default failures per (account, client) before a lockout.
pub const DEFAULT_LOGIN_MAX_FAILURES: u32 = 10;
/// The default failures per account before a lockout (NIST SP 800-63B's ceiling).
pub const DEFAULT_LOGIN_ACCOUNT_MAX_FAILURES: u32 = 100;

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            limits: LoginLimits {
                per_client: policy(DEFAULT_LOGIN_MAX_FAILURES, 15 * 60),
                per_account: policy(DEFAULT_LOGIN_ACCOUNT_MAX_FAILURES, 3600),
            },
            trusted_proxies: TrustedProxies::none(),
        }
    }
}

/// `max` failures within `secs` lock out for `secs`.
fn policy(max: u32, secs: u64) -> AttemptPolicy {
    AttemptPolicy {
        max_attempts: max,
        lockout_secs: secs,
        window_secs: secs,
    }
}

impl LoginThrottle {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max` failures of one account from one client within `window` (then a
    /// lockout as long as the window).
    pub fn per_client(mut self, max: u32, window: std::time::Duration) -> Self {
        self.limits.per_client = policy(max, window.as_secs());
        self
    }

    /// At most `max` failures of one account from all clients within `window`.
    ///
    /// # Security
    /// See the module docs: this limit is also how far anyone can lock an account out.
    pub fn per_account(mut self, max: u32, window: std::time::Duration) -> Self {
        self.limits.per_account = policy(max, window.as_secs());
        self
    }

    /// The proxies whose `X-Forwarded-For` names the client (none by default: the
    /// socket's peer is the client).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    pub(crate) fn limits(&self) -> LoginLimits {
        self.limits
    }

    pub(crate) fn is_valid(&self) -> bool {
        [self.limits.per_client, self.limits.per_account]
            .iter()
            .all(|p| p.max_attempts > 0 && p.lockout_secs > 0)
    }

    /// The counters of one login: the account's key (a digest of `username`, already
    /// canonical, so no name is stored) and the client's (its address, IPv6 per /64,
    /// digested too; one shared `unknown` client when the application inserted no
    /// [`PeerAddr`]).
    pub(crate) fn keys(&self, username: &str, req: &http::request::Parts) -> LoginKeys {
        let peer = req.extensions.get::<PeerAddr>().map(|p| p.0.ip());
        if peer.is_none() {
            warn_no_peer();
        }
        let client = client_ip(peer, &req.headers, &self.trusted_proxies);
        LoginKeys {
            account: digest(username),
            client: client.map_or_else(|| "unknown".to_owned(), client_digest),
        }
    }
}

/// The two counters of one login attempt.
pub(crate) struct LoginKeys {
    pub(crate) account: String,
    pub(crate) client: String,
}

fn digest(s: &str) -> String {
    let mut h = hex(&Sha256::digest(s.as_bytes()));
    h.truncate(32);
    h
}

fn client_digest(ip: IpAddr) -> String {
    digest(&client_key(ip))
}

fn warn_no_peer() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "login: no PeerAddr in the request; every client counts as one for throttling \
             (insert complete::PeerAddr from the socket)"
        );
    });
}
