//! The `htu` claim and the request URL it must match, normalized as RFC 9449 §4.3 asks:
//! no query, no fragment, and RFC 3986 §6.2.2 (syntax-based) and §6.2.3 (scheme-based)
//! normalization.

use std::fmt;
use std::fmt::Write as _;

use super::error::HtuError;

/// An absolute `http`/`https` URL in the normal form `htu` values are compared in.
///
/// Normalization: the query and the fragment are dropped; scheme and host are lowercased;
/// percent-encoded triplets get uppercase hex digits and those of unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) are decoded; `.` and `..` path segments are removed; the
/// default port (80 for `http`, 443 for `https`) and an empty port are dropped; an empty
/// path becomes `/`. A URL with userinfo (`user@host`), no host, another scheme, or a
/// character a URI cannot contain is refused.
///
/// The server's side of the comparison must be built from the configured public URL
/// plus the request path ([`Htu::from_base_and_path`]), never from the `Host` header a
/// client chose.
///
/// ```
/// use tower_stepup::dpop::Htu;
///
/// let a = Htu::parse("HTTPS://Example.COM:443/a/./b/../c?x#y").unwrap();
/// assert_eq!(a.as_str(), "https://example.com/a/c");
/// let b = Htu::from_base_and_path("https://example.com/", "/a/c?page=2").unwrap();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Htu {
    normalized: String,
}

impl Htu {
    /// Parses and normalizes `url`.
    pub fn parse(url: &str) -> Result<Self, HtuError> {
        normalize(url).map(|normalized| Self { normalized })
    }

    /// The URL of a request: the configured public base URL (`https://api.example`, or
    /// with a path prefix, `https://example.com/api`; a trailing `/` is ignored) followed
    /// by the request's path (from `/`; its query, if given, is dropped).
    ///
    /// A path with a `.` or `..` segment (also percent-encoded) is refused: normalization
    /// would remove it from the URL a proof is compared with, while the application's
    /// router sees the path as it was sent, so a proof for `/b` would pass on `/a/../b`.
    pub fn from_base_and_path(base: &str, path: &str) -> Result<Self, HtuError> {
        if base.contains(['?', '#']) {
            return Err(HtuError("the base URL has a query or a fragment"));
        }
        if !path.starts_with('/') {
            return Err(HtuError("the path does not start with /"));
        }
        let path_only = path.split(['?', '#']).next().unwrap_or_default();
        if path_only.split('/').any(is_dot_segment) {
            return Err(HtuError("the path has a dot segment"));
        }
        let base = base.strip_suffix('/').unwrap_or(base);
        let mut url = String::with_capacity(base.len() + path.len());
        url.push_str(base);
        url.push_str(path);
        Self::parse(&url)
    }

    /// The normalized URL.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

/// `.` or `..`, with any of the dots percent-encoded (`%2e`, `%2E`).
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let dots = lower.replace("%2e", ".");
    dots == "." || dots == ".."
}

/// Characters a URI may contain (RFC 3986 §2: unreserved, reserved and `%`).
pub(crate) fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

pub(crate) fn normalize(url: &str) -> Result<String, HtuError> {
    if url.is_empty() || !url.bytes().all(is_uri_char) {
        return Err(HtuError("empty, or a character a URI cannot contain"));
    }
    // The fragment ends the URL, the query ends what is before it.
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let url = url.split_once('?').map_or(url, |(before, _)| before);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(HtuError("no scheme and authority"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(HtuError("the scheme is not http or https")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(HtuError("userinfo"));
    }
    let (host, port) = split_host_port(authority)?;
    let host = normalize_host(host)?;
    let port = match port {
        None | Some("") => None,
        Some(digits) => {
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HtuError("a port that is not a number"));
            }
            // Leading zeros are allowed by RFC 3986 and mean the same port.
            let digits = digits.trim_start_matches('0');
            let port = if digits.is_empty() {
                0
            } else if digits.len() > 5 {
                return Err(HtuError("a port out of range"));
            } else {
                digits
                    .parse::<u32>()
                    .map_err(|_| HtuError("a port out of range"))?
            };
            if port > 65_535 {
                return Err(HtuError("a port out of range"));
            }
            (port != default_port).then_some(port)
        }
    };
    let path = percent_normalize(path, false)?;
    let path = if path.is_empty() {
        String::from("/")
    } else {
        remove_dot_segments(&path)
    };
    let mut out = scheme;
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(&path);
    Ok(out)
}

/// Splits `host[:port]`, with `host` an IP literal in brackets or anything without `:`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), HtuError> {
    if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or(HtuError("an unclosed IP literal"))?;
        let (host, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(HtuError("characters after an IP literal")),
        }
    } else {
        match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => Err(HtuError("more than one ':'")),
            Some((host, port)) => Ok((host, Some(port))),
            None => Ok((authority, None)),
        }
    }
}

fn normalize_host(host: &str) -> Result<String, HtuError> {
    if host.is_empty() {
        return Err(HtuError("no host"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        // IP-literal: IPv6 (hex, ':' and a dotted IPv4 tail) or IPvFuture.
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        let ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| is_unreserved(b) || is_sub_delim(b) || b == b':');
        if !ok {
            return Err(HtuError("an invalid IP literal"));
        }
        let mut out = String::with_capacity(host.len());
        out.push('[');
        out.push_str(&inner.to_ascii_lowercase());
        out.push(']');
        return Ok(out);
    }
    // reg-name (or IPv4): unreserved, percent-encoded, sub-delims.
    if !host
        .bytes()
        .all(|b| is_unreserved(b) || is_sub_delim(b) || b == b'%')
    {
        return Err(HtuError("an invalid host"));
    }
    percent_normalize(host, true)
}

/// RFC 3986 §6.2.2.1–6.2.2.2: uppercase hex in percent-encoded triplets, unreserved
/// characters decoded; with `lower`, every other character lowercased (host names are
/// case-insensitive).
fn percent_normalize(s: &str, lower: bool) -> Result<String, HtuError> {
    let mut out = String::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes
                .next()
                .and_then(hex)
                .ok_or(HtuError("a bad % escape"))?;
            let lo = bytes
                .next()
                .and_then(hex)
                .ok_or(HtuError("a bad % escape"))?;
            let v = (hi << 4) | lo;
            if is_unreserved(v) {
                out.push(char::from(if lower { v.to_ascii_lowercase() } else { v }));
            } else {
                let _ = write!(out, "%{v:02X}");
            }
        } else {
            out.push(char::from(if lower { b.to_ascii_lowercase() } else { b }));
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input
            .strip_prefix("../")
            .or_else(|| input.strip_prefix("./"))
        {
            // A: a relative prefix.
            input = rest;
        } else if let Some(rest) = input.strip_prefix("/.").filter(|r| r.starts_with('/')) {
            // B: "/./" becomes "/".
            input = rest;
        } else if input == "/." {
            input = "/";
        } else if let Some(rest) = input.strip_prefix("/..").filter(|r| r.starts_with('/')) {
            // C: "/../" becomes "/" and the last output segment goes.
            input = rest;
            pop_segment(&mut out);
        } else if input == "/.." {
            input = "/";
            pop_segment(&mut out);
        } else if input == "." || input == ".." {
            // D.
            input = "";
        } else {
            // E: move the first segment (with its leading "/") to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input
                .get(start..)
                .and_then(|s| s.find('/'))
                .map_or(input.len(), |i| i + start);
            let (segment, rest) = input.split_at(end);
            out.push_str(segment);
            input = rest;
        }
    }
    out
}

fn pop_segment(out: &mut String) {
    let cut = out.rfind('/').unwrap_or(0);
    out.truncate(cut);
}
