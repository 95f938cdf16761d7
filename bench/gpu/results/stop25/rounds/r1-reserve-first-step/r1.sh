#!/usr/bin/env bash
# Stop 25, round 1: the sweep's protocol (5 resolutions, 1 warm-up + 5 repeats, 100 forced tokens, noise)
# on the old host (164c5b1) and the new one (output reserved in the cache; a request's first step launched
# as it is and recorded while it runs), alternating processes; GPU clocks and power logged throughout.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
xz -dc ../../.dev/run/host-old.xz > host-old && chmod +x host-old
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
  --format=csv,noheader -lms 20 > $W/smi.csv 2>&1 &
SMI=$!
RES=448x448,672x672,1024x1024,1280x720,1920x1080
sweep() { # name binary
  echo "== $1: $2"
  timeout 150 ./$2 run --plugin resolution_sweep.wasm --model $M --db $W/$1.db \
    --set resolutions=$RES --set warmup=1 --set repeats=5 --set max_tokens=100 \
    --set ignore_eos=true --set pattern=noise > $W/$1.txt 2>&1
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.txt | head -5
  stamp $1
}
sweep old1 host-old
sweep new1 host
sweep old2 host-old
sweep new2 host
kill $SMI
python3 ../../.dev/s25r1/gaps.py $W/*.db > $W/gaps.txt 2>&1; cat $W/gaps.txt
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
