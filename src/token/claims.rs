//! The claims of access and partial tokens.

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The verified claims of a token.
///
/// The layer puts the claims of a verified access token into the request extensions, where
/// handlers read them (with axum: the [`Claims`] extractor, feature `axum`). Registered
/// claims have accessors; everything else is in [`Claims::extra`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ser_aud",
        deserialize_with = "de_aud"
    )]
    aud: Vec<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl Claims {
    /// `sub`: the user this token speaks for.
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// `iss`: who issued the token.
    pub fn iss(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// `aud`: the audiences (a single string on the wire is one entry here).
    pub fn aud(&self) -> &[String] {
        &self.aud
    }

    /// `exp`, seconds since the Unix epoch.
    pub fn exp(&self) -> u64 {
        self.exp
    }

    /// `nbf`, seconds since the Unix epoch.
    pub fn nbf(&self) -> Option<u64> {
        self.nbf
    }

    /// `iat`, seconds since the Unix epoch.
    pub fn iat(&self) -> Option<u64> {
        self.iat
    }

    /// `jti`: the token's unique id.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// `sid`: the session this token belongs to.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `scope`: the space-delimited scope string, as sent.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The individual scopes of [`Claims::scope`].
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// Whether `scope` contains `wanted` (an exact match of one space-delimited entry).
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }

    /// `acr`: the authentication context class reference.
    pub fn acr(&self) -> Option<&str> {
        self.acr.as_deref()
    }

    /// `amr`: the authentication methods used (RFC 8176), e.g. `["pwd", "otp", "mfa"]`.
    pub fn amr(&self) -> &[String] {
        &self.amr
    }

    /// Whether `amr` contains `method`.
    pub fn has_amr(&self, method: &str) -> bool {
        self.amr.iter().any(|m| m == method)
    }

    /// `auth_time`: when the user last actively authenticated, seconds since the Unix epoch.
    pub fn auth_time(&self) -> Option<u64> {
        self.auth_time
    }

    /// Every claim that has no accessor of its own.
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// One claim of [`Claims::extra`] by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.extra.get(name)
    }
}

/// Builder for the claims the issuer fills itself (`iss`, `aud`, `iat`, `exp`, `jti`).
pub(crate) struct ClaimsParts {
    pub(crate) sub: String,
    pub(crate) iss: String,
    pub(crate) aud: Vec<String>,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) jti: String,
}

impl Claims {
    pub(crate) fn from_parts(parts: ClaimsParts) -> Self {
        Self {
            sub: parts.sub,
            iss: Some(parts.iss),
            aud: parts.aud,
            exp: parts.exp,
            nbf: None,
            iat: Some(parts.iat),
            jti: Some(parts.jti),
            sid: None,
            scope: None,
            acr: None,
            amr: Vec::new(),
            auth_time: None,
            extra: Map::new(),
        }
    }

    pub(crate) fn set_session(
        &mut self,
        sid: Option<String>,
        scope: Option<String>,
        acr: Option<String>,
        amr: Vec<String>,
        auth_time: Option<u64>,
        extra: Map<String, Value>,
    ) {
        self.sid = sid;
        self.scope = scope;
        self.acr = acr;
        self.amr = amr;
        self.auth_time = auth_time;
        self.extra = extra;
    }
}

fn ser_aud<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn de_aud<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(de::Error::custom(
            "`aud` must be a string or an array of strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aud_reads_one_or_many_and_extra_claims_are_kept() {
        let one: Claims =
            serde_json::from_str(r#"{"sub":"a","exp":1,"aud":"x","tenant":"t1"}"#).unwrap();
        assert_eq!(one.aud(), ["x".to_string()]);
        assert_eq!(one.get("tenant"), Some(&Value::from("t1")));
        let many: Claims = serde_json::from_str(r#"{"sub":"a","exp":1,"aud":["x","y"]}"#).unwrap();
        assert_eq!(many.aud().len(), 2);
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":1,"aud":3}"#).is_err());
    }

    #[test]
    fn scopes_are_matched_exactly() {
        let c: Claims =
            serde_json::from_str(r#"{"sub":"a","exp":1,"scope":"billing:read  me"}"#).unwrap();
        assert!(c.has_scope("billing:read"));
        assert!(c.has_scope("me"));
        assert!(!c.has_scope("billing"));
        assert!(!c.has_scope(""));
    }

    #[test]
    fn missing_sub_or_exp_is_rejected() {
        assert!(serde_json::from_str::<Claims>(r#"{"exp":1}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a"}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":"soon"}"#).is_err());
    }
}
