#!/usr/bin/env bash
# Stop 28, round 3 (same machine): the peers, then the table of all four.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
mkdir -p $OUT/cmp && cp $HOME/cmp-ours/results.db $OUT/cmp/ 2>/dev/null
OUT=$OUT/cmp timeout 570 bash device.sh peers
