#!/usr/bin/env bash
# Stop 21, round 4: bulk feed for the streaming products only (gate/up, head; + down), the driver's carveout,
# each process registers against bulk side by side; then a timeline.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=224x224,1024x1024,1920x1080
run() { # name paths env
  echo "== $1: $3"
  env $3 timeout 150 ./host bench decode --model $M --paths $2 --resolutions $R --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -3; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  stamp $1
}
C=VLM_BENCH_BULK_CARVEOUT=none
run q1 steps-graph-regs,steps-graph-bulkw "$C VLM_BENCH_BULK_MATRICES=gateup,head"
run q2 steps-graph-regs,steps-graph-bulkw "$C VLM_BENCH_BULK_MATRICES=gateup"
run q3 steps-graph-regs,steps-graph-bulk32x2 "$C VLM_BENCH_BULK_MATRICES=gateup,head,down"
run q4 steps-graph-bulkw,steps-graph-regs "$C VLM_BENCH_BULK_MATRICES=gateup,head"
tl() { # name path env
  env $3 VLM_BENCH_TIMELINE=$W/tl-$1 timeout 100 ./host bench decode --model $M --paths $2 --resolutions 224x224,1920x1080 --repeats 1 > $W/tl-$1.txt 2>&1
  grep -i "warn\|error" $W/tl-$1.txt | head -3
  echo "== tl $1: $2 $3"; for f in 1 3; do python3 timeline.py $W/tl-$1/timeline-$f.csv | grep "Attention\|step\|Qkv\|O \|Down\|GateUp\|Head"; done
  rm -f $W/tl-$1/timeline-[02].csv; xz -T8 $W/tl-$1/*.csv
}
tl q1 steps-graph-bulkw "$C VLM_BENCH_BULK_MATRICES=gateup,head"
stamp tl
tar -C $W -cJf $OUT/r4.tar.xz . ; rm -rf $W; stamp done
