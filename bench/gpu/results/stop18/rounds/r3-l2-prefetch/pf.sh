#!/usr/bin/env bash
# Stop 18, round 3, call 3: L2 prefetch budgets side by side in one process, then timelines at 0 and 32 MB.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
P=steps-graph@l2=0,steps-graph@l2=16,steps-graph@l2=32,steps-graph@l2=48
timeout 200 ./host bench decode --model $M --paths $P --resolutions 224x224,1024x1024,1920x1080 --repeats 3 > $OUT/pf.txt 2> $OUT/pf.err
grep -iv "digest" $OUT/pf.err | head -5; tail -13 $OUT/pf.txt; stamp budgets
VLM_BENCH_TIMELINE=$OUT/tl timeout 150 ./host bench decode --model $M --paths steps-graph@l2=0,steps-graph@l2=32 --resolutions 1920x1080 --repeats 1 > $OUT/tl.txt 2>&1
tail -3 $OUT/tl.txt
for f in 2 3; do python3 timeline.py $OUT/tl/timeline-$f.csv | tail -9; done
xz -T8 $OUT/tl/*.csv; rm -f $OUT/tl/timeline-0.csv.xz $OUT/tl/timeline-1.csv.xz; stamp timeline
