//! What produced a result: the model's identity as a run records it, and the
//! memory the engine sizes its caches by.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::ModelConfig;
use crate::model::Qwen3Vl;

/// Enough to tell two models apart and to say whether the weights were real.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub name: String,
    /// blake3 of `config.json`.
    pub config_hash: String,
    /// `bf16`, `f32`, `4-bit g64`, ...
    pub quantization: String,
    /// The checkpoint's float dtype.
    pub dtype: String,
    /// The dtype the engine computes in (f32 on CPU, see `EngineOptions`).
    pub compute_dtype: String,
    pub synthetic: bool,
    pub synthetic_info: Option<serde_json::Value>,
    pub text_layers: usize,
    pub hidden_size: usize,
    pub vision_depth: usize,
    pub vocab_size: usize,
    pub eos_token_ids: Vec<u32>,
    pub image_token_id: u32,
    /// Bytes of dense copies of quantized matrices kept (0: none; see
    /// `EngineOptions::dense_copies`).
    pub dense_prefill_bytes: u64,
    /// Whether our own GPU kernels are in use.
    pub custom_kernels: bool,
    /// Whether single-token steps run the fused decoding kernels (4-bit
    /// models on CUDA).
    pub fused_decode: bool,
}

impl ModelInfo {
    /// The identity of the model in `dir`, loaded from `config_bytes`.
    pub(super) fn of(
        dir: &Path,
        cfg: &ModelConfig,
        model: &Qwen3Vl,
        config_bytes: &[u8],
    ) -> ModelInfo {
        let path: PathBuf = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let compute_dtype = format!("{:?}", model.text.dtype()).to_lowercase();
        let dtype = match cfg.torch_dtype.as_deref() {
            Some("bfloat16") => "bf16".to_string(),
            Some("float16") => "f16".to_string(),
            Some("float32") => "f32".to_string(),
            Some(other) => other.to_string(),
            None => compute_dtype.clone(),
        };
        let quantization = match &cfg.quantization {
            Some(q) => format!("{}-bit g{}", q.default.bits, q.default.group_size),
            None => dtype.clone(),
        };
        ModelInfo {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: path.display().to_string(),
            config_hash: blake3::hash(config_bytes).to_hex().to_string(),
            quantization,
            dtype,
            compute_dtype,
            synthetic: cfg.is_synthetic(),
            synthetic_info: cfg.synthetic.clone(),
            text_layers: cfg.text.num_hidden_layers,
            hidden_size: cfg.text.hidden_size,
            vision_depth: cfg.vision.depth,
            vocab_size: cfg.text.vocab_size,
            eos_token_ids: cfg.tokens.eos.clone(),
            image_token_id: cfg.tokens.image,
            dense_prefill_bytes: 0,
            custom_kernels: false,
            fused_decode: false,
        }
    }
}

/// Device memory in bytes: MLX's view of the device, else the system's.
pub fn device_memory_bytes() -> u64 {
    let dev = mlx::default_device();
    if let Ok(json) = mlx::device_info_json(dev)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&json)
    {
        for key in ["memory_size", "total_memory"] {
            if let Some(n) = v.get(key).and_then(serde_json::Value::as_u64) {
                return n;
            }
        }
    }
    system_memory_bytes().unwrap_or(8 << 30)
}

/// The machine's memory, from `/proc/meminfo` (Linux).
pub fn system_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_total(&meminfo)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_its_total_in_bytes() {
        let text = "MemFree:  100 kB\nMemTotal:       24576000 kB\nBuffers: 1 kB\n";
        assert_eq!(meminfo_total(text), Some(24_576_000 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: lots kB\n"), None);
    }
}
