#!/usr/bin/env bash
# Stop 20, round 1, call 3: late values (keys only in shared memory before the wait) against
# round 1's layout, clusters of 8 and 16, one process; then timelines of four layouts.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
cp ../../.dev/r1/early.py $HOME/early.py
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=224x224,672x672,1024x1024,1920x1080
timeout 240 ./host bench decode --model $M --paths steps-graph,steps-graph-c8v,steps-graph-c16v,steps-graph-c8,steps-graph-c16 --resolutions $R --repeats 3 > $W/1.txt 2> $W/1.err
echo "1 rc $?"; grep -i "warn\|error\|panic" $W/1.err | head -5; grep "steps" $W/1.txt; grep digest $W/1.err | tr '\n' ' '; echo
stamp bench
for p in steps-graph-c8v steps-graph-c16v steps-graph-c8 steps-graph-c16; do
  VLM_BENCH_TIMELINE=$W/tl-$p timeout 100 ./host bench decode --model $M --paths $p --resolutions 1024x1024,1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  grep -i "warn\|error" $W/tl-$p.txt | head -3
  echo "== $p"; for f in 1 3; do python3 timeline.py $W/tl-$p/timeline-$f.csv | grep -v "^kernel\|Head\|Argmax\|sum of\|Embed"; done
  for f in 1 3; do python3 $HOME/early.py $W/tl-$p/timeline-$f.csv; done
  python3 timeline.py --layer 10 $W/tl-$p/timeline-3.csv > $W/tl-$p/layer10-1920.txt; head -6 $W/tl-$p/layer10-1920.txt
  rm -f $W/tl-$p/timeline-[02].csv; xz -T8 $W/tl-$p/*.csv
done
stamp tl
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
