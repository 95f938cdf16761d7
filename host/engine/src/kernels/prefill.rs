//! Element-wise kernels for prefill and the vision tower, where MLX runs one
//! kernel per operation over large arrays (`docs/experiments.md`, "Vision
//! RoPE, SwiGLU, GELU and biased linears": at 1024x1024
//! the vision RoPE alone was about 8.5 ms of 66 ms of GPU time, as ~10
//! launches per layer in f32 with strided copies). Each computes as Hugging
//! Face does, in f32 with one rounding to the model's type.
//!
//! - `vision_qkv`: RoPE of the vision tower's q and k, and q, k, v laid out
//!   as attention reads them.
//! - `text_qk`: the decoder's q/k RMSNorm and RoPE for a prefill, and q, k, v
//!   laid out as the cache and attention take them.
//! - `swiglu`: silu(gate) * up from the fused gate/up projection.
//! - `gelu_tanh`: the vision MLP's activation.

use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
use mlx::{Array, Dtype};

use super::attention::Heads;
use super::{KernelKey, Kernels};
use crate::error::Result;

const THREADS: i32 = 256;

/// Which element-wise kernel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    VisionRope,
    TextQk,
    SwiGlu,
    GeluTanh,
}

impl Op {
    pub(super) fn compile(self) -> Result<Kernel> {
        let (name, inputs, outputs, source): (_, &[&str], &[&str], _) = match self {
            Op::VisionRope => (
                "vlmbench_vision_rope",
                &["qkv", "cos_t", "sin_t"],
                &["q", "k", "v"],
                include_str!("vision_rope.cu"),
            ),
            Op::TextQk => (
                "vlmbench_text_qk",
                &["qkv", "qn", "kn", "cos_t", "sin_t"],
                &["q", "k", "v"],
                include_str!("text_qk.cu"),
            ),
            Op::SwiGlu => (
                "vlmbench_swiglu",
                &["y"],
                &["out"],
                include_str!("swiglu.cu"),
            ),
            Op::GeluTanh => (
                "vlmbench_gelu_tanh",
                &["x"],
                &["out"],
                include_str!("gelu_tanh.cu"),
            ),
        };
        Ok(Kernel::cuda(
            &KernelSpec {
                name,
                inputs,
                outputs,
                source: &super::compact(source),
                header: "",
                ensure_row_contiguous: true,
            },
            0,
        )?)
    }
}

/// Whether the element-wise kernels are on and take arrays of `dtype`.
pub fn applies(kernels: &Kernels, dtype: Dtype) -> bool {
    kernels.enabled() && matches!(dtype, Dtype::BF16 | Dtype::F16)
}

fn launch(elements: usize) -> Result<[i32; 3]> {
    let padded = elements.div_ceil(THREADS as usize) * THREADS as usize;
    let total = i32::try_from(padded).map_err(|_| {
        crate::error::Error::Model(format!(
            "element-wise kernel: {elements} elements is too many"
        ))
    })?;
    Ok([total, 1, 1])
}

fn call(kernels: &Kernels, op: Op, inputs: &[&Array], launch: Launch<'_>) -> Result<Vec<Array>> {
    kernels.with_kernel(KernelKey::Prefill(op), |k| k.call(inputs, &launch))
}

/// A kernel's three outputs, in order.
fn q_k_v(outs: Vec<Array>) -> (Array, Array, Array) {
    let [q, k, v]: [Array; 3] = outs
        .try_into()
        .unwrap_or_else(|_| unreachable!("the kernel has three outputs"));
    (q, k, v)
}

/// The vision tower's `(q, k, v)`, each `(1, heads, n, hd)`, from its fused
/// projection `qkv` `(n, 3 heads hd)`, with RoPE by `cos`, `sin` `(n, hd)`
/// (f32, best in device memory) applied to q and k.
pub fn vision_qkv(
    kernels: &Kernels,
    qkv: &Array,
    cos: &Array,
    sin: &Array,
    heads: i32,
    hd: i32,
) -> Result<(Array, Array, Array)> {
    let n = qkv.dim(0);
    let dtype = qkv.dtype();
    let shape = vec![1, heads, n, hd];
    let outs = call(
        kernels,
        Op::VisionRope,
        &[qkv, cos, sin],
        Launch {
            output_shapes: vec![shape.clone(), shape.clone(), shape],
            output_dtypes: vec![dtype; 3],
            grid: launch(n as usize * 3 * heads as usize * (hd / 2) as usize)?,
            threadgroup: [THREADS, 1, 1],
            template: vec![
                ("T", TemplateArg::Dtype(dtype)),
                ("HEADS", TemplateArg::Int(heads)),
                ("HD", TemplateArg::Int(hd)),
            ],
            init_value: None,
        },
    )?;
    Ok(q_k_v(outs))
}

/// Whether `text_qk` takes arrays of `dtype` in this layout (a warp per
/// head row, a lane per 32nd of it).
pub fn text_qk_applies(kernels: &Kernels, dtype: Dtype, h: &Heads) -> bool {
    applies(kernels, dtype)
        && h.head_dim % 64 == 0
        && h.head_dim <= 256
        && h.heads > 0
        && h.kv_heads > 0
}

/// The decoder's `(q, k, v)` for `n` tokens, `(1, heads, n, hd)` each, from
/// its fused projection `qkv` `(…, n, (heads + 2 kv_heads) hd)`: q and k
/// RMS-normed by `q_norm`, `k_norm` (`eps`) and rotated by `cos`, `sin`
/// `(n, hd)` in `qkv`'s dtype, as `fast::rms_norm` and `rotate_half` compute
/// them.
#[allow(clippy::too_many_arguments)]
pub fn text_qk(
    kernels: &Kernels,
    qkv: &Array,
    q_norm: &Array,
    k_norm: &Array,
    cos: &Array,
    sin: &Array,
    h: Heads,
    eps: f32,
) -> Result<(Array, Array, Array)> {
    let width = (h.heads + 2 * h.kv_heads) * h.head_dim;
    let n = qkv.size() as i32 / width;
    let dtype = qkv.dtype();
    let rows = qkv.reshape(&[n, width])?;
    let shape = |heads: i32| vec![1, heads, n, h.head_dim];
    let outs = call(
        kernels,
        Op::TextQk,
        &[&rows, q_norm, k_norm, cos, sin],
        Launch {
            output_shapes: vec![shape(h.heads), shape(h.kv_heads), shape(h.kv_heads)],
            output_dtypes: vec![dtype; 3],
            grid: launch(n as usize * (h.heads + 2 * h.kv_heads) as usize * 32)?,
            threadgroup: [THREADS, 1, 1],
            template: vec![
                ("T", TemplateArg::Dtype(dtype)),
                ("NH", TemplateArg::Int(h.heads)),
                ("NKV", TemplateArg::Int(h.kv_heads)),
                ("HD", TemplateArg::Int(h.head_dim)),
                ("EPS_BITS", TemplateArg::Int(eps.to_bits() as i32)),
            ],
            init_value: None,
        },
    )?;
    Ok(q_k_v(outs))
}

/// Elements per thread: 8 (16-byte loads) when `count` allows.
fn vector_width(count: usize) -> i32 {
    if count.is_multiple_of(8) { 8 } else { 1 }
}

/// `silu(g) * u` for `y = [g | u]` `(…, 2 I)`; the result is `(…, I)`.
pub fn swiglu(kernels: &Kernels, y: &Array) -> Result<Array> {
    let width = y.dim(-1) / 2;
    let v = vector_width(width as usize);
    let rows = y.size() as i32 / (2 * width);
    let mut shape = y.shape();
    *shape.last_mut().expect("y has an axis") = width;
    let out = call(
        kernels,
        Op::SwiGlu,
        &[&y.reshape(&[rows, 2 * width])?],
        Launch {
            output_shapes: vec![shape],
            output_dtypes: vec![y.dtype()],
            grid: launch(rows as usize * (width / v) as usize)?,
            threadgroup: [THREADS, 1, 1],
            template: vec![
                ("T", TemplateArg::Dtype(y.dtype())),
                ("I", TemplateArg::Int(width)),
                ("V", TemplateArg::Int(v)),
            ],
            init_value: None,
        },
    )?;
    Ok(out.into_iter().next().expect("one output"))
}

/// Tanh-approximate GELU of `x`, same shape.
pub fn gelu_tanh(kernels: &Kernels, x: &Array) -> Result<Array> {
    let v = vector_width(x.size());
    let out = call(
        kernels,
        Op::GeluTanh,
        &[&x.reshape(&[-1])?],
        Launch {
            output_shapes: vec![x.shape()],
            output_dtypes: vec![x.dtype()],
            grid: launch(x.size() / v as usize)?,
            threadgroup: [THREADS, 1, 1],
            template: vec![
                ("T", TemplateArg::Dtype(x.dtype())),
                ("V", TemplateArg::Int(v)),
            ],
            init_value: None,
        },
    )?;
    Ok(out.into_iter().next().expect("one output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_only_where_the_count_divides() {
        assert_eq!(vector_width(12288), 8);
        assert_eq!(vector_width(8160 * 4304), 8);
        assert_eq!(vector_width(910), 1);
    }

    #[test]
    fn launches_round_up_to_whole_blocks() {
        assert_eq!(launch(1).unwrap(), [256, 1, 1]);
        assert_eq!(launch(513).unwrap(), [768, 1, 1]);
        assert!(launch(usize::MAX / 2).is_err());
    }
}
