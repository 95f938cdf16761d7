#!/usr/bin/env python3
"""Vision-attention lab, runs ON the GPU machine: MLX's scaled_dot_product_attention
at the Qwen3-VL vision tower's shapes (16 heads of 72 dims, one image of N
patches, no mask), against the same attention with q, k and v zero-padded to a
wider head (the extra dimensions add nothing to q·k, and the output's extra
dimensions are zeros that are sliced off). Prints time per call (wall clock over
a chain of calls) and the padded result's largest difference from the unpadded.

usage (with unpack.sh's env.sh sourced): python3 sdpa_lab.py
"""
import statistics
import time

import mlx.core as mx

HEADS, HD = 16, 72


def timed(fn, reps=10):
    mx.eval(fn())
    times = []
    for _ in range(3):
        mx.synchronize()
        t0 = time.perf_counter()
        mx.eval([fn() for _ in range(reps)])
        mx.synchronize()
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


def main():
    for n in [1024, 4096, 8160]:
        q, k, v = (mx.random.normal((1, HEADS, n, HD), key=mx.random.key(i)).astype(mx.bfloat16) for i in range(3))
        mx.eval(q, k, v)
        scale = HD ** -0.5
        ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale)
        base = timed(lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale))
        line = f"n={n}: hd 72 {base * 1e3:.2f} ms"
        for width in [80, 96, 128]:
            pad = [(0, 0), (0, 0), (0, 0), (0, width - HD)]
            qp, kp, vp = (mx.pad(t, pad) for t in (q, k, v))
            mx.eval(qp, kp, vp)
            out = mx.fast.scaled_dot_product_attention(qp, kp, vp, scale=scale)[..., :HD]
            err = mx.max(mx.abs(out.astype(mx.float32) - ref.astype(mx.float32))).item()
            t = timed(lambda: mx.fast.scaled_dot_product_attention(qp, kp, vp, scale=scale))
            tp = timed(lambda: mx.fast.scaled_dot_product_attention(
                *(mx.pad(x, pad) for x in (q, k, v)), scale=scale)[..., :HD])
            line += f"; pad {width}: {t * 1e3:.2f} ms ({tp * 1e3:.2f} with pad + slice), max diff {err:.1e}"
        print(line, flush=True)


main()
