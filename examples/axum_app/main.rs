//! The tower-stepup demo: password login, TOTP second factor, step-up on a
//! sensitive route, enrollment, refresh with rotation, logout, the list of sessions.
//!
//! ```text
//! cargo run --example axum_app
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_app --features redis
//! ```
//!
//! | route | policy |
//! | --- | --- |
//! | `GET /healthz` | public |
//! | `GET /.well-known/jwks.json` | public: the public keys that verify the demo's tokens |
//! | `GET /api/me` | authenticated |
//! | `GET /api/orders` | authenticated, scope `orders:read` (alice and bob have it) |
//! | `GET /api/billing` | step-up: `amr` contains `mfa`, `auth_time` within `STEPUP_MAX_AGE_SECS` |
//! | `GET /api/admin` | step-up: a phishing-resistant factor (a passkey), `auth_time` within `STEPUP_MAX_AGE_SECS` |
//! | `POST /auth/login` | public |
//! | `POST /auth/mfa/verify` | the verify endpoint |
//! | `POST /auth/passkey/challenge` | as verify: a partial token or mfa_token → passkey request options |
//! | `POST /auth/passkey/register/start`, `…/finish` | authenticated (start: a recent authentication first) |
//! | `POST /auth/mfa/send` | as verify: a partial token or mfa_token → a one-time code by email (to the log) |
//! | `POST /auth/mfa/enroll`, `POST /auth/mfa/enroll/confirm` | authenticated (step-up for a user who has a factor) |
//! | `POST /auth/refresh` | public |
//! | `POST /auth/logout` | authenticated |
//! | `GET /auth/sessions`, `DELETE /auth/sessions/{id}`, `DELETE /auth/devices/{id}` | authenticated (ending a session or forgetting a device: a recent authentication first) |
//! | `GET /auth/factors`, `PATCH /auth/factors/{id}`, `DELETE /auth/factors/{id}`, `POST /auth/mfa/recovery-codes` | authenticated (removing a factor or replacing the recovery codes: a recent authentication first; the last factor stays unless `STEPUP_ALLOW_ACCOUNTS_WITHOUT_MFA=true`) |
//! | `GET /login`, `/mfa`, `/dashboard`, `/billing`, `/security`, `/sessions`, `/static/*` | public (browser pages over the routes above, in cookie mode) |
//! | `GET /test/last-code/{user}` | public, and mounted only with `STEPUP_TEST_ROUTES=1`: `{"code"}`, the last code sent to `user` |
//!
//! Users: `alice` / `alice-password` (TOTP enrolled, and an email factor
//! `alice@example.com` whose codes the log sender writes to the log, without the code),
//! `bob` / `bob-password` (no second factor). Environment (all optional): `STEPUP_BIND`,
//! `STEPUP_ALICE_TOTP_SECRET`,
//! `STEPUP_MAX_AGE_SECS`, `STEPUP_MFA_TOKEN_TTL_SECS`, `STEPUP_ACCESS_TTL_SECS`,
//! `STEPUP_MAX_ATTEMPTS`, `STEPUP_SIGNING_KEY`, `STEPUP_SEALING_KEY`, `REDIS_URL`,
//! `STEPUP_REVOCATION_STALENESS_SECS` (with `REDIS_URL`: 503 on authenticated routes
//! after this long without the revocation feed; 60),
//! `STEPUP_LOGIN_MAX_FAILURES` (10 per account and client in 15 minutes),
//! `STEPUP_LOGIN_ACCOUNT_MAX_FAILURES` (100 per account in an hour),
//! `STEPUP_TRUSTED_PROXIES` (addresses or CIDRs whose `X-Forwarded-For` names the client;
//! none), `STEPUP_SESSION_IDLE_SECS` (a session ends after this long without a refresh or
//! step-up; 86400), `STEPUP_WEBAUTHN_RP_ID` (`localhost`), `STEPUP_WEBAUTHN_ORIGIN`
//! (`http://localhost:<port of STEPUP_BIND>`), `STEPUP_PUBLIC_URL` (the URL API clients
//! use, which DPoP proofs' `htu` must name; `http://<STEPUP_BIND>`), `STEPUP_IDP_ISSUER` with `STEPUP_IDP_JWKS_URL` or `STEPUP_IDP_DISCOVERY_URL`
//! (with `--features jwks`: `/api/*` also accepts that identity provider's access tokens
//! for the audience `https://demo.tower-stepup.local/api`, `typ` `at+jwt`, `JWT` or none,
//! RS256, ES256 or EdDSA; its step-ups are delegated to it, and `/auth/*` serves the
//! demo's own users only), `STEPUP_TEST_ROUTES=1` (for tests only: mounts `GET
//! /test/last-code/{user}`, which hands out the last one-time code sent to a user, so
//! anyone who can reach it passes that second factor; off by default).
//!
//! Tokens are signed with Ed25519 (`EdDSA`). `STEPUP_SIGNING_KEY` (base64 of 32 random
//! bytes) is not the key itself: the key's seed is
//! `SHA-256("tower-stepup demo Ed25519 signing key v1\0" || secret)`, and its `kid` is the
//! key's RFC 7638 thumbprint, so instances given the same secret sign with, and publish,
//! the same key under the same `kid`.
//! Logs go to stderr (`RUST_LOG`, default `info,tower_stepup=debug`); they never hold a
//! token, a code or a secret.

mod app;

use std::error::Error;
use std::sync::Arc;

use tower_stepup::factor::TotpSecret;
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::SystemClock;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_stepup=debug")),
        )
        .init();

    let config = app::DemoConfig::from_env()?;
    if config.keys_were_random {
        tracing::warn!(
            "STEPUP_SIGNING_KEY / STEPUP_SEALING_KEY not set: random keys for this process; \
             set both (base64 of 32 random bytes) to run several instances"
        );
    }
    let (store, feed) = store(&config).await?;
    let demo = app::build(&config, SystemClock, store)?;
    #[cfg(feature = "redis")]
    if let Some(redis) = feed {
        // Sessions ended on another instance are refused here within about a second.
        redis.follow_revocations(&demo.guard);
    }
    #[cfg(not(feature = "redis"))]
    let _: Option<()> = feed;
    let listener = tokio::net::TcpListener::bind(&config.bind).await?;
    let base = format!("http://{}", listener.local_addr()?);
    print_instructions(&base, &config);
    let app = demo
        .router
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Redis, if the demo runs on it: the store whose revocation feed the guard follows.
#[cfg(feature = "redis")]
type Feed = tower_stepup::store::RedisStore;
#[cfg(not(feature = "redis"))]
type Feed = ();

/// The in-memory store, or Redis when `REDIS_URL` is set (several instances then share
/// single use, lockout, code replay, refresh families and ended sessions).
async fn store(config: &app::DemoConfig) -> Result<(Arc<dyn Store>, Option<Feed>), Box<dyn Error>> {
    let Some(url) = &config.redis_url else {
        return Ok((Arc::new(MemoryStore::new()), None));
    };
    #[cfg(feature = "redis")]
    {
        let store = tower_stepup::store::RedisStore::connect(url)
            .await
            .map_err(|e| format!("REDIS_URL is set, but Redis cannot be reached: {e}"))?;
        tracing::info!(prefix = store.prefix(), "store: redis");
        Ok((Arc::new(store.clone()), Some(store)))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err("REDIS_URL is set: run the demo with `--features redis`".into())
    }
}

fn print_instructions(base: &str, config: &app::DemoConfig) {
    // The secret is shown only when it is random for this run (a demo aid); one given in
    // STEPUP_ALICE_TOTP_SECRET stays out of the output, and the one-liner reads it from
    // the environment instead.
    let secret = if config.alice_secret_was_random {
        config.alice_totp_secret.to_base32()
    } else {
        "'\"$STEPUP_ALICE_TOTP_SECRET\"'".to_owned()
    };
    let json = "-H 'content-type: application/json'";
    let field = |name: &str| format!("sed -E 's/.*\"{name}\":\"([^\"]+)\".*/\\1/'");
    println!("tower-stepup demo listening on {base}");
    println!();
    // Browsers keep `Secure` cookies over plain http on `localhost` only.
    let browser = base.replace("127.0.0.1", "localhost");
    println!("In a browser: {browser}/login (cookie mode; pages for every step).");
    println!();
    println!(
        "Users: alice / alice-password (TOTP, or a code by email), bob / bob-password (no \
         second factor)."
    );
    if config.alice_secret_was_random {
        print_otpauth(&config.alice_totp_secret);
    }
    println!();
    println!("Try it (bash; each line sets a variable the next ones use):");
    println!();
    println!("  # 1. Password: alice gets a partial token, not a session");
    println!(
        "  PARTIAL=$(curl -s {base}/auth/login {json} -d '{{\"username\":\"alice\",\"password\":\"alice-password\"}}' | {})",
        field("partial_token")
    );
    println!("  # 2. The current TOTP code (or read it from your authenticator app)");
    println!(
        "  CODE=$(python3 -c 'import base64,hashlib,hmac,struct,time;k=base64.b32decode(\"{secret}\");d=hmac.new(k,struct.pack(\">Q\",int(time.time())//30),hashlib.sha1).digest();o=d[-1]&15;print(\"%06d\"%((struct.unpack(\">I\",d[o:o+4])[0]&0x7fffffff)%1000000))')"
    );
    println!(
        "  #    (or a code by email: POST /auth/mfa/send {{\"mfa_token\",\"channel\":\"email\"}}; \
         the demo's sender logs no code: with STEPUP_TEST_ROUTES=1, GET /test/last-code/alice)"
    );
    println!("  # 3. Second factor: a new session");
    println!(
        "  RESP=$(curl -s {base}/auth/mfa/verify {json} -d \"{{\\\"mfa_token\\\":\\\"$PARTIAL\\\",\\\"code\\\":\\\"$CODE\\\"}}\"); echo \"$RESP\""
    );
    println!(
        "  ACCESS=$(echo \"$RESP\" | {}); REFRESH=$(echo \"$RESP\" | {})",
        field("access_token"),
        field("refresh_token")
    );
    println!("  # 4. Authenticated and step-up routes: 200 and 200 (fresh MFA)");
    println!("  curl -s {base}/api/me -H \"authorization: Bearer $ACCESS\"");
    println!("  curl -s {base}/api/billing -H \"authorization: Bearer $ACCESS\"");
    println!(
        "  curl -s {base}/api/orders -H \"authorization: Bearer $ACCESS\"   # scope orders:read"
    );
    println!("  # The public keys that verify these tokens (Ed25519, kid = RFC 7638 thumbprint)");
    println!("  curl -s {base}/.well-known/jwks.json");
    println!("  # 5. bob has only a password: /api/billing answers 403 mfa_required + mfa_token");
    println!(
        "  BOB=$(curl -s {base}/auth/login {json} -d '{{\"username\":\"bob\",\"password\":\"bob-password\"}}' | {})",
        field("access_token")
    );
    println!("  curl -si {base}/api/billing -H \"authorization: Bearer $BOB\"");
    println!("  # 6. Refresh (rotates; the old refresh token is dead) and logout");
    println!(
        "  curl -s {base}/auth/refresh {json} -d \"{{\\\"refresh_token\\\":\\\"$REFRESH\\\"}}\""
    );
    println!(
        "  curl -si {base}/auth/logout {json} -H \"authorization: Bearer $ACCESS\" -d \"{{\\\"refresh_token\\\":\\\"$REFRESH\\\"}}\""
    );
    println!(
        "  # 7. Where you are signed in (end one: DELETE /auth/sessions/<id>, JSON content type)"
    );
    println!("  curl -s {base}/auth/sessions -H \"authorization: Bearer $ACCESS\"");
    println!();
    println!(
        "After {} s, /api/billing asks alice for a fresh code: verify the mfa_token it returns \
         as in step 3.",
        config.max_age_secs
    );
}

fn print_otpauth(secret: &TotpSecret) {
    // A demo aid: the secret is random for this process only and shown so a human can
    // add it to an authenticator app. A real deployment never prints it.
    let uri = tower_stepup::factor::totp::otpauth_uri(secret, "tower-stepup demo", "alice");
    println!("alice's TOTP secret is random for this run; add it to an authenticator app:");
    println!("  {uri}");
}
