//! The completion endpoints' errors: one table, one status and one `error` code each.

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};
use serde_json::json;

use crate::wire::ErrorCode;

/// Why a completion endpoint refused a request. Several reasons may share one wire
/// [`ErrorCode`] (its [`code`](ErrorKind::code)): a client reads the code, the server's
/// audit events and the response extensions keep the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed body, wrong content type, missing or mistyped field.
    InvalidRequest,
    /// Body over the limit (64 KiB by default).
    PayloadTooLarge,
    /// Not the endpoint's method (`POST`; `GET`, `PATCH` or `DELETE` for the sessions
    /// and factors endpoints): the `Allow` header names it.
    MethodNotAllowed,
    /// Wrong username or password, or an unknown user: the same answer for both.
    InvalidCredentials,
    /// The mfa_token or partial token was tampered with, sealed under an unknown key, or
    /// is of the wrong kind.
    MfaTokenInvalid,
    /// The mfa_token or partial token has expired.
    MfaTokenExpired,
    /// The token was already used, or is unknown to the store.
    MfaTokenNotFound,
    /// Wrong code; `attempts_remaining` says how many are left.
    InvalidCode,
    /// Attempts exhausted: the challenge is dead and the user cools down (or, with
    /// `Retry-After: 1`, other attempts are in flight).
    TooManyAttempts,
    /// The pending enrollment was confirmed already (by a concurrent request).
    EnrollmentAlreadyConfirmed,
    /// Changing factors needs a recent authentication: sign in again.
    ReauthenticationRequired,
    /// The refresh token is unknown, expired, revoked or was reused.
    InvalidGrant,
    /// No valid access token (enroll, logout, the sessions endpoints).
    Unauthorized,
    /// No such session, device or factor of the caller: unknown, ended, or another
    /// user's.
    NotFound,
    /// Removing the account's last factor that signs in (recovery codes do not count),
    /// and the application requires a second factor
    /// ([`CompletionBuilder::allow_accounts_without_mfa`](super::CompletionBuilder::allow_accounts_without_mfa)).
    LastFactor,
    /// The store or a backend could not be reached: fail closed.
    TemporarilyUnavailable,
    /// Something that should not fail did (e.g. signing). Fail closed.
    ServerError,
    /// The DPoP proof (RFC 9449 §5) is malformed, does not match the request, was used
    /// before, or is missing or of another key where the challenge or refresh token is
    /// bound to a key (`cnf.jkt`).
    InvalidDpopProof,
    /// The DPoP proof lacks the server's current nonce (RFC 9449 §8): retry with the one
    /// in the `DPoP-Nonce` header.
    UseDpopNonce,
}

/// One row of [`ERROR_TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorRow {
    /// The reason.
    pub kind: ErrorKind,
    /// Its status.
    pub status: StatusCode,
    /// The body's `error` code.
    pub error: ErrorCode,
    /// The default `error_description`.
    pub description: &'static str,
}

macro_rules! rows {
    ($($name:ident: $kind:ident, $status:ident, $error:ident, $desc:literal;)*) => {
        $(const $name: ErrorRow = ErrorRow {
            kind: ErrorKind::$kind,
            status: StatusCode::$status,
            error: ErrorCode::$error,
            description: $desc,
        };)*

        /// Every error the completion endpoints answer with (DESIGN §4, verify table).
        pub const ERROR_TABLE: &[ErrorRow] = &[$($name),*];

        impl ErrorKind {
            /// This reason's row of [`ERROR_TABLE`].
            pub fn row(self) -> &'static ErrorRow {
                match self {
                    $(ErrorKind::$kind => &$name,)*
                }
            }
        }
    };
}

rows! {
    INVALID_REQUEST: InvalidRequest, BAD_REQUEST, InvalidRequest, "the request is malformed";
    PAYLOAD_TOO_LARGE: PayloadTooLarge, PAYLOAD_TOO_LARGE, InvalidRequest, "the request body is too large";
    METHOD_NOT_ALLOWED: MethodNotAllowed, METHOD_NOT_ALLOWED, InvalidRequest, "use POST";
    INVALID_CREDENTIALS: InvalidCredentials, UNAUTHORIZED, InvalidCredentials, "invalid username or password";
    MFA_TOKEN_INVALID: MfaTokenInvalid, BAD_REQUEST, MfaTokenInvalid, "the mfa_token is invalid";
    MFA_TOKEN_EXPIRED: MfaTokenExpired, UNAUTHORIZED, MfaTokenExpired, "the mfa_token has expired; start again";
    MFA_TOKEN_NOT_FOUND: MfaTokenNotFound, NOT_FOUND, MfaTokenNotFound, "the mfa_token was already used or is unknown; start again";
    INVALID_CODE: InvalidCode, UNAUTHORIZED, InvalidCode, "the code is wrong";
    TOO_MANY_ATTEMPTS: TooManyAttempts, TOO_MANY_REQUESTS, TooManyAttempts, "too many wrong codes; try again later";
    ENROLLMENT_ALREADY_CONFIRMED: EnrollmentAlreadyConfirmed, CONFLICT, EnrollmentAlreadyConfirmed, "this enrollment was confirmed already";
    REAUTHENTICATION_REQUIRED: ReauthenticationRequired, FORBIDDEN, ReauthenticationRequired, "changing factors needs a recent sign-in; sign in again";
    INVALID_GRANT: InvalidGrant, BAD_REQUEST, InvalidGrant, "the refresh token is invalid, expired or revoked";
    UNAUTHORIZED: Unauthorized, UNAUTHORIZED, Unauthorized, "an access token is required";
    NOT_FOUND: NotFound, NOT_FOUND, NotFound, "no such session, device or factor";
    LAST_FACTOR: LastFactor, CONFLICT, LastFactor, "this is the account's last second factor; add another one first";
    TEMPORARILY_UNAVAILABLE: TemporarilyUnavailable, SERVICE_UNAVAILABLE, TemporarilyUnavailable, "the service is temporarily unavailable; try again";
    SERVER_ERROR: ServerError, INTERNAL_SERVER_ERROR, ServerError, "the request could not be completed";
    INVALID_DPOP_PROOF: InvalidDpopProof, BAD_REQUEST, InvalidDpopProof, "the DPoP proof is invalid, used before, or not of the key the token is bound to";
    USE_DPOP_NONCE: UseDpopNonce, BAD_REQUEST, UseDpopNonce, "the DPoP proof must carry the nonce of the DPoP-Nonce header";
}

/// A refusal on its way to the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) description: Option<&'static str>,
    pub(crate) attempts_remaining: Option<u32>,
    pub(crate) retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge, for the rows that carry one.
    pub(crate) challenge: Option<HeaderValue>,
    /// The method a `405` names in `Allow` (`POST` when none is given).
    pub(crate) allow: Option<&'static str>,
    /// The server nonce a `use_dpop_nonce` answer sends in `DPoP-Nonce`.
    pub(crate) dpop_nonce: Option<Box<HeaderValue>>,
}

impl Failure {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            description: None,
            attempts_remaining: None,
            retry_after: None,
            challenge: None,
            allow: None,
            dpop_nonce: None,
        }
    }

    /// `405`: the endpoint serves `allow` only (`GET`, `PATCH` or `DELETE`; `POST` is
    /// `Failure::new(ErrorKind::MethodNotAllowed)`).
    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        let description = match allow {
            "GET" => "use GET",
            "PATCH" => "use PATCH",
            "DELETE" => "use DELETE",
            _ => "use POST",
        };
        Self {
            allow: Some(allow),
            description: Some(description),
            ..Self::new(ErrorKind::MethodNotAllowed)
        }
    }

    pub(crate) fn invalid_request(description: &'static str) -> Self {
        Self {
            description: Some(description),
            ..Self::new(ErrorKind::InvalidRequest)
        }
    }

    /// `403 reauthentication_required`, with the RFC 9470 challenge that says how recent
    /// the authentication must be.
    pub(crate) fn reauthentication(max_age: u64) -> Self {
        let challenge = format!(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"a more recent authentication is required\", max_age={max_age}"
        );
        Self {
            challenge: HeaderValue::try_from(challenge).ok(),
            ..Self::new(ErrorKind::ReauthenticationRequired)
        }
    }

    pub(crate) fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    pub(crate) fn into_response(self) -> Response<Bytes> {
        let row = self.kind.row();
        let mut body = json!({
            "error": row.error.as_str(),
            "error_description": self.description.unwrap_or(row.description),
        });
        if let (Some(n), Some(obj)) = (self.attempts_remaining, body.as_object_mut()) {
            obj.insert("attempts_remaining".into(), n.into());
        }
        if let (Some(secs), Some(obj)) = (self.retry_after, body.as_object_mut()) {
            obj.insert("retry_after".into(), secs.into());
        }
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = row.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Some(nonce) = self.dpop_nonce {
            headers.insert(crate::challenge::DPOP_NONCE_HEADER, *nonce);
        }
        if self.kind == ErrorKind::MethodNotAllowed {
            let allow = self.allow.unwrap_or("POST");
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        response.extensions_mut().insert(self.kind);
        response
    }
}

impl ErrorKind {
    /// The wire `error` code of this reason (its row's).
    pub fn code(self) -> ErrorCode {
        self.row().error
    }

    /// The `reason` of this failure's audit event: the `error` code, but distinct for
    /// the rows that share one.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            other => other.code().as_str(),
        }
    }
}

impl Failure {
    /// The audit outcome of this failure: a server-side fault, or a refusal.
    pub(crate) fn outcome(&self) -> crate::audit::Outcome {
        match self.kind {
            ErrorKind::TemporarilyUnavailable | ErrorKind::ServerError => {
                crate::audit::Outcome::Error
            }
            _ => crate::audit::Outcome::Failed,
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failed; refusing the request");
        match e {
            crate::store::StoreError::Corrupt(_) => Failure::new(ErrorKind::ServerError),
            _ => Failure::new(ErrorKind::TemporarilyUnavailable),
        }
    }
}

impl From<super::BackendError> for Failure {
    fn from(e: super::BackendError) -> Self {
        tracing::error!(error = %e, "backend failed; refusing the request");
        Failure::new(ErrorKind::TemporarilyUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::challenge::DENIAL_TABLE;

    /// The codes as they were written before the enum: the wire does not change.
    const PINNED: &[(ErrorKind, &str)] = &[
        (ErrorKind::InvalidRequest, "invalid_request"),
        (ErrorKind::PayloadTooLarge, "invalid_request"),
        (ErrorKind::MethodNotAllowed, "invalid_request"),
        (ErrorKind::InvalidCredentials, "invalid_credentials"),
        (ErrorKind::MfaTokenInvalid, "mfa_token_invalid"),
        (ErrorKind::MfaTokenExpired, "mfa_token_expired"),
        (ErrorKind::MfaTokenNotFound, "mfa_token_not_found"),
        (ErrorKind::InvalidCode, "invalid_code"),
        (ErrorKind::TooManyAttempts, "too_many_attempts"),
        (
            ErrorKind::EnrollmentAlreadyConfirmed,
            "enrollment_already_confirmed",
        ),
        (
            ErrorKind::ReauthenticationRequired,
            "reauthentication_required",
        ),
        (ErrorKind::InvalidGrant, "invalid_grant"),
        (ErrorKind::Unauthorized, "unauthorized"),
        (ErrorKind::NotFound, "not_found"),
        (ErrorKind::LastFactor, "last_factor"),
        (ErrorKind::TemporarilyUnavailable, "temporarily_unavailable"),
        (ErrorKind::ServerError, "server_error"),
        (ErrorKind::InvalidDpopProof, "invalid_dpop_proof"),
        (ErrorKind::UseDpopNonce, "use_dpop_nonce"),
    ];

    fn body_error(kind: ErrorKind) -> String {
        let res = Failure::new(kind).into_response();
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        body["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn every_row_writes_its_code_and_reads_back() {
        assert_eq!(ERROR_TABLE.len(), PINNED.len());
        for (row, &(kind, code)) in ERROR_TABLE.iter().zip(PINNED) {
            assert_eq!(row.kind, kind);
            assert_eq!(row.error.as_str(), code, "{kind:?}");
            assert_eq!(kind.code(), row.error, "{kind:?}");
            assert_eq!(body_error(kind), code, "{kind:?} on the wire");
            assert_eq!(ErrorCode::from_code(&body_error(kind)), Some(row.error));
        }
    }

    #[test]
    fn the_enum_is_exactly_the_codes_of_both_tables() {
        let written: HashSet<&str> = ERROR_TABLE
            .iter()
            .map(|row| row.error.as_str())
            .chain(DENIAL_TABLE.iter().map(|row| row.error.as_str()))
            .collect();
        let known: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(written, known);
    }

    #[test]
    fn the_audit_reason_tells_apart_the_rows_that_share_a_code() {
        let reasons: HashSet<&str> = ERROR_TABLE.iter().map(|r| r.kind.reason()).collect();
        assert_eq!(reasons.len(), ERROR_TABLE.len());
        assert_eq!(ErrorKind::PayloadTooLarge.reason(), "payload_too_large");
        assert_eq!(ErrorKind::MethodNotAllowed.reason(), "method_not_allowed");
        assert_eq!(ErrorKind::InvalidGrant.reason(), "invalid_grant");
    }
}
