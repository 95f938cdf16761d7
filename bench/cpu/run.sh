#!/usr/bin/env bash
# Our engine against mlx-vlm on this CPU, on the same synthetic model directories:
# one 224x224 noise image, "Describe this image.", N forced greedy tokens, 1 warm-up
# and R timed requests each. Ours runs the resolution_sweep plugin; mlx-vlm runs
# bench/cpu/mlxvlm_peer.py in two set-ups: as installed (the checkpoint's dtype, the
# wheel's bundled reference BLAS), and the set-up our engine uses on the CPU (weights
# cast to f32, Debian's OpenBLAS ahead of the bundled BLAS), which leaves only the
# engines' own differences. Prints a table of medians and ratios
# (bench/cpu/compare.py); raw results stay in $OUT, and finished parts are skipped
# when run again.
#
# usage: bench/cpu/run.sh; env: MODELS ("tiny:bf16 tiny:4 2b:bf16 2b:4"), SETUPS
#        ("installed ours": the mlx-vlm set-ups), N (32),
#        R (3), OUT (bench/cpu/out), PY (../.venv-mlx/bin/python with mlx-vlm 0.7.10)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-"tiny:bf16 tiny:4 2b:bf16 2b:4"}
N=${N:-32}
R=${R:-3}
OUT=${OUT:-bench/cpu/out}
PY=${PY:-../.venv-mlx/bin/python}
HOST=${HOST:-target/release/host}
mkdir -p "$OUT"
OPENBLAS=$(ldconfig -p | awk '/libopenblas\.so\.0 /{print $NF; exit}')
[ -n "$OPENBLAS" ] || { echo "Debian's OpenBLAS is missing: apt-get install libopenblas0" >&2; exit 1; }
"$PY" -c "import mlx_vlm" 2>/dev/null || {
  echo "mlx-vlm missing: python3 -m venv ../.venv-mlx && ../.venv-mlx/bin/pip install mlx==0.32.4 mlx-cpu==0.32.4 mlx-vlm==0.7.10" >&2
  exit 1
}
IMAGE=$OUT/noise224.png
[ -f "$IMAGE" ] || "$PY" -c "import numpy as np, PIL.Image as I; I.fromarray(np.random.default_rng(0).integers(0,256,(224,224,3),dtype=np.uint8)).save('$IMAGE')"
# Our side records its host version and commit in each ours-*.db.
"$PY" -c "import mlx.core as mx, mlx_vlm; print('mlx', mx.__version__, 'mlx-vlm', mlx_vlm.__version__)" > "$OUT/versions.txt"
for m in $MODELS; do
  arch=${m%%:*} quant=${m##*:}
  dir=$OUT/models/$arch-$quant
  # mlx-vlm reads the mlx-community layout; both tools load this one directory.
  [ -f "$dir/config.json" ] || "$HOST" model synth --arch "qwen3-vl-$arch" --quant "$quant" --layout mlx --out "$dir" >/dev/null
  if [ ! -s "$OUT/ours-$arch-$quant.db" ]; then
    echo "== $arch $quant: ours" >&2
    "$HOST" run --plugin resolution_sweep.wasm --model "$dir" --db "$OUT/ours-$arch-$quant.db.part" -q \
      --set resolutions=224x224 --set warmup=1 --set repeats="$R" --set max_tokens="$N" \
      --set pattern=noise --set check_image=false >/dev/null
    mv "$OUT/ours-$arch-$quant.db.part" "$OUT/ours-$arch-$quant.db"
  fi
  for setup in ${SETUPS:-installed ours}; do
    out=$OUT/mlxvlm-$arch-$quant-$setup.jsonl
    [ -s "$out" ] && continue
    echo "== $arch $quant: mlx-vlm ($setup set-up)" >&2
    if [ "$setup" = installed ]; then
      "$PY" bench/cpu/mlxvlm_peer.py "$dir" "$IMAGE" "Describe this image." "$N" "$R" 2>/dev/null > "$out.part"
    else
      LD_PRELOAD=$OPENBLAS "$PY" bench/cpu/mlxvlm_peer.py "$dir" "$IMAGE" "Describe this image." "$N" "$R" \
        --dtype float32 2>/dev/null > "$out.part"
    fi
    mv "$out.part" "$out"
  done
done
python3 bench/cpu/compare.py "$OUT" $MODELS | tee "$OUT/comparison.md"
