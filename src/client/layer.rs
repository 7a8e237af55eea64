//! The client layer: a token on each request, silent refresh, step-up completed and the
//! request retried once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Either, Full};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::{field, read, AuthClient, BoxError, Challenge, ClientError, CodeProvider, Secret};
use crate::flow::DelegatedStepUp;
use crate::layer::DEFAULT_MFA_TOKEN_TTL;
use crate::wire::{ErrorCode, EXPIRES_IN, TOKEN_EXPIRED};

/// Wraps an HTTP service with an [`AuthClient`]'s session. Built by
/// [`AuthClient::layer`].
#[must_use]
pub struct AuthLayer<S, P> {
    client: AuthClient<S>,
    codes: Arc<P>,
}

impl<S, P> AuthLayer<S, P> {
    pub(super) fn new(client: AuthClient<S>, codes: P) -> Self {
        Self {
            client,
            codes: Arc::new(codes),
        }
    }
}

impl<S, P> Clone for AuthLayer<S, P> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            codes: self.codes.clone(),
        }
    }
}

impl<S, P, T> Layer<T> for AuthLayer<S, P> {
    type Service = AuthService<T, S, P>;

    fn layer(&self, inner: T) -> Self::Service {
        AuthService {
            inner,
            client: self.client.clone(),
            codes: self.codes.clone(),
        }
    }
}

/// The service of [`AuthLayer`]: requests go out with the access token; a `403
/// mfa_required` is completed with a code from the [`CodeProvider`] and the request is
/// retried once; an access token the server finds expired is refreshed and the request
/// retried once.
///
/// What the answers mean is read from their JSON bodies, by the codes of
/// [`wire`](crate::wire):
/// - expired: a `401` whose `error` is `invalid_token` and whose body says
///   `"token_expired": true` ([`wire::TOKEN_EXPIRED`](crate::wire::TOKEN_EXPIRED)). The
///   English `error_description` and the `WWW-Authenticate` header are not read: a
///   server that does not send the member (older versions of this crate) gets its `401`
///   back to the caller, and the client's own clock refreshes the token before it
///   expires anyway.
/// - step-up: an `error` of `mfa_required` with an `mfa_token`; the challenge lives
///   `expires_in` seconds ([`wire::EXPIRES_IN`](crate::wire::EXPIRES_IN)), or, from a
///   server that does not send it, [`DEFAULT_MFA_TOKEN_TTL`](crate::layer::DEFAULT_MFA_TOKEN_TTL)
///   (300 s, the server's default). A code is not sent for a challenge past its
///   lifetime.
/// - delegated step-up: a `401` or `403` that [`DelegatedStepUp::from_response`] reads
///   as one (`mfa_required` with no `mfa_token`, or a bare RFC 9470
///   `insufficient_user_authentication` challenge). The call fails with
///   [`ClientError::StepUpDelegated`]: no code is asked for, nothing goes to the verify
///   endpoint, the request is not retried. The `acr_values` and `max_age` are read from
///   the `WWW-Authenticate` challenge, then from the body.
///
/// # Security
/// All of that only for requests to the [`AuthClient`]'s origin (its base URL's scheme,
/// host and port). A request to any other origin is sent as it is: no access token is
/// added, and its answer, a `403 mfa_required` included, is returned untouched.
pub struct AuthService<T, S, P> {
    inner: T,
    client: AuthClient<S>,
    codes: Arc<P>,
}

impl<T: Clone, S, P> Clone for AuthService<T, S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            client: self.client.clone(),
            codes: self.codes.clone(),
        }
    }
}

/// The future of [`AuthService`].
pub type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<Either<B, Full<Bytes>>>, ClientError>> + Send>>;

impl<T, S, P, B, SB> Service<Request<Full<Bytes>>> for AuthService<T, S, P>
where
    T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<SB>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    SB: Body + Send + 'static,
    SB::Data: Send,
    SB::Error: Into<BoxError>,
    P: CodeProvider,
{
    type Response = Response<Either<B, Full<Bytes>>>;
    type Error = ClientError;
    type Future = ResponseFuture<B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ClientError::Transport(e.into()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        // The ready service takes this call; the clone takes the retry.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        if !self.client.is_own_origin(req.uri()) {
            // Not our server: neither our token nor its challenges.
            return Box::pin(async move {
                ready
                    .call(req)
                    .await
                    .map(|res| res.map(Either::Left))
                    .map_err(|e| ClientError::Transport(e.into()))
            });
        }
        let retry = self.inner.clone();
        // For the nonce retries (RFC 9449 §9), at most one per request sent.
        let spare = self.inner.clone();
        let client = self.client.clone();
        let codes = self.codes.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = read(body).await?;
            // The request with `token` (and a fresh proof with DPoP); `true` if a proof.
            let again = |token: &Secret| -> Result<(Request<Full<Bytes>>, bool), ClientError> {
                let mut req = Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone())
                    .version(parts.version)
                    .body(Full::new(body.clone()))
                    .map_err(|e| ClientError::Transport(e.into()))?;
                *req.headers_mut() = parts.headers.clone();
                let proved = client.authorize(
                    req.headers_mut(),
                    &parts.method,
                    &parts.uri,
                    Some(token),
                    false,
                )?;
                Ok((req, proved))
            };

            let token = client.access_token().await?;
            let (req, proved) = again(&token)?;
            let res = ready
                .call(req)
                .await
                .map_err(|e| ClientError::Transport(e.into()))?;
            let res = nonce_retry(&client, res, proved, || again(&token), spare.clone()).await?;
            if !is_json_refusal(&res) && !is_step_up_challenge(&res) {
                return Ok(res.map(Either::Left));
            }
            let (res_parts, res_body) = res.into_parts();
            let res_bytes = read(res_body).await?;
            let detail: Value = serde_json::from_slice(&res_bytes).unwrap_or(Value::Null);
            let retried = match react(res_parts.status, &res_parts.headers, &detail) {
                Reaction::Refresh => {
                    client.expired_by_server(&token).await?;
                    true
                }
                Reaction::StepUp(step_up) => {
                    let challenge = Challenge {
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        description: step_up.description,
                        requirements: step_up.requirements,
                    };
                    client
                        .step_up(challenge, &step_up.mfa_token, step_up.expires_in, &*codes)
                        .await?
                }
                Reaction::Delegated(delegated) => {
                    return Err(client.step_up_delegated(delegated).await);
                }
                Reaction::PassOn => false,
            };
            if !retried {
                return Ok(Response::from_parts(
                    res_parts,
                    Either::Right(Full::new(res_bytes)),
                ));
            }
            let token = client.access_token().await?;
            let (req, proved) = again(&token)?;
            let res = super::send(retry, req).await?;
            let res = nonce_retry(&client, res, proved, || again(&token), spare).await?;
            Ok(res.map(Either::Left))
        })
    }
}

/// Remembers the server's nonce from `res`; if `res` asks for it (`401`, a
/// `use_dpop_nonce` challenge, a `DPoP-Nonce` header) and the request carried a proof,
/// sends the request once more, rebuilt with a new proof carrying the nonce, and
/// returns that answer whatever it is.
async fn nonce_retry<S, T, B>(
    client: &AuthClient<S>,
    res: Response<B>,
    proved: bool,
    rebuild: impl FnOnce() -> Result<(Request<Full<Bytes>>, bool), ClientError>,
    service: T,
) -> Result<Response<B>, ClientError>
where
    T: Service<Request<Full<Bytes>>, Response = Response<B>>,
    T::Error: Into<BoxError>,
{
    client.learn_nonce(res.headers());
    if !proved || !super::dpop::asks_for_nonce(res.status(), res.headers(), None) {
        return Ok(res);
    }
    let (req, _) = rebuild()?;
    let res = super::send(service, req).await?;
    client.learn_nonce(res.headers());
    Ok(res)
}

/// Whether an answer may ask the layer for something: a `401` or `403` with a JSON body
/// (only then is the body read).
fn is_json_refusal<B>(res: &Response<B>) -> bool {
    matches!(
        res.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) && res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Whether an answer is a `401` or `403` with a step-up challenge in
/// `WWW-Authenticate` (a delegated step-up need not have a JSON body).
fn is_step_up_challenge<B>(res: &Response<B>) -> bool {
    matches!(
        res.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) && res
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .any(|v| {
            v.as_bytes()
                .windows(INSUFFICIENT.len())
                .any(|w| w == INSUFFICIENT)
        })
}

/// The RFC 9470 challenge error, as bytes to look for.
const INSUFFICIENT: &[u8] = b"insufficient_user_authentication";

/// A step-up challenge, as the denial's body gives it.
#[derive(Debug, PartialEq)]
struct StepUpDetail {
    mfa_token: String,
    /// Seconds the challenge lives.
    expires_in: u64,
    description: Option<String>,
    requirements: Value,
}

/// What an answer from the own origin asks the layer to do.
#[derive(Debug, PartialEq)]
enum Reaction {
    /// The access token has expired: refresh it, retry the request.
    Refresh,
    /// A step-up challenge: complete it, retry the request.
    StepUp(StepUpDetail),
    /// A delegated step-up: only the identity provider can complete it; the call fails
    /// with it, no retry.
    Delegated(DelegatedStepUp),
    /// Anything else: the answer goes back to the caller as it is.
    PassOn,
}

/// Reads a refusal's JSON body, and for a delegated step-up its challenge (see
/// [`AuthService`]).
fn react(status: StatusCode, headers: &http::HeaderMap, detail: &Value) -> Reaction {
    let code = field(detail, "error")
        .as_str()
        .and_then(ErrorCode::from_code);
    match code {
        Some(ErrorCode::InvalidToken)
            if status == StatusCode::UNAUTHORIZED
                && field(detail, TOKEN_EXPIRED).as_bool() == Some(true) =>
        {
            Reaction::Refresh
        }
        Some(ErrorCode::MfaRequired) => match field(detail, "mfa_token").as_str() {
            Some(mfa_token) => Reaction::StepUp(StepUpDetail {
                mfa_token: mfa_token.to_owned(),
                expires_in: field(detail, EXPIRES_IN)
                    .as_u64()
                    .unwrap_or(DEFAULT_MFA_TOKEN_TTL.as_secs()),
                description: field(detail, "error_description")
                    .as_str()
                    .map(str::to_owned),
                requirements: field(detail, "mfa_requirements").clone(),
            }),
            None => delegated(status, headers, detail),
        },
        _ => delegated(status, headers, detail),
    }
}

/// [`Reaction::Delegated`] if the answer is a delegated step-up, else `PassOn`.
fn delegated(status: StatusCode, headers: &http::HeaderMap, detail: &Value) -> Reaction {
    DelegatedStepUp::from_response(status, headers, detail)
        .map_or(Reaction::PassOn, Reaction::Delegated)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::header::AUTHORIZATION;
    use serde_json::json;
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::client::Proof;
    use crate::flow::State;
    use crate::ManualClock;

    /// The layer's reading of a body alone (no `WWW-Authenticate`).
    fn react(status: StatusCode, detail: &Value) -> Reaction {
        super::react(status, &http::HeaderMap::new(), detail)
    }

    const BASE: &str = "http://api.example";
    const T0: u64 = 1_700_000_000;

    /// The expired-token denial of the agreed contract.
    fn expired() -> Value {
        json!({
            "error": "invalid_token",
            "error_description": "the access token has expired",
            "token_expired": true,
        })
    }

    fn step_up(expires_in: Option<u64>) -> Value {
        let mut body = json!({
            "error": "mfa_required",
            "error_description": "a stronger or more recent authentication is required",
            "mfa_token": "sealed-mfa-token",
            "mfa_requirements": { "challenge": [{ "type": "otp" }] },
        });
        if let (Some(secs), Some(obj)) = (expires_in, body.as_object_mut()) {
            obj.insert("expires_in".into(), secs.into());
        }
        body
    }

    #[test]
    fn an_expired_token_is_told_by_the_token_expired_member() {
        assert_eq!(
            react(StatusCode::UNAUTHORIZED, &expired()),
            Reaction::Refresh
        );
        let mut not_expired = expired();
        not_expired["token_expired"] = json!(false);
        let mut as_text = expired();
        as_text["token_expired"] = json!("true");
        let mut absent = expired();
        absent.as_object_mut().unwrap().remove("token_expired");
        let mut other_code = expired();
        other_code["error"] = json!("mfa_incomplete");
        for (status, body) in [
            (StatusCode::UNAUTHORIZED, not_expired),
            (StatusCode::UNAUTHORIZED, as_text),
            // The old form: only the English description says "expired".
            (StatusCode::UNAUTHORIZED, absent),
            (StatusCode::UNAUTHORIZED, other_code),
            (StatusCode::FORBIDDEN, expired()),
            (StatusCode::UNAUTHORIZED, Value::Null),
        ] {
            assert_eq!(react(status, &body), Reaction::PassOn, "{status} {body}");
        }
    }

    #[test]
    fn a_step_up_lives_its_expires_in_or_the_default() {
        let detail = |secs| StepUpDetail {
            mfa_token: "sealed-mfa-token".into(),
            expires_in: secs,
            description: Some("a stronger or more recent authentication is required".into()),
            requirements: json!({ "challenge": [{ "type": "otp" }] }),
        };
        for status in [StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED] {
            assert_eq!(
                react(status, &step_up(Some(42))),
                Reaction::StepUp(detail(42))
            );
            assert_eq!(
                react(status, &step_up(None)),
                Reaction::StepUp(detail(300)),
                "the server's default when the member is absent"
            );
        }
        let mut bad = step_up(None);
        bad["expires_in"] = json!("42");
        assert_eq!(
            react(StatusCode::FORBIDDEN, &bad),
            Reaction::StepUp(detail(300))
        );
        // Without an mfa_token it is the delegated form (issue 16): nothing to redeem.
        let mut no_token = step_up(Some(42));
        no_token.as_object_mut().unwrap().remove("mfa_token");
        assert!(matches!(
            react(StatusCode::FORBIDDEN, &no_token),
            Reaction::Delegated(_)
        ));
        let mut unknown = step_up(Some(42));
        unknown["error"] = json!("mfa_requried");
        assert_eq!(react(StatusCode::FORBIDDEN, &unknown), Reaction::PassOn);
    }

    /// A canned server: login, refresh and verify answer tokens; `GET /api` answers the
    /// `refusal` once, then `200`. Every request is logged as `METHOD path token`.
    #[derive(Clone)]
    struct Server {
        log: Arc<Mutex<Vec<String>>>,
        refusal: Arc<Mutex<Option<Canned>>>,
        /// The verify endpoint's answer, if not tokens.
        verify: Option<Canned>,
    }

    /// An answer: status, headers, JSON body.
    type Canned = (StatusCode, Vec<(&'static str, &'static str)>, Value);

    fn tokens(access: &str) -> Canned {
        let body = json!({
            "access_token": access, "token_type": "Bearer", "expires_in": 900,
            "refresh_token": format!("refresh-of-{access}"),
        });
        (StatusCode::OK, vec![], body)
    }

    impl Server {
        fn new(refusal: StatusCode, headers: &[(&'static str, &'static str)], body: Value) -> Self {
            Self {
                log: Arc::default(),
                refusal: Arc::new(Mutex::new(Some((refusal, headers.to_vec(), body)))),
                verify: None,
            }
        }

        fn verify_answers(mut self, status: StatusCode, body: Value) -> Self {
            self.verify = Some((status, vec![], body));
            self
        }

        fn answer(&self, req: &Request<Full<Bytes>>) -> Response<Full<Bytes>> {
            let token = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().trim_start_matches("Bearer ").to_owned())
                .unwrap_or_default();
            let path = req.uri().path().to_owned();
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {path} {token}", req.method()));
            let (status, headers, body) = match path.as_str() {
                "/auth/login" => tokens("a1"),
                "/auth/refresh" => tokens("a2"),
                "/auth/mfa/verify" => self.verify.clone().unwrap_or_else(|| tokens("a3")),
                _ => self
                    .refusal
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap_or_else(|| (StatusCode::OK, vec![], json!({ "ok": true }))),
            };
            let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
            *res.status_mut() = status;
            res.headers_mut()
                .insert(CONTENT_TYPE, "application/json".parse().unwrap());
            for (name, value) in headers {
                res.headers_mut().insert(name, value.parse().unwrap());
            }
            res
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    type Http = tower::util::BoxCloneSyncService<
        Request<Full<Bytes>>,
        Response<Full<Bytes>>,
        std::convert::Infallible,
    >;

    fn http(server: &Server) -> Http {
        let server = server.clone();
        Http::new(service_fn(move |req: Request<Full<Bytes>>| {
            let res = server.answer(&req);
            async move { Ok(res) }
        }))
    }

    async fn signed_in(server: &Server, clock: &ManualClock) -> AuthClient<Http> {
        let auth = AuthClient::<()>::builder(BASE)
            .clock(clock.clone())
            .build(http(server))
            .unwrap();
        let state = auth.login("alice", "alice-password").await.unwrap();
        assert!(matches!(state, State::SignedIn(_)), "{state:?}");
        auth
    }

    /// `GET /api` through the layer; the provider moves the clock by `delay` before it
    /// gives a code (the user takes that long).
    async fn call_api(
        server: &Server,
        clock: &ManualClock,
        delay: u64,
    ) -> (AuthClient<Http>, StatusCode) {
        let auth = signed_in(server, clock).await;
        let clock = clock.clone();
        let codes = move |_: Challenge| {
            clock.advance(delay);
            std::future::ready(Some(Proof::Totp("123456".into())))
        };
        let api = auth.layer(codes).layer(http(server));
        let req = Request::get(format!("{BASE}/api"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = api.oneshot(req).await.unwrap();
        (auth, res.status())
    }

    #[tokio::test]
    async fn a_token_the_server_says_expired_is_refreshed_and_the_request_retried() {
        let server = Server::new(StatusCode::UNAUTHORIZED, &[], expired());
        let (auth, status) = call_api(&server, &ManualClock::new(T0), 0).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            server.log(),
            [
                "POST /auth/login ",
                "GET /api a1",
                "POST /auth/refresh ",
                "GET /api a2"
            ]
        );
        let state = auth.state().await;
        assert_eq!(state.session().unwrap().access_token.expose(), "a2");
    }

    #[tokio::test]
    async fn the_english_word_expired_is_not_read() {
        let mut body = expired();
        body.as_object_mut().unwrap().remove("token_expired");
        let challenge = (
            "www-authenticate",
            r#"Bearer error="invalid_token", error_description="the access token has expired""#,
        );
        let server = Server::new(StatusCode::UNAUTHORIZED, &[challenge], body);
        let (auth, status) = call_api(&server, &ManualClock::new(T0), 0).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "returned to the caller");
        assert_eq!(server.log(), ["POST /auth/login ", "GET /api a1"]);
        let state = auth.state().await;
        assert_eq!(state.session().unwrap().access_token.expose(), "a1");
    }

    #[tokio::test]
    async fn a_step_up_code_is_sent_within_the_challenges_expires_in() {
        let server = Server::new(StatusCode::FORBIDDEN, &[], step_up(Some(42)));
        let (_, status) = call_api(&server, &ManualClock::new(T0), 41).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            server.log(),
            [
                "POST /auth/login ",
                "GET /api a1",
                "POST /auth/mfa/verify a1",
                "GET /api a3"
            ]
        );
    }

    #[tokio::test]
    async fn no_code_is_sent_for_a_challenge_past_its_expires_in() {
        let server = Server::new(StatusCode::FORBIDDEN, &[], step_up(Some(42)));
        let (auth, status) = call_api(&server, &ManualClock::new(T0), 42).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the 403 goes back");
        assert_eq!(server.log(), ["POST /auth/login ", "GET /api a1"]);
        assert!(matches!(auth.state().await, State::SignedIn(_)));
    }

    #[tokio::test]
    async fn without_expires_in_a_challenge_lives_the_servers_default() {
        let server = Server::new(StatusCode::FORBIDDEN, &[], step_up(None));
        let (_, status) = call_api(&server, &ManualClock::new(T0), 299).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(server.log().len(), 4, "{:?}", server.log());

        let server = Server::new(StatusCode::FORBIDDEN, &[], step_up(None));
        let (_, status) = call_api(&server, &ManualClock::new(T0), 300).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(server.log(), ["POST /auth/login ", "GET /api a1"]);
    }

    #[tokio::test]
    async fn a_challenge_the_server_refuses_is_not_retried() {
        for (status, code) in [
            (StatusCode::UNAUTHORIZED, "mfa_token_expired"),
            (StatusCode::NOT_FOUND, "mfa_token_not_found"),
            (StatusCode::BAD_REQUEST, "mfa_token_invalid"),
        ] {
            let server = Server::new(StatusCode::FORBIDDEN, &[], step_up(Some(42)))
                .verify_answers(status, json!({ "error": code }));
            let (auth, answer) = call_api(&server, &ManualClock::new(T0), 1).await;
            assert_eq!(answer, StatusCode::FORBIDDEN, "{code}: the 403 goes back");
            assert_eq!(
                server.log(),
                [
                    "POST /auth/login ",
                    "GET /api a1",
                    "POST /auth/mfa/verify a1"
                ],
                "{code}: no retry"
            );
            let state = auth.state().await;
            assert_eq!(state.session().unwrap().access_token.expose(), "a1");
        }
    }

    /// The delegated denial of the contract: no mfa_token, the challenge in the header.
    fn delegated_denial(status: StatusCode) -> Server {
        const CHALLENGE: &str = r#"Bearer error="insufficient_user_authentication", error_description="a stronger authentication is required", acr_values="urn:idp:mfa", max_age=120"#;
        let body = json!({
            "error": "mfa_required",
            "error_description": "a stronger authentication is required",
            "acr_values": "urn:idp:mfa",
            "max_age": 120,
        });
        Server::new(status, &[("www-authenticate", CHALLENGE)], body)
    }

    #[tokio::test]
    async fn a_delegated_step_up_fails_the_call_without_verify_or_retry() {
        for status in [StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED] {
            let server = delegated_denial(status);
            let clock = ManualClock::new(T0);
            let auth = signed_in(&server, &clock).await;
            let asked = Arc::new(Mutex::new(0));
            let counter = asked.clone();
            let codes = move |_: Challenge| {
                *counter.lock().unwrap() += 1;
                std::future::ready(Some(Proof::Totp("123456".into())))
            };
            let api = auth.layer(codes).layer(http(&server));
            let req = Request::get(format!("{BASE}/api"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let Err(ClientError::StepUpDelegated(d)) = api.oneshot(req).await else {
                panic!("{status}: not the delegated error")
            };
            assert_eq!(d.acr_values, ["urn:idp:mfa"]);
            assert_eq!(d.max_age, Some(120));
            assert_eq!(*asked.lock().unwrap(), 0, "{status}: no code asked for");
            assert_eq!(
                server.log(),
                ["POST /auth/login ", "GET /api a1"],
                "{status}: no verify, no retry"
            );
            let state = auth.state().await;
            assert!(matches!(state, State::SignedIn(_)), "{state:?}");
            assert_eq!(state.session().unwrap().access_token.expose(), "a1");
        }
    }

    #[tokio::test]
    async fn a_bare_rfc_9470_challenge_without_json_is_delegated_too() {
        let server = delegated_denial(StatusCode::UNAUTHORIZED);
        let auth = signed_in(&server, &ManualClock::new(T0)).await;
        // The body is not JSON: the content type is not application/json.
        let plain = service_fn(move |req: Request<Full<Bytes>>| {
            let mut res = server.answer(&req);
            res.headers_mut().remove(CONTENT_TYPE);
            *res.body_mut() = Full::new(Bytes::from_static(b"step up at your IdP"));
            async move { Ok::<_, std::convert::Infallible>(res) }
        });
        let api = auth
            .layer(|_: Challenge| std::future::ready(None))
            .layer(plain);
        let req = Request::get(format!("{BASE}/api"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let Err(ClientError::StepUpDelegated(d)) = api.oneshot(req).await else {
            panic!("not the delegated error")
        };
        assert_eq!((d.acr_values.len(), d.max_age), (1, Some(120)));
    }
}
