#!/usr/bin/env bash
# Stop 30, round 4 (host 92aacaf), with round 1's variants: "a" the default. "k": q/k/v as 128 persistent blocks of 16 warps
# (3 row groups each; 62 registers, so a block fits once one of down's two leaves its SM, and each block
# has a whole group's k-tiles in flight before its wait). "g": gate/up the same (128 blocks of 16 warps,
# 12 groups each, 64 registers). "n": the attention at 1920x1080 as 16q2 (values with the keys before the
# wait, no late values). Alternating processes a k g n n g k a (n at 1920x1080 only), bench decode at
# 448x448 / 1024x1024 / 1920x1080; then timelines (--sm, --phases).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
knobs() { case $1 in
  a) ;;
  k) export VLM_BENCH_QMV_SHAPES=4096x6144=16x2 VLM_BENCH_QMV_GRID=4096x6144=128;;
  g) export VLM_BENCH_QMV_SHAPES=4096x24576=16x2 VLM_BENCH_QMV_GRID=4096x24576=128;;
  n) export VLM_BENCH_ATTN_CLUSTER=16q2;;
esac; }
run() { # name variant resolutions repeats [timeline dir]
  unset VLM_BENCH_QMV_SHAPES VLM_BENCH_QMV_GRID VLM_BENCH_ATTN_CLUSTER VLM_BENCH_TIMELINE
  knobs $2
  echo "== $1 ($(env | grep -o 'VLM_BENCH_[A-Z_]*=[^ ]*' | grep -v HOME | tr '\n' ' '))"
  if [ -n "${5:-}" ]; then export VLM_BENCH_TIMELINE=$5; fi
  timeout 120 ./host bench decode --model $M --paths steps-graph --resolutions $3 --repeats $4 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
# Round 4 (a fresh machine): the timelines round 1's time guard skipped: "g" at 448x448, "n" and "a" at
# 1920x1080 (--sm, --phases).
for v in g n a; do
  case $v in g) res=448x448;; *) res=1920x1080;; esac
  run tl-$v $v $res 1 $W/tl-$v
  for f in $W/tl-$v/timeline-*.csv; do
    { echo "== $v $(basename $f)"; python3 timeline.py $f; python3 timeline.py --sm $f; python3 timeline.py --phases $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$v
done
grep "^== \|^Qkv \|^GateUp \|^Down \|^O \|^Cluster\|step" $W/summaries.txt
tar -C $W -cJf $OUT/r4.tar.xz . ; rm -rf $W; stamp done
