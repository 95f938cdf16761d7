//! The model's configuration as checkpoints store it: Hugging Face
//! `config.json` (transformers 4.57 and 5.x spellings), the mlx-community
//! `quantization` block, and `preprocessor_config.json` (`docs/qwen3-vl.md` §1, §4.1, §6.2).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Text decoder settings (`text_config`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// `[t, h, w]` frequency counts; only h and w are read (`docs/qwen3-vl.md` §3.3).
    pub mrope_section: [usize; 3],
    pub tie_word_embeddings: bool,
    /// Positions the model was trained for: a request's prompt and output
    /// together stay within them.
    pub max_position_embeddings: usize,
}

/// Vision tower settings (`vision_config`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    pub out_hidden_size: usize,
    pub num_position_embeddings: usize,
    pub deepstack_visual_indexes: Vec<usize>,
}

/// Ids of the tokens the engine treats specially.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenIds {
    pub image: u32,
    pub video: u32,
    pub vision_start: u32,
    pub vision_end: u32,
    /// Generation stops on any of these (unless told to ignore EOS).
    pub eos: Vec<u32>,
}

/// Affine quantization of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantParams {
    pub group_size: i32,
    pub bits: i32,
}

/// The mlx-community `quantization` block: global parameters plus per-layer
/// overrides keyed by MLX module path (e.g. `language_model.model.layers.3.mlp.down_proj`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantization {
    pub default: QuantParams,
    pub overrides: BTreeMap<String, Option<QuantParams>>,
}

impl Quantization {
    /// Parameters for a layer by its MLX module path; `None` when the
    /// checkpoint marks it unquantized.
    pub fn for_layer(&self, mlx_path: &str) -> Option<QuantParams> {
        match self.overrides.get(mlx_path) {
            Some(p) => *p,
            None => Some(self.default),
        }
    }
}

/// Everything `config.json` says about the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    pub model_type: String,
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub tokens: TokenIds,
    pub quantization: Option<Quantization>,
    /// Set by `host model synth`: the weights are random.
    pub synthetic: Option<Value>,
    /// The checkpoint's declared dtype (`bfloat16`, `float32`, ...).
    pub torch_dtype: Option<String>,
}

/// `preprocessor_config.json` (the image processor).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreprocessorConfig {
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
}

impl Default for PreprocessorConfig {
    /// The Qwen3-VL values (`docs/qwen3-vl.md` §4.1), used when a directory has no file.
    fn default() -> Self {
        PreprocessorConfig {
            min_pixels: 65_536,
            max_pixels: 16_777_216,
            patch_size: 16,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            rescale_factor: 1.0 / 255.0,
        }
    }
}

struct Fields<'a> {
    file: &'a Path,
    section: &'a str,
    obj: &'a serde_json::Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(file: &'a Path, section: &'a str, v: &'a Value) -> Result<Fields<'a>> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::config(file, format!("`{section}` is not an object")))?;
        Ok(Fields { file, section, obj })
    }

    fn err(&self, key: &str, what: &str) -> Error {
        Error::config(self.file, format!("`{}.{key}` {what}", self.section))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(key, "is missing"))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| self.err(key, "is not a non-negative integer")),
        }
    }

    fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| self.err(key, "is not a number")),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, "is not a boolean")),
        }
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        Ok(self.opt_usize(key)?.map(|x| x as u32))
    }
}

/// Accepts an id or a list of ids (HF writes both for `eos_token_id`).
fn ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u32))
            .collect(),
        _ => vec![],
    }
}

impl ModelConfig {
    pub fn load(dir: &Path) -> Result<ModelConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("invalid JSON: {e}")))?;
        let mut cfg = ModelConfig::from_json(&path, &value)?;
        // generation_config.json holds the Instruct models' full stop list.
        let gen_path = dir.join("generation_config.json");
        if let Ok(gen_text) = std::fs::read_to_string(&gen_path) {
            let generation: Value = serde_json::from_str(&gen_text)
                .map_err(|e| Error::config(&gen_path, format!("invalid JSON: {e}")))?;
            for id in ids(generation.get("eos_token_id")) {
                if !cfg.tokens.eos.contains(&id) {
                    cfg.tokens.eos.push(id);
                }
            }
        }
        Ok(cfg)
    }

    pub fn from_json(path: &Path, root: &Value) -> Result<ModelConfig> {
        let top = Fields::new(path, "config", root)?;
        let model_type = root
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if model_type != "qwen3_vl" {
            let arch = root
                .get("architectures")
                .map(|a| a.to_string())
                .unwrap_or_default();
            return Err(Error::config(
                path,
                format!(
                    "model_type is {model_type:?} (architectures {arch}); this engine runs dense Qwen3-VL \
                     (model_type \"qwen3_vl\", Qwen3VLForConditionalGeneration)"
                ),
            ));
        }
        let text_v = root
            .get("text_config")
            .ok_or_else(|| Error::config(path, "`text_config` is missing"))?;
        let vision_v = root
            .get("vision_config")
            .ok_or_else(|| Error::config(path, "`vision_config` is missing"))?;
        let t = Fields::new(path, "text_config", text_v)?;
        let v = Fields::new(path, "vision_config", vision_v)?;

        // RoPE settings: 4.57 writes rope_theta + rope_scaling, 5.x rope_parameters.
        let rope_obj = text_v
            .get("rope_parameters")
            .or_else(|| text_v.get("rope_scaling"));
        let rope_theta = t
            .opt_f32("rope_theta")?
            .or_else(|| {
                rope_obj
                    .and_then(|r| r.get("rope_theta"))
                    .and_then(Value::as_f64)
                    .map(|x| x as f32)
            })
            .unwrap_or(5_000_000.0);
        let mrope_section = match rope_obj.and_then(|r| r.get("mrope_section")) {
            Some(Value::Array(a)) if a.len() == 3 => {
                let mut s = [0usize; 3];
                for (i, x) in a.iter().enumerate() {
                    s[i] = x
                        .as_u64()
                        .ok_or_else(|| t.err("rope_scaling.mrope_section", "holds a non-integer"))?
                        as usize;
                }
                s
            }
            Some(_) => return Err(t.err("rope_scaling.mrope_section", "must hold three integers")),
            None => [24, 20, 20],
        };

        let hidden_size = t.usize("hidden_size")?;
        let num_attention_heads = t.usize("num_attention_heads")?;
        let head_dim = t
            .opt_usize("head_dim")?
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        // tie_word_embeddings: text_config wins (mlx-vlm reads it there), then top level.
        let tie = t
            .opt_bool("tie_word_embeddings")?
            .or(top.opt_bool("tie_word_embeddings")?)
            .unwrap_or(false);
        let text = TextConfig {
            vocab_size: t.usize("vocab_size")?,
            hidden_size,
            intermediate_size: t.usize("intermediate_size")?,
            num_hidden_layers: t.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: t
                .opt_usize("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: t.opt_f32("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            mrope_section,
            tie_word_embeddings: tie,
            // transformers' default for Qwen3-VL's text config.
            max_position_embeddings: t.opt_usize("max_position_embeddings")?.unwrap_or(128_000),
        };
        if !text
            .num_attention_heads
            .is_multiple_of(text.num_key_value_heads.max(1))
        {
            return Err(t.err("num_key_value_heads", "must divide num_attention_heads"));
        }
        // Slots j < 3·section[1] (H) and j < 3·section[2] (W) must exist among head_dim/2 frequencies.
        if 3 * text.mrope_section[1].max(text.mrope_section[2]) > text.head_dim / 2 {
            return Err(t.err("rope_scaling.mrope_section", "does not fit head_dim"));
        }

        let deepstack = match vision_v.get("deepstack_visual_indexes") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| v.err("deepstack_visual_indexes", "holds a non-integer"))
                })
                .collect::<Result<Vec<_>>>()?,
            None => vec![],
            Some(_) => return Err(v.err("deepstack_visual_indexes", "is not a list")),
        };
        let vision = VisionConfig {
            depth: v.usize("depth")?,
            hidden_size: v.usize("hidden_size")?,
            intermediate_size: v.usize("intermediate_size")?,
            num_heads: v.usize("num_heads")?,
            in_channels: v.opt_usize("in_channels")?.unwrap_or(3),
            patch_size: v.opt_usize("patch_size")?.unwrap_or(16),
            temporal_patch_size: v.opt_usize("temporal_patch_size")?.unwrap_or(2),
            spatial_merge_size: v.opt_usize("spatial_merge_size")?.unwrap_or(2),
            out_hidden_size: v.opt_usize("out_hidden_size")?.unwrap_or(text.hidden_size),
            num_position_embeddings: v.opt_usize("num_position_embeddings")?.unwrap_or(2304),
            deepstack_visual_indexes: deepstack,
        };
        if vision.out_hidden_size != text.hidden_size {
            return Err(v.err(
                "out_hidden_size",
                &format!(
                    "is {} but the text hidden size is {}",
                    vision.out_hidden_size, text.hidden_size
                ),
            ));
        }
        if let Some(bad) = vision
            .deepstack_visual_indexes
            .iter()
            .find(|&&i| i >= vision.depth)
        {
            return Err(v.err(
                "deepstack_visual_indexes",
                &format!("names block {bad} of a {}-block tower", vision.depth),
            ));
        }
        if vision.deepstack_visual_indexes.len() > text.num_hidden_layers {
            return Err(v.err(
                "deepstack_visual_indexes",
                "has more levels than the decoder has layers",
            ));
        }
        if !vision.hidden_size.is_multiple_of(vision.num_heads)
            || !(vision.hidden_size / vision.num_heads).is_multiple_of(4)
        {
            return Err(v.err(
                "num_heads",
                "must split hidden_size into heads whose size is a multiple of 4",
            ));
        }

        let mut eos = ids(text_v.get("eos_token_id"));
        for id in ids(root.get("eos_token_id")) {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let tokens = TokenIds {
            image: top.opt_u32("image_token_id")?.unwrap_or(151_655),
            video: top.opt_u32("video_token_id")?.unwrap_or(151_656),
            vision_start: top.opt_u32("vision_start_token_id")?.unwrap_or(151_652),
            vision_end: top.opt_u32("vision_end_token_id")?.unwrap_or(151_653),
            eos,
        };

        let quantization = match root
            .get("quantization")
            .or_else(|| root.get("quantization_config"))
        {
            None | Some(Value::Null) => None,
            Some(q) => Some(parse_quantization(path, q)?),
        };
        let torch_dtype = text_v
            .get("dtype")
            .or_else(|| text_v.get("torch_dtype"))
            .or_else(|| root.get("dtype"))
            .or_else(|| root.get("torch_dtype"))
            .and_then(Value::as_str)
            .map(str::to_string);

        Ok(ModelConfig {
            model_type,
            text,
            vision,
            tokens,
            quantization,
            synthetic: root.get("synthetic").cloned(),
            torch_dtype,
        })
    }

    pub fn is_synthetic(&self) -> bool {
        self.synthetic.is_some()
    }
}

fn parse_quantization(path: &Path, q: &Value) -> Result<Quantization> {
    let obj = q
        .as_object()
        .ok_or_else(|| Error::config(path, "`quantization` is not an object"))?;
    let params = |v: &Value, what: &str| -> Result<QuantParams> {
        let group_size = v.get("group_size").and_then(Value::as_i64).unwrap_or(64) as i32;
        let bits = v
            .get("bits")
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::config(path, format!("{what} has no `bits`")))?
            as i32;
        if let Some(mode) = v.get("mode").and_then(Value::as_str)
            && mode != "affine"
        {
            return Err(Error::config(
                path,
                format!("{what} uses mode {mode:?}; only affine quantization is supported"),
            ));
        }
        if ![2, 3, 4, 5, 6, 8].contains(&bits) || ![32, 64, 128].contains(&group_size) {
            return Err(Error::config(
                path,
                format!(
                    "{what}: bits {bits} / group size {group_size} is not an MLX affine format (bits 2-6 or 8, groups 32/64/128)"
                ),
            ));
        }
        Ok(QuantParams { group_size, bits })
    };
    let default = params(q, "`quantization`")?;
    let mut overrides = BTreeMap::new();
    for (k, v) in obj {
        match v {
            Value::Object(_) => {
                overrides.insert(k.clone(), Some(params(v, &format!("`quantization.{k}`"))?));
            }
            Value::Bool(false) => {
                overrides.insert(k.clone(), None);
            }
            _ => {}
        }
    }
    Ok(Quantization { default, overrides })
}

impl PreprocessorConfig {
    /// Reads `preprocessor_config.json`, or returns the Qwen3-VL defaults when absent.
    pub fn load(dir: &Path) -> Result<PreprocessorConfig> {
        let path = dir.join("preprocessor_config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PreprocessorConfig::default());
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("invalid JSON: {e}")))?;
        let d = PreprocessorConfig::default();
        let num = |key: &str| v.get(key).and_then(Value::as_f64);
        let size = v.get("size");
        let min_pixels = size
            .and_then(|s| s.get("shortest_edge"))
            .and_then(Value::as_u64)
            .or_else(|| v.get("min_pixels").and_then(Value::as_u64))
            .unwrap_or(d.min_pixels);
        let max_pixels = size
            .and_then(|s| s.get("longest_edge"))
            .and_then(Value::as_u64)
            .or_else(|| v.get("max_pixels").and_then(Value::as_u64))
            .unwrap_or(d.max_pixels);
        let triple = |key: &str, dflt: [f32; 3]| -> Result<[f32; 3]> {
            match v.get(key) {
                None => Ok(dflt),
                Some(Value::Array(a)) if a.len() == 3 => {
                    let mut out = [0f32; 3];
                    for (i, x) in a.iter().enumerate() {
                        out[i] = x.as_f64().ok_or_else(|| {
                            Error::config(&path, format!("`{key}` holds a non-number"))
                        })? as f32;
                    }
                    Ok(out)
                }
                Some(_) => Err(Error::config(
                    &path,
                    format!("`{key}` must hold three numbers"),
                )),
            }
        };
        let cfg = PreprocessorConfig {
            min_pixels,
            max_pixels,
            patch_size: num("patch_size")
                .map(|x| x as usize)
                .unwrap_or(d.patch_size),
            temporal_patch_size: num("temporal_patch_size")
                .map(|x| x as usize)
                .unwrap_or(d.temporal_patch_size),
            merge_size: num("merge_size")
                .map(|x| x as usize)
                .unwrap_or(d.merge_size),
            image_mean: triple("image_mean", d.image_mean)?,
            image_std: triple("image_std", d.image_std)?,
            rescale_factor: num("rescale_factor").unwrap_or(d.rescale_factor),
        };
        if cfg.min_pixels > cfg.max_pixels || cfg.patch_size == 0 || cfg.merge_size == 0 {
            return Err(Error::config(
                &path,
                "min/max pixels or patch sizes are inconsistent",
            ));
        }
        Ok(cfg)
    }

    /// Side length that resized images are multiples of (32 for Qwen3-VL).
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }
}
