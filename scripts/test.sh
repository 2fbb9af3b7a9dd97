#!/usr/bin/env bash
# Runs the whole test suite: components, then every workspace test against
# Redis on 127.0.0.1:6379 (started or installed when missing), then the store
# and event suites against a Redis Cluster. The deployment checks' tools
# (promtool, systemd-analyze) are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-redis.sh
scripts/ensure-tools.sh
scripts/build-components.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The store, event and multi-instance suites once more, on a three-node Redis
# Cluster that the tests start themselves.
TEST_REDIS_TARGET=cluster cargo test -p bitbylaw-tests \
  --test store_conformance --test events --test cluster "$@" 2>&1 | tee -a "$log"
cluster_status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] && status=$cluster_status
set -e
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
