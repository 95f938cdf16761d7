#!/usr/bin/env bash
# Runs ON the GPU machine (see bench/gpu/README.md): our resolution sweep on the
# synthetic Qwen3-VL-8B (4-bit and bf16) and the peers (mlx-vlm 4-bit on the same
# MLX, transformers bf16 with static cache + compile), same protocol: the seed's
# 10 resolutions, 100 forced output tokens, greedy, 1 warm-up and 5 repeats.
# Writes raw results under $OUT and prints one comparison table last.
#
# usage: device.sh [ours|peers|all] (default all); env: RUNS (5), RES (all 10),
#        QUANTS ("4 bf16"), PEERS ("mlxvlm hf")
set -uo pipefail
WHAT=${1:-all}
RUNS=${RUNS:-5}
RES=${RES:-224x224,336x336,448x448,512x512,672x672,768x768,896x896,1024x1024,1280x720,1920x1080}
QUANTS=${QUANTS:-"4 bf16"}
PEERS=${PEERS:-"mlxvlm hf"}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
. "$HOME/mlx/env.sh"
export VLM_BENCH_HOME=$HOME/vlm-bench
HOST=$HERE/host
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

"$HOST" --version
"$HOST" doctor | tee "$OUT/doctor.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"

if [ "$WHAT" = ours ] || [ "$WHAT" = all ]; then
  for q in $QUANTS; do
    MODEL=$HOME/models/qwen3-vl-8b-$q
    if [ ! -f "$MODEL/config.json" ]; then
      stamp "synthesizing 8B ($q)"
      "$HOST" model synth --arch qwen3-vl-8b --quant "$q" --out "$MODEL" 2>&1 | tail -2 | tee "$OUT/synth-$q.txt"
      du -sh "$MODEL" | tee -a "$OUT/synth-$q.txt"
    fi
    stamp "our sweep, 8B $q"
    "$HOST" run --plugin resolution_sweep.wasm --model "$MODEL" --db "$OUT/results.db" -q \
      --set resolutions="$RES" --set warmup=1 --set repeats="$RUNS" --set max_tokens=100 \
      --set ignore_eos=true --set pattern=noise > "$OUT/ours-$q.md" 2> "$OUT/ours-$q.log"
    echo "exit $?" >> "$OUT/ours-$q.log"
    tail -3 "$OUT/ours-$q.log"
  done
fi

if [ "$WHAT" = peers ] || [ "$WHAT" = all ]; then
  export PYTHONPATH=$HOME/mlx:$HOME/pylib OUT RUNS
  export RES=$RES
  for p in $PEERS; do
    case $p in
      mlxvlm) stamp "peer: mlx-vlm 4-bit"; TIME_BUDGET=900 python3 "$HERE/peers/mlxvlm_qwen3vl.py" > "$OUT/mlxvlm.log" 2>&1 ;;
      hf) stamp "peer: transformers bf16 static+compile"; COMPILE_ONLY=1 COMPILE_RES=$RES TIME_BUDGET=900 \
            python3 "$HERE/peers/hf_qwen3vl.py" > "$OUT/hf.log" 2>&1 ;;
    esac
  done
fi
stamp "comparison"
python3 "$HERE/compare.py" "$OUT" | tee "$OUT/comparison.md"
