//! TOTP codes for the tests: the code of a moment, and one that is surely wrong.
#![allow(dead_code)]

use tower_stepup::factor::totp::{self, TotpSecret};

/// The code of `secret` for the step of `now`.
pub fn code_now(secret: &TotpSecret, now: u64) -> String {
    totp::code_at(secret, totp::step_at(now))
}

/// A six-digit code that matches none of the steps `now - 2 … now + 2` of `secret`.
pub fn wrong_code(secret: &TotpSecret, now: u64) -> String {
    let step = totp::step_at(now);
    let near: Vec<String> = (step - 2..=step + 2)
        .map(|s| totp::code_at(secret, s))
        .collect();
    ["918273", "827364", "736451", "645192", "554033"]
        .into_iter()
        .find(|c| !near.iter().any(|n| n == c))
        .expect("five candidates, at most five codes near now")
        .to_owned()
}

/// `n` distinct six-digit codes, none of which matches the steps `now - 2 … now + 2` of
/// `secret`.
pub fn wrong_codes(secret: &TotpSecret, now: u64, n: usize) -> Vec<String> {
    let step = totp::step_at(now);
    let near: Vec<String> = (step - 2..=step + 2)
        .map(|s| totp::code_at(secret, s))
        .collect();
    let codes: Vec<String> = (100_000..1_000_000)
        .map(|c: u32| c.to_string())
        .filter(|c| !near.contains(c))
        .take(n)
        .collect();
    assert_eq!(codes.len(), n, "at most 900,000 wrong codes");
    codes
}
