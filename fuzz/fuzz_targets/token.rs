//! Fuzz target `token`: see `fuzz/src/harness/token.rs` for what it sends and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tower_stepup_fuzz::harness::token::run(data);
});
