//! The Qwen3 text decoder with per-head q/k RMSNorm, interleaved MRoPE and
//! DeepStack injection (spec §3).

use std::sync::Mutex;

use mlx::fast::{self, Mask};
use mlx::nn::{self, Weight};
use mlx::{Array, Dtype, Quantized};

mod steps;

pub(crate) use steps::StepSession;
use steps::StepState;
pub use steps::{DecodePath, StepAttention};

use super::kv_cache::{KvCache, LayerCache};
use super::linear::{Linear, Projections, dense_bytes, dense_copy};
use super::positions::rotate_half;
use super::weights::WeightSet;
use crate::config::{ModelConfig, TextConfig};
use crate::error::Result;
use crate::kernels::attention::{self, DecodeStep, Heads};
use crate::kernels::prefill;
use crate::kernels::qmv::{self, qmv};
use crate::kernels::{self, Epilogue, Prologue};

struct Attention {
    /// q, k and v, fused when their formats match.
    qkv: Projections,
    o: Linear,
    q_norm: Array,
    k_norm: Array,
}

struct Mlp {
    /// gate and up, fused when their formats match.
    gate_up: Projections,
    down: Linear,
}

struct Layer {
    input_norm: Array,
    post_norm: Array,
    attn: Attention,
    mlp: Mlp,
}

/// How the rotary embedding of a forward pass is given.
pub enum Rope {
    /// `(L, head_dim)` cos and sin tables (interleaved MRoPE), in f32 as
    /// made; each forward pass rounds them to the activations' type once.
    Tables { cos: Array, sin: Array },
    /// All three position streams equal and consecutive from this position:
    /// plain RoPE (every text-only prefill and every decode step).
    Offset(i32),
}

impl Rope {
    /// The tables rounded to `dtype` once, as every layer applies them (HF
    /// casts them to the activations' type): one cast per forward pass
    /// instead of four per layer (MLX does not merge repeated casts).
    fn in_dtype(&self, dtype: Dtype) -> Result<Rope> {
        Ok(match self {
            Rope::Tables { cos, sin } => Rope::Tables {
                cos: cos.astype(dtype)?,
                sin: sin.astype(dtype)?,
            },
            Rope::Offset(p) => Rope::Offset(*p),
        })
    }
}

/// Visual rows of a forward pass: where they sit and the DeepStack features
/// to add after the first decoder layers.
pub struct Visual<'a> {
    /// `(1, L, hidden)` additions per DeepStack level (zero on text rows).
    pub deepstack: &'a [Array],
}

pub struct TextModel {
    cfg: TextConfig,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Array,
    /// `None` when the LM head is tied to the embedding.
    lm_head: Option<Weight>,
    /// Dequantized copy of the LM head (or tied embedding) for decoding.
    dense_head: Option<Array>,
    /// The fused decoding kernels, when the backend has them and every layer
    /// fits them.
    fused: Option<FusedDecode>,
    /// Greedy decoding steps launched outside MLX's graph (`steps.rs`).
    steps: Mutex<StepState>,
    decode_path: DecodePath,
}

/// What the fused decoding step needs besides the weights.
struct FusedDecode {
    heads: Heads,
    /// Added to the host-made `[len, pos, 0, 0]` of a request's first step,
    /// so that the attention kernels read it from device memory.
    zeros: Array,
    /// `[1, 1, 0, 0]` in device memory: each later step's metadata is the
    /// previous one plus this, made on the device. (A host-made array costs
    /// its first reader a page migration: 172 µs per step on the H100.)
    step: Array,
    /// The last step's `(len, pos, metadata)`.
    last_meta: Mutex<Option<(i32, i32, Array)>>,
    /// The attention kernels' block counters (zeros, in device memory).
    counters: Array,
}

/// A layer's matrices as the fused decoding kernels take them.
struct FusedWeights<'a> {
    qkv: &'a Quantized,
    o: &'a Quantized,
    gate_up: &'a Quantized,
    down: &'a Quantized,
}

impl Layer {
    fn fused_weights(&self) -> Option<FusedWeights<'_>> {
        Some(FusedWeights {
            qkv: self.attn.qkv.fused()?.quantized()?,
            o: self.attn.o.quantized()?,
            gate_up: self.mlp.gate_up.fused()?.quantized()?,
            down: self.mlp.down.quantized()?,
        })
    }
}

/// The decoder's attention layout.
fn attention_heads(cfg: &TextConfig) -> Heads {
    Heads {
        heads: cfg.num_attention_heads as i32,
        kv_heads: cfg.num_key_value_heads as i32,
        head_dim: cfg.head_dim as i32,
    }
}

impl FusedDecode {
    /// The fused path, if the kernels are on and apply to every layer
    /// (`VLM_BENCH_NO_FUSED_DECODE` turns it off, for comparisons).
    fn new(cfg: &TextConfig, layers: &[Layer], dtype: Dtype) -> Result<Option<FusedDecode>> {
        if !kernels::enabled() || std::env::var_os("VLM_BENCH_NO_FUSED_DECODE").is_some() {
            return Ok(None);
        }
        let heads = attention_heads(cfg);
        let h = cfg.hidden_size as i32;
        let fits = heads.supported(dtype)
            && layers.iter().all(|l| {
                let Some(w) = l.fused_weights() else {
                    return false;
                };
                let inter = w.down.weight.dim(1) * 8;
                qmv::fits(h, dtype, w.qkv)
                    && qmv::fits(heads.heads * heads.head_dim, dtype, w.o)
                    && qmv::fits(h, dtype, w.gate_up)
                    && qmv::fits(inter, dtype, w.down)
                    && w.qkv.weight.dim(0) == (heads.heads + 2 * heads.kv_heads) * heads.head_dim
                    && w.gate_up.weight.dim(0) == 2 * inter
            });
        if !fits {
            return Ok(None);
        }
        // Made on the device: MLX keeps arrays made on the host in host memory.
        let zeros = Array::zeros(&[4], Dtype::I32)?.contiguous()?;
        let counters = Array::zeros(&[64.max(heads.kv_heads)], Dtype::I32)?.contiguous()?;
        mlx::eval(&[&zeros, &counters])?;
        let step = Array::from_i32(&[1, 1, 0, 0], &[4])?.add(&zeros)?;
        mlx::eval(&[&step])?;
        Ok(Some(FusedDecode {
            heads,
            zeros,
            step,
            last_meta: Mutex::new(None),
            counters,
        }))
    }

    /// `[len, pos, 0, 0]` in device memory for a step: the last step's plus
    /// one when the step follows it, else made from the host.
    fn meta(&self, len: i32, pos: i32) -> Result<Array> {
        let mut last = self.last_meta.lock().unwrap_or_else(|p| p.into_inner());
        let meta = match last.take() {
            Some((l, p, m)) if l + 1 == len && p + 1 == pos => m.add(&self.step)?,
            _ => Array::from_i32(&[len, pos, 0, 0], &[4])?.add(&self.zeros)?,
        };
        *last = Some((len, pos, meta.clone()));
        Ok(meta)
    }
}

impl TextModel {
    pub fn load(w: &mut WeightSet, cfg: &ModelConfig) -> Option<TextModel> {
        let t = &cfg.text;
        let (h, hd) = (t.hidden_size, t.head_dim);
        let p = "model.language_model";
        let embed = w.matrix(cfg, &format!("{p}.embed_tokens"), t.vocab_size, h);
        let mut layers = Vec::with_capacity(t.num_hidden_layers);
        for i in 0..t.num_hidden_layers {
            let l = format!("{p}.layers.{i}");
            let input_norm = w.take(&format!("{l}.input_layernorm.weight"), &[h as i32]);
            let post_norm = w.take(&format!("{l}.post_attention_layernorm.weight"), &[h as i32]);
            let q = w.linear(
                cfg,
                &format!("{l}.self_attn.q_proj"),
                t.num_attention_heads * hd,
                h,
                false,
            );
            let k = w.linear(
                cfg,
                &format!("{l}.self_attn.k_proj"),
                t.num_key_value_heads * hd,
                h,
                false,
            );
            let v = w.linear(
                cfg,
                &format!("{l}.self_attn.v_proj"),
                t.num_key_value_heads * hd,
                h,
                false,
            );
            let o = w.linear(
                cfg,
                &format!("{l}.self_attn.o_proj"),
                h,
                t.num_attention_heads * hd,
                false,
            );
            let q_norm = w.take(&format!("{l}.self_attn.q_norm.weight"), &[hd as i32]);
            let k_norm = w.take(&format!("{l}.self_attn.k_norm.weight"), &[hd as i32]);
            let gate = w.linear(
                cfg,
                &format!("{l}.mlp.gate_proj"),
                t.intermediate_size,
                h,
                false,
            );
            let up = w.linear(
                cfg,
                &format!("{l}.mlp.up_proj"),
                t.intermediate_size,
                h,
                false,
            );
            let down = w.linear(
                cfg,
                &format!("{l}.mlp.down_proj"),
                h,
                t.intermediate_size,
                false,
            );
            if let (
                Some(input_norm),
                Some(post_norm),
                Some(q),
                Some(k),
                Some(v),
                Some(o),
                Some(q_norm),
                Some(k_norm),
                Some(gate),
                Some(up),
                Some(down),
            ) = (
                input_norm, post_norm, q, k, v, o, q_norm, k_norm, gate, up, down,
            ) {
                let (Ok(qkv), Ok(gate_up)) = (
                    Projections::new(vec![q, k, v]),
                    Projections::new(vec![gate, up]),
                ) else {
                    return None;
                };
                layers.push(Layer {
                    input_norm,
                    post_norm,
                    attn: Attention {
                        qkv,
                        o: Linear::new(o),
                        q_norm,
                        k_norm,
                    },
                    mlp: Mlp {
                        gate_up,
                        down: Linear::new(down),
                    },
                });
            }
        }
        let norm = w.take(&format!("{p}.norm.weight"), &[h as i32]);
        let lm_head = if t.tie_word_embeddings {
            None
        } else {
            Some(w.matrix(cfg, "lm_head", t.vocab_size, h)?)
        };
        if layers.len() != t.num_hidden_layers {
            return None;
        }
        let mut model = TextModel {
            cfg: t.clone(),
            embed: embed?,
            layers,
            norm: norm?,
            lm_head,
            dense_head: None,
            fused: None,
            steps: Mutex::new(StepState::Untried),
            decode_path: DecodePath::from_env(),
        };
        model.fused = match FusedDecode::new(t, &model.layers, model.dtype()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warning: fused decoding off: {e}");
                None
            }
        };
        Some(model)
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// The activation dtype (the float type of the weights).
    pub fn dtype(&self) -> Dtype {
        match &self.embed {
            Weight::Dense(a) => a.dtype(),
            Weight::Quantized(q) => q.scales.dtype(),
        }
    }

    /// Token embeddings `(n, hidden)` for `ids`.
    pub fn embed(&self, ids: &[u32]) -> Result<Array> {
        self.embed_array(&Array::from_u32(ids, &[ids.len() as i32])?)
    }

    /// Token embeddings for ids held in a `(n,)` array (no host round trip).
    pub fn embed_array(&self, idx: &Array) -> Result<Array> {
        Ok(match &self.embed {
            Weight::Dense(w) => w.take(idx, 0)?,
            Weight::Quantized(q) => {
                let rows = mlx::Quantized {
                    weight: q.weight.take(idx, 0)?,
                    scales: q.scales.take(idx, 0)?,
                    biases: q.biases.take(idx, 0)?,
                    group_size: q.group_size,
                    bits: q.bits,
                };
                rows.dequantize(q.scales.dtype())?
            }
        })
    }

    /// Runs the decoder on `x` `(1, L, hidden)`, appending to `cache`.
    /// Returns the final-normed hidden states `(1, L, hidden)`.
    pub fn forward(
        &self,
        x: &Array,
        rope: &Rope,
        cache: &mut KvCache,
        visual: Option<&Visual<'_>>,
    ) -> Result<Array> {
        if let (Some(f), Rope::Offset(pos), None, 1) = (&self.fused, rope, visual, x.dim(1))
            && !cache.is_empty()
        {
            return self.forward_fused(f, x, *pos, cache);
        }
        self.run_layers(x, rope, cache, visual, |_| {})
    }

    /// The decoder layers and the final norm, calling `after_layer` with each
    /// layer's output (DeepStack features added).
    fn run_layers(
        &self,
        x: &Array,
        rope: &Rope,
        cache: &mut KvCache,
        visual: Option<&Visual<'_>>,
        mut after_layer: impl FnMut(&Array),
    ) -> Result<Array> {
        let rope = rope.in_dtype(x.dtype())?;
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.layer(layer, &x, &rope, &mut cache.layers[i])?;
            if let Some(vis) = visual
                && let Some(add) = vis.deepstack.get(i)
            {
                x = x.add(add)?;
            }
            after_layer(&x);
        }
        Ok(fast::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?)
    }

    /// Greedy decoding after the prefill's `token` through steps launched
    /// outside MLX's graph, when they apply (CUDA, the fused kernels on, the
    /// model's formats supported; see `steps.rs`), else `None`. The cache
    /// holds the prompt; `pos` is the next RoPE position. Waits for the
    /// prefill to finish.
    pub(crate) fn start_steps(
        &self,
        token: &Array,
        kv: &KvCache,
        pos: i32,
    ) -> Result<Option<StepSession<'_>>> {
        let (
            Some(fused),
            DecodePath::Steps {
                graph,
                pdl,
                attention,
            },
        ) = (&self.fused, self.decode_path)
        else {
            return Ok(None);
        };
        if !mlx::cuda::available() {
            return Ok(None);
        }
        let mut state = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*state, StepState::Untried) {
            *state = match steps::StepDecoder::new(self, fused) {
                Ok(d) => StepState::Ready(Box::new(d)),
                Err(e) => {
                    eprintln!("warning: decoding steps stay on MLX's graph: {e}");
                    StepState::Off
                }
            };
        }
        let StepState::Ready(decoder) = &mut *state else {
            return Ok(None);
        };
        decoder.configure(self, graph, pdl, attention)?;
        Ok(Some(StepSession::start(state, self, token, kv, pos)?))
    }

    /// How greedy decoding steps run from the next request on.
    pub fn set_decode_path(&mut self, path: DecodePath) {
        self.decode_path = path;
    }

    pub fn decode_path(&self) -> DecodePath {
        self.decode_path
    }

    /// Whether single-token steps run the fused decoding kernels.
    pub fn fused_decode(&self) -> bool {
        self.fused.is_some()
    }

    /// One decoding step through the fused kernels: five launches per layer
    /// (norm + q/k/v, attention with its cache write, o + residual,
    /// norm + gate/up + SwiGLU, down + residual) instead of about thirty.
    fn forward_fused(
        &self,
        f: &FusedDecode,
        x: &Array,
        pos: i32,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let len = cache.len();
        let meta = f.meta(len, pos)?;
        let mut x = x.clone();
        for (layer, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = self.layer_fused(f, layer, &x, lc, &meta)?;
        }
        for lc in &mut cache.layers {
            lc.advance(1);
        }
        Ok(fast::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?)
    }

    fn layer_fused(
        &self,
        f: &FusedDecode,
        layer: &Layer,
        x: &Array,
        cache: &mut LayerCache,
        meta: &Array,
    ) -> Result<Array> {
        let w = layer
            .fused_weights()
            .expect("checked for every layer when the fused path was enabled");
        let eps = self.cfg.rms_norm_eps;
        let norm = |weight| Prologue::RmsNorm { weight, eps };
        let qkv = qmv(x, w.qkv, norm(&layer.input_norm), Epilogue::None)?;
        let len = cache.len();
        let (keys, values) = cache.buffers_for_write()?;
        let o = attention::decode(
            &DecodeStep {
                qkv: &qkv,
                q_norm: &layer.attn.q_norm,
                k_norm: &layer.attn.k_norm,
                keys,
                values,
                meta,
                counters: &f.counters,
                len,
                rms_eps: eps,
                rope_theta: self.cfg.rope_theta,
            },
            f.heads,
        )?;
        let x = qmv(&o, w.o, Prologue::None, Epilogue::Residual(x))?;
        let act = qmv(&x, w.gate_up, norm(&layer.post_norm), Epilogue::SwiGlu)?;
        qmv(&act, w.down, Prologue::None, Epilogue::Residual(&x))
    }

    /// Hidden states after each layer, for parity tests (HF's
    /// `output_hidden_states` convention, spec §3.6).
    pub fn forward_with_hidden(
        &self,
        x: &Array,
        rope: &Rope,
        cache: &mut KvCache,
        visual: Option<&Visual<'_>>,
    ) -> Result<(Array, Vec<Array>)> {
        let mut hidden = vec![x.clone()];
        let out = self.run_layers(x, rope, cache, visual, |h| hidden.push(h.clone()))?;
        Ok((out, hidden))
    }

    /// Keeps dense copies of the quantized decoder matrices for prefill when
    /// they fit in `budget` bytes. Returns the bytes used (0 when not).
    pub fn add_dense_copies(&mut self, budget: usize, single_row: bool) -> Result<usize> {
        let dtype = self.dtype();
        // The LM head (or the tied embedding) only serves single rows.
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let mut need = if single_row {
            dense_bytes(head, dtype)
        } else {
            0
        };
        for l in &mut self.layers {
            for lin in l.attn.qkv.linears_mut().chain(l.mlp.gate_up.linears_mut()) {
                need += lin.dense_bytes(dtype);
            }
            need += l.attn.o.dense_bytes(dtype) + l.mlp.down.dense_bytes(dtype);
        }
        if need == 0 || need > budget {
            return Ok(0);
        }
        for l in &mut self.layers {
            for lin in l.attn.qkv.linears_mut().chain(l.mlp.gate_up.linears_mut()) {
                lin.add_dense_copy(dtype, single_row)?;
            }
            l.attn.o.add_dense_copy(dtype, single_row)?;
            l.mlp.down.add_dense_copy(dtype, single_row)?;
        }
        if single_row {
            self.dense_head = dense_copy(head, dtype)?;
        }
        Ok(need)
    }

    /// Logits `(…, vocab)` for final-normed hidden states.
    pub fn logits(&self, h: &Array) -> Result<Array> {
        if let Some(d) = &self.dense_head {
            return Ok(h.matmul(&d.t()?)?);
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(match head {
            Weight::Dense(w) => h.matmul(&w.t()?)?,
            Weight::Quantized(q) if crate::kernels::qmv_applies(h, q) => crate::kernels::qmv(h, q)?,
            Weight::Quantized(q) => q.matmul_t(h)?,
        })
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &Array,
        rope: &Rope,
        cache: &mut super::kv_cache::LayerCache,
    ) -> Result<Array> {
        let eps = self.cfg.rms_norm_eps;
        let h = fast::rms_norm(x, &layer.input_norm, eps)?;
        let a = self.attention(&layer.attn, &h, rope, cache)?;
        let x = x.add(&a)?;
        let h = fast::rms_norm(&x, &layer.post_norm, eps)?;
        let m = &layer.mlp;
        let act = match m.gate_up.fused() {
            Some(gate_up) if prefill::applies(h.dtype()) => prefill::swiglu(&gate_up.forward(&h)?)?,
            _ => {
                let gu = m.gate_up.forward(&h)?;
                nn::silu(&gu[0])?.mul(&gu[1])?
            }
        };
        let ff = m.down.forward(&act)?;
        Ok(x.add(&ff)?)
    }

    fn attention(
        &self,
        at: &Attention,
        h: &Array,
        rope: &Rope,
        cache: &mut super::kv_cache::LayerCache,
    ) -> Result<Array> {
        let t = &self.cfg;
        let l = h.dim(1);
        let heads = attention_heads(t);
        let (nh, nkv, hd) = (heads.heads, heads.kv_heads, heads.head_dim);
        let (q, k, v) = match (at.qkv.fused(), rope) {
            // One kernel for the norms, the rotation and the layouts (the
            // tables are already in the activations' dtype: `Rope::in_dtype`).
            (Some(fused), Rope::Tables { cos, sin })
                if prefill::text_qk_applies(h.dtype(), &heads) =>
            {
                let qkv = fused.forward(h)?;
                prefill::text_qk(
                    &qkv,
                    &at.q_norm,
                    &at.k_norm,
                    cos,
                    sin,
                    heads,
                    t.rms_norm_eps,
                )?
            }
            _ => {
                let qkv = at.qkv.forward(h)?;
                let q = qkv[0].reshape(&[1, l, nh, hd])?;
                let k = qkv[1].reshape(&[1, l, nkv, hd])?;
                let v = qkv[2].reshape(&[1, l, nkv, hd])?;
                let q = fast::rms_norm(&q, &at.q_norm, t.rms_norm_eps)?.transpose(&[0, 2, 1, 3])?;
                let k = fast::rms_norm(&k, &at.k_norm, t.rms_norm_eps)?.transpose(&[0, 2, 1, 3])?;
                let v = v.transpose(&[0, 2, 1, 3])?;
                let (q, k) = match rope {
                    Rope::Offset(p) => (
                        fast::rope(&q, hd, false, t.rope_theta, 1.0, *p)?,
                        fast::rope(&k, hd, false, t.rope_theta, 1.0, *p)?,
                    ),
                    Rope::Tables { cos, sin } => {
                        (rotate_half(&q, cos, sin)?, rotate_half(&k, cos, sin)?)
                    }
                };
                (q, k, v)
            }
        };
        let (keys, values) = cache.update(&k, &v)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mask = if l > 1 { Mask::Causal } else { Mask::None };
        let o = fast::scaled_dot_product_attention(&q, &keys, &values, scale, mask)?;
        let o = o.transpose(&[0, 2, 1, 3])?.reshape(&[1, l, nh * hd])?;
        at.o.forward(&o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fused() -> FusedDecode {
        let zeros = Array::zeros(&[4], Dtype::I32).unwrap();
        FusedDecode {
            heads: Heads {
                heads: 4,
                kv_heads: 2,
                head_dim: 64,
            },
            step: Array::from_i32(&[1, 1, 0, 0], &[4]).unwrap(),
            zeros,
            last_meta: Mutex::new(None),
            counters: Array::zeros(&[64], Dtype::I32).unwrap(),
        }
    }

    #[test]
    fn step_metadata_follows_the_previous_step_or_starts_afresh() {
        let f = fused();
        let meta = |len, pos| f.meta(len, pos).unwrap().to_vec::<i32>().unwrap();
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
