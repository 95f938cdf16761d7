#!/usr/bin/env bash
# Stop 28, round 1: the argmax inside the LM head's launch (default, "f") against its own launch after
# the head (VLM_BENCH_SEPARATE_ARGMAX=1, "s"), alternating processes f s s f, bench decode at 448x448 /
# 1024x1024 / 1920x1080; then a timeline of each at 448x448. Writes $HOME/decision (fold|separate).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name separate(0|1) resolutions [timeline dir]
  echo "== $1: separate argmax $2"
  if [ "$2" = 1 ]; then export VLM_BENCH_SEPARATE_ARGMAX=1; else unset VLM_BENCH_SEPARATE_ARGMAX; fi
  if [ -n "${4:-}" ]; then export VLM_BENCH_TIMELINE=$4; else unset VLM_BENCH_TIMELINE; fi
  timeout 200 ./host bench decode --model $M --paths steps-graph --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
run f1 0 $R
run s1 1 $R
run s2 1 $R
run f2 0 $R
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("[fs][12].txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
changes = []
for res in ["448x448", "1024x1024", "1920x1080"]:
    s, f = r.get((res, "s"), [0]), r.get((res, "f"), [0])
    c = 100 * (sum(f) / len(f) / max(1e-9, sum(s) / len(s)) - 1); changes.append(c)
    print(res, "separate", s, "fold", f, "change %+.2f%%" % c)
print("decision", "fold" if sum(changes) / len(changes) > -0.2 else "separate")
PY
cat $W/decision.txt
awk '/^decision/ {print $2}' $W/decision.txt > $HOME/decision
for p in f s; do
  run tl-$p $([ $p = s ] && echo 1 || echo 0) 448x448 $W/tl-$p
  for f in $W/tl-$p/timeline-*.csv; do
    { echo "== $p $(basename $f)"; python3 timeline.py $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-$p
done
grep -A14 "== .*timeline-1" $W/summaries.txt | head -40
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
