#!/usr/bin/env bash
# Stop 24, round 5: persistent products (VLM_BENCH_QMV_GRID=KxN=G: G blocks each taking every G-th row group, the
# input staged once, the next group's first loads before the current group's reduction) against a block per group.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
W=$OUT/w; mkdir -p $W
run() { # name paths resolutions env
  echo "== $1: $2 $4"
  env $4 timeout 200 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1920x1080
G512=VLM_BENCH_QMV_GRID=4096x24576=512
G528=VLM_BENCH_QMV_GRID=4096x24576=528,4096x151936=528
G384=VLM_BENCH_QMV_GRID=4096x24576=384
run a1 steps-graph $R
run p1 steps-graph $R $G512
run q1 steps-graph $R $G528
run r1 steps-graph $R $G384
run a2 steps-graph $R
run p2 steps-graph $R $G512
run q2 steps-graph $R $G528
run r2 steps-graph $R $G384
tar -C $W -cJf $OUT/r5.tar.xz . ; rm -rf $W; stamp done
