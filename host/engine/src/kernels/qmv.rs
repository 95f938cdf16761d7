//! One input row times a 4-bit affine-quantized matrix (group 64): the
//! matrix-vector product that dominates decoding, with the operations around
//! it fused in (`qmv4.cu`). MLX 0.32's CUDA qmv reaches about 27% of the H100's
//! copy bandwidth (`shared/device/peer-baselines.md`); this one streams the
//! packed weights with 16-byte loads, all of a warp's loads (weights, scales,
//! biases of its rows) in flight at once, and keeps the input row in
//! bank-conflict-free shared memory.

use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
use mlx::{Array, Dtype, Quantized};

use crate::error::Result;

/// Warps per block.
const WARPS: i32 = 8;

/// Rows each warp computes: their loads are all in flight at once, which
/// takes registers in proportion to the input width.
fn rows_per_warp(k: i32) -> i32 {
    if k > 4096 { 1 } else { 2 }
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

    pub fn compile(self, k: i32) -> Result<Kernel> {
        let (norm, resid, swiglu) = self.flags();
        let mut inputs = vec!["x"];
        if norm {
            inputs.push("nw");
        }
        inputs.extend(["w", "scales", "biases"]);
        if resid {
            inputs.push("res");
        }
        let source = super::compact(&format!(
            "#define NORM {}\n#define RESID {}\n#define SWIGLU {}\n{}",
            norm as i32,
            resid as i32,
            swiglu as i32,
            include_str!("qmv4.cu")
        ));
        let header = super::compact(include_str!("q4_dot.cuh"));
        let name = match self {
            Variant::Plain => "vlmbench_qmv4",
            Variant::Norm => "vlmbench_qmv4_norm",
            Variant::Residual => "vlmbench_qmv4_res",
            Variant::NormSwiGlu => "vlmbench_qmv4_norm_swiglu",
        };
        let spec = KernelSpec {
            name,
            inputs: &inputs,
            outputs: &["out"],
            source: &source,
            header: &header,
            ensure_row_contiguous: true,
        };
        // The input row, padded as `q4_slot` lays it out.
        let shared = (k / 32) * 33 * 4;
        Ok(Kernel::cuda(&spec, shared)?)
    }
}

/// Whether the kernel handles this matrix and a single input row `x`.
pub fn applies(x: &Array, q: &Quantized) -> bool {
    let shape = x.shape();
    let k = *shape.last().unwrap_or(&0);
    let rows: i32 = shape[..shape.len().saturating_sub(1)].iter().product();
    super::enabled() && rows == 1 && fits(k, x.dtype(), q)
}

/// Whether the kernel handles this matrix for input rows of width `k` in
/// `dtype` (4-bit, group 64, the input's float type).
pub fn fits(k: i32, dtype: Dtype, q: &Quantized) -> bool {
    q.bits == 4
        && q.group_size == 64
        && k % 64 == 0
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
    let width = if matches!(epilogue, Epilogue::SwiGlu) {
        n / 2
    } else {
        n
    };
    let mut inputs: Vec<&Array> = vec![x];
    if let Prologue::RmsNorm { weight, .. } = &prologue {
        inputs.push(weight);
    }
    inputs.extend([&q.weight, &q.scales, &q.biases]);
    if let Epilogue::Residual(r) = &epilogue {
        inputs.push(r);
    }
    let rows = rows_per_warp(k);
    let per_block = WARPS * rows;
    let blocks = (width + per_block - 1) / per_block;
    let mut shape = x.shape();
    *shape.last_mut().expect("x has an axis") = width;
    let mut template = vec![
        ("T", TemplateArg::Dtype(x.dtype())),
        ("K", TemplateArg::Int(k)),
        ("N", TemplateArg::Int(n)),
        ("WARPS", TemplateArg::Int(WARPS)),
        ("ROWS", TemplateArg::Int(rows)),
    ];
    if let Prologue::RmsNorm { eps, .. } = prologue {
        template.push(("EPS_BITS", TemplateArg::Int(eps.to_bits() as i32)));
    }
    let mut outs = super::with_kernel(super::KernelKey::Qmv(variant, k), |kernel| {
        kernel.call(
            &inputs,
            &Launch {
                output_shapes: vec![shape],
                output_dtypes: vec![x.dtype()],
                grid: [blocks * WARPS * 32, 1, 1],
                threadgroup: [WARPS * 32, 1, 1],
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
    fn wide_inputs_take_one_row_per_warp() {
        assert_eq!(rows_per_warp(4096), 2);
        assert_eq!(rows_per_warp(12288), 1);
    }
}
