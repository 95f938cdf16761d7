#!/usr/bin/env bash
# Runs ON the GPU machine after device-stage.sh 2: unpacks what call 3 carries
# (.dev/run: the host binary, MLX's headers for its run-time kernel compiler, the
# parity test; .dev/peers: the peers' scripts and wheels) next to this script.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
xz -dc "$ROOT/.dev/run/host.xz" > "$HERE/host" && chmod +x "$HERE/host"
if [ -f "$ROOT/.dev/run/parity.xz" ]; then xz -dc "$ROOT/.dev/run/parity.xz" > "$HERE/parity" && chmod +x "$HERE/parity"; fi
# MLX compiles kernels at run time and needs its CCCL/CUTLASS headers beside libmlx.
tar -xJf "$ROOT/.dev/run/include.tar.xz" -C "$HOME/mlx/mlx"
if [ -d "$ROOT/.dev/peers" ]; then
  rm -rf "$HERE/peers" && cp -r "$ROOT/.dev/peers" "$HERE/peers"
  python3 -m pip install -q --no-deps --no-compile --target "$HOME/pylib" "$ROOT"/.dev/peers/wheels/*.whl
fi
echo "set up: $("$HERE/host" --version | head -1)"
