#!/usr/bin/env bash
# Stop 15, round 1: preprocessing changes + kernel headers by #include (new) against 99d6346 (old),
# and MLX's CUDA-graph limits.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/lab/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > $OUT/synth.log 2>&1
stamp synth
sweep() { timeout 150 ./$2 run --plugin resolution_sweep.wasm --model $M --db $OUT/$1.db --set resolutions=224x224,1024x1024,1920x1080 --set warmup=1 --set repeats=3 --set max_tokens=100 --set ignore_eos=true --set pattern=noise > $OUT/$1.txt 2>&1; echo "== $1"; grep -E "warn|rror" $OUT/$1.txt | head -3; grep -E "^\| (224|1024|1920)x[0-9]+ \| [0-9]+ \|" $OUT/$1.txt; for k in preprocess decode; do grep "$k profile" $OUT/$1.txt | awk 'NR%4==0' | cut -c1-230; done; stamp $1; }
export VLM_BENCH_PROFILE_DECODE=1 VLM_BENCH_PROFILE_PREPROCESS=1
sweep new host
sweep old host-old
MLX_MAX_MB_PER_BUFFER=1000000 sweep mb host
MLX_MAX_MB_PER_BUFFER=1000000 MLX_MAX_OPS_PER_BUFFER=400 sweep mb-ops400 host
MLX_USE_CUDA_GRAPHS=0 sweep nographs host
sweep new2 host
ls -la $VLM_BENCH_HOME/kernel-headers | head
