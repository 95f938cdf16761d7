#!/usr/bin/env bash
# Stop 20, round 3, call 3: push join + scores two rounds at once + auto = 16 blocks with late values (host)
# against round 2's build (host-old: pull join), alternating processes; then the new build's phases.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/r3/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=224x224,672x672,1024x1024,1920x1080
run() { # name binary paths
  timeout 200 ./$2 bench decode --model $M --paths $3 --resolutions $R --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -3; grep "steps" $W/$1.txt; grep digest $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
run 1-new host steps-graph,steps-graph-c16,steps-graph-c8
run 2-old host-old steps-graph-c16v,steps-graph-c8
run 3-new host steps-graph,steps-graph-c8
run 4-old host-old steps-graph-c16v,steps-graph-c8
for p in steps-graph steps-graph-c8; do
  VLM_BENCH_TIMELINE=$W/tl-$p timeout 100 ./host bench decode --model $M --paths $p --resolutions 224x224,1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  grep -i "warn\|error" $W/tl-$p.txt | head -3
  echo "== $p"; for f in 1 3; do python3 timeline.py $W/tl-$p/timeline-$f.csv | grep "Attention\|step\|Qkv\|O \|Down\|GateUp"; python3 timeline.py --phases $W/tl-$p/timeline-$f.csv | tail -1; python3 ../../.dev/r3/early.py $W/tl-$p/timeline-$f.csv; done
  python3 timeline.py --layer 10 $W/tl-$p/timeline-3.csv | head -6
  rm -f $W/tl-$p/timeline-[02].csv; xz -T8 $W/tl-$p/*.csv
done
stamp tl
tar -C $W -cJf $OUT/r3.tar.xz . ; rm -rf $W; stamp done
