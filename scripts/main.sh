#!/usr/bin/env bash
# Set up, build, and run the main job: the resolution sweep on the default model
# (a synthetic model generated on first use; see README). Extra arguments go to
# `host run`, e.g. `scripts/main.sh --set quick=false`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
echo "==> building host (release)" >&2
cargo build --release --locked -p host
./target/release/host doctor
./target/release/host run --plugin resolution_sweep.wasm --set quick=true "$@"
