#!/usr/bin/env bash
# Stop 29, round 1: the o projection's blocks spread evenly over the SMs. "d": the default (256 blocks of
# 8 warps, 66 registers: up to 3 an SM); "p": 128 persistent blocks of 16 warps (two row groups each, 56
# registers: up to 2 an SM); "q": 256 blocks of 16 warps (all their k-tiles before the wait; at most 2 an
# SM). Alternating processes d p q q p d, bench decode at 448x448 / 1024x1024 / 1920x1080; then timelines
# (d at 448x448 and 1920x1080, q and p at 448x448), summarised with timeline.py and timeline.py --sm (how
# each launch's blocks shared the SMs).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name variant(d|p) resolutions repeats [timeline dir]
  echo "== $1"
  unset VLM_BENCH_QMV_SHAPES VLM_BENCH_QMV_GRID VLM_BENCH_TIMELINE
  if [ "$2" = p ]; then export VLM_BENCH_QMV_SHAPES=4096x4096=16x2 VLM_BENCH_QMV_GRID=4096x4096=128; fi
  if [ "$2" = q ]; then export VLM_BENCH_QMV_SHAPES=4096x4096=16x2; fi
  if [ -n "${5:-}" ]; then export VLM_BENCH_TIMELINE=$5; fi
  timeout 150 ./host bench decode --model $M --paths steps-graph --resolutions $3 --repeats $4 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
run d1 d $R 3
run p1 p $R 3
run q1 q $R 3
run q2 q $R 3
run p2 p $R 3
run d2 d $R 3
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("[dpq][12].txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
for res in ["448x448", "1024x1024", "1920x1080"]:
    d = r.get((res, "d"), [0])
    for v, name in [("p", "o 16x2 persistent 128"), ("q", "o 16x2")]:
        p = r.get((res, v), [0])
        print(res, "default", d, name, p, "change %+.2f%%" % (100 * (sum(p) / len(p) / max(1e-9, sum(d) / len(d)) - 1)))
PY
cat $W/decision.txt
for v in d q p; do
  [ $(( $(date +%s) - T0 )) -lt 480 ] || { stamp "no time for tl-$v"; break; }
  if [ $v = d ]; then res=448x448,1920x1080; else res=448x448; fi
  run tl-$v $v $res 1 $W/tl-$v
  for f in $W/tl-$v/timeline-*.csv; do
    { echo "== $v $(basename $f)"; python3 timeline.py $f; python3 timeline.py --sm $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$v
done
for v in d q p; do grep -A36 "== $v timeline-1" $W/summaries.txt | grep "^O \|^Qkv\|^Gate\|^Down\|^Clus\|step\|blocks/SM"; done
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
