#!/usr/bin/env python3
"""Kernel times from an Nsight Compute CSV of `qmv_lab.py --ncu` (`ncu --clock-control none
-k regex:lab_ --metrics gpu__time_duration.sum,... --csv python3 qmv_lab.py --ncu`): the
median launch per kernel configuration, the GB/s its packed weights, scales and biases imply,
and the median of any other metric collected.

usage: ncu_table.py NCU.csv"""
import collections
import csv
import re
import sys

UNIT_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
# The lab's shapes: name -> (K, N).
SHAPES = {"qkv": (4096, 6144), "o": (4096, 4096), "gate_up": (4096, 24576), "down": (12288, 4096),
          "lm_head": (4096, 151936)}

metrics = collections.defaultdict(lambda: collections.defaultdict(list))
with open(sys.argv[1]) as f:
    for r in csv.DictReader(line for line in f if line.startswith('"')):
        m = re.search(r"lab_(\w+?)_(bfloat16|float16)", r["Kernel Name"])
        if m:
            metrics[m.group(1)][r["Metric Name"]].append((r["Metric Unit"], float(r["Metric Value"].replace(",", ""))))


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


for name, m in metrics.items():
    k, n = SHAPES[max((s for s in SHAPES if s in name), key=len)]
    weight_bytes = n * k // 2 + n * k // 64 * 4
    us = median(v * UNIT_US[u] for u, v in m["gpu__time_duration.sum"])
    extra = " ".join(f"{key.split('__')[1][:14]}={median(v for _, v in vals):.0f}"
                     for key, vals in m.items() if key != "gpu__time_duration.sum")
    print(f"{name:24s} {us:8.1f} us {weight_bytes / (us * 1e-6) / 1e9:6.0f} GB/s  {extra}")
