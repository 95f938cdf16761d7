#!/usr/bin/env bash
# Stop 31, round 4 (round 3's machine): our sweep in the issue's protocol (8B 4-bit and bf16), beside
# round 3's peers; the cache verification ran in round 2 on the first machine.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
OUT=$OUT/cmp timeout 400 bash device.sh ours
