#!/usr/bin/env python3
"""For each attention launch: share of its blocks that started before the previous launch's
(q/k/v's) median block end, and the median (start, wait-return, end) minus q/k/v's first wait."""
import csv, collections, statistics, sys
rows = collections.defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    rows[int(r["launch"])].append(r)
ns = sorted(rows)
fr, st, en, cp = [], [], [], []
for a, b in zip(ns, ns[1:]):
    if "Attention" not in rows[b][0]["kernel"]:
        continue
    q = rows[a]
    qend = statistics.median(int(x["end_ns"]) for x in q)
    qwait = min(int(x["wait_ns"]) for x in q if int(x["wait_ns"]))
    s = [int(x["start_ns"]) for x in rows[b]]
    e = [int(x["end_ns"]) for x in rows[b]]
    fr.append(sum(v < qend for v in s) / len(s))
    st.append(statistics.median(s) - qwait)
    en.append(max(e) - qwait)
print(f"{sys.argv[1]}: attention blocks started before q/k/v's median end {100*statistics.mean(fr):.1f}%, "
      f"median start {statistics.mean(st)/1e3:.2f} us after q/k/v's first wait, last end {statistics.mean(en)/1e3:.2f} us")
