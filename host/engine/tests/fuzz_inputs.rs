//! The fuzz targets' checks on the inputs kept in the tree: every crash
//! reproducer in `fuzz/regressions/<target>/` and every seed in
//! `fuzz/seeds/<target>/`, so that a fixed crash stays fixed without running
//! the fuzzer (`docs/fuzzing.md`). The checks are the targets' own.

use std::path::{Path, PathBuf};

use engine::config::{ModelConfig, PreprocessorConfig};
use engine::image::{DecodeLimits, decode_image, prepare_image};
use engine::model::safetensors_check::parse_header;

/// The files kept for `target`, and how many came from the seeds.
fn inputs(target: &str) -> (Vec<PathBuf>, usize) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let files = |dir: PathBuf| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    };
    let seeds = files(fuzz.join("seeds").join(target));
    let n = seeds.len();
    let mut all = seeds;
    all.extend(files(fuzz.join("regressions").join(target)));
    (all, n)
}

#[test]
fn image_inputs_decode_or_fail_cleanly() {
    let (files, seeds) = inputs("image_decode");
    assert!(seeds > 0, "no seeds for image_decode");
    let limits = DecodeLimits {
        max_pixels: 1 << 20,
        max_alloc: 64 << 20,
    };
    let cfg = PreprocessorConfig {
        max_pixels: 1 << 18,
        min_pixels: 1024,
        ..PreprocessorConfig::default()
    };
    for f in files {
        let data = std::fs::read(&f).unwrap();
        if let Ok(img) = decode_image("fuzz", &data, limits) {
            assert_eq!(
                img.pixels.len(),
                img.width as usize * img.height as usize * 3,
                "{}",
                f.display()
            );
            if let Ok(p) = prepare_image(&img, &cfg) {
                let patches: usize = p.grid_thw.iter().product();
                assert_eq!(p.pixel_values.len(), patches * 1536, "{}", f.display());
            }
        }
    }
}

#[test]
fn config_inputs_parse_into_checked_configs_or_name_the_file() {
    let (files, seeds) = inputs("model_config");
    assert!(seeds > 0, "no seeds for model_config");
    let path = Path::new("fuzz/config.json");
    for f in files {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&f).unwrap())
        else {
            continue;
        };
        match ModelConfig::from_json(path, &value) {
            Ok(cfg) => {
                let v = &cfg.vision;
                assert!(v.deepstack_visual_indexes.iter().all(|&i| i < v.depth));
                assert_eq!(v.out_hidden_size, cfg.text.hidden_size, "{}", f.display());
            }
            Err(e) => assert!(e.to_string().contains("config.json"), "{e}"),
        }
    }
}

#[test]
fn safetensors_headers_describe_tensors_or_fail_cleanly() {
    let (files, seeds) = inputs("safetensors_header");
    assert!(seeds > 0, "no seeds for safetensors_header");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        // The target reads a u32 of extra file length, then the header.
        let (extra, header) = match data.split_first_chunk::<4>() {
            Some((n, rest)) => (u32::from_le_bytes(*n), rest),
            None => (0, &data[..]),
        };
        let file_len = 8 + header.len() as u64 + extra as u64;
        if let Ok(tensors) = parse_header(header, file_len) {
            assert!(tensors.iter().all(|(_, _, shape)| shape.len() <= 8));
        }
    }
}
