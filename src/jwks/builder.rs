//! [`JwksSourceBuilder`]: where the keys come from, how often they are fetched, and with
//! what.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use jsonwebtoken::Algorithm;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tower_service::Service;

use super::discovery::document_url;
use super::error::BoxError;
use super::fetch::{HttpsFetcher, DEFAULT_TIMEOUT};
use super::refresh;
use super::seam::{Fetch, ServiceFetch};
use super::source::JwksSource;
use super::state::{Config, Progress, State, Target};
use super::url;
use crate::error::ConfigError;
use crate::token::SharedKeys;

/// Default shortest refresh period (5 min): a `max-age` below it, `no-store` and
/// `no-cache` refresh this often.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(5 * 60);
/// Default longest refresh period (24 h): a longer `max-age` is cut to it.
pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);
/// Default refresh period (10 min) when the response gives no `max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10 * 60);
/// Default shortest time between two fetches caused by an unknown `kid` (5 s).
pub const DEFAULT_UNKNOWN_KID_THROTTLE: Duration = Duration::from_secs(5);

/// The URL as given, checked at build time.
#[derive(Debug)]
enum Location {
    Jwks(String),
    Discovery(String),
}

/// Configuration of a [`JwksSource`].
#[must_use]
pub struct JwksSourceBuilder {
    location: Location,
    algorithms: Vec<Algorithm>,
    fetcher: Option<Box<dyn Fetch>>,
    min_refresh: Duration,
    max_refresh: Duration,
    default_refresh: Duration,
    throttle: Duration,
    timeout: Duration,
    allow_http: bool,
}

impl fmt::Debug for JwksSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSourceBuilder")
            .field("location", &self.location)
            .field("algorithms", &self.algorithms)
            .field("custom_fetcher", &self.fetcher.is_some())
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    /// Keys from a JWKS URL (`https://`; `http://` only to a loopback host unless
    /// [allowed](JwksSourceBuilder::allow_http)).
    pub fn builder(jwks_url: impl Into<String>) -> JwksSourceBuilder {
        JwksSourceBuilder::new(Location::Jwks(jwks_url.into()))
    }

    /// Keys from the JWKS an issuer's OpenID Connect discovery document names: GET
    /// `{issuer without trailing slash}/.well-known/openid-configuration`, whose `issuer`
    /// must equal `issuer` exactly (otherwise no keys are taken from it; the failure is
    /// logged and retried), then its `jwks_uri` (the same `https://` rules).
    pub fn discover(issuer: impl Into<String>) -> JwksSourceBuilder {
        JwksSourceBuilder::new(Location::Discovery(issuer.into()))
    }
}

impl JwksSourceBuilder {
    fn new(location: Location) -> Self {
        Self {
            location,
            algorithms: Vec::new(),
            fetcher: None,
            min_refresh: DEFAULT_MIN_REFRESH,
            max_refresh: DEFAULT_MAX_REFRESH,
            default_refresh: DEFAULT_REFRESH,
            throttle: DEFAULT_UNKNOWN_KID_THROTTLE,
            timeout: DEFAULT_TIMEOUT,
            allow_http: false,
        }
    }

    /// The algorithm allow-list: entries of other algorithms are skipped
    /// ([`KeySet::from_jwks`](crate::KeySet::from_jwks)). Required; use the verifier's.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Fetch with this service instead of the default [`HttpsFetcher`] (e.g. one with
    /// your own roots, a proxy, or a test double). It receives GET requests with the
    /// full URL and answers the response with its whole body; errors may be boxed
    /// [`JwksError`](super::JwksError)s to keep their kind.
    pub fn fetcher<S>(mut self, fetcher: S) -> Self
    where
        S: Service<Request<()>, Response = Response<Bytes>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        self.fetcher = Some(Box::new(ServiceFetch::new(fetcher)));
        self
    }

    /// The refresh period is the response's `Cache-Control: max-age`, kept within
    /// `min..=max` (`no-store` and `no-cache`: `min`). Defaults [`DEFAULT_MIN_REFRESH`],
    /// [`DEFAULT_MAX_REFRESH`]. After a failed fetch, retries start after 1 s (or `min`
    /// if shorter) and double up to `min`.
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max;
        self
    }

    /// The refresh period when a response gives no `max-age` (kept within the bounds).
    /// Default [`DEFAULT_REFRESH`].
    pub fn default_refresh(mut self, period: Duration) -> Self {
        self.default_refresh = period;
        self
    }

    /// The shortest time between two fetches caused by an unknown `kid`. Default
    /// [`DEFAULT_UNKNOWN_KID_THROTTLE`].
    ///
    /// # Security
    /// Anyone can send tokens with made-up `kid`s: the throttle keeps such a flood from
    /// becoming a flood of requests to the identity provider.
    pub fn unknown_kid_throttle(mut self, throttle: Duration) -> Self {
        self.throttle = throttle;
        self
    }

    /// The bound on each request (connect and the whole response), for the default
    /// fetcher and around a custom one; also the longest an unknown-kid caller waits.
    /// Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allows `http://` URLs to any host (default: only to loopback hosts).
    ///
    /// # Security
    /// Keys fetched over plain HTTP can be replaced by anyone on the path, who can then
    /// sign any token. Only for a network you trust entirely.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Checks the configuration, starts the background task (it needs a tokio runtime:
    /// call this inside one) and returns the source. The first fetch starts at once;
    /// the source is empty until it succeeds (see
    /// [`JwksSource::wait_loaded`]).
    pub fn build(self) -> Result<JwksSource, ConfigError> {
        self.start().map(|(source, _task)| source)
    }

    /// Builds the source and starts its task.
    pub(crate) fn start(self) -> Result<(JwksSource, JoinHandle<()>), ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::Missing("a tokio runtime (build the JwksSource inside one)")
        })?;
        let config = self.config()?;
        let fetcher = match self.fetcher {
            Some(fetcher) => fetcher,
            None => Box::new(ServiceFetch::new(
                HttpsFetcher::builder().timeout(config.timeout).build()?,
            )),
        };
        let wake = Arc::new(Notify::new());
        let state = Arc::new(State {
            keys: SharedKeys::empty(),
            config,
            fetcher,
            progress: watch::Sender::new(Progress::default()),
            wake: Arc::clone(&wake),
            unknown: Mutex::default(),
            stats: Mutex::default(),
            discovered: Mutex::new(None),
        });
        let task = runtime.spawn(refresh::run(Arc::downgrade(&state), wake));
        Ok((JwksSource { state }, task))
    }

    /// The settings, checked.
    fn config(&self) -> Result<Config, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::Missing("algorithm allow-list"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must be more than zero"));
        }
        if self.min_refresh.is_zero() || self.min_refresh > self.max_refresh {
            return Err(ConfigError::invalid(
                "refresh_bounds",
                "min must be more than zero and at most max",
            ));
        }
        Ok(Config {
            target: self.target()?,
            algorithms: self.algorithms.clone(),
            min_refresh: self.min_refresh,
            max_refresh: self.max_refresh,
            default_refresh: self.default_refresh,
            throttle: self.throttle,
            timeout: self.timeout,
            allow_http: self.allow_http,
        })
    }

    /// The URL to fetch first, checked against the `https://` rules.
    fn target(&self) -> Result<Target, ConfigError> {
        let refused =
            |setting, problem: url::UrlProblem| ConfigError::invalid(setting, problem.describe());
        match &self.location {
            Location::Jwks(jwks) => url::checked(jwks, self.allow_http)
                .map(Target::Jwks)
                .map_err(|p| refused("jwks url", p)),
            Location::Discovery(issuer) => {
                let document = url::checked(&document_url(issuer), self.allow_http)
                    .map_err(|p| refused("issuer", p))?;
                Ok(Target::Discovery {
                    issuer: issuer.clone(),
                    document,
                })
            }
        }
    }
}
