#!/usr/bin/env bash
# Stop 22, round 2 (round 1's machine): q/k/v with 8 warps (8x2) confirmed in alternating processes; with gate/up 8x2, head 8x4.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
W=$OUT/w; mkdir -p $W
run() { # name paths resolutions env
  echo "== $1: $2 $4"
  env $4 timeout 100 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  stamp $1
}
R=448x448,1024x1024,1920x1080
Q=4096x6144=8x2
run c1 steps-graph $R
run c2 steps-graph $R VLM_BENCH_QMV_SHAPES=$Q
run c3 steps-graph $R VLM_BENCH_QMV_SHAPES=$Q,4096x24576=8x2
run c4 steps-graph $R VLM_BENCH_QMV_SHAPES=$Q,4096x151936=8x4
run c5 steps-graph $R
run c6 steps-graph $R VLM_BENCH_QMV_SHAPES=$Q
tar -C $W -cJf $OUT/r2.tar.xz . ; rm -rf $W; stamp done
