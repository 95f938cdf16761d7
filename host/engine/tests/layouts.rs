//! Checkpoint layouts and formats on the CPU, at tiny size: the same code
//! loads the Hugging Face layout (bf16) and the mlx-community layout (affine
//! at every bit width and group size MLX has, mlx-lm's mixed recipes with
//! their per-layer settings, vision in bf16, channels-last patch embedding),
//! and the quantized path matches a dequantized reference.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use engine::image::{Pattern, synth_image};
use engine::synth::{AFFINE_BITS, Arch, GROUP_SIZES, Layout, Quant, SynthOptions, synthesize};
use engine::{Engine, EngineOptions, GenerateRequest};
use mlx::{Array, Dtype};

fn synth(dir: &Path, quant: Quant, layout: Option<Layout>) {
    let mut o = SynthOptions::new(Arch::Tiny, quant, 11);
    o.layout = layout;
    synthesize(&o, dir, &mut |_, _| {}).unwrap();
}

/// `dense`: the engine's dense copies of quantized matrices (`None`: its
/// default, which on the CPU computes with f32 copies; `Some(false)`: MLX's
/// quantized kernels).
/// Returns the response and the bytes of dense copies the engine kept.
fn run(dir: &Path, dense: Option<bool>) -> (engine::GenerateResponse, u64) {
    let mut e = Engine::load(
        dir,
        EngineOptions {
            cache_enabled: false,
            dense_copies: dense,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let img = Arc::new(synth_image(200, 120, Pattern::Gradient, 4).unwrap());
    let mut r = GenerateRequest::simple("Describe this image.", vec![img], 6);
    r.ignore_eos = true;
    r.return_logits = true;
    let dense_bytes = e.info().dense_prefill_bytes;
    (e.generate(&r, &mut |_| {}).unwrap(), dense_bytes)
}

#[test]
fn every_layout_loads_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, quant, layout) in [
        ("hf-bf16", Quant::Bf16, None),
        ("mlx-bf16", Quant::Bf16, Some(Layout::Mlx)),
        ("mlx-q4", Quant::Q4, None),
        ("mlx-q8", Quant::Q8, None),
    ] {
        let dir = tmp.path().join(name);
        synth(&dir, quant, layout);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert!(cfg["synthetic"].is_object(), "{name}: not marked synthetic");
        let (r, _) = run(&dir, None);
        assert_eq!(r.output_tokens, 6, "{name}");
        assert!(
            r.first_logits.unwrap().iter().all(|x| x.is_finite()),
            "{name}: non-finite logits"
        );
    }
}

/// Rewrites a quantized checkpoint with every quantized matrix replaced by
/// its dequantized values (f32), and no quantization block.
fn dequantized_copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in std::fs::read_dir(src).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".safetensors") && name != "config.json" {
            std::fs::copy(&f, dst.join(&name)).unwrap();
        }
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let q = cfg["quantization"].clone();
    // A layer's own settings (mixed recipes), else the default.
    let params = |stem: &str| {
        let p = q.get(stem).filter(|p| p.is_object()).unwrap_or(&q);
        (
            p["group_size"].as_i64().unwrap() as i32,
            p["bits"].as_i64().unwrap() as i32,
        )
    };
    cfg.as_object_mut().unwrap().remove("quantization");
    cfg.as_object_mut().unwrap().remove("quantization_config");
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    let st = mlx::io::load_safetensors(&src.join("model.safetensors")).unwrap();
    let mut out: BTreeMap<String, Array> = BTreeMap::new();
    for (name, a) in &st.tensors {
        if let Some(stem) = name.strip_suffix(".scales") {
            let (group, bits) = params(stem);
            // In f32, as the engine computes on the CPU (bf16 scales would
            // round every dequantized weight to bf16).
            let q = mlx::Quantized {
                weight: st.tensors[&format!("{stem}.weight")].clone(),
                scales: a.astype(Dtype::F32).unwrap(),
                biases: st.tensors[&format!("{stem}.biases")]
                    .astype(Dtype::F32)
                    .unwrap(),
                group_size: group,
                bits,
            };
            out.insert(format!("{stem}.weight"), q.dequantize(Dtype::F32).unwrap());
        } else if !name.ends_with(".biases")
            || !st
                .tensors
                .contains_key(&format!("{}.scales", name.trim_end_matches(".biases")))
        {
            out.entry(name.clone())
                .or_insert_with(|| a.astype(Dtype::F32).unwrap());
        }
    }
    mlx::io::save_safetensors(
        &dst.join("model.safetensors"),
        out.iter().map(|(k, v)| (k.as_str(), v)),
        &st.metadata,
    )
    .unwrap();
}

/// The quantized kernels compute x·(s·q + b) directly; the reference
/// multiplies by the dequantized matrix. Both are f32 sums of the same terms
/// in different orders, so they differ by rounding only: each dot product of
/// K ≤ 128 terms by at most about K·2⁻²⁴ ≈ 8e-6 of its magnitude, compounded
/// over the 4 decoder layers and the vision tower. We allow 1e-5 of the
/// logits' largest magnitude (measured: 4e-7), and identical greedy tokens.
#[test]
fn quantized_path_matches_a_dequantized_reference() {
    let tmp = tempfile::tempdir().unwrap();
    // Every bit width at the default group, every group at 3 bits (the
    // vllm-mlx page's 4B), and mlx-lm's mixed recipes.
    let mut formats: Vec<String> = AFFINE_BITS.iter().map(|b| b.to_string()).collect();
    formats.extend(GROUP_SIZES.iter().map(|g| format!("3:{g}")));
    formats.extend(["mixed_3_6".to_string(), "mixed_2_6:32".to_string()]);
    for name in formats {
        let quant = Quant::parse(&name).unwrap();
        let q = tmp.path().join(format!("q{name}"));
        let d = tmp.path().join(format!("d{name}"));
        synth(&q, quant, None);
        assert_eq!(Quant::parse(&quant.name()), Some(quant));
        dequantized_copy(&q, &d);
        let (rd, _) = run(&d, None);
        let ld = rd.first_logits.as_ref().unwrap();
        let scale = ld.iter().fold(0f32, |m, x| m.max(x.abs()));
        // MLX's quantized kernels, then the engine's default dense copies.
        for (path, dense) in [("quantized kernels", Some(false)), ("dense copies", None)] {
            let (rq, dense_bytes) = run(&q, dense);
            assert_eq!(
                dense_bytes > 0,
                dense.is_none(),
                "{quant:?} {path}: {dense_bytes} bytes of dense copies"
            );
            let lq = rq.first_logits.unwrap();
            let diff = lq
                .iter()
                .zip(ld)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            eprintln!("{quant:?} {path}: max |Δlogit| {diff:e} of max |logit| {scale}");
            assert!(
                diff <= 1e-5 * scale,
                "{quant:?} {path}: logits differ by {diff} (scale {scale})"
            );
            assert_eq!(
                rq.token_ids, rd.token_ids,
                "{quant:?} {path}: greedy tokens differ"
            );
        }
    }
}
