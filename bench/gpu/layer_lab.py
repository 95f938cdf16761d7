#!/usr/bin/env python3
"""Decoder-layer lab, runs ON the GPU machine: one decoding step of the 8B's 36
layers (random 4-bit weights, a KV cache of CONTEXT positions) two ways, with
the engine's kernel sources (host/engine/src/kernels/):

- separate: five launches per layer (norm + q/k/v GEMV, attention, o +
  residual, norm + gate/up + SwiGLU, down + residual), the launch shapes the
  engine picks (qmv.rs);
- layer: one launch per layer (layer_decode.cu), its phases chained inside.

Checks that both give the same layer outputs and caches and that the layer
kernel leaves its counters at zero, then times a step both ways: the wall clock
of evaluating STEPS chained steps (the graph built beforehand, so the GPU sets
the pace), and, under Nsight Compute (`ncu -k regex:lab_ ... layer_lab.py
--ncu`), each launch.

With --variants "A;B" (each a comma-separated list of NAME=VALUE defines for
the layer kernel, e.g. PHASE_STRIDE=8), each variant is checked and timed, and
a traced launch (LAYER_TRACE) prints when each phase's blocks started, ended
their wait and finished, in µs from the launch's first block.

usage: PYTHONPATH=$MLX_PY python3 layer_lab.py [--ncu] [--context N] [--steps N] [--variants "..."]
"""
import math
import statistics
import struct
import sys
import time

import mlx.core as mx

from kernel_src import KDIR, compact, header, qmv_shared_bytes

LDIR = KDIR.parents[3] / "bench/gpu/layer"  # the experiment's own kernels and phase machinery

H, I, NH, NKV, HD, LAYERS = 4096, 12288, 32, 8, 128, 36
G = NH // NKV
NQKV = (NH + 2 * NKV) * HD
EPS, THETA = 1e-6, 5e6
THREADS = 128


def bits(v):
    return struct.unpack("<i", struct.pack("<f", v))[0]


def arg(flag, default):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def defines(variant):
    """The layer kernel's defines: the engine's (4 warps, 8 value rows in flight) and the variant's."""
    d = {"LAYER_WARPS": "4", "ATTN_VB": "8"}
    d.update(kv.split("=") for kv in variant.split(",") if kv)
    d["ATTN_THREADS"] = str(32 * int(d["LAYER_WARPS"]))
    return d




def attn_smem(tile):
    return 4 * (G * HD + HD + G * tile + 3 * G + (tile // 32) * G * HD)


def splits(positions, tile=THREADS):
    tiles = max(1, -(-positions // tile))
    return min(64, 1 << (tiles - 1).bit_length())


_kernels = {}


def qmv_kernel(k, norm, resid, swiglu):
    key = ("qmv", k, norm, resid, swiglu)
    if key not in _kernels:
        src = compact(f"#define NORM {norm}\n#define RESID {resid}\n#define SWIGLU {swiglu}\n#define ARGMAX 0\n"
                      + (KDIR / "qmv4.cu").read_text())
        ins = ["x"] + (["nw"] if norm else []) + ["w", "scales", "biases"] + (["res"] if resid else [])
        _kernels[key] = mx.fast.cuda_kernel(
            name=f"lab_qmv_{k}_{norm}{resid}{swiglu}", input_names=ins, output_names=["out"], source=src,
            header=header("q4_dot.cuh", "phases.cuh", "qmv4.cuh"), ensure_row_contiguous=True,
            shared_memory=qmv_shared_bytes(k))
    return _kernels[key]


def qmv(x, q, k, n, nw=None, res=None, swiglu=False):
    """As kernels/qmv.rs launches it."""
    width = n // 2 if swiglu else n
    blocks = -(-width // (8 if swiglu else 16))
    warps = 8 if blocks < 320 else 4
    u = 4 if k > 4096 else 2
    tmpl = [("T", mx.bfloat16), ("K", k), ("N", n), ("WARPS", warps), ("U", u)]
    if nw is not None:
        tmpl.append(("EPS_BITS", bits(EPS)))
    ins = [x] + ([nw] if nw is not None else []) + list(q) + ([res] if res is not None else [])
    kern = qmv_kernel(k, int(nw is not None), int(res is not None), int(swiglu))
    return kern(inputs=ins, template=tmpl, grid=(blocks * warps * 32, 1, 1), threadgroup=(warps * 32, 1, 1),
                output_shapes=[(1, 1, width)], output_dtypes=[mx.bfloat16])[0]


def attn_consts(length, tile=THREADS):
    return [("T", mx.bfloat16), ("HD", HD), ("NH", NH), ("NKV", NKV), ("SPLITS", splits(length + 1, tile)),
            ("EPS_BITS", bits(EPS)), ("LOG2_THETA_BITS", bits(math.log2(THETA))), ("SCALE_BITS", bits(1 / math.sqrt(HD)))]


def attention(qkv, layer, meta, counters, length):
    if "attn" not in _kernels:
        _kernels["attn"] = mx.fast.cuda_kernel(
            name="lab_attn", input_names=["qkv", "qn", "kn", "kc", "vc", "meta", "counters"],
            output_names=["part", "out"], source=compact("#define CACHE_CAP kc_shape[2]\n" + (KDIR / "attn_decode.cu").read_text()),
            header=header("q4_dot.cuh", "phases.cuh", "attn.cuh"), ensure_row_contiguous=False)
    s = splits(length + 1)
    return _kernels["attn"](
        inputs=[qkv, layer["qn"], layer["kn"], layer["kc"], layer["vc"], meta, counters],
        template=attn_consts(length), grid=(NKV * s * THREADS, 1, 1), threadgroup=(THREADS, 1, 1),
        output_shapes=[(NKV * s * G * (HD + 2),), (1, 1, NH * HD)], output_dtypes=[mx.float32, mx.bfloat16])[1]


def separate(x, layer, meta, counters, length):
    qkv = qmv(x, layer["qkv"], H, NQKV, nw=layer["in_norm"])
    o = attention(qkv, layer, meta, counters, length)
    mid = qmv(o, layer["o"], NH * HD, H, res=x)
    act = qmv(mid, layer["gu"], H, 2 * I, nw=layer["post_norm"], swiglu=True)
    return qmv(act, layer["d"], I, H, res=mid)


ATTN_INPUTS = ["x", "in_norm", "wqkv", "sqkv", "bqkv", "qn", "kn", "kc", "vc", "meta", "counters", "wo", "so", "bo"]
MLP_INPUTS = ["x", "post_norm", "wgu", "sgu", "bgu", "wd", "sd", "bd", "counters"]
PHASES = ["q/k/v", "attention", "o", "gate/up", "down"]


def defines(variant, part):
    """A half's defines: the engine's and the variant's (MLP_WARPS, MLP_MIN, ATTN_MIN: the MLP half's warps,
    either half's LAYER_MIN_BLOCKS)."""
    d = {"LAYER_WARPS": "8", "ATTN_VB": "8", "MLP_MIN": "3"}
    d.update(kv.split("=") for kv in variant.split(",") if kv)
    if part == "mlp":
        d["LAYER_WARPS"] = d.pop("MLP_WARPS", "8")
    d.pop("MLP_WARPS", None)
    mlp_min, attn_min = d.pop("MLP_MIN", "0"), d.pop("ATTN_MIN", "0")
    mb = mlp_min if part == "mlp" else attn_min
    if mb != "0":
        d["LAYER_MIN_BLOCKS"] = mb
    d["ATTN_THREADS"] = str(32 * int(d["LAYER_WARPS"]))
    return d


def half(part, variant, trace, outs, smem):
    key = (part, variant, trace)
    if key not in _kernels:
        d = defines(variant, part)
        _kernels[key] = mx.fast.cuda_kernel(
            name=f"lab_layer_{part}_{len(_kernels)}", input_names=ATTN_INPUTS if part == "attn" else MLP_INPUTS,
            output_names=outs + (["trace"] if trace else []),
            source=compact((LDIR / f"layer_{part}.cu").read_text()),
            header="".join(f"#define {k} {v}\n" for k, v in d.items()) + ("#define LAYER_TRACE\n" if trace else "")
            + header("q4_dot.cuh", "phases.cuh", "qmv4.cuh", "attn.cuh") + compact((LDIR / "phases.cuh").read_text())
            + "\n" + compact((LDIR / "launch_bounds.cuh").read_text()) + "\n",
            ensure_row_contiguous=False, shared_memory=smem)
    return _kernels[key]


def launch(kern, ins, tmpl, blocks, threads, shapes, dtypes, trace):
    if trace:
        shapes = shapes + [(blocks * 4,)]
        dtypes = dtypes + [mx.uint64]
    return kern(inputs=ins, template=tmpl, grid=(blocks * threads, 1, 1), threadgroup=(threads, 1, 1),
                output_shapes=shapes, output_dtypes=dtypes, init_value=0)


def fused(x, layer, meta, counters, length, variant="", trace=False):
    """The layer in two launches: q/k/v + attention + o, then gate/up + down."""
    bf = mx.bfloat16
    threads = 32 * int(defines(variant, "attn")["LAYER_WARPS"])
    s = splits(length + 1, threads)
    kern = half("attn", variant, trace, ["out", "qkv", "part", "attn"],
                max(qmv_shared_bytes(H), qmv_shared_bytes(NH * HD), attn_smem(threads)))
    blocks = -(-NQKV // 16) + NKV * s + -(-H // 16)
    ins = [x, layer["in_norm"], *layer["qkv"], layer["qn"], layer["kn"], layer["kc"], layer["vc"], meta, counters,
           *layer["o"]]
    a = launch(kern, ins, [("T", bf), ("H", H)] + attn_consts(length, threads)[1:], blocks, threads,
               [(1, 1, H), (NQKV,), (NKV * s * G * (HD + 2),), (NH * HD,)], [bf, bf, mx.float32, bf], trace)
    mthreads = 32 * int(defines(variant, "mlp")["LAYER_WARPS"])
    kern = half("mlp", variant, trace, ["out", "act"], max(qmv_shared_bytes(H), qmv_shared_bytes(I)))
    blocks = -(-I // 8) + -(-H // 16)
    ins = [a[0], layer["post_norm"], *layer["gu"], *layer["d"], counters]
    m = launch(kern, ins, [("T", bf), ("H", H), ("I", I), ("EPS_BITS", bits(EPS))], blocks, mthreads,
               [(1, 1, H), (I,)], [bf, bf], trace)
    return (m[0], mx.concatenate([a[-1], m[-1]])) if trace else m[0]


def timeline(trace):
    """Per phase: blocks, first start, first/last end of wait, first/last finish (µs from the first start)."""
    t = trace.reshape(-1, 4).tolist()
    t0 = min(r[1] for r in t)
    print("| phase | blocks | SMs | start first-last | waited first-last | end first-last | busy µs/block (median) |")
    print("|---|---|---|---|---|---|---|")
    for p, name in enumerate(PHASES):
        rows = [r for r in t if r[0] & 0xFF == p and r[3]]
        if not rows:
            continue
        us = lambda v: (v - t0) / 1e3
        st = [us(r[1]) for r in rows]
        wt = [us(r[2]) for r in rows if r[2]]
        en = [us(r[3]) for r in rows]
        busy = sorted(us(r[3]) - us(r[2] or r[1]) for r in rows)[len(rows) // 2]
        sms = len({r[0] >> 8 for r in rows})
        w = f"{min(wt):.1f}-{max(wt):.1f}" if wt else "-"
        print(f"| {name} | {len(rows)} | {sms} | {min(st):.1f}-{max(st):.1f} | {w} | {min(en):.1f}-{max(en):.1f} | {busy:.1f} |")


def quantized(n, k, seed):
    w = mx.random.normal((n, k), dtype=mx.bfloat16, key=mx.random.key(seed)) * 0.02
    return mx.quantize(w, group_size=64, bits=4)


def norm_weight(n, seed):
    return (1.0 + 0.1 * mx.random.normal((n,), key=mx.random.key(seed))).astype(mx.bfloat16)


def make_layer(i, cap):
    s = 1000 * (i + 1)
    layer = {"qkv": quantized(NQKV, H, s), "o": quantized(H, NH * HD, s + 1), "gu": quantized(2 * I, H, s + 2),
             "d": quantized(H, I, s + 3), "in_norm": norm_weight(H, s + 4), "post_norm": norm_weight(H, s + 5),
             "qn": norm_weight(HD, s + 6), "kn": norm_weight(HD, s + 7),
             "kc": mx.random.normal((1, NKV, cap, HD), key=mx.random.key(s + 8)).astype(mx.bfloat16),
             "vc": mx.random.normal((1, NKV, cap, HD), key=mx.random.key(s + 9)).astype(mx.bfloat16)}
    mx.eval(layer)
    return layer


def step(path, x, layers, meta, counters, length):
    for layer in layers:
        x = path(x, layer, meta, counters, length)
    return x


def rel(a, b):
    a, b = a.astype(mx.float32), b.astype(mx.float32)
    return (mx.max(mx.abs(a - b)) / mx.maximum(mx.max(mx.abs(b)), 1e-6)).item()


def main():
    ncu = "--ncu" in sys.argv
    variants = arg("--variants", "").split(";")
    length = int(arg("--context", "1100"))
    steps = int(arg("--steps", "8"))
    cap = length + 64
    layers = [make_layer(i, cap) for i in range(2 if ncu else LAYERS)]
    x = mx.random.normal((1, 1, H), key=mx.random.key(1)).astype(mx.bfloat16)
    meta = mx.array([length, length + 3, 0, 0], dtype=mx.int32) + mx.zeros((4,), mx.int32)
    counters = mx.zeros((256,), mx.int32)
    mx.eval(x, meta, counters)

    # Agreement: one layer both ways on copies of its caches.
    l0 = layers[0]
    outs = {}
    for label, path in [("separate", separate), ("layer", fused)]:
        copy = dict(l0, kc=l0["kc"] + 0, vc=l0["vc"] + 0)
        mx.eval(copy["kc"], copy["vc"])
        y = path(x, copy, meta, counters, length)
        mx.eval(y)
        outs[label] = (y, copy["kc"], copy["vc"])
    (a, ka, va), (b, kb, vb) = outs["layer"], outs["separate"]
    print(f"context {length}: splits {splits(length + 1)}; layer vs separate: output {rel(a, b):.2e} (relative), "
          f"caches equal {mx.array_equal(ka, kb).item() and mx.array_equal(va, vb).item()}, "
          f"counters zero {mx.all(counters == 0).item()}", flush=True)
    if ncu:
        for path in [separate, fused]:
            mx.eval(step(path, x, layers, meta, counters, length))
        return

    paths = [("separate", separate)]
    for v in variants:
        paths.append((f"layer {v or 'default'}", lambda x, l, m, c, n, v=v: fused(x, l, m, c, n, v)))
    chained = {}
    for label, path in paths:
        mx.eval(step(path, x, layers, meta, counters, length))  # warm-up (compiles)
        builds, evals = [], []
        for _ in range(5):
            mx.synchronize()
            t0 = time.perf_counter()
            y = x
            for _ in range(steps):
                y = step(path, y, layers, meta, counters, length)
            t1 = time.perf_counter()
            mx.eval(y)
            mx.synchronize()
            t2 = time.perf_counter()
            builds.append((t1 - t0) / steps)
            evals.append((t2 - t1) / steps)
        chained[label] = y
        print(f"{label}: per step (36 layers) eval {statistics.median(evals) * 1e3:.3f} ms "
              f"[{min(evals) * 1e3:.3f}-{max(evals) * 1e3:.3f}], python build {statistics.median(builds) * 1e3:.3f} ms",
              flush=True)
    for label, y in chained.items():
        print(f"after {steps} chained steps: {label} vs separate {rel(y, chained['separate']):.2e}")
    print(f"counters zero {mx.all(counters == 0).item()}")
    for v in variants:
        for i in [0, 1, 2]:
            y, tr = fused(x, layers[3 + i], meta, counters, length, v, trace=True)
            mx.eval(y, tr)
        print(f"\ntimeline, variant {v or 'default'} (third of three traced layers; the two launches' clocks in one table):")
        timeline(tr)


main()
