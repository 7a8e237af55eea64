#!/usr/bin/env bash
# Every criterion bench of REV against the working tree, in one run on one machine:
#   scripts/bench-compare.sh REV [criterion args…]
# For each bench: REV runs and is saved as criterion baseline "before"; this tree runs
# against it ("after"); then REV runs against it again ("again"). Criterion prints each
# change with its confidence interval. "again" is REV against itself: how far the machine
# drifts between two runs of the same code. A change of "after" is real only where it
# stands clear of the drift "again" shows.
# Needs redis-server for the verify bench. Extra args go to criterion, e.g.
# `--measurement-time 3 --warm-up-time 1` for a quicker, noisier run; BENCHES="layer"
# runs only those benches.
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
for bench in ${BENCHES:-layer cache_choice verify}; do
    echo "== $bench: $rev (saved as baseline 'before')"
    (cd "$before" && cargo bench -q --all-features --bench "$bench" -- --save-baseline before "$@")
    echo "== $bench: after (the working tree against 'before')"
    cargo bench -q --all-features --bench "$bench" -- --baseline before "$@"
    echo "== $bench: again ($rev against 'before': the drift)"
    (cd "$before" && cargo bench -q --all-features --bench "$bench" -- --baseline before "$@")
done
