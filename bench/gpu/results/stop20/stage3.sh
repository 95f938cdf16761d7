#!/usr/bin/env bash
# Runs ON the device machine: MLX staged in three calls (the working tree leaves ~38 MiB a call): part 1
# (libmlx.xz.part00), part 2a (part01), part 2b (rest.tar.xz), the last one assembling them.
# usage: stage3.sh keep DIR      (copies DIR/libmlx.xz.part* to $HOME/stage)
#        stage3.sh assemble DIR  (adds DIR's parts, unpacks libmlx.so and DIR/rest.tar.xz under $HOME/mlx, writes env.sh)
set -euo pipefail
mkdir -p $HOME/stage
cp "$2"/libmlx.xz.part* $HOME/stage/ 2>/dev/null || true
case "$1" in
keep) ls $HOME/stage ;;
assemble)
  n=$(ls $HOME/stage/libmlx.xz.part* | wc -l)
  [ "$n" = 2 ] || { echo "have $n of 2 parts: the machine is fresh, start again"; exit 3; }
  rm -rf $HOME/mlx && mkdir -p $HOME/mlx
  tar -xJf "$2/rest.tar.xz" -C $HOME/mlx
  cat $(ls $HOME/stage/libmlx.xz.part* | sort) | xz -dc -T0 > $HOME/mlx/mlx/lib/libmlx.so
  sp=$(python3 -c 'import site; print(site.getsitepackages()[0])')
  libs=$(ls -d "$sp"/nvidia/*/lib | tr '\n' ':')
  {
    echo "export LD_LIBRARY_PATH=$HOME/mlx/mlx/lib:$HOME/mlx/mlx_cuda_13.libs:${libs}\${LD_LIBRARY_PATH:-}"
    echo "export CUDA_HOME=/usr/local/cuda"
    echo "export MLX_PY=$HOME/mlx   # PYTHONPATH for the peer scripts"
  } > $HOME/mlx/env.sh
  . $HOME/mlx/env.sh
  ldd $HOME/mlx/mlx/lib/libmlx.so | grep 'not found' && exit 4
  echo "MLX CUDA staged in $HOME/mlx" ;;
esac
