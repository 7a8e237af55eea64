//! Fuzz target `mfa_token`: see `fuzz/src/harness/mfa_token.rs` for what it sends and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tower_stepup_fuzz::harness::mfa_token::run(data);
});
