//! Multi-factor authentication and per-route step-up authorization for any
//! [tower](https://docs.rs/tower) service: axum, hyper, tonic.
//!
//! "Password OK" does not mean "logged in": after the first factor a user holds a
//! *partial token* that opens exactly one door, the verify endpoint. And a sensitive route
//! can demand a fresh second factor: the layer answers `403 mfa_required` with an
//! encrypted, short-lived `mfa_token` and an RFC 9470 `WWW-Authenticate` challenge.
//!
//! ```
//! use std::time::Duration;
//! use http::{Method, Request, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_stepup::{
//!     Algorithm, Grant, Guard, Issuer, Policy, RouteTable, SealingKey, SigningKey, StepUp,
//!     Verifier, VerifyingKey,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = [7u8; 32]; // use real key material
//! let verifier = Verifier::builder()
//!     .issuer("https://auth.example")
//!     .audience("https://api.example")
//!     .algorithms([Algorithm::HS256])
//!     .key(VerifyingKey::hmac("k1", Algorithm::HS256, &secret)?)
//!     .build()?;
//! let guard = Guard::builder()
//!     .verifier(verifier)
//!     .sealing_key(SealingKey::generate("s1")?)
//!     .build()?;
//!
//! let routes = RouteTable::new()
//!     .route(Method::GET, "/healthz", Policy::public())
//!     .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify())
//!     .route(Method::GET, "/api/me", Policy::authenticated())
//!     .route(
//!         Method::GET,
//!         "/api/billing",
//!         Policy::step_up(StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))),
//!     );
//! let app = ServiceBuilder::new()
//!     .layer(guard.route_table(routes)?)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
//!     }));
//!
//! // A password-only access token, as the login endpoint would issue it.
//! let issuer = Issuer::builder()
//!     .issuer("https://auth.example")
//!     .audience("https://api.example")
//!     .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &secret)?)
//!     .build()?;
//! let token = issuer.issue_access(&Grant::new("alice").amr(["pwd"]))?.token;
//! let get = |path: &str| {
//!     Request::get(path)
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(String::new())
//!         .unwrap()
//! };
//!
//! // Allowed: authenticated is enough for /api/me.
//! let res = app.clone().oneshot(get("/api/me")).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // Denied: /api/billing wants a second factor; the answer carries an mfa_token.
//! let res = app.clone().oneshot(get("/api/billing")).await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert!(res.headers()["www-authenticate"]
//!     .to_str()?
//!     .starts_with(r#"Bearer error="insufficient_user_authentication""#));
//! # Ok(())
//! # }
//! ```
//!
//! # How a request is decided
//! credential (`Authorization: Bearer`, or a cookie) → verification ([`Verifier`]) →
//! classification (anonymous, partial, authenticated, expired) → the route's [`Policy`] →
//! pass with the [`Claims`] in the request extensions, or one row of
//! [`DENIAL_TABLE`](challenge::DENIAL_TABLE):
//!
//! | situation | status | `error` | `WWW-Authenticate` |
//! | --- | --- | --- | --- |
//! | no credential on a protected route | 401 | `unauthorized` | `Bearer realm="…"` |
//! | bad / wrong-type token | 401 | `invalid_token` | `Bearer error="invalid_token", error_description="…"` |
//! | expired token (the body also says `"token_expired": true`: refresh it) | 401 | `invalid_token` | `Bearer error="invalid_token", error_description="the access token has expired"` |
//! | partial token outside the verify endpoint | 401 | `mfa_incomplete` | `Bearer error="invalid_token", error_description="…"` |
//! | missing scope | 403 | `insufficient_scope` | `Bearer error="insufficient_scope", scope="…"` |
//! | route needs step-up (the body also carries `mfa_token`, `mfa_requirements` and `expires_in`, the mfa_token's lifetime in seconds, [`GuardBuilder::mfa_token_ttl`](layer::GuardBuilder::mfa_token_ttl)) | 403 (or 401, [`GuardBuilder::strict_rfc9470_status`](layer::GuardBuilder::strict_rfc9470_status)) | `mfa_required` | `Bearer error="insufficient_user_authentication", error_description="…", acr_values="…", max_age=…` |
//! | step-up route whose path is too long to bind into an mfa_token (over ~2.5 KiB) | 414 | `invalid_request` | none |
//! | the layer cannot decide (no randomness to seal an mfa_token) | 500 | `server_error` | none |
//!
//! The reason is also in the response extensions as a [`Denial`]. Every body is JSON with
//! `error` and `error_description`; only an expired access token's has `token_expired`
//! (the `error` stays `invalid_token`), only a step-up's has `expires_in`. To answer
//! differently (problem+json, a redirect to a login page), give the guard a
//! [`rejection`](layer::GuardBuilder::rejection) hook: it receives the [`Denial`].
//!
//! A gRPC request (a `POST` with `content-type: application/grpc…`) gets the same
//! decision as a gRPC Trailers-Only response: HTTP 200, `Cache-Control: no-store`,
//! `grpc-status` 16 `UNAUTHENTICATED` for the 401 rows, 7 `PERMISSION_DENIED` for the
//! 403 rows (3 and 13 for the last two), with `grpc-message`, and as metadata
//! `www-authenticate`, `mfa-token` and the JSON body as `stepup-details`
//! ([`DenialRow::grpc_status`](challenge::DenialRow::grpc_status)). Any other method
//! with a gRPC content type gets the HTTP denial above.
//!
//! # Modules
//! The lean core, always compiled:
//! - [`token`]: claims, verification (keys by `kid`, algorithm allow-list, `typ`), issuing.
//! - [`policy`]: [`Policy`], [`StepUp`], [`RouteTable`].
//! - [`layer`]: [`Guard`], [`StepUpLayer`], [`StepUpService`].
//! - [`challenge`]: the sealed `mfa_token` and the denial responses.
//! - [`revocation`]: the ended sessions whose access tokens the layer refuses.
//! - [`audit`]: one structured `tracing` event per security decision, and counters.
//! - [`wire`]: the `error` codes on the wire, one enum for the server and the client.
//! - [`dpop`]: DPoP proofs (RFC 9449): the stateless check of a `DPoP` header and the
//!   RFC 7638 key thumbprint.
//!
//! The completion side (feature `server`, on by default):
//! - `complete`: the mountable endpoints that complete MFA: login, verify, enroll,
//!   refresh, logout.
//! - `factor`: TOTP and recovery codes.
//! - `store`: the shared, atomic state (single use, attempts, refresh families) and the
//!   in-memory store.
//!
//! The client side (feature `client`): `flow`, the authentication flow as a typed state
//! machine, and `client`, which drives it against a server.
//!
//! # Feature flags
//! - `server` (default): the completion side above (TOTP, QR codes, the stores, the
//!   endpoints). An API that only checks the tokens of an identity provider turns it off:
//!   `tower-stepup = { version = "0.1", default-features = false, features = ["aws-lc-rs"] }`.
//! - `aws-lc-rs` (default): signatures checked with aws-lc-rs.
//! - `rust-crypto`: signatures checked with the pure-Rust RustCrypto crates. Enable it with
//!   `default-features = false`; with both enabled, aws-lc-rs is used. One of the two is
//!   needed.
//! - `axum`: [`Claims`] as an axum extractor (module `axum`).
//! - `tonic`: the layer's service keeps the wrapped service's gRPC `NamedService` name;
//!   the gRPC verify client, and with `server` the gRPC verify service (module `tonic`).
//!   gRPC-aware denials need no feature: any `POST` with `content-type:
//!   application/grpc…` gets them.
//! - `redis` (implies `server`): `store::RedisStore`, a store shared by several replicas.
//! - `client`: `client::AuthClient`, which drives the `flow` against a server, and
//!   `client::AuthLayer`, which completes step-up challenges for your API calls.
//! - `jwks`: `jwks::JwksSource`, an identity provider's keys from its JWKS URL or OpenID
//!   Connect discovery, refreshed in the background (tokio, hyper, rustls; rustls's
//!   crypto provider follows the signature backend).
//! - `metrics`: the [`audit`] outcome counters (and with `jwks` the failed fetches) also
//!   go to the `metrics` facade.
//!
//! # Security
//! - Access tokens must have `typ: at+jwt`, partial tokens their own `typ` and audience;
//!   the mfa_token is an encrypted JWE no verifier accepts. No kind passes for another.
//! - Every key is pinned to one algorithm, and the algorithm must be in the allow-list.
//! - `exp`/`nbf` leeway defaults to 5 s (at most 60 s), not jsonwebtoken's 60 s.
//! - Failures to decide (e.g. no randomness to seal an mfa_token) answer 500: fail closed.
//! - Nothing here logs a token, a code or a key.

#![forbid(unsafe_code)]
// Library code never panics on input; tests, examples and benches may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples are compiled as doc tests: the first needs the axum extractor,
// the second only the lean core (CI also builds it with no other feature).
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The lean core: always compiled.
pub mod audit;
pub mod challenge;
mod clock;
pub mod dpop;
mod error;
pub mod layer;
pub mod policy;
mod random;
pub mod revocation;
#[cfg(any(feature = "jwks", feature = "redis-tls"))]
mod tls;
pub mod token;
pub mod wire;

// The completion side (feature `server`, on by default).
#[cfg(feature = "server")]
pub mod complete;
#[cfg(feature = "server")]
pub mod factor;
#[cfg(feature = "server")]
pub mod store;

// The client side (feature `client`).
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod flow;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "jwks")]
pub mod jwks;
#[cfg(feature = "tonic")]
pub mod tonic;

// What the README's two scenarios name: guarding routes (the core) and completing MFA
// (`Completion`, feature `server`). Everything else is in its module.
pub use self::challenge::{Denial, DenialKind, MfaRequirements, Sealer, SealingKey, SealingKeys};
pub use self::clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "server")]
pub use self::complete::Completion;
pub use self::error::ConfigError;
pub use self::layer::{Guard, StepUpLayer, StepUpService};
pub use self::policy::{
    Policy, RouteTable, StepUp, PHISHING_RESISTANT_ACR, PHISHING_RESISTANT_HARDWARE_ACR,
};
pub use self::token::{
    Algorithm, Claims, Grant, Issuer, KeySet, SigningKey, TokenError, TokenKind, TrustedIssuer,
    Verifier, VerifyingKey,
};
