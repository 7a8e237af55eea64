//! The tower-stepup gRPC demo: per-method policies on a tonic server, gRPC denials, and
//! the challenge completed over gRPC.
//!
//! ```text
//! cargo run --example tonic_app --features tonic
//! ```
//!
//! It serves `demo.Billing` and `tower_stepup.v1.MfaVerify` on `STEPUP_BIND` (default
//! `127.0.0.1:50051`), then plays a client against itself and prints each answer:
//! a partial token is refused with `UNAUTHENTICATED`; the partial token is completed
//! with a TOTP code over gRPC; a session without a second factor gets
//! `PERMISSION_DENIED` with an `mfa-token` on the step-up method, completes it, and is
//! let through. Then it keeps serving. Logins happen at your identity service; here
//! the demo's own `Issuer` stands in for it. Nothing printed is a token or a code.

mod app;

use std::sync::Arc;
use std::time::Duration;

use tonic::codec::Codec;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::store::MemoryStore;
use tower_stepup::tonic::{MfaVerifyClient, VerifyRequest};
use tower_stepup::{Clock, Grant, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = TotpSecret::generate()?;
    let mut signing_key = [0u8; 32];
    let mut sealing_key = [0u8; 32];
    getrandom::fill(&mut signing_key).map_err(|e| format!("no randomness: {e}"))?;
    getrandom::fill(&mut sealing_key).map_err(|e| format!("no randomness: {e}"))?;
    let config = app::Config {
        alice_totp_secret: secret.clone(),
        max_age_secs: 300,
        signing_key,
        sealing_key,
    };
    let demo = app::build(&config, SystemClock, Arc::new(MemoryStore::new()))?;
    let bind = std::env::var("STEPUP_BIND").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    println!("tower-stepup gRPC demo listening on http://{addr}");

    let server = Server::builder()
        .layer(demo.layer.clone())
        .add_service(app::BillingServer)
        .add_service(demo.verify.clone())
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    let server = tokio::spawn(server);

    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let now = SystemClock.now();
    let code = |step: u64| totp::code_at(&secret, step);

    // 1. Password accepted at the identity service: a partial token, not a session.
    let partial = demo
        .issuer
        .issue_partial(&Grant::new("alice").amr(["pwd"]))?
        .token;
    let r = call::<app::MeRequest, app::MeReply>(&channel, app::ME, &partial).await;
    report("Me with the partial token", &r);

    // 2. The second factor over gRPC: a new session.
    let mut verify = MfaVerifyClient::new(channel.clone());
    let reply = verify
        .verify(VerifyRequest {
            mfa_token: partial,
            code: Some(code(totp::step_at(now))),
            recovery_code: None,
        })
        .await?
        .into_inner();
    println!(
        "MfaVerify/Verify: OK, a new access token ({} s)",
        reply.expires_in
    );
    let r = call::<app::MeRequest, app::MeReply>(&channel, app::ME, &reply.access_token).await;
    report("Me with it", &r);

    // 3. A session with the password only: the step-up method asks for more.
    let weak = demo
        .issuer
        .issue_access(&Grant::new("alice").amr(["pwd"]).scope("billing:read"))?
        .token;
    let r =
        call::<app::InvoicesRequest, app::InvoicesReply>(&channel, app::GET_INVOICES, &weak).await;
    report("GetInvoices with a password-only session", &r);
    let mfa_token = match &r {
        Err(status) if status.code() == Code::PermissionDenied => status
            .metadata()
            .get("mfa-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or("no mfa-token metadata")?,
        _ => return Err("expected PERMISSION_DENIED".into()),
    };
    let mut request = Request::new(VerifyRequest {
        mfa_token,
        code: Some(code(totp::step_at(now) + 1)),
        recovery_code: None,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {weak}").parse()?);
    let stepped_up = verify.verify(request).await?.into_inner();
    println!("MfaVerify/Verify with the mfa-token: OK");
    let r = call::<app::InvoicesRequest, app::InvoicesReply>(
        &channel,
        app::GET_INVOICES,
        &stepped_up.access_token,
    )
    .await;
    report("GetInvoices after step-up", &r);

    println!("serving; Ctrl-C to stop");
    tokio::select! {
        r = server => { r??; }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// A unary call with `token` as bearer, on a plain tonic client.
async fn call<Req, Reply>(
    channel: &Channel,
    path: &'static str,
    token: &str,
) -> Result<Reply, Status>
where
    Req: prost::Message + Default + Send + Sync + 'static,
    Reply: prost::Message + Default + Send + Sync + 'static,
    ProstCodec<Req, Reply>: Codec<Encode = Req, Decode = Reply>,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = Request::new(Req::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token"))?,
    );
    request.set_timeout(Duration::from_secs(5));
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

fn report<T: std::fmt::Debug>(what: &str, r: &Result<T, Status>) {
    match r {
        Ok(reply) => println!("{what}: OK {reply:?}"),
        Err(status) => println!(
            "{what}: {:?} \"{}\" (www-authenticate: {})",
            status.code(),
            status.message(),
            status
                .metadata()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        ),
    }
}
