#!/usr/bin/env bash
# Runs the whole test suite: components, then every workspace test against
# Redis on 127.0.0.1:6379 (started or installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-redis.sh
scripts/build-components.sh
cargo test --workspace "$@"
