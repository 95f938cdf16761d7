//! Synthetic models: complete Qwen3-VL model directories with random weights,
//! in the real layouts (Hugging Face bf16, or mlx-community affine-quantized),
//! so speed can be measured anywhere without downloading weights. Every
//! directory says it is synthetic in its `config.json`.

mod options;
mod tensors;
pub(crate) mod tokenizer;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use mlx::{Array, Dtype};

use serde_json::{Value, json};

use crate::error::{Error, Result};

pub use options::{
    AFFINE_BITS, Affine, Arch, GROUP_SIZES, Layout, MIXED_RECIPES, Quant, SynthOptions,
    SynthSummary,
};
use tensors::{dims, materialise, mlx_name, quant_params, stored_bytes, tensor_specs};
pub use tokenizer::ADDED_TOKENS;

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
    if let Some(a) = opts.affine_quant() {
        let mut q = json!({"group_size": a.group_size, "bits": a.bits, "mode": "affine"});
        // Layers quantized other than the default are listed by MLX module
        // path, as mlx-lm writes mixed recipes.
        for spec in tensor_specs(&dims(opts.arch)) {
            if let Some((bits, group)) = quant_params(&spec, opts)
                && (bits, group) != (a.bits, a.group_size)
            {
                let path = mlx_name(&spec.name).trim_end_matches(".weight").to_string();
                q[path] = json!({"group_size": group, "bits": bits, "mode": "affine"});
            }
        }
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
