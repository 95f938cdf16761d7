#!/usr/bin/env bash
# Runs ON the GPU machine (bench/gpu/README.md): where a decoding step's time goes.
# One request on the synthetic 8B 4-bit model (RES, 100 forced tokens) under
# Nsight Compute; prints the host's build / dispatch / wait per step
# (VLM_BENCH_PROFILE_DECODE) and, from Nsight Compute, the GPU time per step
# and per kernel (ncu_steps.py).
# env: RES (1024x1024), OUT
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
RES=${RES:-1024x1024}
mkdir -p "$OUT"
if [ -f "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh" ]; then . "${VLM_GPU_HOME:-$HOME/vlm-bench-gpu}/env.sh"; fi
export VLM_BENCH_HOME=${VLM_BENCH_HOME:-$HOME/vlm-bench}
MODEL=$HOME/models/qwen3-vl-8b-4
if [ ! -f "$MODEL/config.json" ]; then
  host model synth --arch qwen3-vl-8b --quant 4 --out "$MODEL" > "$OUT/synth.log" 2>&1 || { tail "$OUT/synth.log"; exit 1; }
fi
run() {
  host run --plugin resolution_sweep.wasm --model "$MODEL" --db "$OUT/profile-$1.db" \
    --set resolutions="$RES" --set warmup="$2" --set repeats=1 --set max_tokens="$3" \
    --set ignore_eos=true --set pattern=noise
}
# Host side: build / dispatch / wait per step, 100 tokens.
VLM_BENCH_PROFILE_DECODE=1 run host 1 100 > "$OUT/host.log" 2>&1
grep -E "decode profile|Decode" "$OUT/host.log" | tail -3
# GPU side: each kernel's time at the clocks it gets, caches as they are.
/usr/local/cuda/bin/ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
  "$(command -v host)" run --plugin resolution_sweep.wasm --model "$MODEL" --db "$OUT/profile-ncu.db" \
  --set resolutions="$RES" --set warmup=0 --set repeats=1 --set max_tokens=12 --set ignore_eos=true \
  --set pattern=noise > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
python3 "$HERE/ncu_steps.py" "$OUT/ncu.csv" | head -30
