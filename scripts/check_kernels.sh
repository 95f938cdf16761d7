#!/usr/bin/env bash
# Compiles every variant of the engine's CUDA kernels with NVRTC, no GPU needed:
# otherwise they are compiled only on a GPU machine, at run time. Fetches NVRTC
# and the CUDA headers once (PyPI wheels, unpacked under .cache/nvrtc).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.cache/nvrtc
PKGS=("nvidia-cuda-nvrtc==13.5.37" "nvidia-cuda-runtime==13.5.37" "nvidia-cuda-cccl==13.3.5.0.6")
if [ ! -f "$DIR/.complete" ]; then
  echo "fetching NVRTC and the CUDA headers (once, into $DIR)"
  rm -rf "$DIR" && mkdir -p "$DIR/wheels" "$DIR/site"
  python3 -m pip download -q --no-deps --only-binary=:all: "${PKGS[@]}" -d "$DIR/wheels"
  python3 - "$DIR" <<'PY'
import pathlib, sys, zipfile
d = pathlib.Path(sys.argv[1])
for w in (d / "wheels").glob("*.whl"):
    zipfile.ZipFile(w).extractall(d / "site")
PY
  rm -rf "$DIR/wheels" && touch "$DIR/.complete"
fi
# The step runner's standalone kernels, as the engine makes them.
STEPS=$(mktemp -d)
trap 'rm -rf "$STEPS"' EXIT
cargo run --locked -q -p lab -- kernel-sources "$STEPS" > /dev/null
python3 scripts/nvrtc_check.py "$DIR/site" "$STEPS"
