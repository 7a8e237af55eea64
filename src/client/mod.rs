//! The other half of the protocol: a client that drives the [`flow`](crate::flow)
//! against any server speaking DESIGN §4, and a tower layer that completes step-up
//! challenges by itself (feature `client`).
//!
//! [`AuthClient`] signs in (password, then a code), refreshes silently when the access
//! token has expired, and logs out; its state is a [`flow::State`](crate::flow::State),
//! moved only by the flow's transition function. [`AuthClient::layer`] wraps the HTTP
//! service your API calls go through: it adds the access token (refreshing it first if
//! needed), and on `403 mfa_required` it asks your [`CodeProvider`] for a code,
//! completes the challenge and retries the original request once.
//!
//! A *delegated* step-up — `mfa_required` with no `mfa_token`, the answer for a token of
//! an identity provider that performs MFA itself — cannot be completed here: the layer
//! returns [`ClientError::StepUpDelegated`] with the [`DelegatedStepUp`]'s `acr_values`
//! and `max_age`, without asking for a code, calling the verify endpoint or retrying.
//! Send the user back to the IdP with them (RFC 9470 §4) and call again with the token
//! it issues.
//!
//! The client reads the server's answers by the codes and members of
//! [`wire`](crate::wire) ([`ErrorCode`], `token_expired`, `expires_in`), never by their
//! English descriptions.
//!
//! Any `tower::Service<http::Request<Full<Bytes>>>` that returns `http::Response<B>` can
//! carry the requests; [`AuthClient::http`] uses hyper-util's client (plain HTTP; bring
//! your own connector for TLS with [`AuthClient::builder`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_stepup::client::ClientError> {
//! use tower_stepup::client::{AuthClient, Proof};
//! use tower_stepup::flow::State;
//!
//! let auth = AuthClient::http("http://127.0.0.1:3000")?;
//! if let State::MfaRequired(_) = auth.login("alice", "alice-password").await? {
//!     auth.submit(Proof::Totp("123456".into())).await?;
//! }
//! // API calls: a token on each, step-up completed by asking the user for a code.
//! let api = auth.layer(|_challenge| async { Some(Proof::Totp("654321".into())) });
//! # let _ = api;
//! auth.logout().await?;
//! # Ok(()) }
//! ```
//!
//! # Security
//! The layer acts for the server at the base URL only: a request to another origin
//! (scheme, host and port, with 80 and 443 the defaults of `http` and `https`) passes
//! through untouched, with no `Authorization` header added, and a `403 mfa_required`
//! from another origin is returned as it is, without asking the [`CodeProvider`] for a
//! code. The tokens live in the client's state only (never printed: [`Secret`] hides them
//! from `Debug`). Flow operations are serialized: two API calls that find the access
//! token expired refresh it once, not twice (a second use of a rotated refresh token
//! would revoke the session). The retry happens once; a second challenge is returned
//! to the caller.

pub(crate) mod dpop;
mod layer;

use std::future::{poll_fn, Future};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use tower_service::Service;

pub use self::dpop::{DpopKey, DpopKeyError};
pub use self::layer::{AuthLayer, AuthService, ResponseFuture};
use crate::clock::{Clock, SystemClock};
use crate::flow::{
    DelegatedStepUp, ErrorReason, Event, IllegalTransition, Secret, Session, State, StateName,
};
use crate::wire::ErrorCode;

/// A boxed error from the HTTP service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest response body the client reads.
const MAX_BODY: usize = 1024 * 1024;

/// Why a client call failed. Refusals the flow knows (wrong password, wrong code,
/// lockout, expired challenge) are not errors: they are states.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request could not be sent or its answer read.
    #[error("transport: {0}")]
    Transport(#[source] BoxError),
    /// The call makes no sense in the current state (e.g. a code while signed out).
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The server answered something DESIGN §4 does not allow here.
    #[error("unexpected answer: {status} {error}")]
    Unexpected {
        /// The status.
        status: StatusCode,
        /// The body's `error` code, if any.
        error: String,
    },
    /// A route asked for a step-up only the identity provider can give (a *delegated*
    /// step-up: no `mfa_token` to redeem here). Nothing was retried and nothing was sent
    /// to the verify endpoint; the session is unchanged. Send the user to the IdP with
    /// the `acr_values` and `max_age` it holds, then call again with the new token.
    #[error(
        "step-up delegated to the identity provider (acr_values {:?}, max_age {:?})",
        .0.acr_values,
        .0.max_age
    )]
    StepUpDelegated(DelegatedStepUp),
    /// An API call needs a session and there is none.
    #[error("not signed in ({0:?})")]
    NotSignedIn(StateName),
    /// The base URL and a path do not make a URI.
    #[error("invalid URI: {0}")]
    Uri(String),
    /// A DPoP proof could not be made (the random source or the signature backend
    /// failed).
    #[error("DPoP: {0}")]
    Dpop(#[from] DpopKeyError),
    /// The server issued a DPoP-bound access token (`token_type: "DPoP"`) to a client
    /// without a DPoP key: it cannot be used, and is never sent as a bearer token.
    #[error("the server issued a DPoP-bound token to a client without a DPoP key")]
    DpopWithoutKey,
}

/// A second factor the user gives.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proof {
    /// A TOTP code.
    Totp(String),
    /// A recovery code.
    RecoveryCode(String),
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proof::Totp(_) => f.write_str("Totp(…)"),
            Proof::RecoveryCode(_) => f.write_str("RecoveryCode(…)"),
        }
    }
}

/// What a step-up challenge asks for, shown to whoever supplies the code.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Challenge {
    /// The method of the request that was challenged.
    pub method: Method,
    /// Its URI.
    pub uri: Uri,
    /// The server's `error_description`.
    pub description: Option<String>,
    /// The server's `mfa_requirements` (e.g. `{"challenge":[{"type":"otp"}]}`).
    pub requirements: Value,
}

/// Supplies a code when a route asks for step-up; `None` gives up (the `403` is
/// returned). Implemented for `Fn(Challenge) -> impl Future<Output = Option<Proof>>`.
pub trait CodeProvider: Send + Sync + 'static {
    /// A code for `challenge`.
    fn code(
        &self,
        challenge: Challenge,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Proof>> + Send + 'static>>;
}

impl<F, Fut> CodeProvider for F
where
    F: Fn(Challenge) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Proof>> + Send + 'static,
{
    fn code(
        &self,
        challenge: Challenge,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Proof>> + Send + 'static>> {
        Box::pin(self(challenge))
    }
}

/// The endpoint paths, DESIGN §4's by default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Paths {
    /// `POST` username and password. Default `/auth/login`.
    pub login: String,
    /// `POST` a code. Default `/auth/mfa/verify`.
    pub verify: String,
    /// `POST` a refresh token. Default `/auth/refresh`.
    pub refresh: String,
    /// `POST` to log out. Default `/auth/logout`.
    pub logout: String,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            login: "/auth/login".into(),
            verify: "/auth/mfa/verify".into(),
            refresh: "/auth/refresh".into(),
            logout: "/auth/logout".into(),
        }
    }
}

/// Builds an [`AuthClient`].
#[must_use]
pub struct AuthClientBuilder {
    base: String,
    paths: Paths,
    clock: Arc<dyn Clock>,
    refresh_early: u64,
    dpop: Option<DpopKey>,
}

impl AuthClientBuilder {
    /// Sender-constrained tokens (DPoP, RFC 9449) with `key`: every request to the
    /// server carries a fresh proof signed with it (see [DPoP](AuthClient#dpop)), and the
    /// server binds the tokens it issues to it. E.g.
    /// `.dpop(DpopKey::generate_es256()?)`.
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// The endpoint paths.
    pub fn paths(mut self, paths: Paths) -> Self {
        self.paths = paths;
        self
    }

    /// The clock that decides when tokens have expired. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Refresh this many seconds before the access token expires. Default 10.
    pub fn refresh_early(mut self, secs: u64) -> Self {
        self.refresh_early = secs;
        self
    }

    /// The client, sending its requests through `http`. The base URL must be absolute
    /// (`http://host:port` or `https://host`): its origin is where the
    /// [layer](AuthClient::layer) sends the access token.
    pub fn build<S>(self, http: S) -> Result<AuthClient<S>, ClientError> {
        let base = self.base.trim_end_matches('/').to_owned();
        let uri = base
            .parse::<Uri>()
            .map_err(|e| ClientError::Uri(e.to_string()))?;
        let origin = Origin::of(&uri)
            .ok_or_else(|| ClientError::Uri("the base URL needs a scheme and a host".to_owned()))?;
        Ok(AuthClient {
            inner: Arc::new(Inner {
                http,
                base,
                origin,
                paths: self.paths,
                clock: self.clock,
                refresh_early: self.refresh_early,
                state: tokio::sync::Mutex::new(State::default()),
                dpop: self.dpop,
                nonce: Mutex::new(None),
                issued: Mutex::new(None),
            }),
        })
    }
}

/// Drives the flow against a server: see the [module docs](self).
///
/// # DPoP
/// With a key ([`AuthClientBuilder::dpop`]), every request the client makes to its
/// server — login, verify, refresh, logout, and the API calls through its
/// [layer](AuthClient::layer) — carries a fresh proof in the `DPoP` header (RFC 9449
/// §4), its `htu` the request's URL (scheme, host, port, path). A request that sends the
/// access token sends it as `Authorization: DPoP <token>` with the token's hash (`ath`)
/// in the proof; login and refresh send the proof alone.
///
/// - The scheme of an access token is its token response's `token_type`: a server that
///   answers `"Bearer"` (one without DPoP) keeps getting bearer tokens, and API calls to
///   it carry no proof (the auth endpoints still do). A `"DPoP"` token is never sent as
///   `Bearer`; without a key the client refuses one ([`ClientError::DpopWithoutKey`]).
/// - Nonces (RFC 9449 §8): the last `DPoP-Nonce` the server sent goes in every later
///   proof. An answer that asks for it (`401` with a `use_dpop_nonce` challenge, or `400`
///   with a `use_dpop_nonce` error, and a `DPoP-Nonce` header) is retried once with a new
///   proof carrying the nonce; a second such answer is returned, never retried again.
/// - A request to another origin gets neither the token nor a proof.
pub struct AuthClient<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for AuthClient<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    http: S,
    base: String,
    /// The base URL's origin: the only one the layer sends the access token to.
    origin: Origin,
    paths: Paths,
    clock: Arc<dyn Clock>,
    refresh_early: u64,
    /// The flow; held across a whole flow operation, so operations are serialized.
    state: tokio::sync::Mutex<State>,
    /// The DPoP key, if the client uses DPoP.
    dpop: Option<DpopKey>,
    /// The last `DPoP-Nonce` the server (the base URL's origin, the only one proofs go
    /// to) sent: put in every later proof.
    nonce: Mutex<Option<String>>,
    /// The access token of the last token response and how it is presented.
    issued: Mutex<Option<(Secret, Scheme)>>,
}

/// How an access token is presented (RFC 9449 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `Authorization: Bearer`, no proof needed.
    Bearer,
    /// `Authorization: DPoP`, with a proof carrying `ath`.
    Dpop,
}

/// A lock that a panic elsewhere did not poison for good (its data is a plain value).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The origin of an absolute URI (RFC 6454): scheme and host, lowercased, and port,
/// the scheme's default if none is given.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// `None` for a URI without a scheme or a host (e.g. a bare path).
    fn of(uri: &Uri) -> Option<Origin> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host().filter(|h| !h.is_empty())?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        Some(Origin { scheme, host, port })
    }
}

impl<S> AuthClient<S> {
    /// Whether `uri` is on the base URL's origin (a URI without one, e.g. a bare path,
    /// is not).
    pub(crate) fn is_own_origin(&self, uri: &Uri) -> bool {
        Origin::of(uri).as_ref() == Some(&self.inner.origin)
    }

    /// The DPoP key, if the client uses DPoP.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.dpop.as_ref()
    }

    /// How `token` is presented: as its token response said (`Bearer` without a key);
    /// with a key, a token whose response was not seen is taken as DPoP-bound (never
    /// sent as Bearer).
    fn scheme_of(&self, token: &Secret) -> Scheme {
        if self.inner.dpop.is_none() {
            return Scheme::Bearer;
        }
        match &*lock(&self.inner.issued) {
            Some((issued, scheme)) if issued == token => *scheme,
            _ => Scheme::Dpop,
        }
    }

    /// Sets the `Authorization` header (`token`, in its scheme) and the `DPoP` proof of a
    /// request to the own origin. A proof goes with every request to the auth
    /// `endpoint`s, and with the API calls whose token is DPoP-bound; it carries `ath`
    /// when a token is sent. `true` if a proof was added.
    pub(crate) fn authorize(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
        uri: &Uri,
        token: Option<&Secret>,
        endpoint: bool,
    ) -> Result<bool, ClientError> {
        let scheme = token.map(|t| (t, self.scheme_of(t)));
        if let Some((token, scheme)) = scheme {
            headers.insert(AUTHORIZATION, authorization_value(token, scheme)?);
        }
        let Some(key) = &self.inner.dpop else {
            return Ok(false);
        };
        if !endpoint && !matches!(scheme, Some((_, Scheme::Dpop))) {
            return Ok(false);
        }
        let htu = dpop::htu_of(uri).map_err(DpopKeyError::from)?;
        let nonce = lock(&self.inner.nonce).clone();
        let proof = key.proof(
            method,
            htu.as_str(),
            token.map(Secret::expose),
            nonce.as_deref(),
            self.inner.clock.now(),
        )?;
        let value = HeaderValue::try_from(proof).map_err(|e| ClientError::Transport(e.into()))?;
        headers.insert(crate::dpop::DPOP_HEADER, value);
        Ok(true)
    }

    /// Remembers the server's nonce from an answer's `DPoP-Nonce` header (RFC 9449 §8.2:
    /// any answer may carry a new one).
    pub(crate) fn learn_nonce(&self, headers: &HeaderMap) {
        if self.inner.dpop.is_none() {
            return;
        }
        if let Some(nonce) = dpop::nonce_of(headers) {
            *lock(&self.inner.nonce) = Some(nonce);
        }
    }
}

/// hyper-util's client over plain HTTP, as [`AuthClient::http`] builds it.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// hyper-util's HTTP/1 client over plain HTTP, for [`AuthClient::builder`] or as the
/// service under [`AuthClient::layer`]. Needs a tokio runtime.
pub fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

impl AuthClient<HttpClient> {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:3000`), over hyper-util's
    /// HTTP/1 client. Needs a tokio runtime.
    pub fn http(base: &str) -> Result<Self, ClientError> {
        AuthClient::<()>::builder(base).build(http_client())
    }
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// The body's `error`, as written (empty if there is none).
    fn error(&self) -> &str {
        field(&self.body, "error").as_str().unwrap_or("")
    }

    /// The body's `error`, if it is a code of the wire contract.
    fn code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.error())
    }

    fn unexpected(&self) -> ClientError {
        ClientError::Unexpected {
            status: self.status,
            error: self.error().to_owned(),
        }
    }

    /// Whether the answer asks for a proof with the server's nonce (after the one retry:
    /// the server's nonce could not be satisfied, nothing was decided).
    fn asks_for_nonce(&self) -> bool {
        dpop::asks_for_nonce(self.status, &self.headers, Some(&self.body))
    }

    /// The token response of DESIGN §4 (`access_token`, `expires_in`, `refresh_token`).
    fn session(&self, now: u64) -> Option<Session> {
        let access = field(&self.body, "access_token").as_str()?;
        let expires_in = field(&self.body, "expires_in").as_u64()?;
        let refresh = field(&self.body, "refresh_token")
            .as_str()
            .map(Secret::from);
        Some(Session::new(access, expires_in, refresh, now))
    }

    fn retry_after(&self) -> u64 {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| field(&self.body, "retry_after").as_u64())
            .unwrap_or(1)
    }
}

impl AuthClient<()> {
    /// A builder for a client of the server at `base`.
    pub fn builder(base: &str) -> AuthClientBuilder {
        AuthClientBuilder {
            base: base.to_owned(),
            paths: Paths::default(),
            clock: Arc::new(SystemClock),
            refresh_early: 10,
            dpop: None,
        }
    }
}

impl<S, B> AuthClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The current state (a copy).
    pub async fn state(&self) -> State {
        self.inner.state.lock().await.clone()
    }

    fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    fn uri(&self, path: &str) -> Result<Uri, ClientError> {
        format!("{}{path}", self.inner.base)
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Uri(e.to_string()))
    }

    /// `POST` a JSON body (with the access token, if given), read the JSON answer. With
    /// DPoP, an answer that asks for the server's nonce is retried once with it.
    async fn post(
        &self,
        path: &str,
        body: Value,
        access: Option<&Secret>,
    ) -> Result<Answer, ClientError> {
        let uri = self.uri(path)?;
        let body = Bytes::from(body.to_string());
        let (answer, proved) = self.post_once(&uri, body.clone(), access).await?;
        if proved && answer.asks_for_nonce() {
            return Ok(self.post_once(&uri, body, access).await?.0);
        }
        Ok(answer)
    }

    /// One `POST`; `true` beside the answer if it carried a proof.
    async fn post_once(
        &self,
        uri: &Uri,
        body: Bytes,
        access: Option<&Secret>,
    ) -> Result<(Answer, bool), ClientError> {
        let mut req = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(e.into()))?;
        let proved = self.authorize(req.headers_mut(), &Method::POST, uri, access, true)?;
        let res = send(self.inner.http.clone(), req).await?;
        let (parts, body) = res.into_parts();
        self.learn_nonce(&parts.headers);
        let bytes = read(body).await?;
        let answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        Ok((answer, proved))
    }

    /// The session of a token response, with how its access token is presented
    /// (`token_type`, RFC 9449 §5): `Bearer` as a bearer token, `DPoP` with proofs (which
    /// a client without a key cannot make). With a key, a response without a
    /// `token_type` is taken as DPoP-bound.
    fn issued(&self, answer: &Answer, now: u64) -> Result<Session, ClientError> {
        let session = answer.session(now).ok_or_else(|| answer.unexpected())?;
        let token_type = field(&answer.body, "token_type").as_str().unwrap_or("");
        let scheme = if token_type.eq_ignore_ascii_case("Bearer") {
            Scheme::Bearer
        } else if token_type.eq_ignore_ascii_case("DPoP") || self.inner.dpop.is_some() {
            Scheme::Dpop
        } else {
            Scheme::Bearer
        };
        if scheme == Scheme::Dpop && self.inner.dpop.is_none() {
            return Err(ClientError::DpopWithoutKey);
        }
        *lock(&self.inner.issued) = Some((session.access_token.clone(), scheme));
        Ok(session)
    }

    /// Signs in with a password: the new state is `SignedIn` (no second factor),
    /// `MfaRequired` (a code is due), or `SignedOut` with the reason.
    pub async fn login(&self, username: &str, password: &str) -> Result<State, ClientError> {
        let mut state = self.inner.state.lock().await;
        state.transition(Event::SubmitCredentials)?;
        let sent = self
            .post(
                &self.inner.paths.login,
                json!({ "username": username, "password": password }),
                None,
            )
            .await;
        let answer = match sent {
            Ok(a) => a,
            Err(e) => {
                state.transition(Event::RequestFailed(ErrorReason::Unavailable))?;
                return Err(e);
            }
        };
        let now = self.now();
        let event = match answer.status {
            StatusCode::OK if field(&answer.body, "status") == "mfa_required" => {
                let partial = field(&answer.body, "partial_token")
                    .as_str()
                    .ok_or_else(|| answer.unexpected())?;
                Event::MfaEnabled {
                    partial_token: partial.into(),
                    expires_in: field(&answer.body, "expires_in").as_u64().unwrap_or(0),
                    now,
                }
            }
            StatusCode::OK => Event::CredentialsValid(self.issued(&answer, now)?),
            StatusCode::UNAUTHORIZED => Event::InvalidCredentials,
            _ => {
                state.transition(Event::RequestFailed(ErrorReason::Unavailable))?;
                return Err(answer.unexpected());
            }
        };
        state.transition(event)?;
        Ok(state.clone())
    }

    /// Submits a code for the outstanding challenge (after login, or a step-up). An
    /// expired challenge is not sent: the state moves on (to `Failed` with
    /// `partial_token_expired` after login; back to `SignedIn` for a step-up).
    pub async fn submit(&self, proof: Proof) -> Result<State, ClientError> {
        let mut state = self.inner.state.lock().await;
        self.submit_locked(&mut state, proof).await?;
        Ok(state.clone())
    }

    /// Sends the code, unless the challenge has expired. `true` if the server verified
    /// it; otherwise the state says why not.
    async fn submit_locked(&self, state: &mut State, proof: Proof) -> Result<bool, ClientError> {
        state.transition(Event::SubmitCode { now: self.now() })?;
        let (token, access) = match &*state {
            State::MfaRequired(p) => (p.partial_token.clone(), None),
            State::StepUpRequired(s) => (s.mfa_token.clone(), Some(s.session.access_token.clone())),
            // Expired before sending: the transition said so.
            _ => return Ok(false),
        };
        let body = match &proof {
            Proof::Totp(code) => json!({ "mfa_token": token.expose(), "code": code }),
            Proof::RecoveryCode(code) => {
                json!({ "mfa_token": token.expose(), "recovery_code": code })
            }
        };
        let answer = match self
            .post(&self.inner.paths.verify, body, access.as_ref())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                state.transition(Event::RequestFailed(ErrorReason::Unavailable))?;
                return Err(e);
            }
        };
        let now = self.now();
        let event = match (answer.status, answer.code()) {
            (StatusCode::OK, _) => Event::CodeVerified(self.issued(&answer, now)?),
            // The server's nonce, asked for again after the retry: nothing was decided.
            _ if answer.asks_for_nonce() => Event::RequestFailed(ErrorReason::Unavailable),
            (StatusCode::UNAUTHORIZED, Some(ErrorCode::InvalidCode)) => Event::CodeRejected {
                attempts_remaining: field(&answer.body, "attempts_remaining")
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok()),
            },
            (StatusCode::TOO_MANY_REQUESTS, _) => Event::TooManyAttempts {
                retry_after: answer.retry_after(),
                now,
            },
            (_, Some(ErrorCode::MfaTokenExpired)) => {
                Event::RequestFailed(ErrorReason::ChallengeExpired)
            }
            (_, Some(ErrorCode::MfaTokenNotFound)) => {
                Event::RequestFailed(ErrorReason::ChallengeNotFound)
            }
            (_, Some(ErrorCode::MfaTokenInvalid)) => {
                Event::RequestFailed(ErrorReason::ChallengeInvalid)
            }
            (status, _) if status.is_server_error() => {
                Event::RequestFailed(ErrorReason::Unavailable)
            }
            _ => {
                state.transition(Event::RequestFailed(ErrorReason::ChallengeInvalid))?;
                return Err(answer.unexpected());
            }
        };
        let verified = matches!(event, Event::CodeVerified(_));
        state.transition(event)?;
        Ok(verified)
    }

    /// The access token, refreshed first if it has expired (or expires within
    /// `refresh_early`). `NotSignedIn` if there is no session, or if the refresh failed
    /// (the state is then `SignedOut`).
    pub async fn access_token(&self) -> Result<Secret, ClientError> {
        let mut state = self.inner.state.lock().await;
        self.access_token_locked(&mut state).await
    }

    async fn access_token_locked(&self, state: &mut State) -> Result<Secret, ClientError> {
        let soon = self.now().saturating_add(self.inner.refresh_early);
        let expired = match state.session() {
            Some(session) if !session.is_expired(soon) => return Ok(session.access_token.clone()),
            Some(_) => true,
            None => false,
        };
        if expired && !matches!(state, State::SessionExpired(_)) {
            state.transition(Event::TokenExpired)?;
        }
        if let State::SessionExpired(_) = state {
            self.refresh_locked(state).await?;
        }
        match state.session() {
            Some(session) => Ok(session.access_token.clone()),
            None => Err(ClientError::NotSignedIn(state.name())),
        }
    }

    /// Refreshes now, whatever the access token's expiry.
    pub async fn refresh(&self) -> Result<State, ClientError> {
        let mut state = self.inner.state.lock().await;
        if !matches!(*state, State::SessionExpired(_)) {
            state.transition(Event::TokenExpired)?;
        }
        self.refresh_locked(&mut state).await?;
        Ok(state.clone())
    }

    /// From `SessionExpired`: a new session, or `SignedOut`. A transport failure leaves
    /// the state in `SessionExpired` (the refresh token may still be good).
    async fn refresh_locked(&self, state: &mut State) -> Result<(), ClientError> {
        let Some(refresh) = state.session().and_then(|s| s.refresh_token.clone()) else {
            state.transition(Event::RefreshFailed)?;
            return Ok(());
        };
        let answer = self
            .post(
                &self.inner.paths.refresh,
                json!({ "refresh_token": refresh.expose() }),
                None,
            )
            .await?;
        let now = self.now();
        match answer.status {
            StatusCode::OK => {
                let session = self.issued(&answer, now)?;
                state.transition(Event::Refreshed(session))?;
            }
            // The server's nonce, asked for again after the retry: the refresh token was
            // not spent; the state stays `SessionExpired`, as after a transport failure.
            _ if answer.asks_for_nonce() => return Err(answer.unexpected()),
            status if status.is_client_error() => state.transition(Event::RefreshFailed)?,
            _ => return Err(answer.unexpected()),
        }
        Ok(())
    }

    /// Logs out: the server revokes the session's refresh family, the client forgets
    /// its tokens. The state is `SignedOut` even if the server could not be reached.
    pub async fn logout(&self) -> Result<State, ClientError> {
        let mut state = self.inner.state.lock().await;
        let Some(session) = state.session().cloned() else {
            return Err(ClientError::NotSignedIn(state.name()));
        };
        let body = json!({
            "refresh_token": session.refresh_token.as_ref().map(Secret::expose).unwrap_or(""),
        });
        let sent = self
            .post(&self.inner.paths.logout, body, Some(&session.access_token))
            .await;
        state.transition(Event::Logout)?;
        sent?;
        Ok(state.clone())
    }

    /// A layer for the service your API calls go through: tokens added, silent refresh,
    /// step-up completed with `codes` and the request retried once. Only for requests to
    /// the base URL's origin: any other request passes through untouched.
    pub fn layer<P: CodeProvider>(&self, codes: P) -> AuthLayer<S, P> {
        AuthLayer::new(self.clone(), codes)
    }

    /// The step-up detour: record the challenge, ask for a code, submit it. `true` if
    /// the session was elevated (retry the request).
    pub(crate) async fn step_up<P: CodeProvider + ?Sized>(
        &self,
        challenge: Challenge,
        mfa_token: &str,
        expires_in: u64,
        codes: &P,
    ) -> Result<bool, ClientError> {
        let mut state = self.inner.state.lock().await;
        state.transition(Event::StepUpChallenged {
            mfa_token: mfa_token.into(),
            expires_in,
            now: self.now(),
        })?;
        let Some(proof) = codes.code(challenge).await else {
            state.transition(Event::StepUpAbandoned)?;
            return Ok(false);
        };
        let verified = self.submit_locked(&mut state, proof).await?;
        if let State::StepUpRequired(_) = *state {
            // A wrong code: give the challenge up; the caller gets the 403.
            state.transition(Event::StepUpAbandoned)?;
        }
        // Only a verified code elevates the session. A challenge that expired (before
        // the code came, or at the server) or was refused leaves it as it was: a retry
        // would only be challenged again.
        Ok(verified)
    }

    /// A route answered a delegated step-up: recorded in the flow (the session stays
    /// `SignedIn`), and handed back as [`ClientError::StepUpDelegated`]. No code is asked
    /// for and nothing is sent.
    pub(crate) async fn step_up_delegated(&self, delegated: DelegatedStepUp) -> ClientError {
        let mut state = self.inner.state.lock().await;
        // Refused only if the session ended meanwhile (a logout): the state stays as it
        // is, and the answer is still the caller's to act on.
        let _ = state.transition(Event::StepUpDelegated(delegated.clone()));
        ClientError::StepUpDelegated(delegated)
    }

    /// The access token was refused as expired although the client thought it good
    /// (clock skew): refresh now.
    pub(crate) async fn expired_by_server(&self, used: &Secret) -> Result<(), ClientError> {
        let mut state = self.inner.state.lock().await;
        // Another call may have refreshed meanwhile.
        if state.session().map(|s| &s.access_token) == Some(used) {
            state.transition(Event::TokenExpired)?;
            self.refresh_locked(&mut state).await?;
        }
        Ok(())
    }
}

/// A member of a JSON object, `Null` if absent.
fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

/// The `Authorization` value of an access token in its scheme.
fn authorization_value(token: &Secret, scheme: Scheme) -> Result<HeaderValue, ClientError> {
    let scheme = match scheme {
        Scheme::Bearer => "Bearer",
        Scheme::Dpop => "DPoP",
    };
    let mut value = HeaderValue::try_from(format!("{scheme} {}", token.expose()))
        .map_err(|e| ClientError::Transport(e.into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Waits for `http` to be ready, then sends `req`.
async fn send<S, B>(mut http: S, req: Request<Full<Bytes>>) -> Result<Response<B>, ClientError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    poll_fn(|cx| http.poll_ready(cx))
        .await
        .map_err(|e| ClientError::Transport(e.into()))?;
    http.call(req)
        .await
        .map_err(|e| ClientError::Transport(e.into()))
}

/// Reads a body whole, at most [`MAX_BODY`] bytes.
async fn read<B>(body: B) -> Result<Bytes, ClientError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(ClientError::Transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> AuthClient<()> {
        AuthClient::<()>::builder(base).build(()).unwrap()
    }

    fn own(client: &AuthClient<()>, uri: &str) -> bool {
        client.is_own_origin(&uri.parse().unwrap())
    }

    #[test]
    fn own_origin_is_scheme_host_and_port() {
        let c = client("http://api.example:8080/");
        assert!(own(&c, "http://api.example:8080/billing"));
        assert!(own(&c, "HTTP://API.Example:8080/billing?x=1"));
        assert!(!own(&c, "http://api.example/billing"), "another port");
        assert!(!own(&c, "http://api.example:8081/billing"), "another port");
        assert!(
            !own(&c, "https://api.example:8080/billing"),
            "another scheme"
        );
        assert!(!own(&c, "http://evil.example:8080/billing"), "another host");
        assert!(
            !own(&c, "http://api.example.evil.example:8080/"),
            "another host"
        );
        assert!(!own(&c, "/billing"), "no origin at all");
        // userinfo is not the host.
        assert!(!own(&c, "http://api.example:8080@evil.example:8080/"));
        assert!(own(&c, "http://someone@api.example:8080/"));
    }

    #[test]
    fn default_ports_are_the_schemes() {
        let c = client("https://api.example");
        assert!(own(&c, "https://api.example:443/x"));
        assert!(own(&c, "https://api.example/x"));
        assert!(!own(&c, "http://api.example/x"));
        assert!(!own(&c, "https://api.example:8443/x"));
        let c = client("http://127.0.0.1:80");
        assert!(own(&c, "http://127.0.0.1/x"));
        assert!(
            !own(&c, "http://localhost/x"),
            "a host is compared as written"
        );
    }

    #[test]
    fn a_base_url_without_scheme_or_host_is_refused() {
        for base in ["/api", "", "api.example", "127.0.0.1:3000"] {
            let built = AuthClient::<()>::builder(base).build(());
            assert!(
                matches!(built, Err(ClientError::Uri(_))),
                "{base:?} was accepted"
            );
        }
    }
}
