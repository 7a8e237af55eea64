//! SECURITY.md names its proofs as `file::function`: each must exist, so that every row
//! of the matrix points at a test `cargo test --all-features` runs (a test that fails
//! there fails CI, so a row cannot point at a red test either).

use std::path::Path;

#[test]
fn every_test_named_in_security_md_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    let mut rows_without_proof = Vec::new();
    for line in doc.lines() {
        let is_row = line.starts_with("| ")
            && line.split('|').nth(1).is_some_and(|c| {
                c.trim().chars().all(|ch| ch.is_ascii_digit()) && !c.trim().is_empty()
            });
        let mut in_row = 0;
        for reference in line.split('`').skip(1).step_by(2) {
            let Some((file, name)) = reference.split_once("::") else {
                continue;
            };
            if !(file.starts_with("tests/") || file.starts_with("src/")) || !file.ends_with(".rs") {
                continue;
            }
            named += 1;
            in_row += 1;
            let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            let defined = [format!("fn {name}("), format!("fn {name}<")]
                .iter()
                .any(|d| text.contains(d.as_str()));
            if !defined {
                missing.push(reference.to_owned());
            }
        }
        if is_row && in_row == 0 {
            rows_without_proof.push(line.chars().take(80).collect::<String>());
        }
    }
    assert!(
        named >= 100,
        "only {named} references found: is the matrix still there?"
    );
    assert!(
        missing.is_empty(),
        "SECURITY.md names tests that do not exist: {missing:#?}"
    );
    assert!(
        rows_without_proof.is_empty(),
        "matrix rows without a test: {rows_without_proof:#?}"
    );
}
