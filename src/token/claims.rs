//! The claims of access and partial tokens.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The verified claims of a token.
///
/// The layer puts the claims of a verified access token into the request extensions, where
/// handlers read them (with axum: the [`Claims`] extractor, feature `axum`). Registered
/// claims have accessors; everything else is in [`Claims::extra`].
///
/// Cheap to clone: clones share one immutable copy (the verifier's cache, the request
/// extensions and a handler's extractor all hold the same claims).
#[derive(Clone, PartialEq)]
pub struct Claims {
    data: Arc<repr::Claims>,
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        repr::Claims::deserialize(d).map(|data| Claims {
            data: Arc::new(data),
        })
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.data, f)
    }
}

/// The claims themselves, behind the [`Claims`] handle.
mod repr {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(super) struct Claims {
        pub(super) sub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) iss: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            serialize_with = "ser_aud",
            deserialize_with = "de_aud"
        )]
        pub(super) aud: Vec<String>,
        pub(super) exp: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) nbf: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) iat: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) jti: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) sid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) acr: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub(super) amr: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(super) auth_time: Option<u64>,
        /// `cnf` (RFC 7800): present means bound. Never `null`: a `cnf` that is not a
        /// [`Confirmation`] refuses the whole token (it must not pass as unbound).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "de_cnf"
        )]
        pub(super) cnf: Option<Confirmation>,
        #[serde(flatten)]
        pub(super) extra: Map<String, Value>,
    }
}

impl Claims {
    /// `sub`: the user this token speaks for.
    pub fn sub(&self) -> &str {
        &self.data.sub
    }

    /// `iss`: who issued the token.
    pub fn iss(&self) -> Option<&str> {
        self.data.iss.as_deref()
    }

    /// `aud`: the audiences (a single string on the wire is one entry here).
    pub fn aud(&self) -> &[String] {
        &self.data.aud
    }

    /// `exp`, seconds since the Unix epoch.
    pub fn exp(&self) -> u64 {
        self.data.exp
    }

    /// `nbf`, seconds since the Unix epoch.
    pub fn nbf(&self) -> Option<u64> {
        self.data.nbf
    }

    /// `iat`, seconds since the Unix epoch.
    pub fn iat(&self) -> Option<u64> {
        self.data.iat
    }

    /// `jti`: the token's unique id.
    pub fn jti(&self) -> Option<&str> {
        self.data.jti.as_deref()
    }

    /// `sid`: the session this token belongs to.
    pub fn sid(&self) -> Option<&str> {
        self.data.sid.as_deref()
    }

    /// `scope`: the space-delimited scope string, as sent.
    pub fn scope(&self) -> Option<&str> {
        self.data.scope.as_deref()
    }

    /// The individual scopes of [`Claims::scope`].
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.data
            .scope
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
        self.data.acr.as_deref()
    }

    /// `amr`: the authentication methods used (RFC 8176), e.g. `["pwd", "otp", "mfa"]`.
    pub fn amr(&self) -> &[String] {
        &self.data.amr
    }

    /// Whether `amr` contains `method`.
    pub fn has_amr(&self, method: &str) -> bool {
        self.data.amr.iter().any(|m| m == method)
    }

    /// `auth_time`: when the user last actively authenticated, seconds since the Unix epoch.
    pub fn auth_time(&self) -> Option<u64> {
        self.data.auth_time
    }

    /// `cnf.jkt` (RFC 9449 §6.1): the RFC 7638 SHA-256 thumbprint (43 base64url
    /// characters) of the DPoP key this token is bound to, or `None` for a bearer token.
    ///
    /// Compare it with [`CheckedProof::jkt`](crate::dpop::CheckedProof::jkt) of the
    /// request's proof. A token whose `cnf` is anything but `{"jkt": "<thumbprint>"}` (not
    /// an object, `null`, no `jkt`, a `jkt` that is not such a thumbprint, another
    /// confirmation method) is refused by the verifier as
    /// [`TokenError::InvalidClaims`](crate::TokenError::InvalidClaims): a bound token
    /// is never read as unbound.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.data.cnf.as_ref().map(|c| c.jkt.as_str())
    }

    /// Every claim that has no accessor of its own.
    pub fn extra(&self) -> &Map<String, Value> {
        &self.data.extra
    }

    /// One claim of [`Claims::extra`] by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.data.extra.get(name)
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
    /// The same claims with `scope` replaced (a trusted issuer's scopes read from
    /// another claim, e.g. `scp`).
    pub(crate) fn with_scope(mut self, scope: Option<String>) -> Self {
        Arc::make_mut(&mut self.data).scope = scope;
        self
    }

    pub(crate) fn from_parts(parts: ClaimsParts) -> Self {
        let data = repr::Claims {
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
            cnf: None,
            extra: Map::new(),
        };
        Self {
            data: Arc::new(data),
        }
    }

    /// Binds the token to the DPoP key whose thumbprint is `jkt` (checked by the caller
    /// with [`is_sha256_thumbprint`]).
    pub(crate) fn set_dpop_jkt(&mut self, jkt: String) {
        Arc::make_mut(&mut self.data).cnf = Some(Confirmation { jkt });
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
        let data = Arc::make_mut(&mut self.data);
        data.sid = sid;
        data.scope = scope;
        data.acr = acr;
        data.amr = amr;
        data.auth_time = auth_time;
        data.extra = extra;
    }
}

/// The `cnf` claim of a DPoP-bound token (RFC 9449 §6.1): an object with one member,
/// `jkt`, a SHA-256 thumbprint. Anything else is refused, not ignored: another
/// confirmation method (one this crate cannot check), a second `jkt`, an array.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Confirmation {
    jkt: String,
}

impl<'de> Deserialize<'de> for Confirmation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Confirmation;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object {"jkt": "<SHA-256 JWK thumbprint>"}"#)
            }

            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Confirmation, A::Error> {
                let mut jkt = None;
                while let Some(name) = map.next_key::<String>()? {
                    if name != "jkt" || jkt.is_some() {
                        return Err(de::Error::custom("`cnf` must hold one member, `jkt`"));
                    }
                    jkt = Some(map.next_value::<String>()?);
                }
                match jkt {
                    Some(jkt) if is_sha256_thumbprint(&jkt) => Ok(Confirmation { jkt }),
                    _ => Err(de::Error::custom(
                        "`cnf.jkt` must be a SHA-256 JWK thumbprint",
                    )),
                }
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Whether `jkt` is a SHA-256 JWK thumbprint as RFC 7638 and RFC 9449 write it: 43
/// characters of unpadded base64url (canonical: no stray trailing bits) for 32 bytes.
pub(crate) fn is_sha256_thumbprint(jkt: &str) -> bool {
    use base64::Engine;
    jkt.len() == 43
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jkt)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// `cnf` when present: never `null` (which `Option` alone would read as absent).
fn de_cnf<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Confirmation>, D::Error> {
    Confirmation::deserialize(d).map(Some)
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

    /// A genuine thumbprint: RFC 7638 §3.1's example.
    const JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn with_cnf(cnf: &str) -> Result<Claims, serde_json::Error> {
        serde_json::from_str(&format!(r#"{{"sub":"a","exp":1,"cnf":{cnf}}}"#))
    }

    #[test]
    fn cnf_jkt_is_read_kept_out_of_extra_and_written_back() {
        let bound = with_cnf(&format!(r#"{{"jkt":"{JKT}"}}"#)).unwrap();
        assert_eq!(bound.dpop_jkt(), Some(JKT));
        assert!(bound.extra().is_empty());
        assert!(bound.get("cnf").is_none());
        let json = serde_json::to_value(&bound).unwrap();
        assert_eq!(json["cnf"], serde_json::json!({ "jkt": JKT }));
        let again: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(again, bound);
        let unbound: Claims = serde_json::from_str(r#"{"sub":"a","exp":1}"#).unwrap();
        assert_eq!(unbound.dpop_jkt(), None);
        assert!(serde_json::to_value(&unbound).unwrap().get("cnf").is_none());
    }

    #[test]
    fn a_malformed_cnf_is_refused_never_read_as_unbound() {
        let long = format!("{JKT}A");
        let cases = [
            r#""x""#.to_owned(),
            "null".to_owned(),
            "5".to_owned(),
            format!(r#"["{JKT}"]"#),
            "{}".to_owned(),
            r#"{"jkt":5}"#.to_owned(),
            r#"{"jkt":null}"#.to_owned(),
            r#"{"jkt":""}"#.to_owned(),
            r#"{"jkt":"short"}"#.to_owned(),
            format!(r#"{{"jkt":"{long}"}}"#),
            // 43 characters, but `+` and `/` are not base64url.
            format!(r#"{{"jkt":"{}"}}"#, JKT.replace('-', "+")),
            // Padded.
            format!(r#"{{"jkt":"{}="}}"#, &JKT[..42]),
            // Non-canonical last character (stray trailing bits).
            format!(r#"{{"jkt":"{}t"}}"#, &JKT[..42]),
            // Another confirmation method, alone or beside jkt.
            format!(r#"{{"x5t#S256":"{JKT}"}}"#),
            format!(r#"{{"jkt":"{JKT}","kid":"{JKT}"}}"#),
            format!(r#"{{"jkt":"{JKT}","jwk":{{"kty":"OKP"}}}}"#),
            // Duplicate members.
            format!(r#"{{"jkt":"{JKT}","jkt":"{JKT}"}}"#),
        ];
        for cnf in &cases {
            assert!(with_cnf(cnf).is_err(), "cnf {cnf} was accepted");
        }
        let twice = format!(r#"{{"sub":"a","exp":1,"cnf":{{"jkt":"{JKT}"}},"cnf":"x"}}"#);
        assert!(serde_json::from_str::<Claims>(&twice).is_err());
        assert!(is_sha256_thumbprint(JKT));
        assert!(!is_sha256_thumbprint(&format!("{}t", &JKT[..42])));
    }

    #[test]
    fn missing_sub_or_exp_is_rejected() {
        assert!(serde_json::from_str::<Claims>(r#"{"exp":1}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a"}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":"soon"}"#).is_err());
    }
}
