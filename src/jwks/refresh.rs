//! The background task: fetch, wait (the response's `max-age` within the bounds, or a
//! growing backoff after a failure, or until an unknown `kid` asks), fetch again; end
//! when the last handle is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::cache_control::Freshness;
use super::cycle::fetch_once;
use super::error::JwksError;
use super::state::{Config, State};

/// The first retry after a failure comes after this long (or the minimum refresh period
/// if shorter), then the delay doubles up to the minimum refresh period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Runs until every handle of the source is dropped. It holds the state only while a
/// fetch runs.
pub(crate) async fn run(state: Weak<State>, wake: Arc<Notify>) {
    let mut failures = 0u32;
    loop {
        let delay = {
            let Some(state) = state.upgrade() else {
                return;
            };
            let outcome = fetch_once(&state).await;
            next_delay(&state.config, outcome, &mut failures)
        };
        // Woken early by an unknown-kid request, or by the last handle going away.
        let _ = tokio::time::timeout(delay, wake.notified()).await;
    }
}

/// How long to wait before the next fetch, after `outcome`; `failures` counts the
/// failures in a row.
pub(crate) fn next_delay(
    config: &Config,
    outcome: Result<Freshness, JwksError>,
    failures: &mut u32,
) -> Duration {
    match outcome {
        Ok(freshness) => {
            *failures = 0;
            refresh_period(config, freshness)
        }
        Err(_) => {
            let delay = backoff(config.min_refresh, *failures);
            *failures = failures.saturating_add(1);
            delay
        }
    }
}

/// The refresh period a response asks for, within the bounds.
pub(crate) fn refresh_period(config: &Config, freshness: Freshness) -> Duration {
    let wanted = match freshness {
        Freshness::MaxAge(seconds) => Duration::from_secs(seconds),
        Freshness::Revalidate => config.min_refresh,
        Freshness::Unspecified => config.default_refresh,
    };
    wanted.clamp(config.min_refresh, config.max_refresh)
}

/// The delay before retry number `failures + 1`: 1 s doubling, at most `ceiling`.
pub(crate) fn backoff(ceiling: Duration, failures: u32) -> Duration {
    let first = FIRST_RETRY.min(ceiling);
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::state::Target;

    fn config(min: u64, max: u64, default: u64) -> Config {
        Config {
            target: Target::Jwks("https://idp.test/jwks".parse().unwrap()),
            algorithms: vec![],
            min_refresh: Duration::from_secs(min),
            max_refresh: Duration::from_secs(max),
            default_refresh: Duration::from_secs(default),
            throttle: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            allow_http: false,
        }
    }

    #[test]
    fn max_age_is_honoured_within_the_bounds() {
        let c = config(300, 86_400, 600);
        let secs = |f| refresh_period(&c, f).as_secs();
        assert_eq!(secs(Freshness::MaxAge(3600)), 3600);
        assert_eq!(secs(Freshness::MaxAge(10)), 300, "clamped up");
        assert_eq!(secs(Freshness::MaxAge(u64::MAX)), 86_400, "clamped down");
        assert_eq!(secs(Freshness::Revalidate), 300, "no-store: the minimum");
        assert_eq!(secs(Freshness::Unspecified), 600, "the default");
        let narrow = config(1000, 2000, 600);
        assert_eq!(
            refresh_period(&narrow, Freshness::Unspecified).as_secs(),
            1000
        );
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_minimum_period() {
        let c = config(300, 86_400, 600);
        let mut failures = 0;
        let delays: Vec<u64> = (0..12)
            .map(|_| next_delay(&c, Err(JwksError::Network), &mut failures).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(
            next_delay(&c, Ok(Freshness::MaxAge(900)), &mut failures).as_secs(),
            900
        );
        assert_eq!(failures, 0, "a success resets the backoff");
        assert_eq!(backoff(Duration::from_secs(300), u32::MAX).as_secs(), 300);
        let quick = Duration::from_millis(200);
        assert_eq!(backoff(quick, 0), quick, "never longer than the minimum");
    }
}
