#!/usr/bin/env python3
"""GEMV lab, runs ON the GPU machine: our 4-bit matrix-vector kernel
(host/engine/src/kernels/qmv4.cu, in several launch shapes) against MLX's own
operations, at
the shapes of one Qwen3-VL-8B decoding step. Checks each against MLX's result
and times it two ways: wall clock over a chain of launches on distinct
weights (what decoding sees, host cost included), and, under Nsight Compute
(`ncu ... qmv_lab.py --ncu`), the kernel alone with cold caches.

usage (with unpack.sh's env.sh sourced): python3 qmv_lab.py [--ncu] [--only SHAPE,...]
"""
import math
import statistics
import struct
import sys
import time

import mlx.core as mx

from kernel_src import KDIR, compact, header, qmv_shared_bytes

EPS = 1e-6
EPS_BITS = struct.unpack("<i", struct.pack("<f", EPS))[0]

# name, K, N, norm, resid, swiglu
SHAPES = [
    ("qkv", 4096, 6144, 1, 0, 0),
    ("o", 4096, 4096, 0, 1, 0),
    ("gate_up", 4096, 24576, 1, 0, 1),
    ("down", 12288, 4096, 0, 1, 0),
    ("lm_head", 4096, 151936, 0, 0, 0),
]
TC_CONFIGS = [(4, 2), (4, 4), (8, 2), (8, 4), (16, 2)]



HEADER = header("q4_dot.cuh", "phases.cuh", "qmv4.cuh")
_kernels = {}


def kernel(name, body_file, norm, resid, swiglu, smem):
    key = (name, smem)
    if key not in _kernels:
        src = compact(f"#define NORM {norm}\n#define RESID {resid}\n#define SWIGLU {swiglu}\n#define ARGMAX 0\n"
                      + (KDIR / body_file).read_text())
        ins = ["x"] + (["nw"] if norm else []) + ["w", "scales", "biases"] + (["res"] if resid else [])
        _kernels[key] = mx.fast.cuda_kernel(name=name, input_names=ins, output_names=["out"], source=src,
                                            header=HEADER, ensure_row_contiguous=True, shared_memory=smem)
    return _kernels[key]


def inputs(x, layer, norm, resid):
    return [x] + ([layer["nw"]] if norm else []) + [layer["w"], layer["s"], layer["b"]] + ([layer["res"]] if resid else [])


def run_tc(shape, x, layer, warps, u):
    name, k, n, norm, resid, swiglu = shape
    width = n // 2 if swiglu else n
    per_block = 8 if swiglu else 16
    kern = kernel(f"lab_tc_{name}_w{warps}_u{u}", "qmv4.cu", norm, resid, swiglu,
                  qmv_shared_bytes(k))
    blocks = -(-width // per_block)
    tmpl = [("T", mx.bfloat16), ("K", k), ("N", n), ("WARPS", warps), ("U", u)]
    if norm:
        tmpl.append(("EPS_BITS", EPS_BITS))
    return kern(inputs=inputs(x, layer, norm, resid), template=tmpl, grid=(blocks * warps * 32, 1, 1),
                threadgroup=(warps * 32, 1, 1), output_shapes=[(1, width)], output_dtypes=[mx.bfloat16])[0]


def run_mlx(shape, x, layer):
    name, k, n, norm, resid, swiglu = shape
    y = mx.fast.rms_norm(x, layer["nw"], EPS) if norm else x
    h = mx.quantized_matmul(y, layer["w"], layer["s"], layer["b"], transpose=True, group_size=64, bits=4)
    if swiglu:
        g, up = mx.split(h, 2, axis=-1)
        return (g * mx.sigmoid(g)) * up
    return layer["res"] + h if resid else h


def make_layers(shape, count):
    name, k, n, norm, resid, swiglu = shape
    layers = []
    for i in range(count):
        w = mx.random.normal((n, k), dtype=mx.bfloat16, key=mx.random.key(100 + i)) * 0.02
        wq, s, b = mx.quantize(w, group_size=64, bits=4)
        layer = {"w": wq, "s": s, "b": b,
                 "nw": (1.0 + 0.1 * mx.random.normal((k,), key=mx.random.key(7))).astype(mx.bfloat16),
                 "res": mx.random.normal((1, n // 2 if swiglu else n), key=mx.random.key(8)).astype(mx.bfloat16)}
        mx.eval(layer)
        del w
        layers.append(layer)
    return layers


def weight_bytes(k, n):
    return n * k // 2 + 2 * (n * k // 64) * 2


def main():
    ncu = "--ncu" in sys.argv
    only = None
    if "--only" in sys.argv:
        only = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    rows = []
    for shape in SHAPES:
        name, k, n, norm, resid, swiglu = shape
        if only and name not in only:
            continue
        wb = weight_bytes(k, n)
        count = 3 if ncu else max(3, math.ceil(600e6 / wb))
        layers = make_layers(shape, count)
        x = (2.0 * mx.random.normal((1, k), key=mx.random.key(1))).astype(mx.bfloat16)
        mx.eval(x)
        impls = [("mlx", lambda x, l: run_mlx(shape, x, l))]
        for warps, u in TC_CONFIGS:
            impls.append((f"tc w{warps} u{u}", lambda x, l, warps=warps, u=u: run_tc(shape, x, l, warps, u)))
        ref = run_mlx(shape, x, layers[0]).astype(mx.float32)
        mx.eval(ref)
        scale = mx.max(mx.abs(ref)).item()
        for label, fn in impls:
            try:
                got = fn(x, layers[0])
                mx.eval(got)
                err = mx.max(mx.abs(got.astype(mx.float32) - ref)).item() / scale
            except Exception as e:  # a launch shape the kernel rejects
                print(f"{name} {label}: {e}", file=sys.stderr)
                continue
            if ncu:
                for layer in layers:
                    mx.eval(fn(x, layer))
                rows.append((name, label, err, float("nan"), float("nan")))
                continue
            times = []
            for _ in range(7):
                mx.synchronize()
                t0 = time.perf_counter()
                mx.eval([fn(x, layer) for layer in layers])
                mx.synchronize()
                times.append((time.perf_counter() - t0) / len(layers))
            t = statistics.median(times)
            rows.append((name, label, err, t * 1e6, wb / t / 1e9))
        del layers
        mx.clear_cache()
    print("| shape | kernel | rel. max error | wall µs/call | GB/s (weights) |")
    print("|---|---|---|---|---|")
    for name, label, err, us, gbs in rows:
        print(f"| {name} | {label} | {err:.2e} | {us:.1f} | {gbs:.0f} |")


main()
