#!/usr/bin/env bash
# Builds everything and runs the host on the demo config (embedded store) at
# http://127.0.0.1:8080, with the Advoware simulator on 127.0.0.1:9471 and the
# Google Calendar simulator on 127.0.0.1:9472 and the EspoCRM simulator on
# 127.0.0.1:9473, whose webhooks post to the host, and the 3CX simulator on
# 127.0.0.1:9474. Try (README.md has more):
#   curl -H 'apikey: demo-key' http://127.0.0.1:8080/hello/world
#   curl -H 'apikey: demo-key' -d '{"kuerzel":"ALL"}' http://127.0.0.1:8080/advoware/calendar/sync
#   curl -H 'apikey: demo-key' http://127.0.0.1:8080/advoware/calendar/status
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-components.sh
cargo build -p bitbylaw -p bitbylaw-tests --bin bitbylaw --bin simulators

# The simulator's account (tests/support/simulators/advoware.rs); not real secrets.
export DEMO_API_KEY="${DEMO_API_KEY:-demo-key}"
export DEMO_OPERATOR_KEY="${DEMO_OPERATOR_KEY:-demo-operator-key}"
export DEMO_ADMIN_TOKEN="${DEMO_ADMIN_TOKEN:-demo-admin-token}"
# The WordPress form's shared secret (the vermieterhelden plugin's `mieter` form).
export DEMO_FORM_SECRET="${DEMO_FORM_SECRET:-demo-form-secret}"
export DEMO_ADVOWARE_API_KEY="dGVzdC1zZWNyZXQta2V5"
export DEMO_ADVOWARE_PASSWORD="geheim"
# The EspoCRM simulator's account and the demo webhooks' secrets (tests/support/simulators/espocrm.rs).
export DEMO_ESPOCRM_API_KEY="demo-espocrm-key"
export DEMO_VMH_SECRET_CREATE="demo-secret-create"
export DEMO_VMH_SECRET_UPDATE="demo-secret-update"
export DEMO_VMH_SECRET_DELETE="demo-secret-delete"
# The 3CX simulator's API client (tests/support/simulators/threecx.rs).
export DEMO_3CX_SECRET="3cx-demo-secret"

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
# The plugins go into the component store as version "demo" (see deploy/demo/host.toml).
export BITBYLAW_RUNTIME__CACHE_DIR="$target/component-cache"
export BITBYLAW_COMPONENTS__DIR="$target/demo-components"
for plugin in hello advoware-proxy calendar-sync vmh-webhooks vermieterhelden threecx; do
  mkdir -p "$BITBYLAW_COMPONENTS__DIR/$plugin"
  cp "$target/wasm32-wasip2/release/${plugin//-/_}.wasm" "$BITBYLAW_COMPONENTS__DIR/$plugin/demo.wasm"
done

# The Google simulator makes a service-account key at start; the demo tenant reads it from DEMO_GOOGLE_KEY.
google_key="$target/demo-google-key.json"
rm -f "$google_key"
"$target/debug/simulators" --advoware 127.0.0.1:9471 --google 127.0.0.1:9472 --google-key "$google_key" \
  --espocrm 127.0.0.1:9473 --espocrm-webhooks "http://127.0.0.1:8080/vmh/webhook/beteiligte/{action}?apikey=$DEMO_API_KEY" \
  --threecx 127.0.0.1:9474 &
simulators=$!
trap 'kill "$simulators" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -s "$google_key" ] && break
  kill -0 "$simulators" 2>/dev/null || { echo "the simulators did not start" >&2; exit 1; }
  sleep 0.1
done
DEMO_GOOGLE_KEY="$(cat "$google_key")"
export DEMO_GOOGLE_KEY
"$target/debug/bitbylaw" serve --config deploy/demo/host.toml
