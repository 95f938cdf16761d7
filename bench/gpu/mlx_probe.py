"""MLX CUDA backend micro-benchmarks: GEMV (bf16 and 4-bit), matmuls, copies, and a decode-like stack of the 8B's layers.

Run with PYTHONPATH pointing at a directory holding the `mlx` package laid out
as the mlx + mlx-cuda-13 wheels lay it out (mlx/core*.so, mlx/lib/libmlx.so,
mlx/include, ../mlx_cuda_13.libs).  Prints one line per measurement and a JSON
summary at the end (also written to $OUT/mlx_probe.json when OUT is set).

Timing: every measurement evaluates R independent results in one mx.eval
(so the GPU runs them back to back), synchronises, and divides by R; the
median over `iters` such batches is reported, after warm-up batches.
"""
import json
import os
import statistics
import sys
import time

import mlx.core as mx

RES = {}
T0 = time.time()
SMALL = os.environ.get("PROBE_SMALL") == "1"


def log(*a):
    print(*a, flush=True)


def timed(fn, reps=10, iters=15, warm=3):
    """fn() -> list of arrays (reps independent results). Returns median s per rep."""
    for _ in range(warm):
        mx.eval(fn())
    mx.synchronize()
    ts = []
    for _ in range(iters):
        outs = fn()
        mx.synchronize()
        t = time.perf_counter()
        mx.eval(outs)
        mx.synchronize()
        ts.append((time.perf_counter() - t) / reps)
    return statistics.median(ts), min(ts)


def rel_err(a, b):
    a = a.astype(mx.float32)
    b = b.astype(mx.float32)
    return (mx.linalg.norm(a - b) / mx.linalg.norm(b)).item()


def main():
    log("mlx", mx.__version__)
    log("default_device", mx.default_device())
    try:
        log("cuda.is_available", mx.cuda.is_available())
    except Exception as e:  # noqa: BLE001
        log("cuda.is_available error", e)
    try:
        log("device_info", mx.device_info())
    except Exception as e:  # noqa: BLE001
        log("device_info n/a", e)
    RES["mlx_version"] = mx.__version__
    RES["default_device"] = str(mx.default_device())

    # ---- smoke: elementwise + reduction (JIT path) ----
    t = time.perf_counter()
    a = mx.arange(1 << 20, dtype=mx.float32)
    s = (a * 2 + 1).sum().item()
    log(f"smoke sum={s:.6e} expect={(2 * ((1 << 20) - 1) * (1 << 20) / 2 + (1 << 20)):.6e} "
        f"first-op+JIT {time.perf_counter() - t:.2f}s")

    mx.random.seed(0)
    K, N = (256, 512) if SMALL else (4096, 12288)
    # ---- bf16 GEMV 1x4096 @ (4096x12288) as nn.Linear does it: x @ W.T, W (N,K) ----
    W = (mx.random.normal((N, K)) * 0.02).astype(mx.bfloat16)
    x = mx.random.normal((1, K)).astype(mx.bfloat16)
    mx.eval(W, x)
    ref = (x.astype(mx.float32) @ W.astype(mx.float32).T)
    err = rel_err(x @ W.T, ref)
    med, mn = timed(lambda: [x @ W.T for _ in range(10)])
    byts = N * K * 2 + K * 2 + N * 2
    log(f"bf16 GEMV 1x{K}x{N}: median {med*1e6:.1f} us (min {mn*1e6:.1f}) "
        f"-> {byts/med/1e9:.0f} GB/s; rel err vs fp32 {err:.2e}")
    RES["gemv_bf16"] = dict(us=med * 1e6, gbs=byts / med / 1e9, rel_err=err)

    # ---- 4-bit affine quantized GEMV (group 64), same shape ----
    wq, sc, bi = mx.quantize(W, group_size=64, bits=4)
    mx.eval(wq, sc, bi)
    Wdq = mx.dequantize(wq, sc, bi, group_size=64, bits=4)
    ref_q = x.astype(mx.float32) @ Wdq.astype(mx.float32).T
    out_q = mx.quantized_matmul(x, wq, sc, bi, transpose=True, group_size=64, bits=4)
    errq = rel_err(out_q, ref_q)
    # 4-bit weights (~28 MB) fit in the 50 MB L2: rotate among 4 distinct weight sets (~113 MB)
    qsets = [(wq, sc, bi)] + [mx.quantize((mx.random.normal((N, K)) * 0.02).astype(mx.bfloat16),
                                          group_size=64, bits=4) for _ in range(3)]
    mx.eval(qsets)
    med, mn = timed(lambda: [mx.quantized_matmul(x, *qsets[i % 4], transpose=True, group_size=64, bits=4)
                             for i in range(12)], reps=12)
    qbytes = wq.nbytes + sc.nbytes + bi.nbytes + K * 2 + N * 2
    log(f"q4 GEMV 1x{K}x{N} (w {wq.dtype}{tuple(wq.shape)}, scales {sc.dtype}): median {med*1e6:.1f} us "
        f"(min {mn*1e6:.1f}) -> {qbytes/med/1e9:.0f} GB/s of {qbytes/1e6:.1f} MB; rel err vs dequant ref {errq:.2e}")
    RES["gemv_q4"] = dict(us=med * 1e6, gbs=qbytes / med / 1e9, mbytes=qbytes / 1e6, rel_err=errq)

    del Wdq, qsets

    # ---- bf16 8192^3 matmul ----
    n = 256 if SMALL else 8192
    A = mx.random.normal((n, n)).astype(mx.bfloat16)
    B = mx.random.normal((n, n)).astype(mx.bfloat16)
    mx.eval(A, B)
    med, mn = timed(lambda: [A @ B for _ in range(5)], reps=5, iters=8)
    log(f"bf16 matmul {n}^3: median {med*1e3:.3f} ms -> {2*n**3/med/1e12:.0f} TFLOP/s (best {2*n**3/mn/1e12:.0f})")
    RES["matmul_bf16_8192"] = dict(ms=med * 1e3, tflops=2 * n ** 3 / med / 1e12)
    del A, B

    # ---- large device copy (read + write counted) ----
    big = mx.random.normal((1 << (16 if SMALL else 28),))  # 1 GiB fp32
    mx.eval(big)
    med, mn = timed(lambda: [big + 1.0 for _ in range(4)], reps=4, iters=8)
    gb = 2 * big.nbytes
    log(f"elementwise copy (x+1) 1 GiB fp32: median {med*1e3:.3f} ms -> {gb/med/1e9:.0f} GB/s (read+write)")
    RES["copy_1GiB"] = dict(ms=med * 1e3, gbs=gb / med / 1e9)
    bview = big.reshape(1 << (8 if SMALL else 14), -1)
    med, mn = timed(lambda: [mx.contiguous(bview.T) for _ in range(4)], reps=4, iters=8)
    log(f"transpose copy 16384^2 fp32: median {med*1e3:.3f} ms -> {gb/med/1e9:.0f} GB/s")
    RES["transpose_copy_1GiB"] = dict(ms=med * 1e3, gbs=gb / med / 1e9)
    del big, bview

    # ---- decode-like stack: 36 layers of Qwen3-8B 4-bit linears + norms + SDPA over a KV cache ----
    decode_stack()
    # ---- 4-bit qmm at prefill-like M (image tokens) ----
    W = W  # noqa
    for M in ((16,) if SMALL else (256, 1024, 2048)):
        xm = mx.random.normal((M, K)).astype(mx.bfloat16)
        mx.eval(xm)
        try:
            med, mn = timed(lambda: [mx.quantized_matmul(xm, wq, sc, bi, transpose=True, group_size=64, bits=4)
                                     for _ in range(5)], reps=5, iters=10)
            fl = 2 * M * K * N
            medb, _ = timed(lambda: [xm @ W.T for _ in range(5)], reps=5, iters=10)
            log(f"M={M}: q4 qmm {med*1e3:.3f} ms -> {fl/med/1e12:.1f} TFLOP/s ; bf16 matmul {medb*1e3:.3f} ms "
                f"-> {fl/medb/1e12:.1f} TFLOP/s")
            RES[f"qmm_M{M}"] = dict(q4_ms=med * 1e3, q4_tflops=fl / med / 1e12,
                                    bf16_ms=medb * 1e3, bf16_tflops=fl / medb / 1e12)
        except Exception as e:  # noqa: BLE001
            log(f"M={M} qmm failed: {e!r}")
    RES["elapsed_s"] = time.time() - T0
    js = json.dumps(RES, indent=1)
    log(js)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "mlx_probe.json"), "w") as f:
            f.write(js)


def decode_stack():
    H, I, L, NH, NKV, HD, V = (256, 512, 2, 4, 2, 64, 1000) if SMALL else (4096, 12288, 36, 32, 8, 128, 151936)
    shapes = dict(q=(NH * HD, H), k=(NKV * HD, H), v=(NKV * HD, H), o=(H, NH * HD),
                  gate=(I, H), up=(I, H), down=(H, I))
    t = time.perf_counter()
    layers = []
    for li in range(L):
        lw = {}
        for name, (o, i) in shapes.items():
            w = (mx.random.normal((o, i)) * 0.02).astype(mx.bfloat16)
            lw[name] = mx.quantize(w, group_size=64, bits=4)
            mx.eval(*lw[name])
        lw["n1"] = mx.ones((H,), dtype=mx.bfloat16)
        lw["n2"] = mx.ones((H,), dtype=mx.bfloat16)
        lw["qn"] = mx.ones((HD,), dtype=mx.bfloat16)
        lw["kn"] = mx.ones((HD,), dtype=mx.bfloat16)
        layers.append(lw)
    head = mx.quantize((mx.random.normal((V, H)) * 0.02).astype(mx.bfloat16), group_size=64, bits=4)
    mx.eval(*head)
    nbytes = sum(a.nbytes for lw in layers for k in shapes for a in lw[k]) + sum(a.nbytes for a in head)
    log(f"decode stack built in {time.perf_counter() - t:.1f}s: {nbytes/1e9:.3f} GB of 4-bit weights+scales+biases")

    def ql(x, wsb):
        return mx.quantized_matmul(x, *wsb, transpose=True, group_size=64, bits=4)

    def step(h, kv):
        # h: (1,1,H); kv: list of (k,v) caches (1,NKV,ctx,HD)
        for lw, (kc, vc) in zip(layers, kv):
            x = mx.fast.rms_norm(h, lw["n1"], 1e-6)
            q = ql(x, lw["q"]).reshape(1, 1, NH, HD)
            k = ql(x, lw["k"]).reshape(1, 1, NKV, HD)
            v = ql(x, lw["v"]).reshape(1, 1, NKV, HD)
            q = mx.fast.rms_norm(q, lw["qn"], 1e-6).transpose(0, 2, 1, 3)
            k = mx.fast.rms_norm(k, lw["kn"], 1e-6).transpose(0, 2, 1, 3)
            v = v.transpose(0, 2, 1, 3)
            q = mx.fast.rope(q, HD, traditional=False, base=5e6, scale=1.0, offset=kc.shape[2])
            k = mx.fast.rope(k, HD, traditional=False, base=5e6, scale=1.0, offset=kc.shape[2])
            # attend over the existing cache plus the new token (cache not grown: constant cost per step)
            kk = mx.concatenate([kc, k], axis=2)
            vv = mx.concatenate([vc, v], axis=2)
            a = mx.fast.scaled_dot_product_attention(q, kk, vv, scale=HD ** -0.5)
            a = a.transpose(0, 2, 1, 3).reshape(1, 1, NH * HD)
            h = h + ql(a, lw["o"])
            x = mx.fast.rms_norm(h, lw["n2"], 1e-6)
            h = h + ql(nn_silu(ql(x, lw["gate"])) * ql(x, lw["up"]), lw["down"])
        return ql(h, head)

    def nn_silu(x):
        return x * mx.sigmoid(x)

    for ctx in (128, 2048):
        kv = [((mx.random.normal((1, NKV, ctx, HD)) * 0.1).astype(mx.bfloat16),
               (mx.random.normal((1, NKV, ctx, HD)) * 0.1).astype(mx.bfloat16)) for _ in range(L)]
        mx.eval(kv)
        h0 = (mx.random.normal((1, 1, H)) * 0.1).astype(mx.bfloat16)
        for label, f in (("eager", step), ("mx.compile", mx.compile(step))):
            try:
                for _ in range(3):
                    mx.eval(f(h0, kv))
                mx.synchronize()
                ts = []
                for _ in range(20):
                    t = time.perf_counter()
                    logits = f(h0, kv)
                    tok = mx.argmax(logits, axis=-1)
                    tok.item()  # host needs the token, as real decode does
                    ts.append(time.perf_counter() - t)
                med = statistics.median(ts)
                log(f"decode stack ctx={ctx} {label}: median {med*1e3:.2f} ms/token -> {1/med:.0f} tok/s; "
                    f"{nbytes/med/1e9:.0f} GB/s effective")
                RES[f"decode_ctx{ctx}_{label}"] = dict(ms=med * 1e3, tok_s=1 / med, gbs=nbytes / med / 1e9)
            except Exception as e:  # noqa: BLE001
                log(f"decode stack ctx={ctx} {label} failed: {e!r}")
        del kv
    try:
        log("peak memory GB", mx.get_peak_memory() / 1e9)
        RES["peak_mem_gb"] = mx.get_peak_memory() / 1e9
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        RES["error"] = repr(e)
        if os.environ.get("OUT"):
            with open(os.path.join(os.environ["OUT"], "mlx_probe.json"), "w") as f:
                json.dump(RES, f, indent=1)
        sys.exit(1)
