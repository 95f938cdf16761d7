#!/usr/bin/env bash
# Packs everything the GPU benchmark needs for an NVIDIA machine that cannot
# download it: MLX's CUDA build (the mlx and mlx-cuda-13 wheels: libmlx, its
# headers for MLX's run-time kernel compiler, the Python binding the peers
# use), the `host` and `lab` binaries built here against it, and the peers'
# wheels (mlx-vlm, mlx-lm, and what mlx-vlm's server needs). The whole is one xz archive cut into parts of at
# most PART_MB megabytes, one folder each, so that each part fits whatever a
# single transfer to the machine allows. `unpack.sh` (copied into every part)
# puts it together there.
#
# usage: bench/gpu/stage/pack.sh DEST [PART_MB]      (PART_MB: 30 by default)
# env:   PACK_EXTRA_BIN: more binaries to carry in bin/ (another build of host,
#        to compare with `bench/gpu/ab.sh`)
# makes: DEST/1, DEST/2, ... each with one part and unpack.sh
# needs: Rust, python3 with pip, xz; no GPU (the binaries link libmlx's CUDA
#        libraries only at run time)
set -euo pipefail
dest=${1:?usage: pack.sh DEST [PART_MB]}
part_mb=${2:-30}
mlx_version=0.32.4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '==> %s\n' "$*" >&2; }

say "fetching MLX $mlx_version for CUDA 13 and the peers' wheels"
# The GPU machine's Python: 3.12 on a glibc 2.35 (or newer) Linux.
pip_get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$1" "${@:2}"
}
pip_get "$work/mlx-wheels" "mlx==$mlx_version" "mlx-cuda-13==$mlx_version"
mkdir -p "$work/payload/wheels"
pip_get "$work/payload/wheels" "mlx-vlm==0.7.10" "mlx-lm==0.32.2"
# mlx-vlm's server's own dependencies, installed there only where missing
# (bench/serving/device.sh runs `peer_server_wheels.sh install`).
"$here/peer_server_wheels.sh" "$work/payload/server-wheels" >&2
for w in "$work"/mlx-wheels/*.whl; do (cd "$work/payload" && unzip -q -o "$w"); done

say "building host and lab against MLX's CUDA backend (release)"
(cd "$root" && MLX_BACKEND=cuda CARGO_TARGET_DIR=target/cuda cargo build --release --locked -p host -p lab)
mkdir -p "$work/payload/bin"
for b in "$root/target/cuda/release/host" "$root/target/cuda/release/lab" ${PACK_EXTRA_BIN:-}; do
  cp "$b" "$work/payload/bin/"
  strip "$work/payload/bin/$(basename "$b")"
done

say "compressing (a few minutes on two cores)"
tar -C "$work/payload" -cf - . | xz -T0 -6 > "$work/payload.tar.xz"
(cd "$work" && split -b "${part_mb}M" -d -a 2 payload.tar.xz chunk.)
chunks=("$work"/chunk.*)
total=${#chunks[@]}
rm -rf "$dest" && mkdir -p "$dest"
for i in "${!chunks[@]}"; do
  n=$((i + 1))
  mkdir -p "$dest/$n"
  mv "${chunks[$i]}" "$dest/$n/payload.tar.xz.$(printf '%02d' "$n")-of-$(printf '%02d' "$total")"
  cp "$here/unpack.sh" "$dest/$n/"
done
du -sh "$dest"/*
say "carry $dest/1 … $dest/$total to the GPU machine, one at a time if need be:"
say "  bash DIR/unpack.sh keep DIR      for each part but the last"
say "  bash DIR/unpack.sh finish DIR    with the last, then: . \$HOME/vlm-bench-gpu/env.sh"
