//! The demo app, as a function, so the tests build the very same app (with a
//! clock they can set) that `cargo run --example axum_app` serves.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete_service, get, get_service, patch_service, post_service};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::Method;
use serde::Serialize;
use serde_json::{json, Value};
use tower_stepup::complete::{
    Account, Accounts, BackendError, BackendFuture, Completion, CookieConfig, LogSender,
    LoginThrottle, MemoryFactors, PeerAddr, TotpFactor, TrustedProxies,
};
use tower_stepup::dpop::DpopConfig;
use tower_stepup::factor::passkey::PasskeyConfig;
use tower_stepup::factor::stored::kind;
use tower_stepup::factor::{recovery, FactorData, StoredFactor, TotpSecret};
use tower_stepup::revocation::Revocations;
use tower_stepup::store::{AttemptPolicy, Store};
use tower_stepup::{
    Algorithm, Claims, Clock, ConfigError, Guard, Issuer, MfaRequirements, Policy, RouteTable,
    Sealer, SealingKey, SealingKeys, SigningKey, StepUp, TrustedIssuer, Verifier,
};

#[path = "web.rs"]
pub mod web;

pub const ISSUER: &str = "https://demo.tower-stepup.local";
pub const AUDIENCE: &str = "https://demo.tower-stepup.local/api";
/// Where the demo publishes its public keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The domain-separation label of the signing key's derivation (see [`signing_seed`]).
pub const SIGNING_KEY_LABEL: &[u8] = b"tower-stepup demo Ed25519 signing key v1\0";

/// The Ed25519 seed derived from `STEPUP_SIGNING_KEY`'s 32 bytes:
/// `SHA-256(SIGNING_KEY_LABEL || secret)`. The label keeps the signing key apart from
/// any other use of the same secret; every instance given the same secret derives the
/// same key.
pub fn signing_seed(secret: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(SIGNING_KEY_LABEL);
    hash.update(secret);
    hash.finalize().into()
}

/// The demo's signing key: Ed25519 from [`signing_seed`], its `kid` the key's RFC 7638
/// thumbprint, so replicas that share `STEPUP_SIGNING_KEY` publish and name one key.
pub fn signing_key(secret: &[u8; 32]) -> Result<SigningKey, ConfigError> {
    SigningKey::ed25519_from_seed("demo", &signing_seed(secret))?.with_thumbprint_kid()
}

/// Everything the environment configures (see `main.rs` for the variables).
pub struct DemoConfig {
    pub bind: String,
    pub alice_totp_secret: TotpSecret,
    pub alice_secret_was_random: bool,
    pub max_age_secs: u64,
    pub mfa_token_ttl_secs: u64,
    pub access_ttl_secs: u64,
    pub max_attempts: u32,
    pub signing_key: [u8; 32],
    pub sealing_key: [u8; 32],
    pub keys_were_random: bool,
    pub redis_url: Option<String>,
    pub login_max_failures: u32,
    pub login_account_max_failures: u32,
    pub trusted_proxies: TrustedProxies,
    /// `STEPUP_SESSION_IDLE_SECS`: a session ends after this long without a refresh or
    /// step-up (default 24 h).
    pub session_idle_secs: u64,
    /// `STEPUP_IDP_*`: an identity provider whose access tokens `/api/*` also accepts.
    pub idp: Option<IdpConfig>,
    /// With a shared store (`REDIS_URL`): the replica follows the store's revocation
    /// feed and answers 503 on authenticated routes after this many seconds without it
    /// (`STEPUP_REVOCATION_STALENESS_SECS`, default 60). `None`: one process.
    pub revocation_staleness_secs: Option<u64>,
    /// `STEPUP_WEBAUTHN_RP_ID`: the passkeys' relying party (default `localhost`).
    pub webauthn_rp_id: String,
    /// `STEPUP_WEBAUTHN_ORIGIN`: the origin the browser signs passkey ceremonies for
    /// (default `http://localhost:<the port of STEPUP_BIND>`).
    pub webauthn_origin: String,
    /// `STEPUP_ALLOW_ACCOUNTS_WITHOUT_MFA` (`true` or `1`): a user may remove their last
    /// second factor (default: `409 last_factor`).
    pub allow_accounts_without_mfa: bool,
    /// `STEPUP_PUBLIC_URL`: the URL API clients reach the demo at, which DPoP proofs'
    /// `htu` must name (default `http://<STEPUP_BIND>`).
    pub public_url: String,
    /// `STEPUP_TEST_ROUTES=1`: mounts `GET /test/last-code/{user}`, the last one-time
    /// code the log sender was given for a user. For tests only: it passes the second
    /// factor for anyone who can reach it.
    pub test_routes: bool,
}

/// An identity provider the demo trusts (DESIGN §8.1): its `iss` and where its keys are.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
pub struct IdpConfig {
    /// `STEPUP_IDP_ISSUER`.
    pub issuer: String,
    /// `STEPUP_IDP_JWKS_URL`, or `STEPUP_IDP_DISCOVERY_URL` (its `jwks_uri`).
    pub keys: IdpKeys,
}

/// Where an identity provider's keys are.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
pub enum IdpKeys {
    /// A JWKS URL.
    Jwks(String),
    /// The issuer's OpenID Connect discovery document (`{issuer}/.well-known/
    /// openid-configuration`: its `issuer` checked, then its `jwks_uri`).
    Discovery,
}

/// The discovery document of `issuer` (OpenID Connect Discovery §4).
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

impl IdpConfig {
    /// `STEPUP_IDP_ISSUER` with `STEPUP_IDP_JWKS_URL` or `STEPUP_IDP_DISCOVERY_URL`;
    /// `None` without an issuer.
    fn from_env() -> Result<Option<Self>, Box<dyn Error>> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let Some(issuer) = var("STEPUP_IDP_ISSUER") else {
            return Ok(None);
        };
        let keys = match (var("STEPUP_IDP_JWKS_URL"), var("STEPUP_IDP_DISCOVERY_URL")) {
            (Some(url), None) => IdpKeys::Jwks(url),
            (None, Some(url)) if url == discovery_url(&issuer) => IdpKeys::Discovery,
            (None, Some(_)) => {
                return Err(format!(
                    "STEPUP_IDP_DISCOVERY_URL must be the issuer's {}",
                    discovery_url(&issuer)
                )
                .into())
            }
            _ => {
                return Err("STEPUP_IDP_ISSUER needs one of STEPUP_IDP_JWKS_URL and \
                    STEPUP_IDP_DISCOVERY_URL"
                    .into())
            }
        };
        Ok(Some(Self { issuer, keys }))
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a number").into()),
        Err(_) => Ok(default),
    }
}

fn env_key(name: &str) -> Result<Option<[u8; 32]>, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(v) => {
            let bytes = STANDARD
                .decode(v.trim())
                .map_err(|_| format!("{name} must be standard base64"))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("{name} must decode to 32 bytes"))?;
            Ok(Some(key))
        }
        Err(_) => Ok(None),
    }
}

fn random_key() -> Result<[u8; 32], Box<dyn Error>> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
    Ok(key)
}

/// The port of a `host:port` address (`80` if it names none).
fn port_of(bind: &str) -> &str {
    bind.rsplit_once(':').map_or("80", |(_, port)| port)
}

impl DemoConfig {
    /// Reads `STEPUP_*` and `REDIS_URL`.
    pub fn from_env() -> Result<Self, Box<dyn Error>> {
        let (alice_totp_secret, alice_secret_was_random) =
            match std::env::var("STEPUP_ALICE_TOTP_SECRET") {
                Ok(b32) => (TotpSecret::from_base32(&b32)?, false),
                Err(_) => (TotpSecret::generate()?, true),
            };
        let signing = env_key("STEPUP_SIGNING_KEY")?;
        let sealing = env_key("STEPUP_SEALING_KEY")?;
        let keys_were_random = signing.is_none() || sealing.is_none();
        let bind = std::env::var("STEPUP_BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
        Ok(Self {
            alice_totp_secret,
            alice_secret_was_random,
            max_age_secs: env_num("STEPUP_MAX_AGE_SECS", 300)?,
            mfa_token_ttl_secs: env_num("STEPUP_MFA_TOKEN_TTL_SECS", 300)?,
            access_ttl_secs: env_num("STEPUP_ACCESS_TTL_SECS", 900)?,
            max_attempts: env_num("STEPUP_MAX_ATTEMPTS", 5)?,
            signing_key: match signing {
                Some(k) => k,
                None => random_key()?,
            },
            sealing_key: match sealing {
                Some(k) => k,
                None => random_key()?,
            },
            keys_were_random,
            redis_url: std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()),
            login_max_failures: env_num("STEPUP_LOGIN_MAX_FAILURES", 10)?,
            login_account_max_failures: env_num("STEPUP_LOGIN_ACCOUNT_MAX_FAILURES", 100)?,
            trusted_proxies: TrustedProxies::parse(
                &std::env::var("STEPUP_TRUSTED_PROXIES").unwrap_or_default(),
            )?,
            session_idle_secs: env_num("STEPUP_SESSION_IDLE_SECS", 24 * 3600)?,
            webauthn_rp_id: std::env::var("STEPUP_WEBAUTHN_RP_ID")
                .unwrap_or_else(|_| "localhost".to_owned()),
            webauthn_origin: match std::env::var("STEPUP_WEBAUTHN_ORIGIN") {
                Ok(origin) => origin,
                Err(_) => format!("http://localhost:{}", port_of(&bind)),
            },
            public_url: match std::env::var("STEPUP_PUBLIC_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => format!("http://{bind}"),
            },
            bind,
            idp: IdpConfig::from_env()?,
            revocation_staleness_secs: match std::env::var("REDIS_URL") {
                Ok(url) if !url.is_empty() => {
                    Some(env_num("STEPUP_REVOCATION_STALENESS_SECS", 60)?)
                }
                _ => None,
            },
            allow_accounts_without_mfa: matches!(
                std::env::var("STEPUP_ALLOW_ACCOUNTS_WITHOUT_MFA").as_deref(),
                Ok("true" | "1")
            ),
            test_routes: std::env::var("STEPUP_TEST_ROUTES").is_ok_and(|v| v == "1"),
        })
    }
}

/// alice and bob, with argon2id password hashes; unknown users are checked against a
/// dummy hash so they take as long as a wrong password.
struct DemoAccounts {
    users: HashMap<String, (String, Account)>,
    dummy: String,
}

fn hash_password(password: &str) -> Result<String, Box<dyn Error>> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| format!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("argon2: {e}"))?
        .to_string())
}

impl DemoAccounts {
    fn new() -> Result<Self, Box<dyn Error>> {
        let mut users = HashMap::new();
        for (name, password, scope) in [
            ("alice", "alice-password", "me billing:read orders:read"),
            ("bob", "bob-password", "me billing:read orders:read"),
        ] {
            users.insert(
                name.to_owned(),
                (
                    hash_password(password)?,
                    Account::new(name).with_scope(scope),
                ),
            );
        }
        Ok(Self {
            users,
            dummy: hash_password("no-such-user-dummy-password")?,
        })
    }
}

impl Accounts for DemoAccounts {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BackendFuture<'a, Option<Account>> {
        let (hash, account) = match self.users.get(username) {
            Some((hash, account)) => (hash.clone(), Some(account.clone())),
            None => (self.dummy.clone(), None),
        };
        let password = password.to_owned();
        Box::pin(async move {
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
            .map_err(|e| BackendError(format!("password check failed: {e}")))?;
            Ok(if ok { account } else { None })
        })
    }
}

/// The pieces a test may want to reach (the binary uses only the router).
#[allow(dead_code)]
pub struct Demo {
    pub router: Router,
    pub completion: Completion,
    pub factors: Arc<MemoryFactors>,
    pub guard: Guard,
    pub issuer: Issuer,
    /// Where the one-time codes go: the log (and, for the test route, memory).
    pub sender: Arc<LogSender>,
}

/// The identity provider of `STEPUP_IDP_*` (DESIGN §8.1): access tokens for the demo's
/// audience, `typ` `at+jwt`, `JWT` or none, RS256, ES256 or EdDSA, keys fetched in the
/// background (5 s timeout). Its step-ups are delegated to it; `/auth/*` serves the
/// demo's own users only.
#[cfg(feature = "jwks")]
fn trusted_idp(idp: &IdpConfig) -> Result<TrustedIssuer, Box<dyn Error>> {
    use tower_stepup::jwks::JwksSource;
    let algorithms = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
    let source = match &idp.keys {
        IdpKeys::Jwks(url) => JwksSource::builder(url.clone()),
        IdpKeys::Discovery => JwksSource::discover(idp.issuer.clone()),
    };
    let source = source
        .algorithms(algorithms)
        .timeout(Duration::from_secs(5))
        .build()?;
    Ok(TrustedIssuer::new(idp.issuer.clone())
        .audience(AUDIENCE)
        .algorithms(algorithms)
        .allow_typ_jwt()
        .allow_missing_typ()
        .key_source(source))
}

/// Without feature `jwks` there is no key fetcher: say how to get one.
#[cfg(not(feature = "jwks"))]
fn trusted_idp(_: &IdpConfig) -> Result<TrustedIssuer, Box<dyn Error>> {
    Err("STEPUP_IDP_ISSUER needs the key fetcher: run with --features jwks".into())
}

/// Builds the demo app on `clock`, keeping its shared state in `store`.
pub fn build<C: Clock + Clone>(
    config: &DemoConfig,
    clock: C,
    store: Arc<dyn Store>,
) -> Result<Demo, Box<dyn Error>> {
    let issuer = Issuer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .signing_key(signing_key(&config.signing_key)?)
        .access_ttl(Duration::from_secs(config.access_ttl_secs))
        .partial_ttl(Duration::from_secs(config.mfa_token_ttl_secs))
        .clock(clock.clone())
        .build()?;
    // The verifier reads the issuer's keys as they are: a rotation (`issuer.rotate`)
    // reaches it with no further call.
    let mut verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms([Algorithm::EdDSA])
        .key_source(issuer.verifying_keys());
    if let Some(idp) = &config.idp {
        verifier = verifier.trust(trusted_idp(idp)?);
    }
    let verifier = verifier.build()?;
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new(
        "demo-1",
        config.sealing_key,
    )?))?;
    let factors = Arc::new(MemoryFactors::new());
    let (_, alice_recovery) = recovery::generate()?;
    factors.insert(
        "alice",
        TotpFactor::new(config.alice_totp_secret.clone(), alice_recovery),
    );
    // alice can also be sent a code by email (to the log: `LogSender`). A real
    // application adds an address once the user has proved it theirs
    // (`Completion::add_code_factor`).
    let email = FactorData::new(b"alice@example.com".to_vec());
    factors.add(
        "alice",
        StoredFactor::new(kind::EMAIL, email, 0)?.named(Some("email".to_owned())),
    );
    let sender = Arc::new(LogSender::new());
    let enrolled = factors.clone();
    // Browsers get the tokens as HttpOnly cookies (`__Host-`/`__Secure-`, which browsers
    // accept over plain http on localhost only); API clients send `Authorization`.
    let cookies = CookieConfig::new();
    // API clients may bind their tokens to a key (DPoP, RFC 9449): proofs are checked
    // against the public URL, and each proof's jti is used once in the shared store.
    // Browsers stay in cookie mode, with bearer tokens.
    let guard = Guard::builder()
        .dpop(
            DpopConfig::default(),
            config.public_url.clone(),
            Arc::clone(&store),
        )
        .cookie(cookies.session_name())
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock)
        .realm("tower-stepup demo")
        .mfa_token_ttl(Duration::from_secs(config.mfa_token_ttl_secs))
        .revocations(match config.revocation_staleness_secs {
            Some(secs) => Revocations::fed(Duration::from_secs(secs)),
            None => Revocations::new(),
        })
        // Each type of factor the user has (recovery codes are the fallback of every
        // challenge); a challenge for /api/admin keeps only the phishing-resistant ones.
        .mfa_requirements(move |claims| {
            let types: Vec<&str> = ["passkey", "otp", "email", "sms"]
                .into_iter()
                .filter(|t| {
                    enrolled
                        .kinds(claims.sub())
                        .iter()
                        .any(|k| kind_type(k) == *t)
                })
                .collect();
            if types.is_empty() {
                MfaRequirements::enroll(["otp"])
            } else {
                MfaRequirements::challenge(types)
            }
        })
        .build()?;
    let max_age = Duration::from_secs(config.max_age_secs);
    let completion = Completion::builder()
        .guard(guard.clone())
        .issuer(issuer.clone())
        .shared_store(store)
        .accounts(DemoAccounts::new()?)
        .factors(factors.clone())
        .attempts(AttemptPolicy {
            max_attempts: config.max_attempts,
            ..AttemptPolicy::default()
        })
        .totp_issuer("tower-stepup demo")
        .cookies(cookies)
        // "Remember this browser" on the code form: 30 days, password-only sessions.
        .remember_device(tower_stepup::complete::MAX_REMEMBER_DEVICE)
        .session_idle_timeout(Duration::from_secs(config.session_idle_secs))
        .enroll_step_up(StepUp::new().amr(["mfa"]).max_age(max_age))
        .passkeys(PasskeyConfig::new(
            &config.webauthn_rp_id,
            &config.webauthn_origin,
            "tower-stepup demo",
        )?)
        .allow_accounts_without_mfa(config.allow_accounts_without_mfa)
        .code_sender(sender.clone())
        .login_throttle(
            LoginThrottle::new()
                .per_client(config.login_max_failures, Duration::from_secs(15 * 60))
                .per_account(config.login_account_max_failures, Duration::from_secs(3600))
                .trusted_proxies(config.trusted_proxies.clone()),
        )
        .build()?;

    // The demo's own users: an identity provider's `alice` is not the demo's alice.
    let own_users = Policy::authenticated().issuers([ISSUER]);
    let policies = RouteTable::new()
        .route(Method::GET, "/healthz", Policy::public())
        .route(Method::GET, JWKS_PATH, Policy::public())
        .route(Method::GET, "/api/me", Policy::authenticated())
        .route(
            Method::GET,
            "/api/orders",
            Policy::authenticated().scopes(["orders:read"]),
        )
        .route(
            Method::GET,
            "/api/billing",
            Policy::step_up(StepUp::new().amr(["mfa"]).max_age(max_age)),
        )
        .route(
            Method::GET,
            "/api/admin",
            Policy::step_up(StepUp::phishing_resistant().max_age(max_age)),
        )
        .route(Method::POST, "/auth/login", Policy::public())
        .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify())
        .route(
            Method::POST,
            "/auth/passkey/challenge",
            Policy::mfa_verify(),
        )
        .route(
            Method::POST,
            "/auth/passkey/register/start",
            own_users.clone(),
        )
        .route(
            Method::POST,
            "/auth/passkey/register/finish",
            own_users.clone(),
        )
        .route(Method::POST, "/auth/mfa/send", Policy::mfa_verify())
        .route(Method::POST, "/auth/mfa/enroll", own_users.clone())
        .route(Method::POST, "/auth/mfa/enroll/confirm", own_users.clone())
        .route(Method::POST, "/auth/refresh", Policy::public())
        .route(Method::POST, "/auth/logout", own_users.clone())
        .route(Method::GET, "/auth/sessions", own_users.clone())
        .route(Method::DELETE, "/auth/sessions/{id}", own_users.clone())
        .route(Method::DELETE, "/auth/devices/{id}", own_users.clone())
        .route(Method::GET, "/auth/factors", own_users.clone())
        .route(Method::PATCH, "/auth/factors/{id}", own_users.clone())
        .route(Method::DELETE, "/auth/factors/{id}", own_users.clone())
        .route(Method::POST, "/auth/mfa/recovery-codes", own_users);
    let policies = web::PAGES.iter().fold(policies, |table, page| {
        table.route(Method::GET, page, Policy::public())
    });
    let policies = match config.test_routes {
        true => policies.route(Method::GET, LAST_CODE_PATH, Policy::public()),
        false => policies,
    };

    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route_service(JWKS_PATH, issuer.jwks_service())
        .route("/api/me", get(me))
        .route("/api/orders", get(orders))
        .route("/api/billing", get(billing))
        .route("/api/admin", get(admin))
        .route(
            "/auth/passkey/register/start",
            post_service(completion.passkey_register_start()),
        )
        .route(
            "/auth/passkey/register/finish",
            post_service(completion.passkey_register_finish()),
        )
        .route(
            "/auth/passkey/challenge",
            post_service(completion.passkey_challenge()),
        )
        .route("/auth/login", post_service(completion.login()))
        .route("/auth/mfa/verify", post_service(completion.verify()))
        .route("/auth/mfa/send", post_service(completion.send_code()))
        .route("/auth/mfa/enroll", post_service(completion.enroll()))
        .route(
            "/auth/mfa/enroll/confirm",
            post_service(completion.enroll_confirm()),
        )
        .route("/auth/refresh", post_service(completion.refresh()))
        .route("/auth/logout", post_service(completion.logout()))
        .route("/auth/sessions", get_service(completion.sessions()))
        .route(
            "/auth/sessions/{id}",
            delete_service(completion.end_session()),
        )
        .route(
            "/auth/devices/{id}",
            delete_service(completion.end_device()),
        )
        .route("/auth/factors", get_service(completion.factors()))
        .route(
            "/auth/factors/{id}",
            patch_service(completion.rename_factor()).delete_service(completion.remove_factor()),
        )
        .route(
            "/auth/mfa/recovery-codes",
            post_service(completion.regenerate_recovery_codes()),
        );
    let router = match config.test_routes {
        true => router.route(
            LAST_CODE_PATH,
            get(last_code).layer(Extension(sender.clone())),
        ),
        false => router,
    };
    let router = router
        .merge(web::router())
        .fallback(web::not_found)
        .method_not_allowed_fallback(web::method_not_allowed)
        .layer(guard.route_table(policies)?)
        .layer(axum::middleware::from_fn(web::same_origin_writes))
        .layer(axum::middleware::map_request(peer_addr));
    Ok(Demo {
        router,
        completion,
        factors,
        guard,
        issuer,
        sender,
    })
}

/// The test-only route of `STEPUP_TEST_ROUTES=1`.
pub const LAST_CODE_PATH: &str = "/test/last-code/{user}";

/// `GET /test/last-code/{user}` → `{"code"}`: the last one-time code sent to `user`, or
/// `404`. Mounted only with `STEPUP_TEST_ROUTES=1`.
async fn last_code(
    Extension(sender): Extension<Arc<LogSender>>,
    axum::extract::Path(user): axum::extract::Path<String>,
) -> Response {
    match sender.last_code(&user) {
        Some(code) => Json(json!({ "code": code.as_str() })).into_response(),
        None => (
            http::StatusCode::NOT_FOUND,
            Json(json!({ "error": "not_found" })),
        )
            .into_response(),
    }
}

/// The socket's peer address, for login throttling: axum's `ConnectInfo` (present when
/// served with `into_make_service_with_connect_info`) as the crate's `PeerAddr`.
async fn peer_addr(mut req: axum::extract::Request) -> axum::extract::Request {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| PeerAddr(info.0));
    if let Some(peer) = peer {
        req.extensions_mut().insert(peer);
    }
    req
}

// The layer puts the verified claims in the request extensions; `Extension` reads them
// (with the crate's `axum` feature, `Claims` itself is an extractor too).
// A typed body that borrows from the claims: serialized straight into the response,
// with no intermediate `serde_json::Value`.
async fn me(Extension(claims): Extension<Claims>) -> Response {
    #[derive(Serialize)]
    struct Me<'a> {
        sub: &'a str,
        sid: Option<&'a str>,
        scope: Option<&'a str>,
        acr: Option<&'a str>,
        amr: &'a [String],
        auth_time: Option<u64>,
    }
    Json(Me {
        sub: claims.sub(),
        sid: claims.sid(),
        scope: claims.scope(),
        acr: claims.acr(),
        amr: claims.amr(),
        auth_time: claims.auth_time(),
    })
    .into_response()
}

async fn orders(Extension(claims): Extension<Claims>) -> Json<Value> {
    Json(json!({
        "sub": claims.sub(),
        "orders": [
            {"id": "ORD-2001", "item": "keyboard", "status": "shipped"},
            {"id": "ORD-2002", "item": "security key", "status": "processing"},
        ],
    }))
}

/// `GET /api/admin`: behind a phishing-resistant step-up (a passkey, recently).
async fn admin(Extension(claims): Extension<Claims>) -> Json<Value> {
    Json(json!({
        "sub": claims.sub(),
        "acr": claims.acr(),
        "admin": true,
    }))
}

/// The `mfa_requirements` type of a stored factor kind.
fn kind_type(kind: &str) -> &str {
    tower_stepup::factor::stored::kind::requirement(kind).unwrap_or(kind)
}

async fn billing(Extension(claims): Extension<Claims>) -> Json<Value> {
    Json(json!({
        "sub": claims.sub(),
        "invoices": [
            {"id": "INV-1001", "amount": "42.00", "currency": "EUR"},
            {"id": "INV-1002", "amount": "17.50", "currency": "EUR"},
        ],
    }))
}
