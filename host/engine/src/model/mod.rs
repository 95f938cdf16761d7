//! Qwen3-VL on MLX: the vision tower and the text decoder, loaded from a
//! checkpoint directory, and the assembly of a prompt's input embeddings.

pub mod batch_kv;
pub mod kv_cache;
pub mod linear;
pub mod positions;
pub mod safetensors_check;
pub mod text;
pub mod vision;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

use mlx::Array;

pub use batch_kv::BatchKv;
pub use kv_cache::KvCache;
pub use positions::Positions;
pub use text::{DecoderView, LayerView, Rope, Segment, TextModel, Visual};
pub use vision::{VisionFeatures, VisionTower};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kernels::Kernels;

pub struct Qwen3Vl {
    pub config: ModelConfig,
    pub vision: VisionTower,
    pub text: TextModel,
}

impl Qwen3Vl {
    /// Loads and validates the weights of `dir` against `config`. Float
    /// weights are converted to `compute_dtype` when given; both towers run
    /// on `kernels` where they apply.
    pub fn load(
        dir: &Path,
        config: ModelConfig,
        compute_dtype: Option<mlx::Dtype>,
        kernels: &Arc<Kernels>,
    ) -> Result<Qwen3Vl> {
        let mut w = weights::WeightSet::load(dir, compute_dtype)?;
        let vision = VisionTower::load(&mut w, &config, kernels);
        let text = TextModel::load(&mut w, &config, kernels);
        // `finish` lists everything wrong; it only passes when both loaded.
        w.finish()?;
        match (vision, text) {
            (Some(vision), Some(text)) => Ok(Qwen3Vl {
                config,
                vision,
                text,
            }),
            _ => Err(Error::weights(
                dir,
                "the checkpoint does not match config.json",
            )),
        }
    }
}

/// Where an image's placeholder run sits in a token sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSpan {
    /// Index of the first `<|image_pad|>` of the run.
    pub start: usize,
    pub len: usize,
}

/// Runs of `image_token` in `ids`, in order.
pub fn image_spans(ids: &[u32], image_token: u32) -> Vec<ImageSpan> {
    let mut spans = vec![];
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == image_token {
            let start = i;
            while i < ids.len() && ids[i] == image_token {
                i += 1;
            }
            spans.push(ImageSpan {
                start,
                len: i - start,
            });
        } else {
            i += 1;
        }
    }
    spans
}

/// Input embeddings `(1, end−start, hidden)` of `ids[start..end]` with image
/// rows replaced by vision features, and the DeepStack additions for the same
/// rows (zeros on text), one `(1, end−start, hidden)` array per level.
pub fn assemble_inputs(
    text: &TextModel,
    ids: &[u32],
    spans: &[ImageSpan],
    features: &[&VisionFeatures],
    start: usize,
    end: usize,
) -> Result<(Array, Vec<Array>)> {
    if spans.len() != features.len() {
        return Err(Error::request(format!(
            "{} image placeholder runs but {} images",
            spans.len(),
            features.len()
        )));
    }
    let emb = text.embed(&ids[start..end])?;
    let hidden = emb.dim(1);
    let dtype = emb.dtype();
    let levels = features.first().map_or(0, |f| f.deepstack.len());
    let mut pieces: Vec<Array> = vec![];
    let mut deep_pieces: Vec<Vec<Array>> = vec![vec![]; levels];
    let mut cursor = start;
    let mut any_image = false;
    for (span, feat) in spans.iter().zip(features) {
        if feat.merged.dim(0) as usize != span.len {
            return Err(Error::request(format!(
                "an image gives {} features but its placeholder run has {} tokens",
                feat.merged.dim(0),
                span.len
            )));
        }
        let (s, e) = (span.start.max(start), (span.start + span.len).min(end));
        if s >= e {
            continue;
        }
        any_image = true;
        if cursor < s {
            let n = (s - cursor) as i32;
            pieces.push(emb.slice_axis(0, (cursor - start) as i32, (s - start) as i32)?);
            for d in &mut deep_pieces {
                d.push(Array::zeros(&[n, hidden], dtype)?);
            }
        }
        let (r0, r1) = ((s - span.start) as i32, (e - span.start) as i32);
        pieces.push(feat.merged.slice_axis(0, r0, r1)?.astype(dtype)?);
        for (k, d) in deep_pieces.iter_mut().enumerate() {
            d.push(feat.deepstack[k].slice_axis(0, r0, r1)?.astype(dtype)?);
        }
        cursor = e;
    }
    if !any_image {
        return Ok((emb.expand_dims(0)?, vec![]));
    }
    if cursor < end {
        let n = (end - cursor) as i32;
        pieces.push(emb.slice_axis(0, (cursor - start) as i32, (end - start) as i32)?);
        for d in &mut deep_pieces {
            d.push(Array::zeros(&[n, hidden], dtype)?);
        }
    }
    let refs: Vec<&Array> = pieces.iter().collect();
    let x = Array::concatenate(&refs, 0)?.expand_dims(0)?;
    let deep = deep_pieces
        .iter()
        .map(|d| {
            let r: Vec<&Array> = d.iter().collect();
            Ok(Array::concatenate(&r, 0)?.expand_dims(0)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((x, deep))
}
