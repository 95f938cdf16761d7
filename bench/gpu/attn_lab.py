#!/usr/bin/env python3
"""Decode-attention lab, runs ON the GPU machine: our attention kernel
(host/engine/src/kernels/attn_decode.cu + attn.cuh) at the 8B's head layout and
several context lengths, against another version of it (ALT=path/to/attn_decode.cu,
a whole kernel body as before 400c38f, with q4_dot.cuh as its header) for
agreement and, under Nsight Compute
(`ncu -k regex:lab_attn ... attn_lab.py`), time per launch.

usage (with unpack.sh's env.sh sourced): python3 attn_lab.py"""
import math
import os
import pathlib
import struct

import mlx.core as mx

from kernel_src import KDIR, compact

NH, NKV, HD, THREADS = 32, 8, 128, 128


def bits(v):
    return struct.unpack("<i", struct.pack("<f", v))[0]



def splits(positions):
    tiles = max(1, -(-positions // THREADS))
    return min(64, 1 << (tiles - 1).bit_length())


def make(name, body, headers):
    return mx.fast.cuda_kernel(name=name, input_names=["qkv", "qn", "kn", "kc", "vc", "meta", "counters"],
                               output_names=["part", "out"], source=compact(body),
                               header="\n".join(compact((KDIR / h).read_text()) for h in headers) + "\n",
                               ensure_row_contiguous=False)


def run(kernel, qkv, qn, kn, kc, vc, meta, counters, length):
    s = splits(length + 1)
    g = NH // NKV
    tmpl = [("T", mx.bfloat16), ("HD", HD), ("NH", NH), ("NKV", NKV), ("SPLITS", s), ("EPS_BITS", bits(1e-6)),
            ("LOG2_THETA_BITS", bits(math.log2(5e6))), ("SCALE_BITS", bits(1 / math.sqrt(HD)))]
    return kernel(inputs=[qkv, qn, kn, kc, vc, meta, counters], template=tmpl, grid=(NKV * s * THREADS, 1, 1),
                  threadgroup=(THREADS, 1, 1), output_shapes=[(NKV * s * g * (HD + 2),), (1, 1, NH * HD)],
                  output_dtypes=[mx.float32, mx.bfloat16])[1]


# attention.rs reads the caches' capacity from MLX's shape of kc.
CAP = "#define CACHE_CAP kc_shape[2]\n"


def main():
    kernels = [("new", make("lab_attn_new", CAP + (KDIR / "attn_decode.cu").read_text(),
                            ["q4_dot.cuh", "phases.cuh", "attn.cuh"]))]
    alt = os.environ.get("ALT")
    if alt:
        kernels.append(("old", make("lab_attn_old", pathlib.Path(alt).read_text(), ["q4_dot.cuh"])))
    zeros = mx.zeros((4,), mx.int32)
    for length in [100, 1100, 2100]:
        cap = length + 64
        qkv = mx.random.normal((1, 1, (NH + 2 * NKV) * HD), key=mx.random.key(1)).astype(mx.bfloat16)
        qn = (1 + 0.1 * mx.random.normal((HD,), key=mx.random.key(2))).astype(mx.bfloat16)
        kn = (1 + 0.1 * mx.random.normal((HD,), key=mx.random.key(3))).astype(mx.bfloat16)
        kc0 = mx.random.normal((1, NKV, cap, HD), key=mx.random.key(4)).astype(mx.bfloat16)
        vc0 = mx.random.normal((1, NKV, cap, HD), key=mx.random.key(5)).astype(mx.bfloat16)
        meta = mx.array([length, length + 3, 0, 0], dtype=mx.int32) + zeros
        counters = mx.zeros((64,), mx.int32)
        mx.eval(qkv, qn, kn, kc0, vc0, meta, counters)
        outs = {}
        for label, kern in kernels:
            kc, vc = mx.array(kc0), mx.array(vc0)
            kc, vc = kc + 0, vc + 0  # own buffers: the kernel writes into them
            mx.eval(kc, vc)
            for _ in range(3):
                o = run(kern, qkv, qn, kn, kc, vc, meta, counters, length)
                mx.eval(o)
            outs[label] = (o.astype(mx.float32), kc, vc)
        line = f"context {length}: splits {splits(length + 1)}"
        if "old" in outs:
            a, b = outs["new"], outs["old"]
            line += (f"; new vs old: out {mx.max(mx.abs(a[0] - b[0])).item():.2e}, "
                     f"caches equal {mx.array_equal(a[1], b[1]).item() and mx.array_equal(a[2], b[2]).item()}, "
                     f"counters zero {mx.all(counters == 0).item()}")
        print(line)


main()
