#!/usr/bin/env bash
# Set up and run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_BROWSER=1 . scripts/setup.sh
cargo test --workspace --locked "$@"
