#!/usr/bin/env bash
# Stop 29, round 2 (host with the step buffers over 8 bytes): launch shapes that change how the products'
# blocks share the SMs. "a": the default. "b": down compiled for 3 blocks an SM (80 registers), so that a
# q/k/v block fits beside two of down's and starts before down ends. "c": q/k/v compiled for 4 blocks an
# SM (64 registers), the same from q/k/v's side. "q": o in 256 blocks of 16 warps (at most 2 an SM, all
# their k-tiles before the wait). Alternating processes a b c q q c b a, bench decode at 448x448 /
# 1024x1024 / 1920x1080; then timelines at 448x448 (and a at 1920x1080) with timeline.py --sm.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
shape() { case $1 in a) echo "";; b) echo 12288x4096=8x4x3;; c) echo 4096x6144=8x2x4;; q) echo 4096x4096=16x2;; esac; }
run() { # name variant resolutions repeats [timeline dir]
  echo "== $1 ($(shape $2))"
  unset VLM_BENCH_QMV_SHAPES VLM_BENCH_TIMELINE
  [ -n "$(shape $2)" ] && export VLM_BENCH_QMV_SHAPES=$(shape $2)
  if [ -n "${5:-}" ]; then export VLM_BENCH_TIMELINE=$5; fi
  timeout 120 ./host bench decode --model $M --paths steps-graph --resolutions $3 --repeats $4 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
for n in a1 b1 c1 q1 q2 c2 b2 a2; do run $n ${n:0:1} $R 3; done
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("[abcq][12].txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
mean = lambda v: sum(v) / len(v)
for res in ["448x448", "1024x1024", "1920x1080"]:
    a = r.get((res, "a"), [0])
    print(res, "a", a, *("%s %s %+.2f%%" % (v, r.get((res, v), [0]), 100 * (mean(r.get((res, v), [0])) / max(1e-9, mean(a)) - 1)) for v in "bcq"))
PY
cat $W/decision.txt
for v in a b c q; do
  [ $(( $(date +%s) - T0 )) -lt 500 ] || { stamp "no time for tl-$v"; break; }
  if [ $v = a ]; then res=448x448,1920x1080; else res=448x448; fi
  run tl-$v $v $res 1 $W/tl-$v
  for f in $W/tl-$v/timeline-*.csv; do
    { echo "== $v $(basename $f)"; python3 timeline.py $f; python3 timeline.py --sm $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$v
done
for v in a b c q; do grep -A40 "== $v timeline-1" $W/summaries.txt | grep "^O \|^Qkv \|^Down \|^Head \|step\|^Qkv  \|^Down  \|^O  "; done
tar -C $W -cJf $OUT/r2.tar.xz . ; rm -rf $W; stamp done
