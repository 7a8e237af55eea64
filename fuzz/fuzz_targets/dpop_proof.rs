//! Fuzz target `dpop_proof`: see `fuzz/src/harness/dpop_proof.rs` for what it sends and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tower_stepup_fuzz::harness::dpop_proof::run(data);
});
