//! Our own GPU kernels, through MLX's custom-kernel API (CUDA for now).
//!
//! `qmv`: one input row times a 4-bit affine-quantized matrix (group 64), the
//! matrix-vector product that dominates decoding. MLX 0.32's CUDA qmv reaches
//! about 27% of the H100's copy bandwidth (`shared/device/peer-baselines.md`);
//! this one streams the packed weights with 16-byte loads, one warp per row,
//! and keeps the input row in shared memory laid out so that the 32 lanes of
//! a warp never hit the same bank. `bench/gpu/NOTES.md` has the measurements.
//!
//! Kernels are enabled once per process, after a self-check against MLX's own
//! `quantized_matmul` on random data; a mismatch leaves them off.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
use mlx::{Array, Dtype, Quantized};

use crate::error::Result;

/// Warps per block, and rows each warp computes.
const WARPS: i32 = 8;
const ROWS_PER_WARP: i32 = 4;

const QMV_SOURCE: &str = r#"
    // x: (K) input row; w: (N, K/8) packed 4-bit codes; scales, biases: (N, K/64).
    // out[n] = sum_k x[k] * (s[n, k/64] * q[n, k] + b[n, k/64])
    constexpr int CHUNKS = K / 32;          // 16-byte chunks of 32 codes per row
    constexpr int PAD = 33;                 // floats per chunk in shared memory
    extern __shared__ float xs[];
    const int tid = threadIdx.x;
    // Chunk c of x goes to xs[c * 33 ...]: lane l then reads bank (l + m) % 32.
    for (int i = tid; i < K; i += blockDim.x) {
        xs[(i >> 5) * PAD + (i & 31)] = static_cast<float>(x[i]);
    }
    __syncthreads();
    const int warp = tid >> 5, lane = tid & 31;
    const int first = (blockIdx.x * WARPS + warp) * ROWS;
    for (int r = 0; r < ROWS; ++r) {
        const int n = first + r;
        if (n >= N) return;
        const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<size_t>(n) * (K / 8));
        const T* sr = scales + static_cast<size_t>(n) * (K / 64);
        const T* br = biases + static_cast<size_t>(n) * (K / 64);
        float acc = 0.f;
        for (int c = lane; c < CHUNKS; c += 32) {
            const uint4 v = wr[c];
            const float* xc = xs + c * PAD;
            const unsigned words[4] = {v.x, v.y, v.z, v.w};
            float dot = 0.f, xsum = 0.f;
            #pragma unroll
            for (int j = 0; j < 4; ++j) {
                #pragma unroll
                for (int t = 0; t < 8; ++t) {
                    const float xv = xc[j * 8 + t];
                    dot = fmaf(xv, static_cast<float>((words[j] >> (4 * t)) & 0xFu), dot);
                    xsum += xv;
                }
            }
            const int g = c >> 1;
            acc = fmaf(static_cast<float>(sr[g]), dot, fmaf(static_cast<float>(br[g]), xsum, acc));
        }
        #pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if (lane == 0) out[n] = static_cast<T>(acc);
    }
"#;

struct Kernels {
    /// Compiled kernels by input width (the shared memory size depends on it).
    qmv: Mutex<HashMap<i32, Kernel>>,
}

static KERNELS: OnceLock<Option<Kernels>> = OnceLock::new();

/// Whether the custom kernels are on (set once per process by `enable`).
pub fn enabled() -> bool {
    KERNELS.get().is_some_and(Option::is_some)
}

fn qmv_kernel(k: i32) -> Result<Kernel> {
    let spec = KernelSpec {
        name: "vlmbench_qmv4",
        inputs: &["x", "w", "scales", "biases"],
        outputs: &["out"],
        source: QMV_SOURCE,
        header: "",
        ensure_row_contiguous: true,
    };
    let shared = (k / 32) * 33 * 4;
    Ok(Kernel::cuda(&spec, shared)?)
}

/// Whether `qmv` handles this matrix and input.
pub fn qmv_applies(x: &Array, q: &Quantized) -> bool {
    let shape = x.shape();
    let k = *shape.last().unwrap_or(&0);
    let rows: i32 = shape[..shape.len().saturating_sub(1)].iter().product();
    enabled()
        && rows == 1
        && q.bits == 4
        && q.group_size == 64
        && k % 64 == 0
        && k <= 16384
        && q.weight.ndim() == 2
        && q.weight.dim(1) * 8 == k
        && matches!(q.scales.dtype(), Dtype::BF16 | Dtype::F16)
        && x.dtype() == q.scales.dtype()
}

/// `x · dequantize(q)ᵀ` for a single input row; `x` is `(…, K)` with one row.
pub fn qmv(x: &Array, q: &Quantized) -> Result<Array> {
    let kernels = KERNELS
        .get()
        .and_then(Option::as_ref)
        .expect("qmv called while the kernels are off");
    launch(kernels, x, q)
}

fn launch(kernels: &Kernels, x: &Array, q: &Quantized) -> Result<Array> {
    let k = x.dim(-1);
    let n = q.weight.dim(0);
    let mut cache = kernels.qmv.lock().unwrap_or_else(|p| p.into_inner());
    let kernel = match cache.entry(k) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(qmv_kernel(k)?),
    };
    let per_block = WARPS * ROWS_PER_WARP;
    let blocks = (n + per_block - 1) / per_block;
    // The output takes x's shape with N columns directly: no reshape nodes,
    // which cost as much as a small kernel in MLX's CUDA graph.
    let mut shape = x.shape();
    *shape.last_mut().expect("x has an axis") = n;
    let out = kernel.call(
        &[x, &q.weight, &q.scales, &q.biases],
        &Launch {
            output_shapes: vec![shape],
            output_dtypes: vec![x.dtype()],
            grid: [blocks * WARPS * 32, 1, 1],
            threadgroup: [WARPS * 32, 1, 1],
            template: vec![
                ("T", TemplateArg::Dtype(x.dtype())),
                ("K", TemplateArg::Int(k)),
                ("N", TemplateArg::Int(n)),
                ("WARPS", TemplateArg::Int(WARPS)),
                ("ROWS", TemplateArg::Int(ROWS_PER_WARP)),
            ],
            init_value: None,
        },
    )?;
    Ok(out.into_iter().next().expect("one output"))
}

/// Turns the kernels on for the CUDA backend if they agree with MLX on
/// random data (relative error under 1e-2 in bf16); returns why not otherwise.
/// Idempotent: the first call decides.
pub fn enable() -> std::result::Result<(), String> {
    let state = KERNELS.get_or_init(|| {
        if mlx::runtime_backend() != "cuda" || std::env::var_os("VLM_BENCH_NO_KERNELS").is_some() {
            return None;
        }
        let kernels = Kernels {
            qmv: Mutex::new(HashMap::new()),
        };
        match self_check(&kernels) {
            Ok(()) => Some(kernels),
            Err(e) => {
                eprintln!("warning: custom GPU kernels disabled: {e}");
                None
            }
        }
    });
    if state.is_some() {
        Ok(())
    } else {
        Err("custom kernels are off (not CUDA, or the self-check failed)".into())
    }
}

fn self_check(kernels: &Kernels) -> std::result::Result<(), String> {
    let run = || -> Result<f32> {
        let mut worst = 0f32;
        for (n, k) in [(96, 256), (300, 4096), (64, 12288)] {
            let key = mlx::random::key(n as u64 * 7 + k as u64)?;
            let keys = mlx::random::split(&key, 2)?;
            let w = mlx::random::normal(&[n, k], Dtype::BF16, 0.0, 0.05, &keys[0])?;
            let x = mlx::random::normal(&[1, k], Dtype::BF16, 0.0, 1.0, &keys[1])?;
            let q = mlx::quantize(&w, 64, 4)?;
            let reference = q.matmul_t(&x)?.astype(Dtype::F32)?.to_vec::<f32>()?;
            let ours = launch(kernels, &x, &q)?
                .astype(Dtype::F32)?
                .to_vec::<f32>()?;
            let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let err = reference
                .iter()
                .zip(&ours)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            worst = worst.max(err);
        }
        Ok(worst)
    };
    match run() {
        Ok(err) if err < 1e-2 => Ok(()),
        Ok(err) => Err(format!("qmv differs from MLX by {err:.2e} (relative)")),
        Err(e) => Err(format!("qmv failed: {e}")),
    }
}
