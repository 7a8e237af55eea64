//! Denial responses: one table, one status, one `error` code and one `WWW-Authenticate`
//! per reason.

use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why the layer refused a request. Put in the extensions of every denial response, so
/// outer layers and tests can inspect it without parsing the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenialKind {
    /// No credential on a protected route.
    MissingCredential,
    /// A malformed, forged, wrong-type or otherwise invalid token.
    InvalidToken,
    /// A genuine token past its `exp`: refresh it.
    ExpiredToken,
    /// A partial token outside the verify endpoint: finish the second factor first.
    MfaIncomplete,
    /// The token lacks a scope the route requires.
    InsufficientScope,
    /// The route needs a stronger or fresher authentication: an mfa_token is attached.
    MfaRequired,
    /// The path of a step-up route is too long to bind into an mfa_token.
    PathTooLong,
    /// The server could not decide (e.g. sealing failed). Fails closed.
    ServerError,
}

/// One row of the denial table: the wire facts of one [`DenialKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DenialRow {
    /// The reason.
    pub kind: DenialKind,
    /// The status (step-up may be switched to 401, see
    /// [`GuardBuilder::strict_rfc9470_status`](crate::GuardBuilder::strict_rfc9470_status)).
    pub status: StatusCode,
    /// The body's `error` code.
    pub error: &'static str,
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
];

const MISSING_CREDENTIAL: DenialRow = DenialRow {
    kind: DenialKind::MissingCredential,
    status: StatusCode::UNAUTHORIZED,
    error: "unauthorized",
    challenge_error: None,
    challenge: true,
    description: "an access token is required",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const INVALID_TOKEN: DenialRow = DenialRow {
    kind: DenialKind::InvalidToken,
    status: StatusCode::UNAUTHORIZED,
    error: "invalid_token",
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "the access token is invalid",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const EXPIRED_TOKEN: DenialRow = DenialRow {
    kind: DenialKind::ExpiredToken,
    status: StatusCode::UNAUTHORIZED,
    error: "invalid_token",
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "the access token has expired",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const MFA_INCOMPLETE: DenialRow = DenialRow {
    kind: DenialKind::MfaIncomplete,
    status: StatusCode::UNAUTHORIZED,
    error: "mfa_incomplete",
    challenge_error: Some("invalid_token"),
    challenge: true,
    description: "multi-factor authentication is not complete; the partial token is accepted only by the verify endpoint",
    grpc_status: grpc_code::UNAUTHENTICATED,
};
const INSUFFICIENT_SCOPE: DenialRow = DenialRow {
    kind: DenialKind::InsufficientScope,
    status: StatusCode::FORBIDDEN,
    error: "insufficient_scope",
    challenge_error: Some("insufficient_scope"),
    challenge: true,
    description: "the access token lacks a required scope",
    grpc_status: grpc_code::PERMISSION_DENIED,
};
const MFA_REQUIRED: DenialRow = DenialRow {
    kind: DenialKind::MfaRequired,
    status: StatusCode::FORBIDDEN,
    error: "mfa_required",
    challenge_error: Some("insufficient_user_authentication"),
    challenge: true,
    description: "a stronger or more recent authentication is required",
    grpc_status: grpc_code::PERMISSION_DENIED,
};
const PATH_TOO_LONG: DenialRow = DenialRow {
    kind: DenialKind::PathTooLong,
    status: StatusCode::URI_TOO_LONG,
    error: "invalid_request",
    challenge_error: None,
    challenge: false,
    description: "the request path is too long for a step-up challenge",
    grpc_status: grpc_code::INVALID_ARGUMENT,
};
const SERVER_ERROR: DenialRow = DenialRow {
    kind: DenialKind::ServerError,
    status: StatusCode::INTERNAL_SERVER_ERROR,
    error: "server_error",
    challenge_error: None,
    challenge: false,
    description: "the request could not be authorized",
    grpc_status: grpc_code::INTERNAL,
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
        }
    }
}

/// The reason a request was refused, found in the denial response's extensions.
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
    mfa_token: Option<String>,
}

impl fmt::Debug for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Denial")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .field("mfa_token", &self.mfa_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Denial {
    /// The reason.
    pub fn kind(&self) -> DenialKind {
        self.kind
    }

    /// The `error_description` that was sent.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// The mfa_token of a step-up denial (the same as in the body).
    pub fn mfa_token(&self) -> Option<&str> {
        self.mfa_token.as_deref()
    }
}

/// The factors a client is asked to use (`challenge`) or to set up first (`enroll`).
///
/// Serialised as `{"challenge":[{"type":"otp"}]}` or `{"enroll":[{"type":"otp"}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaRequirements {
    /// Factors the user has: prove one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenge: Vec<Factor>,
    /// Factors the user must enroll first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enroll: Vec<Factor>,
}

impl MfaRequirements {
    /// Prove one of these factors.
    pub fn challenge<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        Self {
            challenge: types.into_iter().map(Factor::new).collect(),
            enroll: Vec::new(),
        }
    }

    /// Enroll one of these factors first.
    pub fn enroll<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        Self {
            challenge: Vec::new(),
            enroll: types.into_iter().map(Factor::new).collect(),
        }
    }
}

/// A factor type, e.g. `otp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    /// The type, as in Auth0's `mfa_requirements`: `otp`, `recovery-code`, …
    #[serde(rename = "type")]
    pub kind: String,
}

impl Factor {
    /// A factor of type `kind`.
    pub fn new(kind: impl Into<String>) -> Self {
        Self { kind: kind.into() }
    }
}

/// Everything a denial response says beyond its row.
#[derive(Default)]
pub(crate) struct DenialDetails<'a> {
    pub(crate) description: Option<&'static str>,
    pub(crate) status: Option<StatusCode>,
    /// `scope="…"` of an insufficient_scope challenge.
    pub(crate) scope: Option<String>,
    /// `acr_values="…"` of a step-up challenge.
    pub(crate) acr_values: Option<String>,
    /// `max_age=…` of a step-up challenge.
    pub(crate) max_age: Option<u64>,
    pub(crate) mfa_token: Option<&'a str>,
    pub(crate) mfa_requirements: Option<&'a MfaRequirements>,
}

/// Builds the response for `kind`. Every value put in a header here was checked at
/// configuration time (realm, scopes, acr values) or is a constant.
pub(crate) fn response(
    kind: DenialKind,
    realm: &str,
    details: DenialDetails<'_>,
) -> Response<Bytes> {
    let row = kind.row();
    let description = details.description.unwrap_or(row.description);
    let status = details.status.unwrap_or(row.status);

    let mut body = json!({ "error": row.error, "error_description": description });
    if let (Some(token), Some(obj)) = (details.mfa_token, body.as_object_mut()) {
        obj.insert("mfa_token".into(), token.into());
        obj.insert(
            "mfa_requirements".into(),
            serde_json::to_value(details.mfa_requirements.cloned().unwrap_or_default())
                .unwrap_or_default(),
        );
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());

    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let challenge = match row.challenge_error {
        _ if !row.challenge => None,
        None => Some(format!("Bearer realm=\"{realm}\"")),
        Some(error) => {
            let mut c = format!("Bearer error=\"{error}\"");
            if let Some(scope) = &details.scope {
                c.push_str(&format!(", scope=\"{scope}\""));
            } else {
                c.push_str(&format!(", error_description=\"{description}\""));
            }
            if let Some(acr) = &details.acr_values {
                c.push_str(&format!(", acr_values=\"{acr}\""));
            }
            if let Some(max_age) = details.max_age {
                c.push_str(&format!(", max_age={max_age}"));
            }
            Some(c)
        }
    };
    if let Some(value) = challenge.and_then(|c| HeaderValue::try_from(c).ok()) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    response.extensions_mut().insert(Denial {
        kind,
        description,
        mfa_token: details.mfa_token.map(str::to_owned),
    });
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

/// Turns an HTTP denial (from [`response`]) into a gRPC Trailers-Only response: HTTP
/// 200, no body, `cache-control: no-store`, `grpc-status` from the table,
/// `grpc-message`, and as metadata the `www-authenticate` challenge, the `mfa-token` and
/// the JSON body as `stepup-details`.
pub(crate) fn into_grpc(response: Response<Bytes>) -> Response<Bytes> {
    let (parts, json) = response.into_parts();
    let Some(denial) = parts.extensions.get::<Denial>() else {
        return Response::from_parts(parts, json);
    };
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
    if let Some(challenge) = parts.headers.get(WWW_AUTHENTICATE) {
        headers.insert(WWW_AUTHENTICATE, challenge.clone());
    }
    if let Some(token) = denial
        .mfa_token()
        .and_then(|t| HeaderValue::try_from(t).ok())
    {
        headers.insert(GRPC_MFA_TOKEN_HEADER, token);
    }
    // JSON from serde_json: printable ASCII unless a configured string was not (then
    // the details are left out rather than sent broken).
    if let Ok(details) = HeaderValue::from_bytes(&json) {
        headers.insert(GRPC_DETAILS_HEADER, details);
    }
    *out.extensions_mut() = parts.extensions;
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

    #[test]
    fn grpc_denial_is_not_cacheable() {
        for kind in DENIAL_TABLE.iter().map(|row| row.kind) {
            let token = "sealed.mfa.token";
            let requirements = MfaRequirements::challenge(["otp"]);
            let details = DenialDetails {
                mfa_token: (kind == DenialKind::MfaRequired).then_some(token),
                mfa_requirements: Some(&requirements),
                ..DenialDetails::default()
            };
            let grpc = into_grpc(response(kind, "test", details));
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
        let requirements = MfaRequirements::challenge(["otp"]);
        let res = response(
            DenialKind::MfaRequired,
            "test",
            DenialDetails {
                mfa_token: Some(token),
                mfa_requirements: Some(&requirements),
                ..DenialDetails::default()
            },
        );
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

        let plain = response(
            DenialKind::MissingCredential,
            "test",
            DenialDetails::default(),
        );
        let printed = format!("{:?}", plain.extensions().get::<Denial>().unwrap());
        assert!(printed.contains("mfa_token: None"), "{printed}");
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
                _ => 13,
            };
            assert_eq!(row.grpc_status, expected, "{:?}", row.kind);
        }
    }
}
