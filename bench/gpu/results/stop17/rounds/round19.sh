#!/usr/bin/env bash
# Stop 17, round 2, call 3: GPU tests; bench decode (graph default) at 3 resolutions; the same with
# the qmv L2 prefetch and with U=4 (one process each); an nsys timeline of the graph path at 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc ../../.dev/r18/mlx-tests.xz > ./mlx-tests && chmod +x ./mlx-tests
timeout 60 ./mlx-tests cuda > $OUT/gpu-tests.txt 2>&1; grep "test result\|FAIL\|panicked" $OUT/gpu-tests.txt
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
which nsys ncu; ls /usr/local/cuda/bin 2>/dev/null | grep -i nsys
bd() { timeout 300 ./host bench decode --model $M "$@"; }
VLM_BENCH_PROFILE_DECODE=1 bd --paths mlx,steps-graph,steps --repeats 3 > $OUT/decode.txt 2> $OUT/decode.err
cat $OUT/decode.txt; grep -iv "decode profile" $OUT/decode.err | head; grep "decode profile" $OUT/decode.err | tail -9
stamp decode
VLM_BENCH_QMV_PREFETCH=1 bd --paths steps-graph,steps --resolutions 224x224,1920x1080 > $OUT/prefetch.txt 2>&1
tail -6 $OUT/prefetch.txt; stamp prefetch
VLM_BENCH_QMV_U=4 bd --paths steps-graph,steps --resolutions 224x224,1920x1080 > $OUT/u4.txt 2>&1
tail -6 $OUT/u4.txt; stamp u4
NSYS=$(which nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
  timeout 200 $NSYS profile -o /tmp/prof --trace=cuda --cuda-graph-trace=node --force-overwrite true ./host bench decode --model $M --paths steps-graph --resolutions 1920x1080 --repeats 1 --tokens 40 > /tmp/nsys.log 2>&1
  tail -3 /tmp/nsys.log
  $NSYS export --type sqlite -o /tmp/prof.sqlite --force-overwrite true /tmp/prof.nsys-rep > /dev/null 2>&1
  python3 ../../.dev/r18/nsys_summary.py /tmp/prof.sqlite > $OUT/nsys.txt 2>&1; cat $OUT/nsys.txt
fi
stamp nsys
