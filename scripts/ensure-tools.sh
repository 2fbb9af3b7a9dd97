#!/usr/bin/env bash
# Installs what the deployment and browser checks need when a fresh machine
# lacks it: promtool (Debian's `prometheus` package) for the alert rules,
# systemd-analyze (`systemd`) for the unit, and Chromium with its WebDriver
# (`chromium`, `chromium-driver`) for the dashboard's browser test. All from
# the system's packages.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing ${missing[*]} for the deployment checks" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
# The package's own service is not wanted here; only its tools.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
