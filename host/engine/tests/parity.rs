//! Parity with Hugging Face transformers on golden data made by
//! `tests/golden/make_golden.py` (a tiny random Qwen3-VL, float32): token ids,
//! pixel values, grids, 3-D positions, vision and DeepStack features, hidden
//! states, logits and 20 greedy tokens.

use std::path::{Path, PathBuf};

use engine::config::{ModelConfig, PreprocessorConfig};
use engine::image::{DecodeLimits, decode_image, prepare_image};
use engine::kernels::Kernels;
use engine::model::positions::{mrope_tables, rope_positions};
use engine::model::{KvCache, Qwen3Vl, Rope, Visual, assemble_inputs, image_spans};
use engine::prompt::{ChatTemplate, Content, Message, PromptBuilder, TextTokenizer};
use mlx::{Array, Dtype};

/// `GOLDEN_DIR` overrides where the data is (for running this test binary on
/// another machine, such as the GPU one).
fn golden_dir() -> PathBuf {
    match std::env::var_os("GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/data"),
    }
}

/// Tolerance for float comparisons: 1e-4 (`docs/qwen3-vl.md` §8.3), unless `PARITY_TOL`
/// says otherwise (GPUs may use TF32 for f32 matmuls).
fn tol() -> f32 {
    std::env::var("PARITY_TOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1e-4)
}

struct Case {
    tensors: std::collections::BTreeMap<String, Array>,
}

impl Case {
    fn load(name: &str) -> Case {
        let st =
            mlx::io::load_safetensors(&golden_dir().join(format!("{name}.safetensors"))).unwrap();
        Case {
            tensors: st.tensors,
        }
    }
    fn get(&self, k: &str) -> &Array {
        self.tensors
            .get(k)
            .unwrap_or_else(|| panic!("golden tensor {k} missing"))
    }
    fn f32(&self, k: &str) -> Vec<f32> {
        self.get(k).to_f32_vec().unwrap()
    }
    fn i32(&self, k: &str) -> Vec<i32> {
        self.get(k).to_vec::<i32>().unwrap()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn messages(case: &str) -> (Vec<Message>, usize) {
    let text = |t: &str| Content::Text { text: t.into() };
    match case {
        "single_image" => (vec![Message::user_with_images(1, "Describe this.")], 1),
        "two_images" => (
            vec![Message {
                role: "user".into(),
                content: vec![
                    text("Compare "),
                    Content::Image,
                    text(" and "),
                    Content::Image,
                    text("."),
                ],
            }],
            2,
        ),
        _ => (
            vec![Message {
                role: "user".into(),
                content: vec![text("Hello there!")],
            }],
            0,
        ),
    }
}

struct Loaded {
    model: Qwen3Vl,
    prompts: PromptBuilder,
    pre: PreprocessorConfig,
}

fn load(folder: &str) -> Loaded {
    let dir = golden_dir().join(folder);
    let cfg = ModelConfig::load(&dir).unwrap();
    let tokens = cfg.tokens.image;
    let model = Qwen3Vl::load(&dir, cfg, None, &Kernels::off()).unwrap();
    let prompts = PromptBuilder::new(
        TextTokenizer::load(&dir).unwrap(),
        ChatTemplate::load(&dir).unwrap(),
        tokens,
    )
    .unwrap();
    Loaded {
        model,
        prompts,
        pre: PreprocessorConfig::load(&dir).unwrap(),
    }
}

/// Runs one golden case through every stage and compares.
fn check_case(folder: &str, case: &str, golden_name: &str) {
    let m = load(folder);
    let g = Case::load(golden_name);
    let (msgs, n_images) = messages(case);
    let merge = m.model.config.vision.spatial_merge_size;

    // Images from the exact pixels the processor saw.
    let mut prepared = vec![];
    for i in 0..n_images {
        let bytes = std::fs::read(golden_dir().join(format!("{case}_{i}.png"))).unwrap();
        let img = decode_image("golden", &bytes, DecodeLimits::default()).unwrap();
        prepared.push(prepare_image(&img, &m.pre).unwrap());
    }

    // Token ids, exactly.
    let counts: Vec<usize> = prepared.iter().map(|p| p.num_tokens(merge)).collect();
    let ids = m.prompts.encode(&msgs, &counts).unwrap();
    let golden_ids: Vec<u32> = g.i32("input_ids").iter().map(|&x| x as u32).collect();
    assert_eq!(ids, golden_ids, "{golden_name}: token ids");

    // Pixel values within one 8-bit level; grids exactly.
    let mut features = vec![];
    if n_images > 0 {
        let grids: Vec<i32> = g.i32("image_grid_thw");
        let levels = g
            .get("pixel_levels")
            .astype(Dtype::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let golden_pv: Vec<f32> = levels.iter().map(|l| (l - 127.5) / 127.5).collect();
        let mut offset = 0;
        for (i, p) in prepared.iter().enumerate() {
            let grid: Vec<i32> = p.grid_thw.iter().map(|&x| x as i32).collect();
            assert_eq!(
                grid,
                grids[i * 3..i * 3 + 3],
                "{golden_name}: grid of image {i}"
            );
            let n = p.pixel_values.len();
            let d = max_abs_diff(&p.pixel_values, &golden_pv[offset..offset + n]);
            let off_by_level = p
                .pixel_values
                .iter()
                .zip(&golden_pv[offset..offset + n])
                .filter(|(a, b)| (*a - *b).abs() > 1e-6)
                .count();
            eprintln!(
                "{golden_name}: image {i}: {off_by_level} of {n} pixel values differ, max {d}"
            );
            assert!(
                d <= 1.0 / 127.5 + 1e-6,
                "{golden_name}: image {i} pixel values differ by {d}"
            );
            offset += n;
        }

        // Vision features from the golden pixel values (isolates the tower).
        let mut offset = 0;
        let mut merged_all = vec![];
        let mut deep_all: Vec<Vec<f32>> = vec![vec![]; 3];
        for p in &prepared {
            let n = p.pixel_values.len();
            let rows = (n / p.row_len()) as i32;
            let pv = Array::from_f32(&golden_pv[offset..offset + n], &[rows, p.row_len() as i32])
                .unwrap();
            let f = m.model.vision.forward(&pv, p.grid_thw).unwrap();
            merged_all.extend(f.merged.to_f32_vec().unwrap());
            for (k, d) in f.deepstack.iter().enumerate() {
                deep_all[k].extend(d.to_f32_vec().unwrap());
            }
            features.push(f);
            offset += n;
        }
        let d = max_abs_diff(&merged_all, &g.f32("vision_merged"));
        eprintln!("{golden_name}: vision merged max diff {d:e}");
        assert!(d <= tol(), "{golden_name}: vision features differ by {d}");
        for (k, deep) in deep_all.iter().enumerate() {
            let d = max_abs_diff(deep, &g.f32(&format!("vision_deepstack_{k}")));
            assert!(d <= tol(), "{golden_name}: DeepStack {k} differs by {d}");
        }
    }

    // 3-D positions exactly.
    let grids: Vec<[usize; 3]> = prepared.iter().map(|p| p.grid_thw).collect();
    let pos = rope_positions(&ids, m.model.config.tokens.image, &grids, merge).unwrap();
    let gp = g.i32("position_ids");
    let l = ids.len();
    assert_eq!(pos.t, gp[..l], "{golden_name}: T positions");
    assert_eq!(pos.h, gp[l..2 * l], "{golden_name}: H positions");
    assert_eq!(pos.w, gp[2 * l..], "{golden_name}: W positions");
    assert_eq!(
        pos.rope_delta(),
        g.i32("rope_deltas")[0],
        "{golden_name}: rope delta"
    );

    // Prefill: hidden states and logits.
    let text = &m.model.text;
    let spans = image_spans(&ids, m.model.config.tokens.image);
    let feat_refs: Vec<_> = features.iter().collect();
    let (x, deep) = assemble_inputs(text, &ids, &spans, &feat_refs, 0, l).unwrap();
    let hd = text.config().head_dim;
    let (cos, sin) = mrope_tables(
        &pos,
        text.config().rope_theta,
        hd,
        text.config().mrope_section,
    );
    let rope = Rope::Tables {
        cos: Array::from_f32(&cos, &[l as i32, hd as i32]).unwrap(),
        sin: Array::from_f32(&sin, &[l as i32, hd as i32]).unwrap(),
    };
    let mut cache = KvCache::new(text.config().num_hidden_layers);
    let visual = Visual { deepstack: &deep };
    let (normed, hidden) = text
        .forward_with_hidden(
            &x,
            &rope,
            &mut cache,
            if deep.is_empty() { None } else { Some(&visual) },
        )
        .unwrap();
    // HF's last hidden state is before the final norm; ours are the layer outputs.
    for (i, h) in hidden.iter().enumerate() {
        let d = max_abs_diff(
            &h.to_f32_vec().unwrap(),
            &g.f32(&format!("hidden_state_{i}")),
        );
        assert!(d <= tol(), "{golden_name}: hidden state {i} differs by {d}");
    }
    let logits = text.logits(&normed).unwrap();
    let d = max_abs_diff(&logits.to_f32_vec().unwrap(), &g.f32("logits"));
    eprintln!("{golden_name}: prefill logits max diff {d:e}");
    assert!(d <= tol(), "{golden_name}: logits differ by {d}");

    // 20 greedy steps with the KV cache; positions continue at max + 1.
    let vocab = text.config().vocab_size;
    let golden_steps = g.f32("decode_step_logits");
    let golden_tokens = g.i32("generated_ids");
    let last = logits.slice_axis(1, l as i32 - 1, l as i32).unwrap();
    let mut step_logits = last.reshape(&[vocab as i32]).unwrap();
    let mut produced = vec![];
    for (step, next_pos) in (0..golden_tokens.len()).zip(pos.next_position()..) {
        let got = step_logits.to_f32_vec().unwrap();
        let d = max_abs_diff(&got, &golden_steps[step * vocab..(step + 1) * vocab]);
        assert!(
            d <= tol(),
            "{golden_name}: step {step} logits differ by {d}"
        );
        let tok = step_logits.argmax(0, false).unwrap().item::<u32>().unwrap();
        produced.push(tok as i32);
        let x = text.embed(&[tok]).unwrap().expand_dims(0).unwrap();
        let h = text
            .forward(&x, &Rope::Offset(next_pos), &mut cache, None)
            .unwrap();
        step_logits = text.logits(&h).unwrap().reshape(&[vocab as i32]).unwrap();
    }
    assert_eq!(produced, golden_tokens, "{golden_name}: greedy tokens");
}

#[test]
fn single_image_matches_transformers() {
    check_case("model", "single_image", "single_image");
}

#[test]
fn two_images_of_different_sizes_match_transformers() {
    check_case("model", "two_images", "two_images");
}

#[test]
fn text_only_matches_transformers() {
    check_case("model", "text_only", "text_only");
}

#[test]
fn tied_embeddings_match_transformers() {
    check_case("model_tied", "single_image", "tied_single_image");
}

/// Preprocessing edge cases against the processor's own output: sides that
/// are not multiples of 32, below the minimum pixel budget, very wide and
/// tall, grayscale, RGBA and paletted inputs.
#[test]
fn edge_case_images_match_the_processor() {
    let golden = mlx::io::load_safetensors(&golden_dir().join("edge_images.safetensors")).unwrap();
    let pre = PreprocessorConfig::default();
    let names = [
        "odd_333x217",
        "small_40x30",
        "wide_1000x40",
        "tall_36x700",
        "gray_200x150",
        "rgba_180x120",
        "palette_160x160",
    ];
    for name in names {
        let bytes = std::fs::read(golden_dir().join(format!("edge_{name}.png"))).unwrap();
        let img = decode_image(name, &bytes, DecodeLimits::default()).unwrap();
        let prep = prepare_image(&img, &pre).unwrap();
        let grid: Vec<i32> = golden.tensors[&format!("{name}.grid")]
            .to_vec::<i32>()
            .unwrap();
        assert_eq!(
            prep.grid_thw.iter().map(|&x| x as i32).collect::<Vec<_>>(),
            grid,
            "{name}: grid"
        );
        let levels = golden.tensors[&format!("{name}.levels")]
            .astype(Dtype::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let expect: Vec<f32> = levels.iter().map(|l| (l - 127.5) / 127.5).collect();
        let d = max_abs_diff(&prep.pixel_values, &expect);
        assert!(d < 1e-6, "{name}: pixel values differ by {d}");
    }
}

/// The Pillow flavour of the resampler against Pillow itself.
#[test]
fn pillow_flavour_matches_pillow() {
    let read = |f: &str| {
        decode_image(
            f,
            &std::fs::read(golden_dir().join(f)).unwrap(),
            DecodeLimits::default(),
        )
        .unwrap()
    };
    let src = read("edge_odd_333x217.png");
    let want = read("pillow_odd_333x217_to_320x224.png");
    let got = engine::image::resize_bicubic_with(&src, 320, 224, engine::image::Resampler::Pillow);
    assert!(got == want, "Pillow flavour differs from Pillow");
}
