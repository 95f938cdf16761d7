//! What a request may cost, decided before any work starts: its positions
//! within the model's context, and the memory its work holds at once within
//! the engine's limit per request. The same shapes size the pieces prefill
//! and the vision tower run in, so that no intermediate (attention scores
//! above all) grows with the square of a long input.

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// MLX indexes arrays with 32-bit integers in places: a piece's attention
/// scores stay under 2^31 elements.
const MAX_ELEMENTS: u64 = (1 << 31) - 1;
/// Pieces are not made shorter than this (fewer, larger matmuls); a request
/// whose pieces would have to be shorter is costed at this size.
const MIN_PIECE: u64 = 32;

/// The shapes that size a request's memory.
#[derive(Debug, Clone)]
struct Shapes {
    layers: u64,
    hidden: u64,
    intermediate: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    vocab: u64,
    vision_hidden: u64,
    vision_intermediate: u64,
    vision_heads: u64,
    vision_depth: u64,
    /// Values per patch fed to the vision tower (channels × frames × P²).
    patch_values: u64,
    /// Patches merged into one image token.
    merge: u64,
    deepstack_levels: u64,
    /// Bytes per value of the compute dtype.
    dtype_bytes: u64,
}

impl Shapes {
    /// Bytes of one attention score: the scores and their softmax, in the
    /// compute dtype.
    fn score_bytes(&self) -> u64 {
        2 * self.dtype_bytes
    }
}

/// What one request may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// Bytes its work may hold at once.
    pub memory: u64,
    /// Bytes a piece's attention scores and activations may take.
    pub scratch: u64,
    /// Floating-point operations per piece: how much work runs between two
    /// looks at the cancel token.
    pub piece_flops: f64,
}

/// A request's limits and the sizes of the pieces its work runs in.
#[derive(Debug, Clone)]
pub struct Admission {
    context: usize,
    budgets: Budgets,
    shapes: Shapes,
}

/// The memory a request's work holds at once, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Prompt tokens plus the most output tokens asked for.
    pub positions: usize,
    pub kv_bytes: u64,
    /// The largest prefill piece's scores and activations.
    pub prefill_bytes: u64,
    /// The largest image's pass through the vision tower.
    pub vision_bytes: u64,
    /// Every image's features, held until prefill.
    pub features_bytes: u64,
}

impl Cost {
    /// Prefill and the vision tower do not run at once.
    pub fn total(&self) -> u64 {
        self.kv_bytes + self.features_bytes + self.prefill_bytes.max(self.vision_bytes)
    }
}

impl Admission {
    /// Limits for `cfg` computing in values of `dtype_bytes`.
    pub fn new(cfg: &ModelConfig, dtype_bytes: usize, budgets: Budgets) -> Admission {
        let (t, v) = (&cfg.text, &cfg.vision);
        let shapes = Shapes {
            layers: t.num_hidden_layers as u64,
            hidden: t.hidden_size as u64,
            intermediate: t.intermediate_size as u64,
            heads: t.num_attention_heads.max(1) as u64,
            kv_heads: t.num_key_value_heads as u64,
            head_dim: t.head_dim as u64,
            vocab: t.vocab_size as u64,
            vision_hidden: v.hidden_size as u64,
            vision_intermediate: v.intermediate_size as u64,
            vision_heads: v.num_heads.max(1) as u64,
            vision_depth: v.depth as u64,
            patch_values: (v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size)
                as u64,
            merge: (v.spatial_merge_size * v.spatial_merge_size).max(1) as u64,
            deepstack_levels: v.deepstack_visual_indexes.len() as u64,
            dtype_bytes: dtype_bytes as u64,
        };
        Admission {
            context: t.max_position_embeddings,
            budgets,
            shapes,
        }
    }

    /// The most memory one request may hold at once.
    pub fn memory_limit(&self) -> u64 {
        self.budgets.memory
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Query rows per prefill piece for `new` tokens after which the keys
    /// number `keys` (all of them, at most).
    pub fn prefill_piece(&self, new: usize, keys: usize) -> usize {
        let s = &self.shapes;
        let keys = keys as u64;
        let per_layer = s.hidden * (s.heads + 2 * s.kv_heads) * s.head_dim
            + s.heads * s.head_dim * s.hidden
            + 3 * s.hidden * s.intermediate;
        let row = Row {
            bytes: s.heads * keys * s.score_bytes() + self.text_row_bytes(),
            scores: s.heads * keys,
            flops: 2 * s.layers * per_layer + 4 * s.layers * s.heads * s.head_dim * keys,
        };
        self.piece(new, row)
    }

    /// Query rows per attention piece in the vision tower for an image of
    /// `patches` patches.
    pub fn vision_piece(&self, patches: usize) -> usize {
        let s = &self.shapes;
        let (p, hv) = (patches as u64, s.vision_hidden);
        let per_block = 4 * hv * hv + 2 * hv * s.vision_intermediate;
        let row = Row {
            bytes: s.vision_heads * p * s.score_bytes(),
            scores: s.vision_heads * p,
            flops: s.vision_depth * (2 * per_block + 4 * hv * p),
        };
        self.piece(patches, row)
    }

    /// Vision-tower blocks a batch step runs of an image of `patches`
    /// patches, so that a step's share of its encoding costs about what
    /// prefilling `chunk` prompt tokens costs (one block at least).
    pub fn vision_blocks_per_step(&self, patches: usize, chunk: usize) -> usize {
        let s = &self.shapes;
        let (p, hv) = (patches as u64, s.vision_hidden);
        let block = p * (2 * (4 * hv * hv + 2 * hv * s.vision_intermediate) + 4 * hv * p);
        let per_layer = s.hidden * (s.heads + 2 * s.kv_heads) * s.head_dim
            + s.heads * s.head_dim * s.hidden
            + 3 * s.hidden * s.intermediate;
        let chunk_flops = 2 * s.layers * per_layer * chunk as u64;
        (chunk_flops / block.max(1)).max(1) as usize
    }

    /// Rows per piece of `rows`: all of them when they fit the budgets,
    /// else as many as fit (not fewer than `MIN_PIECE`).
    fn piece(&self, rows: usize, row: Row) -> usize {
        let b = &self.budgets;
        let by_bytes = b.scratch / row.bytes.max(1);
        let by_index = MAX_ELEMENTS / row.scores.max(1);
        let by_work = (b.piece_flops / row.flops.max(1) as f64) as u64;
        let fit = by_bytes.min(by_index).min(by_work).max(MIN_PIECE);
        (rows as u64).min(fit).max(1) as usize
    }

    /// What a request of `prompt` tokens, up to `max_tokens` output tokens
    /// and images of `patches` patches each holds at once.
    pub fn cost(&self, prompt: usize, max_tokens: usize, patches: &[usize]) -> Cost {
        let s = &self.shapes;
        let positions = prompt + max_tokens;
        // Buffers grow in steps of 256 positions: one step more at most.
        let kv_bytes =
            s.layers * 2 * s.kv_heads * s.head_dim * s.dtype_bytes * (positions as u64 + 256);
        let rows = self.prefill_piece(prompt, prompt) as u64;
        let prefill_bytes = rows * (s.heads * prompt as u64 * s.score_bytes() + self.text_row_bytes())
            // The last row's logits and their sampling.
            + s.vocab * 4 * 3;
        let vision_bytes = patches
            .iter()
            .map(|&p| self.vision_bytes(p))
            .max()
            .unwrap_or(0);
        let features_bytes = patches
            .iter()
            .map(|&p| p as u64 / s.merge * s.hidden * (1 + s.deepstack_levels) * s.dtype_bytes)
            .sum();
        Cost {
            positions,
            kv_bytes,
            prefill_bytes,
            vision_bytes,
            features_bytes,
        }
    }

    /// Refuses a request that would pass the model's context or the memory
    /// limit, saying which and by how much.
    pub fn admit(&self, cost: &Cost, prompt: usize, image_tokens: usize) -> Result<()> {
        if cost.positions > self.context {
            return Err(Error::request(format!(
                "the request needs {} positions ({prompt} prompt tokens, {image_tokens} of them \
                 for images, and up to {} output tokens), over the model's context of {}",
                cost.positions,
                cost.positions - prompt,
                self.context
            )));
        }
        if cost.total() > self.budgets.memory {
            return Err(Error::request(format!(
                "the request would hold about {} at once (KV cache {} for {} positions, image \
                 features {}, prefill {}, the largest image's encoding {}), over the engine's \
                 limit of {} per request",
                mib(cost.total()),
                mib(cost.kv_bytes),
                cost.positions,
                mib(cost.features_bytes),
                mib(cost.prefill_bytes),
                mib(cost.vision_bytes),
                mib(self.budgets.memory)
            )));
        }
        Ok(())
    }

    /// Activations of one prefill row in one layer: the hidden state and its
    /// norm, queries, keys and values, the attention output, the MLP's gate,
    /// up and activation, the embedding.
    fn text_row_bytes(&self) -> u64 {
        let s = &self.shapes;
        let qkv = (s.heads + 2 * s.kv_heads) * s.head_dim;
        (6 * s.hidden + 2 * qkv + 4 * s.intermediate) * s.dtype_bytes
    }

    /// One image through the vision tower: its patches in f32, each block's
    /// activations over every patch, and one piece of attention scores.
    fn vision_bytes(&self, patches: usize) -> u64 {
        let s = &self.shapes;
        let p = patches as u64;
        let rows = self.vision_piece(patches) as u64;
        p * s.patch_values * 4
            + p * (8 * s.vision_hidden + 3 * s.vision_intermediate) * s.dtype_bytes
            + rows * s.vision_heads * p * s.score_bytes()
    }
}

/// What one query row of a piece costs.
struct Row {
    bytes: u64,
    /// Attention score elements.
    scores: u64,
    flops: u64,
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eight_b() -> ModelConfig {
        let json = serde_json::json!({
            "model_type": "qwen3_vl",
            "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "text_config": {
                "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
                "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
                "head_dim": 128, "max_position_embeddings": 262144
            },
            "vision_config": {
                "depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                "in_channels": 3, "patch_size": 16, "temporal_patch_size": 2,
                "spatial_merge_size": 2, "out_hidden_size": 4096,
                "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24]
            }
        });
        ModelConfig::from_json(std::path::Path::new("config.json"), &json).expect("parses")
    }

    /// Memory budgets with no bound on the work per piece.
    fn budgets(memory: u64, scratch: u64) -> Budgets {
        Budgets {
            memory,
            scratch,
            piece_flops: f64::INFINITY,
        }
    }

    #[test]
    fn pieces_bound_the_work_between_looks_at_the_cancel_token() {
        let b = Budgets {
            piece_flops: 1e13,
            ..budgets(60 << 30, 4 << 30)
        };
        let a = Admission::new(&eight_b(), 2, b);
        // About 15 GFLOP a row at 2,700 keys (the weights' 14, attention 1.6).
        let rows = a.prefill_piece(2700, 2700);
        assert!((500..800).contains(&rows), "{rows}");
        let more = Admission::new(
            &eight_b(),
            2,
            Budgets {
                piece_flops: 2e13,
                ..b
            },
        );
        assert!(more.prefill_piece(2700, 2700) >= 2 * rows - 1);
        assert!(a.vision_piece(8160) < 8160);
    }

    #[test]
    fn short_requests_run_in_one_piece() {
        let a = Admission::new(&eight_b(), 2, budgets(60 << 30, 4 << 30));
        assert_eq!(a.prefill_piece(2700, 2700), 2700);
        assert_eq!(a.vision_piece(8160), 8160);
    }

    #[test]
    fn long_prompts_run_in_pieces_within_scratch_and_index_range() {
        let a = Admission::new(&eight_b(), 2, budgets(60 << 30, 4 << 30));
        let keys = 200_000;
        let rows = a.prefill_piece(keys, keys) as u64;
        assert!(rows > MIN_PIECE && rows < keys as u64);
        // Scores and softmax in bf16: 4 bytes a score.
        assert!(rows * 32 * keys as u64 * 4 <= 4 << 30);
        assert!(rows * 32 * keys as u64 <= MAX_ELEMENTS);
        // Never below the floor, however long.
        assert_eq!(a.prefill_piece(10_000_000, 10_000_000), MIN_PIECE as usize);
        assert_eq!(a.prefill_piece(5, 10_000_000), 5);
    }

    #[test]
    fn over_the_context_is_refused_with_its_numbers() {
        let a = Admission::new(&eight_b(), 2, budgets(u64::MAX, 1 << 30));
        let cost = a.cost(262_000, 500, &[]);
        let err = a.admit(&cost, 262_000, 0).unwrap_err().to_string();
        assert!(err.contains("262500 positions"), "{err}");
        assert!(err.contains("context of 262144"), "{err}");
        let fits = a.cost(261_000, 500, &[]);
        a.admit(&fits, 261_000, 0).unwrap();
    }

    #[test]
    fn over_the_memory_limit_is_refused_naming_the_parts() {
        let a = Admission::new(&eight_b(), 2, budgets(8 << 30, 1 << 30));
        // KV: 36 layers × 2 × 8 × 128 × 2 B = 147 KiB a position.
        let cost = a.cost(100_000, 100, &[]);
        assert!(cost.kv_bytes > 13 << 30);
        let err = a.admit(&cost, 100_000, 0).unwrap_err().to_string();
        assert!(err.contains("KV cache"), "{err}");
        assert!(err.contains("limit of 8.0 GiB per request"), "{err}");
        a.admit(&a.cost(1000, 100, &[4096]), 1000, 1024).unwrap();
    }

    #[test]
    fn every_image_counts() {
        let a = Admission::new(&eight_b(), 2, budgets(u64::MAX, 1 << 30));
        let one = a.cost(1000, 10, &[4096]);
        let many = a.cost(1000, 10, &[4096; 10]);
        assert_eq!(many.features_bytes, 10 * one.features_bytes);
        assert_eq!(many.vision_bytes, one.vision_bytes);
        let bigger = a.cost(1000, 10, &[65536]);
        assert!(bigger.vision_bytes > 2 * one.vision_bytes);
    }
}
