#!/usr/bin/env bash
# Stop 27, round 1: the MLP as one persistent launch (mlp4x2) against gate/up and down apart (mlp2),
# alternating processes, bench decode at 448x448 / 1024x1024 / 1280x720 / 1920x1080; then other shapes
# in one process; then timelines of the fused path at 448x448 and 1920x1080.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name paths resolutions
  echo "== $1: $2"
  timeout 200 ./host bench decode --model $M --paths $2 --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
# A short first check: if the fused launch fails its check or hangs, stop here.
run f0 steps-graph-mlp4x2 448x448
grep -q "MLP stays two launches" $W/f0.err && { echo "fused MLP failed its check"; tar -C $W -cJf $OUT/r1.tar.xz .; exit 0; }
R=448x448,1024x1024,1280x720,1920x1080
run a1 steps-graph-mlp2 $R
run f1 steps-graph-mlp4x2 $R
run a2 steps-graph-mlp2 $R
run f2 steps-graph-mlp4x2 $R
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("[af][12].txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1280x720|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
for res in ["448x448", "1024x1024", "1280x720", "1920x1080"]:
    a, q = r.get((res, "a"), [0]), r.get((res, "f"), [0])
    print(res, "mlp2", a, "mlp4x2", q, "change %+.1f%%" % (100 * (sum(q) / len(q) / max(1e-9, sum(a) / len(a)) - 1)))
PY
cat $W/decision.txt
run s1 steps-graph-mlp2x2,steps-graph-mlp8x2,steps-graph-mlp4x4 448x448,1920x1080
for res in 448x448 1920x1080; do
  VLM_BENCH_TIMELINE=$W/tl-$res timeout 120 ./host bench decode --model $M --paths steps-graph-mlp4x2 --resolutions $res --repeats 1 > $W/tl-$res.txt 2>&1
  echo "tl $res rc $?"
  for f in $W/tl-$res/timeline-*.csv; do
    { echo "== $res $(basename $f)"; python3 timeline.py $f; python3 timeline.py --layer 10 $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$res; stamp tl-$res
done
grep -A12 "== .*timeline-1" $W/summaries.txt | head -60
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
