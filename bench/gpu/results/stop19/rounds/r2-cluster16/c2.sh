#!/usr/bin/env bash
# Stop 19, round 2, call 3: clusters of 8 and 16 against the split attention in one process, then timelines.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
R=224x224,1024x1024,1920x1080
timeout 250 ./host bench decode --model $M --paths steps-graph,steps-graph-c16,steps-graph-splits --resolutions $R --repeats 3 > $OUT/1.txt 2> $OUT/1.err
echo "rc $?"; grep -i "warn\|error\|panic" $OUT/1.err | head -5; tail -11 $OUT/1.txt; grep digest $OUT/1.err
stamp abc
for p in steps-graph steps-graph-c16 steps-graph-splits; do
  VLM_BENCH_TIMELINE=$OUT/tl-$p timeout 150 ./host bench decode --model $M --paths $p --resolutions $R --repeats 1 > $OUT/tl-$p.txt 2>&1
  grep -i "warn\|error" $OUT/tl-$p.txt | head -3
  for f in 1 3 5; do python3 timeline.py $OUT/tl-$p/timeline-$f.csv | grep -v "^kernel\|Head\|Argmax\|sum of"; done
  stamp tl $p
done
python3 timeline.py --layer 10 $OUT/tl-steps-graph/timeline-5.csv | head -9
python3 timeline.py --layer 10 $OUT/tl-steps-graph/timeline-1.csv | head -9
xz -T8 $OUT/tl-*/*.csv; rm -f $OUT/tl-*/timeline-[024].csv.xz; stamp done
