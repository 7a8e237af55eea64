//! The fuzz targets' logic, shared with `tests/fuzz_regressions.rs` (which includes
//! `harness/mod.rs` by path), so a finding replays there through the very same code.

pub mod harness;
