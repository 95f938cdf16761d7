#!/usr/bin/env python3
"""One comparison table from a device session's raw results (bench/gpu/device.sh).

Ours: the request rows in results.db (one run per model), medians over the measured
requests of each resolution. Peers: mlxvlm_results.jsonl and hf_results.jsonl (the
static-cache + compile rows), medians as their scripts compute them.
Speed = output tokens / request time (the seed's definition); Decode = (n-1) / (last - first token).
"""
import json
import os
import sqlite3
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "out"
cols = {}  # name -> {res: (speed, ttft_ms, decode)}
order = []


def add(name, res, speed, ttft_ms, decode):
    if name not in cols:
        cols[name] = {}
    cols[name][res] = (speed, ttft_ms, decode)
    if res not in order:
        order.append(res)


db = os.path.join(out, "results.db")
if os.path.exists(db):
    con = sqlite3.connect(db)
    runs = con.execute("SELECT id, model_name, status FROM runs ORDER BY id").fetchall()
    for run_id, model, status in runs:
        name = f"ours {model.replace('qwen3-vl-8b-', '8B ')}" + ("" if status == "completed" else f" ({status})")
        rows = con.execute(
            "SELECT label, total_ms, ttft_ms, decode_tok_s, output_tokens FROM requests "
            "WHERE run_id = ? AND warmup = 0 ORDER BY seq", (run_id,)).fetchall()
        by = {}
        for label, total, ttft, dec, toks in rows:
            by.setdefault(label, []).append((total, ttft, dec, toks))
        for label, rs in by.items():
            total = statistics.median(r[0] for r in rs) / 1e3
            add(name, label, rs[0][3] / total, statistics.median(r[1] for r in rs),
                statistics.median(r[2] for r in rs if r[2] is not None))

for fname, name, keep in [("mlxvlm_results.jsonl", "mlx-vlm 4-bit", lambda r: True),
                          ("hf_results.jsonl", "HF bf16 compile", lambda r: r.get("mode") == "static_cache_compile")]:
    path = os.path.join(out, fname)
    if not os.path.exists(path):
        continue
    for line in open(path):
        r = json.loads(line)
        if keep(r):
            add(name, r["res"], r["speed_tok_s"], r["ttft_s"] * 1e3, r["decode_tok_s"])

# Our stage breakdown (medians, ms): where the time of a request goes.
if os.path.exists(db):
    print("Our stages (medians over measured requests, ms)\n")
    print("| Model | Resolution | Preprocess | Vision | Prefill | TTFT | Decode tok/s | ITL p50 | Peak GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run_id, model, status in runs:
        rows = con.execute(
            "SELECT label, preprocess_ms, vision_ms, prefill_ms, ttft_ms, decode_tok_s, itl_p50_ms, peak_memory_bytes "
            "FROM requests WHERE run_id = ? AND warmup = 0 ORDER BY seq", (run_id,)).fetchall()
        by = {}
        for r in rows:
            by.setdefault(r[0], []).append(r[1:])
        for label, rs in by.items():
            med = [statistics.median(x[i] for x in rs if x[i] is not None) for i in range(7)]
            print(f"| {model} | {label} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.1f} | {med[4]:.1f} "
                  f"| {med[5]:.2f} | {med[6] / 1e9:.1f} |")
    print()

names = list(cols)
print("| Resolution | " + " | ".join(f"{n}: Speed / TTFT ms / Decode" for n in names) + " |")
print("|---|" + "---|" * len(names))
for res in order:
    cells = []
    for n in names:
        v = cols[n].get(res)
        cells.append("–" if v is None else f"{v[0]:.1f} / {v[1]:.0f} / {v[2]:.1f}")
    print(f"| {res} | " + " | ".join(cells) + " |")
avg = []
for n in names:
    vs = list(cols[n].values())
    avg.append(f"{statistics.mean(v[0] for v in vs):.1f} / {statistics.mean(v[1] for v in vs):.0f} / "
               f"{statistics.mean(v[2] for v in vs):.1f}" if vs else "–")
print("| **average** | " + " | ".join(avg) + " |")
