#!/usr/bin/env bash
# Stop 31, round 3 (a second H200 machine: the first went back after round 2): the peers, then (round 4,
# next call, same machine) our sweep again, so that all four of the table share one machine.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
mkdir -p $OUT/cmp
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv
OUT=$OUT/cmp timeout 560 bash device.sh peers
