//! Image preprocessing exactly as transformers' default Qwen3-VL processor
//! (spec §4): decode, orient, RGB, smart resize, Pillow-compatible bicubic,
//! rescale and normalise, temporal duplication, patches in merge-window order.

mod decode;
mod encode;
mod patchify;
mod resize;
mod synth;

pub use decode::{DecodeLimits, decode_image};
pub use encode::{Encoding, encode_image};
pub use patchify::{
    PreparedImage, model_size, patch_array, prepare_image, resize_for_model, stage_for_model,
};
pub use resize::{
    Resampler, resize_bicubic, resize_bicubic_into, resize_bicubic_with, smart_resize,
};
pub use synth::{MAX_SIDE, Pattern, synth_image};

/// A decoded RGB image (8 bits per channel, row-major `h × w × 3`).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> RgbImage {
        assert_eq!(
            pixels.len(),
            width as usize * height as usize * 3,
            "pixel buffer size"
        );
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    /// blake3 of the pixels and their size: identical pixels hash the same
    /// whatever file format carried them.
    pub fn content_hash(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"rgb8");
        h.update(&self.width.to_le_bytes());
        h.update(&self.height.to_le_bytes());
        // Threads pay off past ~128 KB (blake3's advice); a 1920x1080 image
        // is 6 MB, ~1 ms on one core.
        if self.pixels.len() > 1 << 17 {
            h.update_rayon(&self.pixels);
        } else {
            h.update(&self.pixels);
        }
        h.finalize()
    }
}
