#!/usr/bin/env bash
# Stop 22, round 4: the prefix-cache verification through the step runner (8B 4-bit, greedy) on the
# comparison's build (round 3 cut it off at step 8 of 17 with too short a limit).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
mkdir -p $OUT/cmp
timeout 140 ./host run --plugin cache_verification.wasm --model $M --db $OUT/cmp/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cmp/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict|warn" $OUT/cmp/cache-4bit.txt | tail -8; tail -4 $OUT/cmp/cache-4bit.txt
