#!/usr/bin/env bash
# Builds everything and runs the host on the demo config (embedded store) at
# http://127.0.0.1:8080. Try: curl -H 'apikey: demo-key' http://127.0.0.1:8080/hello/world
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-components.sh
export DEMO_API_KEY="${DEMO_API_KEY:-demo-key}"
exec cargo run -p bitbylaw -- serve --config deploy/demo/host.toml
