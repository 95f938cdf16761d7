#!/usr/bin/env bash
# Stop 20, round 6, call 3: the automatic layout (16 blocks, late values) against 16 blocks without late
# values at the contexts just short of 450 tok/s, 5 repeats, three processes in alternating order (host 0cb420e).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=448x448,672x672,896x896,1024x1024,1280x720
run() { # name paths
  timeout 150 ./host bench decode --model $M --paths $2 --resolutions $R --repeats 5 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -3; grep "steps" $W/$1.txt
  stamp $1
}
run 1 steps-graph,steps-graph-c16
run 2 steps-graph-c16,steps-graph
run 3 steps-graph,steps-graph-c16
tar -C $W -cJf $OUT/r6.tar.xz . ; rm -rf $W; stamp done
