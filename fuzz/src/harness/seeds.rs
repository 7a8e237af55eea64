//! The committed seed corpus (`fuzz/seeds/<target>/`): inputs that reach the paths a
//! fuzzer finds only slowly (genuine tokens in every route, a full login → verify, an
//! enrollment, a refresh chain, a lockout, a step-up challenge completed, route tables
//! that build). Generated here so they follow the harness's input format;
//! `tests/fuzz_regressions.rs` checks the files are current (and rewrites them with
//! `FUZZ_WRITE_SEEDS=1`).

use super::fixture::Tokens;

/// The seeds of `target`, by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "credential" => credential(),
        "token" => token(),
        "mfa_token" => mfa_token(),
        "complete_body" => complete_body(),
        "routes" => routes(),
        "dpop_proof" => dpop_proof(),
        _ => Vec::new(),
    }
}

/// The targets that have seeds.
pub const TARGETS: [&str; 6] = [
    "credential",
    "token",
    "mfa_token",
    "complete_body",
    "routes",
    "dpop_proof",
];

fn credential() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // [route, no long path, content type, one header, name, not raw, fixture token, which,
    //  (prefix, suffix) | (cookie name, quote, before, after), t1 = T0, t2 = T0]
    for route in 0..10u8 {
        for token in [0u8, 1] {
            out.push((
                format!("bearer-route{route}-token{token}"),
                vec![route, 1, 2, 1, 0, 1, 0, token, 0, 0, 0, 0],
            ));
        }
    }
    for token in 0..5u8 {
        out.push((
            format!("bearer-me-token{token}"),
            vec![1, 1, 2, 1, 0, 1, 0, token, 0, 0, 0, 0],
        ));
        out.push((
            format!("cookie-me-token{token}"),
            vec![1, 1, 2, 1, 3, 1, 0, token, 0, 1, 0, 0, 0, 0],
        ));
        // A GET with a gRPC content type: the HTTP denial.
        out.push((
            format!("grpc-billing-token{token}"),
            vec![2, 1, 0, 1, 0, 1, 0, token, 0, 0, 0, 0],
        ));
        // A POST to the step-up route `/deep/x`: the gRPC form.
        out.push((
            format!("grpc-post-deep-token{token}"),
            vec![9, 1, 0, 1, 0, 1, 0, token, 0, 0, 0, 0],
        ));
    }
    // A step-up path too long to bind: 414.
    // A step-up path too long to bind (4000 bytes), password-only token: 414.
    out.push((
        "long-path".into(),
        vec![2, 0, 0xA0, 0x0F, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0],
    ));
    out
}

fn token() -> Vec<(String, Vec<u8>)> {
    let tokens = Tokens::issue();
    let mut out = Vec::new();
    for (i, t) in tokens.all().iter().enumerate() {
        // Mode 0: the text itself, at T0 and T0.
        let mut raw = vec![0, 0, 0];
        raw.extend_from_slice(t.as_bytes());
        out.push((format!("raw-{i}"), raw));
        // Mode 1: one edit (replace the character at 40 by 'A').
        out.push((format!("edit-{i}"), vec![1, 0, 0, i as u8, 0, 0, 40, 0, 0]));
    }
    // Mode 2: signed headers and payloads: access header + `"nbf":1`, partial header with
    // the template replaced by a partial audience, a header with `crit`.
    let mut signed = vec![2, 0, 0, 0, 1];
    let nbf = br#""nbf":1"#;
    signed.push(nbf.len() as u8);
    signed.extend_from_slice(nbf);
    signed.extend_from_slice(&[0, 1]);
    out.push(("signed-nbf".into(), signed));
    let mut partial = vec![2, 0, 0, 1, 1];
    let aud = br#""aud":"urn:tower-stepup:mfa-verify","#;
    partial.push(aud.len() as u8);
    partial.extend_from_slice(aud);
    // Replace the template's `"aud":"https://api.fuzz",` (offset 41, 25 bytes).
    partial.extend_from_slice(&[1, 41, 25, 1]);
    out.push(("signed-partial".into(), partial));
    let mut crit = vec![2, 0, 0, 2];
    let c = br#""crit":["exp"]"#;
    crit.push(c.len() as u8);
    crit.extend_from_slice(c);
    crit.extend_from_slice(&[0, 1, nbf.len() as u8]);
    crit.extend_from_slice(nbf);
    crit.extend_from_slice(&[0, 1]);
    out.push(("signed-crit".into(), crit));
    out
}

fn mfa_token() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for old in [false, true] {
        let mut raw = vec![0, 0];
        raw.extend_from_slice(super::mfa_token::genuine(old).as_bytes());
        out.push((format!("raw-{old}"), raw));
        out.push((
            format!("edit-{old}"),
            vec![0, 1, u8::from(old), 0, 2, 10, 0, 3],
        ));
    }
    out.push(("round-trip".into(), vec![0, 2, 0, 0, 0]));
    // Mode 3: the real header and the template, key s1.
    let mut sealed = vec![0, 3, 0, 1, 0, 0, 0, 0];
    sealed.extend_from_slice(&[7; 12]);
    sealed.push(2);
    out.push(("sealed-template".into(), sealed));
    let mut kid = vec![0, 3, 2];
    kid.push(2);
    kid.extend_from_slice(b"s0");
    kid.extend_from_slice(&[1, 0, 0, 0, 0]);
    kid.extend_from_slice(&[7; 12]);
    kid.push(1);
    out.push(("sealed-old-key".into(), kid));
    out
}

// complete_body: one request is [clock step, target, method, content type, credential…,
// body…, padding, content length]; see `complete_body::step`.
const LOGIN_ALICE: &[u8] = &[0, 0, 2, 0, 7, 1, 0, 0, 1, 9];
const LOGIN_BOB: &[u8] = &[0, 0, 2, 0, 7, 1, 2, 0, 1, 9];
/// Verify with challenge `c` (index in the pool) and the code of secret `s` at step
/// offset `o` (0: previous, 1: current, 2: next).
fn verify(c: u8, s: u8, o: u8) -> Vec<u8> {
    vec![0, 2, 2, 0, 7, 3, 1, 0, c, 0, 0, s, o, 1, 1, 9]
}
const VERIFY_WRONG: &[u8] = &[0, 2, 2, 0, 7, 3, 1, 0, 3, 0, 4, 1, 9];
/// `GET /billing` with access token `a`.
fn billing(a: u8) -> Vec<u8> {
    vec![0, 9, 2, 0, 0, a, 0, 0, 0, 1, 9]
}
/// Refresh with the `r`-th refresh token issued.
fn refresh(r: u8) -> Vec<u8> {
    vec![0, 7, 2, 0, 7, 6, 0, r, 1, 9]
}
/// Enroll with access token `a`.
fn enroll(a: u8) -> Vec<u8> {
    vec![0, 5, 2, 0, 0, a, 0, 0, 0, 1, 9]
}
/// Confirm with access token `a` and the code of secret `s` (current step).
fn confirm(a: u8, s: u8) -> Vec<u8> {
    vec![0, 6, 2, 0, 0, a, 8, 0, s, 1, 1, 1, 9]
}

/// The complete_body seeds with the statuses they must get.
pub fn complete_body_flows() -> Vec<(&'static str, Vec<u8>, Vec<u16>)> {
    vec![
        (
            "login-verify-replay",
            [LOGIN_ALICE, &verify(3, 0, 1), &verify(3, 0, 1)].concat(),
            vec![200, 200, 404],
        ),
        (
            // The fixture's access token names a session the store never started: a
            // step-up continues a session, it cannot start one (DESIGN §8.2).
            "step-up-challenge-then-verify",
            [&billing(0)[..], &verify(3, 0, 1)].concat(),
            vec![403, 404],
        ),
        (
            "refresh-chain-and-reuse",
            [
                LOGIN_BOB,
                &refresh(0),
                &refresh(1),
                &refresh(0),
                &refresh(2),
            ]
            .concat(),
            vec![200, 200, 200, 400, 400],
        ),
        (
            "enroll-confirm-login-verify",
            [
                LOGIN_BOB,
                &enroll(2),
                &confirm(2, 1),
                LOGIN_BOB,
                &verify(3, 1, 2),
            ]
            .concat(),
            vec![200, 200, 200, 200, 200],
        ),
        (
            "lockout",
            [
                LOGIN_ALICE,
                VERIFY_WRONG,
                VERIFY_WRONG,
                VERIFY_WRONG,
                VERIFY_WRONG,
                VERIFY_WRONG,
                &verify(3, 0, 1),
            ]
            .concat(),
            vec![200, 401, 401, 401, 401, 429, 429],
        ),
    ]
}

fn complete_body() -> Vec<(String, Vec<u8>)> {
    complete_body_flows()
        .into_iter()
        .map(|(name, data, _)| (name.to_owned(), data))
        .collect()
}

fn routes() -> Vec<(String, Vec<u8>)> {
    // 3 routes: GET "/a" public; any "/a/{x}" step-up; GET "/v" (text piece) verify;
    // default authenticated; 4 probes: GET /a, GET /a/v, HEAD /v, POST "/a/".
    let table = vec![
        3, // routes
        1, 0, 1, 0, 1, 1, 0, // GET, grammar, 1 piece, "/a", public
        0, 1, 1, 1, 1, 1, 1, 3, 2, // any, no reuse, grammar, 2 pieces "/a" "/{x}", step-up
        1, 0, 1, 1, 0, 0, 2, b'/', b'v', 3, // GET, no reuse, grammar, text "/v", verify
        3, // default authenticated
        4, // probes
        0, 1, 0, // GET, pattern 0
        0, 2, 1, 1, // GET, pattern 1 filled with "v"
        4, 1, 2, // HEAD, pattern 2
        1, 0, 3, b'/', b'a', b'/', // POST, text "/a/"
    ];
    let conflict = vec![
        2, 1, 0, 1, 0, 1, 3, 0, // GET "/{x}" public
        1, 0, 1, 1, 0, 1, 4, 0, // GET "/{y}" public: conflict
        3, 0,
    ];
    vec![("table".into(), table), ("conflict".into(), conflict)]
}

// dpop_proof: [mode, time, token, nonce, method, …]; see `dpop_proof::run`.
fn dpop_proof() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, alg) in ["es256", "eddsa"].iter().enumerate() {
        // Mode 0: the genuine proof as raw bytes, at T0, the fixture token, no nonce, GET.
        let mut raw = vec![0, 0, 1, 0, 0];
        raw.extend_from_slice(super::dpop_proof::genuine(i, false).as_bytes());
        out.push((format!("raw-{alg}"), raw));
        // Mode 2: the templates signed, with the nonce expected and carried.
        out.push((
            format!("signed-{alg}-nonce"),
            vec![2, 0, 1, 1, 0, i as u8, 0, 1, 0],
        ));
        // Mode 1: one edit of the genuine proof.
        out.push((
            format!("edit-{alg}"),
            vec![1, 0, 1, 0, 0, i as u8, 0, 0, 0, 20, 0, 0],
        ));
    }
    // Mode 2: a claims template with `iat` spliced to a string.
    let mut spliced = vec![2, 0, 1, 0, 0, 0, 0, 0, 2];
    let claims = super::dpop_proof::claims(false);
    let at = claims.find("\"iat\":").unwrap() + 6;
    spliced.extend_from_slice(&(at as u16).to_le_bytes());
    spliced.push(10);
    spliced.push(3);
    spliced.extend_from_slice(b"\"1\"");
    out.push(("signed-iat-string".into(), spliced));
    // Mode 3: two values.
    out.push(("two-values".into(), vec![3, 0, 1, 0, 0]));
    out
}
