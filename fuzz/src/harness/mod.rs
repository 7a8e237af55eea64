//! Harness logic of the fuzz targets (issue 7).
//!
//! Each target is one function `run(&[u8])` that must never panic: a panic is a finding,
//! either in tower-stepup (the library panicked) or an oracle the answer broke (an
//! `assert!` here). The same functions run under libFuzzer (`fuzz/fuzz_targets/*.rs`) and
//! as plain tests (`tests/fuzz_regressions.rs`), which replay every finding and a few
//! representative inputs.
//!
//! Only tower-stepup's public API is used, plus crates the main package already depends
//! on, so the module compiles in both places.

pub mod complete_body;
pub mod credential;
pub mod dpop_proof;
pub mod fixture;
pub mod input;
pub mod mfa_token;
pub mod routes;
pub mod seeds;
pub mod token;
