#!/usr/bin/env bash
# Stop 16, final session, call 3: staging + rayon/f32 resize (new, HEAD) against b6a8055 (old) at
# 1024 and 1920 with the preprocessing profile, then our half of the comparison (device.sh ours).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/lab/host-b6a8055.xz > ./host-old && chmod +x ./host-old
nproc; python3 -c 'import os; print("affinity", len(os.sched_getaffinity(0)))'
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
sweep() { timeout 150 ./$2 run --plugin resolution_sweep.wasm --model $M --db /tmp/r17-$1.db --set resolutions=1024x1024,1920x1080 --set warmup=1 --set repeats=3 --set max_tokens=100 --set ignore_eos=true --set pattern=noise > $OUT/ab-$1.txt 2>&1; echo "== $1"; grep -iE "warn|rror" $OUT/ab-$1.txt | head -3; grep -E "^\| (224|1024|1920)x[0-9]+ \| [0-9]+ \|" $OUT/ab-$1.txt; grep "preprocess profile" $OUT/ab-$1.txt | tail -3 | cut -c1-260; stamp $1; }
export VLM_BENCH_PROFILE_PREPROCESS=1
sweep new host
sweep old host-old
unset VLM_BENCH_PROFILE_PREPROCESS
OUT=$OUT/cmp timeout 380 bash device.sh ours | tail -30
stamp ours
