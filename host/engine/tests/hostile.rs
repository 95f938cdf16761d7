//! Bad input gets a clear error naming it: broken and hostile images
//! (`tests/fixtures/make_images.py`) and broken model directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::config::PreprocessorConfig;
use engine::image::{DecodeLimits, decode_image, prepare_image};
use engine::synth::{Arch, Quant, SynthOptions, synthesize};
use engine::{Engine, EngineOptions, GenerateRequest};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/images")
            .join(name),
    )
    .unwrap()
}

fn decode(name: &str) -> Result<engine::image::RgbImage, String> {
    decode_image(name, &fixture(name), DecodeLimits::default()).map_err(|e| e.to_string())
}

#[test]
fn broken_images_are_refused_by_name() {
    for (name, want) in [
        ("truncated.png", "cannot decode"),
        ("corrupt.jpg", "cannot decode"),
        ("not_an_image.png", "not a recognised image format"),
        ("zero_width.png", "image zero_width.png"),
    ] {
        let err = decode(name).unwrap_err();
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let empty = decode_image("empty.png", &[], DecodeLimits::default())
        .unwrap_err()
        .to_string();
    assert!(empty.contains("empty"), "{empty}");
}

#[test]
fn a_decompression_bomb_is_refused_before_decoding() {
    // 69 bytes declaring 100000 x 100000 pixels.
    let err = decode("bomb.png").unwrap_err();
    assert!(
        err.contains("100000x100000") && err.contains("limit"),
        "{err}"
    );
    // A tighter limit refuses ordinary images too, with the same message.
    let small = DecodeLimits {
        max_pixels: 100,
        ..DecodeLimits::default()
    };
    let err = decode_image("strip_1x300.png", &fixture("strip_1x300.png"), small)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the limit of 100"), "{err}");
}

#[test]
fn unusual_but_valid_images_decode() {
    // 16-bit grayscale: as Pillow's convert("RGB") reads it (what
    // transformers sees), 40000 clips to 255, replicated.
    let g = decode("gray16.png").unwrap();
    assert_eq!((g.width, g.height), (40, 30));
    assert!(g.pixels.iter().all(|&p| p == 255), "{:?}", &g.pixels[..3]);
    // CMYK JPEG: converted to RGB close to the image it came from.
    let c = decode("cmyk.jpg").unwrap();
    let reference = decode("rgb_for_cmyk_ref.png").unwrap();
    assert_eq!((c.width, c.height), (40, 30));
    let worst = c
        .pixels
        .iter()
        .zip(&reference.pixels)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 12, "CMYK converted {worst} levels away");
    // Animated GIF: the first frame (red).
    let a = decode("animated.gif").unwrap();
    assert_eq!(&a.pixels[..3], &[255, 0, 0]);
    // EXIF orientation 6: stored 40x20, shown 20x40 with the white half on top.
    let r = decode("exif_rotate90.jpg").unwrap();
    assert_eq!((r.width, r.height), (20, 40));
    assert!(
        r.pixels[0] > 200 && r.pixels[(39 * 20) * 3] < 50,
        "rotation not applied"
    );
}

#[test]
fn extreme_aspect_ratios() {
    let pre = PreprocessorConfig::default();
    let wide = decode("strip_1x100.png").unwrap();
    let p = prepare_image(&wide, &pre).unwrap();
    assert_eq!(p.grid_thw, [1, 160, 2]);
    let err = prepare_image(&decode("strip_1x300.png").unwrap(), &pre)
        .unwrap_err()
        .to_string();
    assert!(err.contains("aspect ratio over 200"), "{err}");
}

fn tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    synthesize(
        &SynthOptions::new(Arch::Tiny, Quant::Bf16, 1),
        &out,
        &mut |_, _| {},
    )
    .unwrap();
    out
}

fn load_err(dir: &Path) -> String {
    match Engine::load(dir, EngineOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_model_directories_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny(tmp.path());

    // Unknown architecture.
    let d = tmp.path().join("llama");
    copy_dir(&good, &d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"qwen3_vl\"", "\"llama\"");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("\"llama\"") && e.contains("Qwen3-VL"),
        "{e}"
    );

    // Corrupt safetensors header.
    let d = tmp.path().join("corrupt");
    copy_dir(&good, &d);
    let mut bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    bytes[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") && e.contains("not valid JSON"),
        "{e}"
    );

    // Truncated weights.
    let d = tmp.path().join("truncated");
    copy_dir(&good, &d);
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&d);
    assert!(e.contains("truncated"), "{e}");

    // Missing shard named by the index.
    let d = tmp.path().join("sharded");
    copy_dir(&good, &d);
    std::fs::write(
        d.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("not on disk"),
        "{e}"
    );

    // Wrong shape and wrong dtype: one error listing both.
    let d = tmp.path().join("reshaped");
    copy_dir(&good, &d);
    let st = mlx::io::load_safetensors(&d.join("model.safetensors")).unwrap();
    let mut tensors = st.tensors.clone();
    let norm = "model.language_model.layers.0.input_layernorm.weight";
    tensors.insert(
        norm.into(),
        mlx::Array::zeros(&[3], mlx::Dtype::BF16).unwrap(),
    );
    let knorm = "model.language_model.layers.1.self_attn.k_norm.weight";
    tensors.insert(
        knorm.into(),
        mlx::Array::zeros(&[32], mlx::Dtype::I32).unwrap(),
    );
    tensors.remove("model.visual.merger.linear_fc2.bias");
    tensors.insert(
        "model.extra.weight".into(),
        mlx::Array::zeros(&[1], mlx::Dtype::BF16).unwrap(),
    );
    mlx::io::save_safetensors(
        &d.join("model.safetensors"),
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &st.metadata,
    )
    .unwrap();
    let e = load_err(&d);
    for want in [
        norm,
        "[3], expected [64]",
        knorm,
        "I32",
        "missing: model.visual.merger.linear_fc2.bias",
        "unexpected: model.extra.weight",
    ] {
        assert!(e.contains(want), "no {want:?} in: {e}");
    }

    // No tokenizer.
    let d = tmp.path().join("no_tokenizer");
    copy_dir(&good, &d);
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    assert!(load_err(&d).contains("tokenizer.json"));
}

#[test]
fn bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = Engine::load(&tiny(tmp.path()), EngineOptions::default()).unwrap();
    let img = Arc::new(decode("strip_1x100.png").unwrap());
    let mut r = GenerateRequest::simple("hi", vec![img.clone()], 0);
    assert!(
        e.generate(&r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("max_tokens")
    );
    r.max_tokens = 2;
    r.images.push(img);
    assert!(
        e.generate(&r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("2 images were given")
    );
    let sneaky = GenerateRequest::simple("look: <|image_pad|>", vec![], 2);
    let err = e.generate(&sneaky, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("placeholder"), "{err}");
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in std::fs::read_dir(src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
}
