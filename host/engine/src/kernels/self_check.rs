//! The kernels against MLX's own operations on random data, run once before
//! they are enabled. Tolerances are relative to the reference's largest
//! magnitude: bf16 rounds at 2^-8, and the fused kernels round in the same
//! places as the unfused operations but sum in a different order.

use mlx::fast::{self, Mask};
use mlx::{Array, Dtype, Quantized, nn, random};

use super::Kernels;
use super::attention::{self, DecodeStep, Heads};
use super::prefill;
use super::qmv::{self, Epilogue, Prologue};
use crate::error::{Error, Result};
use crate::model::positions::rotate_half;

const TOLERANCE: f32 = 1e-2;
/// silu(g) * u rounds g, u, the sigmoid and both products to bf16 (about
/// 2^-8 each), in a different order than MLX's sigmoid, which computes in
/// bf16: up to four roundings apart.
const SWIGLU_TOLERANCE: f32 = 3e-2;
const EPS: f32 = 1e-6;

/// Largest difference relative to the reference's largest magnitude.
fn relative_error(reference: &Array, ours: &Array) -> Result<f32> {
    let r = reference.astype(Dtype::F32)?.to_vec::<f32>()?;
    let o = ours.astype(Dtype::F32)?.to_vec::<f32>()?;
    if r.len() != o.len() {
        return Err(Error::SelfCheck(format!(
            "{} values against {}",
            o.len(),
            r.len()
        )));
    }
    let scale = r.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = r
        .iter()
        .zip(&o)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    if !worst.is_finite() {
        return Ok(f32::INFINITY);
    }
    Ok(worst / scale)
}

fn check(what: &str, reference: &Array, ours: &Array) -> Result<()> {
    check_within(what, reference, ours, TOLERANCE)
}

fn check_within(what: &str, reference: &Array, ours: &Array, tolerance: f32) -> Result<()> {
    let e = relative_error(reference, ours)?;
    if e < tolerance {
        Ok(())
    } else {
        Err(Error::SelfCheck(format!(
            "{what} differs from MLX by {e:.2e} (relative)"
        )))
    }
}

struct Rng(Array);

impl Rng {
    fn normal(&mut self, shape: &[i32], scale: f32) -> Result<Array> {
        let keys = random::split(&self.0, 2)?;
        self.0 = keys[0].clone();
        let a = random::normal(shape, Dtype::BF16, 0.0, scale, &keys[1])?;
        a.eval()?;
        Ok(a)
    }

    fn quantized(&mut self, n: i32, k: i32) -> Result<Quantized> {
        let q = mlx::quantize(&self.normal(&[n, k], 0.05)?, 64, 4)?;
        mlx::eval(&[&q.weight, &q.scales, &q.biases])?;
        Ok(q)
    }
}

pub fn run(kernels: &Kernels) -> std::result::Result<(), String> {
    let mut rng = Rng(random::key(7).map_err(|e| e.to_string())?);
    check_qmv(kernels, &mut rng).map_err(|e| format!("qmv: {e}"))?;
    // Several splits joined by the last block, and one split alone.
    for (cap, len, pos) in [(320, 300, 307), (128, 100, 104)] {
        check_attention(kernels, &mut rng, cap, len, pos)
            .map_err(|e| format!("decode attention at {len} positions: {e}"))?;
    }
    check_prefill(kernels, &mut rng).map_err(|e| format!("prefill element-wise: {e}"))
}

/// The element-wise kernels against the MLX operations they replace.
fn check_prefill(kernels: &Kernels, rng: &mut Rng) -> Result<()> {
    // The vision RoPE at the Qwen3-VL tower's head size (72), on 37 rows.
    let (n, heads, hd) = (37, 3, 72);
    let qkv = rng.normal(&[n, 3 * heads * hd], 1.0)?;
    // Any tables do: the kernel multiplies by what it is given.
    let cos = rng.normal(&[n, hd], 1.0)?.astype(Dtype::F32)?;
    let sin = rng.normal(&[n, hd], 1.0)?.astype(Dtype::F32)?;
    let parts = qkv.reshape(&[n, 3, heads, hd])?.split_at(&[1, 2], 1)?;
    let (c, s) = (cos.reshape(&[n, 1, hd])?, sin.reshape(&[n, 1, hd])?);
    let rope = |t: &Array| -> Result<Array> {
        Ok(rotate_half(&t.squeeze(1)?.astype(Dtype::F32)?, &c, &s)?
            .astype(Dtype::BF16)?
            .transpose(&[1, 0, 2])?
            .expand_dims(0)?)
    };
    let (q, k, v) = prefill::vision_qkv(kernels, &qkv, &cos, &sin, heads, hd)?;
    check("vision rope q", &rope(&parts[0])?, &q)?;
    check("vision rope k", &rope(&parts[1])?, &k)?;
    let v_ref = parts[2].squeeze(1)?.transpose(&[1, 0, 2])?.expand_dims(0)?;
    check("vision v", &v_ref, &v)?;

    // The decoder's q/k norms and rotation, at head dim 128 with 2 query
    // heads per KV head, on 37 rows.
    let h = Heads {
        heads: 4,
        kv_heads: 2,
        head_dim: 128,
    };
    let (nh, nkv, hd) = (h.heads, h.kv_heads, h.head_dim);
    let qkv = rng.normal(&[1, n, (nh + 2 * nkv) * hd], 2.0)?;
    let (qn, kn) = (rng.normal(&[hd], 1.0)?, rng.normal(&[hd], 1.0)?);
    let (cos, sin) = (rng.normal(&[n, hd], 1.0)?, rng.normal(&[n, hd], 1.0)?);
    let parts = qkv.split_at(&[nh * hd, (nh + nkv) * hd], -1)?;
    let normed = |t: &Array, heads: i32, w: &Array| -> Result<Array> {
        let t = fast::rms_norm(&t.reshape(&[1, n, heads, hd])?, w, EPS)?;
        rotate_half(&t.transpose(&[0, 2, 1, 3])?, &cos, &sin)
    };
    let (q, k, v) = prefill::text_qk(kernels, &qkv, &qn, &kn, &cos, &sin, h, EPS)?;
    check("text q", &normed(&parts[0], nh, &qn)?, &q)?;
    check("text k", &normed(&parts[1], nkv, &kn)?, &k)?;
    let v_ref = parts[2]
        .reshape(&[1, n, nkv, hd])?
        .transpose(&[0, 2, 1, 3])?;
    check("text v", &v_ref, &v)?;

    let y = rng.normal(&[5, 2, 2 * 96], 2.0)?;
    let gu = y.split_at(&[96], -1)?;
    let reference = nn::silu(&gu[0])?.mul(&gu[1])?;
    check_within(
        "swiglu",
        &reference,
        &prefill::swiglu(kernels, &y)?,
        SWIGLU_TOLERANCE,
    )?;

    let x = rng.normal(&[7, 130], 2.0)?;
    check(
        "gelu",
        &nn::gelu_tanh(&x)?,
        &prefill::gelu_tanh(kernels, &x)?,
    )
}

fn check_qmv(kernels: &Kernels, rng: &mut Rng) -> Result<()> {
    // 1152 = 9 k-tiles, which the block's warps do not split evenly; 300 and
    // 40 rows end inside a block.
    for (n, k) in [(96, 256), (300, 4096), (64, 12288), (40, 1152)] {
        let q = rng.quantized(n, k)?;
        let x = rng.normal(&[1, k], 1.0)?;
        let nw = rng.normal(&[k], 1.0)?;
        let res = rng.normal(&[1, n], 1.0)?;
        let normed = fast::rms_norm(&x, &nw, EPS)?;
        let plain = q.matmul_t(&x)?;
        let cases = [
            (
                "plain",
                plain.clone(),
                qmv::qmv(kernels, &x, &q, Prologue::None, Epilogue::None)?,
            ),
            (
                "rms norm",
                q.matmul_t(&normed)?,
                qmv::qmv(
                    kernels,
                    &x,
                    &q,
                    Prologue::RmsNorm {
                        weight: &nw,
                        eps: EPS,
                    },
                    Epilogue::None,
                )?,
            ),
            (
                "residual",
                res.add(&plain)?,
                qmv::qmv(kernels, &x, &q, Prologue::None, Epilogue::Residual(&res))?,
            ),
        ];
        for (what, reference, ours) in cases {
            check(&format!("{what} ({n} x {k})"), &reference, &ours)?;
        }
        let gu = q.matmul_t(&normed)?.split_at(&[n / 2], -1)?;
        let reference = nn::silu(&gu[0])?.mul(&gu[1])?;
        let ours = qmv::qmv(
            kernels,
            &x,
            &q,
            Prologue::RmsNorm {
                weight: &nw,
                eps: EPS,
            },
            Epilogue::SwiGlu,
        )?;
        let what = format!("swiglu ({n} x {k})");
        check_within(&what, &reference, &ours, SWIGLU_TOLERANCE)?;
    }
    Ok(())
}

/// One decoding step of attention on random data: the inputs (caches of
/// `cap` positions holding `len`, RoPE position `pos`) and MLX's result.
pub struct AttentionCase {
    pub heads: Heads,
    pub qkv: Array,
    pub q_norm: Array,
    pub k_norm: Array,
    /// `(1, NKV, cap, HD)`: the step writes position `len`.
    pub keys: Array,
    pub values: Array,
    /// `[len, pos, 0, 0]`.
    pub meta: Array,
    pub len: i32,
    pub cap: i32,
    reference: Array,
    new_key: Array,
    new_value: Array,
    keys_before: Vec<u8>,
    values_before: Vec<u8>,
}

/// The layout of an attention case and the norms' and RoPE's constants.
#[derive(Clone, Copy)]
pub struct CaseShape {
    pub heads: Heads,
    pub dtype: Dtype,
    pub rms_eps: f32,
    pub rope_theta: f32,
}

impl AttentionCase {
    /// A case of `shape` from the generator seeded with `seed`. The caches
    /// have been read on the host (for the check): take device pointers
    /// after this.
    pub fn new(shape: CaseShape, cap: i32, len: i32, pos: i32, seed: u64) -> Result<Self> {
        let mut rng = Rng(random::key(seed)?);
        Self::from_rng(&mut rng, shape, cap, len, pos)
    }

    fn from_rng(rng: &mut Rng, shape: CaseShape, cap: i32, len: i32, pos: i32) -> Result<Self> {
        let CaseShape {
            heads,
            dtype,
            rms_eps,
            rope_theta,
        } = shape;
        let (nh, nkv, hd) = (heads.heads, heads.kv_heads, heads.head_dim);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut normal = |shape: &[i32]| -> Result<Array> {
            let a = rng.normal(shape, 1.0)?.astype(dtype)?.contiguous()?;
            a.eval()?;
            Ok(a)
        };
        let qkv = normal(&[1, 1, (nh + 2 * nkv) * hd])?;
        let (q_norm, k_norm) = (normal(&[hd])?, normal(&[hd])?);
        let keys = normal(&[1, nkv, cap, hd])?;
        let values = normal(&[1, nkv, cap, hd])?;
        let keys_before = keys.to_bytes()?;
        let values_before = values.to_bytes()?;

        // The reference, as the decoder computes it from MLX operations.
        let parts = qkv.split_at(&[nh * hd, (nh + nkv) * hd], -1)?;
        let q = fast::rms_norm(&parts[0].reshape(&[1, 1, nh, hd])?, &q_norm, rms_eps)?
            .transpose(&[0, 2, 1, 3])?;
        let k = fast::rms_norm(&parts[1].reshape(&[1, 1, nkv, hd])?, &k_norm, rms_eps)?
            .transpose(&[0, 2, 1, 3])?;
        let v = parts[2]
            .reshape(&[1, 1, nkv, hd])?
            .transpose(&[0, 2, 1, 3])?;
        let q = fast::rope(&q, hd, false, rope_theta, 1.0, pos)?;
        let k = fast::rope(&k, hd, false, rope_theta, 1.0, pos)?;
        let all_k = Array::concatenate(&[&keys.slice_axis(2, 0, len)?, &k], 2)?;
        let all_v = Array::concatenate(&[&values.slice_axis(2, 0, len)?, &v], 2)?;
        let reference = fast::scaled_dot_product_attention(&q, &all_k, &all_v, scale, Mask::None)?
            .transpose(&[0, 2, 1, 3])?
            .reshape(&[1, 1, nh * hd])?;
        mlx::eval(&[&reference, &k, &v])?;
        let meta = Array::from_i32(&[len, pos, 0, 0], &[4])?;
        meta.eval()?;
        Ok(AttentionCase {
            heads,
            qkv,
            q_norm,
            k_norm,
            keys,
            values,
            meta,
            len,
            cap,
            reference,
            new_key: k,
            new_value: v,
            keys_before,
            values_before,
        })
    }

    /// `ours` (the output, `NH * HD` values) against MLX's, the new key and
    /// value at `len` in the caches, and nothing else in them moved.
    pub fn check(&self, ours: &Array) -> Result<()> {
        check("output", &self.reference, ours)?;
        let (len, cap, hd) = (self.len, self.cap, self.heads.head_dim);
        for (what, cache, before, new) in [
            ("key", &self.keys, &self.keys_before, &self.new_key),
            ("value", &self.values, &self.values_before, &self.new_value),
        ] {
            let written = cache.slice_axis(2, len, len + 1)?;
            check(&format!("cached {what}"), new, &written)?;
            let after = cache.to_bytes()?;
            let row = hd as usize * cache.dtype().size_of();
            let moved = (0..after.len()).any(|i| {
                let position = (i / row) % cap as usize;
                position != len as usize && after[i] != before[i]
            });
            if moved {
                return Err(Error::SelfCheck(format!(
                    "the {what} cache changed outside position {len}"
                )));
            }
        }
        Ok(())
    }
}

fn check_attention(kernels: &Kernels, rng: &mut Rng, cap: i32, len: i32, pos: i32) -> Result<()> {
    let heads = Heads {
        heads: 8,
        kv_heads: 2,
        head_dim: 128,
    };
    let shape = CaseShape {
        heads,
        dtype: Dtype::BF16,
        rms_eps: EPS,
        rope_theta: 5_000_000.0,
    };
    let case = AttentionCase::from_rng(rng, shape, cap, len, pos)?;
    let counters = Array::zeros(&[64], Dtype::I32)?.contiguous()?;
    counters.eval()?;
    let ours = attention::decode(
        kernels,
        &DecodeStep {
            qkv: &case.qkv,
            q_norm: &case.q_norm,
            k_norm: &case.k_norm,
            keys: &case.keys,
            values: &case.values,
            meta: &case.meta,
            counters: &counters,
            len,
            rms_eps: shape.rms_eps,
            rope_theta: shape.rope_theta,
        },
        heads,
    )?;
    case.check(&ours)?;
    if counters.to_vec::<i32>()?.iter().any(|&c| c != 0) {
        return Err(Error::SelfCheck("block counters left non-zero".into()));
    }
    Ok(())
}
