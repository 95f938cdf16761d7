#!/usr/bin/env bash
# Stop 19, round 3, call 3: carveout + push join + residual hoist (host, 192f0f0) against 222b2f9 (host-old),
# alternating processes; the new build without the carveout; the new build's timelines.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
R=224x224,1024x1024,1920x1080
n=0
for b in host-old host nocarve host-old host; do
  n=$((n+1)); bin=$b; env=""
  [ $b = nocarve ] && bin=host && env="VLM_BENCH_SHARED_CARVEOUT=0"
  paths=steps-graph,steps-graph-c16; [ $b = nocarve ] && paths=steps-graph
  env $env timeout 150 ./$bin bench decode --model $M --paths $paths --resolutions $R --repeats 3 > $OUT/$n-$b.txt 2> $OUT/$n-$b.err
  echo "$n $b rc $?"; grep -i "warn\|error\|panic" $OUT/$n-$b.err | head -3; grep "steps" $OUT/$n-$b.txt; grep digest $OUT/$n-$b.err
  stamp $b
done
VLM_BENCH_TIMELINE=$OUT/tl timeout 120 ./host bench decode --model $M --paths steps-graph --resolutions $R --repeats 1 > $OUT/tl.txt 2>&1
grep -i "warn\|error" $OUT/tl.txt | head -3
for f in 1 3 5; do python3 timeline.py $OUT/tl/timeline-$f.csv | grep -v "^kernel\|Argmax\|sum of"; done
python3 timeline.py --layer 10 $OUT/tl/timeline-5.csv | head -9
python3 timeline.py --layer 10 $OUT/tl/timeline-1.csv | head -9
xz -T8 $OUT/tl/*.csv; rm -f $OUT/tl/timeline-[024].csv.xz; stamp done
