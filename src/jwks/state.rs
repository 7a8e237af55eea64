//! What a [`JwksSource`](super::JwksSource)'s handles and its background task share.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use jsonwebtoken::Algorithm;
use tokio::sync::{watch, Notify};

use super::error::JwksError;
use super::seam::Fetch;
use crate::token::SharedKeys;

/// Where the keys come from.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A JWKS URL.
    Jwks(Uri),
    /// An issuer's discovery document, and the issuer it must name.
    Discovery { issuer: String, document: Uri },
}

/// The settings, fixed at build time.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) target: Target,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) min_refresh: Duration,
    pub(crate) max_refresh: Duration,
    pub(crate) default_refresh: Duration,
    pub(crate) throttle: Duration,
    pub(crate) timeout: Duration,
    pub(crate) allow_http: bool,
}

impl Config {
    /// The longest a caller waits for an unknown-kid fetch: one timeout per request of
    /// a fetch (two when the discovery document is read again).
    pub(crate) fn wait_bound(&self) -> Duration {
        match self.target {
            Target::Jwks(_) => self.timeout,
            Target::Discovery { .. } => self.timeout.saturating_mul(2),
        }
    }
}

/// How many fetches have started and finished, and whether keys are loaded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) loaded: bool,
}

/// The unknown-kid fetch asked for last.
#[derive(Debug, Default)]
pub(crate) struct UnknownKid {
    /// When it was asked for (the throttle counts from here).
    pub(crate) asked_at: Option<Instant>,
    /// The fetch that serves it: callers wait until this many fetches have finished.
    pub(crate) target: u64,
}

/// What fetching has done so far.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct JwksStats {
    /// Fetches attempted (background refreshes and unknown-kid fetches).
    pub fetches: u64,
    /// Fetches that failed (the last good keys stayed in use).
    pub failures: u64,
    /// When keys were last fetched successfully.
    pub last_success: Option<SystemTime>,
    /// Keys in the current set.
    pub keys_loaded: usize,
    /// Entries of the last set fetched that were skipped (not usable).
    pub entries_skipped: usize,
    /// Why the last failed fetch failed.
    pub last_error: Option<JwksError>,
}

/// Shared by the handles (strongly) and the background task (weakly).
pub(crate) struct State {
    pub(crate) keys: SharedKeys,
    pub(crate) config: Config,
    pub(crate) fetcher: Box<dyn Fetch>,
    pub(crate) progress: watch::Sender<Progress>,
    /// Wakes the background task: an unknown-kid fetch, or the last handle gone.
    pub(crate) wake: Arc<Notify>,
    pub(crate) unknown: Mutex<UnknownKid>,
    pub(crate) stats: Mutex<JwksStats>,
    /// The JWKS URL the discovery document named (unused for a plain JWKS URL).
    pub(crate) discovered: Mutex<Option<Uri>>,
}

impl Drop for State {
    fn drop(&mut self) {
        // The task holds only a weak reference: wake it so that it sees it is alone and
        // ends, instead of sleeping until its next refresh.
        self.wake.notify_one();
    }
}

/// A lock, even if a thread panicked while holding it (the data stays consistent: every
/// writer here assigns whole values).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
