#!/usr/bin/env bash
# Set up and run every test: the host workspace, then the plugin SDK's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_BROWSER=1 . scripts/setup.sh
cargo test --workspace --locked "$@"
cargo test --locked --manifest-path plugins/Cargo.toml -p vlmbench-sdk --target-dir target/plugins-native
