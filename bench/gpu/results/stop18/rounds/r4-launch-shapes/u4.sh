#!/usr/bin/env bash
# Stop 18, round 4, call 3: q/k/v and o with 4 k-tiles per batch, gate/up at 6 blocks per SM, against
# the old build (alternating processes), then the new build's timeline.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
R=224x224,1024x1024,1920x1080
for b in host-old host host-old; do
  timeout 150 ./$b bench decode --model $M --paths steps-graph --resolutions $R --repeats 3 > $OUT/$b.txt 2> $OUT/$b.err
  grep -i "warn\|error" $OUT/$b.err | head -3; echo "$b"; tail -3 $OUT/$b.txt; grep digest $OUT/$b.err
done
stamp bench
VLM_BENCH_TIMELINE=$OUT/tl timeout 150 ./host bench decode --model $M --paths steps-graph --resolutions 224x224,1920x1080 --repeats 1 > $OUT/tl.txt 2>&1
for f in 1 3; do python3 timeline.py $OUT/tl/timeline-$f.csv | tail -9; done
xz -T8 $OUT/tl/*.csv; rm -f $OUT/tl/timeline-0.csv.xz $OUT/tl/timeline-2.csv.xz; stamp timeline
