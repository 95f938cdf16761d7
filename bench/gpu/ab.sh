#!/usr/bin/env bash
# Runs ON the GPU machine: two builds of `host` (A, then B) against each other
# on one model, in alternating processes (A B A B ...), so that a drifting
# machine affects both alike. Each process runs the resolution sweep; every run
# goes into one database, and `host results compare` prints each resolution's
# figures per run with the ratio to the first and whether the difference
# exceeds the runs' own noise.
#
# usage: ab.sh HOST_A HOST_B [PAIRS]      (PAIRS: 2 by default)
# env:   OUT (./out), MODEL ($HOME/models/qwen3-vl-8b-4, synthesized when
#        missing), RES (224x224,1024x1024,1920x1080), RUNS (5), TOKENS (100)
set -euo pipefail
a=${1:?usage: ab.sh HOST_A HOST_B [PAIRS]} b=${2:?usage: ab.sh HOST_A HOST_B [PAIRS]}
pairs=${3:-2}
OUT=${OUT:-out}
MODEL=${MODEL:-$HOME/models/qwen3-vl-8b-4}
RES=${RES:-224x224,1024x1024,1920x1080}
mkdir -p "$OUT"
export VLM_BENCH_HOME=${VLM_BENCH_HOME:-$HOME/vlm-bench}
if [ ! -f "$MODEL/config.json" ]; then
  "$b" model synth --arch qwen3-vl-8b --quant 4 --out "$MODEL" > "$OUT/synth.log" 2>&1
fi
db=$OUT/ab.db
rm -f "$db"
ids=()
for i in $(seq "$pairs"); do
  for side in a b; do
    bin=$a; [ $side = b ] && bin=$b
    "$bin" run --plugin resolution_sweep.wasm --model "$MODEL" --db "$db" -q \
      --set resolutions="$RES" --set warmup=1 --set repeats="${RUNS:-5}" \
      --set max_tokens="${TOKENS:-100}" --set ignore_eos=true --set pattern=noise \
      --set check_image=false > "$OUT/$side-$i.log" 2>&1
    id=${#ids[@]}; ids+=($((id + 1)))
    echo "run $((id + 1)): $side ($bin)"
  done
done
"$b" results compare "${ids[@]}" --db "$db"
