#!/usr/bin/env bash
# Stop 26, round 2 (round 1's machine): our sweep with the issue's protocol (8B 4-bit and bf16), then the
# prefix-cache verification through the step runner (8B 4-bit, greedy). The attention layout: the build's
# automatic one if round 1 found two clusters a head faster at 1920x1080, else forced to 16v (the old default).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
D=$(cat $HOME/decision 2>/dev/null || echo 16v)
[ "$D" = 16v ] && export VLM_BENCH_ATTN_CLUSTER=16v
echo "decision $D; VLM_BENCH_ATTN_CLUSTER=${VLM_BENCH_ATTN_CLUSTER:-}"
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
OUT=$OUT/cmp timeout 360 bash device.sh ours
stamp ours
M=$HOME/models/qwen3-vl-8b-4
timeout 150 ./host run --plugin cache_verification.wasm --model $M --db $OUT/cmp/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cmp/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict|warn" $OUT/cmp/cache-4bit.txt | tail -8
stamp cache
mkdir -p $HOME/cmp-ours && cp $OUT/cmp/results.db $OUT/cmp/session.log $HOME/cmp-ours/
grep -E "^\| (224|1920|\*\*)" $OUT/cmp/session.log | head -20
