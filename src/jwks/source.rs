//! [`JwksSource`]: the handle a verifier holds.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::JwksError;
use super::state::{lock, JwksStats, Progress, State};
use crate::token::{KeySource, KeyWait, SharedKeys};

/// An identity provider's keys, fetched from its JWKS URL (or found through its OpenID
/// Connect discovery document) and kept fresh in the background. Give it to a verifier
/// as its [`KeySource`]. Built with [`JwksSource::builder`] or [`JwksSource::discover`].
///
/// Cheap to clone: clones share the keys and the background task, which ends when the
/// last clone (and the verifier holding one) is dropped.
#[derive(Clone)]
pub struct JwksSource {
    pub(crate) state: Arc<State>,
}

impl JwksSource {
    /// What fetching has done so far.
    pub fn stats(&self) -> JwksStats {
        let mut stats = lock(&self.state.stats).clone();
        stats.keys_loaded = self.state.keys.keys().keys().len();
        stats
    }

    /// Waits until keys are loaded, at most `timeout`. An application that wants its
    /// identity provider's keys before it serves calls this at start-up; without it,
    /// that issuer's tokens get 401 until the keys arrive.
    ///
    /// # Errors
    /// When the time is up without keys: the last fetch's error, or
    /// [`JwksError::NotLoaded`] if no fetch has finished yet.
    pub async fn wait_loaded(&self, timeout: Duration) -> Result<(), JwksError> {
        let mut progress = self.state.progress.subscribe();
        let loaded = tokio::time::timeout(timeout, progress.wait_for(|p| p.loaded)).await;
        match loaded {
            Ok(Ok(_)) => Ok(()),
            _ => Err(self.stats().last_error.unwrap_or(JwksError::NotLoaded)),
        }
    }

    /// A wait for the fetch that will have finished `target` fetches, bounded.
    fn wait_for(&self, target: u64) -> KeyWait {
        let mut progress: watch::Receiver<Progress> = self.state.progress.subscribe();
        let bound = self.state.config.wait_bound();
        Box::pin(async move {
            let finished = progress.wait_for(|p| p.finished >= target);
            let _ = tokio::time::timeout(bound, finished).await;
        })
    }
}

impl KeySource for JwksSource {
    fn shared_keys(&self) -> &SharedKeys {
        &self.state.keys
    }

    /// Single-flight and throttled: callers while an unknown-kid fetch is pending join
    /// it; after it, no other one starts within the throttle (default 5 s), and callers
    /// get `None` at once. The wait ends when the fetch does, or after the timeout.
    fn unknown_kid(&self, _kid: Option<&str>) -> Option<KeyWait> {
        let mut unknown = lock(&self.state.unknown);
        let progress = *self.state.progress.borrow();
        if unknown.target > progress.finished {
            return Some(self.wait_for(unknown.target));
        }
        let now = Instant::now();
        let throttled = unknown
            .asked_at
            .is_some_and(|at| now.duration_since(at) < self.state.config.throttle);
        if throttled {
            return None;
        }
        unknown.asked_at = Some(now);
        // The next fetch to start: one that begins after this call.
        unknown.target = progress.started + 1;
        self.state.wake.notify_one();
        Some(self.wait_for(unknown.target))
    }
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("target", &self.state.config.target)
            .field("keys", &self.state.keys)
            .finish_non_exhaustive()
    }
}
