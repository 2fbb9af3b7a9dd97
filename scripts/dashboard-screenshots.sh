#!/usr/bin/env bash
# Screenshots of the dashboard for a person to look at: runs the browser test
# (tests/browser.rs: a host with two plugins, traffic and a dead letter) and
# writes overview.png, flow.png and events.png into the folder given
# (default: target/dashboard-screenshots). BROWSER_VISIBLE=1 shows the
# browser window instead of running it headless (needs a display).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-${CARGO_TARGET_DIR:-target}/dashboard-screenshots}")
scripts/ensure-redis.sh
scripts/ensure-tools.sh
scripts/build-components.sh
DASHBOARD_SCREENSHOTS="$out" cargo test -p bitbylaw-tests --test browser
echo "screenshots in $out"
