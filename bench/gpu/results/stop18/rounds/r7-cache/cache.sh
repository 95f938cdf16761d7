#!/usr/bin/env bash
# Stop 18, round 7, call 3: the prefix-cache verification on the 8B 4-bit (greedy, so through the step
# runner and the acquire-release join), default build.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
timeout 200 ./host run --plugin cache_verification.wasm --model $M --db $OUT/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict|warn" $OUT/cache-4bit.txt | tail -8
stamp cache
rm -f $OUT/cache-4bit.db
