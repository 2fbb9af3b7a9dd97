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
