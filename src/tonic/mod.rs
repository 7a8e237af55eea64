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
//!   endpoint of a [`Completion`](crate::complete::Completion), and [`MfaVerifyClient`] calls it. A gRPC client then
//!   stays on its one channel, with its one set of credentials and deadlines, and needs
//!   no HTTP client or JSON beside it; the answers and their order of checks are those
//!   of the HTTP endpoint (the service calls the same verify logic, with the message and
//!   the `authorization` metadata as its inputs), with statuses mapped to gRPC codes. A
//!   message larger than the endpoint's body limit
//!   ([`CompletionBuilder::body_limit`](crate::complete::CompletionBuilder::body_limit),
//!   64 KiB by default) is refused as a body over it would be. The messages are written with prost's derive, so no `protoc` or build
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

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tonic_prost::ProstCodec;

use crate::layer::StepUpService;

#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub use self::server::{MfaVerifyFuture, MfaVerifyServer};

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
    /// `Bearer`, or `DPoP` for a session bound to a key (a bound challenge completed
    /// with a proof in the `dpop` metadata).
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
