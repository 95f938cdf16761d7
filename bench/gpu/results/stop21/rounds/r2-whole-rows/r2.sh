#!/usr/bin/env bash
# Stop 21, round 2: whole rows in one bulk copy per run (bulkw, bulk32x2) against registers and round 1's bulk
# registers, side by side in one process (tokens must match: same products, same order); then timelines.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=224x224,1024x1024,1920x1080
run() { # name paths [env]
  env $3 timeout 200 ./host bench decode --model $M --paths $2 --resolutions $R --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -3; grep "steps" $W/$1.txt; grep digest $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
run 1 steps-graph-regs,steps-graph-bulkw,steps-graph-bulk32x2,steps-graph-bulk
run 2 steps-graph-bulk,steps-graph-bulk32x2,steps-graph-bulkw,steps-graph-regs
for p in steps-graph-bulkw; do
  VLM_BENCH_TIMELINE=$W/tl-$p timeout 100 ./host bench decode --model $M --paths $p --resolutions 224x224,1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  grep -i "warn\|error" $W/tl-$p.txt | head -3
  echo "== $p"; for f in 1 3; do python3 timeline.py $W/tl-$p/timeline-$f.csv | grep "Attention\|step\|Qkv\|O \|Down\|GateUp\|Head"; python3 ../../.dev/s21r2/early.py $W/tl-$p/timeline-$f.csv; done
  python3 timeline.py --layer 10 $W/tl-$p/timeline-3.csv | head -8
  rm -f $W/tl-$p/timeline-[02].csv; xz -T8 $W/tl-$p/*.csv
done
stamp tl
tar -C $W -cJf $OUT/r2.tar.xz . ; rm -rf $W; stamp done
