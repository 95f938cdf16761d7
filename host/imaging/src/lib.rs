//! Images as the engine and the plugins see them: 8-bit RGB pixels decoded
//! with limits against hostile files, encoded for re-encoding tests, resized
//! exactly as transformers' Qwen3-VL processor resizes them
//! (`docs/qwen3-vl.md` §4), and synthesized deterministically for benchmarks.
//! No MLX and no model here: the plugin runtime and the fuzz targets use
//! these without the engine.

mod decode;
mod encode;
mod jpeg;
mod resize;
mod synth;

pub use decode::{DecodeLimits, decode_image};
pub use encode::{Encoding, encode_image};
pub use resize::{
    Resampler, resize_bicubic, resize_bicubic_into, resize_bicubic_with, smart_resize,
};
pub use synth::{MAX_SIDE, Pattern, synth_image};

/// What went wrong with an image or with what was asked of it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or buffer that cannot be decoded or encoded, with its name.
    #[error("image {name}: {message}")]
    Image { name: String, message: String },
    /// Parameters no image can satisfy: a size, a pattern, a format.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn image(name: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Image {
            name: name.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

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
