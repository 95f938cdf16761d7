//! Our own GPU kernels, through MLX's custom-kernel API (CUDA for now), and
//! the sources of the standalone kernels the step runner launches
//! (`crate::decode`). `docs/performance.md` describes them and what they
//! gained; `scripts/check_kernels.sh` compiles every variant without a GPU.
//!
//! - `qmv`: 4-bit matrix-vector products, with RMSNorm, residual or SwiGLU fused.
//! - `attention`: one step of attention over the KV cache, RoPE and cache
//!   writes included.
//! - `prefill`: element-wise kernels for prefill and the vision tower (vision
//!   RoPE, SwiGLU, GELU) in place of chains of MLX operations.
//!
//! A [`Kernels`] is made once per engine, after a self-check against MLX's
//! own operations on random data; a mismatch leaves the kernels off.

pub mod attention;
pub mod catalog;
pub mod launch;
pub mod prefill;
pub mod qmv;
pub(crate) mod self_check;
mod source;
pub mod step;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mlx::kernel::Kernel;
use mlx::{Array, Quantized};

use crate::error::Result;

pub use launch::LaunchTuning;
pub use qmv::{Epilogue, Prologue};
pub(crate) use source::compact;

/// A kernel compiled for MLX's custom-kernel API: the shared memory size is
/// fixed at creation, so matrix-vector kernels are kept per input width.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KernelKey {
    Qmv(qmv::Variant, i32),
    AttnDecode,
    Prefill(prefill::Op),
}

/// What the kernels are asked to do, resolved at the edge.
#[derive(Debug, Clone, Default)]
pub struct KernelOptions {
    /// Use them where the backend has them (off: MLX's operations only).
    pub enabled: bool,
    /// Launches other than the defaults, and the GPU's SM count.
    pub launch: LaunchTuning,
    /// Where shared device functions are written for the sources to include
    /// (`source.rs`); `None` keeps them inline.
    pub header_dir: Option<PathBuf>,
}

/// The kernels of one engine: whether they are on, the launch settings,
/// and the kernels compiled so far (by the self-check, then on first use).
pub struct Kernels {
    on: bool,
    launch: LaunchTuning,
    header_dir: Option<PathBuf>,
    compiled: Mutex<HashMap<KernelKey, Kernel>>,
}

impl Kernels {
    /// No custom kernels: MLX's operations everywhere.
    pub fn off() -> Arc<Kernels> {
        Arc::new(Kernels::with(false, KernelOptions::default()))
    }

    /// The kernels for this process's device when asked for and the backend
    /// has them (CUDA), if they agree with MLX on random data; else off, with
    /// the reason when there is one worth a warning.
    pub fn start(options: KernelOptions) -> (Arc<Kernels>, Option<String>) {
        if !options.enabled || mlx::runtime_backend() != "cuda" {
            return (Arc::new(Kernels::with(false, options)), None);
        }
        let mut kernels = Kernels::with(true, options);
        match self_check::run(&kernels) {
            Ok(()) => (Arc::new(kernels), None),
            Err(e) => {
                kernels.on = false;
                let why = format!("custom GPU kernels disabled: {e}");
                (Arc::new(kernels), Some(why))
            }
        }
    }

    fn with(on: bool, options: KernelOptions) -> Kernels {
        Kernels {
            on,
            launch: options.launch,
            header_dir: options.header_dir,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the kernels are on.
    pub fn enabled(&self) -> bool {
        self.on
    }

    /// The launch settings the products follow.
    pub fn launch(&self) -> &LaunchTuning {
        &self.launch
    }

    /// The shared device functions `parts` as a kernel source includes them.
    fn header(&self, parts: &[&str]) -> String {
        source::header_in(self.header_dir.as_deref(), parts)
    }

    /// Runs `f` with the compiled kernel for `key`, compiling it the first
    /// time; returns the kernel's outputs. Callers check `enabled()` (or are
    /// the self-check).
    fn with_kernel(
        &self,
        key: KernelKey,
        f: impl FnOnce(&Kernel) -> mlx::Result<Vec<Array>>,
    ) -> Result<Vec<Array>> {
        let mut map = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let kernel = match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(match key {
                KernelKey::Qmv(variant, k) => {
                    variant.compile(k, &self.header(&qmv::Variant::HEADERS))?
                }
                KernelKey::AttnDecode => {
                    attention::compile_decode(&self.header(&attention::HEADERS))?
                }
                KernelKey::Prefill(op) => op.compile()?,
            }),
        };
        Ok(f(kernel)?)
    }

    /// Whether `qmv` handles this matrix and input row.
    pub fn qmv_applies(&self, x: &Array, q: &Quantized) -> bool {
        qmv::applies(self, x, q)
    }

    /// `x · dequantize(q)ᵀ` for a single input row; `x` is `(…, K)` with one row.
    pub fn qmv(&self, x: &Array, q: &Quantized) -> Result<Array> {
        qmv::qmv(self, x, q, Prologue::None, Epilogue::None)
    }
}
