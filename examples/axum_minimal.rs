//! The smallest useful tower-stepup server: three axum routes, one policy each.
//!
//! ```text
//! cargo run --example axum_minimal --features axum
//! ```
//!
//! | route | policy |
//! | --- | --- |
//! | `GET /public` | [`Policy::public`] |
//! | `GET /me` | [`Policy::authenticated`] |
//! | `GET /billing` | [`Policy::step_up`]: `amr` contains `mfa`, `auth_time` within 300 s |
//!
//! There is no login or verify endpoint here (the full demo, `examples/axum_app/`, has
//! them): at start the server issues two access tokens itself, one after a password only
//! (`amr: ["pwd"]`) and one after a second factor (`amr: ["pwd","otp","mfa"]`), and prints
//! a ready-to-paste `curl` line for each route with the answer to expect.
//!
//! Listens on `STEPUP_BIND` (default `127.0.0.1:3000`). The keys are random per process.

use std::error::Error;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_stepup::{
    Algorithm, Claims, Grant, Guard, Issuer, Policy, Sealer, SealingKey, SealingKeys, SigningKey,
    StepUp, Verifier, VerifyingKey,
};

const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "https://api.example";
const MAX_AGE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let bind = std::env::var("STEPUP_BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());

    // HS256 with a fresh random secret: the same secret signs (Issuer) and verifies
    // (Verifier). The mfa_token sealing key is random too.
    let secret = random_secret()?;
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k1", Algorithm::HS256, &secret)?)
        .build()?;
    let sealer = Sealer::new(SealingKeys::new(SealingKey::generate("s1")?))?;
    let guard = Guard::builder().verifier(verifier).sealer(sealer).build()?;

    // One policy per route, with axum's `route_layer`.
    let app = Router::new()
        .route(
            "/public",
            get(public).route_layer(guard.require(Policy::public())?),
        )
        .route(
            "/me",
            get(me).route_layer(guard.require(Policy::authenticated())?),
        )
        .route(
            "/billing",
            get(billing).route_layer(
                guard.require(Policy::step_up(StepUp::new().amr(["mfa"]).max_age(MAX_AGE)))?,
            ),
        );

    // Two access tokens, as a login endpoint would issue them.
    let issuer = Issuer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &secret)?)
        .build()?;
    let now = issuer.clock().now();
    let pwd = issuer.issue_access(&Grant::new("alice").amr(["pwd"]).auth_time(now))?;
    let mfa = issuer.issue_access(
        &Grant::new("alice")
            .amr(["pwd", "otp", "mfa"])
            .auth_time(now),
    )?;

    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let base = format!("http://{}", listener.local_addr()?);
    print_instructions(&base, &pwd.token, &mfa.token, pwd.expires_in);

    axum::serve(listener, app).await?;
    Ok(())
}

/// Anyone. The claims are attached when a valid access token was sent anyway.
async fn public(claims: Option<Claims>) -> Json<Value> {
    Json(json!({
        "route": "public",
        "sub": claims.as_ref().map(Claims::sub),
    }))
}

/// A valid access token. The `Claims` extractor reads what the layer verified.
async fn me(claims: Claims) -> Json<Value> {
    Json(json!({
        "sub": claims.sub(),
        "amr": claims.amr(),
    }))
}

/// A valid access token whose authentication used a second factor in the last 300 s.
async fn billing(claims: Claims) -> Json<Value> {
    Json(json!({
        "sub": claims.sub(),
        "amr": claims.amr(),
        "auth_time": claims.auth_time(),
        "invoices": [],
    }))
}

/// 32 bytes from the operating system's CSPRNG.
fn random_secret() -> Result<[u8; 32], Box<dyn Error>> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    Ok(secret)
}

fn print_instructions(base: &str, pwd: &str, mfa: &str, expires_in: u64) {
    let auth = |token: &str| format!("-H 'Authorization: Bearer {token}' ");
    let lines = [
        (
            "GET /public, no token: 200",
            format!("curl -i {base}/public"),
        ),
        (
            "GET /me, no token: 401 unauthorized",
            format!("curl -i {base}/me"),
        ),
        (
            "GET /me, password-only token: 200 {\"sub\":\"alice\",\"amr\":[\"pwd\"]}",
            format!("curl -i {}{base}/me", auth(pwd)),
        ),
        (
            "GET /billing, password-only token: 403 mfa_required, \
             WWW-Authenticate: Bearer error=\"insufficient_user_authentication\", \
             a JSON body with an mfa_token",
            format!("curl -i {}{base}/billing", auth(pwd)),
        ),
        (
            "GET /billing, MFA token: 200",
            format!("curl -i {}{base}/billing", auth(mfa)),
        ),
    ];
    println!("tower-stepup axum_minimal listening on {base}");
    println!();
    println!("Two access tokens for alice (valid {expires_in} s):");
    println!("  password only (amr pwd):    {pwd}");
    println!("  second factor (amr pwd otp mfa, auth_time now): {mfa}");
    println!();
    println!("Try it:");
    for (expect, curl) in lines {
        println!();
        println!("  {expect}");
        println!("{curl}");
    }
    println!();
    println!(
        "The MFA token passes /billing for {} s after start (max_age); after that /billing \
         answers 403 mfa_required again. Restart for new tokens. Ctrl-C to stop.",
        MAX_AGE.as_secs()
    );
}
