//! `docs/flow.md` shows the diagram generated from `flow::TRANSITIONS`, and stays equal
//! to it. After changing the table, regenerate it with
//! `UPDATE_FLOW_DIAGRAM=1 cargo test --test flow_diagram`.

use std::path::Path;

const HEAD: &str = "# The authentication flow

Generated from `tower_stepup::flow::TRANSITIONS` by `tower_stepup::flow::mermaid()`;
`tests/flow_diagram.rs` fails when this file and the code differ. Regenerate with
`UPDATE_FLOW_DIAGRAM=1 cargo test --test flow_diagram`.

The states of a sign-in with a second factor, plus the step-up detour and the error
state `Failed`, whose recovery is either *start again* (the partial token expired before
a code was sent: `partial_token_expired`; or the server refused the challenge) or *try
again later* (the service was unavailable). A *delegated* step-up (a token from an
identity provider that performs MFA itself: no `mfa_token`) keeps the user `SignedIn`;
the way on is the identity provider, with the challenge's `acr_values` and `max_age`.

```mermaid
";

fn expected() -> String {
    format!("{HEAD}{}```\n", tower_stepup::flow::mermaid())
}

#[test]
fn docs_flow_diagram_equals_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flow.md");
    let expected = expected();
    if std::env::var_os("UPDATE_FLOW_DIAGRAM").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/flow.md differs from flow::mermaid(); run \
         `UPDATE_FLOW_DIAGRAM=1 cargo test --test flow_diagram`\n--- expected ---\n{expected}"
    );
}
