#!/usr/bin/env bash
# Set up and run every test: the host workspace, the plugin SDK's own tests, then
# a compile check of the CUDA kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_BROWSER=1 . scripts/setup.sh
cargo test --workspace --locked "$@"
cargo test --locked --manifest-path plugins/Cargo.toml -p vlmbench-sdk --target-dir target/plugins-native
# The CUDA kernels, compiled with NVRTC (no GPU here; they run only on NVIDIA machines).
bash scripts/check_kernels.sh
