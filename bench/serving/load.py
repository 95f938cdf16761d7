#!/usr/bin/env python3
"""Closed-loop load generator for OpenAI-compatible chat-completions servers.

For each concurrency C, C client threads each send --requests-per-client streamed
requests back to back (a new request as soon as the previous one finished); before
each measured phase, --warmup requests are sent one after another and not measured.
Every request carries its own uniform-noise RGB PNG (seeded: the same arguments give
the same images), so an image cache never answers for another request.

Measured per request: time to first token (first streamed chunk with non-empty
`choices[0].delta.content`), the gaps between successive content chunks (inter-token
latency; a chunk carrying several tokens counts as one gap, nothing is spread over
the tokens), end-to-end latency and the server's `usage` (completion and prompt
tokens; the number of content chunks when the server sends no usage).

Per phase: requests ok/failed, wall time, aggregate output tok/s (completion tokens
of the phase over its wall time), TTFT p50/p99, ITL p50/p99 (all gaps pooled),
end-to-end p50, mean output tokens per request. Percentiles interpolate linearly.

Python 3.10+ standard library only.

Example:
  python3 bench/serving/load.py --url http://127.0.0.1:8370/v1 --model NAME \\
      --concurrency 1,4,16,64 --requests-per-client 4 --image 448x448 --max-tokens 100 \\
      --prompt "Describe this image." --out results.json \\
      --metrics-url http://127.0.0.1:8370/metrics

Exit status: 0; 2 on bad arguments; 1 when every request of some phase failed.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import platform
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
import zlib

# ---------------------------------------------------------------- images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def noise_png(width: int, height: int, seed: str) -> bytes:
    """An 8-bit RGB PNG of uniform noise; the same seed gives the same bytes."""
    rng = random.Random(seed)
    row = width * 3
    pixels = rng.randbytes(row * height)
    # filter type 0 (None) before every row
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # noise does not compress: the fastest level keeps the file valid and cheap
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw, 1)) + _png_chunk(b"IEND", b""))


def request_body(args, seed: str) -> bytes:
    if args.image is None:
        content = args.prompt
    else:
        w, h = args.image
        png = noise_png(w, h, seed)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        content = [{"type": "text", "text": args.prompt},
                   {"type": "image_url", "image_url": {"url": uri}}]
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if not args.no_ignore_eos:
        body["ignore_eos"] = True
    if args.extra_body:
        body.update(args.extra_body)
    return json.dumps(body).encode("utf-8")


def image_seed(args, phase: str, client: int, k: int) -> str:
    return f"{args.seed}:{phase}:{client}:{k}"


# ---------------------------------------------------------------- one request


class Target:
    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.base = u.path.rstrip("/")

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)


def send(target: Target, args, body: bytes) -> dict:
    """One streamed chat completion. Never raises: failures come back as records."""
    rec = {"ok": False, "status": None, "error": None, "start": None, "ttft_s": None,
           "chunk_times_s": [], "end_s": None, "completion_tokens": None, "prompt_tokens": None,
           "content_chunks": 0, "usage_reported": False, "finish_reason": None,
           "request_bytes": len(body)}
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    conn = None
    t0 = time.perf_counter()
    rec["start"] = t0
    try:
        conn = target.connect(args.timeout)
        conn.request("POST", target.base + "/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        rec["status"] = resp.status
        if resp.status != 200:
            text = resp.read().decode("utf-8", "replace")
            rec["error"] = f"HTTP {resp.status}: {text[:300]}"
            rec["end_s"] = time.perf_counter() - t0
            return rec
        done = False
        usage = None
        while True:
            line = resp.readline()
            if not line:
                break
            now = time.perf_counter()
            line = line.strip()
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, `event:` fields
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            try:
                msg = json.loads(data)
            except ValueError:
                rec["error"] = f"unparsable event: {data[:300]!r}"
                continue
            if isinstance(msg, dict) and msg.get("error"):
                rec["error"] = f"error event: {json.dumps(msg['error'])[:300]}"
                continue
            choices = msg.get("choices") or []
            if choices:
                c0 = choices[0] or {}
                delta = c0.get("delta") or {}
                if delta.get("content"):
                    rec["chunk_times_s"].append(now - t0)
                if c0.get("finish_reason"):
                    rec["finish_reason"] = c0["finish_reason"]
            if msg.get("usage"):
                usage = msg["usage"]
        rec["end_s"] = time.perf_counter() - t0
        times = rec["chunk_times_s"]
        rec["content_chunks"] = len(times)
        rec["ttft_s"] = times[0] if times else None
        if usage:
            rec["usage_reported"] = True
            rec["completion_tokens"] = usage.get("completion_tokens")
            rec["prompt_tokens"] = usage.get("prompt_tokens")
        if rec["completion_tokens"] is None:
            rec["completion_tokens"] = len(times)
        if rec["error"] is None and not done and usage is None:
            rec["error"] = "stream ended without [DONE]"
        rec["ok"] = rec["error"] is None
    except (OSError, http.client.HTTPException, ValueError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"[:300]
        rec["end_s"] = time.perf_counter() - t0
    except Exception as e:  # never take the run down
        rec["error"] = f"{type(e).__name__}: {e}"[:300]
        rec["end_s"] = time.perf_counter() - t0
    finally:
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
    return rec


# ---------------------------------------------------------------- statistics


def percentile(values, p: float):
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def ms(x):
    return None if x is None else x * 1000.0


def summarize(concurrency: int, records: list, wall_s: float) -> dict:
    ok = [r for r in records if r["ok"]]
    ttft = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    gaps = []
    for r in ok:
        t = r["chunk_times_s"]
        gaps.extend(b - a for a, b in zip(t, t[1:]))
    e2e = [r["end_s"] for r in ok]
    out_tokens = sum(r["completion_tokens"] or 0 for r in ok)
    prompt = [r["prompt_tokens"] for r in ok if r["prompt_tokens"] is not None]
    errors = {}
    for r in records:
        if not r["ok"]:
            key = (r["error"] or "unknown")[:120]
            errors[key] = errors.get(key, 0) + 1
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "wall_s": wall_s,
        "output_tok_s": out_tokens / wall_s if wall_s > 0 else None,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else None,
        "completion_tokens_total": out_tokens,
        "ttft_ms_p50": ms(percentile(ttft, 50)),
        "ttft_ms_p99": ms(percentile(ttft, 99)),
        "itl_ms_p50": ms(percentile(gaps, 50)),
        "itl_ms_p99": ms(percentile(gaps, 99)),
        "itl_gaps": len(gaps),
        "e2e_ms_p50": ms(percentile(e2e, 50)),
        "e2e_ms_p99": ms(percentile(e2e, 99)),
        "mean_output_tokens": out_tokens / len(ok) if ok else None,
        "mean_content_chunks": sum(r["content_chunks"] for r in ok) / len(ok) if ok else None,
        "mean_prompt_tokens": sum(prompt) / len(prompt) if prompt else None,
        "usage_reported": sum(1 for r in ok if r["usage_reported"]),
        "errors": errors,
    }


# ---------------------------------------------------------------- metrics


def scrape(url: str | None, timeout: float) -> dict:
    if not url:
        return {"ok": False, "error": "no --metrics-url"}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
        return {"ok": True, "text": text, "samples": parse_metrics(text)}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}


def parse_metrics(text: str) -> dict:
    """Prometheus text exposition: `name{labels} value` -> {"name{labels}": value}."""
    samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def metrics_record(before: dict, after: dict) -> dict:
    rec = {"before_ok": before["ok"], "after_ok": after["ok"]}
    for side, s in (("before", before), ("after", after)):
        if not s["ok"]:
            rec[f"{side}_error"] = s["error"]
    if before["ok"]:
        rec["before_batch_size_peak"] = before["samples"].get("vlm_batch_size_peak")
        rec["before_lines"] = [ln for ln in before["text"].splitlines()
                               if ln.startswith("vlm_batch_size_peak")]
    if after["ok"]:
        rec["after_batch_size_peak"] = after["samples"].get("vlm_batch_size_peak")
        rec["after_text"] = after["text"]
    if before["ok"] and after["ok"]:
        # what moved during the phase (counters: the phase's share; gauges: the change)
        rec["delta"] = {k: v - before["samples"].get(k, 0.0) for k, v in after["samples"].items()
                        if v != before["samples"].get(k, 0.0)}
    return rec


# ---------------------------------------------------------------- phases


def run_phase(target: Target, args, c: int) -> tuple[list, float, bool]:
    n = args.requests_per_client
    phase = f"c{c}"
    per_request_bytes = estimate_body_bytes(args)
    prebuild = per_request_bytes * c * n <= args.prebuild_mb * 1024 * 1024
    bodies = None
    if prebuild:
        bodies = [[request_body(args, image_seed(args, phase, i, k)) for k in range(n)]
                  for i in range(c)]
    records = [[None] * n for _ in range(c)]
    barrier = threading.Barrier(c + 1)

    def client(i: int):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        for k in range(n):
            body = bodies[i][k] if bodies else request_body(args, image_seed(args, phase, i, k))
            rec = send(target, args, body)
            rec["client"], rec["index"] = i, k
            records[i][k] = rec

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(c)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = []
    for row in records:
        for r in row:
            if r is None:  # a thread that died before recording (should not happen)
                r = {"ok": False, "error": "client thread ended early", "start": t0,
                     "end_s": None, "chunk_times_s": [], "content_chunks": 0,
                     "completion_tokens": None, "prompt_tokens": None, "ttft_s": None,
                     "status": None, "usage_reported": False}
            r["start_s"] = r.pop("start") - t0  # relative to the phase's start
            flat.append(r)
    return flat, wall, prebuild


def estimate_body_bytes(args) -> int:
    if args.image is None:
        return 1024 + len(args.prompt)
    w, h = args.image
    return int((w * h * 3 + h) * 4 / 3) + 1024 + len(args.prompt)


def warmup(target: Target, args, c: int) -> list:
    out = []
    for k in range(args.warmup):
        rec = send(target, args, request_body(args, image_seed(args, f"warmup-c{c}", 0, k)))
        out.append({"ok": rec["ok"], "status": rec["status"], "error": rec["error"],
                    "end_s": rec["end_s"], "completion_tokens": rec["completion_tokens"]})
    return out


# ---------------------------------------------------------------- output


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def table(label: str, summaries: list) -> str:
    head = ("| label | C | ok | failed | wall s | out tok/s | TTFT p50 ms | TTFT p99 ms "
            "| ITL p50 ms | ITL p99 ms | E2E p50 ms | out tok/req | batch peak |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summaries:
        peak = s.get("metrics", {}).get("after_batch_size_peak")
        lines.append(
            f"| {label} | {s['concurrency']} | {s['ok']} | {s['failed']} | {fmt(s['wall_s'], 2)} "
            f"| {fmt(s['output_tok_s'])} | {fmt(s['ttft_ms_p50'])} | {fmt(s['ttft_ms_p99'])} "
            f"| {fmt(s['itl_ms_p50'])} | {fmt(s['itl_ms_p99'])} | {fmt(s['e2e_ms_p50'])} "
            f"| {fmt(s['mean_output_tokens'])} | {'-' if peak is None else int(peak)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- arguments


def parse_image(s: str):
    if s.lower() == "none":
        return None
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH or none, got {s!r}")
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("image sides must be positive")
    return (w, h)


def parse_concurrency(s: str):
    try:
        vals = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {s!r}")
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError("concurrency levels must be positive integers")
    return vals


def parse_json_object(s: str):
    try:
        v = json.loads(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}")
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return v


def positive_int(s: str):
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def non_negative_int(s: str):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="load.py",
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:4]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0; 2 on bad arguments; 1 when every request of some phase failed.")
    p.add_argument("--url", required=True,
                   help="the API base, e.g. http://127.0.0.1:8370/v1 (requests go to URL/chat/completions)")
    p.add_argument("--model", default=None,
                   help="the model name to send; default: the first id of GET URL/models")
    p.add_argument("--concurrency", type=parse_concurrency, default=[1, 4, 16, 64],
                   help="comma-separated concurrency levels, one measured phase each, in this order "
                        "(default 1,4,16,64)")
    p.add_argument("--requests-per-client", type=positive_int, default=4,
                   help="requests each client sends back to back in a phase (default 4)")
    p.add_argument("--image", type=parse_image, default=parse_image("448x448"),
                   help="WxH of the noise PNG sent with every request, or none for text only "
                        "(default 448x448)")
    p.add_argument("--max-tokens", type=positive_int, default=100, help="max_tokens (default 100)")
    p.add_argument("--prompt", default="Describe this image.", help="the text part of the message")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise images (default 0)")
    p.add_argument("--warmup", type=non_negative_int, default=2,
                   help="unmeasured requests sent one after another before each phase (default 2)")
    p.add_argument("--out", default=None,
                   help="write a JSON file with every request's record and the summaries")
    p.add_argument("--label", default="run", help="a name for this run in the table and the JSON")
    p.add_argument("--metrics-url", default=None,
                   help="a Prometheus text endpoint scraped before and after every phase "
                        "(e.g. http://127.0.0.1:8370/metrics); failures are noted, not fatal")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="socket timeout of one request, seconds (default 600)")
    p.add_argument("--api-key", default=None, help="sent as `Authorization: Bearer KEY`")
    p.add_argument("--no-ignore-eos", action="store_true",
                   help="leave `ignore_eos` out of the request (servers that reject unknown fields)")
    p.add_argument("--extra-body", type=parse_json_object, default=None,
                   help="a JSON object merged into every request body")
    p.add_argument("--prebuild-mb", type=float, default=2048,
                   help="build a phase's request bodies before its clock starts when they fit in "
                        "this many MiB, else build each just before it is sent (default 2048)")
    return p


def first_model(target: Target, args) -> str | None:
    url = f"{'https' if target.https else 'http'}://{target.host}:{target.port}{target.base}/models"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = json.loads(r.read())
        return data["data"][0]["id"]
    except Exception as e:
        print(f"could not read the model name from {url}: {e}", file=sys.stderr)
        return None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        target = Target(args.url)
    except ValueError as e:
        parser.error(str(e))
    if args.model is None:
        args.model = first_model(target, args)
        if args.model is None:
            parser.error("--model not given and GET URL/models gave no model id")

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    img = "none" if args.image is None else f"{args.image[0]}x{args.image[1]}"
    log(f"{args.label}: {args.url} model={args.model} image={img} max_tokens={args.max_tokens} "
        f"concurrency={args.concurrency} requests/client={args.requests_per_client} warmup={args.warmup}")
    started = time.time()
    summaries, phases = [], []
    all_failed = False
    for c in args.concurrency:
        w = warmup(target, args, c)
        w_fail = sum(1 for r in w if not r["ok"])
        if w_fail:
            log(f"  C={c}: {w_fail}/{len(w)} warm-up requests failed: {w[-1]['error'] if not w[-1]['ok'] else ''}")
        before = scrape(args.metrics_url, 10) if args.metrics_url else {"ok": False, "error": "no --metrics-url"}
        records, wall, prebuilt = run_phase(target, args, c)
        after = scrape(args.metrics_url, 10) if args.metrics_url else {"ok": False, "error": "no --metrics-url"}
        s = summarize(c, records, wall)
        s["bodies_prebuilt"] = prebuilt
        if args.metrics_url:
            s["metrics"] = metrics_record(before, after)
        summaries.append(s)
        phases.append({"concurrency": c, "warmup": w, "requests": records})
        peak = s.get("metrics", {}).get("after_batch_size_peak")
        log(f"  C={c}: ok {s['ok']}/{s['requests']} in {wall:.2f}s, {fmt(s['output_tok_s'])} out tok/s, "
            f"TTFT p50 {fmt(s['ttft_ms_p50'])} ms, ITL p50 {fmt(s['itl_ms_p50'])} ms"
            + (f", batch peak {int(peak)}" if peak is not None else ""))
        for err, n in s["errors"].items():
            log(f"    {n}x {err}")
        if s["ok"] == 0:
            all_failed = True

    print(table(args.label, summaries))
    if args.out:
        doc = {
            "label": args.label,
            "started_unix": started,
            "args": {k: v for k, v in vars(args).items() if k != "api_key"},
            "client": {"python": sys.version.split()[0], "platform": platform.platform(),
                       "host": socket.gethostname()},
            "notes": [
                "times in seconds, start_s relative to the phase's start, chunk_times_s and end_s "
                "relative to the request's start; summaries in ms",
                "ITL = gaps between successive chunks with non-empty delta.content; a chunk with "
                "several tokens is one gap",
                "vlm_batch_size_peak is the peak since the server started: a phase's own peak only "
                "shows where it exceeds the phases before it",
            ],
            "summary": summaries,
            "phases": phases,
        }
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
        log(f"wrote {args.out}")
    return 1 if all_failed else 0


if __name__ == "__main__":
    sys.exit(main())
