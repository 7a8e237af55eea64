#!/usr/bin/env bash
# Counts the public API (root re-exports, public types and constants, name clashes)
# from rustdoc's JSON output, with every feature on:
#   scripts/api-count.sh [REV]
# With REV (e.g. a commit), counts that commit instead, in a temporary worktree.
# rustdoc's JSON output is unstable: RUSTC_BOOTSTRAP=1 lets the stable toolchain write it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
here=$PWD
src=$here
if [ $# -gt 0 ]; then
    src=$(mktemp -d)
    git worktree add -q --detach "$src" "$1"
    trap 'git -C "$here" worktree remove --force "$src"' EXIT
fi
target=${API_COUNT_TARGET:-$here/target/api-count}
(cd "$src" && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$target \
    cargo rustdoc -q --all-features --lib -- -Z unstable-options --output-format json)
python3 "$here/scripts/api_count.py" "$target/doc/tower_stepup.json"
