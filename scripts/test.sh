#!/usr/bin/env bash
# The whole test suite, the README's test command:
#   scripts/test.sh [cargo test arguments…]
#
# The integration tests start real redis-server processes (one node, and a 3-master
# 3-replica cluster formed with redis-cli) and drive headless Chromium
# through chromedriver; they fail, never skip, without them. This script installs what
# is missing from Debian's packages (as root, or with password-less sudo), or says in
# one line what to install and stops. Then: cargo test --all-features (unit,
# integration and doc tests). `.ci/run` calls this same script.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# redis-cli forms the test Redis Cluster (a dependency of redis-server; named in case).
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo"
    else
        echo "scripts/test.sh: missing ${missing[*]} and no root to install them: run 'sudo apt-get install ${missing[*]}' first" >&2
        exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The tests start their own Redis servers; the distribution's service is not needed.
    if [[ " ${missing[*]} " == *" redis-server "* ]]; then
        ($SUDO systemctl disable --now redis-server >/dev/null 2>&1 \
            || $SUDO service redis-server stop >/dev/null 2>&1) || true
    fi
fi

redis-server --version
redis-cli --version
chromium --version
chromedriver --version

exec cargo test --all-features "$@"
