#!/usr/bin/env bash
# Stop 18, round 5, call 3: old build, B (q/k/v and o with 4 k-tiles per batch), C (B + down with 6),
# alternating processes on one machine.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
xz -dc $HOME/stage/host-c.xz > ./host-c && chmod +x ./host-c
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
R=224x224,1024x1024,1920x1080
n=0
for b in host-old host host-c host-old; do
  n=$((n+1))
  timeout 150 ./$b bench decode --model $M --paths steps-graph --resolutions $R --repeats 3 > $OUT/$n-$b.txt 2> $OUT/$n-$b.err
  grep -i "warn\|error" $OUT/$n-$b.err | head -3; echo "$n $b"; tail -3 $OUT/$n-$b.txt; grep digest $OUT/$n-$b.err
  stamp $b
done
