//! One input row times a 4-bit affine-quantized matrix (group 64): the
//! matrix-vector product that dominates decoding, with the operations around
//! it fused in (`qmv4.cu`). MLX 0.32's CUDA qmv reaches about 27% of the H100's
//! copy bandwidth (`shared/device/peer-baselines.md`); this one multiplies on
//! tensor cores, so that turning codes into numbers costs one instruction per
//! two codes, and streams the packed weights with 16-byte loads issued before
//! the prologue (`bench/gpu/NOTES.md`, "Why the GEMVs were slow").

use std::sync::OnceLock;

use mlx::cuda::Dims;
use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
use mlx::{Array, Dtype, Quantized};

use super::step::{Param, Placement, StepKernel};
use crate::error::Result;

/// Output rows per block: 16 rows of the matrix (8 gate/up pairs for SwiGLU).
fn rows_per_block(swiglu: bool) -> i32 {
    if swiglu { 8 } else { 16 }
}

/// Streaming multiprocessors of the H100 the launch shapes were measured on.
const H100_SMS: i32 = 132;

/// Warps per block (they split the input width) and k-tiles whose loads a
/// warp issues at once. Measured on the H100 at the 8B's shapes
/// (`bench/gpu/qmv_lab.py`, then in the decoding step): few blocks want more
/// warps each, wide inputs deeper batches. The 8B's q/k/v (384 blocks) fits
/// one wave of the H100 at 8 warps (80 registers a thread by ptxas, 3 blocks
/// on each of 132 SMs), and each block then has half its weights in flight
/// before its wait rather than a quarter: +2–3.5% decode (bench/gpu/NOTES.md,
/// stop 22), though alone under Nsight Compute 8 warps were slower (stop 13).
/// The bound of 512 blocks lies between q/k/v and gate/up (1536), which
/// lost at 8 warps.
///
/// 16 warps where one batch of theirs covers the whole input and two blocks
/// an SM cover the rows (the 8B's o projection: K 4096, 256 blocks): at 8
/// warps (66 registers) its blocks, launched during the attention, packed
/// three to an SM on 65 of the 132 SMs, whose last blocks ended 1.4–1.7 µs
/// after those of SMs with one or two (timeline at 448x448); at 16 (50
/// registers) at most two share an SM and every k-tile is loaded before the
/// wait. +0.4 to +1.4% decode at 1024x1024 and 1920x1080, −0.2%
/// at 448x448 (bench/gpu/NOTES.md, stop 29).
fn launch_shape(k: i32, blocks: i32) -> (i32, i32) {
    let tiles_at_once = if k > 4096 { 4 } else { 2 };
    let warps = if blocks <= 2 * H100_SMS && k / 128 == 16 * tiles_at_once {
        16
    } else if blocks <= 512 {
        8
    } else {
        4
    };
    (warps, tiles_at_once)
}

/// Blocks of a persistent launch of the step runner's product for `blocks`
/// row groups in blocks of `warps` warps (each block takes every grid-th
/// group, its input staged once), or 0 for a block a group. Measured on the
/// H100 for the 8B's gate/up (1536 groups, 4 warps): 512 blocks of 3 groups
/// (104 registers, 4 blocks an SM) +0.2 to +1.2% decode, 384 blocks -6%, 256
/// of 8 warps -4% (bench/gpu/NOTES.md, stop 24). So: 4-warp launches of more
/// than one wave (4 blocks on each of 132 SMs) whose groups split evenly
/// into 384 to 528 blocks; the head (9496 groups) has no such split.
fn persistent_grid(blocks: i32, warps: i32) -> i32 {
    const WAVE: i32 = 4 * H100_SMS;
    if warps != 4 || blocks <= WAVE {
        return 0;
    }
    (384..=WAVE).rev().find(|g| blocks % g == 0).unwrap_or(0)
}

/// A matrix (input width, rows) and the launch shape asked for it (warps,
/// k-tiles at once, blocks an SM the compiler must fit or 0).
type ShapeOverride = MatrixEntry<(i32, i32, i32)>;

/// Launch shapes asked for in `VLM_BENCH_QMV_SHAPES`, for measuring them:
/// `KxN=WxU` entries (input width, rows; warps, k-tiles at once), or
/// `KxN=WxUxM` (and at least M blocks an SM: `__launch_bounds__`, the step
/// runner's kernels only), comma-separated, e.g. `4096x4096=8x4`. Entries
/// that do not parse are reported once and ignored.
fn shape_override(k: i32, n: i32) -> Option<(i32, i32, i32)> {
    static SHAPES: OnceLock<Vec<ShapeOverride>> = OnceLock::new();
    knob_entry(
        &SHAPES,
        "VLM_BENCH_QMV_SHAPES",
        "KxN=WxU[xM]",
        parse_shapes,
        (k, n),
    )
}

/// Persistent launches asked for in `VLM_BENCH_QMV_GRID`, for measuring
/// them: `KxN=G` entries (input width, rows; blocks), comma-separated, e.g.
/// `4096x24576=512`: G blocks (fewer than the matrix's row groups) each take
/// every G-th group, the input staged once (qmv4.cuh's PERSIST); G = 0: a
/// block a group, as without [`persistent_grid`]. The step runner's kernels
/// only; a value with an entry that does not parse is reported once and
/// ignored.
fn grid_override(k: i32, n: i32) -> Option<i32> {
    static GRIDS: OnceLock<Vec<MatrixCount>> = OnceLock::new();
    knob_entry(&GRIDS, "VLM_BENCH_QMV_GRID", "KxN=G", parse_counts, (k, n))
}

/// Dynamic shared memory asked for in `VLM_BENCH_QMV_SMEM`, for measuring
/// where blocks go: `KxN=B` entries (input width, rows; at least B bytes a
/// block), comma-separated, e.g. `4096x6144=120000`: a block then holds more
/// shared memory than it uses, so that fewer of its blocks share an SM (one,
/// past half of an sm_90 SM's 228 KB), whatever the registers would allow
/// (stop 30: two persistent 16-warp blocks on one SM set the pace of their
/// launch; held to one, q/k/v still decoded 2.3–3.3% slower than the default
/// on the H200, stop 31). The step runner's kernels only; B up to
/// [`MAX_SHARED_BYTES`].
fn shared_override(k: i32, n: i32) -> Option<i32> {
    static SHARED: OnceLock<Vec<MatrixCount>> = OnceLock::new();
    knob_entry(&SHARED, "VLM_BENCH_QMV_SMEM", "KxN=B", parse_shared, (k, n))
}

/// `KxN=B,...` as entries, or the first entry that is not one (B up to
/// [`MAX_SHARED_BYTES`]).
fn parse_shared(v: &str) -> std::result::Result<Vec<MatrixCount>, String> {
    let entries = parse_counts(v)?;
    match entries.iter().find(|(_, b)| *b > MAX_SHARED_BYTES) {
        Some(((k, n), b)) => Err(format!("{k}x{n}={b}")),
        None => Ok(entries),
    }
}

/// The most dynamic shared memory a product's block may ask for: sm_90's
/// 227 KB a block, less 2 KB for its static shared memory (the warps' sums,
/// up to 1 KB at 16 warps; the norm's partial sums; the timeline's stamp).
const MAX_SHARED_BYTES: i32 = (super::step::BLOCK_SHARED_BYTES - 2048) as i32;

/// A matrix (input width, rows) and what a knob asks for it.
type MatrixEntry<V> = ((i32, i32), V);

/// A matrix and a count asked for it.
type MatrixCount = MatrixEntry<i32>;

/// `KxN=C,...` as entries, or the first entry that is not one (C >= 0).
fn parse_counts(v: &str) -> std::result::Result<Vec<MatrixCount>, String> {
    parse_entries(v, |e| {
        let (m, g) = e.split_once('=')?;
        let (k, n) = m.split_once('x')?;
        let number = |s: &str| s.trim().parse::<i32>().ok();
        Some(((number(k)?, number(n)?), number(g).filter(|&g| g >= 0)?))
    })
}

/// A measuring knob's value for the matrix `mat` (input width, rows): `var`
/// read once into `cell` as (matrix, value) entries, parsed by `parse`; a
/// value that does not parse is reported once (with the entries' `form`) and
/// ignored.
fn knob_entry<V: Copy>(
    cell: &'static OnceLock<Vec<MatrixEntry<V>>>,
    var: &str,
    form: &str,
    parse: fn(&str) -> std::result::Result<Vec<MatrixEntry<V>>, String>,
    mat: (i32, i32),
) -> Option<V> {
    let entries = cell.get_or_init(|| {
        let v = std::env::var(var).unwrap_or_default();
        parse(&v).unwrap_or_else(|bad| {
            eprintln!("warning: {var}: ignoring {bad:?} ({form}, comma-separated)");
            Vec::new()
        })
    });
    entries.iter().find(|(m, _)| *m == mat).map(|&(_, v)| v)
}

/// Comma-separated entries, each parsed by `entry`, or the first that is not
/// one.
fn parse_entries<E>(
    v: &str,
    entry: impl Fn(&str) -> Option<E>,
) -> std::result::Result<Vec<E>, String> {
    v.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| entry(e).ok_or_else(|| e.to_string()))
        .collect()
}

/// `KxN=WxU[xM],...` as entries, or the first entry that is not one (warps
/// 1–16, k-tiles 1–8, blocks an SM 1–32; M absent: 0).
fn parse_shapes(v: &str) -> std::result::Result<Vec<ShapeOverride>, String> {
    let numbers =
        |s: &str| -> Option<Vec<i32>> { s.split('x').map(|p| p.trim().parse().ok()).collect() };
    parse_entries(v, |e| {
        let (m, s) = e.split_once('=')?;
        match (numbers(m).as_deref(), numbers(s).as_deref()) {
            (Some(&[k, n]), Some(&[w, u])) => Some(((k, n), (w, u, 0))),
            (Some(&[k, n]), Some(&[w, u, b])) if (1..=32).contains(&b) => Some(((k, n), (w, u, b))),
            _ => None,
        }
        .filter(|&(_, (w, u, _))| (1..=16).contains(&w) && (1..=8).contains(&u))
    })
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

    fn header() -> String {
        super::header(&[
            include_str!("q4_dot.cuh"),
            include_str!("phases.cuh"),
            include_str!("qmv4.cuh"),
        ])
    }

    pub fn compile(self, k: i32) -> Result<Kernel> {
        let names: Vec<&str> = self.inputs(Dtype::BF16).iter().map(|(n, _)| *n).collect();
        let spec = KernelSpec {
            name: self.name(),
            inputs: &names,
            outputs: &["out"],
            source: &self.body(false),
            header: &Self::header(),
            ensure_row_contiguous: true,
        };
        Ok(Kernel::cuda(&spec, shared_bytes(k))?)
    }

    /// The standalone kernel (`step.rs`) for a `n x k` matrix and its launch:
    /// parameters are the inputs in order, then `out`.
    pub fn step_kernel(self, k: i32, n: i32, dtype: Dtype, eps: f32) -> Result<StepKernel> {
        self.step_kernel_as(
            LaunchShape::step(k, n, self.flags().2),
            k,
            n,
            dtype,
            eps,
            false,
        )
    }

    /// As [`Variant::step_kernel`], compiled to fit `min_blocks` blocks an
    /// SM (what `VLM_BENCH_QMV_SHAPES` may ask), for NVRTC's check.
    #[cfg(test)]
    pub(crate) fn bounded_step_kernel(
        self,
        k: i32,
        n: i32,
        dtype: Dtype,
        eps: f32,
        min_blocks: i32,
    ) -> Result<StepKernel> {
        let launch = LaunchShape {
            min_blocks,
            ..LaunchShape::of(k, n, self.flags().2)
        };
        self.step_kernel_as(launch, k, n, dtype, eps, false)
    }

    fn step_kernel_as(
        self,
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
        let shared = shared_bytes(k).max(shared_override(k, n).unwrap_or(0));
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
            &Self::header(),
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
/// block reading every logit (~6 µs a step on the H100; bench/gpu/NOTES.md,
/// stop 28).
pub fn argmax_step_kernel(k: i32, n: i32, dtype: Dtype, eps: f32) -> Result<StepKernel> {
    Variant::Norm.step_kernel_as(LaunchShape::step(k, n, false), k, n, dtype, eps, true)
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
    /// [`persistent_grid`] or `VLM_BENCH_QMV_GRID` says.
    fn step(k: i32, n: i32, swiglu: bool) -> LaunchShape {
        let mut launch = LaunchShape::of(k, n, swiglu);
        launch.grid = grid_override(k, n).map_or_else(
            || persistent_grid(launch.blocks, launch.warps),
            |g| g.min(launch.blocks),
        );
        launch
    }

    fn of(k: i32, n: i32, swiglu: bool) -> LaunchShape {
        let width = if swiglu { n / 2 } else { n };
        let per_block = rows_per_block(swiglu);
        let blocks = (width + per_block - 1) / per_block;
        let (warps, tiles_at_once, min_blocks) = shape_override(k, n).unwrap_or_else(|| {
            let (w, u) = launch_shape(k, blocks);
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
pub fn applies(x: &Array, q: &Quantized) -> bool {
    let shape = x.shape();
    let k = *shape.last().unwrap_or(&0);
    let rows: i32 = shape[..shape.len().saturating_sub(1)].iter().product();
    super::enabled() && rows == 1 && fits(k, x.dtype(), q)
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
    let launch = LaunchShape::of(k, n, swiglu);
    let mut shape = x.shape();
    *shape.last_mut().expect("x has an axis") = width;
    let eps = match prologue {
        Prologue::RmsNorm { eps, .. } => Some(eps),
        Prologue::None => None,
    };
    let template = template(x.dtype(), k, n, &launch, eps);
    let mut outs = super::with_kernel(super::KernelKey::Qmv(variant, k), |kernel| {
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

    #[test]
    fn launch_shape_overrides_parse() {
        assert_eq!(parse_shapes(""), Ok(vec![]));
        assert_eq!(
            parse_shapes("4096x4096=8x4, 4096x6144=8x4x3"),
            Ok(vec![((4096, 4096), (8, 4, 0)), ((4096, 6144), (8, 4, 3))])
        );
        for bad in [
            "4096x4096",
            "4096x4096=8",
            "4096=8x4",
            "4096x4096=0x4",
            "4096x4096=8x9",
            "4096x4096=8x4x0",
            "4096x4096=8x4x2x1",
        ] {
            assert_eq!(parse_shapes(bad), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn persistent_grids_parse() {
        assert_eq!(
            parse_counts("4096x24576=512, 4096x4096=0"),
            Ok(vec![((4096, 24576), 512), ((4096, 4096), 0)])
        );
        assert_eq!(parse_counts(""), Ok(vec![]));
        for bad in ["4096x24576", "4096=512", "4096x24576=-1", "4096xN=2"] {
            assert_eq!(parse_counts(bad), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn shared_memory_overrides_parse_within_an_sm_90_block() {
        assert_eq!(
            parse_shared("4096x6144=120000,4096x4096=230400"),
            Ok(vec![((4096, 6144), 120000), ((4096, 4096), 230400)])
        );
        for bad in ["4096x6144=230401", "4096x6144", "4096x6144=-1"] {
            assert_eq!(parse_shared(bad), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn launch_shapes_follow_the_measured_choices() {
        // The 8B's o projection (256 blocks: 16 warps take its 32 k-tiles in
        // one batch) and down projection (K 12288: 96 k-tiles, 8 warps).
        assert_eq!(launch_shape(4096, 256), (16, 2));
        assert_eq!(launch_shape(12288, 256), (8, 4));
        // The start-up check's 300 x 4096 (19 blocks) runs the 16-warp form;
        // the 2B's o (K 2048) and launches past two blocks an SM do not.
        assert_eq!(launch_shape(4096, 19), (16, 2));
        assert_eq!(launch_shape(2048, 128), (8, 2));
        assert_eq!(launch_shape(4096, 265), (8, 2));
        // q/k/v (384 blocks); gate/up (1536), the LM head (9496).
        assert_eq!(launch_shape(4096, 384), (8, 2));
        assert_eq!(launch_shape(4096, 1536), (4, 2));
        assert_eq!(launch_shape(4096, 9496), (4, 2));
        assert_eq!(rows_per_block(true), 8);
        assert_eq!(shared_bytes(4096), 128 * 80 + 64 * 4);
        // Persistent: gate/up in 512 blocks of 3 groups; not the head (9496 =
        // 8 x 1187), nor launches of one wave or of 8 warps.
        assert_eq!(persistent_grid(1536, 4), 512);
        assert_eq!(persistent_grid(9496, 4), 0);
        assert_eq!(persistent_grid(384, 8), 0);
        assert_eq!(persistent_grid(528, 4), 0);
        assert_eq!(persistent_grid(1536, 8), 0);
        let gate_up = Variant::NormSwiGlu
            .step_kernel(4096, 24576, Dtype::BF16, 1e-6)
            .unwrap();
        assert_eq!(gate_up.dims.blocks, 512);
        assert!(gate_up.source.contains("constexpr int PERSIST = 1;"));
        let o = Variant::Residual
            .step_kernel(4096, 4096, Dtype::BF16, 1e-6)
            .unwrap();
        assert_eq!(o.dims.blocks, 256);
        assert!(o.source.contains("constexpr int PERSIST = 0;"));
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
