//! tonic integration (feature `tonic`).
//!
//! - **Denials a gRPC client understands.** The layer answers a `POST` whose
//!   `content-type` is `application/grpc…` with a gRPC Trailers-Only response: HTTP 200,
//!   `cache-control: no-store`, `grpc-status` 16 `UNAUTHENTICATED` (missing, invalid,
//!   expired or partial credential) or 7 `PERMISSION_DENIED` (missing scope, step-up), a
//!   `grpc-message`, and as metadata the `www-authenticate` challenge, the `mfa-token` of
//!   a step-up denial and the JSON details of DESIGN §4 as `stepup-details`. This needs
//!   no feature: it is the layer's behaviour for every gRPC request. Another method with
//!   a gRPC content type (no gRPC client sends one) gets the plain HTTP denial.
//! - **Per-method policies.** gRPC calls are `POST /package.Service/Method`: key the
//!   [`RouteTable`](crate::RouteTable) by that path
//!   ([`RouteTable::grpc`](crate::RouteTable::grpc)), and add the layer to the whole
//!   server (`Server::builder().layer(…)`) or around one service in a tonic `Router`:
//!   the layer's service keeps the wrapped service's [`NamedService`] name.
//! - **Completing the challenge over gRPC.** [`MfaVerifyServer`] serves
//!   `tower_stepup.v1.MfaVerify/Verify` (`proto/tower_stepup/v1/mfa.proto`), the verify
//!   endpoint of a [`Completion`], and [`MfaVerifyClient`] calls it. A gRPC client then
//!   stays on its one channel, with its one set of credentials and deadlines, and needs
//!   no HTTP client or JSON beside it; the answers and their order of checks are those
//!   of the HTTP endpoint (it is the same endpoint underneath), with statuses mapped to
//!   gRPC codes. The messages are written with prost's derive, so no `protoc` or build
//!   script is needed; the `.proto` file is there for other languages.
//!
//! ```text
//! let table = RouteTable::new()
//!     .grpc("/demo.Billing/GetInvoices", Policy::step_up(StepUp::new().amr(["mfa"])))
//!     .grpc("/tower_stepup.v1.MfaVerify/Verify", Policy::mfa_verify());
//! Server::builder()
//!     .layer(guard.route_table(table)?)
//!     .add_service(BillingServer::new(billing))
//!     .add_service(MfaVerifyServer::new(&completion))
//!     .serve(addr)
//!     .await?;
//! ```
//!
//! | verify outcome (HTTP) | gRPC code |
//! | --- | --- |
//! | 200 | `OK`, a [`VerifyReply`] |
//! | 400 `invalid_request`, `mfa_token_invalid`; 413 | 3 `INVALID_ARGUMENT` |
//! | 401 `mfa_token_expired`, `invalid_code` | 16 `UNAUTHENTICATED` |
//! | 404 `mfa_token_not_found` | 5 `NOT_FOUND` |
//! | 429 `too_many_attempts` | 8 `RESOURCE_EXHAUSTED`, metadata `retry-after` |
//! | 503 `temporarily_unavailable` | 14 `UNAVAILABLE` |
//!
//! Every error carries the endpoint's JSON body (with `error`, `attempts_remaining`, …)
//! as `stepup-details` metadata.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::uri::PathAndQuery;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower_service::Service;

use crate::challenge::GRPC_DETAILS_HEADER;
use crate::complete::{Completion, Endpoint};
use crate::layer::StepUpService;

impl<S: NamedService> NamedService for StepUpService<S> {
    const NAME: &'static str = S::NAME;
}

/// The gRPC name of the verify service.
pub const MFA_VERIFY_SERVICE: &str = "tower_stepup.v1.MfaVerify";
/// The path of its one method, for route tables: `/tower_stepup.v1.MfaVerify/Verify`.
pub const MFA_VERIFY_PATH: &str = "/tower_stepup.v1.MfaVerify/Verify";

/// `tower_stepup.v1.VerifyRequest`: a challenge token and one proof.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VerifyRequest {
    /// The login partial token or the step-up mfa_token. May be empty when the partial
    /// token comes as `authorization: Bearer` metadata.
    #[prost(string, tag = "1")]
    pub mfa_token: String,
    /// A TOTP code.
    #[prost(string, optional, tag = "2")]
    pub code: Option<String>,
    /// A recovery code.
    #[prost(string, optional, tag = "3")]
    pub recovery_code: Option<String>,
}

/// `tower_stepup.v1.VerifyReply`: the new session.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VerifyReply {
    /// The new access token.
    #[prost(string, tag = "1")]
    pub access_token: String,
    /// `Bearer`.
    #[prost(string, tag = "2")]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[prost(uint64, tag = "3")]
    pub expires_in: u64,
    /// The refresh token (empty if none was issued).
    #[prost(string, tag = "4")]
    pub refresh_token: String,
    /// The granted scope (empty if none).
    #[prost(string, tag = "5")]
    pub scope: String,
}

/// The gRPC verify service: `tower_stepup.v1.MfaVerify/Verify`, backed by the verify
/// endpoint of a [`Completion`]. Add it to a tonic server with `add_service`, and give
/// [`MFA_VERIFY_PATH`] the policy [`Policy::mfa_verify`](crate::Policy::mfa_verify) in
/// the route table.
#[derive(Clone, Debug)]
pub struct MfaVerifyServer {
    verify: Endpoint,
}

impl MfaVerifyServer {
    /// The service for `completion`.
    pub fn new(completion: &Completion) -> Self {
        Self {
            verify: completion.verify(),
        }
    }
}

impl NamedService for MfaVerifyServer {
    const NAME: &'static str = MFA_VERIFY_SERVICE;
}

/// The future of [`MfaVerifyServer`].
pub type MfaVerifyFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<B> Service<http::Request<B>> for MfaVerifyServer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = MfaVerifyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != MFA_VERIFY_PATH {
            let status = Status::unimplemented("unknown method");
            return Box::pin(std::future::ready(Ok(no_store(status.into_http()))));
        }
        let method = VerifyMethod(self.verify.clone());
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<VerifyReply, VerifyRequest>::default());
            Ok(no_store(grpc.unary(method, req).await))
        })
    }
}

/// `cache-control: no-store` on every answer of the verify service, as on the HTTP
/// endpoint's: a reply carries a new session's tokens.
fn no_store<B>(mut response: http::Response<B>) -> http::Response<B> {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

struct VerifyMethod(Endpoint);

impl UnaryService<VerifyRequest> for VerifyMethod {
    type Response = VerifyReply;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<VerifyReply>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<VerifyRequest>) -> Self::Future {
        let mut endpoint = self.0.clone();
        Box::pin(async move {
            let (metadata, _, message) = request.into_parts();
            let mut body = serde_json::Map::new();
            if !message.mfa_token.is_empty() {
                body.insert("mfa_token".into(), message.mfa_token.into());
            }
            if let Some(code) = message.code {
                body.insert("code".into(), code.into());
            }
            if let Some(code) = message.recovery_code {
                body.insert("recovery_code".into(), code.into());
            }
            let json = serde_json::to_vec(&body).map_err(|_| Status::internal("encoding"))?;
            let mut http_req = http::Request::post("/")
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json)))
                .map_err(|_| Status::internal("request"))?;
            // The partial token as a bearer, or the access token beside a step-up
            // mfa_token (it must be of the session the mfa_token was issued for).
            if let Some(auth) = metadata.get(AUTHORIZATION.as_str()) {
                if let Ok(value) = http::HeaderValue::from_bytes(auth.as_bytes()) {
                    http_req.headers_mut().insert(AUTHORIZATION, value);
                }
            }
            let Ok(response) = endpoint.call(http_req).await;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if parts.status.is_success() {
                let reply: ReplyJson = serde_json::from_slice(&body)
                    .map_err(|_| Status::internal("unexpected verify response"))?;
                return Ok(tonic::Response::new(VerifyReply {
                    access_token: reply.access_token,
                    token_type: reply.token_type,
                    expires_in: reply.expires_in,
                    refresh_token: reply.refresh_token.unwrap_or_default(),
                    scope: reply.scope.unwrap_or_default(),
                }));
            }
            Err(status_from(
                parts.status,
                parts.headers.get(RETRY_AFTER),
                &body,
            ))
        })
    }
}

#[derive(serde::Deserialize)]
struct ReplyJson {
    access_token: String,
    token_type: String,
    expires_in: u64,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// The gRPC status of a verify failure (see the module's table).
fn status_from(
    status: http::StatusCode,
    retry_after: Option<&http::HeaderValue>,
    body: &[u8],
) -> Status {
    use http::StatusCode as S;
    let code = match status {
        S::BAD_REQUEST | S::PAYLOAD_TOO_LARGE => Code::InvalidArgument,
        S::UNAUTHORIZED => Code::Unauthenticated,
        S::NOT_FOUND => Code::NotFound,
        S::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        S::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    };
    let description = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error_description")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "verification failed".to_owned());
    let mut metadata = MetadataMap::new();
    if let Ok(details) = MetadataValue::try_from(body) {
        metadata.insert(GRPC_DETAILS_HEADER, details);
    }
    if let Some(v) = retry_after.and_then(|v| MetadataValue::try_from(v.as_bytes()).ok()) {
        metadata.insert("retry-after", v);
    }
    Status::with_metadata(code, description, metadata)
}

/// A client of [`MfaVerifyServer`], over any tonic transport (e.g. a
/// `tonic::transport::Channel`).
#[derive(Clone, Debug)]
pub struct MfaVerifyClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> MfaVerifyClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A client on `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(transport),
        }
    }

    /// Calls `Verify`. Put the access token in the request's `authorization` metadata
    /// when completing a step-up challenge (or the partial token, with an empty
    /// `mfa_token`).
    pub async fn verify(
        &mut self,
        request: impl tonic::IntoRequest<VerifyRequest>,
    ) -> Result<tonic::Response<VerifyReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service not ready: {}", e.into())))?;
        self.inner
            .unary(
                request.into_request(),
                PathAndQuery::from_static(MFA_VERIFY_PATH),
                ProstCodec::<VerifyRequest, VerifyReply>::default(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Algorithm, Guard, Policy, Sealer, SealingKey, SealingKeys, Verifier, VerifyingKey,
    };
    use tower_layer::Layer;

    struct Greeter;
    impl NamedService for Greeter {
        const NAME: &'static str = "helloworld.Greeter";
    }

    fn name_of<S: NamedService>(_: &S) -> &'static str {
        S::NAME
    }

    #[test]
    fn wrapped_service_keeps_its_grpc_name() {
        let verifier = Verifier::builder()
            .issuer("i")
            .audience("a")
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("k", Algorithm::HS256, &[1; 32]).unwrap())
            .build()
            .unwrap();
        let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [2; 32]).unwrap())).unwrap();
        let guard = Guard::builder()
            .verifier(verifier)
            .sealer(sealer)
            .build()
            .unwrap();
        let svc = guard
            .require(Policy::authenticated())
            .unwrap()
            .layer(Greeter);
        assert_eq!(name_of(&svc), "helloworld.Greeter");
    }
}
