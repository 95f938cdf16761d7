#!/usr/bin/env python3
"""The comparison of one benchmark session (bench/gpu/device.sh's $OUT) as a table, and
optionally as an exported run for bench/runs/.

Ours: the runs in OUT/results.db, exported by the host itself (`host results export --format
json`). Peers: OUT/mlxvlm_results.jsonl and OUT/hf_results.jsonl (the static-cache + compile
rows). Each cell is the median over the measured requests (warm-ups left out) of a resolution;
"range" gives the decode tok/s of the slowest and fastest of them. Speed = output tokens / request
time, as the vllm-mlx image benchmark defines it; Decode = (n-1) / (last - first token).

usage: export.py OUT [--to bench/runs/DATE-CARD-COMMIT] [--host PATH] [--driver VERSION]
                     [--note TEXT]...
  without --to: prints the tables; with it: writes STEM.md (context and tables) and STEM.json
  (context, our runs as the host exports them, the peers' raw lines).
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys


def our_runs(out, host):
    db = os.path.join(out, "results.db")
    if not os.path.exists(db):
        return []
    ids = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM runs ORDER BY id")]
    runs = []
    for i in ids:
        text = subprocess.run([host, "results", "export", str(i), "--format", "json", "--db", db],
                              check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(text))
    return runs


def peer_lines(out):
    peers = {}
    for fname, name, keep in [("mlxvlm_results.jsonl", "mlx-vlm 4-bit", lambda r: True),
                              ("hf_results.jsonl", "transformers bf16 compile",
                               lambda r: r.get("mode") == "static_cache_compile")]:
        path = os.path.join(out, fname)
        if os.path.exists(path):
            peers[name] = [r for r in map(json.loads, open(path)) if keep(r)]
    return peers


def columns(runs, peers):
    """name -> {resolution: (speed, ttft_ms, decode, decode_min, decode_max, n)}, and the order."""
    cols, order = {}, []

    def add(name, res, cell):
        cols.setdefault(name, {})[res] = cell
        if res not in order:
            order.append(res)

    for run in runs:
        s = run["summary"]
        name = "ours " + s["model_name"].replace("qwen3-vl-8b-", "8B ")
        if s["status"] != "completed":
            name += f" ({s['status']})"
        by = {}
        for r in run["requests"]:
            if not r["warmup"]:
                by.setdefault(r["label"], []).append(r)
        for label, rs in by.items():
            dec = [r["decode_tok_s"] for r in rs if r["decode_tok_s"] is not None]
            total = statistics.median(r["total_ms"] for r in rs) / 1e3
            add(name, label, (rs[0]["output_tokens"] / total, statistics.median(r["ttft_ms"] for r in rs),
                              statistics.median(dec), min(dec), max(dec), len(rs)))
    for name, lines in peers.items():
        for r in lines:
            dec = [x["decode_tok_s"] for x in r.get("runs", [])] or [r["decode_tok_s"]]
            add(name, r["res"], (r["speed_tok_s"], r["ttft_s"] * 1e3, r["decode_tok_s"], min(dec), max(dec),
                                 len(r.get("runs", [])) or 1))
    return cols, order


def tables(runs, peers):
    cols, order = columns(runs, peers)
    names = list(cols)
    out = ["Median Speed (tok/s) / TTFT (ms) / Decode (tok/s) of the measured requests, and the "
           "decode range (slowest to fastest request):", ""]
    out.append("| Resolution | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))
    for res in order:
        cells = []
        for n in names:
            v = cols[n].get(res)
            cells.append("–" if v is None else f"{v[0]:.1f} / {v[1]:.0f} / {v[2]:.1f} ({v[3]:.1f}–{v[4]:.1f})")
        out.append(f"| {res} | " + " | ".join(cells) + " |")
    avg = []
    for n in names:
        vs = list(cols[n].values())
        avg.append(f"{statistics.mean(v[0] for v in vs):.1f} / {statistics.mean(v[1] for v in vs):.0f} / "
                   f"{statistics.mean(v[2] for v in vs):.1f}" if vs else "–")
    out.append("| **average** | " + " | ".join(avg) + " |")
    reps = sorted({v[5] for c in cols.values() for v in c.values()})
    out += ["", f"Measured requests per cell: {', '.join(map(str, reps))}; averages are means of the medians."]
    if runs:
        out += ["", "Our stages (medians over the measured requests, ms):", "",
                "| Model | Resolution | Preprocess | Vision | Prefill | TTFT | Decode tok/s | ITL p50 | Peak GB |",
                "|---|---|---|---|---|---|---|---|---|"]
        for run in runs:
            by = {}
            for r in run["requests"]:
                if not r["warmup"]:
                    by.setdefault(r["label"], []).append(r)
            for label, rs in by.items():
                med = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)
                out.append(f"| {run['summary']['model_name']} | {label} | {med('preprocess_ms'):.1f} | "
                           f"{med('vision_ms'):.1f} | {med('prefill_ms'):.1f} | {med('ttft_ms'):.1f} | "
                           f"{med('decode_tok_s'):.1f} | {med('itl_p50_ms'):.2f} | "
                           f"{med('peak_memory_bytes') / 1e9:.1f} |")
    return "\n".join(out) + "\n"


def context(runs, driver, notes):
    first = runs[0] if runs else None
    ctx = {"notes": notes}
    if first:
        s = first["summary"]
        ctx.update({
            "date": s["started_at"][:10],
            "card": s["device"],
            "host_commit": first["host_commit"],
            "host_version": s["host_version"],
            "mlx_version": first["mlx_version"],
            "backend": s["backend"],
            "machine": first["machine"],
            "protocol": first["params"],
        })
    if driver:
        ctx["driver"] = driver
    return ctx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--to")
    ap.add_argument("--host", default=shutil.which("host") or "host")
    ap.add_argument("--driver")
    ap.add_argument("--note", action="append", default=[])
    a = ap.parse_args()
    runs, peers = our_runs(a.out, a.host), peer_lines(a.out)
    if not runs and not peers:
        sys.exit(f"nothing to export in {a.out}")
    text = tables(runs, peers)
    if not a.to:
        print(text)
        return
    ctx = context(runs, a.driver, a.note)
    with open(a.to + ".json", "w") as f:
        json.dump({**ctx, "runs": runs, "peers": peers}, f, separators=(",", ":"))
        f.write("\n")
    p = ctx.get("protocol", {})
    head = [f"# {ctx.get('card', '?')}, host {ctx.get('host_commit', '?')[:7]}, {ctx.get('date', '?')}", ""]
    head.append(f"- Engine: host {ctx.get('host_version', '?')} ({ctx.get('host_commit', '?')}), MLX "
                f"{ctx.get('mlx_version', '?')} ({ctx.get('backend', '?')})"
                + (f", NVIDIA driver {a.driver}" if a.driver else ""))
    m = ctx.get("machine", {})
    head.append(f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
                f"{(m.get('memory_bytes') or 0) / 2**30:.0f} GiB; {ctx.get('card', '?')}")
    if p:
        head.append(f"- Protocol: the resolution_sweep plugin, resolutions {p.get('resolutions')}, "
                    f"{p.get('warmup')} warm-up + {p.get('repeats')} measured requests each, max_tokens "
                    f"{p.get('max_tokens')} (ignore_eos {p.get('ignore_eos')}), {p.get('pattern')} images, greedy")
    head.append("- Model: synthetic Qwen3-VL-8B (random weights, real shapes), `host model synth --arch "
                "qwen3-vl-8b`; the peers run the same shapes (`bench/gpu/peers/`)")
    head += [f"- {n}" for n in a.note]
    head.append(f"- Raw data: `{os.path.basename(a.to)}.json` (our runs as `host results export` writes "
                "them, the peers' lines)")
    with open(a.to + ".md", "w") as f:
        f.write("\n".join(head) + "\n\n" + text)
    print(f"wrote {a.to}.md and {a.to}.json")


main()
