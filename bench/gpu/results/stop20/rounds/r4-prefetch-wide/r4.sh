#!/usr/bin/env bash
# Stop 20, round 4, call 3: q/k/v prefetching the attention's cached rows into L2 (VLM_BENCH_KV_PREFETCH=1)
# against none, alternating processes; blocks of 512 threads (c16vw, c8w) beside the default in each; phases.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=224x224,672x672,1024x1024,1920x1080
run() { # name prefetch paths
  VLM_BENCH_KV_PREFETCH=$2 timeout 200 ./host bench decode --model $M --paths $3 --resolutions $R --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -3; grep "steps" $W/$1.txt; grep digest $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
run 1-pf0 0 steps-graph,steps-graph-c16vw,steps-graph-c8w
run 2-pf1 1 steps-graph,steps-graph-c16vw,steps-graph-c8w
run 3-pf0 0 steps-graph,steps-graph-c16vw
run 4-pf1 1 steps-graph,steps-graph-c16vw
for p in steps-graph steps-graph-c16vw; do
  VLM_BENCH_KV_PREFETCH=1 VLM_BENCH_TIMELINE=$W/tl-$p timeout 100 ./host bench decode --model $M --paths $p --resolutions 224x224,1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  grep -i "warn\|error" $W/tl-$p.txt | head -3
  echo "== pf1 $p"; for f in 1 3; do python3 timeline.py $W/tl-$p/timeline-$f.csv | grep "Attention\|step\|Qkv\|O \|Down\|GateUp"; python3 timeline.py --phases $W/tl-$p/timeline-$f.csv | tail -1; python3 ../../.dev/r4/early.py $W/tl-$p/timeline-$f.csv; done
  python3 timeline.py --layer 10 $W/tl-$p/timeline-3.csv > $W/tl-$p/layer10.txt; head -6 $W/tl-$p/layer10.txt
  rm -f $W/tl-$p/timeline-[02].csv; xz -T8 $W/tl-$p/*.csv
done
stamp tl
tar -C $W -cJf $OUT/r4.tar.xz . ; rm -rf $W; stamp done
