#!/usr/bin/env bash
# Stop 22, round 3: the new default (q/k/v in 8-warp blocks) against it with gate/up at 4 warps x 4 k-tiles,
# alternating processes; then our sweep with the protocol (8B 4-bit and bf16) and the prefix-cache
# verification through the step runner, as stop 20's comparison (ours.sh).
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
  env $4 timeout 100 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
G=VLM_BENCH_QMV_SHAPES=4096x24576=4x4
run e1 steps-graph $R
run e2 steps-graph $R $G
run e3 steps-graph $R
run e4 steps-graph $R $G
tar -C $W -cJf $OUT/r3.tar.xz . ; rm -rf $W
OUT=$OUT/cmp timeout 300 bash device.sh ours
stamp ours
timeout 60 ./host run --plugin cache_verification.wasm --model $M --db $OUT/cmp/cache-4bit.db \
  --set size=1024 --set resolutions=224,512,1024 --set max_tokens=16 > $OUT/cmp/cache-4bit.txt 2>&1
echo "cache rc $?"; grep -iE "pass|fail|verdict|warn" $OUT/cmp/cache-4bit.txt | tail -8
stamp cache
