//! MLX's fused kernels (`mlx::core::fast`).

use crate::array::Array;
use crate::error::Result;
use crate::ffi::bridge as ffi;

/// RMSNorm over the last axis, statistics in f32: `w * x / sqrt(mean(x²) + eps)`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    Array::wrap("rms_norm", ffi::rms_norm(x.inner(), weight.inner(), eps))
}

/// LayerNorm over the last axis with weight and bias.
pub fn layer_norm(x: &Array, weight: &Array, bias: &Array, eps: f32) -> Result<Array> {
    Array::wrap(
        "layer_norm",
        ffi::layer_norm(x.inner(), weight.inner(), bias.inner(), eps),
    )
}

/// Rotary embedding of the first `dims` features of the last axis, for
/// positions `offset .. offset + L` along axis -2. `traditional = false` pairs
/// dim `d` with `d + dims/2` (rotate-half).
pub fn rope(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: f32,
    scale: f32,
    offset: i32,
) -> Result<Array> {
    Array::wrap(
        "rope",
        ffi::rope(x.inner(), dims, traditional, base, scale, offset),
    )
}

/// `rope` with the offset held in an array.
pub fn rope_dynamic(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: f32,
    scale: f32,
    offset: &Array,
) -> Result<Array> {
    Array::wrap(
        "rope",
        ffi::rope_dynamic(x.inner(), dims, traditional, base, scale, offset.inner()),
    )
}

/// `rope` with explicit per-pair frequencies (`dims / 2` values).
pub fn rope_with_freqs(
    x: &Array,
    dims: i32,
    traditional: bool,
    scale: f32,
    offset: i32,
    freqs: &Array,
) -> Result<Array> {
    Array::wrap(
        "rope",
        ffi::rope_freqs(x.inner(), dims, traditional, scale, offset, freqs.inner()),
    )
}

/// How attention is masked.
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    None,
    /// Lower-triangular, aligned to the end of the keys.
    Causal,
    /// Additive float mask, or boolean keep-mask, broadcastable to the scores.
    Array(&'a Array),
}

/// `softmax(q kᵀ · scale + mask) v` with q `(B, H, L, D)`, k/v `(B, Hkv, S, D)`;
/// fewer key/value heads than query heads means grouped-query attention.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: Mask<'_>,
) -> Result<Array> {
    match mask {
        Mask::None => Array::wrap(
            "sdpa",
            ffi::sdpa(q.inner(), k.inner(), v.inner(), scale, ""),
        ),
        Mask::Causal => Array::wrap(
            "sdpa",
            ffi::sdpa(q.inner(), k.inner(), v.inner(), scale, "causal"),
        ),
        Mask::Array(m) => Array::wrap(
            "sdpa",
            ffi::sdpa_masked(q.inner(), k.inner(), v.inner(), scale, m.inner()),
        ),
    }
}
