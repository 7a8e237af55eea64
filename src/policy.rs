//! Route policies and the route table.
//!
//! A [`Policy`] says what a request must carry to reach a route:
//!
//! | policy | passes when |
//! | --- | --- |
//! | [`Policy::public`] | always (a valid access token's claims are still attached; a partial token is refused) |
//! | [`Policy::authenticated`] | a valid access token |
//! | [`Policy::step_up`] | a valid access token that meets a [`StepUp`] requirement |
//! | [`Policy::mfa_verify`] | always: the verify endpoint checks partial tokens and mfa_tokens itself |
//!
//! plus, for the authenticated kinds, every scope of [`Policy::scopes`].
//!
//! Policies are attached to routes in two ways that give the same answer for the same
//! route: a [`RouteTable`] on one layer in front of everything, or one policy per route
//! with [`Guard::require`](crate::Guard::require) (axum's `route_layer`).
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
//! use std::time::Duration;
//! use http::{Method, Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (guard, issuer) = guard_and_issuer()?;
//! let table = RouteTable::new()
//!     .route(Method::GET, "/healthz", Policy::public())
//!     .route(
//!         Method::POST,
//!         "/transfers",
//!         Policy::step_up(StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))),
//!     );
//! let app = guard.route_table(table)?.layer(service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! }));
//! let now = issuer.clock().now();
//! let pwd = issuer.issue_access(&Grant::new("alice").amr(["pwd"]))?.token;
//! let mfa = issuer.issue_access(&Grant::new("alice").amr(["pwd", "otp", "mfa"]).auth_time(now))?.token;
//! let post = |token: &str| {
//!     Request::post("/transfers")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(String::new())
//! };
//!
//! // Anyone reaches /healthz; /transfers wants a fresh second factor.
//! let res = app.clone().oneshot(Request::get("/healthz").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(app.clone().oneshot(post(&pwd)?).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(app.clone().oneshot(post(&mfa)?).await?.status(), StatusCode::OK);
//! // Not in the table: authenticated by default.
//! let res = app.clone().oneshot(Request::get("/admin").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};

use crate::error::{is_header_param_safe, is_scope_token, ConfigError};
use crate::token::Claims;

/// What a route demands of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Policy {
    kind: PolicyKind,
    scopes: Vec<String>,
    /// The issuers whose tokens this route accepts; empty: every issuer the verifier
    /// accepts.
    issuers: Vec<String>,
    /// Whether the route refuses bearer tokens (RFC 9449: DPoP-bound tokens only).
    dpop: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PolicyKind {
    Public,
    Authenticated,
    StepUp(StepUp),
    MfaVerify,
}

impl Policy {
    /// Anyone may pass. A valid access token's claims are attached if one is sent; an
    /// invalid or expired one is ignored (the request is anonymous); a partial token is
    /// answered `401 mfa_incomplete`, since it opens no door but the verify endpoint.
    pub fn public() -> Self {
        Self::of(PolicyKind::Public)
    }

    /// A valid access token is required. The default for routes the table does not list.
    pub fn authenticated() -> Self {
        Self::of(PolicyKind::Authenticated)
    }

    /// A valid access token that also meets `requirement`; otherwise `403 mfa_required`
    /// with an mfa_token (for a [trusted issuer](crate::TrustedIssuer)'s token, the
    /// delegated form: the RFC 9470 challenge, no mfa_token).
    pub fn step_up(requirement: StepUp) -> Self {
        Self::of(PolicyKind::StepUp(requirement))
    }

    /// The verify endpoint: the one route a partial token may reach. The layer lets every
    /// request through untouched; the mounted verify service checks the partial token or
    /// mfa_token and the code itself.
    pub fn mfa_verify() -> Self {
        Self::of(PolicyKind::MfaVerify)
    }

    /// Also requires each of `scopes` in the token's `scope` claim (`403
    /// insufficient_scope` otherwise). Requiring a scope on a public route makes it
    /// authenticated, since only a verified token has scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        if self.kind == PolicyKind::Public && !self.scopes.is_empty() {
            self.kind = PolicyKind::Authenticated;
        }
        self
    }

    /// Also requires a DPoP-bound token (RFC 9449) sent with its proof: a bearer token
    /// is answered `401 invalid_token` in the `DPoP` scheme only, telling the client to
    /// use DPoP. The guard must accept DPoP ([`GuardBuilder::dpop`]). Requiring DPoP on a
    /// public route makes it authenticated.
    ///
    /// [`GuardBuilder::dpop`]: crate::layer::GuardBuilder::dpop
    pub fn require_dpop(mut self) -> Self {
        self.dpop = true;
        if self.kind == PolicyKind::Public {
            self.kind = PolicyKind::Authenticated;
        }
        self
    }

    fn of(kind: PolicyKind) -> Self {
        Self {
            kind,
            scopes: Vec::new(),
            issuers: Vec::new(),
            dpop: false,
        }
    }

    /// Whether the route refuses bearer tokens ([`Policy::require_dpop`]).
    pub(crate) fn requires_dpop(&self) -> bool {
        self.dpop
    }

    pub(crate) fn kind(&self) -> &PolicyKind {
        &self.kind
    }

    pub(crate) fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Accepts only tokens whose `iss` is one of `issuers` (the verifier's local issuer,
    /// or [trusted issuers](crate::TrustedIssuer)); another issuer's valid token is
    /// answered `401 invalid_token` (on a public route: treated as no token). Identity is
    /// (`iss`, `sub`): restrict a route whose handler looks users up by `sub` to the
    /// issuer that knows them. Default: every issuer the verifier accepts.
    pub fn issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuers.extend(issuers.into_iter().map(Into::into));
        self
    }

    /// Whether the route refuses the issuer of `claims`.
    pub(crate) fn refuses_issuer(&self, claims: &Claims) -> bool {
        !self.issuers.is_empty()
            && !claims
                .iss()
                .is_some_and(|iss| self.issuers.iter().any(|i| i == iss))
    }

    /// Whether the claims lack any required scope.
    pub(crate) fn missing_scope(&self, claims: &Claims) -> bool {
        self.scopes.iter().any(|s| !claims.has_scope(s))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self.scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(ConfigError::invalid(
                "scope",
                format!("{bad:?} is not a scope token (RFC 6749 §3.3)"),
            ));
        }
        if self.issuers.iter().any(String::is_empty) {
            return Err(ConfigError::invalid("issuers", "an empty issuer"));
        }
        match &self.kind {
            PolicyKind::MfaVerify if !self.scopes.is_empty() => Err(ConfigError::invalid(
                "scope",
                "the verify endpoint takes no scopes",
            )),
            PolicyKind::MfaVerify if self.dpop => Err(ConfigError::invalid(
                "require_dpop",
                "the verify endpoint checks its own credentials",
            )),
            PolicyKind::MfaVerify if !self.issuers.is_empty() => Err(ConfigError::invalid(
                "issuers",
                "the verify endpoint accepts the local issuer only, always",
            )),
            PolicyKind::StepUp(step_up) => step_up.validate(),
            _ => Ok(()),
        }
    }
}

/// A step-up requirement (RFC 9470): what the authentication behind an access token must
/// have been for a sensitive route.
///
/// ```
/// use std::time::Duration;
/// use tower_stepup::StepUp;
///
/// // A second factor, used within the last five minutes.
/// let fresh_mfa = StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
pub struct StepUp {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<u64>,
}

/// The `acr` of a session whose last second factor was phishing-resistant: a passkey
/// with user verification, its key synced (backup-eligible). The value of the OpenID
/// Extended Authentication Profile (EAP) ACR Values 1.0.
pub const PHISHING_RESISTANT_ACR: &str = "phr";

/// The `acr` of a session whose last second factor was phishing-resistant and its key
/// bound to one device (a passkey that is not backup-eligible, a security key): EAP's
/// `phrh`.
pub const PHISHING_RESISTANT_HARDWARE_ACR: &str = "phrh";

/// Which part of a [`StepUp`] requirement a token failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unmet {
    /// `amr` lacks a required method.
    Amr,
    /// `acr` is not among the accepted values.
    Acr,
    /// `auth_time` is older than `max_age`, missing, or in the future.
    MaxAge,
}

impl Unmet {
    /// `amr`, `acr` or `max_age`: the part that was not met.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Amr => "amr",
            Self::Acr => "acr",
            Self::MaxAge => "max_age",
        }
    }
}

impl StepUp {
    /// An empty requirement; add at least one of `acr_values`, `amr`, `max_age`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token's `acr` must be one of these.
    pub fn acr_values<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.acr_values = values.into_iter().map(Into::into).collect();
        self
    }

    /// The token's `amr` must contain every one of these (e.g. `["mfa"]`).
    pub fn amr<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.amr = methods.into_iter().map(Into::into).collect();
        self
    }

    /// A phishing-resistant second factor: the token's `acr` must be
    /// [`PHISHING_RESISTANT_HARDWARE_ACR`] or [`PHISHING_RESISTANT_ACR`], which the
    /// completion side gives a session whose last second factor was a passkey with user
    /// verification (a TOTP or sent code after it sets the `acr` back). Add `max_age` for
    /// a recent one. A step-up challenge for it lists only the factors that can meet it
    /// (`passkey`), or asks to enroll one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_stepup::StepUp;
    ///
    /// let admin = StepUp::phishing_resistant().max_age(Duration::from_secs(300));
    /// assert!(admin.demands_phishing_resistance());
    /// ```
    pub fn phishing_resistant() -> Self {
        Self::new().acr_values([PHISHING_RESISTANT_HARDWARE_ACR, PHISHING_RESISTANT_ACR])
    }

    /// Whether only a phishing-resistant factor meets this requirement: it names `acr`
    /// values, all of them phishing-resistant ones.
    pub fn demands_phishing_resistance(&self) -> bool {
        !self.acr_values.is_empty()
            && self
                .acr_values
                .iter()
                .all(|v| v == PHISHING_RESISTANT_ACR || v == PHISHING_RESISTANT_HARDWARE_ACR)
    }

    /// The token's `auth_time` must be at most this old. A token without `auth_time`
    /// fails. Whole seconds, at least one (a zero `max_age` could never be met twice).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age.as_secs());
        self
    }

    /// The accepted `acr` values (empty: any).
    pub fn required_acr_values(&self) -> &[String] {
        &self.acr_values
    }

    /// The `amr` methods that must all be present.
    pub fn required_amr(&self) -> &[String] {
        &self.amr
    }

    /// The maximum authentication age in seconds.
    pub fn required_max_age(&self) -> Option<u64> {
        self.max_age
    }

    /// The first part of this requirement that `claims` fail at time `now`, or `None` when
    /// the token meets it.
    ///
    /// `max_age` is met while `now - auth_time <= max_age`; an `auth_time` more than
    /// `leeway` seconds in the future fails (it cannot be trusted to be fresh).
    pub fn unmet(&self, claims: &Claims, now: u64, leeway: u64) -> Option<Unmet> {
        if !self.amr.iter().all(|m| claims.has_amr(m)) {
            return Some(Unmet::Amr);
        }
        if !self.acr_values.is_empty()
            && !claims
                .acr()
                .is_some_and(|acr| self.acr_values.iter().any(|v| v == acr))
        {
            return Some(Unmet::Acr);
        }
        if !self.recent_enough(claims, now, leeway) {
            return Some(Unmet::MaxAge);
        }
        None
    }

    /// Whether `claims` meet this requirement's `max_age` at `now` (always, without one):
    /// `now - auth_time <= max_age`, and an `auth_time` more than `leeway` seconds in the
    /// future fails.
    pub(crate) fn recent_enough(&self, claims: &Claims, now: u64, leeway: u64) -> bool {
        let Some(max_age) = self.max_age else {
            return true;
        };
        match claims.auth_time() {
            Some(t) if t > now.saturating_add(leeway) => false,
            Some(t) => now.saturating_sub(t) <= max_age,
            None => false,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.acr_values.is_empty() && self.amr.is_empty() && self.max_age.is_none() {
            return Err(ConfigError::invalid(
                "step_up",
                "name at least one of acr_values, amr, max_age",
            ));
        }
        if self.max_age == Some(0) {
            return Err(ConfigError::invalid("max_age", "at least 1 s"));
        }
        let token_ok = |v: &String| !v.is_empty() && !v.contains(' ') && is_header_param_safe(v);
        if !self.acr_values.iter().all(token_ok) {
            return Err(ConfigError::invalid(
                "acr_values",
                "each value: printable ASCII, no space, quote or backslash",
            ));
        }
        if !self.amr.iter().all(token_ok) {
            return Err(ConfigError::invalid(
                "amr",
                "each value: printable ASCII, no space, quote or backslash",
            ));
        }
        Ok(())
    }
}

/// Method + path pattern → [`Policy`], for one layer in front of a whole service.
///
/// Patterns use the [`matchit`] syntax that axum uses (`/users/{id}`, `/files/{*path}`),
/// with the same crate version, so a path reaches the same pattern here as in an axum
/// router. Routes the table does not match get the default policy,
/// [`Policy::authenticated`] unless changed: deny by default.
///
/// `HEAD` requests take the `GET` policy of their path when no `HEAD` route is listed,
/// because HTTP servers (axum among them) answer `HEAD` with the `GET` handler.
///
/// [`Policy::mfa_verify`] lets every request through, so the table accepts it only for
/// an explicit method on a path without parameters, never as the default or under
/// [`any`](Self::any).
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use tower_stepup::{Policy, RouteTable, StepUp};
///
/// let table = RouteTable::new()
///     .route(Method::GET, "/healthz", Policy::public())
///     .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify())
///     .route(Method::GET, "/api/me", Policy::authenticated())
///     .route(
///         Method::GET,
///         "/api/billing",
///         Policy::step_up(StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))),
///     );
/// ```
///
/// # Security
/// - The table matches the raw request path (`Uri::path`), exactly as axum does. If a
///   layer inside this one rewrites paths (normalising trailing slashes or
///   percent-encoding), put that layer outside instead, so the path checked here is the
///   path that gets routed. Inside an axum `nest`, the path seen is the nested one.
/// - A method the table does not list for a matched pattern gets the default policy, not
///   the policy of the pattern's other methods: list every method a sensitive path
///   serves, or cover it with [`any`](Self::any).
/// - CORS preflights (`OPTIONS`) carry no token: put a CORS layer outside this one, or
///   list `OPTIONS` routes as public.
#[derive(Clone, Debug)]
#[must_use]
pub struct RouteTable {
    routes: BTreeMap<String, MethodPolicies>,
    duplicates: Vec<String>,
    default: Policy,
}

#[derive(Clone, Debug, Default)]
struct MethodPolicies {
    by_method: Vec<(Method, Policy)>,
    any: Option<Policy>,
}

impl MethodPolicies {
    fn get(&self, method: &Method) -> Option<&Policy> {
        let find = |m: &Method| self.by_method.iter().find(|(k, _)| k == m).map(|(_, p)| p);
        find(method)
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| find(&Method::GET))
                    .flatten()
            })
            .or(self.any.as_ref())
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The most named parameters a route pattern may have: matchit 0.8 renames them `a` to
/// `y` and panics on the next one.
const MAX_ROUTE_PARAMS: usize = 25;

/// The named parameters (`{name}`) of a route pattern; a catch-all (`{*name}`) is not
/// renamed, and `{{` is an escaped brace.
fn parameters(pattern: &str) -> usize {
    let mut n = 0;
    let mut bytes = pattern.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b == b'{' {
            match bytes.peek() {
                Some(b'{') => {
                    bytes.next();
                }
                Some(b'*') => {}
                _ => n += 1,
            }
        }
    }
    n
}

impl RouteTable {
    /// An empty table: every route gets [`Policy::authenticated`].
    pub fn new() -> Self {
        Self {
            routes: BTreeMap::new(),
            duplicates: Vec::new(),
            default: Policy::authenticated(),
        }
    }

    /// `policy` for the gRPC method `path` (`/package.Service/Method`), whatever the
    /// HTTP method: a gRPC call is `POST path`, but tonic's router and generated servers
    /// do not check the HTTP method, so a `GET` of the same path must not find a weaker
    /// policy. (The verify endpoint, [`Policy::mfa_verify`], is registered for `POST`
    /// only: other methods there get the table's default.) A pattern works too
    /// (`/package.Service/{method}` for a whole service).
    pub fn grpc(self, path: &str, policy: Policy) -> Self {
        if policy.kind == PolicyKind::MfaVerify {
            self.route(Method::POST, path, policy)
        } else {
            self.any(path, policy)
        }
    }

    /// `policy` for `method` on paths matching `pattern`.
    pub fn route(mut self, method: Method, pattern: &str, policy: Policy) -> Self {
        let entry = self.routes.entry(pattern.to_owned()).or_default();
        if entry.by_method.iter().any(|(m, _)| *m == method) {
            self.duplicates.push(format!("{method} {pattern}"));
        } else {
            entry.by_method.push((method, policy));
        }
        self
    }

    /// `policy` for every method not listed with [`route`](Self::route) on `pattern`.
    pub fn any(mut self, pattern: &str, policy: Policy) -> Self {
        let entry = self.routes.entry(pattern.to_owned()).or_default();
        if entry.any.is_some() {
            self.duplicates.push(format!("* {pattern}"));
        }
        entry.any = Some(policy);
        self
    }

    /// The policy for requests no route matches. Default: [`Policy::authenticated`].
    ///
    /// # Security
    /// A public default exposes every route you forgot to list.
    pub fn default_policy(mut self, policy: Policy) -> Self {
        self.default = policy;
        self
    }

    pub(crate) fn compile(self) -> Result<CompiledTable, ConfigError> {
        let route_err = |path: &str, reason: &str| ConfigError::Route {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(dup) = self.duplicates.first() {
            return Err(route_err(dup, "listed twice"));
        }
        self.default
            .validate()
            .map_err(|e| route_err("<default>", &e.to_string()))?;
        // The verify endpoint lets everything through: it must be one exact route, never
        // a default, a catch-all or a pattern that could open a whole subtree.
        if self.default.kind == PolicyKind::MfaVerify {
            return Err(route_err(
                "<default>",
                "mfa_verify cannot be the default policy",
            ));
        }
        let mut router = matchit::Router::new();
        let mut requires_dpop = self.default.dpop;
        for (path, policies) in self.routes {
            let listed = policies.by_method.iter().map(|(_, p)| p);
            requires_dpop |= listed.clone().chain(&policies.any).any(|p| p.dpop);
            for (method, policy) in policies.by_method.iter() {
                policy
                    .validate()
                    .map_err(|e| route_err(&format!("{method} {path}"), &e.to_string()))?;
            }
            if let Some(policy) = &policies.any {
                policy
                    .validate()
                    .map_err(|e| route_err(&path, &e.to_string()))?;
            }
            if policies
                .any
                .as_ref()
                .is_some_and(|p| p.kind == PolicyKind::MfaVerify)
            {
                return Err(route_err(&path, "mfa_verify needs an explicit method"));
            }
            if path.contains('{') && listed.clone().any(|p| p.kind == PolicyKind::MfaVerify) {
                return Err(route_err(
                    &path,
                    "mfa_verify needs a path without parameters",
                ));
            }
            // A request path always starts with `/`; matchit would let an empty pattern
            // match `/`, which for the verify endpoint would open a door never listed.
            if !path.starts_with('/') {
                return Err(route_err(&path, "a pattern must start with /"));
            }
            // matchit (0.8) panics on a route with more than 25 named parameters: refuse
            // it first.
            if parameters(&path) > MAX_ROUTE_PARAMS {
                return Err(route_err(&path, "more than 25 parameters"));
            }
            router
                .insert(path.clone(), policies)
                .map_err(|e| route_err(&path, &e.to_string()))?;
        }
        Ok(CompiledTable {
            router,
            default: self.default,
            requires_dpop,
        })
    }
}

pub(crate) struct CompiledTable {
    router: matchit::Router<MethodPolicies>,
    default: Policy,
    requires_dpop: bool,
}

impl CompiledTable {
    /// Whether a route of the table requires DPoP ([`Policy::require_dpop`]).
    pub(crate) fn requires_dpop(&self) -> bool {
        self.requires_dpop
    }

    pub(crate) fn lookup(&self, method: &Method, path: &str) -> &Policy {
        self.router
            .at(path)
            .ok()
            .and_then(|m| m.value.get(method))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_policy_error_names_its_route() {
        let bad = StepUp::new().max_age(std::time::Duration::ZERO);
        let table = RouteTable::new().route(Method::GET, "/api/billing", Policy::step_up(bad));
        let err = table.compile().err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("GET /api/billing"), "{err}");
        assert!(err.contains("max_age"), "{err}");
        let default = RouteTable::new().default_policy(Policy::step_up(bad_step_up()));
        let err = default.compile().err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("<default>"));
    }

    fn bad_step_up() -> StepUp {
        StepUp::new().max_age(std::time::Duration::ZERO)
    }

    use super::*;

    fn claims(json: serde_json::Value) -> Claims {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn max_age_is_met_exactly_at_the_boundary_and_not_one_second_past() {
        let req = StepUp::new().max_age(Duration::from_secs(300));
        let c = claims(serde_json::json!({"sub":"a","exp":9999,"auth_time":1000}));
        assert_eq!(req.unmet(&c, 1300, 5), None);
        assert_eq!(req.unmet(&c, 1301, 5), Some(Unmet::MaxAge));
    }

    #[test]
    fn max_age_fails_without_auth_time_or_with_one_from_the_future() {
        let req = StepUp::new().max_age(Duration::from_secs(300));
        let none = claims(serde_json::json!({"sub":"a","exp":9999}));
        assert_eq!(req.unmet(&none, 1000, 5), Some(Unmet::MaxAge));
        let future = claims(serde_json::json!({"sub":"a","exp":9999,"auth_time":1006}));
        assert_eq!(req.unmet(&future, 1000, 5), Some(Unmet::MaxAge));
        let within_leeway = claims(serde_json::json!({"sub":"a","exp":9999,"auth_time":1005}));
        assert_eq!(req.unmet(&within_leeway, 1000, 5), None);
    }

    #[test]
    fn amr_and_acr_are_checked() {
        let req = StepUp::new().amr(["mfa"]).acr_values(["gold", "platinum"]);
        let pwd = claims(serde_json::json!({"sub":"a","exp":1,"amr":["pwd"],"acr":"gold"}));
        assert_eq!(req.unmet(&pwd, 0, 0), Some(Unmet::Amr));
        let silver =
            claims(serde_json::json!({"sub":"a","exp":1,"amr":["pwd","mfa"],"acr":"silver"}));
        assert_eq!(req.unmet(&silver, 0, 0), Some(Unmet::Acr));
        let gold = claims(serde_json::json!({"sub":"a","exp":1,"amr":["pwd","mfa"],"acr":"gold"}));
        assert_eq!(req.unmet(&gold, 0, 0), None);
    }

    #[test]
    fn table_matches_method_and_pattern_and_denies_by_default() {
        let t = RouteTable::new()
            .route(Method::GET, "/healthz", Policy::public())
            .route(Method::GET, "/users/{id}", Policy::public())
            .any(
                "/files/{*path}",
                Policy::step_up(StepUp::new().amr(["mfa"])),
            )
            .route(Method::POST, "/verify", Policy::mfa_verify())
            .compile()
            .unwrap();
        assert_eq!(t.lookup(&Method::GET, "/healthz"), &Policy::public());
        assert_eq!(t.lookup(&Method::HEAD, "/healthz"), &Policy::public());
        assert_eq!(
            t.lookup(&Method::POST, "/healthz"),
            &Policy::authenticated()
        );
        assert_eq!(
            t.lookup(&Method::GET, "/healthz/"),
            &Policy::authenticated()
        );
        assert_eq!(t.lookup(&Method::GET, "/users/7"), &Policy::public());
        assert_eq!(
            t.lookup(&Method::GET, "/users/7/x"),
            &Policy::authenticated()
        );
        assert_eq!(
            t.lookup(&Method::DELETE, "/files/a/b"),
            &Policy::step_up(StepUp::new().amr(["mfa"]))
        );
        assert_eq!(t.lookup(&Method::POST, "/verify"), &Policy::mfa_verify());
        assert_eq!(t.lookup(&Method::GET, "/verify"), &Policy::authenticated());
        assert_eq!(t.lookup(&Method::GET, "/nowhere"), &Policy::authenticated());
    }

    #[test]
    fn bad_tables_are_refused_at_build_time() {
        let dup = RouteTable::new()
            .route(Method::GET, "/a", Policy::public())
            .route(Method::GET, "/a", Policy::authenticated());
        assert!(matches!(dup.compile(), Err(ConfigError::Route { .. })));
        let conflict = RouteTable::new()
            .route(Method::GET, "/a/{x}", Policy::public())
            .route(Method::GET, "/a/{y}", Policy::public());
        assert!(matches!(conflict.compile(), Err(ConfigError::Route { .. })));
        let empty_step_up =
            RouteTable::new().route(Method::GET, "/a", Policy::step_up(StepUp::new()));
        assert!(empty_step_up.compile().is_err());
        let quote = RouteTable::new().route(
            Method::GET,
            "/a",
            Policy::step_up(StepUp::new().acr_values(["a\"b"])),
        );
        assert!(quote.compile().is_err());
        let scope =
            RouteTable::new().route(Method::GET, "/a", Policy::authenticated().scopes(["a b"]));
        assert!(scope.compile().is_err());
    }

    #[test]
    fn the_verify_endpoint_is_one_exact_route() {
        let as_default = RouteTable::new().default_policy(Policy::mfa_verify());
        assert!(matches!(
            as_default.compile(),
            Err(ConfigError::Route { .. })
        ));
        let under_any = RouteTable::new().any("/auth/mfa/verify", Policy::mfa_verify());
        assert!(matches!(
            under_any.compile(),
            Err(ConfigError::Route { .. })
        ));
        let catch_all =
            RouteTable::new().route(Method::POST, "/auth/{*rest}", Policy::mfa_verify());
        assert!(matches!(
            catch_all.compile(),
            Err(ConfigError::Route { .. })
        ));
        let exact = RouteTable::new().route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify());
        assert!(exact.compile().is_ok());
    }

    #[test]
    fn max_age_of_zero_is_refused() {
        let zero = RouteTable::new().route(
            Method::GET,
            "/a",
            Policy::step_up(StepUp::new().max_age(Duration::ZERO)),
        );
        assert!(zero.compile().is_err());
    }

    #[test]
    fn scopes_on_a_public_route_make_it_authenticated() {
        let p = Policy::public().scopes(["read"]);
        assert_eq!(p.kind(), &PolicyKind::Authenticated);
    }
}
