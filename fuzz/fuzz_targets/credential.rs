//! Fuzz target `credential`: see `fuzz/src/harness/credential.rs` for what it sends and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tower_stepup_fuzz::harness::credential::run(data);
});
