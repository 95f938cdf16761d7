//! Decoding with the `image` crate: PNG, JPEG, WebP, GIF (first frame), EXIF
//! orientation applied, converted to 8-bit RGB the way PIL's `convert("RGB")`
//! does (alpha dropped, not composited).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{Error, Result, RgbImage};

/// Bounds that protect the host from hostile files (decompression bombs).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted width × height, checked before pixels are decoded.
    pub max_pixels: u64,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 8192² covers 8K photos; Qwen3-VL itself caps at 4096² after resizing.
        DecodeLimits {
            max_pixels: 8192 * 8192,
            max_alloc: 1 << 30,
        }
    }
}

/// Decodes `bytes` (format sniffed from content). `name` is used in errors.
pub fn decode_image(name: &str, bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::image(name, "the file is empty"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::image(name, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::image(
            name,
            "not a recognised image format (PNG, JPEG, WebP or GIF)",
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::image(name, format!("cannot decode: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::image(name, format!("has no pixels ({w}x{h})")));
    }
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_pixels {
        return Err(Error::image(
            name,
            format!(
                "declares {w}x{h} = {pixels} pixels, more than the limit of {}",
                limits.max_pixels
            ),
        ));
    }
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc);
    decoder
        .set_limits(image_limits)
        .map_err(|e| Error::image(name, format!("over the decoding limits: {e}")))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::image(name, format!("cannot decode: {e}")))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(RgbImage::new(w, h, rgb.into_raw()))
}
