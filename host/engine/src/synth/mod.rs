//! Synthetic models: complete Qwen3-VL model directories with random weights,
//! in the real layouts (Hugging Face bf16, or mlx-community affine-quantized),
//! so speed can be measured anywhere without downloading weights. Every
//! directory says it is synthetic in its `config.json`.

pub(crate) mod tokenizer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mlx::{Array, Dtype, random};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

pub use tokenizer::ADDED_TOKENS;

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

    fn bits(self) -> Option<i32> {
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

const GROUP_SIZE: i32 = 64;

struct Dims {
    text: Value,
    vision: Value,
    tie: bool,
}

fn dims(arch: Arch) -> Dims {
    // (layers, hidden, ffn, heads, kv, tie) and (depth, hidden, ffn, heads, deepstack), `docs/qwen3-vl.md` §1.1–1.2
    let (layers, hidden, ffn, heads, kv, tie) = match arch {
        Arch::Tiny => (4, 64, 128, 4, 2, true),
        Arch::B2 => (28, 2048, 6144, 16, 8, true),
        Arch::B4 => (36, 2560, 9728, 32, 8, true),
        Arch::B8 => (36, 4096, 12288, 32, 8, false),
        Arch::B32 => (64, 5120, 25600, 64, 8, false),
    };
    let (depth, vhidden, vffn, vheads, deep, pos): (usize, usize, usize, usize, Vec<usize>, usize) =
        match arch {
            Arch::Tiny => (5, 64, 128, 4, vec![1, 2, 3], 256),
            Arch::B2 | Arch::B4 => (24, 1024, 4096, 16, vec![5, 11, 17], 2304),
            Arch::B8 | Arch::B32 => (27, 1152, 4304, 16, vec![8, 16, 24], 2304),
        };
    let (head_dim, section) = if arch == Arch::Tiny {
        (32, [6, 5, 5])
    } else {
        (128, [24, 20, 20])
    };
    Dims {
        text: json!({
            "model_type": "qwen3_vl_text", "vocab_size": 151936, "hidden_size": hidden,
            "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "head_dim": head_dim, "hidden_act": "silu",
            "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
            "rope_scaling": {"rope_type": "default", "mrope_section": section, "mrope_interleaved": true},
            "attention_bias": false, "attention_dropout": 0.0, "tie_word_embeddings": tie,
            "bos_token_id": 151643, "eos_token_id": 151645, "initializer_range": 0.02, "dtype": "bfloat16",
            "use_cache": true
        }),
        vision: json!({
            "model_type": "qwen3_vl", "depth": depth, "hidden_size": vhidden, "intermediate_size": vffn,
            "num_heads": vheads, "in_channels": 3, "patch_size": 16, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "out_hidden_size": hidden, "num_position_embeddings": pos,
            "deepstack_visual_indexes": deep, "hidden_act": "gelu_pytorch_tanh", "initializer_range": 0.02
        }),
        tie,
    }
}

/// How a tensor's random values are drawn.
#[derive(Clone, Copy)]
enum Init {
    /// `N(0, 0.02²)`.
    Normal,
    /// `1 + N(0, 0.02²)` (norm weights).
    One,
    /// `N(0, 0.01²)` (biases).
    Small,
}

struct Spec {
    /// Hugging Face name.
    name: String,
    shape: Vec<i32>,
    init: Init,
    /// Quantized in the MLX layout (text linears, embedding, LM head).
    quantizable: bool,
}

fn tensor_specs(d: &Dims) -> Vec<Spec> {
    let u = |v: &Value, k: &str| v[k].as_u64().expect("dims are integers") as i32;
    let (t, v) = (&d.text, &d.vision);
    let (h, ffn, heads, kv, hd, vocab) = (
        u(t, "hidden_size"),
        u(t, "intermediate_size"),
        u(t, "num_attention_heads"),
        u(t, "num_key_value_heads"),
        u(t, "head_dim"),
        u(t, "vocab_size"),
    );
    let (dv, vffn, depth, pos) = (
        u(v, "hidden_size"),
        u(v, "intermediate_size"),
        u(v, "depth"),
        u(v, "num_position_embeddings"),
    );
    let merged = dv * 4;
    let mut s = vec![];
    let mut add = |name: String, shape: Vec<i32>, init: Init, quantizable: bool| {
        s.push(Spec {
            name,
            shape,
            init,
            quantizable,
        })
    };
    let vp = "model.visual";
    add(
        format!("{vp}.patch_embed.proj.weight"),
        vec![dv, 3, 2, 16, 16],
        Init::Normal,
        false,
    );
    add(
        format!("{vp}.patch_embed.proj.bias"),
        vec![dv],
        Init::Small,
        false,
    );
    add(
        format!("{vp}.pos_embed.weight"),
        vec![pos, dv],
        Init::Normal,
        false,
    );
    for i in 0..depth {
        let b = format!("{vp}.blocks.{i}");
        for n in ["norm1", "norm2"] {
            add(format!("{b}.{n}.weight"), vec![dv], Init::One, false);
            add(format!("{b}.{n}.bias"), vec![dv], Init::Small, false);
        }
        add(
            format!("{b}.attn.qkv.weight"),
            vec![3 * dv, dv],
            Init::Normal,
            false,
        );
        add(
            format!("{b}.attn.qkv.bias"),
            vec![3 * dv],
            Init::Small,
            false,
        );
        add(
            format!("{b}.attn.proj.weight"),
            vec![dv, dv],
            Init::Normal,
            false,
        );
        add(format!("{b}.attn.proj.bias"), vec![dv], Init::Small, false);
        add(
            format!("{b}.mlp.linear_fc1.weight"),
            vec![vffn, dv],
            Init::Normal,
            false,
        );
        add(
            format!("{b}.mlp.linear_fc1.bias"),
            vec![vffn],
            Init::Small,
            false,
        );
        add(
            format!("{b}.mlp.linear_fc2.weight"),
            vec![dv, vffn],
            Init::Normal,
            false,
        );
        add(
            format!("{b}.mlp.linear_fc2.bias"),
            vec![dv],
            Init::Small,
            false,
        );
    }
    let deep = v["deepstack_visual_indexes"].as_array().map_or(0, Vec::len);
    let mergers = std::iter::once(("merger".to_string(), dv))
        .chain((0..deep).map(|k| (format!("deepstack_merger_list.{k}"), merged)));
    for (m, norm_dim) in mergers {
        add(
            format!("{vp}.{m}.norm.weight"),
            vec![norm_dim],
            Init::One,
            false,
        );
        add(
            format!("{vp}.{m}.norm.bias"),
            vec![norm_dim],
            Init::Small,
            false,
        );
        add(
            format!("{vp}.{m}.linear_fc1.weight"),
            vec![merged, merged],
            Init::Normal,
            false,
        );
        add(
            format!("{vp}.{m}.linear_fc1.bias"),
            vec![merged],
            Init::Small,
            false,
        );
        add(
            format!("{vp}.{m}.linear_fc2.weight"),
            vec![h, merged],
            Init::Normal,
            false,
        );
        add(
            format!("{vp}.{m}.linear_fc2.bias"),
            vec![h],
            Init::Small,
            false,
        );
    }
    let lp = "model.language_model";
    add(
        format!("{lp}.embed_tokens.weight"),
        vec![vocab, h],
        Init::Normal,
        true,
    );
    for i in 0..u(t, "num_hidden_layers") {
        let l = format!("{lp}.layers.{i}");
        add(
            format!("{l}.input_layernorm.weight"),
            vec![h],
            Init::One,
            false,
        );
        add(
            format!("{l}.post_attention_layernorm.weight"),
            vec![h],
            Init::One,
            false,
        );
        add(
            format!("{l}.self_attn.q_proj.weight"),
            vec![heads * hd, h],
            Init::Normal,
            true,
        );
        add(
            format!("{l}.self_attn.k_proj.weight"),
            vec![kv * hd, h],
            Init::Normal,
            true,
        );
        add(
            format!("{l}.self_attn.v_proj.weight"),
            vec![kv * hd, h],
            Init::Normal,
            true,
        );
        add(
            format!("{l}.self_attn.o_proj.weight"),
            vec![h, heads * hd],
            Init::Normal,
            true,
        );
        add(
            format!("{l}.self_attn.q_norm.weight"),
            vec![hd],
            Init::One,
            false,
        );
        add(
            format!("{l}.self_attn.k_norm.weight"),
            vec![hd],
            Init::One,
            false,
        );
        add(
            format!("{l}.mlp.gate_proj.weight"),
            vec![ffn, h],
            Init::Normal,
            true,
        );
        add(
            format!("{l}.mlp.up_proj.weight"),
            vec![ffn, h],
            Init::Normal,
            true,
        );
        add(
            format!("{l}.mlp.down_proj.weight"),
            vec![h, ffn],
            Init::Normal,
            true,
        );
    }
    add(format!("{lp}.norm.weight"), vec![h], Init::One, false);
    if !d.tie {
        add("lm_head.weight".into(), vec![vocab, h], Init::Normal, true);
    }
    s
}

fn mlx_name(hf: &str) -> String {
    if let Some(rest) = hf.strip_prefix("model.language_model.") {
        format!("language_model.model.{rest}")
    } else if let Some(rest) = hf.strip_prefix("lm_head.") {
        format!("language_model.lm_head.{rest}")
    } else if let Some(rest) = hf.strip_prefix("model.visual.") {
        format!("vision_tower.{rest}")
    } else {
        hf.to_string()
    }
}

/// Random values for one tensor, from a key derived from the seed and the
/// tensor's name (so the result does not depend on write order or sharding).
fn random_tensor(spec: &Spec, dtype: Dtype, seed: u64) -> Result<Array> {
    let h = blake3::hash(spec.name.as_bytes());
    let salt = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    let key = random::key(seed ^ salt)?;
    let (loc, scale) = match spec.init {
        Init::Normal => (0.0, 0.02),
        Init::One => (1.0, 0.02),
        Init::Small => (0.0, 0.01),
    };
    Ok(random::normal(&spec.shape, dtype, loc, scale, &key)?)
}

/// The tensors written for one spec in the chosen layout and format.
fn materialise(spec: &Spec, opts: &SynthOptions, dtype: Dtype) -> Result<Vec<(String, Array)>> {
    let layout = opts.layout();
    let base = match layout {
        Layout::HuggingFace => spec.name.clone(),
        Layout::Mlx => mlx_name(&spec.name),
    };
    let mut w = random_tensor(spec, dtype, opts.seed)?;
    if layout == Layout::Mlx && spec.name.ends_with("patch_embed.proj.weight") {
        // MLX Conv3d kernels are channels-last.
        w = w.transpose(&[0, 2, 3, 4, 1])?;
    }
    match opts.quant.bits() {
        Some(bits) if spec.quantizable && spec.shape[1] % GROUP_SIZE == 0 => {
            let q = mlx::quantize(&w, GROUP_SIZE, bits)?;
            let stem = base.trim_end_matches(".weight").to_string();
            Ok(vec![
                (base, q.weight),
                (format!("{stem}.scales"), q.scales),
                (format!("{stem}.biases"), q.biases),
            ])
        }
        _ => Ok(vec![(base, w)]),
    }
}

fn stored_bytes(spec: &Spec, opts: &SynthOptions, dtype: Dtype) -> u64 {
    let n: u64 = spec.shape.iter().map(|&d| d as u64).product();
    match opts.quant.bits() {
        Some(bits) if spec.quantizable && spec.shape[1] % GROUP_SIZE == 0 => {
            n * bits as u64 / 8 + 2 * (n / GROUP_SIZE as u64) * dtype.size_of() as u64
        }
        _ => n * dtype.size_of() as u64,
    }
}

/// The `config.json` of a synthetic model.
pub fn config_json(opts: &SynthOptions) -> Value {
    let d = dims(opts.arch);
    let mut cfg = json!({
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "image_token_id": 151655, "video_token_id": 151656,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "tie_word_embeddings": d.tie,
        "dtype": if opts.quant == Quant::F32 { "float32" } else { "bfloat16" },
        "text_config": d.text,
        "vision_config": d.vision,
        "transformers_version": "4.57.1",
        "synthetic": {
            "generator": "host model synth",
            "host_version": env!("CARGO_PKG_VERSION"),
            "arch": opts.arch.name(),
            "quant": opts.quant.name(),
            "seed": opts.seed,
            "note": "random weights: outputs are meaningless; use for speed and plumbing only"
        }
    });
    if opts.quant == Quant::F32 {
        cfg["text_config"]["dtype"] = json!("float32");
    }
    if let Some(bits) = opts.quant.bits() {
        let q = json!({"group_size": GROUP_SIZE, "bits": bits, "mode": "affine"});
        cfg["quantization"] = q.clone();
        cfg["quantization_config"] = q;
    }
    cfg
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("JSON values serialise");
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes a complete model directory to `out` (created; must be empty or absent).
pub fn synthesize(
    opts: &SynthOptions,
    out: &Path,
    progress: &mut dyn FnMut(&str, f64),
) -> Result<SynthSummary> {
    let start = Instant::now();
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::request(format!(
            "{} exists and is not empty; choose another --out",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let dtype = if opts.quant == Quant::F32 {
        Dtype::F32
    } else {
        Dtype::BF16
    };
    let d = dims(opts.arch);
    let specs = tensor_specs(&d);

    write_json(&out.join("config.json"), &config_json(opts))?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
                "do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
                "transformers_version": "4.57.1"}),
    )?;
    let pre = json!({"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16,
        "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "do_resize": true, "do_rescale": true, "rescale_factor": 0.00392156862745098, "do_normalize": true,
        "do_convert_rgb": true, "resample": 3,
        "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor"});
    write_json(&out.join("preprocessor_config.json"), &pre)?;
    write_json(
        &out.join("video_preprocessor_config.json"),
        &json!({"size": {"longest_edge": 25165824, "shortest_edge": 4096}, "patch_size": 16,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5], "fps": 2, "do_sample_frames": true,
                "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor"}),
    )?;
    write_json(&out.join("tokenizer.json"), &tokenizer::tokenizer_json())?;
    write_json(
        &out.join("tokenizer_config.json"),
        &tokenizer::tokenizer_config_json(),
    )?;
    let template = include_str!("chat_template.jinja");
    std::fs::write(out.join("chat_template.jinja"), template).map_err(|e| Error::io(out, e))?;

    // Shards in order, each up to shard_bytes.
    let sizes: Vec<u64> = specs.iter().map(|s| stored_bytes(s, opts, dtype)).collect();
    let total: u64 = sizes.iter().sum();
    let mut shards: Vec<Vec<usize>> = vec![vec![]];
    let mut acc = 0;
    for (i, &b) in sizes.iter().enumerate() {
        if acc + b > opts.shard_bytes && !shards.last().expect("one shard").is_empty() {
            shards.push(vec![]);
            acc = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        acc += b;
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut files = vec![];
    let mut written = 0u64;
    let format = if opts.layout() == Layout::Mlx {
        "mlx"
    } else {
        "pt"
    };
    let meta: BTreeMap<String, String> = [("format".to_string(), format.to_string())].into();
    for (si, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, n)
        };
        let mut tensors: Vec<(String, Array)> = vec![];
        for &i in shard {
            for (name, a) in materialise(&specs[i], opts, dtype)? {
                weight_map.insert(name.clone(), file.clone());
                tensors.push((name, a));
            }
            written += sizes[i];
        }
        let path = out.join(&file);
        mlx::io::save_safetensors(&path, tensors.iter().map(|(n, a)| (n.as_str(), a)), &meta)?;
        files.push(file);
        progress(
            &format!("wrote shard {} of {n}", si + 1),
            written as f64 / total.max(1) as f64,
        );
    }
    if n > 1 {
        write_json(
            &out.join("model.safetensors.index.json"),
            &json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
        )?;
    }
    let parameters = specs
        .iter()
        .map(|s| s.shape.iter().map(|&d| d as u64).product::<u64>())
        .sum();
    Ok(SynthSummary {
        dir: out.to_path_buf(),
        parameters,
        bytes: total,
        files,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_published_sizes() {
        // `docs/qwen3-vl.md` §1.3, from transformers on the meta device (tied embeddings once)
        let expect = [
            (Arch::B2, 2_127_532_032u64),
            (Arch::B4, 4_437_815_808),
            (Arch::B8, 8_767_123_696),
            (Arch::B32, 33_357_390_064),
        ];
        for (arch, n) in expect {
            let count: u64 = tensor_specs(&dims(arch))
                .iter()
                .map(|s| s.shape.iter().map(|&d| d as u64).product::<u64>())
                .sum();
            assert_eq!(count, n, "{}", arch.name());
        }
    }
}
