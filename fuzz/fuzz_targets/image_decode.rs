//! Any bytes as an image file: decoding either fails with an error or gives
//! an image that preprocessing either rejects or turns into patches.
#![no_main]

use engine::config::PreprocessorConfig;
use engine::image::prepare_image;
use imaging::{DecodeLimits, decode_image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each input fast; the checks are the same.
    let limits = DecodeLimits {
        max_pixels: 1 << 20,
        max_alloc: 64 << 20,
    };
    if let Ok(img) = decode_image("fuzz", data, limits) {
        assert_eq!(
            img.pixels.len(),
            img.width as usize * img.height as usize * 3
        );
        let cfg = PreprocessorConfig {
            max_pixels: 1 << 18,
            min_pixels: 1024,
            ..PreprocessorConfig::default()
        };
        if let Ok(p) = prepare_image(&img, &cfg) {
            assert_eq!(
                p.pixel_values.len(),
                p.grid_thw.iter().product::<usize>() * 1536
            );
        }
    }
});
