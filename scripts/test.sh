#!/usr/bin/env bash
# Runs the whole test suite: components, then every workspace test against
# Redis on 127.0.0.1:6379 (started or installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-redis.sh
scripts/build-components.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
