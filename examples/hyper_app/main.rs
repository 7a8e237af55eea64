//! tower-stepup in front of a bare hyper 1 server, no framework: a hand-written router
//! wrapped once in `guard.route_table(…)`, served by `hyper_util`'s auto builder
//! (HTTP/1.1 and HTTP/2).
//!
//! ```text
//! cargo run --example hyper_app
//! ```
//!
//! Routes: `GET /healthz` (public), `GET /api/me` (authenticated), `GET /api/billing`
//! (step-up: `mfa` in `amr`, `auth_time` within `STEPUP_MAX_AGE_SECS`, default 300),
//! `POST /auth/login`, `POST /auth/mfa/verify`; the table is in `app.rs`.
//! Users: `alice` / `alice-password` (TOTP), `bob` / `bob-password` (no second factor).
//! Environment (all optional): `STEPUP_BIND` (127.0.0.1:3001), `STEPUP_ALICE_TOTP_SECRET`,
//! `STEPUP_MAX_AGE_SECS`, `STEPUP_SIGNING_KEY`, `STEPUP_SEALING_KEY`.

mod app;

use tower_stepup::factor::totp;
use tower_stepup::SystemClock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = app::Config::from_env()?;
    let app = app::build(&config, SystemClock)?;
    let listener = tokio::net::TcpListener::bind(&config.bind).await?;
    let base = format!("http://{}", listener.local_addr()?);

    println!("tower-stepup hyper demo listening on {base}");
    if config.keys_were_random {
        eprintln!("STEPUP_SIGNING_KEY / STEPUP_SEALING_KEY not set: random keys for this run");
    }
    if config.alice_secret_was_random {
        // A demo aid: this secret lives only in this process. Never print a real one.
        let uri = totp::otpauth_uri(
            &config.alice_totp_secret,
            "tower-stepup hyper demo",
            "alice",
        );
        println!("alice's TOTP secret is random for this run; add it to an authenticator app:");
        println!("  {uri}");
    }
    let json = "-H 'content-type: application/json'";
    let field = |name: &str| format!("sed -E 's/.*\"{name}\":\"([^\"]+)\".*/\\1/'");
    println!("Try it (bash):");
    println!("  curl -i {base}/healthz");
    println!(
        "  PARTIAL=$(curl -s {base}/auth/login {json} -d '{{\"username\":\"alice\",\"password\":\"alice-password\"}}' | {})",
        field("partial_token")
    );
    println!("  CODE=123456  # alice's current code, from the authenticator app");
    println!(
        "  ACCESS=$(curl -s {base}/auth/mfa/verify {json} -d \"{{\\\"mfa_token\\\":\\\"$PARTIAL\\\",\\\"code\\\":\\\"$CODE\\\"}}\" | {})",
        field("access_token")
    );
    println!("  curl -s {base}/api/me -H \"authorization: Bearer $ACCESS\"");
    println!("  curl -i {base}/api/billing -H \"authorization: Bearer $ACCESS\"");
    println!(
        "  curl -i --http2-prior-knowledge {base}/api/billing -H \"authorization: Bearer $ACCESS\""
    );
    println!(
        "After {} s, /api/billing answers 403 mfa_required with an mfa_token: verify it as PARTIAL \
         above. bob / bob-password gets tokens at login, and 403 on /api/billing.",
        config.max_age_secs
    );

    app::serve(listener, app).await;
    Ok(())
}
