#!/usr/bin/env bash
# Stop 27, round 2: how the products load their weights (VLM_BENCH_QMV_LOAD): 0 plain against 3
# (ld.global.nc.L1::no_allocate.L2::256B) in alternating processes, then 4 (__ldg) and 1 (nc, no L1
# line) once each; bench decode at 448x448 / 1024x1024 / 1280x720 / 1920x1080, default path.
. $HOME/mlx/env.sh && bash bench/gpu/setup.sh >/dev/null || exit 1
cd bench/gpu
export VLM_BENCH_HOME=$HOME/vlm-bench
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
M=$HOME/models/qwen3-vl-8b-4
[ -f $M/config.json ] || ./host model synth --arch qwen3-vl-8b --quant 4 --out $M > /dev/null 2>&1
stamp synth
W=$OUT/w; mkdir -p $W
run() { # name load resolutions
  echo "== $1: load $2"
  VLM_BENCH_QMV_LOAD=$2 timeout 200 ./host bench decode --model $M --paths steps-graph --resolutions $3 --repeats 3 > $W/$1.txt 2> $W/$1.err
  echo "$1 rc $?"; grep -i "warn\|error\|panic" $W/$1.err | head -5; grep "steps" $W/$1.txt | cut -d'|' -f2-4,7
  grep -o 'digest [0-9a-f]*' $W/$1.err | tr '\n' ' '; echo
  stamp $1
}
R=448x448,1024x1024,1280x720,1920x1080
run p1 0 $R
run l1 3 $R
run p2 0 $R
run l2 3 $R
run g1 4 $R
run n1 1 $R
python3 - $W > $W/decision.txt <<'PY'
import sys, re, pathlib
w = pathlib.Path(sys.argv[1]); r = {}
for f in w.glob("*.txt"):
    for line in f.read_text().splitlines():
        m = re.match(r"\| (1920x1080|1280x720|1024x1024|448x448) \| (\S+) \| ([\d.]+)", line)
        if m: r.setdefault((m[1], f.name[0]), []).append(float(m[3]))
for res in ["448x448", "1024x1024", "1280x720", "1920x1080"]:
    a = r.get((res, "p"), [1]); base = sum(a) / len(a)
    print(res, "plain", a, " ".join("%s %s %+.1f%%" % (k, r.get((res, k), [0]), 100 * (sum(r.get((res, k), [0])) / len(r.get((res, k), [0])) / base - 1)) for k in "lgn"))
PY
cat $W/decision.txt
tar -C $W -cJf $OUT/r2.tar.xz . ; rm -rf $W; stamp done
