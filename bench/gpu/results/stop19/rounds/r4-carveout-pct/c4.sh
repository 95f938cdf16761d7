#!/usr/bin/env bash
# Stop 19, round 4, call 3: q/k/v + cluster attention carveouts (none, 60%, 86%) against 222b2f9 (host-old);
# timelines of the new build without a carveout (push join, residual read early) and at 60% with clusters of 16.
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
n=0
for b in host-old host-none host-60 host-86; do
  n=$((n+1)); bin=host; env=""
  case $b in host-old) bin=host-old;; host-60) env=VLM_BENCH_SHARED_CARVEOUT=60;; host-86) env=VLM_BENCH_SHARED_CARVEOUT=86;; esac
  env $env timeout 150 ./$bin bench decode --model $M --paths steps-graph,steps-graph-c16 --resolutions $R --repeats 3 > $W/$n-$b.txt 2> $W/$n-$b.err
  echo "$n $b rc $?"; grep -i "warn\|error\|panic" $W/$n-$b.err | head -3; grep "steps" $W/$n-$b.txt; grep digest $W/$n-$b.err | tr '\n' ' '; echo
  stamp $b
done
VLM_BENCH_TIMELINE=$W/tl timeout 120 ./host bench decode --model $M --paths steps-graph --resolutions $R --repeats 1 > $W/tl.txt 2>&1
grep -i "warn\|error" $W/tl.txt | head -3
for f in 1 3 5; do python3 timeline.py $W/tl/timeline-$f.csv | grep -v "^kernel\|Argmax\|sum of"; done
python3 timeline.py --layer 10 $W/tl/timeline-5.csv | head -7
VLM_BENCH_SHARED_CARVEOUT=60 VLM_BENCH_TIMELINE=$W/tl60 timeout 120 ./host bench decode --model $M --paths steps-graph-c16 --resolutions 1920x1080 --repeats 1 > $W/tl60.txt 2>&1
python3 timeline.py $W/tl60/timeline-1.csv | grep -v "^kernel\|Argmax\|sum of"
python3 timeline.py --layer 10 $W/tl60/timeline-1.csv | head -7
rm -f $W/tl/timeline-[024].csv $W/tl60/timeline-0.csv
tar -C $W -cJf $OUT/r4.tar.xz . ; stamp done
