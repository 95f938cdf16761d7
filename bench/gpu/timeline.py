#!/usr/bin/env python3
"""Summarises step timelines written by the engine with VLM_BENCH_TIMELINE=DIR
(host/engine/src/kernels/timeline.cuh): where a decoding step's time goes while
its launches overlap under programmatic dependent launch.

usage: timeline.py FILE.csv [FILE.csv ...]
       timeline.py --layer N FILE.csv   (one layer's launches, times from the previous down's first start)
       timeline.py --phases FILE.csv    (the phases kernels marked: median us between marks, per kernel)
       timeline.py --sm FILE.csv [...]  (per kernel: how its blocks shared the SMs, and when each share ended)

Per launch n, from its blocks' %globaltimer stamps: end[n] (its last block's
end), ready[n] (its first block's return from the wait for launch n - 1, or its
first start if it does not wait). Per kernel, averaged over launches and files:
  share   end[n] - end[n-1]: what the launch adds to the step
  gap     ready[n] - end[n-1]: from the previous launch's end to this one's
          first block running past its wait (the hand-over)
  run     end[n] - ready[n]
  early   blocks that started before end[n-1] (waited on an SM), in %
  block   median end - max(start, wait) of one block
"""
import collections
import csv
import statistics
import sys


def launches(path):
    rows = collections.defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            rows[int(r["launch"])].append(r)
    out = []
    for n in sorted(rows):
        bs = rows[n]
        start = [int(b["start_ns"]) for b in bs]
        wait = [int(b["wait_ns"]) for b in bs]
        end = [int(b["end_ns"]) for b in bs]
        if min(start) == 0 or min(end) == 0:
            sys.exit(f"{path}: launch {n} has blocks that did not record (was the step complete?)")
        waited = [w for w in wait if w]
        ready = min(waited) if waited else min(start)
        block = statistics.median(e - max(s, w) for s, w, e in zip(start, wait, end))
        # Phases a kernel marked (p0..p3; absent or 0: none), with its wait and end around them.
        # (Every block or none: stale marks of another launch at these slots do not count.)
        phases = [[int(b[f"p{i}"]) for i in range(4)] for b in bs if int(b.get("p0") or 0)]
        marks = [[max(w, s)] + p + [e] for (s, w, e, p) in zip(start, wait, end, phases)] \
            if len(phases) == len(bs) else []
        out.append(dict(kernel=bs[0]["kernel"], layer=int(bs[0]["layer"]), blocks=len(bs), start=min(start),
                        ready=ready, end=max(end), starts=start, waits=waited or start, ends=end, block=block,
                        marks=marks, sms=[int(b["sm"]) for b in bs]))
    return out


def main(paths):
    acc = collections.defaultdict(lambda: collections.defaultdict(list))
    order = []
    for p in paths:
        ls = launches(p)
        step = ls[-1]["end"] - ls[0]["start"]
        print(f"{p}: {len(ls)} launches, {sum(l['blocks'] for l in ls)} blocks, step {step / 1e3:.1f} us "
              f"(first start to last end)")
        for prev, cur in zip(ls, ls[1:]):
            k = cur["kernel"]
            if k not in order:
                order.append(k)
            a = acc[k]
            a["share"].append(cur["end"] - prev["end"])
            a["gap"].append(cur["ready"] - prev["end"])
            a["run"].append(cur["end"] - cur["ready"])
            a["early"].append(100.0 * sum(s < prev["end"] for s in cur["starts"]) / cur["blocks"])
            a["block"].append(cur["block"])
            a["blocks"].append(cur["blocks"])
    print(f"\n{'kernel':<16}{'launches':>9}{'blocks':>8}{'share us':>10}{'sum us':>9}{'gap us':>8}{'run us':>8}"
          f"{'early %':>9}{'block us':>10}")
    total = 0.0
    for k in order:
        a = acc[k]
        n = len(a["share"]) / len(paths)
        mean = lambda v: sum(v) / len(v) / 1e3
        s = mean(a["share"])
        total += s * n
        print(f"{k:<16}{n:>9.0f}{statistics.mean(a['blocks']):>8.0f}{s:>10.2f}{s * n:>9.1f}{mean(a['gap']):>8.2f}"
              f"{mean(a['run']):>8.2f}{sum(a['early']) / len(a['early']):>9.1f}{mean(a['block']):>10.2f}")
    print(f"{'sum of shares':<16}{'':>9}{'':>8}{'':>10}{total:>9.1f}")


def layer_view(n, path):
    """Each launch of layer n (and its neighbours): first and last block start, wait return, end, in us."""
    ls = launches(path)
    mine = [i for i, l in enumerate(ls) if l["layer"] == n]
    if not mine:
        sys.exit(f"{path}: no layer {n}")
    t0 = ls[mine[0] - 1]["start"]
    span = lambda v: f"{(min(v) - t0) / 1e3:7.2f}-{(max(v) - t0) / 1e3:<7.2f}"
    print(f"{'kernel':<16}{'blocks':>7}{'start':>16}{'waited':>16}{'end':>16}{'block':>8}")
    for l in ls[mine[0] - 1:mine[-1] + 2]:
        print(f"{l['kernel']:<16}{l['blocks']:>7}{span(l['starts']):>16}{span(l['waits']):>16}{span(l['ends']):>16}"
              f"{l['block'] / 1e3:>8.2f}")


def phases_view(path):
    """Per kernel that marked phases: the median block's time from its wait (or start) to p0, p0 to p1, ...,
    p3 to its end, averaged over its launches; and when its blocks started against the previous launch."""
    ls = launches(path)
    acc = collections.defaultdict(list)
    for prev, l in zip(ls, ls[1:]):
        if not l["marks"]:
            continue
        steps = [statistics.median(m[i + 1] - m[i] for m in l["marks"]) for i in range(5)]
        first_wait = min(prev["waits"])
        acc[l["kernel"]].append(steps + [statistics.median(l["starts"]) - first_wait, l["end"] - first_wait])
    if not acc:
        sys.exit(f"{path}: no kernel marked phases")
    print(f"{'kernel (us)':<22}{'wait>p0':>9}{'p0>p1':>8}{'p1>p2':>8}{'p2>p3':>8}{'p3>end':>8}"
          f"{'start*':>8}{'end*':>8}   (* from the previous launch's first wait)")
    for k, rows in acc.items():
        m = [sum(c) / len(c) / 1e3 for c in zip(*rows)]
        print(f"{k:<22}" + "".join(f"{v:>8.2f}" if i else f"{v:>9.2f}" for i, v in enumerate(m)))


def sm_view(paths):
    """Per kernel and number c of its blocks that ran on one SM: SMs with c blocks per launch, and their
    blocks' ends after the launch's ready (median, 90th percentile, last), averaged over launches and files;
    then the launch's median and last block end. Shows whether a launch's tail comes from SMs holding more
    of its blocks than others (a placement that early launches leave uneven)."""
    acc = collections.defaultdict(lambda: collections.defaultdict(list))
    whole = collections.defaultdict(list)
    order = []
    for p in paths:
        for l in launches(p):
            k = l["kernel"]
            if k not in order:
                order.append(k)
            per_sm = collections.Counter(l["sms"])
            ends = collections.defaultdict(list)
            for sm, e in zip(l["sms"], l["ends"]):
                ends[per_sm[sm]].append((e - l["ready"]) / 1e3)
            for c, v in ends.items():
                v.sort()
                acc[k][c].append((len(v) / c, statistics.median(v), v[int(0.9 * (len(v) - 1))], v[-1]))
            all_ends = sorted((e - l["ready"]) / 1e3 for e in l["ends"])
            whole[k].append((statistics.median(all_ends), all_ends[-1]))
    print(f"{'kernel':<24}{'blocks/SM':>10}{'SMs':>6}{'end p50':>9}{'p90':>8}{'last':>8}   (us after the ready)")
    for k in order:
        for c in sorted(acc[k]):
            m = [sum(x) / len(x) for x in zip(*acc[k][c])]
            print(f"{k:<24}{c:>10}{m[0]:>6.0f}{m[1]:>9.2f}{m[2]:>8.2f}{m[3]:>8.2f}")
        m = [sum(x) / len(x) for x in zip(*whole[k])]
        print(f"{k:<24}{'all':>10}{'':>6}{m[0]:>9.2f}{'':>8}{m[1]:>8.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--layer":
        if len(sys.argv) != 4:
            sys.exit(__doc__)
        layer_view(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "--sm":
        sm_view(sys.argv[2:])
    elif sys.argv[1] == "--phases":
        for p in sys.argv[2:]:
            phases_view(p)
    else:
        main(sys.argv[1:])
