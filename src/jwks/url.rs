//! Which URLs keys may be fetched from: `https://`, or `http://` to a loopback host
//! (`127.0.0.0/8`, `::1`, `localhost`) or when plain HTTP was explicitly allowed.

use std::net::IpAddr;

use http::uri::{Scheme, Uri};

/// Why a URL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UrlProblem {
    /// Not an absolute URL with a host.
    Malformed,
    /// A scheme other than `https` or `http`.
    Scheme,
    /// `http://` to a host that is not loopback, without `allow_http(true)`.
    PlainHttp,
}

impl UrlProblem {
    /// A sentence for a configuration error or a log.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Malformed => "not an absolute http(s) URL with a host",
            Self::Scheme => "the scheme must be https (or http)",
            Self::PlainHttp => {
                "http:// only to a loopback host (127.0.0.0/8, ::1, localhost) or with allow_http(true)"
            }
        }
    }
}

/// `url` parsed and checked.
pub(crate) fn checked(url: &str, allow_http: bool) -> Result<Uri, UrlProblem> {
    let uri: Uri = url.parse().map_err(|_| UrlProblem::Malformed)?;
    let host = uri.host().filter(|h| !h.is_empty());
    let (Some(scheme), Some(host)) = (uri.scheme(), host) else {
        return Err(UrlProblem::Malformed);
    };
    if *scheme == Scheme::HTTPS {
        return Ok(uri);
    }
    if *scheme != Scheme::HTTP {
        return Err(UrlProblem::Scheme);
    }
    if allow_http || is_loopback(host) {
        Ok(uri)
    } else {
        Err(UrlProblem::PlainHttp)
    }
}

/// Whether `host` (as in a URI: an IPv6 address in brackets) is loopback.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of a URL, for logs (never its path or query, which may carry a secret).
pub(crate) fn host_of(uri: &Uri) -> &str {
    uri.host().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        for ok in [
            "https://idp.example/jwks",
            "https://idp.example:8443/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.8.7/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost/jwks",
            "http://LocalHost:1/jwks",
        ] {
            assert!(checked(ok, false).is_ok(), "{ok}");
        }
        for (bad, problem) in [
            ("http://idp.example/jwks", UrlProblem::PlainHttp),
            ("http://10.0.0.1/jwks", UrlProblem::PlainHttp),
            ("http://[::ffff:8.8.8.8]/jwks", UrlProblem::PlainHttp),
            ("http://localhost.evil.example/jwks", UrlProblem::PlainHttp),
            ("http://128.0.0.1/jwks", UrlProblem::PlainHttp),
            ("ftp://idp.example/jwks", UrlProblem::Scheme),
            ("/jwks", UrlProblem::Malformed),
            ("idp.example/jwks", UrlProblem::Malformed),
            ("https://", UrlProblem::Malformed),
            ("not a url", UrlProblem::Malformed),
        ] {
            assert_eq!(checked(bad, false).err(), Some(problem), "{bad}");
        }
        assert!(checked("http://idp.example/jwks", true).is_ok(), "opted in");
        assert_eq!(
            checked("ftp://idp.example/jwks", true).err(),
            Some(UrlProblem::Scheme)
        );
    }

    #[test]
    fn the_host_for_logs() {
        let uri = checked("https://idp.example/jwks?secret=1", false).unwrap();
        assert_eq!(host_of(&uri), "idp.example");
    }
}
