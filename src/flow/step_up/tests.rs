//! Reading the delegated step-up denial: the contract's form, what comes first, and
//! hostile answers.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::*;

const CHALLENGE: &str = r#"Bearer error="insufficient_user_authentication", error_description="a stronger authentication is required", acr_values="urn:idp:mfa phr", max_age=300"#;

fn headers(values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
    }
    map
}

/// The delegated body of the contract: no `mfa_token`, `mfa_requirements`, `expires_in`.
fn body() -> Value {
    json!({
        "error": "mfa_required",
        "error_description": "a stronger authentication is required",
        "acr_values": "urn:idp:mfa phr",
        "max_age": 300,
    })
}

fn read(values: &[&str], body: &Value) -> Option<DelegatedStepUp> {
    DelegatedStepUp::from_response(StatusCode::FORBIDDEN, &headers(values), body)
}

/// `(acr_values, max_age)` of a delegated answer.
fn asked(values: &[&str], body: &Value) -> (Vec<String>, Option<u64>) {
    let d = read(values, body).expect("a delegated step-up");
    (d.acr_values, d.max_age)
}

fn acr(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn the_contracts_delegated_form_at_403_and_401() {
    for status in [StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED] {
        let got = DelegatedStepUp::from_response(status, &headers(&[CHALLENGE]), &body());
        assert_eq!(
            got,
            Some(DelegatedStepUp {
                acr_values: acr(&["urn:idp:mfa", "phr"]),
                max_age: Some(300),
                description: Some("a stronger authentication is required".into()),
            }),
            "{status}"
        );
    }
    for status in [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_FOUND,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let got = DelegatedStepUp::from_response(status, &headers(&[CHALLENGE]), &body());
        assert_eq!(got, None, "{status}");
    }
    let d = read(&[CHALLENGE], &body()).unwrap();
    assert_eq!(d.acr_values_param().as_deref(), Some("urn:idp:mfa phr"));
}

#[test]
fn an_mfa_token_makes_it_the_local_form() {
    for token in [json!("sealed.mfa.token"), json!(12), json!({})] {
        let mut local = body();
        local["mfa_token"] = token.clone();
        local["expires_in"] = json!(300);
        assert_eq!(read(&[CHALLENGE], &local), None, "mfa_token {token}");
    }
}

#[test]
fn other_refusals_are_not_step_ups() {
    for code in [
        "reauthentication_required",
        "insufficient_scope",
        "invalid_token",
        "mfa_requried",
    ] {
        let other = json!({ "error": code });
        assert_eq!(read(&[CHALLENGE], &other), None, "{code}");
    }
    let scope = r#"Bearer error="insufficient_scope", scope="orders:read""#;
    assert_eq!(read(&[scope], &Value::Null), None);
    assert_eq!(read(&[], &Value::Null), None);
    assert_eq!(read(&[], &json!({ "error_description": "x" })), None);
}

#[test]
fn the_challenge_comes_first_then_the_body() {
    let header =
        r#"Bearer error="insufficient_user_authentication", acr_values="gold", max_age=60"#;
    let mut other = body();
    other["acr_values"] = json!("silver");
    other["max_age"] = json!(600);
    assert_eq!(asked(&[header], &other), (acr(&["gold"]), Some(60)));
    // Field by field: what the challenge lacks, the body gives.
    let acr_only = r#"Bearer error="insufficient_user_authentication", acr_values="gold""#;
    assert_eq!(asked(&[acr_only], &other), (acr(&["gold"]), Some(600)));
    let bare = r#"Bearer error="insufficient_user_authentication""#;
    assert_eq!(asked(&[bare], &other), (acr(&["silver"]), Some(600)));
    // No challenge at all: the body alone.
    assert_eq!(
        asked(&[], &body()),
        (acr(&["urn:idp:mfa", "phr"]), Some(300))
    );
    // Neither says: a re-authentication with no constraint.
    let minimal = json!({ "error": "mfa_required" });
    assert_eq!(asked(&[], &minimal), (vec![], None));
    assert_eq!(read(&[], &minimal).unwrap().acr_values_param(), None);
    // A challenge without a JSON body (a plain RFC 9470 server).
    assert_eq!(asked(&[header], &Value::Null), (acr(&["gold"]), Some(60)));
}

#[test]
fn a_basic_challenge_before_the_bearer_one() {
    let minimal = json!({ "error": "mfa_required" });
    let one_value = format!(r#"Basic realm="legacy, old", {CHALLENGE}"#);
    assert_eq!(
        asked(&[&one_value], &minimal),
        (acr(&["urn:idp:mfa", "phr"]), Some(300))
    );
    // Two header lines, Basic first.
    let lines = [r#"Basic realm="legacy""#, CHALLENGE];
    assert_eq!(
        asked(&lines, &minimal),
        (acr(&["urn:idp:mfa", "phr"]), Some(300))
    );
    // A Bearer challenge about something else first, then the step-up one in the DPoP
    // scheme, with names in any case.
    let mixed = r#"Bearer error="invalid_token", max_age=1, Bearer realm="api", dpop ALGS="ES256", Error="insufficient_user_authentication", Max_Age=42, ACR_VALUES="gold""#;
    assert_eq!(asked(&[mixed], &minimal), (acr(&["gold"]), Some(42)));
}

/// Issue 19: a server that accepts DPoP answers a DPoP request's step-up in the `DPoP`
/// scheme; when a `Bearer` step-up challenge is sent as well, the `DPoP` one is read,
/// wherever it stands.
#[test]
fn the_dpop_step_up_challenge_is_read_before_a_bearer_one() {
    let minimal = json!({ "error": "mfa_required" });
    let bearer =
        r#"Bearer error="insufficient_user_authentication", acr_values="silver", max_age=600"#;
    let dpop = r#"DPoP algs="ES256 EdDSA", error="insufficient_user_authentication", acr_values="gold", max_age=60"#;
    for lines in [[bearer, dpop], [dpop, bearer]] {
        assert_eq!(
            asked(&lines, &minimal),
            (acr(&["gold"]), Some(60)),
            "{lines:?}"
        );
    }
    let one_value = format!("{bearer}, {dpop}");
    assert_eq!(asked(&[&one_value], &minimal), (acr(&["gold"]), Some(60)));
    // A DPoP challenge about something else does not hide the Bearer step-up.
    let other = r#"DPoP algs="ES256", error="invalid_dpop_proof""#;
    assert_eq!(
        asked(&[other, bearer], &minimal),
        (acr(&["silver"]), Some(600))
    );
}

#[test]
fn a_malformed_challenge_is_ignored_for_the_body() {
    let unterminated =
        r#"Bearer error="insufficient_user_authentication", acr_values="gold, max_age=5"#;
    assert_eq!(
        asked(&[unterminated], &body()),
        (acr(&["urn:idp:mfa", "phr"]), Some(300))
    );
    // …and then the body must say mfa_required itself.
    assert_eq!(read(&[unterminated], &Value::Null), None);
    // Not visible ASCII: the header value is not even a string.
    let mut map = HeaderMap::new();
    map.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_bytes(
            b"Bearer error=\"insufficient_user_authentication\", acr_values=\"\xff\"",
        )
        .unwrap(),
    );
    let got = DelegatedStepUp::from_response(StatusCode::FORBIDDEN, &map, &body()).unwrap();
    assert_eq!(got.acr_values, acr(&["urn:idp:mfa", "phr"]));
}

#[test]
fn huge_values_are_not_read() {
    let minimal = json!({ "error": "mfa_required" });
    // A header value over the cap is ignored whole (then only the body counts).
    let huge = format!(
        r#"Bearer error="insufficient_user_authentication", acr_values="{}", max_age=5"#,
        "a".repeat(64 * 1024)
    );
    assert_eq!(asked(&[&huge], &minimal), (vec![], None));
    assert_eq!(
        asked(&[&huge], &body()),
        (acr(&["urn:idp:mfa", "phr"]), Some(300))
    );
    // One value too long, or too many: the list is absent, never cut.
    let long = "a".repeat(MAX_ACR_VALUE_LEN + 1);
    let many = vec!["v"; MAX_ACR_VALUES + 1].join(" ");
    let at_bounds = vec!["a".repeat(MAX_ACR_VALUE_LEN); MAX_ACR_VALUES].join(" ");
    for (list, read_back) in [(&long, false), (&many, false), (&at_bounds, true)] {
        let header =
            format!(r#"Bearer error="insufficient_user_authentication", acr_values="{list}""#);
        let mut in_body = minimal.clone();
        in_body["acr_values"] = json!(list);
        for (values, body) in [(vec![header.as_str()], &minimal), (vec![], &in_body)] {
            let (got, _) = asked(&values, body);
            assert_eq!(got.len(), if read_back { MAX_ACR_VALUES } else { 0 });
        }
    }
}

#[test]
fn a_duplicated_param_is_not_given() {
    let dup = r#"Bearer error="insufficient_user_authentication", max_age=5, max_age=600, acr_values="gold", ACR_VALUES="none""#;
    assert_eq!(
        asked(&[dup], &body()),
        (acr(&["urn:idp:mfa", "phr"]), Some(300)),
        "from the body"
    );
    assert_eq!(
        asked(&[dup], &json!({ "error": "mfa_required" })),
        (vec![], None)
    );
    // A duplicated `error` makes it no step-up challenge at all.
    let dup_error = r#"Bearer error="insufficient_user_authentication", error="invalid_token""#;
    assert_eq!(read(&[dup_error], &Value::Null), None);
}

#[test]
fn a_max_age_that_is_not_a_number_is_absent() {
    let minimal = json!({ "error": "mfa_required" });
    for bad in [
        "abc",
        "-5",
        "+5",
        "5.0",
        "1e3",
        "\"\"",
        "\" 5\"",
        "99999999999999999999999",
    ] {
        let header = format!(r#"Bearer error="insufficient_user_authentication", max_age={bad}"#);
        assert_eq!(asked(&[&header], &minimal).1, None, "max_age={bad}");
    }
    // Quoted digits are a number (RFC 9110: token or quoted-string alike).
    let quoted = r#"Bearer error="insufficient_user_authentication", max_age="300""#;
    assert_eq!(asked(&[quoted], &minimal).1, Some(300));
    for bad in [
        json!("300"),
        json!(-1),
        json!(1.5),
        json!(null),
        json!([300]),
    ] {
        let mut b = minimal.clone();
        b["max_age"] = bad.clone();
        assert_eq!(asked(&[], &b).1, None, "max_age {bad}");
    }
}

#[test]
fn acr_values_outside_nqchar_are_absent() {
    let minimal = json!({ "error": "mfa_required" });
    for bad in [
        "gold\u{7}",
        "go\"ld",
        "gold\\",
        "g\u{f6}ld",
        "gold\tsilver",
        "   ",
    ] {
        let mut b = minimal.clone();
        b["acr_values"] = json!(bad);
        assert_eq!(asked(&[], &b).0, Vec::<String>::new(), "{bad:?}");
    }
    // Escaped quote in the header unescapes to `"`: refused too.
    let header = r#"Bearer error="insufficient_user_authentication", acr_values="go\"ld""#;
    assert_eq!(asked(&[header], &minimal).0, Vec::<String>::new());
    // Extra spaces between values are not values.
    let mut spaced = minimal.clone();
    spaced["acr_values"] = json!("  gold   silver ");
    assert_eq!(asked(&[], &spaced).0, acr(&["gold", "silver"]));
}
