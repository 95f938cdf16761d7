#!/usr/bin/env python3
"""Table of medians from bench/cpu/run.sh's raw results: TTFT and decode tok/s of
our engine and of mlx-vlm (checkpoint dtype, and cast to f32), with ratios.

  compare.py OUT ARCH:QUANT ...
"""
import json
import sqlite3
import statistics
import sys


def ours(db):
    c = sqlite3.connect(db)
    rows = c.execute("SELECT ttft_ms, decode_tok_s, prompt_tokens FROM requests WHERE warmup = 0").fetchall()
    return [{"ttft_ms": t, "decode": d, "prompt_tokens": p} for t, d, p in rows]


def peer(path):
    with open(path) as f:
        return [{"ttft_ms": 1000 * r["ttft_s"], "decode": r["decode_tok_s"], "prompt_tokens": r["prompt_tokens"]}
                for r in map(json.loads, f) if r]


def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else float("nan")


def main():
    out, models = sys.argv[1], sys.argv[2:]
    print("| model | tool | prompt tokens | TTFT ms | decode tok/s | ours: TTFT lower by | ours: decode faster by |")
    print("|---|---|---|---|---|---|---|")
    for m in models:
        arch, quant = m.split(":")
        o = ours(f"{out}/ours-{arch}-{quant}.db")
        ot, od = med(o, "ttft_ms"), med(o, "decode")
        print(f"| {arch} {quant} | ours (f32, OpenBLAS) | {o[0]['prompt_tokens']} | {ot:.1f} | {od:.2f} | | |")
        for setup, label in [("installed", "mlx-vlm as installed (checkpoint dtype, bundled BLAS)"),
                             ("ours", "mlx-vlm, our set-up (f32, OpenBLAS)")]:
            try:
                p = peer(f"{out}/mlxvlm-{arch}-{quant}-{setup}.jsonl")
            except FileNotFoundError:
                p = []
            if not p:
                print(f"| {arch} {quant} | {label} | | did not finish (see notes) | | | |")
                continue
            pt, pd = med(p, "ttft_ms"), med(p, "decode")
            print(f"| {arch} {quant} | {label} | {p[0]['prompt_tokens']} | {pt:.1f} | {pd:.2f} | "
                  f"x{pt / ot:.2f} | x{od / pd:.2f} |")
    print(f"\nMedians of the timed requests (warm-up excluded); {len(o)} per tool and model.")


if __name__ == "__main__":
    main()
