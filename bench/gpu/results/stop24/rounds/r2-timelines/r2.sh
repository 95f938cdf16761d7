#!/usr/bin/env bash
# Stop 24, round 2: step timelines of q/k/v inside the cluster attention, second form (U=2, U=4), and apart.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
W=$OUT/w; mkdir -p $W
tl() { # name env
  env $2 VLM_BENCH_TIMELINE=$W/tl-$1 timeout 200 ./host bench decode --model $M --paths steps-graph --resolutions 448x448,1920x1080 --repeats 1 > $W/tl-$1.txt 2>&1
  echo "== tl $1: $2"; grep -i "warn\|error" $W/tl-$1.txt | head -3
  for f in 1 3; do python3 timeline.py $W/tl-$1/timeline-$f.csv | grep "Attention\|step\|Qkv\|O \|Down\|GateUp\|Head"; python3 timeline.py --phases $W/tl-$1/timeline-$f.csv | tail -4; done
}
tl apart ""
tl fused2 VLM_BENCH_FUSED_QKV=2
tl fused4 VLM_BENCH_FUSED_QKV=4
for f in 1 3; do python3 timeline.py --layer 10 $W/tl-fused2/timeline-$f.csv | head -14; done
for d in $W/tl-*/; do xz -T0 $d/*.csv; done
tar -C $W -cf $OUT/r2.tar . ; rm -rf $W
