//! The hyper demo as functions, so the tests serve the very same app (on a clock they
//! set) that `cargo run --example hyper_app` serves.

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tower::{Layer, Service};
use tower_stepup::complete::{
    Account, Accounts, BackendError, BackendFuture, Completion, Endpoint, EndpointFuture,
    MemoryFactors, TotpFactor,
};
use tower_stepup::factor::TotpSecret;
use tower_stepup::store::MemoryStore;
use tower_stepup::{
    Algorithm, Claims, Clock, Guard, Issuer, MfaRequirements, Policy, RouteTable, Sealer,
    SealingKey, SealingKeys, SigningKey, StepUp, StepUpService, Verifier, VerifyingKey,
};

const ISSUER: &str = "https://hyper-demo.tower-stepup.local";
const AUDIENCE: &str = "https://hyper-demo.tower-stepup.local/api";

/// What the environment configures.
pub struct Config {
    pub bind: String,
    pub alice_totp_secret: TotpSecret,
    pub alice_secret_was_random: bool,
    pub max_age_secs: u64,
    pub signing_key: [u8; 32],
    pub sealing_key: [u8; 32],
    pub keys_were_random: bool,
}

impl Config {
    /// `STEPUP_BIND`, `STEPUP_ALICE_TOTP_SECRET`, `STEPUP_MAX_AGE_SECS`,
    /// `STEPUP_SIGNING_KEY`, `STEPUP_SEALING_KEY` (base64 of 32 bytes); all optional.
    pub fn from_env() -> Result<Self, Box<dyn Error>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let key = |name: &str| -> Result<Option<[u8; 32]>, Box<dyn Error>> {
            let Some(b64) = var(name) else {
                return Ok(None);
            };
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|_| format!("{name}: not base64"))?;
            Ok(Some(
                bytes
                    .try_into()
                    .map_err(|_| format!("{name}: not 32 bytes"))?,
            ))
        };
        let (signing, sealing) = (key("STEPUP_SIGNING_KEY")?, key("STEPUP_SEALING_KEY")?);
        let (alice_totp_secret, alice_secret_was_random) = match var("STEPUP_ALICE_TOTP_SECRET") {
            Some(b32) => (TotpSecret::from_base32(&b32)?, false),
            None => (TotpSecret::generate()?, true),
        };
        Ok(Self {
            bind: var("STEPUP_BIND").unwrap_or_else(|| "127.0.0.1:3001".to_owned()),
            alice_totp_secret,
            alice_secret_was_random,
            max_age_secs: match var("STEPUP_MAX_AGE_SECS") {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| "STEPUP_MAX_AGE_SECS: not a number")?,
                None => 300,
            },
            keys_were_random: signing.is_none() || sealing.is_none(),
            signing_key: signing.map_or_else(random_key, Ok)?,
            sealing_key: sealing.map_or_else(random_key, Ok)?,
        })
    }
}

fn random_key() -> Result<[u8; 32], Box<dyn Error>> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
    Ok(key)
}

/// alice and bob with argon2id hashes; an unknown user is checked against a dummy hash,
/// so it takes as long as a wrong password.
struct Users {
    hashes: HashMap<&'static str, String>,
    dummy: String,
}

fn hash(password: &str) -> Result<String, Box<dyn Error>> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    let hash = Argon2::default().hash_password(password.as_bytes(), &salt);
    Ok(hash.map_err(|e| format!("argon2: {e}"))?.to_string())
}

impl Accounts for Users {
    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> BackendFuture<'a, Option<Account>> {
        let known = self.hashes.get(user);
        let phc = known.unwrap_or(&self.dummy).clone();
        let (account, password) = (known.map(|_| Account::new(user)), password.to_owned());
        Box::pin(async move {
            // Argon2 is slow on purpose: off the async workers.
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&phc).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
            .map_err(|e| BackendError(format!("password check failed: {e}")))?;
            Ok(account.filter(|_| ok))
        })
    }
}

/// The whole app: the router behind one route-table layer.
pub type App = StepUpService<Router>;

/// Builds the app on `clock` (`SystemClock` in the binary, a `ManualClock` in tests).
pub fn build(config: &Config, clock: impl Clock + Clone) -> Result<App, Box<dyn Error>> {
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac(
            "k1",
            Algorithm::HS256,
            &config.signing_key,
        )?)
        .build()?;
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s1", config.sealing_key)?))?;
    let factors = Arc::new(MemoryFactors::new());
    factors.insert(
        "alice",
        TotpFactor::new(config.alice_totp_secret.clone(), Vec::new()),
    );
    let enrolled = factors.clone();
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock.clone())
        .realm("tower-stepup hyper demo")
        // bob has no factor: his step-up answer says "enroll", not "challenge".
        .mfa_requirements(move |claims| {
            if enrolled.contains(claims.sub()) {
                MfaRequirements::challenge(["otp"])
            } else {
                MfaRequirements::enroll(["otp"])
            }
        })
        .build()?;
    let issuer = Issuer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .signing_key(SigningKey::hmac(
            "k1",
            Algorithm::HS256,
            &config.signing_key,
        )?)
        .clock(clock)
        .build()?;
    let users = Users {
        hashes: HashMap::from([
            ("alice", hash("alice-password")?),
            ("bob", hash("bob-password")?),
        ]),
        dummy: hash("dummy-password-for-unknown-users")?,
    };
    let completion = Completion::builder()
        .guard(guard.clone())
        .issuer(issuer)
        .store(MemoryStore::new())
        .accounts(users)
        .factors(factors)
        .build()?;

    let max_age = Duration::from_secs(config.max_age_secs);
    let table = RouteTable::new()
        .route(Method::GET, "/healthz", Policy::public())
        .route(Method::GET, "/api/me", Policy::authenticated())
        .route(
            Method::GET,
            "/api/billing",
            Policy::step_up(StepUp::new().amr(["mfa"]).max_age(max_age)),
        )
        .route(Method::POST, "/auth/login", Policy::public())
        .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify());
    let router = Router {
        login: completion.login(),
        verify: completion.verify(),
    };
    Ok(guard.route_table(table)?.layer(router))
}

/// Serves `app` on `listener`: one task per connection, HTTP/1.1 or HTTP/2 (prior
/// knowledge), whichever the client speaks.
pub async fn serve(listener: tokio::net::TcpListener, app: App) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}"); // e.g. out of file descriptors: wait, retry
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            // A client that goes away mid-request ends its connection; nothing to do.
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Method + path → handler. Every answer has the completion endpoints' body type,
/// `Full<Bytes>`, so the layer's body is `ResponseBody<Full<Bytes>>` and hyper takes it as is.
#[derive(Clone)]
pub struct Router {
    login: Endpoint,
    verify: Endpoint,
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Ready when both endpoints are (they always are).
        ready!(Service::<Request<Incoming>>::poll_ready(
            &mut self.login,
            cx
        ))?;
        Service::<Request<Incoming>>::poll_ready(&mut self.verify, cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> EndpointFuture {
        // The layer put the verified claims of the access token in the extensions.
        let claims = req.extensions().get::<Claims>();
        let response = match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => {
                json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/api/me") => json(StatusCode::OK, &claims),
            (&Method::GET, "/api/billing") => json(
                StatusCode::OK,
                &serde_json::json!({
                    "sub": claims.map(Claims::sub),
                    "invoices": [{"id": "INV-1001", "amount": "42.00", "currency": "EUR"}],
                }),
            ),
            (&Method::POST, "/auth/login") => return self.login.call(req),
            (&Method::POST, "/auth/mfa/verify") => return self.verify.call(req),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
            ),
        };
        Box::pin(std::future::ready(Ok(response)))
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let content_type = header::HeaderValue::from_static("application/json");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}
