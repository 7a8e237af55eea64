//! An API guarded by an identity provider's published keys, with a delegated step-up
//! route; no account needed anywhere:
//!
//! ```text
//! cargo run --example idp_api --features jwks,axum
//! cargo run --example idp_api --features jwks,axum -- --self-test
//! ```
//!
//! The example plays the provider itself on a loopback port: the crate's `Issuer`, an
//! Ed25519 key from a fixed DEMO seed, its JWKS at `/.well-known/jwks.json`, a discovery
//! document at `/.well-known/openid-configuration`. The API (`STEPUP_BIND`, default
//! `127.0.0.1:3000`) knows the provider by its issuer URL only: it discovers and fetches
//! the keys, and keeps them fresh in the background (`JwksSource`).
//!
//! | route | policy |
//! | --- | --- |
//! | `GET /api/orders` | authenticated, scope `orders:read` |
//! | `GET /api/admin` | step-up: `acr` `urn:example:mfa`, authenticated within 300 s |
//!
//! After `STEPUP_ROTATE_AFTER` seconds (default 60) the provider rotates its key; the
//! API fetches the new one when a token first names it. `--self-test` makes the requests
//! itself and exits 0 when every answer is the expected one. With a real provider, drop
//! the provider half and use a ready-made profile (`TrustedIssuer::okta(…)`, README).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use http::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_stepup::jwks::JwksSource;
use tower_stepup::{
    Algorithm, Claims, Grant, Guard, Issuer, Policy, RouteTable, SigningKey, StepUp, TrustedIssuer,
    Verifier,
};

/// DEMO ONLY, NOT A SECRET: the provider's Ed25519 signing keys come from seeds written
/// here, so anyone can sign tokens this API accepts. A real provider keeps its keys.
const DEMO_SEED: &[u8; 32] = b"idp_api demo seed - not a secret";
const DEMO_SEED_ROTATED: &[u8; 32] = b"idp_api demo seed 2, not secret!";
/// The API's identifier at the provider: the `aud` of the tokens meant for it.
const AUDIENCE: &str = "https://orders.example";
const MFA_ACR: &str = "urn:example:mfa";
const MAX_AGE: Duration = Duration::from_secs(300);

type BoxResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match std::env::args().nth(1).as_deref() {
        Some("--self-test") => self_test().await,
        _ => run().await,
    };
    if let Err(error) = result {
        eprintln!("idp_api: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The provider and the API, served until dropped.
pub struct Demo {
    provider: Issuer,
    /// The provider's `iss` (its base URL).
    pub iss: String,
    /// The API's base URL.
    pub api: String,
    /// The API's copy of the provider's keys.
    pub keys: JwksSource,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Starts the provider on a free loopback port and the API on `api_bind`, and waits
/// until the API holds the provider's keys.
pub async fn start(api_bind: &str) -> BoxResult<Demo> {
    let (idp_listener, iss) = listen("127.0.0.1:0").await?;
    let provider = Issuer::builder()
        .issuer(&iss)
        .audience(AUDIENCE)
        .signing_key(demo_key(DEMO_SEED)?)
        .build()?;
    let idp_task = serve(idp_listener, provider_routes(&provider, &iss));
    // Discovery: GET {iss}/.well-known/openid-configuration, whose `issuer` must be
    // `iss`, then its `jwks_uri`. http:// is accepted because the host is loopback.
    let keys = JwksSource::discover(&iss)
        .algorithms([Algorithm::EdDSA])
        .build()?;
    let (api_listener, api) = listen(api_bind).await?;
    let api_task = serve(api_listener, api_routes(&iss, keys.clone())?);
    // Optional: until the keys arrive, the provider's tokens would get 401.
    keys.wait_loaded(Duration::from_secs(5)).await?;
    let tasks = vec![idp_task, api_task];
    Ok(Demo {
        provider,
        iss,
        api,
        keys,
        tasks,
    })
}

/// An Ed25519 key from `seed`, its `kid` the RFC 7638 thumbprint of its public half.
fn demo_key(seed: &[u8; 32]) -> BoxResult<SigningKey> {
    Ok(SigningKey::ed25519_from_seed("demo", seed)?.with_thumbprint_kid()?)
}

/// What the provider publishes: its public keys and where to find them.
fn provider_routes(provider: &Issuer, iss: &str) -> Router {
    let discovery = json!({ "issuer": iss, "jwks_uri": format!("{iss}/.well-known/jwks.json") });
    Router::new()
        .route_service("/.well-known/jwks.json", provider.jwks_service())
        .route(
            "/.well-known/openid-configuration",
            get(move || std::future::ready(Json(discovery.clone()))),
        )
}

/// The API: trusts one provider (its `iss`, the audience and algorithms of its tokens,
/// its keys), one policy per route.
fn api_routes(iss: &str, keys: JwksSource) -> BoxResult<Router> {
    let provider = TrustedIssuer::new(iss)
        .audience(AUDIENCE)
        .algorithms([Algorithm::EdDSA])
        .key_source(keys);
    let verifier = Verifier::builder().trust(provider).build()?;
    // No local issuer, so no sealer: the provider performs the second factor, and a
    // step-up denial tells the client to go back there (delegated step-up).
    let guard = Guard::builder().verifier(verifier).build()?;
    let admin = StepUp::new().acr_values([MFA_ACR]).max_age(MAX_AGE);
    let table = RouteTable::new()
        .route(
            Method::GET,
            "/api/orders",
            Policy::authenticated().scopes(["orders:read"]),
        )
        .route(Method::GET, "/api/admin", Policy::step_up(admin));
    Ok(Router::new()
        .route("/api/orders", get(show_claims))
        .route("/api/admin", get(show_claims))
        .layer(guard.route_table(table)?))
}

/// Runs only for a request the layer let through: the claims it verified.
async fn show_claims(claims: Claims) -> Json<Value> {
    Json(json!({ "iss": claims.iss(), "sub": claims.sub(), "scope": claims.scope() }))
}

impl Demo {
    /// The provider's token after a password only: scope `orders:read`, no `acr`.
    pub fn plain_token(&self) -> BoxResult<String> {
        let grant = Grant::new("alice").scope("orders:read");
        Ok(self.provider.issue_access(&grant)?.token)
    }

    /// The provider's token right after a second factor: `acr` and a fresh `auth_time`.
    pub fn mfa_token(&self) -> BoxResult<String> {
        let grant = Grant::new("alice").scope("orders:read").acr(MFA_ACR);
        let grant = grant.auth_time(self.provider.clock().now());
        Ok(self.provider.issue_access(&grant)?.token)
    }

    /// The provider signs with a new key from now on (the old one stays published
    /// until its tokens expire); returns the new `kid`.
    pub fn rotate(&self) -> BoxResult<String> {
        self.provider.rotate(demo_key(DEMO_SEED_ROTATED)?)?;
        Ok(self.provider.signing_kid())
    }

    /// A `curl` line for `GET path` on the API with `token`.
    fn curl(&self, path: &str, token: &str) -> String {
        let api = &self.api;
        format!("curl -i -H 'Authorization: Bearer {token}' {api}{path}")
    }

    /// `GET path` on the API with `token`.
    async fn get(&self, path: &str, token: &str) -> BoxResult<Reply> {
        let url = format!("{}{path}", self.api);
        let res = reqwest::Client::new().get(url).bearer_auth(token);
        let res = res.send().await?;
        let status = res.status().as_u16();
        let challenge = res.headers().get("www-authenticate").map(|v| v.to_str());
        let challenge = challenge.transpose()?.unwrap_or_default().to_owned();
        let body = serde_json::from_slice(&res.bytes().await?).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            challenge,
            body,
        })
    }
}

/// An answer of the API: status, `WWW-Authenticate` (or empty), JSON body (or null).
#[derive(Debug)]
struct Reply {
    status: u16,
    challenge: String,
    body: Value,
}

async fn run() -> BoxResult {
    let bind = std::env::var("STEPUP_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    // The provider's key comes from a public demo seed: anyone could sign its tokens.
    let addr: std::net::SocketAddr = bind.parse().map_err(|_| "STEPUP_BIND: ip:port")?;
    if !addr.ip().is_loopback() {
        return Err(
            "STEPUP_BIND must be a loopback address: the demo provider's key is public".into(),
        );
    }
    let rotate_after = std::env::var("STEPUP_ROTATE_AFTER").map_or(Ok(60), |s| s.parse());
    let rotate_after = rotate_after.map_err(|_| "STEPUP_ROTATE_AFTER: seconds expected")?;
    let demo = start(&bind).await?;
    print_instructions(&demo)?;
    tokio::time::sleep(Duration::from_secs(rotate_after)).await;
    let kid = demo.rotate()?;
    println!("\nThe provider rotated its key; the new kid is {kid}. A token signed by it:");
    println!("200 on first use (the API fetches the provider's keys once for it).");
    println!("{}", demo.curl("/api/orders", &demo.plain_token()?));
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn print_instructions(demo: &Demo) -> BoxResult {
    let (plain, mfa) = (demo.plain_token()?, demo.mfa_token()?);
    let (iss, api) = (&demo.iss, &demo.api);
    println!("Identity provider (demo) at {iss}, keys at {iss}/.well-known/jwks.json");
    println!("API at {api}, two tokens from the provider for alice:");
    println!("\nGET /api/orders, plain token (scope orders:read): 200 with its claims");
    println!("{}", demo.curl("/api/orders", &plain));
    println!("\nGET /api/admin, plain token: 403 mfa_required, delegated: the header says");
    println!("  WWW-Authenticate: Bearer error=\"insufficient_user_authentication\",");
    println!("  acr_values=\"{MFA_ACR}\", max_age=300, and the body has no mfa_token:");
    println!("  nothing here completes MFA; the client goes back to the provider with them.");
    println!("{}", demo.curl("/api/admin", &plain));
    println!("\nGET /api/admin, token after MFA (acr {MFA_ACR}): 200 for 300 s");
    println!("{}", demo.curl("/api/admin", &mfa));
    Ok(())
}

/// The provider and the API on free ports, and the requests the instructions show,
/// each answer checked. `Err` names the first mismatch.
pub async fn self_test() -> BoxResult {
    let demo = start("127.0.0.1:0").await?;
    let (plain, mfa) = (demo.plain_token()?, demo.mfa_token()?);
    let r = demo.get("/api/orders", &plain).await?;
    let ok = r.status == 200 && r.body["iss"] == demo.iss.as_str() && r.body["sub"] == "alice";
    check(ok, "orders, plain token: 200, the provider's alice", &r)?;

    let r = demo.get("/api/admin", &plain).await?;
    let ok = r.status == 403 && r.body["error"] == "mfa_required";
    check(ok, "admin, plain token: 403 mfa_required", &r)?;
    check(
        r.body.get("mfa_token").is_none(),
        "delegated: no mfa_token",
        &r,
    )?;
    let acr = format!("acr_values=\"{MFA_ACR}\"");
    let ok = r.challenge.contains(&acr) && r.challenge.contains("max_age=300");
    check(ok, "the challenge names acr_values, max_age", &r)?;
    let r = demo.get("/api/admin", &mfa).await?;
    check(r.status == 200, "admin, token after MFA: 200", &r)?;

    let fetches = demo.keys.stats().fetches;
    demo.rotate()?;
    let r = demo.get("/api/orders", &demo.plain_token()?).await?;
    check(r.status == 200, "orders, token of the new key: 200", &r)?;
    let fetched = demo.keys.stats().fetches - fetches;
    check(
        fetched == 1,
        "the new key fetched once, on first use",
        fetched,
    )?;
    println!("self-test passed");
    Ok(())
}

fn check(ok: bool, what: &str, got: impl std::fmt::Debug) -> BoxResult {
    if !ok {
        return Err(format!("{what}: got {got:?}").into());
    }
    println!("ok  {what}");
    Ok(())
}

async fn listen(bind: &str) -> BoxResult<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

fn serve(listener: tokio::net::TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("idp_api: server stopped: {error}");
        }
    })
}
