//! What a JWKS response says about its own freshness (`Cache-Control`, `Age`; RFC 9111
//! §5.2, §5.1), read leniently: a header that cannot be read is as if it were absent.

use http::header::{AGE, CACHE_CONTROL};
use http::HeaderMap;

/// How long the response may be used before it is fetched again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// `max-age` (less the response's `Age`), in seconds.
    MaxAge(u64),
    /// `no-store` or `no-cache`: fetch again as soon as allowed.
    Revalidate,
    /// Nothing usable was said.
    Unspecified,
}

/// The freshness of a response with these headers. Several `Cache-Control` fields are
/// one list; directive names are case-insensitive; a quoted value counts as its content;
/// `no-store`/`no-cache` win over `max-age`; two different `max-age`s, or one that is not
/// a number, say nothing.
pub(crate) fn freshness(headers: &HeaderMap) -> Freshness {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Freshness::Unspecified;
        };
        for (name, arg) in directives(value) {
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Freshness::Revalidate;
            }
            if name.eq_ignore_ascii_case("max-age") {
                let Some(seconds) = arg.and_then(delta_seconds) else {
                    return Freshness::Unspecified;
                };
                if max_age.is_some_and(|earlier| earlier != seconds) {
                    return Freshness::Unspecified;
                }
                max_age = Some(seconds);
            }
        }
    }
    match max_age {
        Some(seconds) => Freshness::MaxAge(seconds.saturating_sub(age(headers))),
        None => Freshness::Unspecified,
    }
}

/// The response's `Age` in seconds; 0 when absent or unreadable.
fn age(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(delta_seconds)
        .unwrap_or(0)
}

/// A `delta-seconds` value (digits only; too large saturates).
fn delta_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// The directives of one field value: `name` or `name=value`, the value unquoted.
/// Commas inside a quoted string do not separate directives.
fn directives(value: &str) -> Vec<(&str, Option<&str>)> {
    split_outside_quotes(value)
        .into_iter()
        .filter_map(|part| {
            let part = part.trim();
            if part.is_empty() {
                return None;
            }
            Some(match part.split_once('=') {
                Some((name, arg)) => (name.trim(), Some(unquote(arg.trim()))),
                None => (part, None),
            })
        })
        .collect()
}

/// `value` split at the commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(value.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value.get(start..).unwrap_or(""));
    parts
}

/// The content of a quoted string, or the token itself.
fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> Freshness {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        freshness(&headers)
    }

    #[test]
    fn max_age_in_its_usual_and_unusual_forms() {
        assert_eq!(with(&["max-age=600"]), Freshness::MaxAge(600));
        assert_eq!(with(&["public, max-age=600"]), Freshness::MaxAge(600));
        assert_eq!(with(&["  Max-Age = 600 ,public"]), Freshness::MaxAge(600));
        assert_eq!(with(&["MAX-AGE=\"600\""]), Freshness::MaxAge(600));
        assert_eq!(with(&["public", "max-age=42"]), Freshness::MaxAge(42));
        assert_eq!(with(&["max-age=0"]), Freshness::MaxAge(0));
        assert_eq!(
            with(&["max-age=99999999999999999999999"]),
            Freshness::MaxAge(u64::MAX)
        );
        // A comma inside a quoted value does not end the directive.
        assert_eq!(
            with(&[r#"private="a, max-age=1", max-age=300"#]),
            Freshness::MaxAge(300)
        );
        assert_eq!(
            with(&[r#"ext="a \" , max-age=1", max-age=300"#]),
            Freshness::MaxAge(300)
        );
        // The same max-age twice is still that max-age.
        assert_eq!(with(&["max-age=60", "max-age=60"]), Freshness::MaxAge(60));
    }

    #[test]
    fn no_store_and_no_cache_win() {
        assert_eq!(with(&["no-store"]), Freshness::Revalidate);
        assert_eq!(with(&["max-age=600, No-Cache"]), Freshness::Revalidate);
        assert_eq!(with(&["max-age=600", "no-store"]), Freshness::Revalidate);
        assert_eq!(with(&[r#"no-cache="set-cookie""#]), Freshness::Revalidate);
    }

    #[test]
    fn garbage_says_nothing() {
        for garbage in [
            "",
            ",,,",
            "max-age",
            "max-age=",
            "max-age=-5",
            "max-age=1.5",
            "max-age=ten",
            "max-age=\"60",
            "maxage=60",
            "s-maxage=60",
            "max-age=6\t0",
        ] {
            assert_eq!(with(&[garbage]), Freshness::Unspecified, "{garbage:?}");
        }
        assert_eq!(with(&[]), Freshness::Unspecified);
        assert_eq!(
            with(&["max-age=60", "max-age=120"]),
            Freshness::Unspecified,
            "conflicting"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_bytes(b"max-age=60, \xff").unwrap(),
        );
        assert_eq!(freshness(&headers), Freshness::Unspecified, "not ASCII");
    }

    #[test]
    fn age_is_taken_off() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
        headers.insert(AGE, HeaderValue::from_static("100"));
        assert_eq!(freshness(&headers), Freshness::MaxAge(500));
        headers.insert(AGE, HeaderValue::from_static("6000"));
        assert_eq!(freshness(&headers), Freshness::MaxAge(0));
        headers.insert(AGE, HeaderValue::from_static("junk"));
        assert_eq!(freshness(&headers), Freshness::MaxAge(600));
    }
}
