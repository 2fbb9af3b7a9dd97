#!/usr/bin/env bash
# Runs the benchmarks behind docs/performance.md. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
scripts/build-components.sh
cargo bench -p bitbylaw --bench plugin_call -- --noplot
cargo bench -p bitbylaw --bench ingress_throughput
scripts/ensure-redis.sh
cargo bench -p bitbylaw --bench events_throughput
cargo bench -p bitbylaw --bench swap
cargo bench -p bitbylaw-tests --bench advoware_proxy
cargo bench -p bitbylaw-tests --bench google_calendar
cargo bench -p bitbylaw-tests --bench calendar_sync
cargo bench -p bitbylaw-tests --bench vmh_webhooks
cargo bench -p bitbylaw-tests --bench threecx_lookup
