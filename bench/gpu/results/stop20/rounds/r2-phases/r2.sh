#!/usr/bin/env bash
# Stop 20, round 2, call 3: the cluster attention's phases (timeline marks) at 224x224 and 1920x1080, four layouts.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
for p in steps-graph-c8 steps-graph-c16 steps-graph-c8v steps-graph-c16v; do
  VLM_BENCH_TIMELINE=$W/tl-$p timeout 100 ./host bench decode --model $M --paths $p --resolutions 224x224,1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  grep -i "warn\|error" $W/tl-$p.txt | head -3
  echo "== $p"; for f in 1 3; do python3 timeline.py $W/tl-$p/timeline-$f.csv | grep "Attention\|step"; python3 timeline.py --phases $W/tl-$p/timeline-$f.csv | tail -1; python3 ../../.dev/r2/early.py $W/tl-$p/timeline-$f.csv; done
  rm -f $W/tl-$p/timeline-[02].csv; xz -T8 $W/tl-$p/*.csv
done
stamp tl
tar -C $W -cJf $OUT/r2.tar.xz . ; rm -rf $W; stamp done
