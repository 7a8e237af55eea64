//! The client layer: a token on each request, silent refresh, step-up completed and the
//! request retried once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Either, Full};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    bearer_value, field, read, AuthClient, BoxError, Challenge, ClientError, CodeProvider,
};

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
        let client = self.client.clone();
        let codes = self.codes.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = read(body).await?;
            let again = |token: &super::Secret| -> Result<Request<Full<Bytes>>, ClientError> {
                let mut req = Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone())
                    .version(parts.version)
                    .body(Full::new(body.clone()))
                    .map_err(|e| ClientError::Transport(e.into()))?;
                *req.headers_mut() = parts.headers.clone();
                req.headers_mut()
                    .insert(AUTHORIZATION, bearer_value(token)?);
                Ok(req)
            };

            let token = client.access_token().await?;
            let res = ready
                .call(again(&token)?)
                .await
                .map_err(|e| ClientError::Transport(e.into()))?;
            let status = res.status();
            if status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED {
                return Ok(res.map(Either::Left));
            }
            let expired = status == StatusCode::UNAUTHORIZED
                && res
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("invalid_token") && v.contains("expired"));
            let json = res
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if !expired && !json {
                return Ok(res.map(Either::Left));
            }
            let (res_parts, res_body) = res.into_parts();
            let res_bytes = read(res_body).await?;
            let retried = if expired {
                client.expired_by_server(&token).await?;
                true
            } else {
                let detail: Value = serde_json::from_slice(&res_bytes).unwrap_or(Value::Null);
                match (
                    field(&detail, "error").as_str(),
                    field(&detail, "mfa_token").as_str(),
                ) {
                    (Some("mfa_required"), Some(mfa_token)) => {
                        let challenge = Challenge {
                            method: parts.method.clone(),
                            uri: parts.uri.clone(),
                            description: field(&detail, "error_description")
                                .as_str()
                                .map(str::to_owned),
                            requirements: field(&detail, "mfa_requirements").clone(),
                        };
                        // The server's default lifetime; the server decides in the end.
                        let expires_in = field(&detail, "expires_in").as_u64().unwrap_or(300);
                        client
                            .step_up(challenge, mfa_token, expires_in, &*codes)
                            .await?
                    }
                    _ => false,
                }
            };
            if !retried {
                return Ok(Response::from_parts(
                    res_parts,
                    Either::Right(Full::new(res_bytes)),
                ));
            }
            let token = client.access_token().await?;
            let res = super::send(retry, again(&token)?).await?;
            Ok(res.map(Either::Left))
        })
    }
}
