#!/usr/bin/env bash
# Runs ON the device machine: MLX staged in five calls, since the tracked tree (~26 MiB) left too
# little room for 35 MB parts: libmlx.so.xz split in four (part00a, part00b, part01a, part01b), one a call
# (`keep DIR`), then rest.tar.xz (`assemble DIR`), which puts them together.
# usage: stage5.sh keep DIR      (copies DIR/libmlx.xz.part* to $HOME/stage)
#        stage5.sh assemble DIR  (adds DIR's parts, unpacks libmlx.so and DIR/rest.tar.xz under $HOME/mlx, writes env.sh)
set -euo pipefail
mkdir -p $HOME/stage
cp "$2"/libmlx.xz.part* $HOME/stage/ 2>/dev/null || true
case "$1" in
keep) ls $HOME/stage ;;
assemble)
  n=$(ls $HOME/stage/libmlx.xz.part* | wc -l)
  [ "$n" = 4 ] || { echo "have $n of 4 parts: the machine is fresh, start again"; exit 3; }
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
