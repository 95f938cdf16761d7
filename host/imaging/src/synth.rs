//! Deterministic test images: the same (size, pattern, seed) gives the same
//! pixels on every machine (a fixed integer PRNG, no floating point).

use crate::{Error, Result, RgbImage};

/// Test picture patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Colour gradients plus noise (like a photo: every patch differs).
    Gradient,
    /// Uniform random pixels.
    Noise,
    /// 32-pixel checkerboard in two seeded colours.
    Checker,
    /// One seeded colour.
    Solid,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern> {
        match s {
            "gradient" => Ok(Pattern::Gradient),
            "noise" => Ok(Pattern::Noise),
            "checker" | "checkerboard" => Ok(Pattern::Checker),
            "solid" => Ok(Pattern::Solid),
            _ => Err(Error::invalid(format!(
                "unknown image pattern {s:?}; use gradient, noise, checker or solid"
            ))),
        }
    }

    pub const NAMES: [&'static str; 4] = ["gradient", "noise", "checker", "solid"];
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Largest side accepted for synthesized images.
pub const MAX_SIDE: u32 = 8192;

pub fn synth_image(width: u32, height: u32, pattern: Pattern, seed: u64) -> Result<RgbImage> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::invalid(format!(
            "image size {width}x{height} must be between 1 and {MAX_SIDE} per side"
        )));
    }
    let mut rng = Rng(seed ^ 0x005E_ED0F_1A6E);
    let (w, h) = (width as usize, height as usize);
    let mut px = vec![0u8; w * h * 3];
    let colour = |rng: &mut Rng| -> [u8; 3] {
        let v = rng.next();
        [v as u8, (v >> 8) as u8, (v >> 16) as u8]
    };
    match pattern {
        Pattern::Noise => {
            for chunk in px.chunks_mut(8) {
                let v = rng.next().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
        Pattern::Solid => {
            let c = colour(&mut rng);
            for p in px.chunks_mut(3) {
                p.copy_from_slice(&c);
            }
        }
        Pattern::Checker => {
            let (a, b) = (colour(&mut rng), colour(&mut rng));
            for y in 0..h {
                for x in 0..w {
                    let c = if ((x / 32) + (y / 32)) % 2 == 0 { a } else { b };
                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
                }
            }
        }
        Pattern::Gradient => {
            let phase = (rng.next() % 256) as usize;
            for y in 0..h {
                for x in 0..w {
                    let noise = rng.next();
                    let base = [
                        x * 255 / w,
                        y * 255 / h,
                        ((x + y) * 127 / (w + h) + phase) % 256,
                    ];
                    for c in 0..3 {
                        let n = ((noise >> (c * 8)) & 0x3F) as i32 - 32; // ±32 levels
                        px[(y * w + x) * 3 + c] = (base[c] as i32 + n).clamp(0, 255) as u8;
                    }
                }
            }
        }
    }
    Ok(RgbImage::new(width, height, px))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_pixels_and_seeds_differ() {
        for p in Pattern::NAMES {
            let p = Pattern::parse(p).unwrap();
            let a = synth_image(37, 21, p, 7).unwrap();
            assert_eq!(a, synth_image(37, 21, p, 7).unwrap());
            assert_ne!(
                a.content_hash(),
                synth_image(37, 21, p, 8).unwrap().content_hash()
            );
        }
        assert!(synth_image(0, 5, Pattern::Noise, 0).is_err());
        assert!(Pattern::parse("plaid").is_err());
    }
}
