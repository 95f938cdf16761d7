#!/usr/bin/env bash
# Stop 17, after the review: the binding's GPU tests and the refactored step runner against MLX's path.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/r18/mlx-tests.xz > ./mlx-tests && chmod +x ./mlx-tests
timeout 60 ./mlx-tests cuda > $OUT/gpu-tests.txt 2>&1; grep "test result\|FAIL\|panicked" $OUT/gpu-tests.txt
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
timeout 200 ./host bench decode --model $M --paths steps-graph,mlx,steps --resolutions 224x224,1920x1080 --repeats 2 > $OUT/decode.txt 2>&1
grep -i warn $OUT/decode.txt; tail -7 $OUT/decode.txt; stamp decode
