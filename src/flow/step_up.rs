//! The *delegated* step-up denial: a route wants a stronger or fresher authentication
//! that only the identity provider (IdP) that issued the token can give.

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::www_authenticate;
use crate::error::is_scope_token;
use crate::wire::ErrorCode;

/// The RFC 9470 `error` of a step-up challenge.
const INSUFFICIENT_USER_AUTHENTICATION: &str = "insufficient_user_authentication";

/// At most this many ACR values are read; a longer list is treated as absent.
pub const MAX_ACR_VALUES: usize = 32;

/// At most this many bytes per ACR value; a longer one makes the list absent.
pub const MAX_ACR_VALUE_LEN: usize = 256;

/// A step-up that this crate's verify endpoint cannot complete: the token came from an
/// external identity provider that performs MFA itself.
///
/// The server answers it like every step-up denial — `403` (or `401` in strict RFC 9470
/// mode) with `WWW-Authenticate: Bearer error="insufficient_user_authentication",
/// acr_values="…", max_age=…` and `"error": "mfa_required"` — but with no `mfa_token`:
/// nothing here can redeem it, so no code is asked for and the verify endpoint is never
/// called.
///
/// **What the application does** (RFC 9470 §4): send the user back to the IdP with a new
/// authorization request carrying these [`acr_values`](Self::acr_values) (the OpenID
/// Connect `acr_values` parameter, see [`acr_values_param`](Self::acr_values_param)) and
/// [`max_age`](Self::max_age) (`max_age`, or `prompt=login` where the IdP wants a fresh
/// login), then call the route again with the access token it issues. The current
/// session stays good for every other route.
///
/// Read from an answer with [`from_response`](Self::from_response); in the flow, it is
/// [`Event::StepUpDelegated`](super::Event::StepUpDelegated).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DelegatedStepUp {
    /// The Authentication Context Class References the route accepts, in the server's
    /// order (any one of them will do); empty when it names none (then only `max_age`,
    /// or just a new authentication, is asked for).
    pub acr_values: Vec<String>,
    /// The longest time, in seconds, since the user last authenticated at the IdP that
    /// the route accepts; `None` when it sets no limit.
    pub max_age: Option<u64>,
    /// The server's `error_description`: English prose for logs, never for decisions.
    pub description: Option<String>,
}

impl DelegatedStepUp {
    /// Reads a delegated step-up from an answer: its status, headers and JSON body
    /// (`Value::Null` when the body is not JSON). `None` for any other answer, the local
    /// step-up (whose body carries an `mfa_token`) included.
    ///
    /// An answer is a delegated step-up when its status is `401` or `403`, its body has
    /// no `mfa_token`, and either its body's `error` is `mfa_required` or (with no
    /// `error` in the body) a `Bearer` or `DPoP` challenge says
    /// `error="insufficient_user_authentication"`.
    ///
    /// `acr_values` and `max_age` come from that challenge first (RFC 9470 §3; however
    /// many `WWW-Authenticate` headers and challenges there are, the first `DPoP` one, else
    /// the first `Bearer` one: a server that accepts DPoP puts a DPoP request's step-up in
    /// the `DPoP` scheme),
    /// and each from the body's `acr_values` (a space-separated string) and `max_age` (a
    /// number) when the challenge does not give a usable one. A header value that does
    /// not parse, a parameter given twice, a `max_age` that is not a decimal number, or
    /// ACR values beyond [`MAX_ACR_VALUES`] / [`MAX_ACR_VALUE_LEN`] or outside RFC
    /// 6749's `NQCHAR`s count as not given.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &Value) -> Option<Self> {
        if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || !member(body, "mfa_token").is_null()
        {
            return None;
        }
        let challenges = www_authenticate::challenges(headers);
        let challenge = www_authenticate::pick(&challenges, Some(INSUFFICIENT_USER_AUTHENTICATION));
        match member(body, "error") {
            Value::Null if challenge.is_some() => {}
            Value::String(code) if ErrorCode::from_code(code) == Some(ErrorCode::MfaRequired) => {}
            _ => return None,
        }
        let param = |name| challenge.and_then(|c| c.param(name));
        let acr_values = param("acr_values")
            .and_then(acr_list)
            .or_else(|| member(body, "acr_values").as_str().and_then(acr_list))
            .unwrap_or_default();
        let max_age = param("max_age")
            .and_then(decimal)
            .or_else(|| member(body, "max_age").as_u64());
        let description = member(body, "error_description")
            .as_str()
            .or_else(|| param("error_description"))
            .map(str::to_owned);
        Some(Self {
            acr_values,
            max_age,
            description,
        })
    }

    /// The ACR values as one space-separated string, the form of the OpenID Connect
    /// authorization request's `acr_values` parameter; `None` when there are none.
    pub fn acr_values_param(&self) -> Option<String> {
        (!self.acr_values.is_empty()).then(|| self.acr_values.join(" "))
    }
}

/// A member of a JSON object, `Null` if absent (or if `value` is not an object).
fn member<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

/// Space-separated ACR values within the bounds, or `None` (empty, too many, too long,
/// or a character outside `NQCHAR`).
fn acr_list(s: &str) -> Option<Vec<String>> {
    let values: Vec<&str> = s.split(' ').filter(|v| !v.is_empty()).collect();
    let usable = !values.is_empty()
        && values.len() <= MAX_ACR_VALUES
        && values
            .iter()
            .all(|v| v.len() <= MAX_ACR_VALUE_LEN && is_scope_token(v));
    usable.then(|| values.into_iter().map(str::to_owned).collect())
}

/// A `max_age`: decimal digits only (no sign, no fraction), within `u64`.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
