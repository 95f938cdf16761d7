#!/usr/bin/env bash
# Stop 17, round 3, call 3: the pipelined qmv batch loop against the previous loop (one process each),
# steps-graph and mlx paths, 3 resolutions.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
bd() { timeout 250 ./host bench decode --model $M "$@"; }
bd --paths steps-graph,mlx > $OUT/pipe.txt 2>&1; tail -7 $OUT/pipe.txt; stamp pipeline
VLM_BENCH_QMV_NO_PIPELINE=1 bd --paths steps-graph,mlx > $OUT/nopipe.txt 2>&1; tail -7 $OUT/nopipe.txt; stamp no-pipeline
bd --paths steps-graph,mlx > $OUT/pipe2.txt 2>&1; tail -7 $OUT/pipe2.txt; stamp pipeline-again
