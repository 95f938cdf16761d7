#!/usr/bin/env bash
# Stop 17, round 1, call 3: the step runner on the H100 (binding's GPU tests, then
# host bench decode: MLX's graph against the step runner with and without PDL / CUDA graphs).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/r18/mlx-tests.xz > ./mlx-tests && chmod +x ./mlx-tests
timeout 60 ./mlx-tests cuda > $OUT/gpu-tests.txt 2>&1; tail -6 $OUT/gpu-tests.txt
stamp tests
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
VLM_BENCH_PROFILE_DECODE=1 timeout ${BENCH_S:-420} ./host bench decode --model $M --repeats 3 ${BENCH_ARGS:-} > $OUT/decode.txt 2> $OUT/decode.err
echo "rc $?"; cat $OUT/decode.txt; grep -iv "decode profile" $OUT/decode.err | head -20; grep "decode profile" $OUT/decode.err | tail -16
stamp decode
