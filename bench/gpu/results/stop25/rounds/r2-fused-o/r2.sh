#!/usr/bin/env bash
# Stop 25, round 2: the o projection fused into the cluster attention (VLM_BENCH_ATTN_CLUSTER=16vo; o's rows copied
# before the wait, or with VLM_BENCH_FUSED_O_AT=keys once the keys are in) against the default (16v + o launch),
# alternating processes, bench decode at 448x448 / 1024x1024 / 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
W=$OUT/w; mkdir -p $W
run() { # name paths resolutions env
  echo "== $1: $2 $4 $5"
  env $4 $5 timeout 200 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
F=VLM_BENCH_ATTN_CLUSTER=16vo
run d1 steps-graph $R
run f1 steps-graph $R $F
run k1 steps-graph $R $F VLM_BENCH_FUSED_O_AT=keys
run f2 steps-graph $R $F
run d2 steps-graph $R
tar -C $W -cJf $OUT/r2.tar.xz . ; rm -rf $W; stamp done
