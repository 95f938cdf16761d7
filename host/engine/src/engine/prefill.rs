//! The stages of a request up to its first token: the prefix cache's
//! lookup, the images' patches (or their cached features), the vision
//! encoder, and the prefill of the tokens not reused.

use mlx::Array;

use super::Engine;
use super::plan::{RequestPlan, StageMarks};
use crate::cache::{CacheReport, PrefixCache, PrefixOutcome};
use crate::config::TextConfig;
use crate::error::Result;
use crate::generate::{CancelToken, GenerateRequest};
use crate::image::{patch_array, stage_for_model};
use crate::model::kv_cache::LayerCache;
use crate::model::positions::{Positions, mrope_tables};
use crate::model::{ImageSpan, KvCache, Rope, VisionFeatures, Visual, assemble_inputs};
use crate::sampler::Sampler;

/// Output positions a request's cache holds from its prefill on (151 MB of
/// keys and values for the 8B in bf16, by its shapes); longer outputs grow
/// it in steps as they go.
const RESERVED_OUTPUT: usize = 1024;

/// RoPE of the prompt rows at `positions`: plain from an offset where the
/// three streams agree and count up, else MRoPE tables.
pub(super) fn rope_of(cfg: &TextConfig, positions: &Positions) -> Result<Rope> {
    Ok(match positions.is_plain_from() {
        Some(p) => Rope::Offset(p),
        None => {
            let hd = cfg.head_dim;
            let (cos, sin) = mrope_tables(positions, cfg.rope_theta, hd, cfg.mrope_section);
            let n = positions.len() as i32;
            Rope::Tables {
                cos: mlx::Staging::f32_array(&cos, &[n, hd as i32])?,
                sin: mlx::Staging::f32_array(&sin, &[n, hd as i32])?,
            }
        }
    })
}

/// An image the vision tower still has to encode: its index in the request,
/// its vision-cache key, its patches and grid.
pub(super) struct ToEncode {
    pub index: usize,
    pub key: blake3::Hash,
    pub pixels: Array,
    pub grid: [usize; 3],
}

/// The prefill's outcome: the first token (on the device) and the logits it
/// was chosen from.
pub(super) struct FirstToken {
    pub token: Array,
    pub logits: Array,
}

impl Engine {
    /// The request's KV cache, starting with the longest cached prefix of
    /// its prompt, with room for its output; and the cache report so far.
    pub(super) fn lookup_prefix(
        &mut self,
        plan: &RequestPlan,
        max_tokens: usize,
    ) -> Result<(KvCache, CacheReport)> {
        let len = plan.len();
        let mut report = CacheReport {
            prefix: PrefixOutcome::Disabled,
            reused_tokens: 0,
            vision_hits: 0,
            vision_misses: 0,
            vision_skipped: 0,
        };
        let mut kv = KvCache::new(self.model.text.config().num_hidden_layers);
        if self.cache_enabled {
            report.prefix = PrefixOutcome::Miss;
            if let Some(hit) = self.prefix_cache.lookup(&plan.keys)? {
                report.prefix = if hit.matched == len {
                    PrefixOutcome::Exact
                } else {
                    PrefixOutcome::Partial
                };
                report.reused_tokens = hit.reuse;
                for (layer, (k, v)) in kv.layers.iter_mut().zip(hit.kv) {
                    *layer = LayerCache::from_prefix(k, v);
                }
            }
        }
        // Room for the output from the start (up to a bound on the memory
        // held for output that may never come).
        kv.reserve((len + max_tokens.min(RESERVED_OUTPUT)) as i32);
        Ok((kv, report))
    }

    /// Each image's features where the vision cache has them (`None` where
    /// the reused prefix covers the image or it still has to be encoded),
    /// and the patches of those still to encode. With `defer_misses`, an
    /// image the cache lacks is not counted as a miss: it is looked up again
    /// when its encoding would start (a batch's requests ahead of it may
    /// encode it meanwhile).
    pub(super) fn prepare_images(
        &mut self,
        req: &GenerateRequest,
        plan: &RequestPlan,
        report: &mut CacheReport,
        marks: &mut StageMarks,
        defer_misses: bool,
    ) -> Result<(Vec<Option<VisionFeatures>>, Vec<ToEncode>)> {
        let mut features = vec![None; req.images.len()];
        let mut to_encode = vec![];
        for (i, span) in plan.spans.iter().enumerate() {
            // Placeholders all in the reused prefix: the image is not needed.
            if span.start + span.len <= report.reused_tokens {
                report.vision_skipped += 1;
                continue;
            }
            let key = self.vision_key(&plan.image_hashes[i]);
            let cached = !defer_misses || self.vision_cache.lru().peek(&key).is_some();
            if self.cache_enabled
                && cached
                && let Some(f) = self.vision_cache.get(&key)
            {
                report.vision_hits += 1;
                features[i] = Some(f);
                continue;
            }
            let u8s = stage_for_model(&req.images[i], &self.pre)?;
            marks.mark("resize into staging");
            let (pixels, grid) = patch_array(&u8s, &self.pre)?;
            marks.mark("patch graph");
            pixels.eval()?;
            marks.mark("upload, normalise, patches");
            to_encode.push(ToEncode {
                index: i,
                key,
                pixels,
                grid,
            });
        }
        Ok((features, to_encode))
    }

    /// Runs the vision tower on `to_encode`, keeping the features in the
    /// vision cache.
    pub(super) fn encode_images(
        &mut self,
        to_encode: Vec<ToEncode>,
        features: &mut [Option<VisionFeatures>],
        report: &mut CacheReport,
        cancel: &CancelToken,
    ) -> Result<()> {
        for image in to_encode {
            let patches = image.grid.iter().product::<usize>();
            let piece = self.admission.vision_piece(patches);
            let mut checkpoint = vision_checkpoint(piece, patches, cancel);
            let f = self.model.vision.forward_in_pieces(
                &image.pixels,
                image.grid,
                piece,
                &mut checkpoint,
            )?;
            let mut outs = vec![&f.merged];
            outs.extend(f.deepstack.iter());
            mlx::eval(&outs)?;
            if self.cache_enabled {
                self.vision_cache.insert(image.key, f.clone());
            }
            report.vision_misses += 1;
            features[image.index] = Some(f);
            if cancel.is_cancelled() {
                return Err(crate::error::Error::Cancelled);
            }
        }
        Ok(())
    }

    /// Prefills the prompt's tokens after the `reuse` cached ones and
    /// chooses the first token (queued on the device, not waited for).
    /// Long prompts run in pieces (`Admission::prefill_piece`), each
    /// evaluated before the next and the cancel token checked between them.
    pub(super) fn prefill(
        &mut self,
        plan: &RequestPlan,
        features: &[Option<VisionFeatures>],
        reuse: usize,
        kv: &mut KvCache,
        sampler: &mut Sampler,
    ) -> Result<FirstToken> {
        let len = plan.len();
        let piece = self.admission.prefill_piece(len - reuse, len);
        let (spans, feats) = encoded_images(plan, features);
        let mut start = reuse;
        loop {
            let end = (start + piece).min(len);
            let text = &self.model.text;
            let (x, deep) = assemble_inputs(text, &plan.ids, &spans, &feats, start, end)?;
            let rope = rope_of(text.config(), &plan.positions.slice(start, end))?;
            let visual = Visual { deepstack: &deep };
            let visual = (!deep.is_empty()).then_some(&visual);
            let h = self.decoder.forward(text, &x, &rope, kv, visual)?;
            if end == len {
                let rows = (end - start) as i32;
                let last = h
                    .slice_axis(1, rows - 1, rows)?
                    // Kept 2-D: MLX CUDA's quantized matmul needs a row of inputs.
                    .reshape(&[1, -1])?;
                let logits = text.logits(&last)?.reshape(&[-1])?;
                let token = sampler.sample(&logits)?;
                mlx::async_eval(&[&token])?;
                return Ok(FirstToken { token, logits });
            }
            kv.eval()?;
            self.check_cancel()?;
            start = end;
        }
    }

    /// Keeps the prompt's KV (the first `plan.len()` positions of `kv`) for
    /// later requests under the plan's keys (taken), before decoding extends
    /// it.
    pub(super) fn remember_prefix(&mut self, plan: &mut RequestPlan, kv: &KvCache) -> Result<()> {
        if !self.cache_enabled {
            return Ok(());
        }
        remember(&mut self.prefix_cache, plan, kv)
    }
}

/// Keeps a prompt's KV under its plan's keys (taken) in `cache`.
pub(super) fn remember(
    cache: &mut PrefixCache,
    plan: &mut RequestPlan,
    kv: &KvCache,
) -> Result<()> {
    let len = plan.len() as i32;
    let prompt_kv = kv
        .layers
        .iter()
        .map(|l| l.prefix(len))
        .collect::<Result<Option<Vec<_>>>>()?;
    if let Some(prompt_kv) = prompt_kv {
        cache.insert(std::mem::take(&mut plan.keys), prompt_kv);
    }
    Ok(())
}

/// The spans of the images whose features are at hand, and those features
/// (images in a reused prefix have none).
pub(super) fn encoded_images<'a>(
    plan: &RequestPlan,
    features: &'a [Option<VisionFeatures>],
) -> (Vec<ImageSpan>, Vec<&'a VisionFeatures>) {
    plan.spans
        .iter()
        .zip(features)
        .filter_map(|(s, f)| f.as_ref().map(|f| (*s, f)))
        .unzip()
}

/// What the vision tower calls between pieces of an image of `patches`
/// patches run `piece` query rows at a time: a large image's attention
/// pieces and blocks are evaluated one by one, so that the pass holds one
/// piece's scores, and `cancel` is looked at between them.
pub(super) fn vision_checkpoint(
    piece: usize,
    patches: usize,
    cancel: &CancelToken,
) -> impl FnMut(&Array) -> Result<()> + '_ {
    move |x: &Array| {
        if piece < patches {
            x.eval()?;
        }
        if cancel.is_cancelled() {
            return Err(crate::error::Error::Cancelled);
        }
        Ok(())
    }
}
