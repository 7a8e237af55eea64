//! The gRPC demo as a function, so the tests serve the very same server (with a clock
//! they can set) that `cargo run --example tonic_app --features tonic` serves.
//!
//! A `demo.Billing` service with two methods, each with its own policy:
//!
//! | method | policy |
//! | --- | --- |
//! | `/demo.Billing/Me` | authenticated |
//! | `/demo.Billing/GetInvoices` | step-up: `amr` contains `mfa`, authenticated at most `max_age` ago, scope `billing:read` |
//! | `/tower_stepup.v1.MfaVerify/Verify` | the verify endpoint (completes a partial token or an mfa_token) |
//!
//! The messages and the service glue are written by hand with prost's derive, as
//! `tonic-build` would generate them, so the example needs no `protoc`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::Service;
use tower_stepup::complete::{
    Account, Accounts, BackendFuture, Completion, MemoryFactors, TotpFactor,
};
use tower_stepup::factor::{recovery, TotpSecret};
use tower_stepup::store::Store;
use tower_stepup::tonic::{MfaVerifyServer, MFA_VERIFY_PATH};
use tower_stepup::{
    Algorithm, Claims, Clock, Guard, Issuer, MfaRequirements, Policy, RouteTable, Sealer,
    SealingKey, SealingKeys, SigningKey, StepUp, StepUpLayer, Verifier, VerifyingKey,
};

pub const ISSUER: &str = "https://grpc-demo.tower-stepup.local";
pub const AUDIENCE: &str = "https://grpc-demo.tower-stepup.local/api";
pub const ME: &str = "/demo.Billing/Me";
pub const GET_INVOICES: &str = "/demo.Billing/GetInvoices";

// ---------------------------------------------------------------------------------------
// demo.Billing: messages and service

#[derive(Clone, PartialEq, prost::Message)]
pub struct MeRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MeReply {
    #[prost(string, tag = "1")]
    pub sub: String,
    #[prost(string, repeated, tag = "2")]
    pub amr: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InvoicesRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Invoice {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub amount: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InvoicesReply {
    #[prost(string, tag = "1")]
    pub sub: String,
    #[prost(message, repeated, tag = "2")]
    pub invoices: Vec<Invoice>,
}

/// The claims the layer put in the request: present on every method it let through.
fn claims<T>(request: &Request<T>) -> Result<Claims, Status> {
    request
        .extensions()
        .get::<Claims>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified claims"))
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;

struct MeMethod;

impl UnaryService<MeRequest> for MeMethod {
    type Response = MeReply;
    type Future = BoxFuture<MeReply>;

    fn call(&mut self, request: Request<MeRequest>) -> Self::Future {
        let reply = claims(&request).map(|c| {
            Response::new(MeReply {
                sub: c.sub().to_owned(),
                amr: c.amr().to_vec(),
            })
        });
        Box::pin(std::future::ready(reply))
    }
}

struct InvoicesMethod;

impl UnaryService<InvoicesRequest> for InvoicesMethod {
    type Response = InvoicesReply;
    type Future = BoxFuture<InvoicesReply>;

    fn call(&mut self, request: Request<InvoicesRequest>) -> Self::Future {
        let reply = claims(&request).map(|c| {
            Response::new(InvoicesReply {
                sub: c.sub().to_owned(),
                invoices: vec![Invoice {
                    id: "INV-1001".into(),
                    amount: "42.00 EUR".into(),
                }],
            })
        });
        Box::pin(std::future::ready(reply))
    }
}

/// The `demo.Billing` server (what `tonic-build` would generate as `BillingServer`).
#[derive(Clone, Debug, Default)]
pub struct BillingServer;

impl NamedService for BillingServer {
    const NAME: &'static str = "demo.Billing";
}

impl<B> Service<http::Request<B>> for BillingServer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            ME => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<MeReply, MeRequest>::default());
                Ok(grpc.unary(MeMethod, req).await)
            }),
            GET_INVOICES => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<InvoicesReply, InvoicesRequest>::default());
                Ok(grpc.unary(InvoicesMethod, req).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The app

/// What the demo needs from its environment.
pub struct Config {
    pub alice_totp_secret: TotpSecret,
    pub max_age_secs: u64,
    pub signing_key: [u8; 32],
    pub sealing_key: [u8; 32],
}

/// The pieces of the demo.
pub struct Demo {
    /// The layer with the per-method route table.
    pub layer: StepUpLayer,
    /// The gRPC verify service.
    pub verify: MfaVerifyServer,
    /// Issues alice's tokens, as the login service would.
    pub issuer: Issuer,
    /// The guard (the tests put it around one service too).
    #[allow(dead_code)]
    pub guard: Guard,
}

/// Logins happen at your identity service, which issues partial and access tokens
/// with the same keys; this server only verifies them and completes challenges.
struct NoPasswords;

impl Accounts for NoPasswords {
    fn authenticate<'a>(&'a self, _: &'a str, _: &'a str) -> BackendFuture<'a, Option<Account>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// The per-method policies.
pub fn route_table(max_age: Duration) -> RouteTable {
    RouteTable::new()
        .grpc(ME, Policy::authenticated())
        .grpc(
            GET_INVOICES,
            Policy::step_up(StepUp::new().amr(["mfa"]).max_age(max_age)).scopes(["billing:read"]),
        )
        .grpc(MFA_VERIFY_PATH, Policy::mfa_verify())
}

/// Builds the demo on `clock`, keeping its shared state in `store`.
pub fn build<C: Clock + Clone>(
    config: &Config,
    clock: C,
    store: Arc<dyn Store>,
) -> Result<Demo, Box<dyn std::error::Error>> {
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac(
            "grpc-1",
            Algorithm::HS256,
            &config.signing_key,
        )?)
        .build()?;
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new(
        "grpc-1",
        config.sealing_key,
    )?))?;
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock.clone())
        .realm("tower-stepup grpc demo")
        .mfa_requirements(|_| MfaRequirements::challenge(["otp"]))
        .build()?;
    let issuer = Issuer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .signing_key(SigningKey::hmac(
            "grpc-1",
            Algorithm::HS256,
            &config.signing_key,
        )?)
        .clock(clock)
        .build()?;
    let factors = Arc::new(MemoryFactors::new());
    let (_, recovery_codes) = recovery::generate()?;
    factors.insert(
        "alice",
        TotpFactor::new(config.alice_totp_secret.clone(), recovery_codes),
    );
    let completion = Completion::builder()
        .guard(guard.clone())
        .issuer(issuer.clone())
        .shared_store(store)
        .accounts(NoPasswords)
        .factors(factors)
        .build()?;
    let layer = guard.route_table(route_table(Duration::from_secs(config.max_age_secs)))?;
    Ok(Demo {
        layer,
        verify: MfaVerifyServer::new(&completion),
        issuer,
        guard,
    })
}
