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
/// `Q8`/`Q4` the mlx-community layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Quant {
    F32,
    Bf16,
    Q8,
    Q4,
}

impl Quant {
    pub fn parse(s: &str) -> Option<Quant> {
        match s {
            "f32" => Some(Quant::F32),
            "bf16" => Some(Quant::Bf16),
            "8" | "8bit" | "q8" => Some(Quant::Q8),
            "4" | "4bit" | "q4" => Some(Quant::Q4),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::Bf16 => "bf16",
            Quant::Q8 => "8",
            Quant::Q4 => "4",
        }
    }

    pub(super) fn bits(self) -> Option<i32> {
        match self {
            Quant::Q8 => Some(8),
            Quant::Q4 => Some(4),
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

    pub fn layout(&self) -> Layout {
        self.layout.unwrap_or(if self.quant.bits().is_some() {
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
