#!/usr/bin/env bash
# Stop 22, round 1: the cluster attention's scores and sums on tensor cores (-c16vt) against CUDA cores
# (-c16v) side by side in one process, both orders; o (4096x4096) with all its k-tiles loaded before the
# wait (8x4) and q/k/v with 8 warps (8x2) in alternating processes; a timeline with phases of c16vt.
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
  env $4 timeout 150 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  stamp $1
}
R=224x224,448x448,1024x1024,1920x1080
run a1 steps-graph-c16v,steps-graph-c16vt $R
run a2 steps-graph-c16vt,steps-graph-c16v $R
R=448x448,1024x1024,1920x1080
run b1 steps-graph $R
run b2 steps-graph $R VLM_BENCH_QMV_SHAPES=4096x4096=8x4
run b3 steps-graph $R VLM_BENCH_QMV_SHAPES=4096x6144=8x2
run b4 steps-graph $R
run b5 steps-graph $R VLM_BENCH_QMV_SHAPES=4096x4096=8x4
tl() { # name path env
  env $3 VLM_BENCH_TIMELINE=$W/tl-$1 timeout 100 ./host bench decode --model $M --paths $2 --resolutions 224x224,1920x1080 --repeats 1 > $W/tl-$1.txt 2>&1
  grep -i "warn\|error" $W/tl-$1.txt | head -3
  echo "== tl $1: $2 $3"; for f in 1 3; do python3 timeline.py $W/tl-$1/timeline-$f.csv | grep "Attention\|step\|Qkv\|O \|Down\|GateUp\|Head"; python3 timeline.py --phases $W/tl-$1/timeline-$f.csv | tail -4; done
  rm -f $W/tl-$1/timeline-[02].csv; xz -T8 $W/tl-$1/*.csv
}
tl c16vt steps-graph-c16vt
tl o84 steps-graph VLM_BENCH_QMV_SHAPES=4096x4096=8x4
stamp tl
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
