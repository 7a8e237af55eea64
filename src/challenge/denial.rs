//! Denial responses: one table, one status, one `error` code and one `WWW-Authenticate`
//! per reason.
//!
//! The layer decides a [`Denial`] and renders it once, at the edge: as HTTP (a JSON body
//! `{"error","error_description"}` with `Cache-Control: no-store` and the row's
//! `WWW-Authenticate`) or as a gRPC Trailers-Only response (the same JSON as
//! `stepup-details` metadata). Two rows add fields to the body:
//!
//! | denial | added fields |
//! | --- | --- |
//! | [`MfaRequired`](DenialKind::MfaRequired) | `mfa_token`, `mfa_requirements`, and `expires_in`: seconds the mfa_token lives (the guard's `mfa_token_ttl`); for a trusted issuer's token ([delegated](Denial::is_delegated)) instead `acr_values` and `max_age`, and no mfa_token |
//! | [`ExpiredToken`](DenialKind::ExpiredToken) | `"token_expired": true`: the token was genuine but is past its `exp`, so refreshing it helps (`error` stays `invalid_token`, the challenge is as for any invalid token) |

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::token::TokenError;
use crate::wire::{self, ErrorCode};

/// Why the layer refused a request. Put in the extensions of every denial response, so
/// outer layers and tests can inspect it without parsing the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenialKind {
    /// No credential on a protected route.
    MissingCredential,
    /// A malformed, forged, wrong-type or otherwise invalid token.
    InvalidToken,
    /// A genuine token past its `exp`: refresh it. The body says `"token_expired": true`.
    ExpiredToken,
    /// A partial token outside the verify endpoint: finish the second factor first.
    MfaIncomplete,
    /// The token lacks a scope the route requires.
    InsufficientScope,
    /// The route needs a stronger or fresher authentication: an mfa_token is attached,
    /// and the body's `expires_in` says how many seconds it lives.
    MfaRequired,
    /// The path of a step-up route is too long to bind into an mfa_token.
    PathTooLong,
    /// The server could not decide (e.g. sealing failed). Fails closed.
    ServerError,
    /// A genuine access token of a session that has ended (logout, refresh-token reuse,
    /// a revoked session, a change of factors): sign in again. See
    /// [`revocation`](crate::revocation).
    SessionEnded,
    /// The replica cannot tell whether the token's session has ended: it has not read
    /// the revocation feed for longer than its staleness bound. Fails closed; retry.
    Unavailable,
}

/// One row of the denial table: the wire facts of one [`DenialKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DenialRow {
    /// The reason.
    pub kind: DenialKind,
    /// The status (step-up may be switched to 401, see
    /// [`GuardBuilder::strict_rfc9470_status`](crate::layer::GuardBuilder::strict_rfc9470_status)).
    pub status: StatusCode,
    /// The body's `error` code.
    pub error: ErrorCode,
    /// The `error` parameter of `WWW-Authenticate`; `None` for a bare `Bearer realm`
    /// challenge.
    pub challenge_error: Option<&'static str>,
    /// Whether the response carries a `WWW-Authenticate` challenge at all.
    pub challenge: bool,
    /// The default `error_description`.
    pub description: &'static str,
    /// The `grpc-status` of the same denial to a gRPC client: 16 `UNAUTHENTICATED` for
    /// a missing, invalid or partial credential, 7 `PERMISSION_DENIED` for a missing
    /// scope and for step-up.
    pub grpc_status: u8,
}

/// gRPC status codes used by the denial table.
mod grpc_code {
    pub(super) const INVALID_ARGUMENT: u8 = 3;
    pub(super) const PERMISSION_DENIED: u8 = 7;
    pub(super) const INTERNAL: u8 = 13;
    pub(super) const UNAVAILABLE: u8 = 14;
    pub(super) const UNAUTHENTICATED: u8 = 16;
}

/// The denial table of DESIGN §4. Every rejection the layer makes is one of these rows.
pub const DENIAL_TABLE: &[DenialRow] = &[
    MISSING_CREDENTIAL,
    INVALID_TOKEN,
    EXPIRED_TOKEN,
    MFA_INCOMPLETE,
    INSUFFICIENT_SCOPE,
    MFA_REQUIRED,
    PATH_TOO_LONG,
    SERVER_ERROR,
    SESSION_ENDED,
    UNAVAILABLE,
];

const MISSING_CREDENTIAL: DenialRow = DenialRow {
    kind: DenialKind::MissingCredential,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::Unauthorized,
    challenge_error: None,
    challenge: true,
    description: "an access token is required",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const INVALID_TOKEN: DenialRow = DenialRow {
    kind: DenialKind::InvalidToken,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::InvalidToken,
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "the access token is invalid",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const EXPIRED_TOKEN: DenialRow = DenialRow {
    kind: DenialKind::ExpiredToken,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::InvalidToken,
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "the access token has expired",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const MFA_INCOMPLETE: DenialRow = DenialRow {
    kind: DenialKind::MfaIncomplete,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::MfaIncomplete,
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "multi-factor authentication is not complete; the partial token is accepted only by the verify endpoint",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const INSUFFICIENT_SCOPE: DenialRow = DenialRow {
    kind: DenialKind::InsufficientScope,
    status: StatusCode::FORBIDDEN,
    error: ErrorCode::InsufficientScope,
    challenge_error: Some("insufficient_scope"),
    challenge: true,
    description: "the access token lacks a required scope",
    grpc_status: grpc_code::PERMISSION_DENIED,
};
const MFA_REQUIRED: DenialRow = DenialRow {
    kind: DenialKind::MfaRequired,
    status: StatusCode::FORBIDDEN,
    error: ErrorCode::MfaRequired,
    challenge_error: Some("insufficient_user_authentication"),
    challenge: true,
    description: "a stronger or more recent authentication is required",
    grpc_status: grpc_code::PERMISSION_DENIED,
};
const PATH_TOO_LONG: DenialRow = DenialRow {
    kind: DenialKind::PathTooLong,
    status: StatusCode::URI_TOO_LONG,
    error: ErrorCode::InvalidRequest,
    challenge_error: None,
    challenge: false,
    description: "the request path is too long for a step-up challenge",
    grpc_status: grpc_code::INVALID_ARGUMENT,
};
const SERVER_ERROR: DenialRow = DenialRow {
    kind: DenialKind::ServerError,
    status: StatusCode::INTERNAL_SERVER_ERROR,
    error: ErrorCode::ServerError,
    challenge_error: None,
    challenge: false,
    description: "the request could not be authorized",
    grpc_status: grpc_code::INTERNAL,
};

const SESSION_ENDED: DenialRow = DenialRow {
    kind: DenialKind::SessionEnded,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::InvalidToken,
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "the session has ended; sign in again",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const UNAVAILABLE: DenialRow = DenialRow {
    kind: DenialKind::Unavailable,
    status: StatusCode::SERVICE_UNAVAILABLE,
    error: ErrorCode::TemporarilyUnavailable,
    challenge_error: None,
    challenge: false,
    description: "the session could not be checked; try again shortly",
    grpc_status: grpc_code::UNAVAILABLE,
};

impl DenialKind {
    /// This reason's row of [`DENIAL_TABLE`].
    pub fn row(self) -> &'static DenialRow {
        match self {
            DenialKind::MissingCredential => &MISSING_CREDENTIAL,
            DenialKind::InvalidToken => &INVALID_TOKEN,
            DenialKind::ExpiredToken => &EXPIRED_TOKEN,
            DenialKind::MfaIncomplete => &MFA_INCOMPLETE,
            DenialKind::InsufficientScope => &INSUFFICIENT_SCOPE,
            DenialKind::MfaRequired => &MFA_REQUIRED,
            DenialKind::PathTooLong => &PATH_TOO_LONG,
            DenialKind::ServerError => &SERVER_ERROR,
            DenialKind::SessionEnded => &SESSION_ENDED,
            DenialKind::Unavailable => &UNAVAILABLE,
        }
    }
}

/// The reason a request was refused, with everything its answer says: the layer decides
/// a `Denial`, then renders it once, as HTTP (a JSON body and a `WWW-Authenticate`
/// challenge) or as gRPC (a Trailers-Only response). It is in the extensions of every
/// denial response, so outer layers and tests can inspect it without parsing the body,
/// and a [`Rejection`](crate::layer::Rejection) hook receives it to render its own answer.
///
/// ```
/// # use tower_stepup::{Denial, DenialKind};
/// # fn check(response: http::Response<()>) {
/// if let Some(denial) = response.extensions().get::<Denial>() {
///     assert_eq!(denial.kind(), DenialKind::MfaRequired);
/// }
/// # }
/// ```
///
/// # Security
/// `Debug` never shows the mfa_token (it prints `<redacted>` in its place): a denial
/// logged with `{:?}` does not hand out a live challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Denial {
    kind: DenialKind,
    description: &'static str,
    status: StatusCode,
    scope: Option<String>,
    acr_values: Option<String>,
    max_age: Option<u64>,
    mfa_token: Option<String>,
    mfa_requirements: Option<MfaRequirements>,
    expires_in: Option<u64>,
    token_error: Option<TokenError>,
}

impl fmt::Debug for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Denial")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .field("status", &self.status)
            .field("scope", &self.scope)
            .field("acr_values", &self.acr_values)
            .field("max_age", &self.max_age)
            .field("mfa_token", &self.mfa_token.as_ref().map(|_| "<redacted>"))
            .field("mfa_requirements", &self.mfa_requirements)
            .field("expires_in", &self.expires_in)
            .field("token_error", &self.token_error)
            .finish()
    }
}

impl Denial {
    /// A denial of `kind` with its row's description and status, and no details.
    pub(crate) fn new(kind: DenialKind) -> Self {
        let row = kind.row();
        Self {
            kind,
            description: row.description,
            status: row.status,
            scope: None,
            acr_values: None,
            max_age: None,
            mfa_token: None,
            mfa_requirements: None,
            expires_in: None,
            token_error: None,
        }
    }

    /// A refused credential: `kind`, with why the verifier refused the token, if one
    /// was presented and verified.
    pub(crate) fn refused(kind: DenialKind, token_error: Option<TokenError>) -> Self {
        Self {
            token_error,
            ..Self::new(kind)
        }
    }

    /// Why the verifier refused the token, for the operator (an unknown `kid`, a wrong
    /// `typ`, issuer or audience, an expired token, …): set on `invalid_token` denials
    /// of a token that was presented. Never sent to the client beyond the RFC 6750
    /// description; the audit event's `reason` says the same
    /// ([`TokenError::reason`]).
    pub fn token_error(&self) -> Option<&TokenError> {
        self.token_error.as_ref()
    }

    /// `insufficient_scope`, naming the scopes the route requires.
    pub(crate) fn insufficient_scope(scope: String) -> Self {
        Self {
            scope: Some(scope),
            ..Self::new(DenialKind::InsufficientScope)
        }
    }

    /// `mfa_required` with its challenge: what is unmet (`description`), the status
    /// (403, or 401 in strict RFC 9470 mode), the `acr_values` and `max_age` asked for,
    /// the sealed mfa_token, the factors to use, and the seconds the mfa_token lives.
    ///
    /// Without [`StepUpChallenge::completion`] the denial is *delegated*: the token's
    /// identity provider performs the second factor, so there is no mfa_token; the body
    /// then names `acr_values` and `max_age` beside the `WWW-Authenticate` challenge.
    pub(crate) fn step_up(challenge: StepUpChallenge) -> Self {
        let (mfa_token, mfa_requirements, expires_in) = match challenge.completion {
            Some(c) => (
                Some(c.mfa_token),
                Some(c.mfa_requirements),
                Some(c.expires_in),
            ),
            None => (None, None, None),
        };
        Self {
            description: challenge.description,
            status: challenge.status,
            acr_values: challenge.acr_values,
            max_age: challenge.max_age,
            mfa_token,
            mfa_requirements,
            expires_in,
            ..Self::new(DenialKind::MfaRequired)
        }
    }

    /// Whether this is a delegated step-up: `mfa_required` without an mfa_token, for a
    /// token of an identity provider that performs the second factor itself. The client
    /// goes back to it with the `acr_values` and `max_age` of the challenge (RFC 9470 §4).
    pub fn is_delegated(&self) -> bool {
        self.kind == DenialKind::MfaRequired && self.mfa_token.is_none()
    }

    /// The reason.
    pub fn kind(&self) -> DenialKind {
        self.kind
    }

    /// The `error_description` that was sent.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// The HTTP status of the default rendering (the row's, or 401 for step-up in strict
    /// RFC 9470 mode).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` code of the body (the row's).
    pub fn error(&self) -> ErrorCode {
        self.kind.row().error
    }

    /// The scopes the route requires (space-separated), for `insufficient_scope`.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `acr_values` a step-up challenge asks for (space-separated).
    pub fn acr_values(&self) -> Option<&str> {
        self.acr_values.as_deref()
    }

    /// The `max_age` (seconds) a step-up challenge asks for.
    pub fn max_age(&self) -> Option<u64> {
        self.max_age
    }

    /// The mfa_token of a step-up denial (the same as in the body).
    pub fn mfa_token(&self) -> Option<&str> {
        self.mfa_token.as_deref()
    }

    /// The factors a step-up denial asks for.
    pub fn mfa_requirements(&self) -> Option<&MfaRequirements> {
        self.mfa_requirements.as_ref()
    }

    /// Seconds the mfa_token of a step-up denial lives (the body's `expires_in`: the
    /// guard's [`mfa_token_ttl`](crate::layer::GuardBuilder::mfa_token_ttl)).
    pub fn expires_in(&self) -> Option<u64> {
        self.expires_in
    }

    /// Whether the token was genuine but past its `exp` (the body's `token_expired`):
    /// refresh it, rather than signing in again.
    pub fn token_expired(&self) -> bool {
        self.kind == DenialKind::ExpiredToken
    }
}

/// What a step-up denial says beyond its row (see [`Denial::step_up`]).
pub(crate) struct StepUpChallenge {
    pub(crate) description: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) acr_values: Option<String>,
    pub(crate) max_age: Option<u64>,
    /// How to complete it here; `None`: delegated to the token's identity provider.
    pub(crate) completion: Option<LocalCompletion>,
}

/// A step-up completed at this server's verify endpoint.
pub(crate) struct LocalCompletion {
    pub(crate) mfa_token: String,
    pub(crate) mfa_requirements: MfaRequirements,
    pub(crate) expires_in: u64,
}

/// The factors a client is asked to use (`challenge`) or to set up first (`enroll`).
///
/// Serialised as `{"challenge":[{"type":"otp"}]}` or `{"enroll":[{"type":"otp"}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaRequirements {
    /// Factors the user has: prove one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenge: Vec<FactorType>,
    /// Factors the user must enroll first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enroll: Vec<FactorType>,
}

impl MfaRequirements {
    /// Prove one of these factors.
    pub fn challenge<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        Self {
            challenge: types.into_iter().map(FactorType::new).collect(),
            enroll: Vec::new(),
        }
    }

    /// Enroll one of these factors first.
    pub fn enroll<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        Self {
            challenge: Vec::new(),
            enroll: types.into_iter().map(FactorType::new).collect(),
        }
    }
}

/// A factor type, e.g. `otp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorType {
    /// The type, as in Auth0's `mfa_requirements`: `otp`, `recovery-code`, …
    #[serde(rename = "type")]
    pub kind: String,
}

impl FactorType {
    /// A factor of type `kind`.
    pub fn new(kind: impl Into<String>) -> Self {
        Self { kind: kind.into() }
    }
}

/// The JSON body of `denial`: `error` and `error_description`; a step-up denial adds
/// `expires_in`, `mfa_token` and `mfa_requirements` (a delegated one `acr_values` and
/// `max_age` instead), an expired token `token_expired`.
pub(crate) fn json_body(denial: &Denial) -> Bytes {
    // A sorted map: the bytes are the same whether or not serde_json's `preserve_order`
    // is on (another crate of the application may turn it on).
    let mut body: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    body.insert("error", denial.error().as_str().into());
    body.insert("error_description", denial.description.into());
    if let Some(token) = &denial.mfa_token {
        body.insert("mfa_token", token.as_str().into());
        let requirements = denial.mfa_requirements.clone().unwrap_or_default();
        body.insert(
            "mfa_requirements",
            serde_json::to_value(requirements).unwrap_or_default(),
        );
        if let Some(expires_in) = denial.expires_in {
            body.insert(wire::EXPIRES_IN, expires_in.into());
        }
    }
    if denial.is_delegated() {
        if let Some(acr_values) = &denial.acr_values {
            body.insert("acr_values", acr_values.as_str().into());
        }
        if let Some(max_age) = denial.max_age {
            body.insert("max_age", max_age.into());
        }
    }
    if denial.token_expired() {
        body.insert(wire::TOKEN_EXPIRED, true.into());
    }
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// The `WWW-Authenticate` challenge of `denial`, if its row has one. Every value put in
/// it was checked at configuration time (realm, scopes, acr values) or is a constant.
pub(crate) fn www_authenticate(denial: &Denial, realm: &str) -> Option<HeaderValue> {
    let row = denial.kind.row();
    let challenge = match row.challenge_error {
        _ if !row.challenge => return None,
        None => format!("Bearer realm=\"{realm}\""),
        Some(error) => {
            let mut c = format!("Bearer error=\"{error}\"");
            if let Some(scope) = &denial.scope {
                c.push_str(&format!(", scope=\"{scope}\""));
            } else {
                c.push_str(&format!(", error_description=\"{}\"", denial.description));
            }
            if let Some(acr) = &denial.acr_values {
                c.push_str(&format!(", acr_values=\"{acr}\""));
            }
            if let Some(max_age) = denial.max_age {
                c.push_str(&format!(", max_age={max_age}"));
            }
            c
        }
    };
    HeaderValue::try_from(challenge).ok()
}

/// The HTTP rendering of `denial`: its status, the JSON body, `Cache-Control:
/// no-store`, the `WWW-Authenticate` challenge, and the `Denial` in the extensions.
pub(crate) fn http_response(denial: Denial, realm: &str) -> Response<Bytes> {
    let mut response = Response::new(json_body(&denial));
    *response.status_mut() = denial.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = www_authenticate(&denial, realm) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    if denial.kind == DenialKind::Unavailable {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response.extensions_mut().insert(denial);
    response
}

/// Whether a request's denials take the gRPC form: a `POST` (every gRPC call is one)
/// with `content-type: application/grpc`, `application/grpc+proto`, … Any other method
/// gets the HTTP denial, whatever its content type: the gRPC form is an HTTP 200, and a
/// `GET` answered 200 is the kind of response a cache keeps.
pub(crate) fn wants_grpc_denial(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method == http::Method::POST && is_grpc(headers)
}

/// Whether a request says it is gRPC (`content-type: application/grpc`,
/// `application/grpc+proto`, …).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..16))
        .is_some_and(|v| v.eq_ignore_ascii_case("application/grpc"))
        && headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.as_bytes().get(16))
            .is_none_or(|b| matches!(b, b'+' | b';'))
}

/// The gRPC metadata key of the JSON details (the HTTP denial's body).
pub const GRPC_DETAILS_HEADER: &str = "stepup-details";
/// The gRPC metadata key of the mfa_token of a step-up denial.
pub const GRPC_MFA_TOKEN_HEADER: &str = "mfa-token";

/// The gRPC rendering of `denial`, a Trailers-Only response: HTTP 200, no body,
/// `cache-control: no-store`, `grpc-status` from the table, `grpc-message`, and as
/// metadata the `www-authenticate` challenge, the `mfa-token` and the JSON body (the
/// HTTP rendering's) as `stepup-details`; the `Denial` in the extensions.
pub(crate) fn grpc_response(denial: Denial, realm: &str) -> Response<Bytes> {
    let row = denial.kind.row();
    let mut out = Response::new(Bytes::new());
    let headers = out.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    // An HTTP 200 that may carry an mfa_token: no cache may keep it (like the HTTP
    // denial, which says the same).
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(row.grpc_status)));
    if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(denial.description)) {
        headers.insert("grpc-message", message);
    }
    if let Some(challenge) = www_authenticate(&denial, realm) {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    if let Some(token) = denial
        .mfa_token()
        .and_then(|t| HeaderValue::try_from(t).ok())
    {
        headers.insert(GRPC_MFA_TOKEN_HEADER, token);
    }
    // JSON from serde_json: printable ASCII unless a configured string was not (then
    // the details are left out rather than sent broken).
    if let Ok(details) = HeaderValue::from_bytes(&json_body(&denial)) {
        headers.insert(GRPC_DETAILS_HEADER, details);
    }
    out.extensions_mut().insert(denial);
    out
}

/// `grpc-message` encoding: percent-encode every byte outside printable ASCII, and `%`.
fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let check = |ct: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_grpc(&h)
        };
        assert!(check("application/grpc"));
        assert!(check("application/grpc+proto"));
        assert!(check("Application/GRPC+json"));
        assert!(check("application/grpc;charset=utf-8"));
        assert!(!check("application/grpc-web"));
        assert!(!check("application/grpcx"));
        assert!(!check("application/json"));
        assert!(!is_grpc(&http::HeaderMap::new()));
    }

    #[test]
    fn only_a_grpc_post_gets_the_grpc_denial() {
        let mut h = http::HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        assert!(wants_grpc_denial(&http::Method::POST, &h));
        for method in [
            http::Method::GET,
            http::Method::HEAD,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
            http::Method::OPTIONS,
        ] {
            assert!(!wants_grpc_denial(&method, &h), "{method}");
        }
        let json = http::HeaderMap::new();
        assert!(!wants_grpc_denial(&http::Method::POST, &json));
    }

    fn step_up(token: &str) -> Denial {
        Denial::step_up(StepUpChallenge {
            description: "a second factor is required for this resource",
            status: StatusCode::FORBIDDEN,
            acr_values: None,
            max_age: Some(300),
            completion: Some(LocalCompletion {
                mfa_token: token.to_owned(),
                mfa_requirements: MfaRequirements::challenge(["otp"]),
                expires_in: 120,
            }),
        })
    }

    #[test]
    fn a_delegated_step_up_names_what_to_ask_the_provider_for_and_has_no_mfa_token() {
        let denial = Denial::step_up(StepUpChallenge {
            description: "a second factor is required for this resource",
            status: StatusCode::FORBIDDEN,
            acr_values: Some("urn:idp:mfa".to_owned()),
            max_age: Some(300),
            completion: None,
        });
        assert!(denial.is_delegated());
        assert!(!step_up("t").is_delegated());
        let body: serde_json::Value = serde_json::from_slice(&json_body(&denial)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "mfa_required",
                "error_description": "a second factor is required for this resource",
                "acr_values": "urn:idp:mfa",
                "max_age": 300,
            })
        );
        let challenge = www_authenticate(&denial, "api").unwrap();
        assert_eq!(
            challenge,
            "Bearer error=\"insufficient_user_authentication\", error_description=\"a second factor is required for this resource\", acr_values=\"urn:idp:mfa\", max_age=300"
        );
        let grpc = grpc_response(denial, "api");
        assert!(grpc.headers().get(GRPC_MFA_TOKEN_HEADER).is_none());
        assert_eq!(grpc.headers()["grpc-status"], "7");
    }

    #[test]
    fn grpc_denial_is_not_cacheable() {
        for kind in DENIAL_TABLE.iter().map(|row| row.kind) {
            let token = "sealed.mfa.token";
            let denial = if kind == DenialKind::MfaRequired {
                step_up(token)
            } else {
                Denial::new(kind)
            };
            let grpc = grpc_response(denial, "test");
            assert_eq!(grpc.status(), StatusCode::OK, "{kind:?}");
            assert_eq!(
                grpc.headers().get(CACHE_CONTROL).map(HeaderValue::as_bytes),
                Some(&b"no-store"[..]),
                "{kind:?}"
            );
            if kind == DenialKind::MfaRequired {
                assert_eq!(
                    grpc.headers()
                        .get(GRPC_MFA_TOKEN_HEADER)
                        .map(HeaderValue::as_bytes),
                    Some(token.as_bytes())
                );
            }
        }
    }

    fn step_up_denial(token: &str) -> Denial {
        let res = http_response(step_up(token), "test");
        res.extensions().get::<Denial>().cloned().unwrap()
    }

    #[test]
    fn denial_debug_does_not_show_the_mfa_token() {
        let token = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0.secret-part";
        let denial = step_up_denial(token);
        assert_eq!(
            denial.mfa_token(),
            Some(token),
            "the accessor still gives it"
        );
        let printed = format!("{denial:?}");
        assert!(!printed.contains(token), "{printed}");
        assert!(!printed.contains("secret-part"), "{printed}");
        assert!(!printed.contains("eyJ"), "{printed}");
        assert!(
            printed.contains("mfa_token: Some(\"<redacted>\")"),
            "{printed}"
        );
        assert!(printed.contains("MfaRequired"), "{printed}");
        let pretty = format!("{denial:#?}");
        assert!(!pretty.contains("secret-part"), "{pretty}");

        let plain = http_response(Denial::new(DenialKind::MissingCredential), "test");
        let printed = format!("{:?}", plain.extensions().get::<Denial>().unwrap());
        assert!(printed.contains("mfa_token: None"), "{printed}");
    }

    fn body_of(denial: &Denial) -> serde_json::Value {
        serde_json::from_slice(&json_body(denial)).unwrap()
    }

    #[test]
    fn step_up_body_says_how_long_the_mfa_token_lives() {
        let body = body_of(&step_up("t"));
        assert_eq!(body["expires_in"], 120);
        assert_eq!(body["error"], "mfa_required");
        for kind in DENIAL_TABLE.iter().map(|row| row.kind) {
            let body = body_of(&Denial::new(kind));
            assert!(body.get("expires_in").is_none(), "{kind:?}");
        }
    }

    #[test]
    fn only_an_expired_token_says_token_expired() {
        for kind in DENIAL_TABLE.iter().map(|row| row.kind) {
            let denial = Denial::new(kind);
            let body = body_of(&denial);
            if kind == DenialKind::ExpiredToken {
                assert!(denial.token_expired());
                assert_eq!(body["token_expired"], true);
                assert_eq!(body["error"], "invalid_token");
            } else {
                assert!(!denial.token_expired(), "{kind:?}");
                assert!(body.get("token_expired").is_none(), "{kind:?}");
            }
        }
        assert!(body_of(&step_up("t")).get("token_expired").is_none());
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("a b"), "a b");
        assert_eq!(grpc_percent_encode("100%"), "100%25");
        assert_eq!(grpc_percent_encode("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn every_row_maps_to_a_grpc_status() {
        for row in DENIAL_TABLE {
            let expected = match row.status {
                StatusCode::UNAUTHORIZED => 16,
                StatusCode::FORBIDDEN => 7,
                StatusCode::URI_TOO_LONG => 3,
                StatusCode::SERVICE_UNAVAILABLE => 14,
                _ => 13,
            };
            assert_eq!(row.grpc_status, expected, "{:?}", row.kind);
        }
    }
}
