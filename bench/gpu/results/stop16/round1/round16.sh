#!/usr/bin/env bash
# Stop 16, round 1: pinned staging for images + cp.async GEMV (new, a8a38a4) against b6a8055 (old);
# the staging alone by VLM_BENCH_NO_PINNED_STAGING; GPU unit tests of the staging path.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/lab/host-b6a8055.xz > ./host-old && chmod +x ./host-old
for t in mlxtest enginetest; do [ -f ../../.dev/lab/$t.xz ] && xz -dc ../../.dev/lab/$t.xz > ./$t && chmod +x ./$t; done
(./mlxtest staging 2>&1 | tail -4; ./enginetest image::patchify 2>&1 | tail -4) > $OUT/gpu-tests.txt 2>&1
cat $OUT/gpu-tests.txt; stamp tests
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > $OUT/synth.log 2>&1
stamp synth
sweep() { timeout 200 ./$2 run --plugin resolution_sweep.wasm --model $M --db /tmp/r16-$1.db --set resolutions=224x224,1024x1024,1920x1080 --set warmup=1 --set repeats=3 --set max_tokens=100 --set ignore_eos=true --set pattern=noise > $OUT/$1.txt 2>&1; echo "== $1"; grep -iE "warn|rror|self-check" $OUT/$1.txt | head -3; grep -E "^\| (224|1024|1920)x[0-9]+ \| [0-9]+ \|" $OUT/$1.txt; for k in preprocess decode; do grep "$k profile" $OUT/$1.txt | awk 'NR%4==0' | cut -c1-260; done; stamp $1; }
export VLM_BENCH_PROFILE_DECODE=1 VLM_BENCH_PROFILE_PREPROCESS=1
sweep new host
sweep old host-old
VLM_BENCH_NO_PINNED_STAGING=1 sweep nopin host
sweep new2 host
sweep old2 host-old
