//! The authenticating and authorizing layer.
//!
//! A [`Guard`] holds what every check needs (the token verifier, the mfa_token sealer, the
//! clock, the realm). It builds [`StepUpLayer`]s in two ways that share one decision
//! procedure, so the same route gets the same answer either way:
//!
//! - [`Guard::route_table`]: one layer in front of the whole service, policies looked up
//!   by method and path in a [`RouteTable`];
//! - [`Guard::require`]: one policy, for a single route (axum's `route_layer`, or around
//!   one tonic service).
//!
//! For every request the layer finds the credential, verifies it, classifies the request
//! (anonymous, partial, authenticated, expired) and applies the route's policy: the
//! request passes with the verified [`Claims`] in its extensions, or is refused with one of
//! the rows of [`DENIAL_TABLE`](crate::challenge::DENIAL_TABLE).
//!
//! Deciding and rendering are apart: the decision is a typed [`Denial`], rendered once at
//! the edge — as a gRPC Trailers-Only response for a gRPC request, else by the guard's
//! [`Rejection`] hook ([`GuardBuilder::rejection`]) if it gives a response, else as the
//! default JSON body and `WWW-Authenticate` challenge. The inner service is not called.
//!
//! ```
//! # use tower_stepup::*;
//! # fn guard_and_issuer() -> Result<(Guard, Issuer), ConfigError> {
//! #     let secret = [7u8; 32];
//! #     let verifier = Verifier::builder()
//! #         .issuer("https://auth.example")
//! #         .audience("https://api.example")
//! #         .algorithms([Algorithm::HS256])
//! #         .key(VerifyingKey::hmac("k1", Algorithm::HS256, &secret)?)
//! #         .build()?;
//! #     let sealer = Sealer::new(SealingKeys::new(SealingKey::generate("s1")?))?;
//! #     let issuer = Issuer::builder()
//! #         .issuer("https://auth.example")
//! #         .audience("https://api.example")
//! #         .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &secret)?)
//! #         .build()?;
//! #     Ok((Guard::builder().verifier(verifier).sealer(sealer).build()?, issuer))
//! # }
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (guard, issuer) = guard_and_issuer()?;
//! // One route's layer: a valid access token with the `billing:read` scope.
//! let route = guard
//!     .require(Policy::authenticated().scopes(["billing:read"]))?
//!     .layer(service_fn(|req: Request<String>| async move {
//!         // The layer put the verified claims here.
//!         let sub = req.extensions().get::<Claims>().map(|c| c.sub().to_owned());
//!         Ok::<_, std::convert::Infallible>(Response::new(sub.unwrap_or_default()))
//!     }));
//!
//! let with_scope = issuer.issue_access(&Grant::new("alice").scope("billing:read"))?.token;
//! let without = issuer.issue_access(&Grant::new("alice").scope("me"))?.token;
//! let req = |token: &str| {
//!     Request::get("/invoices")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(String::new())
//! };
//!
//! let allowed = route.clone().oneshot(req(&with_scope)?).await?;
//! assert_eq!(allowed.status(), StatusCode::OK);
//!
//! let denied = route.clone().oneshot(req(&without)?).await?;
//! assert_eq!(denied.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     denied.extensions().get::<Denial>().map(Denial::kind),
//!     Some(DenialKind::InsufficientScope)
//! );
//! # Ok(())
//! # }
//! ```

mod body;
pub(crate) mod credential;
pub(crate) mod dpop;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod rejection;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};

use self::credential::Credential;
pub(crate) use self::dpop::DpopGuard;
use self::dpop::Refused;
use crate::audit::{self, Action, Outcome, TokenRef};
use crate::challenge::{
    self, Denial, DenialKind, LocalCompletion, MfaRequirements, MfaTokenClaims, RequestScheme,
    Sealer, SealingKey, SealingKeys, StepUpChallenge,
};
use crate::clock::{self, Clock, SharedClock};
use crate::dpop::{CheckedProof, DpopConfig, DpopNonces, JtiStore};
use crate::error::{is_header_param_safe, ConfigError};
use crate::policy::{Policy, PolicyKind, RouteTable, StepUp, Unmet};
use crate::random;
use crate::revocation::{Revocations, SessionCheck};
use crate::token::{Claims, KeyWait, TokenError, TokenKind, Verifier};

pub use self::body::ResponseBody;
pub use self::credential::CookieNames;
pub use self::future::ResponseFuture;
pub use self::layer::StepUpLayer;
#[cfg(feature = "axum")]
pub(crate) use self::rejection::PendingRejection;
pub use self::rejection::Rejection;
pub use self::service::StepUpService;

/// The default `realm` of `WWW-Authenticate` challenges.
pub const DEFAULT_REALM: &str = "api";

/// Default lifetime of an mfa_token.
pub const DEFAULT_MFA_TOKEN_TTL: Duration = Duration::from_secs(300);

type RequirementsFn = dyn Fn(&Claims) -> MfaRequirements + Send + Sync;

/// The shared configuration of every [`StepUpLayer`]. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    verifier: Verifier,
    /// `None` only when the verifier has no local issuer: every step-up is delegated.
    sealer: Option<Sealer>,
    clock: SharedClock,
    realm: String,
    cookie: Option<String>,
    step_up_status: StatusCode,
    mfa_token_ttl: u64,
    requirements: Box<RequirementsFn>,
    rejection: Option<Box<dyn Rejection>>,
    revocations: Revocations,
    /// `None`: this guard does not accept DPoP, and refuses every bound token.
    dpop: Option<DpopGuard>,
}

/// Where a layer finds the policy of a request.
pub(crate) enum PolicySource {
    Table(Box<crate::policy::CompiledTable>),
    Fixed(Policy),
}

impl PolicySource {
    fn policy_for(&self, method: &Method, path: &str) -> &Policy {
        match self {
            PolicySource::Table(table) => table.lookup(method, path),
            PolicySource::Fixed(policy) => policy,
        }
    }
}

/// Why a credential was refused: the denial's kind, and the verifier's reason when a
/// token was presented.
type Refusal = (DenialKind, Option<TokenError>);

/// A verified access token, as the request presented it.
struct Presented<'a> {
    claims: Claims,
    /// The time the token was verified at.
    now: u64,
    scheme: RequestScheme,
    token: &'a str,
}

/// The outcome for one request.
pub(crate) enum Decision {
    /// Call the inner service, with these claims in the extensions (none: anonymous).
    Pass(Option<Claims>),
    /// Call the inner service with these claims once the DPoP proof's `jti` is used
    /// for the first time ([`Guard::use_proof`]), at this time; refuse otherwise.
    PassOnce(Claims, Box<CheckedProof>, u64),
    /// Refuse, for this reason; rendered at the edge ([`Guard::render`]).
    Deny(Denial),
}

impl Guard {
    /// Starts a guard configuration.
    pub fn builder() -> GuardBuilder {
        GuardBuilder::default()
    }

    /// A layer for a whole service, with policies from `table`.
    pub fn route_table(&self, table: RouteTable) -> Result<StepUpLayer, ConfigError> {
        let table = table.compile()?;
        self.can_require_dpop(table.requires_dpop())?;
        Ok(StepUpLayer::new(
            self.clone(),
            PolicySource::Table(Box::new(table)),
        ))
    }

    /// A layer that applies `policy` to every request it sees: one route's layer.
    pub fn require(&self, policy: Policy) -> Result<StepUpLayer, ConfigError> {
        policy.validate()?;
        self.can_require_dpop(policy.requires_dpop())?;
        Ok(StepUpLayer::new(self.clone(), PolicySource::Fixed(policy)))
    }

    /// A policy may require DPoP only of a guard that accepts it.
    fn can_require_dpop(&self, required: bool) -> Result<(), ConfigError> {
        if required && self.inner.dpop.is_none() {
            return Err(ConfigError::invalid(
                "require_dpop",
                "the guard does not accept DPoP (GuardBuilder::dpop)",
            ));
        }
        Ok(())
    }

    /// The guard's DPoP side, if it accepts DPoP (the completion endpoints check their
    /// proofs with it).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn dpop(&self) -> Option<&DpopGuard> {
        self.inner.dpop.as_ref()
    }

    /// Uses the proof of `claims`' request, decided [`Decision::PassOnce`]: `Ok(())` the
    /// first time; a replay is `invalid_dpop_proof`, a store error `503`.
    pub(crate) async fn use_proof(
        &self,
        claims: &Claims,
        proof: &CheckedProof,
        now: u64,
    ) -> Result<(), Denial> {
        let used = match &self.inner.dpop {
            Some(dpop) => dpop.use_once(proof, now).await,
            None => Err(Denial::new(DenialKind::ServerError)),
        };
        used.inspect_err(|denial| {
            let reason = match denial.kind() {
                DenialKind::InvalidDpopProof => "dpop_proof_replayed",
                _ => "dpop_proof_store_failed",
            };
            denied(reason, Some(claims.sub()), None);
        })
    }

    /// The token verifier (e.g. to rotate its keys).
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The mfa_token sealer (e.g. to rotate its keys, or for the verify endpoint);
    /// `None` for a guard of identity providers' tokens only, whose step-ups are all
    /// delegated.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.inner.sealer.as_ref()
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The revoked sessions this guard refuses (the completion endpoints add to them;
    /// several replicas feed them from the store).
    pub fn revocations(&self) -> &Revocations {
        &self.inner.revocations
    }

    /// Whether this guard renders a denial other than the default would (another realm,
    /// a rejection hook): only then must it render an axum `Claims` refusal again.
    #[cfg(feature = "axum")]
    pub(crate) fn renders_its_own_way(&self) -> bool {
        self.inner.realm != DEFAULT_REALM || self.inner.rejection.is_some()
    }

    /// The clock, shared: the completion endpoints and their issuer read this one.
    #[cfg(feature = "server")]
    pub(crate) fn shared_clock(&self) -> SharedClock {
        Arc::clone(&self.inner.clock)
    }

    /// Decides one request. Synchronous: nothing here waits on I/O (the one store call
    /// of a DPoP request is left to the caller: [`Decision::PassOnce`]).
    pub(crate) fn decide(
        &self,
        policy: &Policy,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Decision {
        if matches!(policy.kind(), PolicyKind::MfaVerify) {
            return Decision::Pass(None);
        }
        match self.decide_token(policy, method, path, headers) {
            Decision::Deny(denial) => Decision::Deny(match &self.inner.dpop {
                Some(dpop) => dpop.finish(denial, credential::scheme(headers)),
                None => denial,
            }),
            decided => decided,
        }
    }

    /// [`decide`](Self::decide) for a route that is not the verify endpoint.
    fn decide_token(
        &self,
        policy: &Policy,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Decision {
        let public = matches!(policy.kind(), PolicyKind::Public);
        let presented = match self.presented(headers, public) {
            Ok(Some(presented)) => presented,
            Ok(None) => return Decision::Pass(None),
            Err((kind, error)) => return Decision::Deny(Denial::refused(kind, error)),
        };
        let now = presented.now;
        if let Some(denial) = self.session_denial(&presented.claims, public, now) {
            return if public {
                Decision::Pass(None)
            } else {
                Decision::Deny(denial)
            };
        }
        let proof = match self.bind(&presented, policy, (headers, method, path), public) {
            Ok(proof) => proof,
            Err(_) if public => return Decision::Pass(None),
            Err(refused) => return Decision::Deny(refused.denial(self.inner.dpop.as_ref())),
        };
        match (
            self.authorize(policy, presented.claims, method, path, now),
            proof,
        ) {
            (Decision::Pass(Some(claims)), Some(proof)) => Decision::PassOnce(claims, proof, now),
            (decided, _) => decided,
        }
    }

    /// The verified token of the request: `Ok(None)` lets a public route through without
    /// claims.
    ///
    /// A token verified before needs neither the syntax checks nor the signature: one
    /// lookup decides. Anything else takes the full path. (The clock is read only when
    /// there is a token: a public route without one does not pay for it.)
    fn presented<'h>(
        &self,
        headers: &'h HeaderMap,
        public: bool,
    ) -> Result<Option<Presented<'h>>, Refusal> {
        let inner = &*self.inner;
        let mut now = None;
        let cached = credential::candidate(headers)
            .filter(|(scheme, _)| *scheme == RequestScheme::Bearer || inner.dpop.is_some())
            .and_then(|(scheme, token)| {
                let t = inner.clock.now();
                now = Some(t);
                let verified = inner.verifier.cached(token, t)?;
                Some(Presented {
                    claims: verified.claims,
                    now: t,
                    scheme,
                    token,
                })
            });
        match cached {
            Some(hit) => Ok(Some(hit)),
            None => self.verify_credential(headers, public, now),
        }
    }

    /// The proof of DPoP request `presented`, checked (`Ok(None)` for a bearer token the
    /// route takes as one); or why it is refused. Without DPoP on the guard a token bound to a
    /// key is refused: a sender-constrained token is not a bearer token (RFC 9449 §7.2),
    /// whoever issued it.
    fn bind(
        &self,
        presented: &Presented<'_>,
        policy: &Policy,
        request: (&HeaderMap, &Method, &str),
        public: bool,
    ) -> Result<Option<Box<CheckedProof>>, Refused> {
        let claims = &presented.claims;
        let bound = match &self.inner.dpop {
            Some(dpop) => dpop.bind(
                claims,
                presented.scheme,
                presented.token,
                policy.requires_dpop(),
                request,
                presented.now,
            ),
            None if claims.dpop_jkt().is_some() => Err(Refused::BoundAsBearer),
            None => Ok(None),
        };
        bound
            .map(|proof| proof.map(Box::new))
            .inspect_err(|refused| {
                if !public {
                    denied(refused.reason(), Some(claims.sub()), None);
                }
            })
    }

    /// The refusal of an access token whose session has ended, or that this replica
    /// cannot check (its revocation feed is stale). Only the local issuer's sessions are
    /// revocable here; an identity provider's tokens pass.
    fn session_denial(&self, claims: &Claims, public: bool, now: u64) -> Option<Denial> {
        let inner = &*self.inner;
        let check = inner.revocations.check(claims, now);
        if check == SessionCheck::Live || !inner.verifier.is_local(claims) {
            return None;
        }
        let (reason, kind) = match check {
            SessionCheck::Ended => ("session_ended", DenialKind::SessionEnded),
            _ => ("revocations_stale", DenialKind::Unavailable),
        };
        if !public {
            denied(reason, Some(claims.sub()), None);
        }
        Some(Denial::new(kind))
    }

    /// For a token refused because its issuer's keys lack its `kid`: the wait for the
    /// issuer's source to fetch them (see [`Verifier::unknown_key_wait`]), if it will.
    pub(crate) fn key_wait(&self, denial: &Denial, headers: &HeaderMap) -> Option<KeyWait> {
        if denial.token_error() != Some(&TokenError::UnknownKey) {
            return None;
        }
        match credential::extract(headers, self.inner.cookie.as_deref()) {
            Credential::Bearer(token) => self.inner.verifier.unknown_key_wait(token),
            Credential::Dpop(token) if self.inner.dpop.is_some() => {
                self.inner.verifier.unknown_key_wait(token)
            }
            _ => None,
        }
    }

    /// Extracts and verifies the credential the full way: `Ok(None)` lets a public
    /// route through without claims.
    ///
    /// `now` is the time already read, if any; the claims come back with the time used.
    fn verify_credential<'h>(
        &self,
        headers: &'h HeaderMap,
        public: bool,
        now: Option<u64>,
    ) -> Result<Option<Presented<'h>>, Refusal> {
        let inner = &*self.inner;
        let (scheme, token) = match credential::extract(headers, inner.cookie.as_deref()) {
            Credential::Bearer(token) => (RequestScheme::Bearer, token),
            Credential::Dpop(token) if inner.dpop.is_some() => (RequestScheme::Dpop, token),
            // Another scheme: no credential of ours.
            Credential::None | Credential::Dpop(_) if public => return Ok(None),
            Credential::None | Credential::Dpop(_) => {
                denied("missing_credential", None, None);
                return Err((DenialKind::MissingCredential, None));
            }
            Credential::Malformed(_) if public => return Ok(None),
            Credential::Malformed(_) => {
                denied("malformed_credential", None, None);
                return Err((DenialKind::InvalidToken, Some(TokenError::Malformed)));
            }
        };
        let now = now.unwrap_or_else(|| inner.clock.now());
        match inner.verifier.verify(token, now) {
            Ok(v) if v.kind == TokenKind::Partial => {
                denied("partial_token", Some(v.claims.sub()), Some(token));
                Err((DenialKind::MfaIncomplete, None))
            }
            Ok(v) => Ok(Some(Presented {
                claims: v.claims,
                now,
                scheme,
                token,
            })),
            Err(_) if public => Ok(None),
            // An expired partial token leads back to sign-in, not to a refresh.
            Err(
                e @ TokenError::Expired {
                    kind: TokenKind::Access,
                },
            ) => {
                denied("expired_token", None, Some(token));
                Err((DenialKind::ExpiredToken, Some(e)))
            }
            Err(e) => {
                denied(e.reason(), None, Some(token));
                Err((DenialKind::InvalidToken, Some(e)))
            }
        }
    }

    /// The route's policy applied to the verified claims of an access token.
    fn authorize(
        &self,
        policy: &Policy,
        claims: Claims,
        method: &Method,
        path: &str,
        now: u64,
    ) -> Decision {
        let inner = &*self.inner;
        if policy.refuses_issuer(&claims) {
            if matches!(policy.kind(), PolicyKind::Public) {
                return Decision::Pass(None);
            }
            denied("issuer_not_accepted", Some(claims.sub()), None);
            let error = Some(TokenError::WrongIssuer);
            return Decision::Deny(Denial::refused(DenialKind::InvalidToken, error));
        }
        if policy.missing_scope(&claims) {
            denied("insufficient_scope", Some(claims.sub()), None);
            let scope = policy.required_scopes().join(" ");
            return Decision::Deny(Denial::insufficient_scope(scope));
        }
        if let PolicyKind::StepUp(requirement) = policy.kind() {
            if let Some(unmet) = requirement.unmet(&claims, now, inner.verifier.leeway()) {
                return Decision::Deny(self.step_up_denial(
                    requirement,
                    unmet,
                    &claims,
                    method,
                    path,
                    now,
                ));
            }
        }
        Decision::Pass(Some(claims))
    }

    /// Renders a denial at the edge, once: as gRPC for a gRPC request; else the
    /// [`Rejection`] hook's response, if it gives one; else the default HTTP rendering.
    /// The [`Denial`] is in the extensions of whichever response comes out.
    pub(crate) fn render(&self, denial: Denial, request: &Parts) -> Response<Bytes> {
        let realm = &self.inner.realm;
        if challenge::wants_grpc_denial(&request.method, &request.headers) {
            return challenge::grpc_response(denial, realm);
        }
        let custom = self.inner.rejection.as_ref();
        match custom.and_then(|hook| hook.reject(&denial, request)) {
            Some(response) => rejection::finish(response, denial),
            None => challenge::http_response(denial, realm),
        }
    }

    /// The default HTTP rendering of `denial`, with this guard's realm.
    #[cfg(feature = "server")]
    pub(crate) fn render_http(&self, denial: Denial) -> Response<Bytes> {
        challenge::http_response(denial, &self.inner.realm)
    }

    /// The step-up answer for `claims`, which failed `requirement` on `method path`,
    /// rendered as HTTP: `403 mfa_required` with a freshly sealed mfa_token.
    #[cfg(feature = "server")]
    pub(crate) fn challenge(
        &self,
        requirement: &StepUp,
        unmet: Unmet,
        claims: &Claims,
        method: &Method,
        path: &str,
        now: u64,
    ) -> Response<Bytes> {
        let denial = self.step_up_denial(requirement, unmet, claims, method, path, now);
        self.render_http(denial)
    }

    /// A fresh mfa_token binding `claims`' user and session to `requirement` on `method
    /// path`; or the denial when it cannot be sealed (`PathTooLong`, `ServerError`).
    fn seal(
        &self,
        sealer: &Sealer,
        requirement: &StepUp,
        claims: &Claims,
        method: &Method,
        path: &str,
        now: u64,
    ) -> Result<String, Box<Denial>> {
        let sealed = random::id()
            .map_err(challenge::SealError::from)
            .and_then(|jti| {
                sealer.seal(&MfaTokenClaims {
                    sub: claims.sub().to_owned(),
                    sid: claims.sid().map(str::to_owned),
                    requirement: requirement.clone(),
                    method: method.as_str().to_owned(),
                    path: path.to_owned(),
                    jti,
                    iat: now,
                    exp: now.saturating_add(self.inner.mfa_token_ttl),
                    scope: claims.scope().map(str::to_owned),
                    amr: claims.amr().to_vec(),
                    jkt: claims.dpop_jkt().map(str::to_owned),
                })
            });
        sealed.map_err(|e| match e {
            challenge::SealError::TooLarge => {
                denied("path_too_long", Some(claims.sub()), None);
                Box::new(Denial::new(DenialKind::PathTooLong))
            }
            e => {
                tracing::error!(error = %e, "could not seal an mfa_token; refusing the request");
                audit::emit(
                    Action::StepUp,
                    Outcome::Error,
                    Some("seal_failed"),
                    Some(claims.sub()),
                    None,
                );
                Box::new(Denial::new(DenialKind::ServerError))
            }
        })
    }

    /// The step-up denial for `claims`, which failed `requirement` on `method path`:
    /// `mfa_required` with a freshly sealed mfa_token (or, when it cannot be sealed,
    /// `PathTooLong` or `ServerError`); for a trusted issuer's token, the delegated
    /// form, without mfa_token (its identity provider performs the second factor).
    fn step_up_denial(
        &self,
        requirement: &StepUp,
        unmet: Unmet,
        claims: &Claims,
        method: &Method,
        path: &str,
        now: u64,
    ) -> Denial {
        let inner = &*self.inner;
        let acr_values = requirement.required_acr_values();
        let mut challenge = StepUpChallenge {
            description: match unmet {
                Unmet::Amr => "a second factor is required for this resource",
                Unmet::Acr => "a stronger authentication context is required for this resource",
                Unmet::MaxAge => "a more recent authentication is required for this resource",
            },
            status: inner.step_up_status,
            acr_values: (!acr_values.is_empty()).then(|| acr_values.join(" ")),
            max_age: requirement.required_max_age(),
            completion: None,
        };
        let sealer = match &inner.sealer {
            Some(sealer) if inner.verifier.is_local(claims) => sealer,
            _ => {
                audit::emit(
                    Action::StepUp,
                    Outcome::Denied,
                    Some("delegated"),
                    Some(claims.sub()),
                    None,
                );
                return Denial::step_up(challenge);
            }
        };
        let mfa_token = match self.seal(sealer, requirement, claims, method, path, now) {
            Ok(token) => token,
            Err(denial) => return *denial,
        };
        audit::emit(
            Action::StepUp,
            Outcome::Issued,
            Some(unmet.reason()),
            Some(claims.sub()),
            Some(TokenRef::Raw(&mfa_token)),
        );
        challenge.completion = Some(LocalCompletion {
            mfa_token,
            mfa_requirements: for_requirement(requirement, (inner.requirements)(claims)),
            expires_in: inner.mfa_token_ttl,
        });
        Denial::step_up(challenge)
    }
}

/// `requirements` as a challenge of `requirement` lists them: only the
/// phishing-resistant factors (`passkey`) when it
/// [demands phishing resistance](StepUp::demands_phishing_resistance), and enroll a
/// passkey when that leaves none.
fn for_requirement(requirement: &StepUp, requirements: MfaRequirements) -> MfaRequirements {
    if !requirement.demands_phishing_resistance() {
        return requirements;
    }
    if requirements.challenge.iter().any(|t| t.kind == "passkey") {
        MfaRequirements::challenge(["passkey"])
    } else {
        MfaRequirements::enroll(["passkey"])
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("verifier", &self.inner.verifier)
            .field("sealer", &self.inner.sealer)
            .field("realm", &self.inner.realm)
            .field("cookie", &self.inner.cookie)
            .field("step_up_status", &self.inner.step_up_status)
            .field("mfa_token_ttl", &self.inner.mfa_token_ttl)
            .field("rejection", &self.inner.rejection.is_some())
            .field("dpop", &self.inner.dpop)
            .finish_non_exhaustive()
    }
}

/// Configuration of a [`Guard`].
#[derive(Default)]
#[must_use]
pub struct GuardBuilder {
    verifier: Option<Verifier>,
    sealer: Option<Result<Sealer, ConfigError>>,
    clock: Option<SharedClock>,
    realm: Option<String>,
    cookie: Option<String>,
    strict_401: bool,
    mfa_token_ttl: Option<Duration>,
    requirements: Option<Box<RequirementsFn>>,
    rejection: Option<Box<dyn Rejection>>,
    revocations: Option<Revocations>,
    dpop: Option<(DpopConfig, String, Arc<dyn JtiStore>)>,
    dpop_nonces: Option<DpopNonces>,
}

impl GuardBuilder {
    /// The token verifier. Required.
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The mfa_token sealer. Required, or [`sealing_key`](Self::sealing_key), when the
    /// verifier has a local issuer (whose step-ups complete here); optional when it only
    /// accepts [trusted issuers](crate::TrustedIssuer)' tokens, whose step-ups are
    /// delegated to their identity provider.
    /// Use this form to rotate keys at run time ([`Sealer::rotate_keys`]) or to accept
    /// older keys ([`SealingKeys::accept`](crate::SealingKeys::accept)).
    pub fn sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(Ok(sealer));
        self
    }

    /// Seals mfa_tokens with this one key: the short form of
    /// `.sealer(Sealer::new(SealingKeys::new(key))?)`. The last of `sealer` and
    /// `sealing_key` called wins.
    ///
    /// ```
    /// # use tower_stepup::{Algorithm, Guard, SealingKey, Verifier, VerifyingKey};
    /// # fn main() -> Result<(), tower_stepup::ConfigError> {
    /// # let verifier = Verifier::builder().issuer("https://auth.example")
    /// #     .audience("https://api.example").algorithms([Algorithm::HS256])
    /// #     .key(VerifyingKey::hmac("k1", Algorithm::HS256, &[7u8; 32])?).build()?;
    /// let guard = Guard::builder()
    ///     .verifier(verifier)
    ///     .sealing_key(SealingKey::generate("s1")?)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn sealing_key(mut self, key: SealingKey) -> Self {
        self.sealer = Some(Sealer::new(SealingKeys::new(key)));
        self
    }

    /// The clock. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges. Default `"api"`.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Also read the access token from this cookie when no `Authorization` header is
    /// sent.
    ///
    /// # Security
    /// Browsers send cookies on cross-site requests: routes that change state need CSRF
    /// protection in cookie mode. Name the cookie with the `__Host-` prefix and set it
    /// `HttpOnly; Secure; SameSite`.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Answer step-up with `401` instead of `403`, for clients that follow RFC 9470 §3 to
    /// the letter. The body and `WWW-Authenticate` are the same.
    pub fn strict_rfc9470_status(mut self, strict: bool) -> Self {
        self.strict_401 = strict;
        self
    }

    /// Lifetime of mfa_tokens. Default 300 s; 1 to 600 s. A step-up denial says it as
    /// `expires_in` (seconds).
    pub fn mfa_token_ttl(mut self, ttl: Duration) -> Self {
        self.mfa_token_ttl = Some(ttl);
        self
    }

    /// Which factors a step-up response names for a user. Default: `challenge: otp` for
    /// everyone; return [`MfaRequirements::enroll`] for users without a factor (e.g. from
    /// a claim your issuer sets).
    pub fn mfa_requirements(
        mut self,
        f: impl Fn(&Claims) -> MfaRequirements + Send + Sync + 'static,
    ) -> Self {
        self.requirements = Some(Box::new(f));
        self
    }

    /// Renders the layer's HTTP denials your way, like tower-http's
    /// `with_rejection_response`: `hook` receives the typed [`Denial`] and the request's
    /// parts, and returns its own response (e.g. `application/problem+json`, or a `303`
    /// to a login page for a browser) or `None` for the default rendering (the JSON body
    /// and `WWW-Authenticate` of the denial table). A closure
    /// `Fn(&Denial, &http::request::Parts) -> Option<http::Response<bytes::Bytes>>` is a
    /// [`Rejection`].
    ///
    /// The hook renders a refusal; it cannot undo one: the inner service is not called
    /// whatever it returns. The [`Denial`] is put in the extensions of its response, and
    /// `Cache-Control: no-store` unless it set a `Cache-Control` itself.
    ///
    /// gRPC requests (a `POST` with `content-type: application/grpc…`) keep the gRPC
    /// rendering: the hook is not asked. The axum [`Claims`] extractor's rejection goes
    /// through the hook too (see `MissingClaims`, feature `axum`).
    ///
    /// # Security
    /// A step-up [`Denial`] carries a live mfa_token ([`Denial::mfa_token`]): put it only
    /// where the client that must complete the challenge reads it, never in a URL (a
    /// redirect's `Location` ends up in logs and `Referer` headers).
    pub fn rejection(mut self, hook: impl Rejection) -> Self {
        self.rejection = Some(Box::new(hook));
        self
    }

    /// The set of revoked sessions to refuse. Default: a set of this process
    /// ([`Revocations::new`]), which the completion endpoints write to. Several replicas
    /// pass a set fed by the shared store ([`Revocations::fed`]).
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Accepts DPoP-bound access tokens (RFC 9449): `Authorization: DPoP <token>` with a
    /// `DPoP` proof, checked by `config` (algorithms, the `iat` window), with `htu`
    /// compared to `public_url` (the scheme, host and path prefix clients use, e.g.
    /// `https://api.example`; never the request's `Host`) plus the request path, and each
    /// proof's `jti` used once through `store` (share it between replicas: every
    /// [`Store`](crate::store::Store) is a [`JtiStore`]).
    ///
    /// Without this, a token bound to a key (`cnf.jkt`) is refused, and `DPoP` is not a
    /// scheme the guard reads. With it, a bound token is accepted only with a proof of its
    /// key, a bearer token still passes where the policy does not
    /// [require DPoP](Policy::require_dpop), and every challenge advertises DPoP.
    /// The completion endpoints of this guard accept proofs too and bind the tokens they
    /// issue to the proof's key.
    pub fn dpop(
        mut self,
        config: DpopConfig,
        public_url: impl Into<String>,
        store: impl JtiStore,
    ) -> Self {
        self.dpop = Some((config, public_url.into(), Arc::new(store)));
        self
    }

    /// Asks DPoP proofs to carry a server nonce (RFC 9449 §8): a proof without the current
    /// one (or the previous period's) is answered `401 use_dpop_nonce` with the nonce in
    /// the `DPoP-Nonce` header, which every DPoP answer of the guard carries. Needs
    /// [`dpop`](Self::dpop). Replicas share the nonces' secret ([`DpopNonces::new`]).
    pub fn dpop_nonces(mut self, nonces: DpopNonces) -> Self {
        self.dpop_nonces = Some(nonces);
        self
    }

    /// Checks the configuration and builds the guard.
    pub fn build(self) -> Result<Guard, ConfigError> {
        let verifier = self.verifier.ok_or(ConfigError::Missing("verifier"))?;
        let sealer = self.sealer.transpose()?;
        if sealer.is_none() && verifier.local_issuer().is_some() {
            return Err(ConfigError::Missing("sealer"));
        }
        let realm = self.realm.unwrap_or_else(|| DEFAULT_REALM.to_owned());
        if !is_header_param_safe(&realm) {
            return Err(ConfigError::invalid(
                "realm",
                "printable ASCII without quote or backslash",
            ));
        }
        if let Some(cookie) = &self.cookie {
            let token_char = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
            if cookie.is_empty() || !cookie.bytes().all(token_char) {
                return Err(ConfigError::invalid("cookie", "not a cookie name"));
            }
        }
        let clock = self.clock.unwrap_or_else(clock::system);
        let dpop = match (self.dpop, self.dpop_nonces) {
            (Some((config, url, store)), nonces) => Some(DpopGuard::new(
                config,
                url,
                store,
                nonces,
                Arc::clone(&clock),
            )?),
            (None, Some(_)) => return Err(ConfigError::Missing("dpop (for dpop_nonces)")),
            (None, None) => None,
        };
        let ttl = self.mfa_token_ttl.unwrap_or(DEFAULT_MFA_TOKEN_TTL);
        if ttl.is_zero() || ttl > Duration::from_secs(600) {
            return Err(ConfigError::invalid("mfa_token_ttl", "1 to 600 s"));
        }
        Ok(Guard {
            inner: Arc::new(GuardInner {
                verifier,
                sealer,
                clock,
                realm,
                cookie: self.cookie,
                step_up_status: if self.strict_401 {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                },
                mfa_token_ttl: ttl.as_secs(),
                requirements: self
                    .requirements
                    .unwrap_or_else(|| Box::new(|_| MfaRequirements::challenge(["otp"]))),
                rejection: self.rejection,
                revocations: self.revocations.unwrap_or_default(),
                dpop,
            }),
        })
    }
}

/// The audit event of a refusal by the layer.
fn denied(reason: &'static str, sub: Option<&str>, token: Option<&str>) {
    audit::emit(
        Action::Access,
        Outcome::Denied,
        Some(reason),
        sub,
        token.map(TokenRef::Raw),
    );
}
