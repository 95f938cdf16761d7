#!/usr/bin/env bash
# Stop 17, round 5, call 3: TTFT (vision tables factored, MRoPE rows in parallel, tables through
# staging) new vs old, alternating processes, steps-graph, 5 measured requests.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
bd() { timeout 150 ./$1 bench decode --model $M --paths steps-graph --repeats 5 --resolutions 224x224,1024x1024,1920x1080; }
bd host > $OUT/new.txt 2>&1; grep -i "warn" $OUT/new.txt; tail -3 $OUT/new.txt; stamp new
bd host-old > $OUT/old.txt 2>&1; tail -3 $OUT/old.txt; stamp old
bd host > $OUT/new2.txt 2>&1; tail -3 $OUT/new2.txt; stamp new2
bd host-old > $OUT/old2.txt 2>&1; tail -3 $OUT/old2.txt; stamp old2
