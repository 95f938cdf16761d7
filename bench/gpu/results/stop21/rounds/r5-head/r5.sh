#!/usr/bin/env bash
# Stop 21, round 5: the bulk feed (whole rows) for the LM head alone, the driver's carveout, against registers,
# side by side, two processes in opposite orders.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=448x448,896x896,1920x1080
run() { # name paths env
  echo "== $1: $3"
  env $3 timeout 120 ./host bench decode --model $M --paths $2 --resolutions $R --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -3; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  stamp $1
}
C="VLM_BENCH_BULK_CARVEOUT=none VLM_BENCH_BULK_MATRICES=head"
run h1 steps-graph-regs,steps-graph-bulkw "$C"
run h2 steps-graph-bulkw,steps-graph-regs "$C"
tar -C $W -cJf $OUT/r5.tar.xz . ; rm -rf $W; stamp done
