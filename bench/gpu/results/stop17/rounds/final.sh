#!/usr/bin/env bash
# Stop 17, final session, call 3: our half of the comparison (device.sh ours), then the prefix-cache
# verification on the 8B 4-bit (greedy, so through the step runner).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
OUT=$OUT/cmp timeout 420 bash device.sh ours | tail -16
stamp ours
grep -i "warn" $OUT/cmp/session.log | head -5
timeout 140 ./host run --plugin cache_verification.wasm --model $HOME/models/qwen3-vl-8b-4 --db $OUT/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict" $OUT/cache-4bit.txt | tail -5
stamp cache
