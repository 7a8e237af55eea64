#!/usr/bin/env bash
# HTTP throughput of the demo (examples/axum_app) under wrk.
#
# Builds the demo in release, serves it on a free loopback port with fixed keys and
# RUST_LOG=warn, logs bob in (password only, no second factor), then drives three
# targets, one after the other, in the same run:
#
#   GET /healthz        public route: the baseline (no token work)
#   GET /api/me         bob's access token, 200 (token verification on every request)
#   GET /api/billing    bob's access token, 403 mfa_required (step-up denial, an
#                       mfa_token sealed per request): non-2xx is expected here
#
# and prints req/s, p50, p99 and the non-2xx count of each, the server's CPU time per
# request ("srv_us/req", whatever share of the cores wrk leaves it), the CPU share other
# processes took meanwhile ("others"; a warning at >= 10%), and whether /api/me reaches
# at least 0.85x the req/s of /healthz. Exits 1 when /healthz or /api/me saw a non-2xx, or
# /api/billing a 2xx. bob's token lives 24 h here (STEPUP_ACCESS_TTL_SECS), so long
# runs do not turn into 401s.
#
# Usage:
#   scripts/bench-http.sh [--warmup] [--no-build] [--strict] [-h|--help]
#
#   --warmup    a short wrk run (WARMUP_DURATION, default 2s) before each measurement
#   --no-build  skip `cargo build`, use the already built release example
#   --strict    exit 1 when the /api/me >= 0.85x /healthz target is missed
#
# Environment (all optional):
#   DURATION=10s  CONNECTIONS=32  THREADS=1   wrk's -d, -c, -t (for each target)
#   WARMUP_DURATION=2s                        length of each --warmup run
#   PORT=<free port>                          loopback port of the demo
#   TARGET_RATIO=0.85                         the /api/me : /healthz target
#   KEEP_LOGS=1                               keep the scratch dir (server log, raw wrk output)
#
# wrk is installed with apt-get (as root, or with sudo -n) when missing.
# The load generator and the server run on the same machine and share its cores:
# read the numbers as a ratio between routes, not as the server's capacity.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

WARMUP=0
BUILD=1
STRICT=0
for arg in "$@"; do
    case "$arg" in
        --warmup) WARMUP=1 ;;
        --no-build) BUILD=0 ;;
        --strict) STRICT=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench-http: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP_DURATION=${WARMUP_DURATION:-2s}
TARGET_RATIO=${TARGET_RATIO:-0.85}

die() { echo "bench-http: $*" >&2; exit 1; }

[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 ]] || die "CONNECTIONS must be a positive integer"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 ]] || die "THREADS must be a positive integer"
((THREADS <= CONNECTIONS)) || die "THREADS ($THREADS) must not exceed CONNECTIONS ($CONNECTIONS)"
[[ "$DURATION" =~ ^[0-9]+[smh]?$ ]] || die "DURATION must look like 10s, 1m (wrk's -d)"
[[ "$WARMUP_DURATION" =~ ^[0-9]+[smh]?$ ]] || die "WARMUP_DURATION must look like 2s"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

command -v curl >/dev/null || die "curl is required"

# --- wrk --------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    echo "bench-http: wrk not found, installing the Debian package" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n apt-get install -y wrk >/dev/null || { sudo -n apt-get update >/dev/null && sudo -n apt-get install -y wrk >/dev/null; }
    fi
    command -v wrk >/dev/null || die "wrk is missing and could not be installed (apt-get install wrk)"
fi

# --- scratch dir, server lifetime ---------------------------------------------------------
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-http.XXXXXX")
SERVER_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP_LOGS:-0}" == 1 || $rc -ne 0 ]]; then
        echo "bench-http: scratch files kept in $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build --------------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/release/examples/axum_app"
if ((BUILD)); then
    echo "bench-http: cargo build --release --example axum_app" >&2
    cargo build --release --example axum_app >&2 || die "build failed"
fi
[[ -x "$BIN" ]] || die "$BIN not found (build it, or drop --no-build)"
# Benchmark a private copy: a concurrent `cargo build` cannot swap it mid-run.
cp "$BIN" "$SCRATCH/axum_app"

# --- start the demo -----------------------------------------------------------------------
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    else
        local p
        for _ in $(seq 50); do
            p=$((20000 + RANDOM % 40000))
            (: </dev/tcp/127.0.0.1/"$p") 2>/dev/null || { echo "$p"; return; }
        done
        die "no free port found"
    fi
}
PORT=${PORT:-$(free_port)}
BASE="http://127.0.0.1:$PORT"

key() { head -c32 /dev/urandom | base64 | tr -d '\n'; }
STEPUP_BIND="127.0.0.1:$PORT" \
    STEPUP_SIGNING_KEY="$(key)" \
    STEPUP_SEALING_KEY="$(key)" \
    STEPUP_ACCESS_TTL_SECS=86400 \
    RUST_LOG=warn \
    "$SCRATCH/axum_app" >"$SCRATCH/server.out" 2>"$SCRATCH/server.err" &
SERVER_PID=$!

for i in $(seq 300); do
    if curl -fsS -o /dev/null --max-time 1 "$BASE/healthz" 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SCRATCH/server.err" >&2; die "the demo exited before answering /healthz"; }
    ((i < 300)) || die "the demo did not answer $BASE/healthz within 30 s"
    sleep 0.1
done

# --- bob's token, and the expected status of each route -------------------------------------
json_field() { # json_field NAME < json
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print(v if isinstance(v,str) else "")' "$1"
    else
        sed -nE "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"([^\"]+)\".*/\1/p"
    fi
}
LOGIN=$(curl -sS --max-time 10 -X POST "$BASE/auth/login" -H 'content-type: application/json' \
    -d '{"username":"bob","password":"bob-password"}') || die "login request failed"
TOKEN=$(printf '%s' "$LOGIN" | json_field access_token) || true
[[ -n "$TOKEN" ]] || die "no access_token in the login answer: $LOGIN"
AUTH="Authorization: Bearer $TOKEN"

status() { curl -sS -o "$SCRATCH/body" -w '%{http_code}' --max-time 5 "$@"; }
code=$(status "$BASE/healthz"); [[ "$code" == 200 ]] || die "GET /healthz: $code, expected 200"
code=$(status -H "$AUTH" "$BASE/api/me"); [[ "$code" == 200 ]] || die "GET /api/me: $code, expected 200: $(cat "$SCRATCH/body")"
code=$(status -H "$AUTH" "$BASE/api/billing")
[[ "$code" == 403 ]] || die "GET /api/billing: $code, expected 403: $(cat "$SCRATCH/body")"
grep -q mfa_required "$SCRATCH/body" || die "GET /api/billing: 403 without mfa_required: $(cat "$SCRATCH/body")"
echo "bench-http: demo on $BASE (pid $SERVER_PID): /healthz 200, /api/me 200, /api/billing 403 mfa_required" >&2

# --- wrk ----------------------------------------------------------------------------------
# to_ms VALUE: wrk latency (e.g. 812.00us, 1.23ms, 1.02s, 2.00m) -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        else if (u == "h") n *= 3600000; else if (u != "ms") { print "?"; exit }
        printf "%.3f", n }'
}
# parse FILE -> "rps p50_ms p99_ms non2xx requests socket_errors"
parse() {
    local f=$1 rps p50 p99 non2xx reqs sockerr
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk '$1 == "50%" {print $2; exit}' "$f")
    p99=$(awk '$1 == "99%" {print $2; exit}' "$f")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    reqs=$(awk '/requests in/ {print $1; exit}' "$f")
    sockerr=$(awk '/Socket errors:/ {s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s}' "$f")
    [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || { cat "$f" >&2; die "could not parse wrk output ($f)"; }
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${non2xx:-0} ${reqs:-?} ${sockerr:-0}"
}

NAMES=(healthz me billing)
declare -A PATHS=([healthz]=/healthz [me]=/api/me [billing]=/api/billing)
declare -A HDRS=([healthz]="" [me]="$AUTH" [billing]="$AUTH")
declare -A RESULT OTHERS SRV_SECS

# CPU used by everything but wrk and the server while a target is measured, in % of
# all the machine's CPUs (from /proc/stat, /proc/PID/stat and bash's `times`; Linux).
# A concurrent build or benchmark shows up here: then the numbers are not worth much.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_snapshot() { # cpu_snapshot VAR: VAR="busy_ticks total_ticks server_ticks wrk_seconds"
    # (busy: user nice system irq softirq steal; a task's system time includes the softirq
    # work done on its behalf, e.g. loopback TCP). Not in $(...): `times` must run in this shell.
    local sys srv kids
    sys=$(awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat 2>/dev/null) || sys="? ?"
    srv=$(sed 's/.*) //' "/proc/$SERVER_PID/stat" 2>/dev/null | awk '{print $12 + $13}') || srv="?"
    times >"$SCRATCH/times" # the children's user and system time: wrk's, as it runs in this shell
    kids=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] } print s }' "$SCRATCH/times")
    printf -v "$1" '%s' "${sys:-? ?} ${srv:-?} ${kids:-?}"
}
others_pct() { # others_pct SNAPSHOT_BEFORE SNAPSHOT_AFTER
    awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= 4; i++) if (x[i] == "?" || y[i] == "?") { print "?"; exit }
        total = y[2] - x[2]; if (total <= 0) { print "?"; exit }
        o = (y[1] - x[1]) - (y[3] - x[3]) - (y[4] - x[4]) * hz
        if (o < 0) o = 0
        printf "%.0f", 100 * o / total }'
}

run_wrk() { # run_wrk NAME DURATION OUTFILE
    local name=$1 d=$2 out=$3
    local args=(-t "$THREADS" -c "$CONNECTIONS" -d "$d" --latency)
    [[ -n "${HDRS[$name]}" ]] && args+=(-H "${HDRS[$name]}")
    wrk "${args[@]}" "$BASE${PATHS[$name]}" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed on ${PATHS[$name]}"; }
}

for name in "${NAMES[@]}"; do
    if ((WARMUP)); then
        echo "bench-http: warmup ${PATHS[$name]} ($WARMUP_DURATION)" >&2
        run_wrk "$name" "$WARMUP_DURATION" "$SCRATCH/warmup-$name.txt"
    fi
    echo "bench-http: wrk -t$THREADS -c$CONNECTIONS -d$DURATION ${PATHS[$name]}" >&2
    cpu_snapshot CPU_BEFORE
    run_wrk "$name" "$DURATION" "$SCRATCH/wrk-$name.txt"
    cpu_snapshot CPU_AFTER
    OTHERS[$name]=$(others_pct "$CPU_BEFORE" "$CPU_AFTER")
    SRV_SECS[$name]=$(awk -v a="$CPU_BEFORE" -v b="$CPU_AFTER" -v hz="$CLK_TCK" \
        'BEGIN { split(a, x, " "); split(b, y, " "); if (x[3] == "?" || y[3] == "?") print "?"; else print (y[3] - x[3]) / hz }')
    RESULT[$name]=$(parse "$SCRATCH/wrk-$name.txt")
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SCRATCH/server.err" >&2; die "the demo died during ${PATHS[$name]}"; }
done

# --- report -------------------------------------------------------------------------------
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
NPROC=$(nproc 2>/dev/null || echo "?")
echo
echo "machine: ${NPROC} CPUs, ${CPU:-unknown CPU}; $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
echo "wrk: -t$THREADS -c$CONNECTIONS -d$DURATION --latency$( ((WARMUP)) && echo ", ${WARMUP_DURATION} warmup each")"
if [[ "$NPROC" =~ ^[0-9]+$ ]] && ((NPROC <= 4)); then
    echo "note: wrk and the server share these ${NPROC} CPUs; the numbers are relative, not capacity"
fi
echo
printf '%-18s %12s %10s %10s %12s %10s %11s %7s  %s\n' target req/s p50_ms p99_ms non-2xx requests srv_us/req others note
UNEXPECTED=0
NOISY=0
for name in "${NAMES[@]}"; do
    read -r rps p50 p99 non2xx reqs sockerr <<<"${RESULT[$name]}"
    note=""
    if [[ "$name" == billing ]]; then
        note="non-2xx expected (403 mfa_required)"
        [[ "$reqs" =~ ^[0-9]+$ ]] && ((non2xx < reqs)) && { note="UNEXPECTED: $((reqs - non2xx)) responses were 2xx/3xx"; UNEXPECTED=1; }
    elif ((non2xx > 0)); then
        note="UNEXPECTED non-2xx"; UNEXPECTED=1
    fi
    ((sockerr > 0)) && note="${note:+$note; }$sockerr socket errors"
    others=${OTHERS[$name]}
    if [[ "$others" =~ ^[0-9]+$ ]] && ((others >= 10)); then NOISY=1; fi
    srv_us=$(awk -v s="${SRV_SECS[$name]}" -v n="$reqs" 'BEGIN { if (s == "?" || n + 0 <= 0) print "?"; else printf "%.1f", s * 1e6 / n }')
    printf '%-18s %12s %10s %10s %12s %10s %11s %7s  %s\n' "GET ${PATHS[$name]}" "$rps" "$p50" "$p99" "$non2xx" "$reqs" "$srv_us" "${others}%" "$note"
done

read -r H_RPS _ <<<"${RESULT[healthz]}"
read -r M_RPS _ <<<"${RESULT[me]}"
read -r RATIO MET < <(awk -v m="$M_RPS" -v h="$H_RPS" -v t="$TARGET_RATIO" \
    'BEGIN { r = (h > 0) ? m / h : 0; printf "%.3f %s\n", r, (r >= t) ? "met" : "missed" }')
echo
echo "/api/me : /healthz req/s = ${RATIO}  (target >= ${TARGET_RATIO}x: ${MET})"
echo "srv_us/req: the server's CPU time (user+system) per request; others: CPU used by"
echo "processes other than wrk and the server during each target, in % of all CPUs"
if ((NOISY)); then
    echo "warning: other processes used >= 10% of the CPUs during a measurement; rerun on a quiet machine"
fi

if ((UNEXPECTED)); then
    echo "bench-http: some responses had an unexpected status (see the note column)" >&2
    exit 1
fi
if ((STRICT)) && [[ "$MET" != met ]]; then
    exit 1
fi
