//! One decoding step through the fused kernels, built as MLX operations:
//! five launches per layer (norm + q/k/v, attention with its cache write,
//! o + residual, norm + gate/up + SwiGLU, down + residual) instead of about
//! thirty. The step runner (`steps/`) launches the same kernels outside MLX's
//! graph; this path serves sampled requests, and greedy ones where the runner
//! does not apply.

use std::sync::Arc;

use mlx::fast;
use mlx::{Array, Dtype};

use crate::error::Result;
use crate::kernels::attention::{self, DecodeStep, Heads};
use crate::kernels::qmv::{self, qmv};
use crate::kernels::{Epilogue, Kernels, Prologue};
use crate::model::kv_cache::{KvCache, LayerCache};
use crate::model::{DecoderView, LayerView};

/// What the fused step needs besides the weights.
pub(crate) struct FusedDecode {
    kernels: Arc<Kernels>,
    pub(crate) heads: Heads,
    /// Added to the host-made `[len, pos, 0, 0]` of a request's first step,
    /// so that the attention kernels read it from device memory.
    zeros: Array,
    /// `[1, 1, 0, 0]` in device memory: each later step's metadata is the
    /// previous one plus this, made on the device. (A host-made array costs
    /// its first reader a page migration: 172 µs per step on the H100.)
    step: Array,
    /// The last step's `(len, pos, metadata)`.
    last_meta: Option<(i32, i32, Array)>,
    /// The attention kernels' block counters (zeros, in device memory).
    pub(crate) counters: Array,
}

/// Whether the fused kernels take every layer of `view`.
fn fits(view: &DecoderView<'_>) -> bool {
    let (heads, dtype) = (view.heads, view.dtype);
    let h = view.config.hidden_size as i32;
    heads.supported(dtype)
        && view.layers.iter().all(|w: &LayerView<'_>| {
            let inter = w.down.weight.dim(1) * 8;
            qmv::fits(h, dtype, w.qkv)
                && qmv::fits(heads.heads * heads.head_dim, dtype, w.o)
                && qmv::fits(h, dtype, w.gate_up)
                && qmv::fits(inter, dtype, w.down)
                && w.qkv.weight.dim(0) == (heads.heads + 2 * heads.kv_heads) * heads.head_dim
                && w.gate_up.weight.dim(0) == 2 * inter
        })
}

impl FusedDecode {
    /// The fused path for the model `view` shows, if the kernels are on and
    /// take every layer.
    pub(crate) fn new(
        view: Option<&DecoderView<'_>>,
        kernels: &Arc<Kernels>,
    ) -> Result<Option<FusedDecode>> {
        let Some(view) = view.filter(|v| kernels.enabled() && fits(v)) else {
            return Ok(None);
        };
        let heads = view.heads;
        // Made on the device: MLX keeps arrays made on the host in host memory.
        let zeros = Array::zeros(&[4], Dtype::I32)?.contiguous()?;
        let counters = Array::zeros(&[64.max(heads.kv_heads)], Dtype::I32)?.contiguous()?;
        mlx::eval(&[&zeros, &counters])?;
        let step = Array::from_i32(&[1, 1, 0, 0], &[4])?.add(&zeros)?;
        mlx::eval(&[&step])?;
        Ok(Some(FusedDecode {
            kernels: kernels.clone(),
            heads,
            zeros,
            step,
            last_meta: None,
            counters,
        }))
    }

    /// `[len, pos, 0, 0]` in device memory for a step: the last step's plus
    /// one when the step follows it, else made from the host.
    fn meta(&mut self, len: i32, pos: i32) -> Result<Array> {
        let meta = match self.last_meta.take() {
            Some((l, p, m)) if l + 1 == len && p + 1 == pos => m.add(&self.step)?,
            _ => Array::from_i32(&[len, pos, 0, 0], &[4])?.add(&self.zeros)?,
        };
        self.last_meta = Some((len, pos, meta.clone()));
        Ok(meta)
    }

    /// The final-normed hidden state `(1, 1, hidden)` of one token `x`
    /// `(1, 1, hidden)` at RoPE position `pos` after the cached positions.
    pub(crate) fn forward(
        &mut self,
        view: &DecoderView<'_>,
        x: &Array,
        pos: i32,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let len = cache.len();
        let meta = self.meta(len, pos)?;
        let eps = view.config.rms_norm_eps;
        let mut x = x.clone();
        for (layer, lc) in view.layers.iter().zip(cache.layers.iter_mut()) {
            x = self.layer(view, layer, &x, lc, &meta)?;
        }
        for lc in &mut cache.layers {
            lc.advance(1);
        }
        Ok(fast::rms_norm(&x, view.final_norm, eps)?)
    }

    fn layer(
        &self,
        view: &DecoderView<'_>,
        w: &LayerView<'_>,
        x: &Array,
        cache: &mut LayerCache,
        meta: &Array,
    ) -> Result<Array> {
        let k = &*self.kernels;
        let eps = view.config.rms_norm_eps;
        let norm = |weight| Prologue::RmsNorm { weight, eps };
        let qkv = qmv(k, x, w.qkv, norm(w.input_norm), Epilogue::None)?;
        let len = cache.len();
        let (keys, values) = cache.buffers_for_write()?;
        let o = attention::decode(
            k,
            &DecodeStep {
                qkv: &qkv,
                q_norm: w.q_norm,
                k_norm: w.k_norm,
                keys,
                values,
                meta,
                counters: &self.counters,
                len,
                rms_eps: eps,
                rope_theta: view.config.rope_theta,
            },
            self.heads,
        )?;
        let x = qmv(k, &o, w.o, Prologue::None, Epilogue::Residual(x))?;
        let act = qmv(k, &x, w.gate_up, norm(w.post_norm), Epilogue::SwiGlu)?;
        qmv(k, &act, w.down, Prologue::None, Epilogue::Residual(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fused() -> FusedDecode {
        let zeros = Array::zeros(&[4], Dtype::I32).unwrap();
        FusedDecode {
            kernels: Kernels::off(),
            heads: Heads {
                heads: 4,
                kv_heads: 2,
                head_dim: 64,
            },
            step: Array::from_i32(&[1, 1, 0, 0], &[4]).unwrap(),
            zeros,
            last_meta: None,
            counters: Array::zeros(&[64], Dtype::I32).unwrap(),
        }
    }

    #[test]
    fn step_metadata_follows_the_previous_step_or_starts_afresh() {
        let mut f = fused();
        let mut meta = |len, pos| f.meta(len, pos).unwrap().to_vec::<i32>().unwrap();
        assert_eq!(meta(10, 20), [10, 20, 0, 0]);
        // The next step: made from the previous metadata on the device.
        assert_eq!(meta(11, 21), [11, 21, 0, 0]);
        assert_eq!(meta(12, 22), [12, 22, 0, 0]);
        // Another request, or a position that does not follow: from the host.
        assert_eq!(meta(5, 7), [5, 7, 0, 0]);
        assert_eq!(meta(6, 9), [6, 9, 0, 0]);
        assert_eq!(meta(7, 10), [7, 10, 0, 0]);
    }
}
