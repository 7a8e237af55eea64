#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (issue 7) with libFuzzer, each for a time budget.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 30; TARGET defaults to all of them:
#   credential token mfa_token complete_body routes dpop_proof
#
# Works on the stable toolchain: no cargo-fuzz, no nightly. It builds fuzz/ with plain
# `cargo build` and the instrumentation flags cargo-fuzz passes with `--sanitizer none`
# (SanitizerCoverage through `-Cpasses=sancov-module` and `-Cllvm-args`, all stable
# codegen options) for an explicit `--target`, so build scripts and proc macros stay
# uninstrumented; libfuzzer-sys compiles libFuzzer itself with the C++ compiler. No
# AddressSanitizer (that needs nightly's -Zsanitizer): the code under test forbids
# `unsafe`, so the targets look for panics, wrong answers (their assertions) and hangs.
#
# The growing corpus lives in fuzz/corpus/<target> (gitignored), seeded from the
# committed fuzz/seeds/<target>. A crash, an assertion or a timeout stops that target;
# the input is written to fuzz/artifacts/<target>/ and the script exits 1 after running
# the remaining targets, printing the artifact and how to replay it. Turn every finding
# into a test in tests/fuzz_regressions.rs.
#
# The targets run one after the other, one process each. FUZZ_ARGS adds libFuzzer flags
# (e.g. FUZZ_ARGS=-seed=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
fuzz="$root/fuzz"

secs="${1:-30}"
if [ "$#" -gt 0 ]; then shift; fi
case "$secs" in
    '' | *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
        exit 2
        ;;
esac
all=(credential token mfa_token complete_body routes dpop_proof)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
    if [ ! -f "$fuzz/fuzz_targets/$t.rs" ]; then
        echo "unknown target '$t' (have: ${all[*]})" >&2
        exit 2
    fi
done

triple=$(rustc -vV | sed -n 's/^host: //p')
# cargo-fuzz's flags for `--sanitizer none` (plus debug assertions and overflow checks,
# which it also turns on in release builds).
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers=yes"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== building fuzz targets ($(rustc --version), $triple)"
build_start=$(date +%s)
cargo build --manifest-path "$fuzz/Cargo.toml" --target-dir "$fuzz/target" \
    --release --target "$triple" --bins
echo "== built in $(($(date +%s) - build_start)) s"

failed=()
for t in "${targets[@]}"; do
    bin="$fuzz/target/$triple/release/$t"
    corpus="$fuzz/corpus/$t"
    seeds="$fuzz/seeds/$t"
    artifacts="$fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts" "$seeds"
    log="$artifacts/fuzz.log"
    case "$t" in
        token | mfa_token | dpop_proof) max_len=9000 ;;
        *) max_len=4096 ;;
    esac
    echo "== $t: ${secs} s"
    status=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len="$max_len" \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} \
        "$corpus" "$seeds" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    units=$(find "$corpus" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        echo "   ok: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}, corpus $units"
    else
        failed+=("$t")
        echo "   FAILED (exit $status); last lines of $log:"
        tail -n 60 "$log" | sed 's/^/   | /'
        grep -o "Test unit written to [^ ]*" "$log" | sed 's/Test unit written to //' |
            while read -r a; do
                echo "   artifact: $a"
                echo "   replay:   $bin $a"
                echo "   base64:   $(base64 -w0 <"$a" | head -c 4000)"
            done
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== findings in: ${failed[*]} (artifacts under fuzz/artifacts/; add each input to tests/fuzz_regressions.rs)"
    exit 1
fi
echo "== no findings (${targets[*]}, ${secs} s each)"
