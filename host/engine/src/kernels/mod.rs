//! Our own GPU kernels, through MLX's custom-kernel API (CUDA for now):
//! the fused operations of one decoding step. `bench/gpu/NOTES.md` has the
//! measurements; `bench/gpu/nvrtc_check.py` compiles every variant without a GPU.
//!
//! - `qmv`: 4-bit matrix-vector products, with RMSNorm, residual or SwiGLU fused.
//! - `attention`: one step of attention over the KV cache, RoPE and cache
//!   writes included.
//! - `prefill`: element-wise kernels for prefill and the vision tower (vision
//!   RoPE, SwiGLU, GELU) in place of chains of MLX operations.
//!
//! Kernels are enabled once per process, after a self-check against MLX's own
//! operations on random data; a mismatch leaves them off.

pub mod attention;
pub mod prefill;
pub mod qmv;
pub(crate) mod self_check;
mod source;
pub mod step;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use mlx::kernel::Kernel;
use mlx::{Array, Quantized};

use crate::error::Result;

pub use qmv::{Epilogue, Prologue};
pub use source::set_header_dir;
pub(crate) use source::{compact, header};

/// A compiled kernel: the shared memory size is fixed at creation, so
/// matrix-vector kernels are kept per input width.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KernelKey {
    Qmv(qmv::Variant, i32),
    AttnDecode,
    Prefill(prefill::Op),
}

/// Kernels compiled so far (by the self-check, then on first use).
static COMPILED: OnceLock<Mutex<HashMap<KernelKey, Kernel>>> = OnceLock::new();

/// Whether the kernels passed their self-check (decided once per process).
static ENABLED: OnceLock<bool> = OnceLock::new();

/// Whether the custom kernels are on (set once per process by `enable`).
pub fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

/// Runs `f` with the compiled kernel for `key`, compiling it the first time;
/// returns the kernel's outputs. Callers check `enabled()` (or are the
/// self-check).
fn with_kernel(
    key: KernelKey,
    f: impl FnOnce(&Kernel) -> mlx::Result<Vec<Array>>,
) -> Result<Vec<Array>> {
    let compiled = COMPILED.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = compiled.lock().unwrap_or_else(|p| p.into_inner());
    let kernel = match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(match key {
            KernelKey::Qmv(variant, k) => variant.compile(k)?,
            KernelKey::AttnDecode => attention::compile_decode()?,
            KernelKey::Prefill(op) => op.compile()?,
        }),
    };
    Ok(f(kernel)?)
}

/// Whether `qmv` handles this matrix and input row.
pub fn qmv_applies(x: &Array, q: &Quantized) -> bool {
    qmv::applies(x, q)
}

/// `x · dequantize(q)ᵀ` for a single input row; `x` is `(…, K)` with one row.
pub fn qmv(x: &Array, q: &Quantized) -> Result<Array> {
    qmv::qmv(x, q, Prologue::None, Epilogue::None)
}

/// Turns the kernels on for the CUDA backend if they agree with MLX on
/// random data; returns why not otherwise. Idempotent: the first call decides.
pub fn enable() -> std::result::Result<(), String> {
    let on = *ENABLED.get_or_init(|| {
        if mlx::runtime_backend() != "cuda" || std::env::var_os("VLM_BENCH_NO_KERNELS").is_some() {
            return false;
        }
        match self_check::run() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("warning: custom GPU kernels disabled: {e}");
                false
            }
        }
    });
    if on {
        Ok(())
    } else {
        Err("custom kernels are off (not CUDA, or the self-check failed)".into())
    }
}
