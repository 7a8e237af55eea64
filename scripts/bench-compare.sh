#!/usr/bin/env bash
# Every criterion bench of REV against the working tree, in one run on one machine:
#   scripts/bench-compare.sh REV [criterion args…]
# REV's benches run first and are saved as criterion baseline "before"; then this tree's
# benches run against it and criterion prints each change with its confidence interval
# ("No change in performance detected" / "Change within noise threshold" / a change).
# Needs redis-server for the verify bench. Extra args go to criterion, e.g.
# `--measurement-time 3 --warm-up-time 1` for a quicker, noisier run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
here=$PWD
rev=${1:?usage: scripts/bench-compare.sh REV [criterion args]}
shift
before=$(mktemp -d)
git worktree add -q --detach "$before" "$rev"
trap 'git -C "$here" worktree remove --force "$before"' EXIT
# One target directory, so both runs share criterion's baseline store.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
for bench in layer cache_choice verify; do
    echo "== $bench: $rev (saved as baseline 'before')"
    (cd "$before" && cargo bench -q --all-features --bench "$bench" -- --save-baseline before "$@")
    echo "== $bench: working tree against 'before'"
    cargo bench -q --all-features --bench "$bench" -- --baseline before "$@"
done
