#!/usr/bin/env bash
# Stop 18, round 2, call 3: the new decode attention against the old build (same machine, alternating
# processes), the binding's GPU tests, and a timeline of the new build at 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/r19/mlx-tests.xz > ./mlx-tests && chmod +x ./mlx-tests
timeout 60 ./mlx-tests cuda > $OUT/gpu-tests.txt 2>&1; grep "test result\|FAIL\|panicked" $OUT/gpu-tests.txt
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
R=224x224,1024x1024,1920x1080
timeout 150 ./host bench decode --model $M --paths steps-graph,mlx --resolutions $R --repeats 2 > $OUT/new.txt 2> $OUT/new.err
grep -i "warn\|error\|digest" $OUT/new.err | head; tail -6 $OUT/new.txt; stamp new
timeout 150 ./host-old bench decode --model $M --paths steps-graph --resolutions $R --repeats 2 > $OUT/old.txt 2> $OUT/old.err
grep -i "warn\|error" $OUT/old.err | head; tail -3 $OUT/old.txt; stamp old
VLM_BENCH_TIMELINE=$OUT/tl timeout 150 ./host bench decode --model $M --paths steps-graph --resolutions 224x224,1920x1080 --repeats 1 > $OUT/tl.txt 2>&1
tail -2 $OUT/tl.txt; ls $OUT/tl
for f in 1 3; do python3 timeline.py $OUT/tl/timeline-$f.csv | tail -9; done
xz -T8 $OUT/tl/*.csv; stamp timeline
