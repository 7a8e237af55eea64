//! Finding a bearer credential in a request: the one parser of `Authorization` and of
//! cookies, for the layer and the completion endpoints alike.
//!
//! One set of rules (RFC 6750 §2.1, RFC 6265 §4.2):
//! - `Authorization: Bearer <token>`: the scheme in any case, one or more spaces, then
//!   the token and nothing after it;
//! - a cookie `name=value` (the value may be in double quotes), the name compared
//!   exactly;
//! - a token is an RFC 6750 `b64token` of at most [`MAX_TOKEN_LEN`] bytes;
//! - two `Authorization` headers, or two cookies of the name, are ambiguous: malformed,
//!   never "the first one" (one of them may have been planted: cookie tossing);
//! - an `Authorization` header of another scheme carries no bearer credential, and a
//!   `Cookie` header that is not UTF-8 none of ours.
//!
//! Each caller decides what a [`Credential::Malformed`] means for it: the layer refuses
//! it as an invalid token, the verify endpoint as a malformed request or mfa_token.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use crate::challenge::RequestScheme;
use crate::token::MAX_TOKEN_LEN;

/// What the request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// No bearer credential (no `Authorization`, another scheme, no cookie).
    None,
    /// A syntactically valid bearer token.
    Bearer(&'a str),
    /// A syntactically valid token sent as `Authorization: DPoP <token>` (RFC 9449 §7.1),
    /// to be checked with the request's proof. Never from a cookie.
    Dpop(&'a str),
    /// Something that tried to be one and is not.
    Malformed(Flaw),
}

/// Why a credential is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// Two `Authorization` headers, or two cookies of our name.
    Ambiguous,
    /// An `Authorization` header that is not UTF-8.
    Unreadable,
    /// The scheme without a token, or a cookie without a value.
    Empty,
    /// A token longer than [`MAX_TOKEN_LEN`], or not a `b64token`.
    Invalid,
}

/// The names of the cookies that carry tokens in cookie mode, spelled here only.
///
/// The completion endpoints set them (`complete::CookieConfig`); a guard reads the session cookie when told to with
/// [`GuardBuilder::cookie`](crate::layer::GuardBuilder::cookie)`(CookieNames::SECURE.session)`
/// — also in a service that only guards routes, beside the one serving the endpoints.
///
/// ```
/// use tower_stepup::layer::CookieNames;
///
/// let guard = tower_stepup::Guard::builder().cookie(CookieNames::SECURE.session);
/// # let _ = guard;
/// assert_eq!(CookieNames::SECURE.session, "__Host-stepup-session");
/// assert_eq!(CookieNames::INSECURE_HTTP.partial, "stepup-partial");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieNames {
    /// The access token's cookie (`Path=/`), the one the layer reads.
    pub session: &'static str,
    /// The partial token's cookie, from login to the endpoints that complete its
    /// challenge (verify, the passkey challenge, the send endpoint).
    pub partial: &'static str,
    /// The refresh token's cookie, to the refresh and logout endpoints.
    pub refresh: &'static str,
}

/// The secure names are the plain ones with the prefix browsers enforce: `__Host-` for a
/// cookie of `Path=/`, `__Secure-` for one scoped to a path.
macro_rules! cookie_names {
    (session: $session:literal, partial: $partial:literal, refresh: $refresh:literal) => {
        impl CookieNames {
            /// The names over https (the default): `__Host-stepup-session`,
            /// `__Secure-stepup-partial`, `__Secure-stepup-refresh`.
            pub const SECURE: CookieNames = CookieNames {
                session: concat!("__Host-", $session),
                partial: concat!("__Secure-", $partial),
                refresh: concat!("__Secure-", $refresh),
            };

            /// The names for plain-http local testing only, without the prefixes
            /// (browsers refuse prefixed cookies without `Secure`): `stepup-session`,
            /// `stepup-partial`, `stepup-refresh`.
            pub const INSECURE_HTTP: CookieNames = CookieNames {
                session: $session,
                partial: $partial,
                refresh: $refresh,
            };
        }
    };
}

cookie_names!(session: "stepup-session", partial: "stepup-partial", refresh: "stepup-refresh");

/// The layer's credential: `Authorization` first (RFC 6750 §2.1); only when no
/// `Authorization` header is sent at all, and a cookie is configured, the named cookie.
pub(crate) fn extract<'a>(headers: &'a HeaderMap, cookie_name: Option<&str>) -> Credential<'a> {
    match sent_authorization(headers) {
        Some(found) => found,
        None => cookie_name.map_or(Credential::None, |name| cookie(headers, name)),
    }
}

/// The scheme a request used, as far as DPoP cares: `DPoP` for a well-formed
/// `Authorization: DPoP <token>`, else `Bearer` (a bearer token, a cookie, none, or a
/// malformed header).
pub(crate) fn scheme(headers: &HeaderMap) -> RequestScheme {
    match sent_authorization(headers) {
        Some(Credential::Dpop(_)) => RequestScheme::Dpop,
        _ => RequestScheme::Bearer,
    }
}

/// The token of the one `Authorization: Bearer` (or `DPoP`) header and its scheme,
/// without the syntax checks of [`authorization`]: only for a cache lookup (a cached
/// token was verified, so it is well formed). `None` whenever [`extract`] could answer
/// anything but this same token in this same scheme.
pub(crate) fn candidate(headers: &HeaderMap) -> Option<(RequestScheme, &str)> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let value = auth.next()?;
    if auth.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let starts = |prefix: &[u8]| {
        bytes
            .get(..prefix.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(prefix))
    };
    let (scheme, len) = if starts(b"bearer ") {
        (RequestScheme::Bearer, 7)
    } else if starts(b"dpop ") {
        (RequestScheme::Dpop, 5)
    } else {
        return None;
    };
    // Exactly one space and no trailing whitespace: anything else takes the full path.
    let token = std::str::from_utf8(bytes.get(len..)?).ok()?;
    Some((scheme, token))
}

/// The bearer credential of the `Authorization` header (for the completion endpoints).
#[cfg(any(feature = "server", test))]
pub(crate) fn authorization(headers: &HeaderMap) -> Credential<'_> {
    sent_authorization(headers).unwrap_or(Credential::None)
}

/// [`authorization`], or `None` when no `Authorization` header is sent at all.
fn sent_authorization(headers: &HeaderMap) -> Option<Credential<'_>> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let value = auth.next()?;
    if auth.next().is_some() {
        return Some(Credential::Malformed(Flaw::Ambiguous));
    }
    Some(bearer_of(value))
}

/// The credential of one `Authorization` value: `Bearer` or `DPoP`.
fn bearer_of(value: &http::HeaderValue) -> Credential<'_> {
    let Ok(value) = value.to_str() else {
        return Credential::Malformed(Flaw::Unreadable);
    };
    if value.trim().is_empty() {
        return Credential::Malformed(Flaw::Empty);
    }
    // Before any scan: a header this long holds no token we accept.
    if value.len() > MAX_TOKEN_LEN + "Bearer ".len() {
        return Credential::Malformed(Flaw::Invalid);
    }
    let Some((scheme, rest)) = value.split_once(' ') else {
        return if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("dpop") {
            Credential::Malformed(Flaw::Empty)
        } else {
            Credential::None
        };
    };
    let found = token(rest.trim_start_matches(' '));
    if scheme.eq_ignore_ascii_case("bearer") {
        found
    } else if scheme.eq_ignore_ascii_case("dpop") {
        match found {
            Credential::Bearer(t) => Credential::Dpop(t),
            other => other,
        }
    } else {
        Credential::None
    }
}

/// The bearer credential of cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Credential<'a> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        // A cookie header we cannot read holds no credential of ours.
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k != name {
                continue;
            }
            if found.is_some() {
                // Two cookies of our name: someone may have planted one (cookie tossing).
                return Credential::Malformed(Flaw::Ambiguous);
            }
            found = Some(v.trim_matches('"'));
        }
    }
    found.map_or(Credential::None, token)
}

/// A token candidate, checked: non-empty, at most [`MAX_TOKEN_LEN`], a `b64token`.
fn token(candidate: &str) -> Credential<'_> {
    if candidate.is_empty() {
        Credential::Malformed(Flaw::Empty)
    } else if candidate.len() <= MAX_TOKEN_LEN && is_b64token(candidate) {
        Credential::Bearer(candidate)
    } else {
        Credential::Malformed(Flaw::Invalid)
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
///
/// Every byte is checked on every request, so the check has no early exit: the loop is
/// branch-free and the compiler vectorizes it (about 4× fewer instructions on a 480-byte
/// token than a short-circuiting `all`).
fn is_b64token(s: &str) -> bool {
    fn allowed(b: u8) -> bool {
        let lower = b | 0x20;
        (lower.wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/')
    }
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().fold(true, |ok, b| ok & allowed(b))
}

#[cfg(test)]
mod tests {
    use http::header::HeaderName;
    use http::HeaderValue;

    use super::*;

    fn with(name: HeaderName, values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn auth(values: &[&[u8]]) -> HeaderMap {
        with(AUTHORIZATION, values)
    }

    fn cookies(values: &[&[u8]]) -> HeaderMap {
        with(COOKIE, values)
    }

    #[test]
    fn candidate_only_for_one_plain_bearer_or_dpop_header() {
        let bearer = |t| Some((RequestScheme::Bearer, t));
        let dpop = |t| Some((RequestScheme::Dpop, t));
        assert_eq!(candidate(&auth(&[b"Bearer abc.def"])), bearer("abc.def"));
        assert_eq!(candidate(&auth(&[b"bEaReR abc"])), bearer("abc"));
        assert_eq!(candidate(&auth(&[b"DPoP abc.def"])), dpop("abc.def"));
        assert_eq!(candidate(&auth(&[b"dpop x"])), dpop("x"));
        assert_eq!(candidate(&auth(&[b"Bearer a", b"Bearer a"])), None);
        assert_eq!(candidate(&auth(&[b"DPoP a", b"DPoP a"])), None);
        assert_eq!(candidate(&auth(&[b"Basic abc"])), None);
        assert_eq!(candidate(&auth(&[b"DPoPx abc"])), None);
        assert_eq!(candidate(&auth(&[b"Bearer"])), None);
        assert_eq!(candidate(&auth(&[b"DPoP"])), None);
        assert_eq!(candidate(&HeaderMap::new()), None);
        // Whatever it returns, a cache lookup only hits a token verified before, which
        // `extract` accepts as the same token in the same scheme.
        let h = auth(&[b"Bearer abc.def"]);
        assert_eq!(extract(&h, None), Credential::Bearer("abc.def"));
        let h = auth(&[b"DPoP abc.def"]);
        assert_eq!(extract(&h, None), Credential::Dpop("abc.def"));
    }

    #[test]
    fn a_dpop_token_is_parsed_like_a_bearer_token_and_never_from_a_cookie() {
        assert_eq!(
            extract(&auth(&[b"DPoP  abc"]), None),
            Credential::Dpop("abc")
        );
        assert_eq!(
            extract(&auth(&[b"DPoP"]), None),
            Credential::Malformed(Flaw::Empty)
        );
        assert_eq!(
            extract(&auth(&[b"DPoP a b"]), None),
            Credential::Malformed(Flaw::Invalid)
        );
        assert_eq!(
            extract(&auth(&[b"DPoP a", b"Bearer a"]), None),
            Credential::Malformed(Flaw::Ambiguous)
        );
        let c = cookies(&[b"s=abc"]);
        assert_eq!(extract(&c, Some("s")), Credential::Bearer("abc"));
    }

    #[test]
    fn b64token_accepts_exactly_its_alphabet() {
        for b in 0u8..=255 {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            let s = [b'a', b, b'a'];
            let Ok(s) = std::str::from_utf8(&s) else {
                continue;
            };
            assert_eq!(is_b64token(s), expected, "byte {b:#04x}");
        }
        assert!(is_b64token("abc=="));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
        assert!(!is_b64token(""));
    }

    #[test]
    fn bearer_header_is_found_case_insensitively() {
        for ok in [&b"Bearer abc.def"[..], b"bearer abc.def", b"BEARER abc.def"] {
            assert_eq!(
                authorization(&auth(&[ok])),
                Credential::Bearer("abc.def"),
                "{ok:?}"
            );
        }
        // More than one space before the token is tolerated.
        assert_eq!(
            authorization(&auth(&[b"bearer  abc"])),
            Credential::Bearer("abc")
        );
        assert_eq!(
            extract(&auth(&[b"Bearer  x"]), None),
            Credential::Bearer("x")
        );
    }

    #[test]
    fn broken_authorization_headers_are_malformed_and_say_why() {
        use Flaw::{Ambiguous, Empty, Invalid, Unreadable};
        let huge = format!("Bearer {}", "a".repeat(64 * 1024));
        let just_over = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        let cases: [(&[&[u8]], Flaw); 14] = [
            (&[b""], Empty),
            (&[b" "], Empty),
            (&[b"Bearer"], Empty),
            (&[b"bearer"], Empty),
            (&[b"Bearer "], Empty),
            (&[b"Bearer   "], Empty),
            (&[b"Bearer a b"], Invalid),
            (&[b"Bearer abc "], Invalid),
            (&[b"Bearer abc\t"], Invalid),
            (&[b"Bearer a\"b"], Invalid),
            (&[huge.as_bytes()], Invalid),
            (&[just_over.as_bytes()], Invalid),
            (&[b"Bearer \xff\xfe"], Unreadable),
            (&[b"Bearer a", b"Bearer a"], Ambiguous),
        ];
        for (values, flaw) in cases {
            let h = auth(values);
            assert_eq!(authorization(&h), Credential::Malformed(flaw), "{values:?}");
            assert_eq!(extract(&h, Some("sess")), Credential::Malformed(flaw));
        }
        let longest = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(matches!(
            authorization(&auth(&[longest.as_bytes()])),
            Credential::Bearer(t) if t.len() == MAX_TOKEN_LEN
        ));
        // Two headers are ambiguous even when one of them is another scheme.
        assert_eq!(
            authorization(&auth(&[b"Basic YTpi", b"Bearer abc"])),
            Credential::Malformed(Ambiguous)
        );
    }

    #[test]
    fn other_schemes_carry_no_bearer_credential_and_hide_the_cookie() {
        let mut h = auth(&[b"Basic YTpi"]);
        assert_eq!(authorization(&h), Credential::None);
        assert_eq!(authorization(&auth(&[b"Bearer\tabc"])), Credential::None);
        assert_eq!(authorization(&auth(&[b"Bearerabc"])), Credential::None);
        assert_eq!(extract(&HeaderMap::new(), None), Credential::None);
        // The layer reads the cookie only when no `Authorization` header is sent at all.
        h.append(COOKIE, HeaderValue::from_static("sess=tok"));
        assert_eq!(extract(&h, Some("sess")), Credential::None);
        assert_eq!(cookie(&h, "sess"), Credential::Bearer("tok"));
    }

    #[test]
    fn cookie_is_read_only_when_configured_and_only_once() {
        let h = cookies(&[b"theme=dark; sess=tok.en.x"]);
        assert_eq!(extract(&h, None), Credential::None);
        assert_eq!(extract(&h, Some("sess")), Credential::Bearer("tok.en.x"));
        assert_eq!(cookie(&h, "sess"), Credential::Bearer("tok.en.x"));
        assert_eq!(cookie(&h, "SESS"), Credential::None);
        assert_eq!(cookie(&h, "other"), Credential::None);
        let mut both = cookies(&[b"sess=fromcookie"]);
        both.insert(AUTHORIZATION, HeaderValue::from_static("Bearer fromheader"));
        assert_eq!(
            extract(&both, Some("sess")),
            Credential::Bearer("fromheader")
        );
    }

    #[test]
    fn hostile_cookies_are_malformed_or_absent() {
        use Flaw::{Ambiguous, Empty, Invalid};
        let huge = format!("sess={}", "a".repeat(MAX_TOKEN_LEN + 1));
        let cases: [(&[&[u8]], Credential<'_>); 10] = [
            (&[b"sess=a", b"sess=b"], Credential::Malformed(Ambiguous)),
            (&[b"sess=a; sess=a"], Credential::Malformed(Ambiguous)),
            (
                &[b"sess=a; theme=x; sess=b"],
                Credential::Malformed(Ambiguous),
            ),
            (&[b"sess="], Credential::Malformed(Empty)),
            (&[b"sess=\"\""], Credential::Malformed(Empty)),
            (&[b"sess=a b"], Credential::Malformed(Invalid)),
            (&[huge.as_bytes()], Credential::Malformed(Invalid)),
            // A cookie header that is not UTF-8 holds no credential of ours ...
            (&[b"sess=\xff\xfe"], Credential::None),
            // ... but does not hide the one in a readable header.
            (&[b"x=\xff", b"sess=ok"], Credential::Bearer("ok")),
            (&[b"sess=\"quoted\""], Credential::Bearer("quoted")),
        ];
        for (values, expected) in cases {
            let h = cookies(values);
            assert_eq!(cookie(&h, "sess"), expected, "{values:?}");
            assert_eq!(extract(&h, Some("sess")), expected, "{values:?}");
        }
    }

    #[test]
    fn cookie_names_are_the_plain_names_with_the_prefixes() {
        let (secure, plain) = (CookieNames::SECURE, CookieNames::INSECURE_HTTP);
        assert_eq!(secure.session, "__Host-stepup-session");
        assert_eq!(secure.partial, "__Secure-stepup-partial");
        assert_eq!(secure.refresh, "__Secure-stepup-refresh");
        for (s, p) in [
            (secure.session, plain.session),
            (secure.partial, plain.partial),
            (secure.refresh, plain.refresh),
        ] {
            assert!(s.ends_with(p) && s.starts_with("__"), "{s} {p}");
        }
    }
}
