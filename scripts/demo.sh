#!/usr/bin/env bash
# Builds everything and runs the host on the demo config (embedded store) at
# http://127.0.0.1:8080, with the Advoware simulator on 127.0.0.1:9471. Try:
#   curl -H 'apikey: demo-key' http://127.0.0.1:8080/hello/world
#   curl -H 'apikey: demo-key' 'http://127.0.0.1:8080/advoware/proxy?endpoint=appointments&kuerzel=SB&from=2026-12-01&to=2026-12-31'
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-components.sh
cargo build -p bitbylaw -p bitbylaw-tests --bin bitbylaw --bin simulators

# The simulator's account (tests/support/simulators/advoware.rs); not real secrets.
export DEMO_API_KEY="${DEMO_API_KEY:-demo-key}"
export DEMO_ADVOWARE_API_KEY="dGVzdC1zZWNyZXQta2V5"
export DEMO_ADVOWARE_PASSWORD="geheim"

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
# The plugins go into the component store as version "demo" (see deploy/demo/host.toml).
export BITBYLAW_RUNTIME__CACHE_DIR="$target/component-cache"
export BITBYLAW_COMPONENTS__DIR="$target/demo-components"
for plugin in hello advoware-proxy; do
  mkdir -p "$BITBYLAW_COMPONENTS__DIR/$plugin"
  cp "$target/wasm32-wasip2/release/${plugin//-/_}.wasm" "$BITBYLAW_COMPONENTS__DIR/$plugin/demo.wasm"
done

"$target/debug/simulators" --advoware 127.0.0.1:9471 &
simulators=$!
trap 'kill "$simulators" 2>/dev/null || true' EXIT
"$target/debug/bitbylaw" serve --config deploy/demo/host.toml
