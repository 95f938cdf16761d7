#!/usr/bin/env bash
# Stop 26, round 1: the cluster attention in two clusters of 16 a key/value head (c16vq2) against one (c16v),
# alternating processes, bench decode at 448x448 / 1024x1024 / 1920x1080; then timelines with phases at
# 1920x1080 for both. Writes $HOME/decision (the layout round 2's comparison runs).
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
R=448x448,1024x1024,1920x1080
run a1 steps-graph-c16v $R
run q1 steps-graph-c16vq2 $R
run a2 steps-graph-c16v $R
run q2 steps-graph-c16vq2 $R
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("[aq][12].txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
for res in ["448x448", "1024x1024", "1920x1080"]:
    a, q = r.get((res, "a"), [0]), r.get((res, "q"), [0])
    print(res, "c16v", a, "c16vq2", q, "change %+.1f%%" % (100 * (sum(q) / len(q) / (sum(a) / len(a)) - 1)))
a, q = r.get(("1920x1080", "a"), [1]), r.get(("1920x1080", "q"), [0])
print("decision", "auto" if sum(q) / len(q) > 1.003 * sum(a) / len(a) else "16v")
PY
cat $W/decision.txt; tail -1 $W/decision.txt | cut -d' ' -f2 > $HOME/decision
for p in c16v c16vq2; do
  VLM_BENCH_TIMELINE=$W/tl-$p timeout 120 ./host bench decode --model $M --paths steps-graph-$p --resolutions 1920x1080 --repeats 1 > $W/tl-$p.txt 2>&1
  echo "tl $p rc $?"
  for f in $W/tl-$p/timeline-*.csv; do
    { echo "== $p $(basename $f)"; python3 timeline.py $f; python3 timeline.py --phases $f; python3 timeline.py --layer 10 $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$p; stamp tl-$p
done
grep -A12 "== .*timeline" $W/summaries.txt | grep -E "==|Attention|Qkv|^O |step|wait>p0|Cluster" | head -40
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
