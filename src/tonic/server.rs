//! The gRPC verify service (features `tonic` and `server`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL};
use http_body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower_service::Service;

use super::{VerifyReply, VerifyRequest, MFA_VERIFY_PATH, MFA_VERIFY_SERVICE};
use crate::challenge::GRPC_DETAILS_HEADER;
use crate::complete::verify::{self, Presented};
use crate::complete::{Completion, ErrorKind};
use crate::dpop::DPOP_HEADER;

/// The gRPC verify service: `tower_stepup.v1.MfaVerify/Verify`, backed by the verify
/// endpoint of a [`Completion`]. Add it to a tonic server with `add_service`, and give
/// [`MFA_VERIFY_PATH`] the policy [`Policy::mfa_verify`](crate::Policy::mfa_verify) in
/// the route table.
#[derive(Clone, Debug)]
pub struct MfaVerifyServer {
    completion: Completion,
}

impl MfaVerifyServer {
    /// The service for `completion`.
    pub fn new(completion: &Completion) -> Self {
        Self {
            completion: completion.clone(),
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
        let method = VerifyMethod(self.completion.clone());
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

struct VerifyMethod(Completion);

impl UnaryService<VerifyRequest> for VerifyMethod {
    type Response = VerifyReply;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<VerifyReply>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<VerifyRequest>) -> Self::Future {
        let completion = self.0.clone();
        Box::pin(async move {
            let (metadata, _, message) = request.into_parts();
            let size = prost::Message::encoded_len(&message);
            // The partial token as a bearer, or the access token beside a step-up
            // mfa_token (it must be of the session the mfa_token was issued for): the
            // first `authorization` value, read by the endpoint's bearer rule.
            let mut headers = http::HeaderMap::new();
            if let Some(auth) = metadata
                .get(AUTHORIZATION.as_str())
                .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok())
            {
                headers.insert(AUTHORIZATION, auth);
            }
            // The DPoP proofs (`dpop` metadata), every value: a bound challenge needs
            // exactly one, of its key (two are refused as over HTTP).
            for value in metadata.get_all(DPOP_HEADER).iter() {
                if let Ok(v) = http::HeaderValue::from_bytes(value.as_bytes()) {
                    headers.append(DPOP_HEADER, v);
                }
            }
            let presented = Presented::from_message(
                &headers,
                &message.mfa_token,
                message.code.as_deref(),
                message.recovery_code.as_deref(),
            );
            match verify::verify_message(&completion, presented, size).await {
                Ok(session) => Ok(tonic::Response::new(VerifyReply {
                    token_type: session.token_type().to_owned(),
                    access_token: session.access.token,
                    expires_in: session.access.expires_in,
                    refresh_token: session.refresh,
                    scope: session.access.claims.scope().unwrap_or_default().to_owned(),
                })),
                Err(failure) => {
                    let (kind, retry_after) = (failure.kind, failure.retry_after);
                    let description = failure.description.unwrap_or(kind.row().description);
                    // The details are the endpoint's JSON error body, byte for byte.
                    let body = failure.into_response().into_body();
                    Err(status_from(kind, description, retry_after, &body))
                }
            }
        })
    }
}

/// The gRPC status of a verify failure (see the module's table): the code of its HTTP
/// status, its `error_description` as the message, the endpoint's JSON body as
/// `stepup-details` and its `retry-after`.
fn status_from(
    kind: ErrorKind,
    description: &str,
    retry_after: Option<u64>,
    body: &[u8],
) -> Status {
    use http::StatusCode as S;
    let code = match kind.row().status {
        S::BAD_REQUEST | S::PAYLOAD_TOO_LARGE => Code::InvalidArgument,
        S::UNAUTHORIZED => Code::Unauthenticated,
        S::NOT_FOUND => Code::NotFound,
        S::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        S::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut metadata = MetadataMap::new();
    if let Ok(details) = MetadataValue::try_from(body) {
        metadata.insert(GRPC_DETAILS_HEADER, details);
    }
    if let Some(secs) = retry_after {
        metadata.insert("retry-after", MetadataValue::from(secs));
    }
    Status::with_metadata(code, description, metadata)
}
