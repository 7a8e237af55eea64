//! A reader of `WWW-Authenticate` header values (RFC 9110 §11.6.1): a list of
//! challenges, each a scheme followed by a token68 or by auth-params (§11.2), for the
//! step-up challenge of RFC 9470.
//!
//! ```text
//! challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Scheme and parameter names compare case-insensitively; quoted strings are unescaped.
//! A value that does not follow the grammar (an unterminated quote, a stray character,
//! a parameter before any scheme) or is longer than [`MAX_HEADER_LEN`] is refused whole:
//! nothing read from a malformed value is trusted.
//!
//! A server that accepts DPoP (RFC 9449 §7.1) answers a DPoP request with a `DPoP …`
//! challenge carrying the error (step-up included), and other requests with their
//! `Bearer …` challenge first and a bare `DPoP algs="…"` one after it, in one value or in
//! several: [`parse_all`] reads every value, [`pick`] takes the error's challenge (the
//! `DPoP` one when there is one), [`dpop_algs`] the algorithms the server accepts.

/// Longest header value read; a longer one is refused whole.
pub(crate) const MAX_HEADER_LEN: usize = 16 * 1024;

/// One challenge: its scheme and its auth-params in order (names lowercased, values
/// unquoted). A challenge with a token68 (e.g. `Basic dXNlcg==`) has no params.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The auth-scheme, as written.
    pub(crate) scheme: String,
    /// The auth-params, names lowercased.
    pub(crate) params: Vec<(String, String)>,
    /// Whether a token68 follows the scheme (then no auth-param may).
    token68: bool,
}

impl Challenge {
    /// Whether the scheme is `scheme`, compared case-insensitively.
    pub(crate) fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The value of the parameter `name` (case-insensitive). `None` when it is absent,
    /// and when it is given more than once: RFC 9110 allows each name once per
    /// challenge, and of two values neither can be trusted.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        let mut found = self
            .params
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let (_, value) = found.next()?;
        found.next().is_none().then_some(value.as_str())
    }
}

/// The challenges of one header value, or `None` if it is malformed or too long.
pub(crate) fn parse(value: &str) -> Option<Vec<Challenge>> {
    if value.len() > MAX_HEADER_LEN {
        return None;
    }
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        // Empty list elements are allowed (`, ,`).
        c.skip_ows();
        while c.eat(b',') {
            c.skip_ows();
        }
        if c.at_end() {
            return Some(out);
        }
        let name = c.token()?;
        c.skip_ows();
        if c.eat(b'=') {
            // An auth-param of the current challenge (none yet, or one with a token68:
            // malformed).
            let param = (name.to_ascii_lowercase(), c.param_value()?);
            let current = out.last_mut().filter(|c| !c.token68)?;
            current.params.push(param);
        } else {
            let mut challenge = Challenge {
                scheme: name.to_owned(),
                params: Vec::new(),
                token68: false,
            };
            if !c.at_end() && c.peek() != Some(b',') {
                c.first_element(&mut challenge)?;
            }
            out.push(challenge);
        }
        c.skip_ows();
        if !c.at_end() && !c.eat(b',') {
            return None;
        }
    }
}

/// Every challenge of every `WWW-Authenticate` value of `headers` that parses.
pub(crate) fn challenges(headers: &http::HeaderMap) -> Vec<Challenge> {
    parse_all(
        headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Whether a `DPoP` or `Bearer` challenge of `headers` carries `error="<error>"`
/// ([`pick`]).
#[cfg(feature = "client")]
pub(crate) fn has_error(headers: &http::HeaderMap, error: &str) -> bool {
    pick(&challenges(headers), Some(error)).is_some()
}

/// The challenges of every value, in order; a malformed value is skipped whole (the
/// others are still read).
#[cfg_attr(not(test), allow(dead_code))] // the client's DPoP support calls it
pub(crate) fn parse_all<'v>(values: impl IntoIterator<Item = &'v str>) -> Vec<Challenge> {
    values.into_iter().filter_map(parse).flatten().collect()
}

/// The challenge that carries an `error` (equal to `error` when given) in the `Bearer` or
/// `DPoP` scheme: the first `DPoP` one if there is one, else the first `Bearer` one. A
/// server that accepts DPoP puts a DPoP request's error in the `DPoP` scheme, so its
/// parameters (`acr_values`, `max_age`, …) are the ones meant.
#[cfg_attr(not(test), allow(dead_code))] // the client's DPoP support calls it
pub(crate) fn pick<'c>(challenges: &'c [Challenge], error: Option<&str>) -> Option<&'c Challenge> {
    let carries = |c: &&Challenge| match (c.param("error"), error) {
        (Some(got), Some(want)) => got == want,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let first = |scheme: &str| challenges.iter().filter(|c| c.is(scheme)).find(carries);
    first("DPoP").or_else(|| first("Bearer"))
}

/// The algorithms of the first `DPoP` challenge's `algs` (space-separated, RFC 9449
/// §7.1): what the server accepts for proofs. `None` without a `DPoP` challenge, or
/// when its `algs` is absent, given twice or empty.
#[cfg_attr(not(test), allow(dead_code))] // the client's DPoP support calls it
pub(crate) fn dpop_algs(challenges: &[Challenge]) -> Option<Vec<&str>> {
    let algs: Vec<&str> = challenges
        .iter()
        .find(|c| c.is("DPoP"))?
        .param("algs")?
        .split(' ')
        .filter(|a| !a.is_empty())
        .collect();
    (!algs.is_empty()).then_some(algs)
}

/// A position in a header value.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token68` characters (before the trailing `=`s).
fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `1*tchar`.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.skip_while(is_tchar) == 0 {
            return None;
        }
        std::str::from_utf8(self.s.get(start..self.pos)?).ok()
    }

    /// What follows a scheme before the first comma: a token68 (kept as no params) or
    /// the first auth-param.
    fn first_element(&mut self, challenge: &mut Challenge) -> Option<()> {
        let start = self.pos;
        if self.skip_while(is_token68) > 0 {
            self.skip_while(|b| b == b'=');
            self.skip_ows();
            if self.at_end() || self.peek() == Some(b',') {
                challenge.token68 = true;
                return Some(());
            }
        }
        self.pos = start;
        let name = self.token()?.to_ascii_lowercase();
        self.skip_ows();
        if !self.eat(b'=') {
            return None;
        }
        let value = self.param_value()?;
        challenge.params.push((name, value));
        Some(())
    }

    /// After `=`: `BWS ( token / quoted-string )`.
    fn param_value(&mut self) -> Option<String> {
        self.skip_ows();
        if self.eat(b'"') {
            self.quoted_rest()
        } else {
            self.token().map(str::to_owned)
        }
    }

    /// A quoted-string after its opening quote, unescaped; `None` if unterminated or
    /// holding a control character.
    fn quoted_rest(&mut self) -> Option<String> {
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    self.pos += 1;
                    let escaped = self
                        .peek()
                        .filter(|&b| b == b'\t' || (0x20..0x7f).contains(&b))?;
                    out.push(escaped);
                }
                b if b == b'\t' || (0x20..0x7f).contains(&b) => out.push(b),
                _ => return None,
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn the_step_up_challenge_of_rfc_9470() {
        let value = r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR", max_age=5"#;
        let got = parse(value).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].is("bearer"));
        assert_eq!(
            params(&got[0]),
            [
                ("error", "insufficient_user_authentication"),
                (
                    "error_description",
                    "A different authentication level is required"
                ),
                ("acr_values", "myACR"),
                ("max_age", "5"),
            ]
        );
    }

    #[test]
    fn several_challenges_in_one_value() {
        let value = r#"Basic realm="legacy, with a comma", Bearer error="insufficient_user_authentication", max_age=300, DPoP algs="ES256 EdDSA""#;
        let got = parse(value).unwrap();
        let schemes: Vec<&str> = got.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP"]);
        assert_eq!(params(&got[0]), [("realm", "legacy, with a comma")]);
        assert_eq!(got[1].param("max_age"), Some("300"));
        assert_eq!(got[1].param("realm"), None);
        assert_eq!(got[2].param("algs"), Some("ES256 EdDSA"));
    }

    #[test]
    fn token68_and_bare_schemes() {
        let got = parse("Basic dXNlcjpwYXNz==, Negotiate, Bearer max_age=1").unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].params.is_empty() && got[1].params.is_empty());
        assert!(got[1].is("negotiate"));
        assert_eq!(got[2].param("max_age"), Some("1"));
        // Token68 with trailing `=` then a comma, then a param-looking first element.
        let got = parse("Custom abc=, Bearer error=x").unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].params.is_empty());
        assert_eq!(got[1].param("error"), Some("x"));
        // `error=` alone is a token68, not an empty param.
        let got = parse("Bearer error=").unwrap();
        assert!(got[0].token68 && got[0].param("error").is_none());
    }

    #[test]
    fn names_are_case_insensitive_values_are_not() {
        let got = parse(r#"bEaReR ERROR="Insufficient_User_Authentication", Max_Age = 7"#).unwrap();
        assert!(got[0].is("Bearer"));
        assert_eq!(
            got[0].param("error"),
            Some("Insufficient_User_Authentication")
        );
        assert_eq!(got[0].param("max_age"), Some("7"), "BWS around `=`");
    }

    #[test]
    fn quoted_strings_are_unescaped() {
        let got = parse(r#"Bearer error_description="say \"hi\", a \\ and \q", acr_values="a b""#)
            .unwrap();
        assert_eq!(
            got[0].param("error_description"),
            Some(r#"say "hi", a \ and q"#)
        );
        assert_eq!(got[0].param("acr_values"), Some("a b"));
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        let got = parse(" , Bearer ,, max_age=3 , ").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].param("max_age"), Some("3"));
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn malformed_values_are_refused_whole() {
        for bad in [
            r#"Bearer error="insufficient_user_authentication", max_age=5, acr_values="gold"#,
            r#"Bearer error="unterminated"#,
            r#"Bearer error="ends with a backslash\"#,
            "Bearer error=\"a control \u{1} char\"",
            "Bearer error=\"not ascii \u{e9}\"",
            "max_age=5, Bearer error=x",
            "Bearer error=, max_age=5",
            "Basic dXNlcg==, realm=x",
            "Bearer error=\"x\" junk",
            "Bearer error=x y=z",
            "Bearer max_age=5, =7",
            "Bearer @",
            "Bearer error=\"x\", max_age=5\"",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn duplicated_params_are_absent() {
        let got =
            parse(r#"Bearer max_age=5, MAX_AGE=600, error="insufficient_user_authentication""#)
                .unwrap();
        assert_eq!(
            got[0].param("max_age"),
            None,
            "two values: neither is trusted"
        );
        assert_eq!(
            got[0].param("error"),
            Some("insufficient_user_authentication")
        );
    }

    #[test]
    fn huge_values_are_refused_and_cheap() {
        let long = format!(
            r#"Bearer error="insufficient_user_authentication", acr_values="{}""#,
            "a".repeat(MAX_HEADER_LEN)
        );
        assert_eq!(parse(&long), None);
        // Just under the cap: read, in one pass.
        let fits = format!(r#"Bearer acr_values="{}""#, "a".repeat(MAX_HEADER_LEN - 20));
        assert_eq!(fits.len(), MAX_HEADER_LEN);
        let got = parse(&fits).unwrap();
        assert_eq!(
            got[0].param("acr_values").map(str::len),
            Some(MAX_HEADER_LEN - 20)
        );
        // Many tiny elements: linear, no recursion.
        let many = "Bearer a=b".to_owned() + &", c=d".repeat((MAX_HEADER_LEN - 10) / 5);
        assert_eq!(
            parse(&many).unwrap()[0].params.len(),
            1 + (MAX_HEADER_LEN - 10) / 5
        );
    }

    #[test]
    fn pick_prefers_the_dpop_challenge_of_the_error() {
        let value = r#"Bearer error="insufficient_user_authentication", max_age=300, DPoP algs="ES256 EdDSA", error="insufficient_user_authentication", max_age=60, acr_values="phr""#;
        let got = parse(value).unwrap();
        let c = pick(&got, Some("insufficient_user_authentication")).unwrap();
        assert!(c.is("DPoP"));
        assert_eq!(
            (c.param("max_age"), c.param("acr_values")),
            (Some("60"), Some("phr"))
        );
        assert!(pick(&got, None).unwrap().is("DPoP"));
        assert!(pick(&got, Some("invalid_token")).is_none());
        // A bare DPoP challenge carries no error: the Bearer one is the error's.
        let got = parse_all([
            r#"Bearer error="invalid_token", error_description="x""#,
            r#"DPoP algs="ES256 EdDSA""#,
        ]);
        let c = pick(&got, None).unwrap();
        assert!(c.is("Bearer"));
        assert_eq!(c.param("error"), Some("invalid_token"));
        assert_eq!(dpop_algs(&got), Some(vec!["ES256", "EdDSA"]));
        // Other schemes never count.
        let got = parse(r#"Basic error="invalid_token""#).unwrap();
        assert!(pick(&got, None).is_none());
        assert_eq!(dpop_algs(&got), None);
    }

    #[test]
    fn parse_all_skips_a_malformed_value_and_reads_the_others() {
        let got = parse_all([r#"Bearer error="unterminated"#, r#"dpop ALGS="ES256""#]);
        assert_eq!(got.len(), 1);
        assert_eq!(dpop_algs(&got), Some(vec!["ES256"]));
        for bad in [
            r#"DPoP algs="""#,
            r#"DPoP algs=" ""#,
            r#"DPoP algs=a, algs=b"#,
            "DPoP",
        ] {
            assert_eq!(dpop_algs(&parse(bad).unwrap()), None, "{bad:?}");
        }
    }

    /// What the crate's renderer writes, this reader reads back: every denial, with and
    /// without DPoP, over HTTP and gRPC.
    #[test]
    fn reads_back_what_the_renderer_writes() {
        use crate::challenge::{
            grpc_response, http_response, Denial, DenialKind, LocalCompletion, MfaRequirements,
            RequestScheme, StepUpChallenge, DENIAL_TABLE,
        };
        use crate::dpop::{DpopConfig, DpopError};

        let algs = DpopConfig::default().algs_header().to_owned();
        let step_up = || {
            Denial::step_up(StepUpChallenge {
                description: "a second factor is required for this resource",
                status: http::StatusCode::FORBIDDEN,
                acr_values: Some("urn:idp:mfa phr".to_owned()),
                max_age: Some(300),
                completion: Some(LocalCompletion {
                    mfa_token: "t".to_owned(),
                    mfa_requirements: MfaRequirements::challenge(["otp"]),
                    expires_in: 120,
                }),
            })
        };
        let mut denials: Vec<Denial> = DENIAL_TABLE
            .iter()
            .filter(|row| row.kind != DenialKind::MfaRequired)
            .map(|row| Denial::new(row.kind))
            .collect();
        denials.push(step_up());
        denials.push(Denial::insufficient_scope("billing:read admin".to_owned()));
        denials.push(Denial::dpop_refused(DpopError::WrongNonce).with_dpop_nonce("n"));
        let mut checked = 0;
        for base in denials {
            for scheme in [None, Some(RequestScheme::Bearer), Some(RequestScheme::Dpop)] {
                let denial = match scheme {
                    Some(s) => base.clone().with_dpop(algs.clone(), s),
                    None => base.clone(),
                };
                let row = denial.kind().row();
                for res in [
                    http_response(denial.clone(), "test"),
                    grpc_response(denial.clone(), "test"),
                ] {
                    let values = res.headers().get_all(http::header::WWW_AUTHENTICATE);
                    let values: Vec<&str> = values.iter().map(|v| v.to_str().unwrap()).collect();
                    let got = parse_all(values.iter().copied());
                    // Nothing written is malformed: every value reads.
                    assert_eq!(
                        values
                            .iter()
                            .map(|v| parse(v).unwrap().len())
                            .sum::<usize>(),
                        got.len()
                    );
                    if !row.challenge {
                        assert!(got.is_empty(), "{:?}", denial.kind());
                        continue;
                    }
                    let dpop_first = denial.dpop_used() || denial.kind().is_dpop();
                    assert_eq!(dpop_algs(&got).is_some(), scheme.is_some(), "{denial:?}");
                    if scheme.is_some() {
                        assert_eq!(dpop_algs(&got), Some(vec!["ES256", "EdDSA"]));
                    }
                    let Some(error) = row.challenge_error else {
                        if dpop_first {
                            assert!(got[0].is("DPoP") && got.len() == 1, "{denial:?}");
                        } else {
                            assert_eq!(got[0].param("realm"), Some("test"));
                        }
                        continue;
                    };
                    let c = pick(&got, Some(error)).unwrap();
                    assert_eq!(c.is("DPoP"), dpop_first, "{denial:?}");
                    assert_eq!(
                        got.len(),
                        if scheme.is_some() && !dpop_first {
                            2
                        } else {
                            1
                        }
                    );
                    assert_eq!(c.param("scope"), denial.scope());
                    assert_eq!(c.param("acr_values"), denial.acr_values());
                    assert_eq!(
                        c.param("max_age").map(|m| m.parse::<u64>().unwrap()),
                        denial.max_age()
                    );
                    if denial.scope().is_none() {
                        assert_eq!(c.param("error_description"), Some(denial.description()));
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 2 * 3 * 8, "{checked}");
    }
}
