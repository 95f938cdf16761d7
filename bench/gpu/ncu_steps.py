#!/usr/bin/env python3
"""GPU time per decoding step from Nsight Compute's per-kernel durations
(`ncu --clock-control none --cache-control none --metrics
gpu__time_duration.sum --csv`): kernels in launch order, steps delimited by
the first layer's attention launch. The sum excludes idle time between
kernels, which Nsight Compute cannot see (it serializes launches).

usage: ncu_steps.py NCU.csv [LAYERS]"""
import collections
import csv
import re
import sys

kernels = []
with open(sys.argv[1]) as f:
    for r in csv.DictReader(l for l in f if l.startswith('"')):
        if r["Metric Name"] != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        scale = {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "nsecond": 1e-3, "ms": 1e3, "msecond": 1e3}[r["Metric Unit"]]
        name = re.sub(r"\(.*", "", r["Kernel Name"])
        name = re.sub(r"_[0-9a-f]{12,}$", "", name)
        name = re.sub(r"^custom_kernel_", "", name)[:80]
        kernels.append((int(r["ID"]), name, v * scale))
kernels.sort()
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 36
attn = [i for i, (_, n, _) in enumerate(kernels) if "attn_decode" in n]
starts = attn[::layers]
if len(starts) < 3:
    sys.exit(f"only {len(attn)} attention launches: not a decoding trace")
windows = list(zip(starts, starts[1:]))
# Decoding steps all launch the same kernels; windows that also hold a
# prefill (the next request's) launch more.
usual = collections.Counter(b - a for a, b in windows).most_common(1)[0][0]
steps = [(a, b) for a, b in windows if b - a == usual][1:]  # not the first (first launches)
per = collections.defaultdict(lambda: [0.0, 0])
totals = []
for a, b in steps:
    totals.append(sum(d for _, _, d in kernels[a:b]))
    for _, n, d in kernels[a:b]:
        per[n][0] += d
        per[n][1] += 1
n = len(steps)
totals.sort()
print(f"steps: {n}; GPU time per step (sum of kernels): median {totals[n // 2]:.0f} us, "
      f"min {totals[0]:.0f}, max {totals[-1]:.0f}; launches per step {sum(c for _, c in per.values()) / n:.0f}")
print("| kernel | launches/step | us/step | us/launch |")
print("|---|---|---|---|")
for k, (d, c) in sorted(per.items(), key=lambda kv: -kv[1][0]):
    print(f"| {k} | {c / n:.0f} | {d / n:.1f} | {d / c:.2f} |")

# The last request's prefill (vision tower included): the kernels between
# the previous decoding and the last one's first step.
gaps = [(a, b) for a, b in zip(attn, attn[1:]) if b - a > 2 * usual]
if gaps:
    a, b = gaps[-1]
    seg = kernels[a + 1:b]
    per = collections.defaultdict(lambda: [0.0, 0])
    for _, name, d in seg:
        per[name][0] += d
        per[name][1] += 1
    print(f"\nlast prefill: {len(seg)} launches, {sum(d for _, _, d in seg) / 1e3:.1f} ms of GPU time")
    print("| kernel | launches | ms | us/launch |")
    print("|---|---|---|---|")
    for k, (d, c) in sorted(per.items(), key=lambda kv: -kv[1][0])[:20]:
        print(f"| {k} | {c} | {d / 1e3:.2f} | {d / c:.1f} |")
