#!/usr/bin/env bash
# Stop 24, round 1 (stop 23 round 8 again, mended): q/k/v inside the cluster attention, all its row groups loaded at once (VLM_BENCH_FUSED_QKV=U)
# against the two launches; alternating processes.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name paths resolutions env
  echo "== $1: $2 $4"
  env $4 timeout 200 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
run a1 steps-graph $R
run f1 steps-graph $R VLM_BENCH_FUSED_QKV=2
run g1 steps-graph $R VLM_BENCH_FUSED_QKV=4
run a2 steps-graph $R
run f2 steps-graph $R VLM_BENCH_FUSED_QKV=2
run g2 steps-graph $R VLM_BENCH_FUSED_QKV=4
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
