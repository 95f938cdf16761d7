#!/usr/bin/env bash
# Stop 24, round 7: gate/up persistent by default (512 blocks) against a block a group (VLM_BENCH_QMV_GRID=4096x24576=0),
# alternating processes, on the commit that makes it the default.
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
R=448x448,1024x1024,1920x1080
OLD=VLM_BENCH_QMV_GRID=4096x24576=0
run p1 steps-graph $R
run a1 steps-graph $R $OLD
run p2 steps-graph $R
run a2 steps-graph $R $OLD
tar -C $W -cJf $OUT/r7.tar.xz . ; rm -rf $W; stamp done
