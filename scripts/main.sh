#!/usr/bin/env bash
# Set up, build, and run the main job: the resolution sweep on the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
echo "==> building host (release)" >&2
cargo build --release --locked -p host
./target/release/host doctor
./target/release/host generate --max-tokens 32 --ignore-eos "$@"
