#!/usr/bin/env bash
# Stop 27, round 4: the down projection at 8 warps x 6 k-tiles at once (VLM_BENCH_QMV_SHAPES=12288x4096=8x6,
# 110 registers: still 2 blocks an SM, half as many loads again in flight) against the default 8x4 (90),
# alternating processes, bench decode at 448x448 / 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name shapes resolutions
  echo "== $1: shapes '$2'"
  VLM_BENCH_QMV_SHAPES=$2 timeout 150 ./host bench decode --model $M --paths steps-graph --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1920x1080
run d1 "" $R
run s1 12288x4096=8x6 $R
run d2 "" $R
run s2 12288x4096=8x6 $R
tar -C $W -cJf $OUT/r4.tar.xz . ; rm -rf $W; stamp done
