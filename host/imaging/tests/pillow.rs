//! Our decoder against Pillow, the decoder transformers reads images with:
//! each file in `tests/golden/pixels` (made by `tests/golden/make_pixels.py`)
//! must decode to exactly the bytes Pillow's
//! `exif_transpose(open(f)).convert("RGB")` gives.

use std::path::Path;

use imaging::{DecodeLimits, RgbImage, decode_image};

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/pixels")
}

fn decode(name: &str) -> RgbImage {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    decode_image(name, &bytes, DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_file_decodes_to_pillows_pixels() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut differ = vec![];
    for case in manifest["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let ours = decode(file);
        // The reference is an 8-bit RGB PNG, which every decoder reads alike.
        let want = decode(case["reference"].as_str().unwrap());
        if (ours.width, ours.height) != (want.width, want.height) {
            differ.push(format!(
                "{file} ({}): {}x{} against Pillow's {}x{}",
                case["what"], ours.width, ours.height, want.width, want.height
            ));
            continue;
        }
        let diffs: Vec<u8> = ours
            .pixels
            .iter()
            .zip(&want.pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let n = diffs.iter().filter(|&&d| d > 0).count();
        if n > 0 {
            differ.push(format!(
                "{file} ({}): {n} of {} values differ, by up to {}",
                case["what"],
                diffs.len(),
                diffs.iter().max().unwrap()
            ));
        }
    }
    assert!(differ.is_empty(), "against Pillow:\n{}", differ.join("\n"));
}
