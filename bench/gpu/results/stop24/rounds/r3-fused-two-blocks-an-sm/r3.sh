#!/usr/bin/env bash
# Stop 24, round 3: q/k/v inside the cluster attention compiled for 2 blocks an SM (128 registers), U=1 and U=2,
# against the two launches; alternating processes, then a timeline of U=2.
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
run a1 steps-graph $R
run f1 steps-graph $R VLM_BENCH_FUSED_QKV=2
run e1 steps-graph $R VLM_BENCH_FUSED_QKV=1
run a2 steps-graph $R
run f2 steps-graph $R VLM_BENCH_FUSED_QKV=2
run e2 steps-graph $R VLM_BENCH_FUSED_QKV=1
env VLM_BENCH_FUSED_QKV=2 VLM_BENCH_TIMELINE=$W/tl-fused2 timeout 200 ./host bench decode --model $M --paths steps-graph --resolutions 448x448,1920x1080 --repeats 1 > $W/tl-fused2.txt 2>&1
for f in 1 3; do python3 timeline.py $W/tl-fused2/timeline-$f.csv | grep "Attention\|step"; python3 timeline.py --phases $W/tl-fused2/timeline-$f.csv | tail -2; python3 timeline.py --layer 10 $W/tl-fused2/timeline-$f.csv | head -4; done
for d in $W/tl-*/; do xz -T0 $d/*.csv; done
tar -C $W -cJf $OUT/r3.tar.xz . ; rm -rf $W; stamp done
