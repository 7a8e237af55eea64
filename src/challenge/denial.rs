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
//!
//! Two rows are DPoP's (RFC 9449), given only by a guard with DPoP enabled:
//!
//! | denial | status | `error` | challenge |
//! | --- | --- | --- | --- |
//! | [`InvalidDpopProof`](DenialKind::InvalidDpopProof) | 401 | `invalid_dpop_proof` | `DPoP algs="…", error="invalid_dpop_proof", error_description="…"` |
//! | [`UseDpopNonce`](DenialKind::UseDpopNonce) | 401 | `use_dpop_nonce` | `DPoP algs="…", error="use_dpop_nonce", error_description="…"`, and the server nonce in the `DPoP-Nonce` header |
//!
//! # Challenges when DPoP is enabled
//!
//! Without DPoP every challenge is one `Bearer …` value, byte for byte as it has always
//! been. With DPoP enabled on the guard ([`Denial::dpop_algs`] is set):
//!
//! - a request that **used DPoP** (`Authorization: DPoP …`), and every DPoP row, gets one
//!   `DPoP algs="…", error="…", …` challenge carrying the row's parameters (a step-up's
//!   `error="insufficient_user_authentication"`, `acr_values` and `max_age` included),
//!   and **no** `Bearer` challenge. RFC 9449 §7.1 puts the error of a DPoP-bound token in
//!   the DPoP scheme; a `Bearer` challenge beside it would invite the client to resend its
//!   bound token as Bearer, which the layer refuses anyway (a downgrade that can only
//!   fail), and would put one error in two schemes, leaving the client to guess which is
//!   meant;
//! - any other request keeps its `Bearer …` challenge first, unchanged, and gets a bare
//!   `DPoP algs="…"` challenge after it (RFC 9449 §7.2: a server that accepts both
//!   schemes offers both). The two are two `WWW-Authenticate` field lines, not one
//!   comma-joined value: RFC 9110 §11.6.1 allows either, and warns that a value with
//!   several challenges is hard to parse; separate lines leave the first value exactly
//!   what a Bearer-only client that reads one header value has always read. The crate's
//!   client reads every line.
//!
//! A server nonce given to the denial ([`Denial::dpop_nonce`]) goes in a `DPoP-Nonce`
//! header (gRPC: `dpop-nonce` metadata); challenges are the `www-authenticate` metadata
//! values in the same order.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::dpop::DpopError;
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
    /// The request's DPoP proof is missing, malformed, or does not match the request or
    /// its token (RFC 9449 §4.3); [`Denial::dpop_error`] says which check failed.
    InvalidDpopProof,
    /// The DPoP proof lacks the server's current nonce: retry with the one in the
    /// `DPoP-Nonce` header ([`Denial::dpop_nonce`]; RFC 9449 §8).
    UseDpopNonce,
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
    INVALID_DPOP_PROOF,
    USE_DPOP_NONCE,
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
const INVALID_DPOP_PROOF: DenialRow = DenialRow {
    kind: DenialKind::InvalidDpopProof,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::InvalidDpopProof,
    challenge_error: Some("invalid_dpop_proof"),
    challenge: true,
    description: "the DPoP proof is invalid",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const USE_DPOP_NONCE: DenialRow = DenialRow {
    kind: DenialKind::UseDpopNonce,
    status: StatusCode::UNAUTHORIZED,
    error: ErrorCode::UseDpopNonce,
    challenge_error: Some("use_dpop_nonce"),
    challenge: true,
    description: "the DPoP proof must carry the nonce of the DPoP-Nonce header",
    grpc_status: grpc_code::UNAUTHENTICATED,
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
            DenialKind::InvalidDpopProof => &INVALID_DPOP_PROOF,
            DenialKind::UseDpopNonce => &USE_DPOP_NONCE,
        }
    }

    /// Whether this is one of DPoP's rows (`invalid_dpop_proof`, `use_dpop_nonce`), whose
    /// challenge is always in the `DPoP` scheme.
    pub fn is_dpop(self) -> bool {
        matches!(
            self,
            DenialKind::InvalidDpopProof | DenialKind::UseDpopNonce
        )
    }
}

/// The authentication scheme of the request a denial answers, as far as DPoP cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestScheme {
    /// `Authorization: Bearer …`, or no credential.
    Bearer,
    /// `Authorization: DPoP …`.
    Dpop,
}

/// The response header that carries a server nonce (RFC 9449 §8.1); also the gRPC
/// metadata key.
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";

/// The longest server nonce a denial sends, in bytes.
const MAX_DPOP_NONCE_LEN: usize = 1024;

/// RFC 9449 §8.1: `nonce = 1*NQCHAR`, `NQCHAR = %x21 / %x23-5B / %x5D-7E`.
fn is_dpop_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_DPOP_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
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
    /// What DPoP adds; boxed, so a denial without DPoP stays small (the layer's
    /// decision carries one by value).
    dpop: Option<Box<DpopFacts>>,
}

/// The DPoP facts of a denial.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct DpopFacts {
    /// The guard's `algs="…"` parameter when DPoP is enabled.
    algs: Option<String>,
    used: bool,
    nonce: Option<String>,
    error: Option<DpopError>,
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
            .field("dpop", &self.dpop)
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
            dpop: None,
        }
    }

    /// This denial with another description than its row's (the body's
    /// `error_description` and the challenge's).
    pub(crate) fn described(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// A refused DPoP proof: `use_dpop_nonce` when only the server nonce is missing or
    /// stale ([`DpopError::is_nonce_error`]), `invalid_dpop_proof` otherwise. The request
    /// counts as one that used DPoP. Give the nonce with [`Denial::with_dpop_nonce`] and
    /// the algorithms with [`Denial::with_dpop`].
    pub(crate) fn dpop_refused(error: DpopError) -> Self {
        let kind = if error.is_nonce_error() {
            DenialKind::UseDpopNonce
        } else {
            DenialKind::InvalidDpopProof
        };
        Self {
            dpop: Some(Box::new(DpopFacts {
                used: true,
                error: Some(error),
                ..DpopFacts::default()
            })),
            ..Self::new(kind)
        }
    }

    /// This denial from a guard with DPoP enabled: `algs` is the challenge's `algs`
    /// parameter as [`DpopConfig::algs_header`](crate::dpop::DpopConfig::algs_header)
    /// writes it (`algs="ES256 EdDSA"`), `request` the scheme the request used. It
    /// decides the challenges (see the [module docs](self)).
    pub(crate) fn with_dpop(mut self, algs: impl Into<String>, request: RequestScheme) -> Self {
        let dpop = self.dpop.get_or_insert_with(Box::default);
        dpop.algs = Some(algs.into());
        dpop.used |= request == RequestScheme::Dpop;
        self
    }

    /// A server nonce to send in the `DPoP-Nonce` header (required by `use_dpop_nonce`,
    /// allowed on any denial, RFC 9449 §8). A value that is not `1*NQCHAR` (at most
    /// 1 KiB) is not a nonce and is left out; [`Denial::dpop_nonce`] then says `None`.
    pub(crate) fn with_dpop_nonce(mut self, nonce: impl Into<String>) -> Self {
        let nonce = nonce.into();
        self.dpop.get_or_insert_with(Box::default).nonce = is_dpop_nonce(&nonce).then_some(nonce);
        self
    }

    /// The `algs="…"` parameter of the guard's DPoP challenge; `None` when the guard
    /// does not accept DPoP.
    pub fn dpop_algs(&self) -> Option<&str> {
        self.dpop.as_ref()?.algs.as_deref()
    }

    /// Whether the request used DPoP (then its challenge is in the `DPoP` scheme only).
    pub fn dpop_used(&self) -> bool {
        self.dpop.as_ref().is_some_and(|d| d.used)
    }

    /// The server nonce sent in the `DPoP-Nonce` header, if any.
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop.as_ref()?.nonce.as_deref()
    }

    /// Which check of the DPoP proof failed, for the operator; set on `invalid_dpop_proof`
    /// and `use_dpop_nonce` denials. The client is told only the row's description.
    pub fn dpop_error(&self) -> Option<DpopError> {
        self.dpop.as_ref()?.error
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

/// The `WWW-Authenticate` challenges of `denial`, in order: none when its row has no
/// challenge; one `Bearer …` without DPoP; with DPoP, see the [module docs](self). Every
/// value put in them was checked at configuration time (realm, scopes, acr values, algs)
/// or is a constant; a value that still is not a valid header is left out.
pub(crate) fn www_authenticate(denial: &Denial, realm: &str) -> Vec<HeaderValue> {
    let row = denial.kind.row();
    if !row.challenge {
        return Vec::new();
    }
    let dpop_first = denial.dpop_used() || denial.kind.is_dpop();
    let challenges = match (denial.dpop_algs(), dpop_first) {
        (None, false) => vec![bearer_challenge(denial, realm)],
        (algs, true) => {
            let mut c = String::from("DPoP");
            let mut sep = " ";
            if let Some(algs) = algs {
                c.push_str(sep);
                c.push_str(algs);
                sep = ", ";
            }
            if let Some(error) = row.challenge_error {
                c.push_str(sep);
                c.push_str(&error_params(denial, error));
            }
            vec![c]
        }
        (Some(algs), false) => vec![bearer_challenge(denial, realm), format!("DPoP {algs}")],
    };
    challenges
        .into_iter()
        .filter_map(|c| HeaderValue::try_from(c).ok())
        .collect()
}

/// The `Bearer` challenge of a row that has one (exactly the bytes of the crate before
/// DPoP).
fn bearer_challenge(denial: &Denial, realm: &str) -> String {
    match denial.kind.row().challenge_error {
        None => format!("Bearer realm=\"{realm}\""),
        Some(error) => format!("Bearer {}", error_params(denial, error)),
    }
}

/// The auth-params of a challenge with an `error`: `error`, then `scope` or
/// `error_description`, then `acr_values` and `max_age` when the denial asks for them.
fn error_params(denial: &Denial, error: &str) -> String {
    let mut c = format!("error=\"{error}\"");
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

/// The HTTP rendering of `denial`: its status, the JSON body, `Cache-Control:
/// no-store`, the `WWW-Authenticate` challenges, a `DPoP-Nonce`, and the `Denial` in the
/// extensions.
pub(crate) fn http_response(denial: Denial, realm: &str) -> Response<Bytes> {
    let mut response = Response::new(json_body(&denial));
    *response.status_mut() = denial.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for value in www_authenticate(&denial, realm) {
        headers.append(WWW_AUTHENTICATE, value);
    }
    insert_dpop_nonce(headers, &denial);
    if denial.kind == DenialKind::Unavailable {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response.extensions_mut().insert(denial);
    response
}

/// The `DPoP-Nonce` header (or metadata) of a denial that carries a server nonce.
fn insert_dpop_nonce(headers: &mut http::HeaderMap, denial: &Denial) {
    if let Some(nonce) = denial
        .dpop_nonce()
        .and_then(|n| HeaderValue::try_from(n).ok())
    {
        headers.insert(DPOP_NONCE_HEADER, nonce);
    }
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
/// metadata the `www-authenticate` challenges (the HTTP rendering's, in its order), the
/// `dpop-nonce`, the `mfa-token` and the JSON body (the HTTP rendering's) as
/// `stepup-details`; the `Denial` in the extensions.
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
    for challenge in www_authenticate(&denial, realm) {
        headers.append(WWW_AUTHENTICATE, challenge);
    }
    insert_dpop_nonce(headers, &denial);
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
        let challenge = www_authenticate(&denial, "api");
        assert_eq!(
            challenge,
            [
            "Bearer error=\"insufficient_user_authentication\", error_description=\"a second factor is required for this resource\", acr_values=\"urn:idp:mfa\", max_age=300"
            ]
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

    const ALGS: &str = r#"algs="ES256 EdDSA""#;

    fn challenges(headers: &http::HeaderMap) -> Vec<&str> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn without_dpop_a_denial_has_one_bearer_challenge_and_no_nonce() {
        for row in DENIAL_TABLE.iter().filter(|row| !row.kind.is_dpop()) {
            let res = http_response(Denial::new(row.kind), "test");
            let got = challenges(res.headers());
            assert_eq!(got.len(), usize::from(row.challenge), "{:?}", row.kind);
            assert!(got.iter().all(|c| c.starts_with("Bearer ")), "{got:?}");
            assert!(res.headers().get(DPOP_NONCE_HEADER).is_none());
            let denial = res.extensions().get::<Denial>().unwrap();
            assert_eq!((denial.dpop_algs(), denial.dpop_used()), (None, false));
        }
        let res = http_response(Denial::new(DenialKind::MissingCredential), "test");
        assert_eq!(challenges(res.headers()), [r#"Bearer realm="test""#]);
    }

    #[test]
    fn a_bearer_request_keeps_its_bearer_challenge_first_then_a_bare_dpop_one() {
        let cases = [
            (DenialKind::MissingCredential, r#"Bearer realm="test""#),
            (
                DenialKind::InvalidToken,
                r#"Bearer error="invalid_token", error_description="the access token is invalid""#,
            ),
            (
                DenialKind::SessionEnded,
                r#"Bearer error="invalid_token", error_description="the session has ended; sign in again""#,
            ),
        ];
        for (kind, bearer) in cases {
            let denial = Denial::new(kind).with_dpop(ALGS, RequestScheme::Bearer);
            assert!(!denial.dpop_used());
            let res = http_response(denial, "test");
            assert_eq!(
                challenges(res.headers()),
                [bearer, r#"DPoP algs="ES256 EdDSA""#],
                "{kind:?}"
            );
            // A reader of one value sees the Bearer challenge, unchanged.
            assert_eq!(res.headers()[WWW_AUTHENTICATE], bearer);
        }
        let scope = Denial::insufficient_scope("billing:read".into())
            .with_dpop(ALGS, RequestScheme::Bearer);
        assert_eq!(
            www_authenticate(&scope, "test"),
            [
                r#"Bearer error="insufficient_scope", scope="billing:read""#,
                r#"DPoP algs="ES256 EdDSA""#
            ]
        );
        // Rows without a challenge stay without one.
        for kind in [
            DenialKind::PathTooLong,
            DenialKind::ServerError,
            DenialKind::Unavailable,
        ] {
            let denial = Denial::new(kind).with_dpop(ALGS, RequestScheme::Dpop);
            assert!(www_authenticate(&denial, "test").is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn a_dpop_request_gets_only_the_dpop_challenge_with_the_rows_error() {
        let denial = Denial::new(DenialKind::InvalidToken).with_dpop(ALGS, RequestScheme::Dpop);
        assert!(denial.dpop_used());
        let res = http_response(denial, "test");
        assert_eq!(
            challenges(res.headers()),
            [
                r#"DPoP algs="ES256 EdDSA", error="invalid_token", error_description="the access token is invalid""#
            ]
        );
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let scope = Denial::insufficient_scope("billing:read admin".into())
            .with_dpop(ALGS, RequestScheme::Dpop);
        assert_eq!(
            www_authenticate(&scope, "test"),
            [r#"DPoP algs="ES256 EdDSA", error="insufficient_scope", scope="billing:read admin""#]
        );
        // The expired token keeps its body flag in the DPoP scheme too.
        let expired = Denial::new(DenialKind::ExpiredToken).with_dpop(ALGS, RequestScheme::Dpop);
        assert_eq!(body_of(&expired)["token_expired"], true);
    }

    #[test]
    fn a_step_up_of_a_dpop_request_is_in_the_dpop_scheme() {
        let local = step_up("sealed.mfa.token").with_dpop(ALGS, RequestScheme::Dpop);
        let res = http_response(local, "test");
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenges(res.headers()),
            [
                r#"DPoP algs="ES256 EdDSA", error="insufficient_user_authentication", error_description="a second factor is required for this resource", max_age=300"#
            ]
        );
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(body["mfa_token"], "sealed.mfa.token");
        assert_eq!(body["error"], "mfa_required");

        let delegated = Denial::step_up(StepUpChallenge {
            description: "a second factor is required for this resource",
            status: StatusCode::UNAUTHORIZED,
            acr_values: Some("urn:idp:mfa phr".to_owned()),
            max_age: Some(60),
            completion: None,
        })
        .with_dpop(ALGS, RequestScheme::Dpop);
        assert_eq!(
            www_authenticate(&delegated, "test"),
            [
                r#"DPoP algs="ES256 EdDSA", error="insufficient_user_authentication", error_description="a second factor is required for this resource", acr_values="urn:idp:mfa phr", max_age=60"#
            ]
        );
        // The same step-up of a Bearer request: Bearer first, as before, then DPoP.
        let bearer = step_up("t").with_dpop(ALGS, RequestScheme::Bearer);
        assert_eq!(
            www_authenticate(&bearer, "test"),
            [
                r#"Bearer error="insufficient_user_authentication", error_description="a second factor is required for this resource", max_age=300"#,
                r#"DPoP algs="ES256 EdDSA""#
            ]
        );
    }

    #[test]
    fn a_refused_proof_is_invalid_dpop_proof_in_the_dpop_scheme() {
        let denial = Denial::dpop_refused(DpopError::WrongUrl).with_dpop(ALGS, RequestScheme::Dpop);
        assert_eq!(denial.kind(), DenialKind::InvalidDpopProof);
        assert_eq!(denial.dpop_error(), Some(DpopError::WrongUrl));
        assert!(denial.dpop_used());
        let res = http_response(denial, "test");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenges(res.headers()),
            [
                r#"DPoP algs="ES256 EdDSA", error="invalid_dpop_proof", error_description="the DPoP proof is invalid""#
            ]
        );
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "invalid_dpop_proof",
                "error_description": "the DPoP proof is invalid",
            })
        );
        assert!(res.headers().get(DPOP_NONCE_HEADER).is_none());
        // Even a request that said Bearer (a proof with a Bearer token): the DPoP rows'
        // errors exist only in the DPoP scheme.
        let odd = Denial::new(DenialKind::InvalidDpopProof).with_dpop(ALGS, RequestScheme::Bearer);
        assert_eq!(
            www_authenticate(&odd, "test"),
            [
                r#"DPoP algs="ES256 EdDSA", error="invalid_dpop_proof", error_description="the DPoP proof is invalid""#
            ]
        );
        // Every check but the nonce's is invalid_dpop_proof.
        for error in [DpopError::Missing, DpopError::WrongAth, DpopError::TooOld] {
            assert_eq!(
                Denial::dpop_refused(error).kind(),
                DenialKind::InvalidDpopProof
            );
        }
    }

    #[test]
    fn a_nonce_challenge_carries_the_server_nonce() {
        for error in [DpopError::MissingNonce, DpopError::WrongNonce] {
            let denial = Denial::dpop_refused(error)
                .with_dpop(ALGS, RequestScheme::Dpop)
                .with_dpop_nonce("eyJ7S_zG.8Xv-2~!");
            assert_eq!(denial.kind(), DenialKind::UseDpopNonce);
            let res = http_response(denial, "test");
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(res.headers()[DPOP_NONCE_HEADER], "eyJ7S_zG.8Xv-2~!");
            assert_eq!(res.headers().get_all(DPOP_NONCE_HEADER).iter().count(), 1);
            assert_eq!(
                challenges(res.headers()),
                [
                    r#"DPoP algs="ES256 EdDSA", error="use_dpop_nonce", error_description="the DPoP proof must carry the nonce of the DPoP-Nonce header""#
                ]
            );
            let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
            assert_eq!(body["error"], "use_dpop_nonce");
        }
        // A fresh nonce may ride on any denial.
        let other = Denial::new(DenialKind::MfaIncomplete)
            .with_dpop(ALGS, RequestScheme::Dpop)
            .with_dpop_nonce("n1");
        assert_eq!(http_response(other, "t").headers()[DPOP_NONCE_HEADER], "n1");
        // Not a nonce (RFC 9449 §8.1: 1*NQCHAR): left out, never sent broken.
        let too_long = "a".repeat(MAX_DPOP_NONCE_LEN + 1);
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\nb", too_long.as_str()] {
            let denial = Denial::dpop_refused(DpopError::MissingNonce).with_dpop_nonce(bad);
            assert_eq!(denial.dpop_nonce(), None, "{bad:?}");
            let res = http_response(denial, "t");
            assert!(res.headers().get(DPOP_NONCE_HEADER).is_none(), "{bad:?}");
        }
        let longest = "a".repeat(MAX_DPOP_NONCE_LEN);
        assert!(Denial::new(DenialKind::UseDpopNonce)
            .with_dpop_nonce(longest)
            .dpop_nonce()
            .is_some());
    }

    #[test]
    fn grpc_metadata_carries_the_same_challenges_and_nonce() {
        let grpc_challenges = |denial: Denial| -> Vec<String> {
            let res = grpc_response(denial, "test");
            assert_eq!(res.status(), StatusCode::OK);
            challenges(res.headers())
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let bearer = Denial::new(DenialKind::InvalidToken).with_dpop(ALGS, RequestScheme::Bearer);
        assert_eq!(
            grpc_challenges(bearer.clone()),
            www_authenticate(&bearer, "test")
        );
        assert_eq!(grpc_challenges(bearer).len(), 2);
        let dpop = step_up("t").with_dpop(ALGS, RequestScheme::Dpop);
        assert_eq!(
            grpc_challenges(dpop),
            [
                r#"DPoP algs="ES256 EdDSA", error="insufficient_user_authentication", error_description="a second factor is required for this resource", max_age=300"#
            ]
        );
        let nonce = Denial::dpop_refused(DpopError::WrongNonce)
            .with_dpop(ALGS, RequestScheme::Dpop)
            .with_dpop_nonce("n-2");
        let res = grpc_response(nonce, "test");
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()[DPOP_NONCE_HEADER], "n-2");
        assert_eq!(
            challenges(res.headers()),
            [
                r#"DPoP algs="ES256 EdDSA", error="use_dpop_nonce", error_description="the DPoP proof must carry the nonce of the DPoP-Nonce header""#
            ]
        );
        let details: serde_json::Value =
            serde_json::from_slice(res.headers()[GRPC_DETAILS_HEADER].as_bytes()).unwrap();
        assert_eq!(details["error"], "use_dpop_nonce");
        // Without DPoP: one Bearer value, no nonce.
        let plain = grpc_response(Denial::new(DenialKind::InvalidToken), "test");
        assert_eq!(challenges(plain.headers()).len(), 1);
        assert!(plain.headers().get(DPOP_NONCE_HEADER).is_none());
    }

    #[test]
    fn the_debug_form_shows_the_dpop_facts() {
        let denial = Denial::dpop_refused(DpopError::WrongAth)
            .with_dpop(ALGS, RequestScheme::Dpop)
            .with_dpop_nonce("n");
        let printed = format!("{denial:?}");
        assert!(printed.contains("error: Some(WrongAth)"), "{printed}");
        assert!(printed.contains("used: true"), "{printed}");
        let plain = format!("{:?}", Denial::new(DenialKind::InvalidToken));
        assert!(plain.contains("dpop: None"), "{plain}");
    }
}
