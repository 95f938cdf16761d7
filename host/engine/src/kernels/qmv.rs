//! One input row times a 4-bit affine-quantized matrix (group 64): the
//! matrix-vector product that dominates decoding, with the operations around
//! it fused in (`qmv4.cu`). MLX 0.32's CUDA qmv reaches about 27% of the H100's
//! copy bandwidth (`bench/runs/2026-11-26-h100-mlx-probe.md`); this one multiplies on
//! tensor cores, so that turning codes into numbers costs one instruction per
//! two codes, and streams the packed weights with 16-byte loads issued before
//! the prologue (`docs/experiments.md`, "Why the GEMVs were slow").

use mlx::cuda::Dims;
use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
use mlx::{Array, Dtype, Quantized};

use super::launch::LaunchTuning;
use super::step::{Param, Placement, StepKernel};
use super::{KernelKey, Kernels};
use crate::error::Result;

/// Output rows per block: 16 rows of the matrix (8 gate/up pairs for SwiGLU).
fn rows_per_block(swiglu: bool) -> i32 {
    if swiglu { 8 } else { 16 }
}

/// Warps per block (they split the input width) and k-tiles whose loads a
/// warp issues at once, for a `k`-wide input in `blocks` blocks on a GPU of
/// `sms` SMs. Measured on the H100 at the 8B's shapes
/// (`docs/experiments.md`, "GEMV launch shapes and weight loading"): few
/// blocks want more warps
/// each, wide inputs deeper batches. At 8 warps the 8B's q/k/v (384 blocks)
/// fits one wave of the H100 (80 registers a thread, 3 blocks on each of 132
/// SMs) and each block has half its weights in flight before its wait: +2 to
/// +3.5% decode. The bound of 512 blocks lies between q/k/v and gate/up
/// (1536), which lost at 8 warps.
///
/// 16 warps where one batch of theirs covers the whole input and two blocks
/// an SM cover the rows (the 8B's o projection: K 4096, 256 blocks): at 8
/// warps its blocks, launched during the attention, packed three to an SM
/// on half the SMs, which ended 1.4–1.7 µs later; at 16 at most two share an
/// SM: +0.4 to +1.4% decode at 1024x1024 and 1920x1080, −0.2% at 448x448.
fn launch_shape(k: i32, blocks: i32, sms: i32) -> (i32, i32) {
    let tiles_at_once = if k > 4096 { 4 } else { 2 };
    let warps = if blocks <= 2 * sms && k / 128 == 16 * tiles_at_once {
        16
    } else if blocks <= 512 {
        8
    } else {
        4
    };
    (warps, tiles_at_once)
}

/// Blocks of a persistent launch of the step runner's product for `blocks`
/// row groups in blocks of `warps` warps on `sms` SMs (each block takes every
/// grid-th group, its input staged once), or 0 for a block a group. Measured
/// on the H100 for the 8B's gate/up (1536 groups, 4 warps): 512 blocks of 3
/// groups (4 blocks an SM) +0.2 to +1.2% decode, 384 blocks −6%, 256 of 8
/// warps −4% (`docs/experiments.md`, "Gate/up as persistent blocks"). So: 4-warp
/// launches of more than one wave (4 blocks on each SM) whose groups split
/// evenly into 8/11 of a wave to a wave (384 to 528 blocks on an H100); the
/// 8B's LM head (9496 groups) has no such split.
fn persistent_grid(blocks: i32, warps: i32, sms: i32) -> i32 {
    let wave = 4 * sms;
    if warps != 4 || blocks <= wave {
        return 0;
    }
    (wave * 8 / 11..=wave)
        .rev()
        .find(|g| blocks % g == 0)
        .unwrap_or(0)
}

/// Dynamic shared memory: the input row as 32-code chunks of 20 words (16
/// used) and one f32 sum per group of 64.
fn shared_bytes(k: i32) -> i32 {
    (k / 32) * 20 * 4 + (k / 64) * 4
}

/// What happens to the input row before the product.
#[derive(Clone, Copy)]
pub enum Prologue<'a> {
    None,
    /// RMSNorm by `weight` with `eps`, as `fast::rms_norm` computes and
    /// rounds it.
    RmsNorm {
        weight: &'a Array,
        eps: f32,
    },
}

/// What happens to the product.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    None,
    /// `residual + product`.
    Residual(&'a Array),
    /// The matrix is gate rows then up rows; out = silu(gate) * up.
    SwiGlu,
}

/// The kernel variants: which inputs they take and which code they enable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Variant {
    Plain,
    Norm,
    Residual,
    NormSwiGlu,
}

impl Variant {
    fn of(prologue: &Prologue<'_>, epilogue: &Epilogue<'_>) -> Option<Variant> {
        match (prologue, epilogue) {
            (Prologue::None, Epilogue::None) => Some(Variant::Plain),
            (Prologue::RmsNorm { .. }, Epilogue::None) => Some(Variant::Norm),
            (Prologue::None, Epilogue::Residual(_)) => Some(Variant::Residual),
            (Prologue::RmsNorm { .. }, Epilogue::SwiGlu) => Some(Variant::NormSwiGlu),
            _ => None,
        }
    }

    fn flags(self) -> (bool, bool, bool) {
        match self {
            Variant::Plain => (false, false, false),
            Variant::Norm => (true, false, false),
            Variant::Residual => (false, true, false),
            Variant::NormSwiGlu => (true, false, true),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "vlmbench_qmv4",
            Variant::Norm => "vlmbench_qmv4_norm",
            Variant::Residual => "vlmbench_qmv4_res",
            Variant::NormSwiGlu => "vlmbench_qmv4_norm_swiglu",
        }
    }

    /// The inputs, in order, for `(x, nw, w, scales, biases, res)` of
    /// element type `dtype` (the packed weights are `u32`).
    fn inputs(self, dtype: Dtype) -> Vec<(&'static str, Dtype)> {
        let (norm, resid, _) = self.flags();
        let mut inputs = vec![("x", dtype)];
        if norm {
            inputs.push(("nw", dtype));
        }
        inputs.extend([("w", Dtype::U32), ("scales", dtype), ("biases", dtype)]);
        if resid {
            inputs.push(("res", dtype));
        }
        inputs
    }

    /// The kernel's body; with `argmax`, the argmax of its outputs follows
    /// ([`argmax_step_kernel`]).
    fn body(self, argmax: bool) -> String {
        let (norm, resid, swiglu) = self.flags();
        super::compact(&format!(
            "#define NORM {}\n#define RESID {}\n#define SWIGLU {}\n#define ARGMAX {}\n{}",
            norm as i32,
            resid as i32,
            swiglu as i32,
            argmax as i32,
            include_str!("qmv4.cu")
        ))
    }

    /// The device functions the kernel includes, as one header.
    pub(super) const HEADERS: [&'static str; 3] = [
        include_str!("q4_dot.cuh"),
        include_str!("phases.cuh"),
        include_str!("qmv4.cuh"),
    ];

    /// The kernel for MLX's custom-kernel API, for inputs `k` wide (its
    /// shared memory is fixed at creation); `header` is what the source
    /// includes ([`Kernels::header`]).
    pub(super) fn compile(self, k: i32, header: &str) -> Result<Kernel> {
        let names: Vec<&str> = self.inputs(Dtype::BF16).iter().map(|(n, _)| *n).collect();
        let spec = KernelSpec {
            name: self.name(),
            inputs: &names,
            outputs: &["out"],
            source: &self.body(false),
            header,
            ensure_row_contiguous: true,
        };
        Ok(Kernel::cuda(&spec, shared_bytes(k))?)
    }

    /// The standalone kernel (`step.rs`) for a `n x k` matrix and its launch
    /// under `tuning`: parameters are the inputs in order, then `out`.
    pub fn step_kernel(
        self,
        tuning: &LaunchTuning,
        k: i32,
        n: i32,
        dtype: Dtype,
        eps: f32,
    ) -> Result<StepKernel> {
        let launch = LaunchShape::step(tuning, k, n, self.flags().2);
        self.step_kernel_as(tuning, launch, k, n, dtype, eps, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn step_kernel_as(
        self,
        tuning: &LaunchTuning,
        launch: LaunchShape,
        k: i32,
        n: i32,
        dtype: Dtype,
        eps: f32,
        argmax: bool,
    ) -> Result<StepKernel> {
        let mut params: Vec<Param> = self
            .inputs(dtype)
            .into_iter()
            .map(|(name, d)| Param::In(name, d))
            .collect();
        params.push(Param::Out("out", dtype));
        if argmax {
            params.extend([
                Param::Out("meta", Dtype::I32),
                Param::Out("pick", Dtype::U32),
            ]);
        }
        let template = template(dtype, k, n, &launch, self.flags().0.then_some(eps));
        let shared = shared_bytes(k).max(tuning.shared_bytes(k, n).unwrap_or(0));
        let dims = Dims {
            blocks: launch.launched_blocks() as u32,
            threads: (launch.warps * 32) as u32,
            shared_bytes: shared as u32,
        };
        let placement = Placement {
            cluster: 1,
            min_blocks: launch.min_blocks as u32,
        };
        super::step::standalone(
            self.name(),
            placement,
            &super::source::inline_header(&Self::HEADERS),
            &self.body(argmax),
            &params,
            &template,
            dims,
        )
    }
}

/// The LM head's step kernel: RMSNorm and the product as
/// [`Variant::Norm`]'s, and the step's `[len, pos]` advanced; each block's
/// largest output joins an atomic maximum in `pick` (two `u32`, zero before)
/// whose low half is `0xFFFFFFFF -` the first index of the largest output
/// (MLX's argmax; NaNs never win). The next step's embedding lookup takes
/// its token from there ([`super::step::embed4`]). Parameters `x, nw, w,
/// scales, biases, out, meta, pick`. Saves the argmax's own launch, one
/// block reading every logit (~6 µs a step on the H100; `docs/experiments.md`,
/// "The argmax inside the LM head").
pub fn argmax_step_kernel(
    tuning: &LaunchTuning,
    k: i32,
    n: i32,
    dtype: Dtype,
    eps: f32,
) -> Result<StepKernel> {
    let launch = LaunchShape::step(tuning, k, n, false);
    Variant::Norm.step_kernel_as(tuning, launch, k, n, dtype, eps, true)
}

/// Blocks, warps per block and k-tiles in flight for an `n x k` matrix.
struct LaunchShape {
    blocks: i32,
    warps: i32,
    tiles_at_once: i32,
    /// Blocks an SM the step kernel is compiled to fit (0: the compiler's choice).
    min_blocks: i32,
    /// Blocks launched, each taking every `grid`-th row group (0: one block
    /// a row group).
    grid: i32,
}

impl LaunchShape {
    /// Blocks a launch has: the persistent grid, or one a row group.
    fn launched_blocks(&self) -> i32 {
        if self.grid > 0 {
            self.grid
        } else {
            self.blocks
        }
    }

    /// The step runner's launch: [`LaunchShape::of`], persistent where
    /// [`persistent_grid`] or the tuning says.
    fn step(tuning: &LaunchTuning, k: i32, n: i32, swiglu: bool) -> LaunchShape {
        let mut launch = LaunchShape::of(tuning, k, n, swiglu);
        launch.grid = tuning.grid(k, n).map_or_else(
            || persistent_grid(launch.blocks, launch.warps, tuning.sm_count()),
            |g| g.min(launch.blocks),
        );
        launch
    }

    fn of(tuning: &LaunchTuning, k: i32, n: i32, swiglu: bool) -> LaunchShape {
        let width = if swiglu { n / 2 } else { n };
        let per_block = rows_per_block(swiglu);
        let blocks = (width + per_block - 1) / per_block;
        let (warps, tiles_at_once, min_blocks) = tuning.shape(k, n).unwrap_or_else(|| {
            let (w, u) = launch_shape(k, blocks, tuning.sm_count());
            (w, u, 0)
        });
        LaunchShape {
            blocks,
            warps,
            tiles_at_once,
            min_blocks,
            grid: 0,
        }
    }
}

fn template(
    dtype: Dtype,
    k: i32,
    n: i32,
    launch: &LaunchShape,
    eps: Option<f32>,
) -> Vec<(&'static str, TemplateArg)> {
    let mut template = vec![
        ("T", TemplateArg::Dtype(dtype)),
        ("K", TemplateArg::Int(k)),
        ("N", TemplateArg::Int(n)),
        ("WARPS", TemplateArg::Int(launch.warps)),
        ("U", TemplateArg::Int(launch.tiles_at_once)),
        ("PERSIST", TemplateArg::Int(i32::from(launch.grid > 0))),
    ];
    if let Some(eps) = eps {
        template.push(("EPS_BITS", TemplateArg::Int(eps.to_bits() as i32)));
    }
    template
}

/// Whether the kernel handles this matrix and a single input row `x`.
pub fn applies(kernels: &Kernels, x: &Array, q: &Quantized) -> bool {
    let shape = x.shape();
    let k = *shape.last().unwrap_or(&0);
    let rows: i32 = shape[..shape.len().saturating_sub(1)].iter().product();
    kernels.enabled() && rows == 1 && fits(k, x.dtype(), q)
}

/// Whether the kernel handles this matrix for input rows of width `k` in
/// `dtype` (4-bit, group 64, the input's float type, whole k-tiles of 128).
pub fn fits(k: i32, dtype: Dtype, q: &Quantized) -> bool {
    q.bits == 4
        && q.group_size == 64
        && k % 128 == 0
        && k <= 16384
        && q.weight.ndim() == 2
        && q.weight.dim(1) * 8 == k
        && matches!(q.scales.dtype(), Dtype::BF16 | Dtype::F16)
        && dtype == q.scales.dtype()
}

/// `epilogue(prologue(x) · dequantize(q)ᵀ)` for a single row `x` `(…, K)`;
/// the output keeps `x`'s shape with the product's width last.
pub fn qmv(
    kernels: &Kernels,
    x: &Array,
    q: &Quantized,
    prologue: Prologue<'_>,
    epilogue: Epilogue<'_>,
) -> Result<Array> {
    let variant = Variant::of(&prologue, &epilogue)
        .ok_or_else(|| crate::error::Error::Model("qmv: unsupported fusion".into()))?;
    let k = x.dim(-1);
    let n = q.weight.dim(0);
    let swiglu = matches!(epilogue, Epilogue::SwiGlu);
    let width = if swiglu { n / 2 } else { n };
    let mut inputs: Vec<&Array> = vec![x];
    if let Prologue::RmsNorm { weight, .. } = &prologue {
        inputs.push(weight);
    }
    inputs.extend([&q.weight, &q.scales, &q.biases]);
    if let Epilogue::Residual(r) = &epilogue {
        inputs.push(r);
    }
    let launch = LaunchShape::of(kernels.launch(), k, n, swiglu);
    let mut shape = x.shape();
    *shape.last_mut().expect("x has an axis") = width;
    let eps = match prologue {
        Prologue::RmsNorm { eps, .. } => Some(eps),
        Prologue::None => None,
    };
    let template = template(x.dtype(), k, n, &launch, eps);
    let mut outs = kernels.with_kernel(KernelKey::Qmv(variant, k), |kernel| {
        kernel.call(
            &inputs,
            &Launch {
                output_shapes: vec![shape],
                output_dtypes: vec![x.dtype()],
                grid: [launch.blocks * launch.warps * 32, 1, 1],
                threadgroup: [launch.warps * 32, 1, 1],
                template,
                init_value: None,
            },
        )
    })?;
    Ok(outs.pop().expect("one output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_compiled_fusions_are_offered() {
        let w = Array::ones(&[4], Dtype::BF16).unwrap();
        let norm = Prologue::RmsNorm {
            weight: &w,
            eps: 1e-6,
        };
        let cases = [
            (Prologue::None, Epilogue::None, Some(Variant::Plain)),
            (norm, Epilogue::None, Some(Variant::Norm)),
            (
                Prologue::None,
                Epilogue::Residual(&w),
                Some(Variant::Residual),
            ),
            (norm, Epilogue::SwiGlu, Some(Variant::NormSwiGlu)),
            (norm, Epilogue::Residual(&w), None),
            (Prologue::None, Epilogue::SwiGlu, None),
        ];
        for (p, e, want) in cases {
            assert_eq!(Variant::of(&p, &e), want);
        }
    }

    /// The 4-bit matrices of the dense Qwen3-VL family's decoding step (input
    /// width, rows, SwiGLU): q/k/v, o, gate/up, down and the LM head of the
    /// 2B, 4B, 8B and 32B.
    fn family_matrices() -> Vec<(i32, i32, bool)> {
        let mut all = vec![];
        // (hidden, heads, kv heads, intermediate), head dim 128, vocab 151936.
        for (h, nh, nkv, inter) in [
            (2048, 16, 8, 6144),
            (2560, 32, 8, 9728),
            (4096, 32, 8, 12288),
            (5120, 64, 8, 25600),
        ] {
            all.extend([
                (h, (nh + 2 * nkv) * 128, false),
                (nh * 128, h, false),
                (h, 2 * inter, true),
                (inter, h, false),
                (h, 151_936, false),
            ]);
        }
        all
    }

    #[test]
    fn every_launch_covers_its_rows_once_within_a_blocks_limits() {
        for sms in [78, 114, 132, 144] {
            let tuning = LaunchTuning {
                sms,
                ..LaunchTuning::default()
            };
            for (k, n, swiglu) in family_matrices() {
                let what = format!("{k} x {n} on {sms} SMs");
                let width = if swiglu { n / 2 } else { n };
                let per_block = rows_per_block(swiglu);
                for launch in [
                    LaunchShape::of(&tuning, k, n, swiglu),
                    LaunchShape::step(&tuning, k, n, swiglu),
                ] {
                    // Row groups: enough for every row, none empty.
                    assert!(launch.blocks * per_block >= width, "{what}");
                    assert!((launch.blocks - 1) * per_block < width, "{what}");
                    assert!(matches!(launch.warps, 4 | 8 | 16), "{what}");
                    assert!(matches!(launch.tiles_at_once, 2 | 4), "{what}");
                    // A persistent grid takes every group: as many each.
                    if launch.grid > 0 {
                        assert!(launch.grid < launch.blocks, "{what}");
                        assert_eq!(launch.blocks % launch.grid, 0, "{what}");
                        assert!(launch.grid <= 4 * sms, "{what}");
                    }
                    assert!(launch.launched_blocks() > 0, "{what}");
                }
                let kernel = Variant::Norm
                    .step_kernel(&tuning, k, n, Dtype::BF16, 1e-6)
                    .unwrap();
                assert!(kernel.dims.threads <= 1024, "{what}");
                assert!(kernel.dims.shared_bytes as i32 <= super::super::launch::MAX_SHARED_BYTES);
            }
        }
    }

    #[test]
    fn fewer_blocks_than_the_gpu_holds_get_more_warps_each() {
        // The same matrix on a larger GPU never gets fewer warps a block.
        for (k, n, swiglu) in family_matrices() {
            let (width, per_block) = (if swiglu { n / 2 } else { n }, rows_per_block(swiglu));
            let blocks = (width + per_block - 1) / per_block;
            let small = launch_shape(k, blocks, 78).0;
            let large = launch_shape(k, blocks, 144).0;
            assert!(large >= small, "{k} x {n}");
        }
    }

    #[test]
    fn asked_launches_replace_the_defaults_for_their_matrix_only() {
        let tuning = LaunchTuning {
            shapes: vec![((4096, 6144), (16, 4, 2))],
            grids: vec![((4096, 24576), 0), ((4096, 4096), 128)],
            shared: vec![((4096, 6144), 120_000)],
            ..LaunchTuning::default()
        };
        let qkv = Variant::Norm
            .step_kernel(&tuning, 4096, 6144, Dtype::BF16, 1e-6)
            .unwrap();
        assert_eq!(qkv.dims.threads, 16 * 32);
        assert_eq!(qkv.dims.shared_bytes, 120_000);
        // Asked to fit 2 blocks an SM: the kernel is placed so.
        assert_eq!(qkv.placement.min_blocks, 2);
        // A grid of 0 asks for a block a row group; a grid is at most the groups.
        let gate_up = LaunchShape::step(&tuning, 4096, 24576, true);
        assert_eq!((gate_up.grid, gate_up.launched_blocks()), (0, 1536));
        let o = LaunchShape::step(&tuning, 4096, 4096, false);
        assert_eq!(o.launched_blocks(), 128);
        let default = LaunchShape::step(&LaunchTuning::default(), 4096, 24576, true);
        assert!(
            default.launched_blocks() < 1536,
            "gate/up runs persistent by default"
        );
    }

    #[test]
    fn inputs_must_be_whole_tiles() {
        let q = |k: i32| Quantized {
            weight: Array::zeros(&[16, k / 8], Dtype::U32).unwrap(),
            scales: Array::zeros(&[16, k / 64], Dtype::BF16).unwrap(),
            biases: Array::zeros(&[16, k / 64], Dtype::BF16).unwrap(),
            group_size: 64,
            bits: 4,
        };
        assert!(fits(4096, Dtype::BF16, &q(4096)));
        assert!(!fits(1088, Dtype::BF16, &q(1088)));
        assert!(!fits(4096, Dtype::F16, &q(4096)));
    }
}
