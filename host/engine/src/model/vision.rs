//! The vision tower (`docs/qwen3-vl.md` §2): patch embedding, interpolated position
//! embedding, 2-D RoPE ViT blocks, patch merger and DeepStack mergers.
//! Each image runs on its own, which is what the cache wants and what HF's
//! block-diagonal attention computes.

use std::sync::Arc;

use mlx::fast::{self, Mask};
use mlx::nn::{self, Linear};
use mlx::{Array, Dtype};

use super::positions::{rotate_half, vision_rope_tables};
use super::weights::WeightSet;
use crate::config::{ModelConfig, VisionConfig};
use crate::error::Result;
use crate::kernels::{Kernels, prefill};

const EPS: f32 = 1e-6;

struct LayerNorm {
    weight: Array,
    bias: Array,
}

impl LayerNorm {
    fn load(w: &mut WeightSet, name: &str, dim: usize) -> Option<LayerNorm> {
        let weight = w.take(&format!("{name}.weight"), &[dim as i32]);
        let bias = w.take(&format!("{name}.bias"), &[dim as i32]);
        Some(LayerNorm {
            weight: weight?,
            bias: bias?,
        })
    }

    fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::layer_norm(x, &self.weight, &self.bias, EPS)?)
    }
}

struct Block {
    norm1: LayerNorm,
    norm2: LayerNorm,
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// `merger` or one of the `deepstack_merger_list`.
struct Merger {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    /// DeepStack mergers normalise after grouping 2×2 windows ("post-shuffle").
    post_shuffle: bool,
}

impl Merger {
    fn load(
        w: &mut WeightSet,
        cfg: &ModelConfig,
        name: &str,
        post_shuffle: bool,
    ) -> Option<Merger> {
        let v = &cfg.vision;
        let merged = v.hidden_size * v.spatial_merge_size * v.spatial_merge_size;
        let norm = LayerNorm::load(
            w,
            &format!("{name}.norm"),
            if post_shuffle { merged } else { v.hidden_size },
        );
        let fc1 = w.linear(cfg, &format!("{name}.linear_fc1"), merged, merged, true);
        let fc2 = w.linear(
            cfg,
            &format!("{name}.linear_fc2"),
            v.out_hidden_size,
            merged,
            true,
        );
        Some(Merger {
            norm: norm?,
            fc1: fc1?,
            fc2: fc2?,
            post_shuffle,
        })
    }

    fn forward(&self, x: &Array, group: i32) -> Result<Array> {
        let n = x.dim(0);
        let d = x.dim(1);
        let grouped = if self.post_shuffle {
            self.norm.forward(&x.reshape(&[n / group, d * group])?)?
        } else {
            self.norm.forward(x)?.reshape(&[n / group, d * group])?
        };
        // Exact (erf) GELU in the mergers, unlike the blocks.
        Ok(self.fc2.forward(&nn::gelu(&self.fc1.forward(&grouped)?)?)?)
    }
}

/// The output of the tower for one image.
#[derive(Debug, Clone)]
pub struct VisionFeatures {
    /// `(tokens, text_hidden)`: one row per `<|image_pad|>`.
    pub merged: Array,
    /// One `(tokens, text_hidden)` array per DeepStack level.
    pub deepstack: Vec<Array>,
}

impl VisionFeatures {
    pub fn nbytes(&self) -> usize {
        self.merged.nbytes() + self.deepstack.iter().map(Array::nbytes).sum::<usize>()
    }
}

pub struct VisionTower {
    cfg: VisionConfig,
    /// `(Dv, 3·Tp·P·P)`: the Conv3d kernel as a matrix (kernel = stride = patch).
    patch_w: Array,
    patch_b: Array,
    pos_embed: Array,
    blocks: Vec<Block>,
    merger: Merger,
    deepstack: Vec<Merger>,
    kernels: Arc<Kernels>,
}

impl VisionTower {
    pub fn load(
        w: &mut WeightSet,
        cfg: &ModelConfig,
        kernels: &Arc<Kernels>,
    ) -> Option<VisionTower> {
        let v = &cfg.vision;
        let (dv, p, tp, c) = (
            v.hidden_size as i32,
            v.patch_size as i32,
            v.temporal_patch_size as i32,
            v.in_channels as i32,
        );
        let row = c * tp * p * p;
        // HF stores the Conv3d kernel (Dv, C, Tp, P, P); MLX checkpoints channels-last (Dv, Tp, P, P, C).
        let patch_w = match w.take_any("model.visual.patch_embed.proj.weight") {
            Some(a) if a.shape() == [dv, c, tp, p, p] => a.reshape(&[dv, row]).ok(),
            Some(a) if a.shape() == [dv, tp, p, p, c] => a
                .transpose(&[0, 4, 1, 2, 3])
                .and_then(|a| a.reshape(&[dv, row]))
                .ok(),
            Some(a) => {
                w.note_misshaped(format!(
                    "model.visual.patch_embed.proj.weight: {:?}, expected {:?} (Hugging Face) or {:?} (MLX)",
                    a.shape(),
                    [dv, c, tp, p, p],
                    [dv, tp, p, p, c]
                ));
                None
            }
            None => None,
        };
        let patch_b = w.take("model.visual.patch_embed.proj.bias", &[dv]);
        let pos_embed = w.take(
            "model.visual.pos_embed.weight",
            &[v.num_position_embeddings as i32, dv],
        );
        let mut blocks = Vec::with_capacity(v.depth);
        for i in 0..v.depth {
            let b = format!("model.visual.blocks.{i}");
            let d = v.hidden_size;
            let norm1 = LayerNorm::load(w, &format!("{b}.norm1"), d);
            let norm2 = LayerNorm::load(w, &format!("{b}.norm2"), d);
            let qkv = w.linear(cfg, &format!("{b}.attn.qkv"), 3 * d, d, true);
            let proj = w.linear(cfg, &format!("{b}.attn.proj"), d, d, true);
            let fc1 = w.linear(
                cfg,
                &format!("{b}.mlp.linear_fc1"),
                v.intermediate_size,
                d,
                true,
            );
            let fc2 = w.linear(
                cfg,
                &format!("{b}.mlp.linear_fc2"),
                d,
                v.intermediate_size,
                true,
            );
            if let (Some(norm1), Some(norm2), Some(qkv), Some(proj), Some(fc1), Some(fc2)) =
                (norm1, norm2, qkv, proj, fc1, fc2)
            {
                blocks.push(Block {
                    norm1,
                    norm2,
                    qkv,
                    proj,
                    fc1,
                    fc2,
                });
            }
        }
        let merger = Merger::load(w, cfg, "model.visual.merger", false);
        let deepstack: Vec<Option<Merger>> = (0..v.deepstack_visual_indexes.len())
            .map(|k| {
                Merger::load(
                    w,
                    cfg,
                    &format!("model.visual.deepstack_merger_list.{k}"),
                    true,
                )
            })
            .collect();
        if blocks.len() != v.depth || deepstack.iter().any(Option::is_none) {
            return None;
        }
        Some(VisionTower {
            cfg: v.clone(),
            patch_w: patch_w?,
            patch_b: patch_b?,
            pos_embed: pos_embed?,
            blocks,
            merger: merger?,
            deepstack: deepstack
                .into_iter()
                .map(|m| m.expect("checked above"))
                .collect(),
            kernels: kernels.clone(),
        })
    }

    pub fn dtype(&self) -> Dtype {
        self.patch_w.dtype()
    }

    /// Bilinear resampling of the learned position table to the image grid,
    /// rows in merge-window order (`docs/qwen3-vl.md` §2.3, transformers 4.57 arithmetic).
    fn position_embedding(&self, grid: [usize; 3]) -> Result<Array> {
        let [t, h, w] = grid;
        let g = (self.cfg.num_position_embeddings as f64).sqrt() as usize;
        // torch.linspace(0, g-1, n) in f32: k·step rounded once (step in f32).
        let linspace = |n: usize| -> Vec<f32> {
            if n == 1 {
                return vec![0.0];
            }
            let step = ((g - 1) as f32) / ((n - 1) as f32);
            (0..n)
                .map(|k| {
                    if k < n / 2 {
                        (k as f64 * step as f64) as f32
                    } else {
                        ((g - 1) as f64 - (n - 1 - k) as f64 * step as f64) as f32
                    }
                })
                .collect()
        };
        let (ry, rx) = (linspace(h), linspace(w));
        let m = self.cfg.spatial_merge_size;
        let n = h * w;
        let mut idx = [
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        ];
        let mut wts = [
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        ];
        for bi in 0..h / m {
            for bj in 0..w / m {
                for ii in 0..m {
                    for jj in 0..m {
                        let (a, b) = (bi * m + ii, bj * m + jj);
                        let (y0, x0) = (ry[a].trunc() as usize, rx[b].trunc() as usize);
                        let (y1, x1) = ((y0 + 1).min(g - 1), (x0 + 1).min(g - 1));
                        let (fy, fx) = (ry[a] - y0 as f32, rx[b] - x0 as f32);
                        let corners = [(y0, x0), (y0, x1), (y1, x0), (y1, x1)];
                        let weights = [
                            (1.0 - fy) * (1.0 - fx),
                            (1.0 - fy) * fx,
                            fy * (1.0 - fx),
                            fy * fx,
                        ];
                        for q in 0..4 {
                            idx[q].push((corners[q].0 * g + corners[q].1) as i32);
                            wts[q].push(weights[q]);
                        }
                    }
                }
            }
        }
        let dtype = self.pos_embed.dtype();
        let mut pe: Option<Array> = None;
        for q in 0..4 {
            let rows = self
                .pos_embed
                .take(&Array::from_i32(&idx[q], &[n as i32])?, 0)?;
            let wq = Array::from_f32(&wts[q], &[n as i32, 1])?.astype(dtype)?;
            let term = rows.mul(&wq)?;
            pe = Some(match pe {
                None => term,
                Some(acc) => acc.add(&term)?,
            });
        }
        let pe = pe.expect("four corners");
        if t == 1 {
            Ok(pe)
        } else {
            Ok(Array::concatenate(&vec![&pe; t], 0)?)
        }
    }

    /// Runs the tower on one image's `pixel_values` `(N, C·Tp·P·P)`.
    pub fn forward(&self, pixel_values: &Array, grid: [usize; 3]) -> Result<VisionFeatures> {
        self.forward_in_pieces(pixel_values, grid, usize::MAX, &mut |_| Ok(()))
    }

    /// [`VisionTower::forward`] with attention over at most `piece` query
    /// rows at a time (its scores grow with the square of the patches), and
    /// `checkpoint` called with each attention piece's and each block's
    /// output (to evaluate it and look at the cancel token; an error stops
    /// the pass).
    pub fn forward_in_pieces(
        &self,
        pixel_values: &Array,
        grid: [usize; 3],
        piece: usize,
        checkpoint: &mut dyn FnMut(&Array) -> Result<()>,
    ) -> Result<VisionFeatures> {
        let mut pass = self.start_pass(pixel_values, grid, piece)?;
        self.run_blocks(&mut pass, self.blocks.len(), checkpoint)?;
        self.finish_pass(pass)
    }

    /// The tower's blocks.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Starts a pass over one image (the patch embedding), to run block by
    /// block ([`VisionTower::run_blocks`]) and end with
    /// [`VisionTower::finish_pass`]: a server spreads an image's encoding
    /// over several batch steps this way.
    pub fn start_pass(
        &self,
        pixel_values: &Array,
        grid: [usize; 3],
        piece: usize,
    ) -> Result<VisionPass> {
        let dtype = self.dtype();
        let n = pixel_values.dim(0);
        let hd = (self.cfg.hidden_size / self.cfg.num_heads) as i32;
        let x = pixel_values
            .astype(dtype)?
            .matmul(&self.patch_w.t()?)?
            .add(&self.patch_b)?;
        let x = x.add(&self.position_embedding(grid)?)?;
        let (cos, sin) = vision_rope_tables(grid, self.cfg.spatial_merge_size, hd as usize);
        // Copied to the device once: every block reads them.
        let on_device = |t: &[f32]| -> Result<Array> {
            Ok(mlx::Staging::f32_array(t, &[n, hd])?.add(&Array::zeros(&[1], Dtype::F32)?)?)
        };
        Ok(VisionPass {
            x,
            cos: on_device(&cos)?,
            sin: on_device(&sin)?,
            next_block: 0,
            piece,
            deepstack: vec![],
        })
    }

    /// Runs up to `blocks` more blocks of `pass`, calling `checkpoint` as
    /// [`VisionTower::forward_in_pieces`] does. Whether the blocks are done.
    pub fn run_blocks(
        &self,
        pass: &mut VisionPass,
        blocks: usize,
        checkpoint: &mut dyn FnMut(&Array) -> Result<()>,
    ) -> Result<bool> {
        let dtype = self.dtype();
        let n = pass.x.dim(0);
        let (dv, heads) = (self.cfg.hidden_size as i32, self.cfg.num_heads as i32);
        let hd = dv / heads;
        let m = self.cfg.spatial_merge_size;
        let group = (m * m) as i32;
        let kernels = &*self.kernels;
        let fused = prefill::applies(kernels, dtype);
        let (cos, sin) = (&pass.cos, &pass.sin);
        // The unfused path broadcasts them over the heads of `(n, heads, hd)`.
        let (cos_h, sin_h) = (cos.reshape(&[n, 1, hd])?, sin.reshape(&[n, 1, hd])?);
        // HF applies the vision rotary in f32 and casts back.
        let rope = |t: &Array| -> Result<Array> {
            Ok(rotate_half(&t.astype(Dtype::F32)?, &cos_h, &sin_h)?.astype(dtype)?)
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let gelu = |x: &Array| -> Result<Array> {
            if fused {
                prefill::gelu_tanh(kernels, x)
            } else {
                Ok(nn::gelu_tanh(x)?)
            }
        };
        let end = (pass.next_block + blocks).min(self.blocks.len());
        let mut x = pass.x.clone();
        for i in pass.next_block..end {
            let b = &self.blocks[i];
            let h = b.norm1.forward(&x)?;
            let qkv = b.qkv.forward(&h)?;
            let (q, k, v) = if fused {
                prefill::vision_qkv(kernels, &qkv, cos, sin, heads, hd)?
            } else {
                let qkv = qkv.reshape(&[n, 3, heads, hd])?;
                let parts = qkv.split_at(&[1, 2], 1)?;
                let heads_first =
                    |t: Array| -> Result<Array> { Ok(t.transpose(&[1, 0, 2])?.expand_dims(0)?) };
                (
                    heads_first(rope(&parts[0].squeeze(1)?)?)?,
                    heads_first(rope(&parts[1].squeeze(1)?)?)?,
                    heads_first(parts[2].squeeze(1)?)?,
                )
            };
            let o = attention_in_pieces(&q, &k, &v, scale, pass.piece, checkpoint)?;
            let o = o.squeeze(0)?.transpose(&[1, 0, 2])?.reshape(&[n, dv])?;
            x = x.add(&b.proj.forward(&o)?)?;
            let h = b.norm2.forward(&x)?;
            x = x.add(&b.fc2.forward(&gelu(&b.fc1.forward(&h)?)?)?)?;
            if let Some(k) = self
                .cfg
                .deepstack_visual_indexes
                .iter()
                .position(|&d| d == i)
            {
                pass.deepstack
                    .push((k, self.deepstack[k].forward(&x, group)?));
            }
            checkpoint(&x)?;
        }
        pass.x = x;
        pass.next_block = end;
        Ok(end == self.blocks.len())
    }

    /// The features of a pass whose blocks are done.
    pub fn finish_pass(&self, mut pass: VisionPass) -> Result<VisionFeatures> {
        let m = self.cfg.spatial_merge_size;
        let merged = self.merger.forward(&pass.x, (m * m) as i32)?;
        pass.deepstack.sort_by_key(|(k, _)| *k);
        Ok(VisionFeatures {
            merged,
            deepstack: pass.deepstack.into_iter().map(|(_, a)| a).collect(),
        })
    }
}

/// One image's pass through the tower, between blocks.
pub struct VisionPass {
    /// The hidden states after the blocks run so far.
    x: Array,
    /// Rotary tables `(patches, head_dim)` on the device.
    cos: Array,
    sin: Array,
    next_block: usize,
    /// Query rows per attention piece.
    piece: usize,
    /// DeepStack features so far, by level.
    deepstack: Vec<(usize, Array)>,
}

impl VisionPass {
    /// The arrays the blocks run so far produce (to queue their work).
    pub fn outputs(&self) -> Vec<Array> {
        let mut out = vec![self.x.clone()];
        out.extend(self.deepstack.iter().map(|(_, a)| a.clone()));
        out
    }
}

/// Unmasked attention of `q` `(1, H, N, D)` over `k`, `v`, at most `piece`
/// query rows at a time, each piece's output handed to `checkpoint`.
fn attention_in_pieces(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    piece: usize,
    checkpoint: &mut dyn FnMut(&Array) -> Result<()>,
) -> Result<Array> {
    let n = q.dim(2) as usize;
    if piece >= n {
        return Ok(fast::scaled_dot_product_attention(
            q,
            k,
            v,
            scale,
            Mask::None,
        )?);
    }
    let outs = (0..n)
        .step_by(piece.max(1))
        .map(|start| {
            let end = (start + piece).min(n);
            let rows = q.slice_axis(2, start as i32, end as i32)?;
            let out = fast::scaled_dot_product_attention(&rows, k, v, scale, Mask::None)?;
            checkpoint(&out)?;
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Array> = outs.iter().collect();
    Ok(Array::concatenate(&refs, 2)?)
}
