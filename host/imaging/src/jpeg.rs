//! JPEG through libjpeg-turbo, as Pillow reads it: the same library (built
//! from the source `turbojpeg-sys` bundles), its default settings (the
//! accurate integer IDCT, fancy upsampling of subsampled chroma), and
//! Pillow's conversions of grayscale and CMYK to RGB.

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};

use crate::decode::DecodeLimits;
use crate::{Error, Result, RgbImage};

/// Scans a progressive JPEG may have, at most: a hostile file could
/// otherwise make the decoder run thousands of passes over the image
/// (libjpeg-turbo's own tools use the same bound).
const MAX_SCANS: u32 = 500;

/// Decodes a JPEG to RGB without its EXIF orientation applied. The caller
/// has checked the declared size against `limits.max_pixels`; the bytes the
/// decoder's own header asks for are checked against `limits.max_alloc`.
pub fn decode_jpeg(name: &str, bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage> {
    let fail = |what: &str, e: turbojpeg::Error| Error::image(name, format!("{what}: {e}"));
    let mut d = Decompressor::new().map_err(|e| fail("cannot start the JPEG decoder", e))?;
    let header = d
        .read_header(bytes)
        .map_err(|e| fail("not a readable JPEG", e))?;
    let (w, h) = (header.width, header.height);
    let pixels = w as u64 * h as u64;
    d.set_scan_limit(MAX_SCANS)
        .map_err(|e| fail("cannot limit the decoder", e))?;
    let format = match header.colorspace {
        Colorspace::Gray => PixelFormat::GRAY,
        Colorspace::CMYK | Colorspace::YCCK => PixelFormat::CMYK,
        _ => PixelFormat::RGB,
    };
    let channels = format.size();
    let bytes_needed = pixels * channels as u64;
    if bytes_needed > limits.max_alloc {
        return Err(Error::image(
            name,
            format!(
                "would take {bytes_needed} bytes to decode, more than the limit of {}",
                limits.max_alloc
            ),
        ));
    }
    let mut out = Image {
        pixels: vec![0u8; bytes_needed as usize],
        width: w,
        pitch: w * channels,
        height: h,
        format,
    };
    d.decompress(bytes, out.as_deref_mut())
        .map_err(|e| fail("cannot decode", e))?;
    let rgb = match format {
        PixelFormat::GRAY => out.pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        PixelFormat::CMYK => out.pixels.chunks_exact(4).flat_map(cmyk_to_rgb).collect(),
        _ => out.pixels,
    };
    Ok(RgbImage::new(w as u32, h as u32, rgb))
}

/// One pixel of a CMYK JPEG as Pillow converts it: the stored values read
/// inverted (Adobe's convention, which Pillow assumes for every CMYK JPEG),
/// then `convert("RGB")`'s `cmyk2rgb`.
fn cmyk_to_rgb(px: &[u8]) -> [u8; 3] {
    let [c, m, y, k] = [255 - px[0], 255 - px[1], 255 - px[2], 255 - px[3]];
    let nk = 255 - k as i32;
    // Pillow's MULDIV255: a * b / 255, rounded, in integers.
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let channel = |v: u8| (nk - muldiv255(v as i32, nk)).clamp(0, 255) as u8;
    [channel(c), channel(m), channel(y)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_converts_as_pillow_does() {
        // Stored inverted: 255 is no ink.
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[0, 255, 255, 255]), [0, 255, 255]);
        // Half cyan on half black: 128 - 127 * 128 / 255 for red, 128 for the rest.
        assert_eq!(cmyk_to_rgb(&[128, 255, 255, 128]), [64, 128, 128]);
    }
}
