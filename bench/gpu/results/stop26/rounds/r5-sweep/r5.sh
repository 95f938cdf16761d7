#!/usr/bin/env bash
# Stop 26, round 5 (round 4's machine, f119eff): the sweep's protocol at 1024x1024 and 1920x1080, the layout
# forced to 16v (the old automatic one) against the build's automatic one (16vq2 from 1,536 cached positions),
# alternating processes. Run as one command line; the call's 300 s limit stopped the fourth process.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null; cd bench/gpu; export VLM_BENCH_HOME=$HOME/vlm-bench; M=$HOME/models/qwen3-vl-8b-4; mkdir -p $OUT/s
for i in 1 2; do for L in 16v auto; do
  if [ $L = 16v ]; then export VLM_BENCH_ATTN_CLUSTER=16v; else unset VLM_BENCH_ATTN_CLUSTER; fi
  timeout 100 ./host run --plugin resolution_sweep.wasm --model $M --db $OUT/s/$L-$i.db --set resolutions=1024x1024,1920x1080 \
    --set warmup=1 --set repeats=5 --set max_tokens=100 --set ignore_eos=true --set pattern=noise > $OUT/s/$L-$i.txt 2>&1
  echo "$L $i rc $?"; grep "Decode (tok/s)" $OUT/s/$L-$i.txt | cut -d'|' -f2,3,7; grep -i "warn" $OUT/s/$L-$i.txt | head -3
done; done
