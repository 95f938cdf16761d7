#!/usr/bin/env bash
# Stop 30, round 1 (host 92aacaf): "a" the default. "k": q/k/v as 128 persistent blocks of 16 warps
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
R=448x448,1024x1024,1920x1080
for n in a1 k1 g1 n1 n2 g2 k2 a2; do
  if [ ${n:0:1} = n ]; then run $n n 1920x1080 3; else run $n ${n:0:1} $R 3; fi
done
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("[akgn][12].txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
mean = lambda v: sum(v) / len(v)
for res in ["448x448", "1024x1024", "1920x1080"]:
    a = r.get((res, "a"), [0])
    print(res, "a", a, *("%s %s %+.2f%%" % (v, r[(res, v)], 100 * (mean(r[(res, v)]) / max(1e-9, mean(a)) - 1)) for v in "kgn" if (res, v) in r))
PY
cat $W/decision.txt
for v in a k g n; do
  [ $(( $(date +%s) - T0 )) -lt 480 ] || { stamp "no time for tl-$v"; break; }
  case $v in a) res=448x448,1920x1080;; n) res=1920x1080;; *) res=448x448;; esac
  run tl-$v $v $res 1 $W/tl-$v
  for f in $W/tl-$v/timeline-*.csv; do
    { echo "== $v $(basename $f)"; python3 timeline.py $f; python3 timeline.py --sm $f; python3 timeline.py --phases $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$v
done
for v in a k g n; do grep -A60 "== $v timeline-" $W/summaries.txt | grep "^== \|^Qkv \|^GateUp \|^Cluster\|step"; done
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
