#!/usr/bin/env bash
# Stop 19, round 1, call 3: the cluster attention against the split one in one process (both orders),
# then the cluster path's timeline.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
R=224x224,1024x1024,1920x1080
n=0
for p in steps-graph,steps-graph-splits steps-graph-splits,steps-graph; do
  n=$((n+1))
  timeout 200 ./host bench decode --model $M --paths $p --resolutions $R --repeats 3 > $OUT/$n.txt 2> $OUT/$n.err
  echo "rc $?"; grep -i "warn\|error\|panic" $OUT/$n.err | head -5; cat $OUT/$n.txt | tail -8; grep digest $OUT/$n.err
  stamp $p
done
VLM_BENCH_TIMELINE=$OUT/tl timeout 150 ./host bench decode --model $M --paths steps-graph --resolutions 224x224,1920x1080 --repeats 1 > $OUT/tl.txt 2>&1
grep -i "warn\|error" $OUT/tl.txt | head
for f in 1 3; do python3 timeline.py $OUT/tl/timeline-$f.csv | tail -9; done
python3 timeline.py --layer 10 $OUT/tl/timeline-3.csv | head -40
xz -T8 $OUT/tl/*.csv; rm -f $OUT/tl/timeline-0.csv.xz $OUT/tl/timeline-2.csv.xz; stamp timeline
