//! The Qwen3 text decoder with per-head q/k RMSNorm, interleaved MRoPE and
//! DeepStack injection (`docs/qwen3-vl.md` §3). Single-token decoding steps
//! run in `crate::decode`, on the weights [`TextModel::decoder_view`] exposes.

use std::sync::Arc;

use mlx::fast::{self, Mask};
use mlx::nn::{self, Weight};
use mlx::{Array, Dtype, Quantized};

use super::batch_kv::{BatchKv, BatchLayer};
use super::kv_cache::KvCache;
use super::linear::{Linear, Projections, dense_bytes, dense_copy};
use super::positions::rotate_half;
use super::weights::WeightSet;
use crate::config::{ModelConfig, TextConfig};
use crate::error::Result;
use crate::kernels::attention::Heads;
use crate::kernels::{Kernels, prefill};

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
    kernels: Arc<Kernels>,
}

/// A layer's weights as a decoding step reads them: the norms, and the
/// 4-bit matrices with q/k/v and gate/up fused.
pub struct LayerView<'a> {
    pub input_norm: &'a Array,
    pub post_norm: &'a Array,
    pub q_norm: &'a Array,
    pub k_norm: &'a Array,
    pub qkv: &'a Quantized,
    pub o: &'a Quantized,
    pub gate_up: &'a Quantized,
    pub down: &'a Quantized,
}

/// The decoder's weights as single-token steps read them, when every layer
/// has its matrices quantized and fused ([`TextModel::decoder_view`]).
pub struct DecoderView<'a> {
    pub config: &'a TextConfig,
    /// The activations' type.
    pub dtype: Dtype,
    pub heads: Heads,
    pub embed: &'a Weight,
    /// The LM head, or the tied embedding.
    pub head: &'a Weight,
    pub final_norm: &'a Array,
    pub layers: Vec<LayerView<'a>>,
}

impl Layer {
    fn view(&self) -> Option<LayerView<'_>> {
        Some(LayerView {
            input_norm: &self.input_norm,
            post_norm: &self.post_norm,
            q_norm: &self.attn.q_norm,
            k_norm: &self.attn.k_norm,
            qkv: self.attn.qkv.fused()?.quantized()?,
            o: self.attn.o.quantized()?,
            gate_up: self.mlp.gate_up.fused()?.quantized()?,
            down: self.mlp.down.quantized()?,
        })
    }
}

/// The decoder's attention layout.
pub fn attention_heads(cfg: &TextConfig) -> Heads {
    Heads {
        heads: cfg.num_attention_heads as i32,
        kv_heads: cfg.num_key_value_heads as i32,
        head_dim: cfg.head_dim as i32,
    }
}

impl TextModel {
    pub fn load(w: &mut WeightSet, cfg: &ModelConfig, kernels: &Arc<Kernels>) -> Option<TextModel> {
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
        Some(TextModel {
            cfg: t.clone(),
            embed: embed?,
            layers,
            norm: norm?,
            lm_head,
            dense_head: None,
            kernels: kernels.clone(),
        })
    }

    /// The weights single-token steps read, when every layer's matrices are
    /// quantized and fused (else `None`: steps run as [`TextModel::forward`]).
    pub fn decoder_view(&self) -> Option<DecoderView<'_>> {
        let layers = self
            .layers
            .iter()
            .map(Layer::view)
            .collect::<Option<Vec<_>>>()?;
        Some(DecoderView {
            config: &self.cfg,
            dtype: self.dtype(),
            heads: attention_heads(&self.cfg),
            embed: &self.embed,
            head: self.lm_head.as_ref().unwrap_or(&self.embed),
            final_norm: &self.norm,
            layers,
        })
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
        let mut one = [Segment::Rows {
            rows: x.dim(1) as usize,
            rope,
            cache,
        }];
        self.run_layers(x, &mut one, visual, |_| {})
    }

    /// Runs the decoder on the rows of several sequences at once: `x`
    /// `(1, N, hidden)` holds each segment's rows in order. The linear
    /// layers read all `N` rows together (one pass over the weights for the
    /// whole batch); attention runs per segment, at its own positions and
    /// on its own cache. `visual`'s DeepStack additions span all `N` rows.
    pub fn forward_batch(
        &self,
        x: &Array,
        segments: &mut [Segment<'_>],
        visual: Option<&Visual<'_>>,
    ) -> Result<Array> {
        let rows: usize = segments.iter().map(Segment::rows).sum();
        if rows != x.dim(1) as usize || segments.is_empty() {
            return Err(crate::error::Error::Model(format!(
                "a batch of {rows} rows in {} segments for an input of {} rows",
                segments.len(),
                x.dim(1)
            )));
        }
        self.run_layers(x, segments, visual, |_| {})
    }

    /// The decoder layers and the final norm, calling `after_layer` with each
    /// layer's output (DeepStack features added).
    fn run_layers(
        &self,
        x: &Array,
        segments: &mut [Segment<'_>],
        visual: Option<&Visual<'_>>,
        mut after_layer: impl FnMut(&Array),
    ) -> Result<Array> {
        let ropes = segments
            .iter()
            .map(|s| match s {
                Segment::Rows { rope, .. } => rope.in_dtype(x.dtype()).map(Some),
                Segment::Batch { .. } => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut parts: Vec<Part<'_, '_>> = segments
                .iter_mut()
                .zip(&ropes)
                .map(|(s, rope)| match (s, rope) {
                    (Segment::Rows { rows, cache, .. }, Some(rope)) => Part::Rows {
                        rows: *rows as i32,
                        rope,
                        cache: &mut cache.layers[i],
                    },
                    (
                        Segment::Batch {
                            cache,
                            positions,
                            mask,
                        },
                        _,
                    ) => {
                        let (layer, at) = cache.layer_mut(i);
                        Part::Batch {
                            rows: positions.dim(0),
                            at,
                            positions,
                            mask: *mask,
                            cache: layer,
                        }
                    }
                    (Segment::Rows { .. }, None) => unreachable!("a rope per row segment"),
                })
                .collect();
            x = self.layer(layer, &x, &mut parts)?;
            if let Some(vis) = visual
                && let Some(add) = vis.deepstack.get(i)
            {
                x = x.add(add)?;
            }
            after_layer(&x);
        }
        Ok(fast::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?)
    }

    /// Hidden states after each layer, for parity tests (HF's
    /// `output_hidden_states` convention, `docs/qwen3-vl.md` §3.6).
    pub fn forward_with_hidden(
        &self,
        x: &Array,
        rope: &Rope,
        cache: &mut KvCache,
        visual: Option<&Visual<'_>>,
    ) -> Result<(Array, Vec<Array>)> {
        let mut hidden = vec![x.clone()];
        let mut one = [Segment::Rows {
            rows: x.dim(1) as usize,
            rope,
            cache,
        }];
        let out = self.run_layers(x, &mut one, visual, |h| hidden.push(h.clone()))?;
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
            Weight::Quantized(q) if self.kernels.qmv_applies(h, q) => self.kernels.qmv(h, q)?,
            Weight::Quantized(q) => q.matmul_t(h)?,
        })
    }

    fn layer(&self, layer: &Layer, x: &Array, parts: &mut [Part<'_, '_>]) -> Result<Array> {
        let eps = self.cfg.rms_norm_eps;
        let h = fast::rms_norm(x, &layer.input_norm, eps)?;
        let a = self.attention(&layer.attn, &h, parts)?;
        let x = x.add(&a)?;
        let h = fast::rms_norm(&x, &layer.post_norm, eps)?;
        let m = &layer.mlp;
        let act = match m.gate_up.fused() {
            Some(gate_up) if prefill::applies(&self.kernels, h.dtype()) => {
                prefill::swiglu(&self.kernels, &gate_up.forward(&self.kernels, &h)?)?
            }
            _ => {
                let gu = m.gate_up.forward(&self.kernels, &h)?;
                nn::silu(&gu[0])?.mul(&gu[1])?
            }
        };
        let ff = m.down.forward(&self.kernels, &act)?;
        Ok(x.add(&ff)?)
    }

    /// Self-attention of every part's rows of `h`: the projections over all
    /// rows at once, then each part's norms, rotation, cache and attention.
    fn attention(&self, at: &Attention, h: &Array, parts: &mut [Part<'_, '_>]) -> Result<Array> {
        let t = &self.cfg;
        let heads = attention_heads(t);
        let (nh, hd) = (heads.heads, heads.head_dim);
        let whole = parts.len() == 1;
        // One kernel for the norms, the rotation and the layouts where a
        // part's rotation is given as tables (already in the activations'
        // dtype: `Rope::in_dtype`).
        let kernel_qk = at
            .qkv
            .fused()
            .filter(|_| prefill::text_qk_applies(&self.kernels, h.dtype(), &heads));
        let tables = parts.iter().any(|p| {
            matches!(
                p,
                Part::Rows {
                    rope: Rope::Tables { .. },
                    ..
                }
            )
        });
        let fused_out = match kernel_qk {
            Some(fused) if tables => Some(fused.forward(&self.kernels, h)?),
            _ => None,
        };
        let mut split: Option<Vec<Array>> = None;
        let mut split_qkv = || -> Result<Vec<Array>> {
            if split.is_none() {
                // The fused product is already made when another part took
                // the kernel: split it instead.
                split = Some(match &fused_out {
                    Some(qkv) => {
                        let (q_width, kv_width) = (nh * hd, heads.kv_heads * hd);
                        qkv.split_at(&[q_width, q_width + kv_width], -1)?
                    }
                    None => at.qkv.forward(&self.kernels, h)?,
                });
            }
            Ok(split.clone().expect("split above"))
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let mut outs = Vec::with_capacity(parts.len());
        let mut row = 0;
        for part in parts.iter_mut() {
            let n = part.rows();
            let rows = |a: &Array| -> Result<Array> {
                Ok(if whole {
                    a.clone()
                } else {
                    a.slice_axis(1, row, row + n)?
                })
            };
            let o = match part {
                Part::Rows { rope, cache, .. } => {
                    let rope: &Rope = rope;
                    let (q, k, v) = match (&fused_out, rope) {
                        (Some(qkv), Rope::Tables { cos, sin }) => prefill::text_qk(
                            &self.kernels,
                            &rows(qkv)?,
                            &at.q_norm,
                            &at.k_norm,
                            cos,
                            sin,
                            heads,
                            t.rms_norm_eps,
                        )?,
                        _ => {
                            let qkv = split_qkv()?;
                            let (q, k, v) = (rows(&qkv[0])?, rows(&qkv[1])?, rows(&qkv[2])?);
                            self.rotate(at, &q, &k, &v, rope)?
                        }
                    };
                    let (keys, values) = cache.update(&k, &v)?;
                    let mask = if n > 1 { Mask::Causal } else { Mask::None };
                    let o = fast::scaled_dot_product_attention(&q, &keys, &values, scale, mask)?;
                    o.transpose(&[0, 2, 1, 3])?.reshape(&[1, n, nh * hd])?
                }
                Part::Batch {
                    at: index,
                    positions,
                    mask,
                    cache,
                    ..
                } => {
                    let qkv = split_qkv()?;
                    let (q, k, v) = (rows(&qkv[0])?, rows(&qkv[1])?, rows(&qkv[2])?);
                    let (q, k, v) = self.rotate_rows(at, &q, &k, &v, positions)?;
                    let (keys, values) = cache.update(&k, &v, *index)?;
                    let mask = match mask {
                        Some(m) => Mask::Array(m),
                        None => Mask::None,
                    };
                    let o = fast::scaled_dot_product_attention(&q, &keys, &values, scale, mask)?;
                    // (rows, heads, 1, head_dim) → (1, rows, heads · head_dim)
                    o.reshape(&[1, n, nh * hd])?
                }
            };
            outs.push(o);
            row += n;
        }
        let o = if whole {
            outs.pop().expect("one part")
        } else {
            let refs: Vec<&Array> = outs.iter().collect();
            Array::concatenate(&refs, 1)?
        };
        at.o.forward(&self.kernels, &o)
    }

    /// Queries, keys and values `(1, heads, L, head_dim)` from their
    /// projections `(1, L, width)`: per-head norms, then the rotation.
    fn rotate(
        &self,
        at: &Attention,
        q: &Array,
        k: &Array,
        v: &Array,
        rope: &Rope,
    ) -> Result<(Array, Array, Array)> {
        let t = &self.cfg;
        let heads = attention_heads(t);
        let (nh, nkv, hd) = (heads.heads, heads.kv_heads, heads.head_dim);
        let l = q.dim(1);
        let q = q.reshape(&[1, l, nh, hd])?;
        let k = k.reshape(&[1, l, nkv, hd])?;
        let v = v.reshape(&[1, l, nkv, hd])?;
        let q = fast::rms_norm(&q, &at.q_norm, t.rms_norm_eps)?.transpose(&[0, 2, 1, 3])?;
        let k = fast::rms_norm(&k, &at.k_norm, t.rms_norm_eps)?.transpose(&[0, 2, 1, 3])?;
        let v = v.transpose(&[0, 2, 1, 3])?;
        let (q, k) = match rope {
            Rope::Offset(p) => (
                fast::rope(&q, hd, false, t.rope_theta, 1.0, *p)?,
                fast::rope(&k, hd, false, t.rope_theta, 1.0, *p)?,
            ),
            Rope::Tables { cos, sin } => (rotate_half(&q, cos, sin)?, rotate_half(&k, cos, sin)?),
        };
        Ok((q, k, v))
    }

    /// Queries, keys and values `(rows, heads, 1, head_dim)` of one token
    /// per row from their projections `(1, rows, width)`, each row rotated
    /// at its own position.
    fn rotate_rows(
        &self,
        at: &Attention,
        q: &Array,
        k: &Array,
        v: &Array,
        positions: &Array,
    ) -> Result<(Array, Array, Array)> {
        let t = &self.cfg;
        let heads = attention_heads(t);
        let (nh, nkv, hd) = (heads.heads, heads.kv_heads, heads.head_dim);
        let r = q.dim(1);
        let q = q.reshape(&[r, 1, nh, hd])?;
        let k = k.reshape(&[r, 1, nkv, hd])?;
        let v = v.reshape(&[r, nkv, 1, hd])?;
        let q = fast::rms_norm(&q, &at.q_norm, t.rms_norm_eps)?.reshape(&[r, nh, 1, hd])?;
        let k = fast::rms_norm(&k, &at.k_norm, t.rms_norm_eps)?.reshape(&[r, nkv, 1, hd])?;
        let q = fast::rope_dynamic(&q, hd, false, t.rope_theta, 1.0, positions)?;
        let k = fast::rope_dynamic(&k, hd, false, t.rope_theta, 1.0, positions)?;
        Ok((q, k, v))
    }
}

/// Rows of a batched forward pass ([`TextModel::forward_batch`]).
pub enum Segment<'a> {
    /// One sequence's rows on its own cache: a prompt chunk, or a step.
    Rows {
        rows: usize,
        rope: &'a Rope,
        cache: &'a mut KvCache,
    },
    /// One row per row of `cache` (a decoding step of every sequence in
    /// it), each at its own plain RoPE position (`positions`, `(rows,)`
    /// int32); `mask` keeps each row's own positions.
    Batch {
        cache: &'a mut BatchKv,
        positions: &'a Array,
        mask: Option<&'a Array>,
    },
}

impl Segment<'_> {
    pub fn rows(&self) -> usize {
        match self {
            Segment::Rows { rows, .. } => *rows,
            Segment::Batch { positions, .. } => positions.dim(0) as usize,
        }
    }
}

/// A segment as one layer sees it.
enum Part<'r, 'c> {
    Rows {
        rows: i32,
        rope: &'r Rope,
        cache: &'c mut super::kv_cache::LayerCache,
    },
    Batch {
        rows: i32,
        /// The index the step writes at.
        at: i32,
        positions: &'r Array,
        mask: Option<&'r Array>,
        cache: &'c mut BatchLayer,
    },
}

impl Part<'_, '_> {
    fn rows(&self) -> i32 {
        match self {
            Part::Rows { rows, .. } | Part::Batch { rows, .. } => *rows,
        }
    }
}
