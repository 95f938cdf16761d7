//! Decoding as transformers reads images (Pillow's `open`, `exif_transpose`
//! and `convert("RGB")`): JPEG through libjpeg-turbo (`jpeg.rs`), PNG, WebP
//! and GIF (first frame) with the `image` crate; EXIF orientation applied;
//! alpha dropped, not composited; 16-bit samples reduced as Pillow reduces
//! them. `tests/golden/pixels` holds Pillow's pixels for every kind, and a
//! test compares them byte for byte.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

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
    let format = reader.format();
    if format.is_none() {
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
    let mut img = if format == Some(ImageFormat::Jpeg) {
        let rgb = crate::jpeg::decode_jpeg(name, bytes, limits)?;
        let buf = image::RgbImage::from_raw(rgb.width, rgb.height, rgb.pixels)
            .expect("the decoder filled width x height x 3 bytes");
        DynamicImage::ImageRgb8(buf)
    } else {
        DynamicImage::from_decoder(decoder)
            .map_err(|e| Error::image(name, format!("cannot decode: {e}")))?
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let rgb = to_rgb8_as_pillow(img);
    let (w, h) = rgb.dimensions();
    Ok(RgbImage::new(w, h, rgb.into_raw()))
}

/// 8-bit RGB as Pillow's `convert("RGB")` makes it. Pillow opens 16-bit
/// colour and gray+alpha PNGs keeping each sample's high byte, and 16-bit
/// grayscale as 32-bit integers that `convert` clips to 255: a 16-bit gray
/// picture comes out mostly white, as transformers sees it. The `image`
/// crate rounds 16 bits to 8 instead; everything else it converts as
/// Pillow does.
fn to_rgb8_as_pillow(img: DynamicImage) -> image::RgbImage {
    let (w, h) = (img.width(), img.height());
    let from = |px: Vec<u8>| image::RgbImage::from_raw(w, h, px).expect("w x h x 3 bytes");
    match img {
        DynamicImage::ImageLuma16(g) => from(
            g.into_raw()
                .into_iter()
                .flat_map(|v| [v.min(255) as u8; 3])
                .collect(),
        ),
        DynamicImage::ImageLumaA16(g) => from(
            g.into_raw()
                .chunks_exact(2)
                .flat_map(|p| [(p[0] >> 8) as u8; 3])
                .collect(),
        ),
        DynamicImage::ImageRgb16(c) => {
            from(c.into_raw().into_iter().map(|v| (v >> 8) as u8).collect())
        }
        DynamicImage::ImageRgba16(c) => from(
            c.into_raw()
                .chunks_exact(4)
                .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
                .collect(),
        ),
        other => other.to_rgb8(),
    }
}
