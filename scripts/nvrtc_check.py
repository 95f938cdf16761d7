#!/usr/bin/env python3
"""Compiles our CUDA kernel bodies (host/engine/src/kernels/*.cu) the way MLX's
custom-kernel API wraps them, with NVRTC, for sm_90a: catches compile errors
on a machine without a GPU. Needs libnvrtc and the CUDA headers, e.g.
`pip install "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-cccl==13.*"`.

usage: nvrtc_check.py [SITE_PACKAGES [STEP_KERNEL_DIR]]
  SITE_PACKAGES: where the nvidia/cu13 wheels live; STEP_KERNEL_DIR: standalone
  sources of the step runner's kernels (written by `lab kernel-sources`),
  compiled as they are.
"""
import ctypes
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
KDIR = ROOT / "host/engine/src/kernels"
site = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else next(p for p in sys.path if p.endswith("site-packages")))
cu = site / "nvidia/cu13"
nvrtc = ctypes.CDLL(str(next((cu / "lib").glob("libnvrtc.so*"))))

# What MLX puts before the header; Shape as MLX's device code declares it.
PRELUDE = """
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda/std/array>
#include <cuda/std/cstdint>
using cuda::std::int32_t; using cuda::std::uint32_t;
namespace mlx::core::cu { using Shape = cuda::std::array<int32_t, 8>; }
using mlx::core::cu::Shape;
"""


def wrap(name, header, body, inputs, outputs, consts, defines):
    params = []
    for n, t in inputs:
        params.append(f"const {t}* {n}")
        if f"{n}_shape" in body:
            params.append(f"const __grid_constant__ Shape {n}_shape")
    params += [f"{t}* {n}" for n, t in outputs]
    lines = [f"  constexpr int {k} = {v};" if isinstance(v, int) else f"  using {k} = {v};" for k, v in consts]
    defs = "".join(f"#define {k} {int(v)}\n" for k, v in defines.items())
    return (PRELUDE + header + "namespace mlx::core::cu {\n__global__ void " + name + "(" + ", ".join(params)
            + ") {\n" + "\n".join(lines) + "\n" + defs + body + "\n}\n}\n")


def compile_one(label, src):
    prog = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"k.cu", 0, None, None) == 0
    opts = [b"--gpu-architecture=compute_90a", b"-std=c++17", b"--device-as-default-execution-space",
            f"--include-path={cu / 'include'}".encode(), f"--include-path={cu / 'include/cccl'}".encode()]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    text = log.value.decode(errors="replace").strip()
    print(f"{'ok  ' if rc == 0 else 'FAIL'} {label}" + (f"\n{text}" if text else ""))
    if rc == 0 and "warning" in text:
        print(f"FAIL {label}: compiles with warnings")
        return False
    return rc == 0


def compact(src):
    """As kernels/mod.rs hands sources to MLX: comments and indentation stripped."""
    lines = (line[:line.find("//")] if "//" in line else line for line in src.splitlines())
    return "\n".join(line.strip() for line in lines if line.strip())


def headers(*names, where=KDIR):
    """The headers a kernel gets, as kernels/mod.rs joins them (MLX appends its code right after)."""
    return "\n".join(compact((where / n).read_text()) for n in names) + "\n"


def main():
    qmv_header = headers("q4_dot.cuh", "phases.cuh", "qmv4.cuh")
    attn_header = headers("q4_dot.cuh", "phases.cuh", "attn.cuh")
    qmv = (KDIR / "qmv4.cu").read_text()
    attn = "#define CACHE_CAP kc_shape[2]\n" + (KDIR / "attn_decode.cu").read_text()
    ok = True
    bf = "__nv_bfloat16"
    for t in [bf, "__half"]:
        q4 = [("w", "uint32_t"), ("scales", t), ("biases", t)]
        for norm, resid, swiglu in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 0, 1)]:
            ins = [("x", t)] + ([("nw", t)] if norm else []) + q4 + ([("res", t)] if resid else [])
            # The 8B's shapes with the launch shapes qmv.rs picks for them, and
            # a width whose 9 k-tiles do not split evenly between the warps.
            for k, n, warps, u in [(4096, 6144, 8, 2), (4096, 4096, 16, 2), (12288, 4096, 8, 4),
                                   (4096, 24576, 4, 2), (1152, 40, 8, 2)]:
                src = wrap("qmv", qmv_header, qmv, ins, [("out", t)],
                           [("T", t), ("K", k), ("N", n), ("WARPS", warps), ("U", u), ("PERSIST", 0)]
                           + ([("EPS_BITS", 897988541)] if norm else []),
                           {"NORM": norm, "RESID": resid, "SWIGLU": swiglu, "ARGMAX": 0})
                ok &= compile_one(f"qmv4 {t} norm={norm} resid={resid} swiglu={swiglu} K={k} N={n}", src)
    consts = [("T", bf), ("HD", 128), ("NH", 32), ("NKV", 8), ("SPLITS", 16), ("EPS_BITS", 897988541),
              ("LOG2_THETA_BITS", 1102651709), ("SCALE_BITS", 1035098684)]
    attn_ins = [("qkv", bf), ("qn", bf), ("kn", bf), ("kc", bf), ("vc", bf), ("meta", "int32_t"),
                ("counters", "int32_t")]
    # The 8B's layout, and the other head sizes and group sizes Heads::supported accepts.
    for hd, nh, nkv in [(128, 32, 8), (64, 16, 8), (256, 64, 8)]:
        layout = [("T", bf), ("HD", hd), ("NH", nh), ("NKV", nkv)] + consts[4:]
        src = wrap("attn", attn_header, attn, attn_ins, [("part", "float"), ("out", bf)], layout, {})
        ok &= compile_one(f"attn_decode HD={hd} NH={nh} NKV={nkv}", src)
    for t in [bf, "__half"]:
        src = wrap("vision_rope", "", (KDIR / "vision_rope.cu").read_text(),
                   [("qkv", t), ("cos_t", "float"), ("sin_t", "float")], [("q", t), ("k", t), ("v", t)],
                   [("T", t), ("HEADS", 16), ("HD", 72)], {})
        ok &= compile_one(f"vision_rope {t}", src)
        src = wrap("text_qk", "", (KDIR / "text_qk.cu").read_text(),
                   [("qkv", t), ("qn", t), ("kn", t), ("cos_t", t), ("sin_t", t)], [("q", t), ("k", t), ("v", t)],
                   [("T", t), ("NH", 32), ("NKV", 8), ("HD", 128), ("EPS_BITS", 897988541)], {})
        ok &= compile_one(f"text_qk {t}", src)
        src = wrap("swiglu", "", (KDIR / "swiglu.cu").read_text(), [("y", t)], [("out", t)],
                   [("T", t), ("I", 12288), ("V", 8)], {})
        ok &= compile_one(f"swiglu {t}", src)
        src = wrap("gelu_tanh", "", (KDIR / "gelu_tanh.cu").read_text(), [("x", t)], [("out", t)], [("T", t), ("V", 8)], {})
        ok &= compile_one(f"gelu_tanh {t}", src)
    if len(sys.argv) > 2:
        files = sorted(pathlib.Path(sys.argv[2]).glob("*.cu"))
        if not files:
            print(f"FAIL no step kernels in {sys.argv[2]}")
            ok = False
        for f in files:
            src = f.read_text()
            name = re.search(r'extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?(?:__cluster_dims__\([^)]*\) )?(\w+)\(', src).group(1)
            ok &= compile_one(f"step kernel {name} ({f.name})", src)
    sys.exit(0 if ok else 1)


main()
