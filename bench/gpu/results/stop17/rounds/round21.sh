#!/usr/bin/env bash
# Stop 17, round 4, call 3: decode attention (rows loaded first, one split without the join) new vs old,
# alternating processes, steps-graph and mlx, 3 resolutions.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
bd() { timeout 200 ./$1 bench decode --model $M --paths steps-graph,mlx --repeats 3; }
bd host > $OUT/new.txt 2>&1; grep -i "warn" $OUT/new.txt; tail -6 $OUT/new.txt; stamp new
bd host-old > $OUT/old.txt 2>&1; tail -6 $OUT/old.txt; stamp old
bd host > $OUT/new2.txt 2>&1; tail -6 $OUT/new2.txt; stamp new2
