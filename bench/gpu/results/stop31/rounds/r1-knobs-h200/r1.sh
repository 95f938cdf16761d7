#!/usr/bin/env bash
# Stop 31, round 1 (first H200 session; host built from cb4cecb). "a": the default. "s": q/k/v as 128
# persistent blocks of 16 warps (3 row groups each) held to one block an SM by VLM_BENCH_QMV_SMEM
# (120,000 bytes: two do not fit in an SM's 228 KB), stop 30's untried follow-up. "n": in one process the
# default path against the attention as 16q2 (keys and values before the wait) and as 16 (one cluster of
# 16 per key/value head, values before the wait). Alternating processes a s n n s a, bench decode at
# 448x448 / 1024x1024 / 1920x1080; then a timeline of "s" at 448x448 (--sm).
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
knobs() { case $1 in
  a|n) ;;
  s) export VLM_BENCH_QMV_SHAPES=4096x6144=16x2 VLM_BENCH_QMV_GRID=4096x6144=128 VLM_BENCH_QMV_SMEM=4096x6144=120000;;
esac; }
run() { # name variant resolutions repeats [timeline dir]
  unset VLM_BENCH_QMV_SHAPES VLM_BENCH_QMV_GRID VLM_BENCH_QMV_SMEM VLM_BENCH_TIMELINE
  knobs $2
  P=steps-graph; [ $2 = n ] && P=steps-graph,steps-graph-c16q2,steps-graph-c16
  echo "== $1 $P ($(env | grep -o 'VLM_BENCH_[A-Z_]*=[^ ]*' | grep -v HOME | tr '\n' ' '))"
  if [ -n "${5:-}" ]; then export VLM_BENCH_TIMELINE=$5; fi
  timeout 150 ./host bench decode --model $M --paths $P --resolutions $3 --repeats $4 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1920x1080
for n in a1 s1 n1 n2 s2 a2; do run $n ${n:0:1} $R 3; done
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in sorted(w.glob("[asn][12].txt")):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m:
            key = f.name[0] if m[2] == "steps-graph" else m[2].replace("steps-graph-", "")
            if f.name[0] == "n" and m[2] == "steps-graph": key = "n-default"
            r.setdefault((m[1], key), []).append(float(m[3]))
mean = lambda v: sum(v) / len(v)
for res in ["448x448", "1024x1024", "1920x1080"]:
    a = r.get((res, "a"), [0]); nd = r.get((res, "n-default"), [0])
    print(res, "a", a, "s", r.get((res, "s")), "%+.2f%%" % (100 * (mean(r.get((res, "s"), [0])) / max(1e-9, mean(a)) - 1)))
    print(res, "  in-process: default", nd, *("%s %s %+.2f%%" % (k, r[(res, k)], 100 * (mean(r[(res, k)]) / max(1e-9, mean(nd)) - 1)) for k in ["c16q2", "c16"] if (res, k) in r))
PY
cat $W/decision.txt
if [ $(( $(date +%s) - T0 )) -lt 470 ]; then
  run tl-s s 448x448 1 $W/tl-s
  for f in $W/tl-s/timeline-*.csv; do
    { echo "== s $(basename $f)"; python3 timeline.py $f; python3 timeline.py --sm $f; } >> $W/summaries.txt 2>&1
  done
  rm -rf $W/tl-s
  grep "^== \|^Qkv \|^GateUp \|^Down\|step" $W/summaries.txt | head -30
else stamp "no time for tl-s"; fi
tar -C $W -cJf $OUT/r1.tar.xz . ; rm -rf $W; stamp done
