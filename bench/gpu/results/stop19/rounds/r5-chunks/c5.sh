#!/usr/bin/env bash
# Stop 19, round 5, call 3: chunked key copies + auto cluster size (host, 2013d18) against 222b2f9 (host-old:
# one copy, pull join, clusters of 8 by default); then the new build's timeline at 224x224 and 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
xz -dc $HOME/stage/host-old.xz > ./host-old && chmod +x ./host-old
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
R=224x224,1024x1024,1920x1080
timeout 200 ./host bench decode --model $M --paths steps-graph,steps-graph-c8,steps-graph-c16,steps-graph-splits --resolutions $R --repeats 3 > $W/1-host.txt 2> $W/1-host.err
echo "1 host rc $?"; grep -i "warn\|error\|panic" $W/1-host.err | head -3; grep "steps" $W/1-host.txt; grep digest $W/1-host.err | tr '\n' ' '; echo
stamp host
timeout 150 ./host-old bench decode --model $M --paths steps-graph,steps-graph-c16 --resolutions $R --repeats 3 > $W/2-host-old.txt 2> $W/2-host-old.err
echo "2 host-old rc $?"; grep "steps" $W/2-host-old.txt; grep digest $W/2-host-old.err | tr '\n' ' '; echo
stamp host-old
VLM_BENCH_TIMELINE=$W/tl timeout 120 ./host bench decode --model $M --paths steps-graph --resolutions 224x224,1920x1080 --repeats 1 > $W/tl.txt 2>&1
grep -i "warn\|error" $W/tl.txt | head -3
for f in 1 3; do python3 timeline.py $W/tl/timeline-$f.csv | grep -v "^kernel\|Argmax\|sum of"; done
python3 timeline.py --layer 10 $W/tl/timeline-3.csv > $W/tl/layer10-1920.txt; head -7 $W/tl/layer10-1920.txt
rm -f $W/tl/timeline-[02].csv
tar -C $W -cJf $OUT/r5.tar.xz . ; rm -rf $W; stamp done
