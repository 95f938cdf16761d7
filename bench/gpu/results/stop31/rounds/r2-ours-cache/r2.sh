#!/usr/bin/env bash
# Stop 31, round 2 (H200, after round 1): our sweep with the protocol (8B 4-bit and bf16), the
# build's automatic attention layout; then the prefix-cache verification
# through the step runner (8B 4-bit, greedy).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
OUT=$OUT/cmp timeout 380 bash device.sh ours
stamp ours
M=$HOME/models/qwen3-vl-8b-4
timeout 150 ./host run --plugin cache_verification.wasm --model $M --db $OUT/cmp/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cmp/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict|warn" $OUT/cmp/cache-4bit.txt | tail -8
stamp cache
mkdir -p $HOME/cmp-ours && cp $OUT/cmp/results.db $OUT/cmp/session.log $HOME/cmp-ours/
grep -E "^\| (224|1920|\*\*)" $OUT/cmp/session.log | head -20
