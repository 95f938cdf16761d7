//! Every tensor of a synthetic model: its name in either layout, its shape,
//! how it is drawn, and its bytes once written.

use mlx::{Array, Dtype, random};
use serde_json::{Value, json};

use super::options::{Arch, Layout, SynthOptions};
use crate::error::Result;

pub(super) struct Dims {
    pub(super) text: Value,
    pub(super) vision: Value,
    pub(super) tie: bool,
}

pub(super) fn dims(arch: Arch) -> Dims {
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
pub(super) enum Init {
    /// `N(0, 0.02²)`.
    Normal,
    /// `1 + N(0, 0.02²)` (norm weights).
    One,
    /// `N(0, 0.01²)` (biases).
    Small,
}

pub(super) struct Spec {
    /// Hugging Face name.
    pub(super) name: String,
    pub(super) shape: Vec<i32>,
    pub(super) init: Init,
    /// Quantized in the MLX layout (text linears, embedding, LM head).
    pub(super) quantizable: bool,
}

pub(super) fn tensor_specs(d: &Dims) -> Vec<Spec> {
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

pub(super) fn mlx_name(hf: &str) -> String {
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

/// The bits and group size `spec` is quantized with, if it is: the layers
/// mlx-community checkpoints quantize, where the group divides the rows.
pub(super) fn quant_params(spec: &Spec, opts: &SynthOptions) -> Option<(i32, i32)> {
    let a = opts.quant.affine()?;
    let path = mlx_name(&spec.name);
    let layers = dims(opts.arch).text["num_hidden_layers"]
        .as_u64()
        .expect("dims are integers") as usize;
    let (bits, group) = a.for_layer(path.trim_end_matches(".weight"), layers);
    (spec.quantizable && spec.shape[1] % group == 0).then_some((bits, group))
}

/// The tensors written for one spec in the chosen layout and format.
pub(super) fn materialise(
    spec: &Spec,
    opts: &SynthOptions,
    dtype: Dtype,
) -> Result<Vec<(String, Array)>> {
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
    match quant_params(spec, opts) {
        Some((bits, group)) => {
            let q = mlx::quantize(&w, group, bits)?;
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

pub(super) fn stored_bytes(spec: &Spec, opts: &SynthOptions, dtype: Dtype) -> u64 {
    let n: u64 = spec.shape.iter().map(|&d| d as u64).product();
    match quant_params(spec, opts) {
        Some((bits, group)) => {
            n * bits as u64 / 8 + 2 * (n / group as u64) * dtype.size_of() as u64
        }
        _ => n * dtype.size_of() as u64,
    }
}
