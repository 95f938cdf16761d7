#!/usr/bin/env bash
# Stop 18, round 1, call 3: step timelines (graph+PDL and no-PDL) at 224 and 1920, and decode speed
# with and without the timeline stamps.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
bd() { timeout 150 ./host bench decode --model $M "$@"; }
bd --paths steps-graph --resolutions 224x224,1920x1080 --repeats 2 > $OUT/plain.txt 2>&1; tail -4 $OUT/plain.txt; stamp plain
for p in steps-graph steps-graph-nopdl; do
  for r in 224x224 1920x1080; do
    VLM_BENCH_TIMELINE=$OUT/tl-$p-$r bd --paths $p --resolutions $r --repeats 2 > $OUT/tl-$p-$r.txt 2>&1
    tail -2 $OUT/tl-$p-$r.txt
    python3 timeline.py $OUT/tl-$p-$r/timeline-1.csv $OUT/tl-$p-$r/timeline-2.csv | tail -12
    xz -T4 $OUT/tl-$p-$r/*.csv
  done
done
stamp timelines
