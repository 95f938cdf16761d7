#!/usr/bin/env bash
# Runs ON the GPU machine (bench/gpu/README.md): our resolution sweep on the
# synthetic Qwen3-VL-8B (4-bit and bf16) and the peers (mlx-vlm 4-bit on the same
# MLX, transformers bf16 with static cache + compile), one protocol: the vllm-mlx
# image benchmark's 10 resolutions, 100 forced output tokens, greedy, 1 warm-up
# and 5 repeats, uniform-noise images. Raw results go to $OUT (results.db,
# *_results.jsonl, logs); the comparison table is printed last.
#
# usage: device.sh [ours|peers|all] (default all); env: RUNS (5), RES (all 10),
#        QUANTS ("4 bf16"), PEERS ("mlxvlm hf"), VLM_GPU_HOME (where unpack.sh
#        put the binaries and MLX; else host and lab on PATH and MLX found)
set -uo pipefail
WHAT=${1:-all}
RUNS=${RUNS:-5}
RES=${RES:-224x224,336x336,448x448,512x512,672x672,768x768,896x896,1024x1024,1280x720,1920x1080}
QUANTS=${QUANTS:-"4 bf16"}
PEERS=${PEERS:-"mlxvlm hf"}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
if [ -f "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh" ]; then . "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh"; fi
export VLM_BENCH_HOME=${VLM_BENCH_HOME:-$HOME/vlm-bench}
HOST=$(command -v host)
T0=$(date +%s)
LOG=$OUT/session.log
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

{ "$HOST" --version; "$HOST" doctor; nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv; } >> "$LOG" 2>&1

if [ "$WHAT" = ours ] || [ "$WHAT" = all ]; then
  for q in $QUANTS; do
    MODEL=$HOME/models/qwen3-vl-8b-$q
    if [ ! -f "$MODEL/config.json" ]; then
      stamp "synthesizing 8B ($q)"
      "$HOST" model synth --arch qwen3-vl-8b --quant "$q" --out "$MODEL" >> "$LOG" 2>&1
    fi
    stamp "our sweep, 8B $q"
    "$HOST" run --plugin resolution_sweep.wasm --model "$MODEL" --db "$OUT/results.db" \
      --set resolutions="$RES" --set warmup=1 --set repeats="$RUNS" --set max_tokens=100 \
      --set ignore_eos=true --set pattern=noise >> "$LOG" 2>&1
    stamp "exit $?"
  done
fi

if [ "$WHAT" = peers ] || [ "$WHAT" = all ]; then
  export OUT RUNS RES PYTHONUNBUFFERED=1
  for p in $PEERS; do
    case $p in
      mlxvlm) stamp "peer: mlx-vlm 4-bit"; TIME_BUDGET=900 python3 "$HERE/peers/mlxvlm_qwen3vl.py" >> "$LOG" 2>&1 ;;
      hf) stamp "peer: transformers bf16 static+compile"; COMPILE_ONLY=1 COMPILE_RES=$RES TIME_BUDGET=900 \
            python3 "$HERE/peers/hf_qwen3vl.py" >> "$LOG" 2>&1 ;;
    esac
    stamp "exit $?"
  done
fi
python3 "$HERE/export.py" "$OUT" --host "$HOST" | tee "$OUT/comparison.md"
