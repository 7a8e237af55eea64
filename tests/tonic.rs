//! The tonic demo (`examples/tonic_app`) over real sockets: the very services
//! `cargo run --example tonic_app --features tonic` serves, built by `app::build` on a
//! [`ManualClock`] the tests move, served by a real tonic server on `127.0.0.1:0` and
//! spoken to with a real tonic client (`Channel`, `tonic::client::Grpc` + `ProstCodec`,
//! and [`MfaVerifyClient`]).
//!
//! Every test builds its own server, store and clock, so none depends on another (the
//! attempt counter is per user and lives in the store). Time is an input: expiry is
//! reached by moving the clock, never by sleeping. Every await that could hang is bounded
//! by [`WAIT`].

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tonic::codec::Codec;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;
use tower::{Layer, ServiceExt};
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::store::{MemoryStore, RefreshRecord, Store};
use tower_stepup::tonic::{MfaVerifyClient, VerifyReply, VerifyRequest, MFA_VERIFY_PATH};
use tower_stepup::{Algorithm, Clock, Grant, Issuer, ManualClock, SigningKey};

#[allow(dead_code)]
#[path = "../examples/tonic_app/app.rs"]
mod app;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;
const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const SIGNING_KEY: [u8; 32] = [0x61; 32];
const SEALING_KEY: [u8; 32] = [0x6e; 32];
const MAX_AGE: u64 = 300;
/// The guard's mfa_token lifetime (the default): the step-up details' `expires_in`.
const MFA_TOKEN_TTL: u64 = 300;
const REALM_CHALLENGE: &str = r#"Bearer realm="tower-stepup grpc demo""#;
const MFA_ACR: &str = "urn:tower-stepup:acr:mfa";
const NOPE: &str = "/demo.Billing/Nope";
/// The bound on every await that could hang.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Where the layer sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mount {
    /// `Server::builder().layer(demo.layer)`: in front of every service.
    WholeServer,
    /// Around `demo.Billing` only, inside the tonic `Router`.
    BillingOnly,
}

const MOUNTS: [Mount; 2] = [Mount::WholeServer, Mount::BillingOnly];

fn config() -> app::Config {
    app::Config {
        alice_totp_secret: alice_secret(),
        max_age_secs: MAX_AGE,
        signing_key: SIGNING_KEY,
        sealing_key: SEALING_KEY,
    }
}

fn alice_secret() -> TotpSecret {
    TotpSecret::from_base32(ALICE_SECRET).unwrap()
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

/// One demo server on its own port, clock and store, with a client channel to it.
struct Grpc {
    mount: Mount,
    clock: ManualClock,
    issuer: Issuer,
    secret: TotpSecret,
    channel: Channel,
    store: Arc<dyn Store>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Drop for Grpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(mount: Mount) -> Grpc {
    start_with(mount, Arc::new(MemoryStore::new())).await
}

async fn start_with(mount: Mount, store: Arc<dyn Store>) -> Grpc {
    let clock = ManualClock::new(T0);
    let demo = app::build(&config(), clock.clone(), store.clone()).unwrap();
    let listener = within("bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = match mount {
        Mount::WholeServer => tokio::spawn(
            Server::builder()
                .layer(demo.layer.clone())
                .add_service(app::BillingServer)
                .add_service(demo.verify.clone())
                .serve_with_incoming(incoming),
        ),
        Mount::BillingOnly => {
            let billing = demo
                .guard
                .route_table(app::route_table(Duration::from_secs(MAX_AGE)))
                .unwrap()
                .layer(app::BillingServer);
            tokio::spawn(
                Server::builder()
                    .add_service(billing)
                    .add_service(demo.verify.clone())
                    .serve_with_incoming(incoming),
            )
        }
    };
    let channel = within(
        "connect",
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(WAIT)
            .timeout(WAIT)
            .connect(),
    )
    .await
    .unwrap();
    Grpc {
        mount,
        clock,
        issuer: demo.issuer,
        secret: alice_secret(),
        channel,
        store,
        task,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Grpc {
    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The TOTP code of the step `offset` steps from now.
    fn code(&self, offset: u64) -> String {
        totp::code_at(&self.secret, totp::step_at(self.now()) + offset)
    }

    /// A 6-digit code that none of the steps the verifier accepts now has.
    fn wrong_code(&self) -> String {
        let step = totp::step_at(self.now());
        let valid: Vec<String> = (step - 1..=step + 1)
            .map(|s| totp::code_at(&self.secret, s))
            .collect();
        (0..10)
            .map(|d| format!("{d}").repeat(6))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    fn partial(&self, grant: &Grant) -> String {
        self.issuer.issue_partial(grant).unwrap().token
    }

    fn access(&self, grant: &Grant) -> String {
        self.issuer.issue_access(grant).unwrap().token
    }

    /// `weak`, of a session the store knows (as sign-in starts it): a step-up continues
    /// a session, it cannot start one.
    async fn weak_session(&self) -> String {
        let token = self.weak();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let record = RefreshRecord {
            family: claims["sid"].as_str().unwrap().to_owned(),
            sub: "alice".to_owned(),
            session: serde_json::from_value(claims).unwrap(),
            expires_at: self.now() + 3600,
            idle_secs: None,
        };
        let mut hash = [7; 32];
        let sid = record.family.as_bytes();
        let n = sid.len().min(32);
        hash[..n].copy_from_slice(&sid[..n]);
        self.store
            .refresh_create(hash, record, self.now())
            .await
            .unwrap();
        token
    }

    /// Password only, with the billing scope: enough for `Me`, not for `GetInvoices`.
    fn weak(&self) -> String {
        self.access(&Grant::new("alice").amr(["pwd"]).scope("billing:read"))
    }

    /// A fresh second factor and the billing scope: enough for everything.
    fn strong(&self) -> String {
        self.access(
            &Grant::new("alice")
                .amr(["pwd", "otp", "mfa"])
                .scope("billing:read")
                .auth_time(self.now()),
        )
    }

    /// A unary call to `path` with `authorization` metadata (the whole value) if given.
    async fn call<Req, Reply>(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Reply, Status>
    where
        Req: prost::Message + Default + Send + Sync + 'static,
        Reply: prost::Message + Default + Send + Sync + 'static,
        ProstCodec<Req, Reply>: Codec<Encode = Req, Decode = Reply>,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        within("ready", grpc.ready()).await.unwrap();
        let mut request = Request::new(Req::default());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request.set_timeout(WAIT);
        let path: PathAndQuery = path.parse().unwrap();
        within(
            path.as_str(),
            grpc.unary(request, path.clone(), ProstCodec::default()),
        )
        .await
        .map(tonic::Response::into_inner)
    }

    async fn me(&self, token: Option<&str>) -> Result<app::MeReply, Status> {
        let auth = token.map(bearer);
        self.call::<app::MeRequest, app::MeReply>(app::ME, auth.as_deref())
            .await
    }

    async fn invoices(&self, token: Option<&str>) -> Result<app::InvoicesReply, Status> {
        let auth = token.map(bearer);
        self.call::<app::InvoicesRequest, app::InvoicesReply>(app::GET_INVOICES, auth.as_deref())
            .await
    }

    async fn nope(&self, token: Option<&str>) -> Result<app::MeReply, Status> {
        let auth = token.map(bearer);
        self.call::<app::MeRequest, app::MeReply>(NOPE, auth.as_deref())
            .await
    }

    /// `MfaVerify/Verify` through [`MfaVerifyClient`], with `authorization: Bearer
    /// <token>` metadata if `bearer_token` is given.
    async fn verify(
        &self,
        message: VerifyRequest,
        bearer_token: Option<&str>,
    ) -> Result<VerifyReply, Status> {
        let mut client = MfaVerifyClient::new(self.channel.clone());
        let mut request = Request::new(message);
        if let Some(token) = bearer_token {
            request
                .metadata_mut()
                .insert("authorization", bearer(token).parse().unwrap());
        }
        request.set_timeout(WAIT);
        within("verify", client.verify(request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `GetInvoices` with a password-only token: the step-up refusal's mfa-token.
    async fn step_up_challenge(&self, weak: &str) -> String {
        let refusal = refused(self.invoices(Some(weak)).await);
        assert_eq!(refusal.code, Code::PermissionDenied, "{refusal:?}");
        refusal
            .mfa_token
            .expect("a step-up refusal carries an mfa-token")
    }
}

fn with_code(mfa_token: &str, code: String) -> VerifyRequest {
    VerifyRequest {
        mfa_token: mfa_token.to_owned(),
        code: Some(code),
        recovery_code: None,
    }
}

/// An issuer of the demo's issuer and audience, on a clock of its own and with `key`.
fn issuer_at(now: u64, key: &[u8; 32]) -> Issuer {
    Issuer::builder()
        .issuer(app::ISSUER)
        .audience(app::AUDIENCE)
        .signing_key(SigningKey::hmac("grpc-1", Algorithm::HS256, key).unwrap())
        .clock(ManualClock::new(now))
        .build()
        .unwrap()
}

/// The claims of a JWS, unverified.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWS has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn amr(claims: &Value) -> Vec<&str> {
    claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// What a gRPC refusal said, metadata included.
#[derive(Clone, Debug, PartialEq)]
struct Refusal {
    code: Code,
    message: String,
    www_authenticate: Option<String>,
    mfa_token: Option<String>,
    retry_after: Option<String>,
    /// `stepup-details`, parsed.
    details: Value,
}

fn refused<T: Debug>(result: Result<T, Status>) -> Refusal {
    let status = match result {
        Ok(reply) => panic!("expected a refusal, got OK {reply:?}"),
        Err(status) => status,
    };
    let meta = |key: &str| {
        status
            .metadata()
            .get(key)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let details = meta("stepup-details")
        .map(|d| serde_json::from_str(&d).expect("stepup-details is JSON"))
        .unwrap_or(Value::Null);
    Refusal {
        code: status.code(),
        message: status.message().to_owned(),
        www_authenticate: meta("www-authenticate"),
        mfa_token: meta("mfa-token"),
        retry_after: meta("retry-after"),
        details,
    }
}

/// A layer denial: code, `grpc-message`, challenge and details as the denial table says
/// (an expired token's also say `token_expired`); no mfa-token unless it is a step-up.
fn assert_denial(r: &Refusal, code: Code, error: &str, description: &str, challenge: &str) {
    assert_eq!(r.code, code, "{r:?}");
    assert_eq!(r.message, description, "{r:?}");
    assert_eq!(r.www_authenticate.as_deref(), Some(challenge), "{r:?}");
    let mut details = json!({ "error": error, "error_description": description });
    if description == "the access token has expired" {
        details["token_expired"] = true.into();
    }
    assert_eq!(r.details, details, "{r:?}");
    assert_eq!(r.mfa_token, None, "{r:?}");
    assert_eq!(r.retry_after, None, "{r:?}");
}

fn invalid_token_challenge(description: &str) -> String {
    format!(r#"Bearer error="invalid_token", error_description="{description}""#)
}

const MFA_INCOMPLETE: &str = "multi-factor authentication is not complete; the partial token is accepted only by the verify endpoint";
const SECOND_FACTOR: &str = "a second factor is required for this resource";
const MORE_RECENT: &str = "a more recent authentication is required for this resource";

/// The step-up refusal of `GetInvoices`, with the unmet-requirement `description`.
fn assert_step_up(r: &Refusal, description: &str) {
    assert_eq!(r.code, Code::PermissionDenied, "{r:?}");
    assert_eq!(r.message, description, "{r:?}");
    let challenge = r.www_authenticate.as_deref().unwrap();
    assert_eq!(
        challenge,
        format!(
            r#"Bearer error="insufficient_user_authentication", error_description="{description}", max_age={MAX_AGE}"#
        )
    );
    let token = r.mfa_token.as_deref().expect("mfa-token metadata");
    assert_eq!(token.split('.').count(), 5, "the mfa-token is a JWE");
    assert_eq!(
        r.details,
        json!({
            "error": "mfa_required",
            "error_description": description,
            "mfa_token": token,
            "mfa_requirements": { "challenge": [{ "type": "otp" }] },
            "expires_in": MFA_TOKEN_TTL,
        })
    );
    assert_eq!(r.retry_after, None);
}

// ---------------------------------------------------------------------------------------
// 1-5: the layer's denials as gRPC statuses (both mounts)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn no_token_is_unauthenticated_with_the_realm_challenge() {
    for mount in MOUNTS {
        let s = start(mount).await;
        let description = "an access token is required";
        for r in [
            refused(s.me(None).await),
            refused(s.invoices(None).await),
            refused(s.nope(None).await),
            // Another scheme is no bearer credential: as if none was sent.
            refused(
                s.call::<app::MeRequest, app::MeReply>(app::ME, Some("Basic YWxpY2U6cHc="))
                    .await,
            ),
        ] {
            assert_denial(
                &r,
                Code::Unauthenticated,
                "unauthorized",
                description,
                REALM_CHALLENGE,
            );
        }
    }
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_invalid_token() {
    for mount in MOUNTS {
        let s = start(mount).await;
        let invalid = "the access token is invalid";
        let grant = Grant::new("alice")
            .amr(["pwd", "otp", "mfa"])
            .scope("billing:read")
            .auth_time(T0);
        let other_key = issuer_at(T0, &[0x99; 32])
            .issue_access(&grant)
            .unwrap()
            .token;
        // Issued 1000 s ago with a 900 s lifetime: expired 100 s ago (beyond the leeway).
        let expired = issuer_at(T0 - 1000, &SIGNING_KEY)
            .issue_access(&grant)
            .unwrap()
            .token;
        // The mfa-token of a step-up refusal is no bearer token.
        let mfa_token = s.step_up_challenge(&s.weak_session().await).await;

        for token in ["garbage", "a.b.c", other_key.as_str(), mfa_token.as_str()] {
            for r in [
                refused(s.me(Some(token)).await),
                refused(s.invoices(Some(token)).await),
            ] {
                assert_denial(
                    &r,
                    Code::Unauthenticated,
                    "invalid_token",
                    invalid,
                    &invalid_token_challenge(invalid),
                );
            }
        }
        // Not a b64token at all, or an empty bearer: a malformed credential.
        for value in ["Bearer a%b", "Bearer"] {
            let r = refused(
                s.call::<app::MeRequest, app::MeReply>(app::ME, Some(value))
                    .await,
            );
            assert_denial(
                &r,
                Code::Unauthenticated,
                "invalid_token",
                invalid,
                &invalid_token_challenge(invalid),
            );
        }
        let description = "the access token has expired";
        for r in [
            refused(s.me(Some(&expired)).await),
            refused(s.invoices(Some(&expired)).await),
        ] {
            assert_denial(
                &r,
                Code::Unauthenticated,
                "invalid_token",
                description,
                &invalid_token_challenge(description),
            );
        }
    }
}

#[tokio::test]
async fn access_token_expires_on_the_servers_clock() {
    let s = start(Mount::WholeServer).await;
    let token = s.strong();
    assert_eq!(s.me(Some(&token)).await.unwrap().sub, "alice");
    // 900 s lifetime + 5 s leeway: valid while now < exp + 5.
    s.clock.advance(904);
    assert_eq!(s.me(Some(&token)).await.unwrap().sub, "alice");
    s.clock.advance(1);
    let description = "the access token has expired";
    assert_denial(
        &refused(s.me(Some(&token)).await),
        Code::Unauthenticated,
        "invalid_token",
        description,
        &invalid_token_challenge(description),
    );
}

#[tokio::test]
async fn partial_token_is_mfa_incomplete_without_an_mfa_token() {
    for mount in MOUNTS {
        let s = start(mount).await;
        for grant in [
            Grant::new("alice").amr(["pwd"]),
            Grant::new("alice").amr(["pwd"]).scope("billing:read"),
        ] {
            let partial = s.partial(&grant);
            for r in [
                refused(s.me(Some(&partial)).await),
                refused(s.invoices(Some(&partial)).await),
                refused(s.nope(Some(&partial)).await),
            ] {
                assert_denial(
                    &r,
                    Code::Unauthenticated,
                    "mfa_incomplete",
                    MFA_INCOMPLETE,
                    &invalid_token_challenge(MFA_INCOMPLETE),
                );
            }
        }
    }
}

#[tokio::test]
async fn password_only_session_gets_permission_denied_with_an_mfa_token() {
    for mount in MOUNTS {
        let s = start(mount).await;
        let weak = s.weak_session().await;
        let me = s.me(Some(&weak)).await.unwrap();
        assert_eq!(me.sub, "alice");
        assert_eq!(me.amr, ["pwd"]);

        let r = refused(s.invoices(Some(&weak)).await);
        assert_step_up(&r, SECOND_FACTOR);
        let challenge = r.www_authenticate.as_deref().unwrap();
        assert!(challenge.contains("insufficient_user_authentication"));
        assert!(challenge.contains("max_age="));
        assert_eq!(
            r.mfa_token.as_deref(),
            r.details["mfa_token"].as_str(),
            "the mfa-token metadata is the details' mfa_token"
        );
        // Every refusal seals a new challenge.
        let again = refused(s.invoices(Some(&weak)).await);
        assert_ne!(again.mfa_token, r.mfa_token);

        // A second factor long ago: too old for max_age.
        let stale = s.access(
            &Grant::new("alice")
                .amr(["pwd", "otp", "mfa"])
                .scope("billing:read")
                .auth_time(T0 - MAX_AGE - 1),
        );
        assert_step_up(&refused(s.invoices(Some(&stale)).await), MORE_RECENT);
        assert_eq!(s.me(Some(&stale)).await.unwrap().sub, "alice");
    }
}

#[tokio::test]
async fn mfa_session_without_the_scope_gets_insufficient_scope() {
    for mount in MOUNTS {
        let s = start(mount).await;
        for scope in [None, Some("billing:write profile")] {
            let mut grant = Grant::new("alice")
                .amr(["pwd", "otp", "mfa"])
                .auth_time(s.now());
            if let Some(scope) = scope {
                grant = grant.scope(scope);
            }
            let token = s.access(&grant);
            let r = refused(s.invoices(Some(&token)).await);
            let description = "the access token lacks a required scope";
            assert_eq!(r.code, Code::PermissionDenied, "{r:?}");
            assert_eq!(r.message, description);
            assert_eq!(
                r.www_authenticate.as_deref(),
                Some(r#"Bearer error="insufficient_scope", scope="billing:read""#)
            );
            assert_eq!(
                r.details,
                json!({ "error": "insufficient_scope", "error_description": description })
            );
            assert_eq!(r.mfa_token, None);
            // Me asks for no scope.
            assert_eq!(s.me(Some(&token)).await.unwrap().sub, "alice");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6: completing the challenge over gRPC
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn partial_token_completed_over_grpc_opens_both_methods() {
    let s = start(Mount::WholeServer).await;
    // The new session carries the partial token's scope: without billing:read on the
    // partial grant, GetInvoices would stay out of reach (see the next test).
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]).scope("billing:read"));
    let reply = s
        .verify(with_code(&partial, s.code(0)), None)
        .await
        .unwrap();
    assert_eq!(reply.token_type, "Bearer");
    assert_eq!(reply.expires_in, 900);
    assert_eq!(reply.scope, "billing:read");
    assert!(!reply.refresh_token.is_empty());
    let claims = payload(&reply.access_token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["acr"], MFA_ACR);
    assert_eq!(claims["auth_time"], T0);
    assert_eq!(claims["scope"], "billing:read");

    let me = s.me(Some(&reply.access_token)).await.unwrap();
    assert_eq!(me.sub, "alice");
    assert_eq!(me.amr, ["pwd", "otp", "mfa"]);
    let invoices = s.invoices(Some(&reply.access_token)).await.unwrap();
    assert_eq!(invoices.sub, "alice");
    assert_eq!(invoices.invoices.len(), 1);
    assert_eq!(invoices.invoices[0].id, "INV-1001");

    // The partial token is spent (even with a code of a new step).
    let r = refused(s.verify(with_code(&partial, s.code(1)), None).await);
    assert_eq!(r.code, Code::NotFound, "{r:?}");
    assert_eq!(r.details["error"], "mfa_token_not_found");
    // And it still opens nothing but the verify endpoint.
    assert_eq!(
        refused(s.me(Some(&partial)).await).details["error"],
        "mfa_incomplete"
    );
}

#[tokio::test]
async fn partial_token_without_the_scope_gives_a_session_without_it() {
    let s = start(Mount::WholeServer).await;
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]));
    let reply = s
        .verify(with_code(&partial, s.code(0)), None)
        .await
        .unwrap();
    assert_eq!(reply.scope, "");
    assert!(payload(&reply.access_token).get("scope").is_none());
    assert_eq!(s.me(Some(&reply.access_token)).await.unwrap().sub, "alice");
    let r = refused(s.invoices(Some(&reply.access_token)).await);
    assert_eq!(r.code, Code::PermissionDenied);
    assert_eq!(r.details["error"], "insufficient_scope");
}

#[tokio::test]
async fn partial_token_as_bearer_metadata_with_an_empty_mfa_token() {
    let s = start(Mount::WholeServer).await;
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]).scope("billing:read"));
    let reply = s
        .verify(with_code("", s.code(0)), Some(&partial))
        .await
        .unwrap();
    assert_eq!(amr(&payload(&reply.access_token)), ["pwd", "otp", "mfa"]);
    assert_eq!(
        s.invoices(Some(&reply.access_token)).await.unwrap().sub,
        "alice"
    );
    // Spent, whichever way it came.
    let r = refused(s.verify(with_code(&partial, s.code(1)), None).await);
    assert_eq!(r.code, Code::NotFound, "{r:?}");

    // Neither in the message nor as metadata: a malformed request.
    let r = refused(s.verify(with_code("", s.code(1)), None).await);
    assert_eq!(r.code, Code::InvalidArgument, "{r:?}");
    assert_eq!(r.details["error"], "invalid_request");
    assert_eq!(r.message, "mfa_token is required");
}

#[tokio::test]
async fn step_up_completed_over_grpc_then_the_mfa_token_is_spent() {
    for mount in MOUNTS {
        let s = start(mount).await;
        let weak = s.weak_session().await;
        let weak_claims = payload(&weak);
        let mfa_token = s.step_up_challenge(&weak).await;

        let reply = s
            .verify(with_code(&mfa_token, s.code(1)), Some(&weak))
            .await
            .unwrap();
        assert_eq!(reply.scope, "billing:read");
        let claims = payload(&reply.access_token);
        assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
        assert_eq!(claims["auth_time"], T0);
        assert_eq!(claims["acr"], MFA_ACR);
        assert_eq!(
            claims["sid"], weak_claims["sid"],
            "a step-up continues its session"
        );
        assert_ne!(claims["jti"], weak_claims["jti"]);
        let invoices = s.invoices(Some(&reply.access_token)).await.unwrap();
        assert_eq!(invoices.sub, "alice");

        // The same mfa-token again, even with a code of a later step: spent.
        s.clock.advance(30);
        let r = refused(
            s.verify(with_code(&mfa_token, s.code(1)), Some(&weak))
                .await,
        );
        assert_eq!(r.code, Code::NotFound, "{mount:?} {r:?}");
        assert_eq!(r.details["error"], "mfa_token_not_found");
        assert_eq!(
            r.message,
            "the mfa_token was already used or is unknown; start again"
        );
    }
}

#[tokio::test]
async fn step_up_mfa_token_alone_or_with_another_session() {
    let s = start(Mount::WholeServer).await;
    let weak = s.weak_session().await;
    let mfa_token = s.step_up_challenge(&weak).await;

    // With an access token of another session beside it: refused, and nothing spent.
    let other = s.weak_session().await;
    let r = refused(
        s.verify(with_code(&mfa_token, s.code(0)), Some(&other))
            .await,
    );
    assert_eq!(r.code, Code::InvalidArgument, "{r:?}");
    assert_eq!(r.details["error"], "mfa_token_invalid");
    assert_eq!(r.message, "the mfa_token belongs to another session");

    // The mfa_token alone (no authorization metadata) is enough.
    let reply = s
        .verify(with_code(&mfa_token, s.code(0)), None)
        .await
        .unwrap();
    assert_eq!(
        s.invoices(Some(&reply.access_token)).await.unwrap().sub,
        "alice"
    );
}

#[tokio::test]
async fn wrong_code_costs_an_attempt_and_the_challenge_takes_another() {
    let s = start(Mount::WholeServer).await;
    let weak = s.weak_session().await;
    let mfa_token = s.step_up_challenge(&weak).await;
    let r = refused(
        s.verify(with_code(&mfa_token, s.wrong_code()), Some(&weak))
            .await,
    );
    assert_eq!(r.code, Code::Unauthenticated, "{r:?}");
    assert_eq!(r.message, "the code is wrong");
    assert_eq!(
        r.details,
        json!({
            "error": "invalid_code",
            "error_description": "the code is wrong",
            "attempts_remaining": 4,
        })
    );
    assert_eq!(r.retry_after, None);
    assert_eq!(r.mfa_token, None);

    // A wrong recovery code counts the same.
    let r = refused(
        s.verify(
            VerifyRequest {
                mfa_token: mfa_token.clone(),
                code: None,
                recovery_code: Some("AAAA-BBBB-CCCC-DDDD".into()),
            },
            Some(&weak),
        )
        .await,
    );
    assert_eq!(r.code, Code::Unauthenticated, "{r:?}");
    assert_eq!(r.details["error"], "invalid_code");
    assert_eq!(r.details["attempts_remaining"], 3);

    // Both a code and a recovery code: malformed, no attempt spent.
    let r = refused(
        s.verify(
            VerifyRequest {
                mfa_token: mfa_token.clone(),
                code: Some(s.code(0)),
                recovery_code: Some("AAAA-BBBB-CCCC-DDDD".into()),
            },
            Some(&weak),
        )
        .await,
    );
    assert_eq!(r.code, Code::InvalidArgument, "{r:?}");
    assert_eq!(r.details["error"], "invalid_request");

    // The same challenge with the right code.
    let reply = s
        .verify(with_code(&mfa_token, s.code(0)), Some(&weak))
        .await
        .unwrap();
    assert_eq!(
        s.invoices(Some(&reply.access_token)).await.unwrap().sub,
        "alice"
    );
}

#[tokio::test]
async fn too_many_wrong_codes_are_resource_exhausted_with_retry_after() {
    let s = start(Mount::WholeServer).await;
    let weak = s.weak_session().await;
    let mfa_token = s.step_up_challenge(&weak).await;
    let wrong = s.wrong_code();
    for remaining in (1..=4).rev() {
        let r = refused(
            s.verify(with_code(&mfa_token, wrong.clone()), Some(&weak))
                .await,
        );
        assert_eq!(r.code, Code::Unauthenticated, "{r:?}");
        assert_eq!(r.details["error"], "invalid_code");
        assert_eq!(r.details["attempts_remaining"], remaining);
    }
    // The fifth wrong code locks alice out for 900 s and kills the challenge.
    let r = refused(
        s.verify(with_code(&mfa_token, wrong.clone()), Some(&weak))
            .await,
    );
    assert_eq!(r.code, Code::ResourceExhausted, "{r:?}");
    assert_eq!(r.message, "too many wrong codes; try again later");
    assert_eq!(r.retry_after.as_deref(), Some("900"));
    assert_eq!(
        r.details,
        json!({
            "error": "too_many_attempts",
            "error_description": "too many wrong codes; try again later",
            "retry_after": 900,
        })
    );

    // Locked: even the right code, even on a new challenge, is refused; the wait shrinks
    // with the clock.
    s.clock.advance(100);
    let fresh = s.step_up_challenge(&weak).await;
    for token in [&mfa_token, &fresh] {
        let r = refused(s.verify(with_code(token, s.code(0)), Some(&weak)).await);
        assert_eq!(r.code, Code::ResourceExhausted, "{r:?}");
        assert_eq!(r.retry_after.as_deref(), Some("800"));
        assert_eq!(r.details["retry_after"], 800);
    }
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]));
    let r = refused(s.verify(with_code(&partial, s.code(0)), None).await);
    assert_eq!(r.code, Code::ResourceExhausted, "{r:?}");

    // After the lockout a new challenge completes.
    s.clock.advance(800);
    let weak = s.weak_session().await;
    let fresh = s.step_up_challenge(&weak).await;
    let reply = s
        .verify(with_code(&fresh, s.code(0)), Some(&weak))
        .await
        .unwrap();
    assert_eq!(
        s.invoices(Some(&reply.access_token)).await.unwrap().sub,
        "alice"
    );
}

#[tokio::test]
async fn garbage_mfa_token_is_invalid_argument() {
    let s = start(Mount::WholeServer).await;
    let weak = s.weak_session().await;
    let mfa_token = s.step_up_challenge(&weak).await;
    // A tampered mfa-token: one character of the ciphertext changed.
    let mut parts: Vec<String> = mfa_token.split('.').map(str::to_owned).collect();
    let ciphertext = &mut parts[3];
    let last = ciphertext.pop().unwrap();
    ciphertext.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = parts.join(".");
    // An access token is not a challenge token.
    for token in ["garbage", "a.b.c.d.e", tampered.as_str(), weak.as_str()] {
        let r = refused(s.verify(with_code(token, s.code(0)), None).await);
        assert_eq!(r.code, Code::InvalidArgument, "{token}: {r:?}");
        assert_eq!(
            r.details,
            json!({
                "error": "mfa_token_invalid",
                "error_description": "the mfa_token is invalid",
            })
        );
        assert_eq!(r.message, "the mfa_token is invalid");
    }
    // No attempt was spent, no code burnt: the real challenge still completes.
    let reply = s
        .verify(with_code(&mfa_token, s.code(0)), Some(&weak))
        .await
        .unwrap();
    assert!(!reply.access_token.is_empty());
}

#[tokio::test]
async fn expired_challenge_tokens_are_unauthenticated_mfa_token_expired() {
    let s = start(Mount::WholeServer).await;
    let weak = s.weak_session().await;
    let mfa_token = s.step_up_challenge(&weak).await;
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]));
    // mfa_token: 300 s; partial token: 300 s + the verifier's 5 s leeway.
    s.clock.advance(306);
    let expired = |r: Refusal| {
        assert_eq!(r.code, Code::Unauthenticated, "{r:?}");
        assert_eq!(r.message, "the mfa_token has expired; start again");
        assert_eq!(
            r.details,
            json!({
                "error": "mfa_token_expired",
                "error_description": "the mfa_token has expired; start again",
            })
        );
    };
    expired(refused(
        s.verify(with_code(&mfa_token, s.code(0)), Some(&weak))
            .await,
    ));
    expired(refused(
        s.verify(with_code(&partial, s.code(0)), None).await,
    ));
    expired(refused(
        s.verify(with_code("", s.code(0)), Some(&partial)).await,
    ));
}

#[tokio::test]
async fn mfa_token_expires_exactly_at_its_ttl() {
    let s = start(Mount::WholeServer).await;
    let weak = s.weak_session().await;
    let first = s.step_up_challenge(&weak).await;
    let second = s.step_up_challenge(&weak).await;
    s.clock.advance(299);
    // 1 s before expiry it completes (the code of the step now).
    let reply = s
        .verify(with_code(&first, s.code(0)), Some(&weak))
        .await
        .unwrap();
    assert!(!reply.access_token.is_empty());
    s.clock.advance(1);
    let r = refused(s.verify(with_code(&second, s.code(1)), Some(&weak)).await);
    assert_eq!(r.code, Code::Unauthenticated, "{r:?}");
    assert_eq!(r.details["error"], "mfa_token_expired");
}

#[tokio::test]
async fn oversized_verify_request_is_invalid_argument() {
    let s = start(Mount::WholeServer).await;
    // Past the verify endpoint's 64 KiB body limit (the gRPC message limit is 4 MiB).
    let r = refused(
        s.verify(with_code(&"A".repeat(70 * 1024), s.code(0)), None)
            .await,
    );
    assert_eq!(r.code, Code::InvalidArgument, "{r:?}");
    assert_eq!(r.details["error"], "invalid_request");
    assert_eq!(r.message, "the request body is too large");
}

#[path = "support/failing_store.rs"]
mod failing_store;
#[path = "support/hooked_store.rs"]
mod hooked_store;
use failing_store::FailingStore;

#[tokio::test]
async fn store_down_is_unavailable_and_the_layer_needs_no_store() {
    let s = start_with(Mount::WholeServer, Arc::new(FailingStore::new())).await;
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]));
    for code in [s.code(0), s.wrong_code()] {
        let r = refused(s.verify(with_code(&partial, code), None).await);
        assert_eq!(r.code, Code::Unavailable, "{r:?}");
        assert_eq!(r.details["error"], "temporarily_unavailable");
    }
    // A bad token is answered before the store is asked.
    let r = refused(s.verify(with_code("garbage", s.code(0)), None).await);
    assert_eq!(r.code, Code::InvalidArgument, "{r:?}");
    // The layer decides without the store.
    assert_eq!(s.me(Some(&s.weak())).await.unwrap().sub, "alice");
    assert_step_up(&refused(s.invoices(Some(&s.weak())).await), SECOND_FACTOR);
}

// ---------------------------------------------------------------------------------------
// 7: per-method policies, the layer on the whole server or around one service
// ---------------------------------------------------------------------------------------

/// A call's answer, without what is random (the mfa-token's value).
#[derive(Debug, PartialEq)]
enum Answer {
    Ok(String),
    Refused {
        code: Code,
        message: String,
        www_authenticate: Option<String>,
        error: Value,
        has_mfa_token: bool,
    },
}

fn answer<T: Debug>(result: Result<T, Status>, ok: impl FnOnce(T) -> String) -> Answer {
    match result {
        Ok(reply) => Answer::Ok(ok(reply)),
        Err(status) => {
            let r = refused::<T>(Err(status));
            Answer::Refused {
                code: r.code,
                message: r.message,
                www_authenticate: r.www_authenticate,
                error: r.details["error"].clone(),
                has_mfa_token: r.mfa_token.is_some(),
            }
        }
    }
}

/// An expected answer: `Ok(reply summary)` or `Err((code, details error, mfa-token?))`.
type Expected = Result<&'static str, (Code, Value, bool)>;

/// The per-method checks, written once: asserts each answer and returns them all.
async fn check_per_method_policies(mount: Mount) -> Vec<(String, Answer)> {
    let s = start(mount).await;
    assert_eq!(s.mount, mount);
    let weak = s.weak_session().await;
    let strong = s.strong();
    let no_scope = s.access(
        &Grant::new("alice")
            .amr(["pwd", "otp", "mfa"])
            .auth_time(s.now()),
    );
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]).scope("billing:read"));

    let me = |r: app::MeReply| format!("me {}", r.sub);
    let inv = |r: app::InvoicesReply| format!("invoices {} {}", r.sub, r.invoices.len());
    let mut answers = Vec::new();
    for (name, token) in [
        ("anonymous", None),
        ("weak", Some(&weak)),
        ("strong", Some(&strong)),
        ("no_scope", Some(&no_scope)),
        ("partial", Some(&partial)),
    ] {
        let token = token.map(String::as_str);
        answers.push((format!("Me {name}"), answer(s.me(token).await, me)));
        answers.push((
            format!("GetInvoices {name}"),
            answer(s.invoices(token).await, inv),
        ));
        answers.push((format!("Nope {name}"), answer(s.nope(token).await, me)));
    }

    let refusal = |code, error: &str, has_mfa_token| (code, Value::from(error), has_mfa_token);
    let unauthenticated = refusal(Code::Unauthenticated, "unauthorized", false);
    let incomplete = refusal(Code::Unauthenticated, "mfa_incomplete", false);
    let expected: Vec<(&str, Expected)> = vec![
        ("Me anonymous", Err(unauthenticated.clone())),
        ("GetInvoices anonymous", Err(unauthenticated.clone())),
        // Not in the table: authenticated by default.
        ("Nope anonymous", Err(unauthenticated.clone())),
        ("Me weak", Ok("me alice")),
        (
            "GetInvoices weak",
            Err(refusal(Code::PermissionDenied, "mfa_required", true)),
        ),
        // Let through by the layer, answered by the service.
        ("Nope weak", Err((Code::Unimplemented, Value::Null, false))),
        ("Me strong", Ok("me alice")),
        ("GetInvoices strong", Ok("invoices alice 1")),
        (
            "Nope strong",
            Err((Code::Unimplemented, Value::Null, false)),
        ),
        ("Me no_scope", Ok("me alice")),
        (
            "GetInvoices no_scope",
            Err(refusal(Code::PermissionDenied, "insufficient_scope", false)),
        ),
        (
            "Nope no_scope",
            Err((Code::Unimplemented, Value::Null, false)),
        ),
        ("Me partial", Err(incomplete.clone())),
        ("GetInvoices partial", Err(incomplete.clone())),
        ("Nope partial", Err(incomplete.clone())),
    ];
    assert_eq!(answers.len(), expected.len());
    for ((name, got), (want_name, want)) in answers.iter().zip(&expected) {
        assert_eq!(name, want_name);
        match (got, want) {
            (Answer::Ok(got), Ok(want)) => assert_eq!(got, want, "{mount:?} {name}"),
            (
                Answer::Refused {
                    code,
                    error,
                    has_mfa_token,
                    ..
                },
                Err((want_code, want_error, want_mfa)),
            ) => {
                assert_eq!(code, want_code, "{mount:?} {name}: {got:?}");
                assert_eq!(error, want_error, "{mount:?} {name}: {got:?}");
                assert_eq!(has_mfa_token, want_mfa, "{mount:?} {name}: {got:?}");
            }
            _ => panic!("{mount:?} {name}: got {got:?}, want {want:?}"),
        }
    }

    // The verify service is reachable with the partial token on both mounts.
    let reply = s
        .verify(with_code(&partial, s.code(0)), None)
        .await
        .unwrap();
    answers.push((
        "GetInvoices verified".into(),
        answer(s.invoices(Some(&reply.access_token)).await, inv),
    ));
    assert_eq!(
        answers.last().unwrap().1,
        Answer::Ok("invoices alice 1".into())
    );
    // Where the mounts differ, by design: a method of another service. In front of the
    // whole server the layer sees it first (not in the table: authenticated); around
    // demo.Billing only, the verify service answers it itself.
    let r = refused(
        s.call::<VerifyRequest, VerifyReply>("/tower_stepup.v1.MfaVerify/Nope", None)
            .await,
    );
    let want = match mount {
        Mount::WholeServer => Code::Unauthenticated,
        Mount::BillingOnly => Code::Unimplemented,
    };
    assert_eq!(r.code, want, "{mount:?} {r:?}");
    assert_eq!(MFA_VERIFY_PATH, "/tower_stepup.v1.MfaVerify/Verify");
    answers
}

#[tokio::test]
async fn per_method_policies_with_the_layer_on_the_whole_server() {
    check_per_method_policies(Mount::WholeServer).await;
}

#[tokio::test]
async fn per_method_policies_with_the_layer_around_the_billing_service_only() {
    check_per_method_policies(Mount::BillingOnly).await;
}

#[tokio::test]
async fn both_mounts_give_the_same_answers() {
    let whole = check_per_method_policies(Mount::WholeServer).await;
    let billing = check_per_method_policies(Mount::BillingOnly).await;
    assert_eq!(whole, billing);
}

/// What a raw call got back.
struct Raw {
    status: http::StatusCode,
    headers: http::HeaderMap,
    /// `grpc-status`, from the headers of a Trailers-Only answer or from the trailers.
    grpc_status: Option<String>,
    data: Bytes,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A raw gRPC request for `path` with HTTP method `method` and an empty message, sent
/// over the client's channel as a plain tower service (tonic's `Grpc` client always says
/// POST; the channel sends what it is given), with `authorization: Bearer <token>` if a
/// token is given.
async fn raw_call(s: &Grpc, method: http::Method, path: &str, token: Option<&str>) -> Raw {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://grpc.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    let request = request
        .body(tonic::body::Body::new(Full::new(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ]))))
        .unwrap();
    let response = within("raw call", s.channel.clone().oneshot(request))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = within("raw body", body.collect()).await.unwrap();
    let status_of =
        |h: &http::HeaderMap| h.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    let grpc_status =
        status_of(&parts.headers).or_else(|| collected.trailers().and_then(status_of));
    Raw {
        status: parts.status,
        headers: parts.headers,
        grpc_status,
        data: collected.to_bytes(),
    }
}

#[tokio::test]
async fn step_up_method_is_refused_whatever_the_http_method() {
    let mut bypasses = Vec::new();
    for mount in MOUNTS {
        let s = start(mount).await;
        let weak = s.weak_session().await;
        let no_scope = s.access(
            &Grant::new("alice")
                .amr(["pwd", "otp", "mfa"])
                .auth_time(s.now()),
        );
        // POST, as every gRPC client sends it: refused.
        for token in [&weak, &no_scope] {
            let raw = raw_call(&s, http::Method::POST, app::GET_INVOICES, Some(token)).await;
            assert_eq!(raw.status, http::StatusCode::OK);
            assert_eq!(raw.grpc_status.as_deref(), Some("7"), "{mount:?}");
            assert!(raw.data.is_empty());
        }

        // Regression: `RouteTable::grpc` once registered the policy for `POST` only, so a
        // `GET`/`PUT`/`PATCH` of the same path got the default (authenticated) policy,
        // and neither tonic's router nor a generated server checks the HTTP method:
        // step-up and scope were bypassed. It now covers every HTTP method (and, not being
        // a POST, the refusal is the HTTP one: see
        // `get_with_grpc_content_type_gets_http_denial`).
        for method in [http::Method::GET, http::Method::PUT, http::Method::PATCH] {
            for (name, token, error) in [
                ("password-only", &weak, "mfa_required"),
                ("no billing:read", &no_scope, "insufficient_scope"),
            ] {
                let raw = raw_call(&s, method.clone(), app::GET_INVOICES, Some(token)).await;
                let refused = raw.status == http::StatusCode::FORBIDDEN
                    && raw.grpc_status.is_none()
                    && serde_json::from_slice::<Value>(&raw.data)
                        .is_ok_and(|body| body["error"] == error);
                if !refused {
                    bypasses.push(format!(
                        "{mount:?} {method} {} with a {name} token: HTTP {}, grpc-status {:?}, \
                         {} bytes of data",
                        app::GET_INVOICES,
                        raw.status,
                        raw.grpc_status,
                        raw.data.len()
                    ));
                }
            }
        }
    }
    assert!(
        bypasses.is_empty(),
        "the step-up method answered:\n{}",
        bypasses.join("\n")
    );
}

/// Finding 6 of issue 14: the gRPC form of a denial is an HTTP 200, and a step-up one
/// carries the mfa_token in its `mfa-token` header; it once had no `cache-control`, so a
/// shared cache could keep and replay it. Every gRPC-form denial now says `no-store`.
#[tokio::test]
async fn grpc_step_up_denial_is_not_cacheable() {
    for mount in MOUNTS {
        let s = start(mount).await;
        let weak = s.weak_session().await;
        let raw = raw_call(&s, http::Method::POST, app::GET_INVOICES, Some(&weak)).await;
        assert_eq!(raw.status, http::StatusCode::OK, "{mount:?}");
        assert_eq!(raw.grpc_status.as_deref(), Some("7"), "{mount:?}");
        let token = raw.header("mfa-token").expect("an mfa-token");
        assert_eq!(token.split('.').count(), 5, "the mfa-token is a JWE");
        assert_eq!(raw.header("cache-control"), Some("no-store"), "{mount:?}");
        assert!(raw.data.is_empty());

        // The other gRPC-form denials say the same.
        for (token, status) in [(None, "16"), (Some("garbage"), "16")] {
            let raw = raw_call(&s, http::Method::POST, app::ME, token).await;
            assert_eq!(raw.status, http::StatusCode::OK, "{mount:?}");
            assert_eq!(raw.grpc_status.as_deref(), Some(status), "{mount:?}");
            assert_eq!(raw.header("cache-control"), Some("no-store"), "{mount:?}");
        }
    }
}

/// Finding 6 of issue 14: any client could ask for the gRPC form (HTTP 200, the
/// mfa_token in a header) by sending `content-type: application/grpc` on a `GET`. The
/// gRPC form is for `POST` only (every gRPC call is one): another method gets the HTTP
/// denial, `403` JSON with `cache-control: no-store`.
#[tokio::test]
async fn get_with_grpc_content_type_gets_http_denial() {
    for mount in MOUNTS {
        let s = start(mount).await;
        let weak = s.weak_session().await;
        for method in [http::Method::GET, http::Method::PUT, http::Method::DELETE] {
            let raw = raw_call(&s, method.clone(), app::GET_INVOICES, Some(&weak)).await;
            let what = format!("{mount:?} {method}");
            assert_eq!(raw.status, http::StatusCode::FORBIDDEN, "{what}");
            assert_eq!(raw.grpc_status, None, "{what}");
            assert!(
                raw.header("mfa-token").is_none(),
                "{what}: an mfa-token header"
            );
            assert_eq!(raw.header("stepup-details"), None, "{what}");
            assert_eq!(raw.header("cache-control"), Some("no-store"), "{what}");
            assert_eq!(
                raw.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            assert_eq!(
                raw.header("www-authenticate"),
                Some(
                    format!(
                        r#"Bearer error="insufficient_user_authentication", error_description="{SECOND_FACTOR}", max_age={MAX_AGE}"#
                    )
                    .as_str()
                ),
                "{what}"
            );
            let body: Value = serde_json::from_slice(&raw.data).unwrap();
            assert_eq!(body["error"], "mfa_required", "{what}");
            assert_eq!(
                body["mfa_token"].as_str().map(|t| t.split('.').count()),
                Some(5),
                "{what}: the mfa_token in the body"
            );
        }

        // No token: the 401 of the HTTP table, not grpc-status 16.
        let raw = raw_call(&s, http::Method::GET, app::ME, None).await;
        assert_eq!(raw.status, http::StatusCode::UNAUTHORIZED, "{mount:?}");
        assert_eq!(raw.grpc_status, None, "{mount:?}");
        assert_eq!(raw.header("www-authenticate"), Some(REALM_CHALLENGE));
        assert_eq!(raw.header("cache-control"), Some("no-store"));
        let body: Value = serde_json::from_slice(&raw.data).unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
}

/// The verify service's answers carry a new session's tokens (or the endpoint's error
/// details): `cache-control: no-store` on each, as on the HTTP endpoint.
#[tokio::test]
async fn verify_answers_over_grpc_are_not_cacheable() {
    let s = start(Mount::WholeServer).await;
    let partial = s.partial(&Grant::new("alice").amr(["pwd"]).scope("billing:read"));
    let mut client = MfaVerifyClient::new(s.channel.clone());
    let reply = within(
        "verify",
        client.verify(Request::new(with_code(&partial, s.code(0)))),
    )
    .await
    .unwrap();
    assert!(!reply.get_ref().access_token.is_empty());
    assert_eq!(
        reply
            .metadata()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    // An error too (the partial token is spent now).
    let status = within(
        "verify",
        client.verify(Request::new(with_code(&partial, s.code(1)))),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
}

// ---------------------------------------------------------------------------------------
// 8: plain HTTP clients keep the HTTP denial
// ---------------------------------------------------------------------------------------

/// reqwest here speaks HTTP/1.1 only (no `http2` feature) and tonic servers speak h2
/// only, so the content-type switch is checked at the tower level, on the very service
/// the server would run: `demo.layer` around `BillingServer`.
#[tokio::test]
async fn plain_http_clients_keep_the_http_denial() {
    let clock = ManualClock::new(T0);
    let demo = app::build(&config(), clock, Arc::new(MemoryStore::new())).unwrap();
    let svc = demo.layer.layer(app::BillingServer);
    let request = |path: &str, content_type: &str, token: Option<&str>| {
        let mut b = http::Request::post(path).header("content-type", content_type);
        if let Some(token) = token {
            b = b.header("authorization", bearer(token));
        }
        // An empty message in gRPC framing (no compression, length 0); `{}` otherwise.
        let body: &'static [u8] = if content_type.starts_with("application/grpc") {
            &[0, 0, 0, 0, 0]
        } else {
            b"{}"
        };
        b.body(Full::new(Bytes::from_static(body))).unwrap()
    };
    let send = |req: http::Request<Full<Bytes>>| {
        let svc = svc.clone();
        async move {
            let res = within("oneshot", svc.oneshot(req)).await.unwrap();
            let (parts, body) = res.into_parts();
            let body = within("body", body.collect()).await.unwrap().to_bytes();
            (parts, body)
        }
    };
    let header = |parts: &http::response::Parts, name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // No token, JSON: the HTTP denial.
    let (http_parts, http_body) = send(request(app::ME, "application/json", None)).await;
    assert_eq!(http_parts.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&http_parts, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&http_parts, "www-authenticate").as_deref(),
        Some(REALM_CHALLENGE)
    );
    assert_eq!(header(&http_parts, "grpc-status"), None);
    let http_json: Value = serde_json::from_slice(&http_body).unwrap();
    assert_eq!(
        http_json,
        json!({ "error": "unauthorized", "error_description": "an access token is required" })
    );

    // No token, gRPC (any application/grpc variant): Trailers-Only.
    for ct in ["application/grpc", "application/grpc+proto"] {
        let (parts, body) = send(request(app::ME, ct, None)).await;
        assert_eq!(parts.status, http::StatusCode::OK, "{ct}");
        assert_eq!(header(&parts, "grpc-status").as_deref(), Some("16"));
        assert_eq!(
            header(&parts, "grpc-message").as_deref(),
            Some("an access token is required")
        );
        assert_eq!(
            header(&parts, "content-type").as_deref(),
            Some("application/grpc")
        );
        assert_eq!(
            header(&parts, "www-authenticate").as_deref(),
            Some(REALM_CHALLENGE)
        );
        let details: Value =
            serde_json::from_str(&header(&parts, "stepup-details").unwrap()).unwrap();
        assert_eq!(details, http_json, "the details are the HTTP body");
        assert!(body.is_empty(), "{ct}: Trailers-Only has no body");
    }

    // gRPC-Web is not gRPC: it keeps the HTTP denial.
    let (parts, _) = send(request(app::ME, "application/grpc-web", None)).await;
    assert_eq!(parts.status, http::StatusCode::UNAUTHORIZED);

    // A step-up: 403 JSON with the mfa_token in the body, or grpc-status 7 with it as
    // metadata.
    let issuer = demo.issuer.clone();
    let weak = issuer
        .issue_access(&Grant::new("alice").amr(["pwd"]).scope("billing:read"))
        .unwrap()
        .token;
    let (parts, body) = send(request(app::GET_INVOICES, "application/json", Some(&weak))).await;
    assert_eq!(parts.status, http::StatusCode::FORBIDDEN);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "mfa_required");
    assert!(json["mfa_token"].is_string());
    assert_eq!(header(&parts, "mfa-token"), None);

    let (parts, body) = send(request(app::GET_INVOICES, "application/grpc", Some(&weak))).await;
    assert_eq!(parts.status, http::StatusCode::OK);
    assert_eq!(header(&parts, "grpc-status").as_deref(), Some("7"));
    assert!(body.is_empty());
    let details: Value = serde_json::from_str(&header(&parts, "stepup-details").unwrap()).unwrap();
    assert_eq!(details["error"], "mfa_required");
    assert_eq!(
        header(&parts, "mfa-token").as_deref(),
        details["mfa_token"].as_str()
    );

    // Let through: the service answers, in gRPC.
    let strong = issuer
        .issue_access(
            &Grant::new("alice")
                .amr(["pwd", "otp", "mfa"])
                .scope("billing:read")
                .auth_time(T0),
        )
        .unwrap()
        .token;
    let (parts, body) = send(request(app::ME, "application/grpc", Some(&strong))).await;
    assert_eq!(parts.status, http::StatusCode::OK);
    assert_eq!(
        header(&parts, "grpc-status"),
        None,
        "not a Trailers-Only denial"
    );
    assert!(!body.is_empty(), "the MeReply message");
}
