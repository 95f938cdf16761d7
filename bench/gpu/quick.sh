#!/usr/bin/env bash
# Runs ON the GPU machine (bench/gpu/README.md): a quick A/B of our decoding paths on
# the synthetic 8B 4-bit model (fused kernels against VLM_BENCH_NO_FUSED_DECODE=1),
# two resolutions, 100 forced tokens, 1 warm-up + 2 repeats, after the kernel
# micro-benchmarks (KERNELS=0 skips them). Minutes, not the full protocol of device.sh.
# env: RES (224x224,1920x1080), RUNS (2), MODES ("fused unfused"), KERNELS (1), OUT
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
RES=${RES:-224x224,1920x1080}
RUNS=${RUNS:-2}
MODES=${MODES:-"fused unfused"}
mkdir -p "$OUT"
if [ -f "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh" ]; then . "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh"; fi
export VLM_BENCH_HOME=${VLM_BENCH_HOME:-$HOME/vlm-bench}
HOST=$(command -v host)
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
if [ "${KERNELS:-1}" = 1 ]; then lab kernels 2>&1 | tee "$OUT/kernels.md"; fi
MODEL=$HOME/models/qwen3-vl-8b-4
if [ ! -f "$MODEL/config.json" ]; then
  stamp "synthesizing 8B (4-bit)"
  "$HOST" model synth --arch qwen3-vl-8b --quant 4 --out "$MODEL" > "$OUT/synth.log" 2>&1 || { tail "$OUT/synth.log"; exit 1; }
fi
for mode in $MODES; do
  stamp "sweep, $mode"
  if [ "$mode" = unfused ]; then export VLM_BENCH_NO_FUSED_DECODE=1; else unset VLM_BENCH_NO_FUSED_DECODE; fi
  "$HOST" run --plugin resolution_sweep.wasm --model "$MODEL" --db "$OUT/quick-$mode.db" \
    --set resolutions="$RES" --set warmup=1 --set repeats="$RUNS" --set max_tokens=100 \
    --set ignore_eos=true --set pattern=noise 2>&1 | tail -25
done
stamp done
