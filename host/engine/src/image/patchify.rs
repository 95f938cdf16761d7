//! From a decoded image to the model's `pixel_values` and `grid_thw`
//! (spec §4.3–4.6).

use super::{RgbImage, resize_bicubic, smart_resize};
use crate::config::PreprocessorConfig;
use crate::error::Result;

/// One image ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    /// `(t·h·w, C·Tp·P·P)` row-major f32, rows in merge-window order.
    pub pixel_values: Vec<f32>,
    /// `(t, h, w)` in patches.
    pub grid_thw: [usize; 3],
    /// Size after `smart_resize`, `(width, height)`.
    pub resized: (u32, u32),
}

impl PreparedImage {
    /// Number of `<|image_pad|>` tokens (one per merge window).
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        self.grid_thw.iter().product::<usize>() / (merge_size * merge_size)
    }

    pub fn row_len(&self) -> usize {
        self.pixel_values.len() / self.grid_thw.iter().product::<usize>()
    }
}

/// Resizes, normalises and cuts `img` into patches.
pub fn prepare_image(img: &RgbImage, cfg: &PreprocessorConfig) -> Result<PreparedImage> {
    let factor = cfg.factor() as u32;
    let (h_bar, w_bar) = smart_resize(
        img.height,
        img.width,
        factor,
        cfg.min_pixels,
        cfg.max_pixels,
    )?;
    let resized = if (w_bar, h_bar) == (img.width, img.height) {
        img.clone()
    } else {
        resize_bicubic(img, w_bar, h_bar)
    };
    let (p, tp, m) = (cfg.patch_size, cfg.temporal_patch_size, cfg.merge_size);
    let (gh, gw) = (h_bar as usize / p, w_bar as usize / p);
    let row_len = 3 * tp * p * p;
    // transformers' fast processor fuses rescale and normalise:
    // (u8 − mean·(1/rescale)) / (std·(1/rescale)), in f32 (127.5 for Qwen).
    let inv_rescale = (1.0 / cfg.rescale_factor) as f32;
    let lut: Vec<[f32; 3]> = (0..256)
        .map(|u| {
            std::array::from_fn(|c| {
                (u as f32 - cfg.image_mean[c] * inv_rescale) / (cfg.image_std[c] * inv_rescale)
            })
        })
        .collect();
    let w = w_bar as usize;
    let mut out = vec![0f32; gh * gw * row_len];
    let mut r = 0;
    for bi in 0..gh / m {
        for bj in 0..gw / m {
            for ii in 0..m {
                for jj in 0..m {
                    let (py, px) = (bi * m + ii, bj * m + jj);
                    let row = &mut out[r * row_len..(r + 1) * row_len];
                    for dy in 0..p {
                        let y = py * p + dy;
                        for dx in 0..p {
                            let x = px * p + dx;
                            let pix = &resized.pixels[(y * w + x) * 3..(y * w + x) * 3 + 3];
                            for c in 0..3 {
                                let v = lut[pix[c] as usize][c];
                                // A still image is repeated over the Tp frames.
                                for tau in 0..tp {
                                    row[c * tp * p * p + tau * p * p + dy * p + dx] = v;
                                }
                            }
                        }
                    }
                    r += 1;
                }
            }
        }
    }
    Ok(PreparedImage {
        pixel_values: out,
        grid_thw: [1, gh, gw],
        resized: (w_bar, h_bar),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_patch_order_follow_the_merge_windows() {
        // 64x32 image: no resize needed? 64*32 < min_pixels, so use a config
        // with small bounds to keep the size.
        let cfg = PreprocessorConfig {
            min_pixels: 1,
            ..PreprocessorConfig::default()
        };
        let (w, h) = (64u32, 32u32);
        // Encode the patch coordinates into the pixels: R = patch col, G = patch row.
        let mut px = vec![0u8; (w * h * 3) as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                px[(y * w as usize + x) * 3] = (x / 16) as u8 * 10;
                px[(y * w as usize + x) * 3 + 1] = (y / 16) as u8 * 10;
            }
        }
        let prep = prepare_image(&RgbImage::new(w, h, px), &cfg).unwrap();
        assert_eq!(prep.grid_thw, [1, 2, 4]);
        assert_eq!(prep.num_tokens(2), 2);
        assert_eq!(prep.row_len(), 1536);
        let decode = |v: f32| ((v + 1.0) * 127.5).round() as usize / 10;
        // Rows: window (0,0): patches (0,0) (0,1) (1,0) (1,1); window (0,1): (0,2) (0,3) (1,2) (1,3).
        let expect = [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (0, 2),
            (0, 3),
            (1, 2),
            (1, 3),
        ];
        for (r, (py, pxx)) in expect.iter().enumerate() {
            let row = &prep.pixel_values[r * 1536..(r + 1) * 1536];
            assert_eq!(decode(row[0]), *pxx, "row {r} col");
            assert_eq!(decode(row[512]), *py, "row {r} row");
            // both temporal copies equal
            assert_eq!(row[0], row[256]);
        }
    }

    #[test]
    fn normalisation_maps_0_and_255_to_minus_one_and_one() {
        let cfg = PreprocessorConfig::default();
        let img = RgbImage::new(256, 256, [0u8, 255, 128].repeat(256 * 256));
        let prep = prepare_image(&img, &cfg).unwrap();
        assert_eq!(prep.pixel_values[0], -1.0);
        assert_eq!(prep.pixel_values[512], 1.0);
        assert!((prep.pixel_values[1024] - 0.5 / 127.5).abs() < 1e-7);
    }
}
