#!/usr/bin/env bash
# Stop 26, round 6: the values copied once the keys are in (k) against after the scores (v), alternating
# processes; bench decode at 448x448 / 1024x1024 with clusters of 16 (c16v, c16k) and at 1920x1080 with two
# clusters a head (c16vq2, c16kq2): each resolution in the automatic layout's shape. Then phases at 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name paths resolutions
  timeout 150 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
}
for i in 1 2; do
  for v in v k; do
    run $v$i-short steps-graph-c16$v 448x448,1024x1024
    run $v$i-long steps-graph-c16${v}q2 1920x1080
    stamp $v$i
  done
done
for p in c16vq2 c16kq2; do
  VLM_BENCH_TIMELINE=$W/tl-$p timeout 100 ./host bench decode --model $M --paths steps-graph-$p --resolutions 1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  echo "tl $p rc $?"
  for f in $W/tl-$p/timeline-*.csv; do
    { echo "== $p $(basename $f)"; python3 timeline.py $f; python3 timeline.py --phases $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$p; stamp tl-$p
done
grep -E "^==|^ClusterAttention|step" $W/summaries.txt
tar -C $W -cJf $OUT/r6.tar.xz . ; rm -rf $W; stamp done
