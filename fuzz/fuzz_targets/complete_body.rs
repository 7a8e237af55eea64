//! Fuzz target `complete_body`: see `fuzz/src/harness/complete_body.rs` for what it sends and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tower_stepup_fuzz::harness::complete_body::run(data);
});
