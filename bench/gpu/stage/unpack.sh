#!/usr/bin/env bash
# Runs ON the GPU machine: puts back together what `pack.sh` packed. Parts may
# arrive one at a time: `keep` stores a part under $STAGE; `finish` adds the
# last, checks that every part is there, and unpacks under $VLM_GPU_HOME:
#   bin/host, bin/lab        our binaries
#   mlx/, mlx_cuda_13.libs/  MLX's CUDA build, its headers and Python binding
#   pylib/                   the peers' wheels, installed
#   env.sh                   puts it all on the paths (source it)
# env.sh finds the CUDA 13 runtime libraries of the machine's Python
# environment (the nvidia-*-cu13 wheels a CUDA PyTorch brings), and sets
# CUDA_HOME, whose headers MLX's run-time kernel compiler includes.
#
# usage: unpack.sh keep DIR | unpack.sh finish DIR
# env:   STAGE ($HOME/vlm-bench-stage), VLM_GPU_HOME ($HOME/vlm-bench-gpu)
set -euo pipefail
stage=${STAGE:-$HOME/vlm-bench-stage}
home=${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}
what=${1:-}
dir=${2:?usage: unpack.sh keep DIR | unpack.sh finish DIR}
mkdir -p "$stage"
cp "$dir"/payload.tar.xz.* "$stage"/
case "$what" in
keep) ls "$stage" ;;
finish)
  parts=("$stage"/payload.tar.xz.*)
  total=${parts[0]##*-of-}
  if [ "${#parts[@]}" != "$((10#$total))" ]; then
    echo "have ${#parts[@]} of $((10#$total)) parts in $stage (a fresh machine needs them all again)" >&2
    exit 3
  fi
  rm -rf "$home" && mkdir -p "$home"
  cat $(printf '%s\n' "${parts[@]}" | sort) | xz -dc -T0 | tar -xf - -C "$home"
  python3 -m pip install -q --no-deps --no-compile --target "$home/pylib" "$home"/wheels/*.whl
  sp=$(python3 -c 'import site; print(site.getsitepackages()[0])')
  libs=$(ls -d "$sp"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
  {
    echo "export LD_LIBRARY_PATH=$home/mlx/lib:$home/mlx_cuda_13.libs:${libs}\${LD_LIBRARY_PATH:-}"
    echo "export CUDA_HOME=\${CUDA_HOME:-/usr/local/cuda}"
    echo "export PYTHONPATH=$home:$home/pylib\${PYTHONPATH:+:\$PYTHONPATH}"
    echo "export PATH=$home/bin:\$PATH"
  } > "$home/env.sh"
  . "$home/env.sh"
  if ldd "$home/mlx/lib/libmlx.so" | grep 'not found'; then
    echo "libmlx's libraries above are missing: install the CUDA 13 runtime (nvidia-*-cu13 wheels)" >&2
    exit 4
  fi
  rm -rf "$stage"
  echo "ready: . $home/env.sh; $(host --version | head -1)"
  ;;
*) echo "usage: unpack.sh keep DIR | unpack.sh finish DIR" >&2; exit 2 ;;
esac
