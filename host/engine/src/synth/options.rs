//! What a synthetic model is: its size, its weights' format and layout.

use std::path::PathBuf;

use serde::Serialize;

/// Model sizes: the four dense Qwen3-VL configurations (`docs/qwen3-vl.md` §1) and a tiny
/// one with every feature, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Arch {
    Tiny,
    B2,
    B4,
    B8,
    B32,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s.trim_start_matches("qwen3-vl-") {
            "tiny" => Some(Arch::Tiny),
            "2b" => Some(Arch::B2),
            "4b" => Some(Arch::B4),
            "8b" => Some(Arch::B8),
            "32b" => Some(Arch::B32),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Tiny => "qwen3-vl-tiny",
            Arch::B2 => "qwen3-vl-2b",
            Arch::B4 => "qwen3-vl-4b",
            Arch::B8 => "qwen3-vl-8b",
            Arch::B32 => "qwen3-vl-32b",
        }
    }

    pub const ALL: [Arch; 5] = [Arch::Tiny, Arch::B2, Arch::B4, Arch::B8, Arch::B32];
}

/// Weight format. `Bf16`/`F32` write the Hugging Face layout by default,
/// `Affine` the mlx-community layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Quant {
    F32,
    Bf16,
    Affine(Affine),
}

/// MLX's affine quantization as mlx-lm and mlx-vlm write it: `bits` per
/// weight in groups of `group_size`, each group with a bf16 scale and bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Affine {
    pub bits: i32,
    pub group_size: i32,
    /// mlx-lm's mixed recipes (`mixed_3_6`, ...): these bits for the layers
    /// the recipe keeps higher, `bits` for the rest.
    pub high_bits: Option<i32>,
}

/// The bit widths and group sizes MLX's affine kernels take.
pub const AFFINE_BITS: [i32; 6] = [2, 3, 4, 5, 6, 8];
pub const GROUP_SIZES: [i32; 3] = [32, 64, 128];
/// mlx-lm's mixed recipes, as (low, high) bits.
pub const MIXED_RECIPES: [(i32, i32); 4] = [(2, 6), (3, 4), (3, 6), (4, 6)];

impl Affine {
    /// The bits and group size of the layer at MLX path `path` in a model
    /// of `layers` decoder layers. Mixed recipes follow mlx-lm's predicate
    /// (`mixed_quant_predicate_builder`): more bits for `lm_head`, and for
    /// `v_proj` and `down_proj` in the first and last eighth of the layers
    /// and every third layer between.
    pub fn for_layer(&self, path: &str, layers: usize) -> (i32, i32) {
        let Some(high) = self.high_bits else {
            return (self.bits, self.group_size);
        };
        let index = path
            .split('.')
            .skip_while(|p| *p != "layers")
            .nth(1)
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0);
        let eighth = layers / 8;
        let more = index < eighth
            || index >= 7 * layers / 8
            || (index as i64 - eighth as i64).rem_euclid(3) == 2;
        let higher = path.contains("lm_head")
            || (more && (path.contains("v_proj") || path.contains("down_proj")));
        (if higher { high } else { self.bits }, self.group_size)
    }
}

impl Quant {
    /// `f32`, `bf16`, a bit width (`2`–`6`, `8`; `4bit`, `q4`), or one of
    /// mlx-lm's mixed recipes (`mixed_3_6`), each optionally with a group
    /// size after a colon (`3:32`; 64 by default).
    pub fn parse(s: &str) -> Option<Quant> {
        match s {
            "f32" => return Some(Quant::F32),
            "bf16" => return Some(Quant::Bf16),
            _ => {}
        }
        let (format, group) = match s.split_once(':') {
            Some((f, g)) => (f, g.parse::<i32>().ok()?),
            None => (s, 64),
        };
        if !GROUP_SIZES.contains(&group) {
            return None;
        }
        if let Some(recipe) = format
            .strip_prefix("mixed_")
            .or_else(|| format.strip_prefix("mixed-"))
        {
            let (low, high) = recipe.split_once(['_', '-'])?;
            let pair = (low.parse().ok()?, high.parse().ok()?);
            return MIXED_RECIPES
                .contains(&pair)
                .then_some(Quant::Affine(Affine {
                    bits: pair.0,
                    group_size: group,
                    high_bits: Some(pair.1),
                }));
        }
        let bits = format
            .trim_start_matches('q')
            .trim_end_matches("bit")
            .parse::<i32>()
            .ok()?;
        AFFINE_BITS.contains(&bits).then_some(Quant::Affine(Affine {
            bits,
            group_size: group,
            high_bits: None,
        }))
    }

    /// What `parse` reads back.
    pub fn name(self) -> String {
        match self {
            Quant::F32 => "f32".into(),
            Quant::Bf16 => "bf16".into(),
            Quant::Affine(a) => {
                let format = match a.high_bits {
                    Some(h) => format!("mixed_{}_{h}", a.bits),
                    None => a.bits.to_string(),
                };
                if a.group_size == 64 {
                    format
                } else {
                    format!("{format}:{}", a.group_size)
                }
            }
        }
    }

    /// The 4-bit format of mlx-community's most common checkpoints.
    pub const Q4: Quant = Quant::Affine(Affine {
        bits: 4,
        group_size: 64,
        high_bits: None,
    });
    pub const Q8: Quant = Quant::Affine(Affine {
        bits: 8,
        group_size: 64,
        high_bits: None,
    });

    pub(super) fn affine(self) -> Option<Affine> {
        match self {
            Quant::Affine(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Layout {
    HuggingFace,
    Mlx,
}

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub arch: Arch,
    pub quant: Quant,
    pub seed: u64,
    /// Defaults to Hugging Face for float weights, MLX for quantized ones.
    pub layout: Option<Layout>,
    /// Largest shard, in bytes.
    pub shard_bytes: u64,
}

impl SynthOptions {
    pub fn new(arch: Arch, quant: Quant, seed: u64) -> SynthOptions {
        SynthOptions {
            arch,
            quant,
            seed,
            layout: None,
            shard_bytes: 4 << 30,
        }
    }

    /// The affine format, for quantized weights.
    pub fn affine_quant(&self) -> Option<Affine> {
        self.quant.affine()
    }

    pub fn layout(&self) -> Layout {
        self.layout.unwrap_or(if self.quant.affine().is_some() {
            Layout::Mlx
        } else {
            Layout::HuggingFace
        })
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    pub dir: PathBuf,
    pub parameters: u64,
    pub bytes: u64,
    pub files: Vec<String>,
    pub seconds: f64,
}
