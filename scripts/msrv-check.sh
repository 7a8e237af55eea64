#!/usr/bin/env bash
# Keeps the crate's `rust-version` honest without another toolchain (none can be
# fetched here): every package the library depends on, with all features, must declare
# a `rust-version` no newer than the crate's. clippy's `incompatible_msrv` lint (on by
# default, run by .ci/run) checks the crate's own use of newer std APIs against it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo metadata --format-version 1 --all-features --locked | python3 scripts/msrv_check.py
