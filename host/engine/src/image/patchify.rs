//! From a decoded image to the model's `pixel_values` and `grid_thw`
//! (`docs/qwen3-vl.md` §4.3–4.6).

use std::borrow::Cow;

use mlx::{Array, Dtype};

use super::{Resampler, RgbImage, resize_bicubic, resize_bicubic_into, smart_resize};
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

/// `(height, width)` that `smart_resize` gives `img` for the model.
pub fn model_size(img: &RgbImage, cfg: &PreprocessorConfig) -> Result<(u32, u32)> {
    Ok(smart_resize(
        img.height,
        img.width,
        cfg.factor() as u32,
        cfg.min_pixels,
        cfg.max_pixels,
    )?)
}

/// `img` at the size `smart_resize` gives (borrowed when it already has it).
pub fn resize_for_model<'a>(
    img: &'a RgbImage,
    cfg: &PreprocessorConfig,
) -> Result<Cow<'a, RgbImage>> {
    let (h_bar, w_bar) = model_size(img, cfg)?;
    Ok(if (w_bar, h_bar) == (img.width, img.height) {
        Cow::Borrowed(img)
    } else {
        Cow::Owned(resize_bicubic(img, w_bar, h_bar))
    })
}

/// `img` resized for the model ([`resize_for_model`]) as an 8-bit `(h, w, 3)`
/// array, resized straight into a [`mlx::Staging`] buffer: under CUDA the GPU
/// reads it in place, with no copy into managed memory (3-6 ms for 1920x1080).
pub fn stage_for_model(img: &RgbImage, cfg: &PreprocessorConfig) -> Result<Array> {
    let (h, w) = model_size(img, cfg)?;
    let mut staging = mlx::Staging::new(w as usize * h as usize * 3)?;
    resize_bicubic_into(img, w, h, Resampler::Torch, staging.bytes_mut());
    Ok(staging.into_array(&[h as i32, w as i32, 3], Dtype::U8)?)
}

/// The same `pixel_values` as [`prepare_image`] from the model-sized 8-bit
/// image ([`stage_for_model`]), computed by MLX on the default device: a 6 MB
/// upload instead of 50 MB of floats for 1920x1080, and the normalising and
/// reordering off the CPU. Returns the `(rows, C·Tp·P·P)` array and the grid.
pub fn patch_array(u8s: &Array, cfg: &PreprocessorConfig) -> Result<(Array, [usize; 3])> {
    let (p, tp, m) = (
        cfg.patch_size as i32,
        cfg.temporal_patch_size as i32,
        cfg.merge_size as i32,
    );
    let (h, w) = (u8s.dim(0), u8s.dim(1));
    let (gh, gw) = (h / p, w / p);
    let inv_rescale = (1.0 / cfg.rescale_factor) as f32;
    let mean: Vec<f32> = cfg.image_mean.iter().map(|v| v * inv_rescale).collect();
    let std: Vec<f32> = cfg.image_std.iter().map(|v| v * inv_rescale).collect();
    let norm = u8s
        .astype(Dtype::F32)?
        .sub(&Array::from_f32(&mean, &[3])?)?
        .div(&Array::from_f32(&std, &[3])?)?;
    // (bi, ii, dy, bj, jj, dx, c) -> (bi, bj, ii, jj, c, dy, dx), then the frame repeated Tp times.
    let patches = norm
        .reshape(&[gh / m, m, p, gw / m, m, p, 3])?
        .transpose(&[0, 3, 1, 4, 6, 2, 5])?
        .expand_dims(5)?
        .broadcast_to(&[gh / m, gw / m, m, m, 3, tp, p, p])?
        .reshape(&[gh * gw, 3 * tp * p * p])?;
    Ok((patches, [1, gh as usize, gw as usize]))
}

/// Resizes, normalises and cuts `img` into patches, on the CPU.
pub fn prepare_image(img: &RgbImage, cfg: &PreprocessorConfig) -> Result<PreparedImage> {
    let resized = resize_for_model(img, cfg)?;
    let (w_bar, h_bar) = (resized.width, resized.height);
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
    fn device_patches_equal_cpu_patches() {
        let cfg = PreprocessorConfig::default();
        for (w, h) in [(300u32, 200u32), (256, 256), (1000, 40)] {
            let img = crate::image::synth_image(w, h, crate::image::Pattern::Noise, 3).unwrap();
            let cpu = prepare_image(&img, &cfg).unwrap();
            let (dev, grid) = patch_array(&stage_for_model(&img, &cfg).unwrap(), &cfg).unwrap();
            assert_eq!(grid, cpu.grid_thw);
            assert_eq!(
                dev.shape(),
                vec![
                    (cpu.pixel_values.len() / cpu.row_len()) as i32,
                    cpu.row_len() as i32
                ]
            );
            assert_eq!(dev.to_vec::<f32>().unwrap(), cpu.pixel_values, "{w}x{h}");
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
