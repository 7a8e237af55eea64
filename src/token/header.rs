//! The JOSE header of a compact JWS, read before the signature check, and the `iss` a
//! token names (to pick its issuer's keys).

use std::fmt;

use base64::Engine as _;
use jsonwebtoken::Algorithm;

use super::verdict::TokenError;

/// The JOSE header fields the verifier looks at before the signature check: `alg`,
/// `typ`, `kid` and whether `crit` is present.
///
/// `jsonwebtoken::decode_header` would do, but it parses jsonwebtoken's whole `Header`
/// (14 fields and a flattened map, which makes serde buffer everything), and `decode`
/// parses it again: for HS256 that was most of the verifier's overhead over a bare
/// `decode` (callgrind: 6.2k of 7.1k instructions). The same bytes are read by the same
/// rules (base64url without padding, strict JSON, duplicate fields refused), and
/// `decode` still checks the header it parses against the chosen key and algorithm.
#[derive(serde::Deserialize)]
pub(crate) struct JoseHeader<'a> {
    pub(crate) alg: Algorithm,
    #[serde(borrow, default)]
    pub(crate) typ: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub(crate) kid: Option<JsonStr<'a>>,
    #[serde(default)]
    pub(crate) crit: Option<serde::de::IgnoredAny>,
}

impl<'a> JoseHeader<'a> {
    /// Parses the header of a compact JWS of exactly three segments. The decoded JSON
    /// goes to `buf` (or `heap` when longer), which the result may borrow from.
    pub(crate) fn parse(
        token: &str,
        buf: &'a mut [u8; 256],
        heap: &'a mut Vec<u8>,
    ) -> Result<Self, TokenError> {
        use base64::Engine as _;
        let first = token.find('.').ok_or(TokenError::Malformed)?;
        let last = token.rfind('.').ok_or(TokenError::Malformed)?;
        let middle = token.get(first + 1..last).ok_or(TokenError::Malformed)?;
        if first == last || middle.contains('.') {
            return Err(TokenError::Malformed);
        }
        let encoded = token.as_bytes().get(..first).ok_or(TokenError::Malformed)?;
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let json: &'a [u8] = if base64::decoded_len_estimate(encoded.len()) <= buf.len() {
            let n = engine
                .decode_slice(encoded, &mut buf[..])
                .map_err(|_| TokenError::Malformed)?;
            buf.get(..n).ok_or(TokenError::Malformed)?
        } else {
            *heap = engine.decode(encoded).map_err(|_| TokenError::Malformed)?;
            &heap[..]
        };
        serde_json::from_slice(json).map_err(|_| TokenError::Malformed)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
pub(crate) struct JsonStr<'a>(std::borrow::Cow<'a, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// The `iss` a token names, read from its payload before any check: only to choose
/// whose keys and rules verify it. The signature check and `iss` validation that follow
/// decide; a wrong or forged `iss` only picks rules the token then fails.
pub(crate) fn peek_issuer(token: &str) -> Result<Option<String>, TokenError> {
    #[derive(serde::Deserialize)]
    struct Payload<'a> {
        #[serde(borrow, default)]
        iss: Option<JsonStr<'a>>,
    }
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let parsed: Payload<'_> = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    Ok(parsed.iss.map(|iss| iss.0.into_owned()))
}

#[cfg(test)]
mod header_tests {
    use base64::Engine as _;

    use super::*;

    fn token_with_header(json: &str) -> String {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        format!("{h}.e30.c2ln")
    }

    pub(crate) fn parse(
        token: &str,
    ) -> Result<(Algorithm, Option<String>, Option<String>, bool), TokenError> {
        let mut buf = [0u8; 256];
        let mut heap = Vec::new();
        let h = JoseHeader::parse(token, &mut buf, &mut heap)?;
        Ok((
            h.alg,
            h.typ.as_deref().map(str::to_owned),
            h.kid.as_deref().map(str::to_owned),
            h.crit.is_some(),
        ))
    }

    #[test]
    fn reads_alg_typ_kid_crit_like_decode_header() {
        let cases = [
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"alg":"ES256","typ":"application\/at+jwt","kid":"k\u0031"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"EdDSA","typ":null,"crit":["exp"],"x":{"y":[1,2]}}"#,
        ];
        for json in cases {
            let token = token_with_header(json);
            let theirs = jsonwebtoken::decode_header(&token).unwrap();
            let ours = parse(&token).unwrap();
            assert_eq!(ours.0, theirs.alg, "{json}");
            assert_eq!(ours.1, theirs.typ, "{json}");
            assert_eq!(ours.2, theirs.kid, "{json}");
            assert_eq!(ours.3, theirs.crit.is_some(), "{json}");
        }
    }

    #[test]
    fn long_headers_take_the_heap_path() {
        let kid = "k".repeat(400);
        let token = token_with_header(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        assert_eq!(parse(&token).unwrap().2.as_deref(), Some(kid.as_str()));
    }

    #[test]
    fn refuses_what_decode_header_refuses() {
        let bad = [
            token_with_header(r#"{"typ":"at+jwt"}"#),
            token_with_header(r#"{"alg":"none"}"#),
            token_with_header(r#"{"alg":"HS256","typ":"a","typ":"b"}"#),
            token_with_header(r#"{"alg":"HS256","kid":7}"#),
            token_with_header("not json"),
            "eyJhbGciOiJIUzI1NiJ9=.e30.c2ln".to_owned(),
            "e30.e30".to_owned(),
            "e30.e30.e30.e30".to_owned(),
            "nodots".to_owned(),
        ];
        for token in &bad {
            assert!(parse(token).is_err(), "{token}");
            assert!(
                jsonwebtoken::decode_header(token).is_err() || token.matches('.').count() != 2,
                "jsonwebtoken accepts {token}"
            );
        }
    }
}
