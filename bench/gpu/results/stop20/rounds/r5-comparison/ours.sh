#!/usr/bin/env bash
# Stop 20, final comparison, call 3: our sweep (8B 4-bit and bf16, the protocol), then the
# prefix-cache verification through the step runner (8B 4-bit, greedy).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
OUT=$OUT/cmp bash device.sh ours
M=$HOME/models/qwen3-vl-8b-4
timeout 200 ./host run --plugin cache_verification.wasm --model $M --db $OUT/cmp/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cmp/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict|warn" $OUT/cmp/cache-4bit.txt | tail -8
stamp cache
mkdir -p $HOME/cmp-ours && cp $OUT/cmp/results.db $HOME/cmp-ours/
