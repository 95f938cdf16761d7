#!/usr/bin/env python3
"""Table of medians from bench/cpu/run.sh's raw results: TTFT and decode tok/s of
our engine and of mlx-vlm (checkpoint dtype, and cast to f32), with ratios; with
--to, also an exported run for bench/runs/ (STEM.md: context and the table;
STEM.json: our runs as `host results export` writes them, mlx-vlm's lines).

  compare.py OUT ARCH:QUANT ... [--to bench/runs/DATE-cpu-COMMIT] [--host PATH]
"""
import argparse
import contextlib
import io
import json
import os
import sqlite3
import statistics
import subprocess
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


def table(out, models):
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
                print(f"| {arch} {quant} | {label} | | did not finish | | | |")
                continue
            pt, pd = med(p, "ttft_ms"), med(p, "decode")
            print(f"| {arch} {quant} | {label} | {p[0]['prompt_tokens']} | {pt:.1f} | {pd:.2f} | "
                  f"x{pt / ot:.2f} | x{od / pd:.2f} |")
    print(f"\nMedians of the timed requests (warm-up excluded); {len(o)} per tool and model.")


def export(out, models, stem, host):
    runs, peers = {}, {}
    # Every run of ours in OUT (the table's, and any other kept beside them).
    for db in sorted(f for f in os.listdir(out) if f.startswith("ours-") and f.endswith(".db")):
        text = subprocess.run([host, "results", "export", "1", "--format", "json", "--db", f"{out}/{db}"],
                              check=True, capture_output=True, text=True).stdout
        runs[db[len("ours-"):-len(".db")]] = json.loads(text)
    for m in models:
        arch, quant = m.split(":")
        for setup in ["installed", "ours"]:
            path = f"{out}/mlxvlm-{arch}-{quant}-{setup}.jsonl"
            if os.path.exists(path):
                peers[f"{m} {setup}"] = [json.loads(l) for l in open(path) if l.strip()]
    first = next(iter(runs.values()))
    s, machine, params = first["summary"], first["machine"], first["params"]
    versions = open(f"{out}/versions.txt").read().strip() if os.path.exists(f"{out}/versions.txt") else "?"
    with open(stem + ".json", "w") as f:
        json.dump({"date": s["started_at"][:10], "host_commit": first["host_commit"], "peer_versions": versions,
                   "machine": machine, "protocol": params, "runs": runs, "mlx_vlm": peers}, f, separators=(",", ":"))
        f.write("\n")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        table(out, models)
    last = runs.get(models[-1].replace(":", "-"), first)
    head = [f"# CPU ({machine.get('cpu', '?')}, {machine.get('cores', '?')} cores), host {last['host_commit'][:7]}, "
            f"{s['started_at'][:10]}", "",
            f"- Engine: host {s['host_version']}, MLX {first['mlx_version']} (cpu), "
            f"BLAS {machine.get('blas', '?')}; peer: {versions}",
            f"- Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
            f"{(machine.get('memory_bytes') or 0) / 2**30:.0f} GiB, no GPU",
            f"- Protocol: one {params.get('resolutions')} {params.get('pattern')} image, \"Describe this image.\", "
            f"{params.get('max_tokens')} forced greedy tokens, {params.get('warmup')} warm-up + {params.get('repeats')} "
            "timed requests per tool and model; both tools load the same synthetic model directory "
            "(`host model synth --layout mlx`); `bench/cpu/run.sh`",
            "- Our runs and the host commit each ran: " + ", ".join(f"{m} {r['host_commit'][:7]}" for m, r in runs.items()),
            f"- Raw data: `{os.path.basename(stem)}.json`", ""]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(head) + "\n" + buf.getvalue())
    print(f"wrote {stem}.md and {stem}.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--to")
    ap.add_argument("--host", default="target/release/host")
    a = ap.parse_args()
    if a.to:
        export(a.out, a.models, a.to, a.host)
    else:
        table(a.out, a.models)


if __name__ == "__main__":
    main()
