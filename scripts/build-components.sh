#!/usr/bin/env bash
# Builds every plugin and test component for wasm32-wasip2 (release), into
# target/wasm32-wasip2/release/<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

packages=()
for manifest in plugins/*/Cargo.toml tests/components/*/Cargo.toml; do
  # Only components (cdylib); the SDK is built as their dependency.
  grep -q 'crate-type = \["cdylib"\]' "$manifest" || continue
  name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
  packages+=(-p "$name")
done
cargo build --release --target wasm32-wasip2 "${packages[@]}"

# Python plugins (a folder of plugins/ with an app.py): componentize-py, pinned,
# installed from PyPI when missing. Rebuilt only when the app, the Python SDK or
# the WIT changed, since one build takes ~15 s.
COMPONENTIZE_PY_VERSION=0.25.1
if ls plugins/*/app.py >/dev/null 2>&1; then
  if [ "$(componentize-py --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION for the Python plugins" >&2
    python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" 2>&1 \
      | grep -v "Running pip as the 'root' user" >&2 || true
  fi
  out="${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release"
  mkdir -p "$out"
  for app in plugins/*/app.py; do
    dir=$(dirname "$app")
    wasm="$out/$(basename "$dir" | tr '-' '_').wasm"
    if [ -f "$wasm" ] && [ -z "$(find "$dir" plugins/sdk-py wit -newer "$wasm" -type f -not -path "*/__pycache__/*" | head -n 1)" ]; then
      continue
    fi
    echo "componentize-py: $dir -> $wasm" >&2
    componentize-py -q -d wit -w plugin componentize -p "$dir" -p plugins/sdk-py app -o "$wasm"
  done
fi
