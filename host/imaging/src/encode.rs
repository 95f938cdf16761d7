//! Encoding RGB images (to re-encode test images, or hand them to tools).

use std::io::Cursor;

use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;

use crate::{Error, Result, RgbImage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Png,
    /// Lossy, quality 1–100.
    Jpeg(u8),
    /// Lossless WebP.
    WebP,
}

impl Encoding {
    /// `format` with `quality`, which only JPEG reads (1–100).
    pub fn parse(format: &str, quality: u8) -> Result<Encoding> {
        match format {
            "png" => Ok(Encoding::Png),
            "jpeg" | "jpg" if (1..=100).contains(&quality) => Ok(Encoding::Jpeg(quality)),
            "jpeg" | "jpg" => Err(Error::invalid(format!(
                "JPEG quality must be 1 to 100, got {quality}"
            ))),
            "webp" => Ok(Encoding::WebP),
            _ => Err(Error::invalid(format!(
                "cannot encode as {format:?}; use png, jpeg or webp"
            ))),
        }
    }
}

pub fn encode_image(img: &RgbImage, encoding: Encoding) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    let (w, h, px, t) = (
        img.width,
        img.height,
        img.pixels.as_slice(),
        image::ExtendedColorType::Rgb8,
    );
    let r = match encoding {
        Encoding::Png => PngEncoder::new(&mut out).write_image(px, w, h, t),
        Encoding::Jpeg(q) => JpegEncoder::new_with_quality(&mut out, q).write_image(px, w, h, t),
        Encoding::WebP => WebPEncoder::new_lossless(&mut out).write_image(px, w, h, t),
    };
    r.map_err(|e| Error::image(format!("{encoding:?}"), format!("cannot encode: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecodeLimits, Pattern, decode_image, synth_image};

    #[test]
    fn lossless_encodings_keep_the_pixels() {
        let img = synth_image(40, 30, Pattern::Gradient, 1).unwrap();
        for e in [Encoding::Png, Encoding::WebP] {
            let bytes = encode_image(&img, e).unwrap();
            assert_eq!(
                decode_image("t", &bytes, DecodeLimits::default()).unwrap(),
                img,
                "{e:?}"
            );
        }
        let jpeg = encode_image(&img, Encoding::Jpeg(90)).unwrap();
        let back = decode_image("t", &jpeg, DecodeLimits::default()).unwrap();
        assert_eq!((back.width, back.height), (40, 30));
    }

    #[test]
    fn jpeg_quality_outside_1_to_100_is_refused() {
        for q in [0u8, 101, 255] {
            let err = Encoding::parse("jpeg", q).unwrap_err().to_string();
            assert!(err.contains(&format!("got {q}")), "{err}");
        }
        assert_eq!(Encoding::parse("jpg", 1).unwrap(), Encoding::Jpeg(1));
        assert_eq!(Encoding::parse("jpeg", 100).unwrap(), Encoding::Jpeg(100));
        // Only JPEG reads the quality.
        assert_eq!(Encoding::parse("png", 0).unwrap(), Encoding::Png);
    }
}
