//! `smart_resize` (Python semantics, `docs/qwen3-vl.md` §4.2) and antialiased bicubic
//! resampling in the two flavours transformers uses: PyTorch/torchvision's
//! uint8 kernel (the default "fast" processor) and Pillow's (the slow one).
//! Both are separable (horizontal pass first, uint8 between passes) with the
//! Keys kernel (a = −0.5) widened by the downscale factor; they differ in how
//! the weights are rounded to integers: Pillow uses 22 fractional bits, PyTorch
//! int16 weights with as many bits as the largest weight allows.

use rayon::prelude::*;

use crate::{Error, Result, RgbImage};

/// Target `(height, width)`: multiples of `factor` with the pixel count
/// between `min_pixels` and `max_pixels`, aspect ratio kept.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32)> {
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if height == 0 || width == 0 {
        return Err(Error::invalid(format!(
            "image of {width}x{height} has no pixels"
        )));
    }
    if h.max(w) / h.min(w) > 200.0 {
        return Err(Error::invalid(format!(
            "image of {width}x{height} has an aspect ratio over 200, which Qwen3-VL does not accept"
        )));
    }
    // Python's round() is round-half-to-even: 720/32 = 22.5 → 22.
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// Which implementation's rounding to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampler {
    /// PyTorch's `interpolate(uint8, bicubic, antialias=True)`, used by
    /// torchvision and so by transformers' default (fast) image processor.
    Torch,
    /// Pillow's `Image.resize(BICUBIC)` (transformers' slow processor).
    Pillow,
}

const PILLOW_BITS: u32 = 32 - 8 - 2;

fn keys_pillow(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn keys_torch(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Integer taps for one output pixel: the first input index and the weights.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// The taps of every output pixel and the number of fractional bits of the weights.
fn coefficients(in_size: usize, out_size: usize, flavour: Resampler) -> (Vec<Taps>, u32) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let max_taps = (support.ceil() as usize) * 2 + 1;
    let filter = match flavour {
        Resampler::Pillow => keys_pillow,
        Resampler::Torch => keys_torch,
    };
    let mut float_taps = Vec::with_capacity(out_size);
    let mut w_max = 0.0f64;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(max_taps);
        let mut k: Vec<f64> = (0..n)
            .map(|x| filter((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            for w in &mut k {
                *w /= ww;
                w_max = w_max.max(*w);
            }
        }
        float_taps.push((xmin, k));
    }
    let bits = match flavour {
        Resampler::Pillow => PILLOW_BITS,
        // As many bits as keep the largest weight (times two) within int16.
        Resampler::Torch => {
            let mut p = 0;
            while p < 22 && ((0.5 + w_max * (1u64 << (p + 1)) as f64) as i64) < (1 << 15) {
                p += 1;
            }
            p
        }
    };
    let one = (1u64 << bits) as f64;
    let taps = float_taps
        .into_iter()
        .map(|(start, k)| Taps {
            start,
            weights: k
                .iter()
                .map(|&w| {
                    if w < 0.0 {
                        (w * one - 0.5) as i32
                    } else {
                        (w * one + 0.5) as i32
                    }
                })
                .collect(),
        })
        .collect();
    (taps, bits)
}

/// Both implementations accumulate in 32-bit integers (Pillow's `INT32`,
/// PyTorch's `_mm_madd_epi16` sums); the weights' fixed point keeps any sum
/// of 8-bit pixels within range, and i32 lets the loops vectorise.
fn clip8(v: i32, bits: u32) -> u8 {
    (v >> bits).clamp(0, 255) as u8
}

/// Runs `f(first_row, rows)` over `out` split into row bands, one per thread
/// of rayon's pool (threads already running, not spawned per pass).
fn parallel_rows(out: &mut [u8], row_bytes: usize, f: impl Fn(usize, &mut [u8]) + Sync) {
    let rows = out.len() / row_bytes.max(1);
    let threads = rayon::current_num_threads().min(rows.max(1));
    if threads <= 1 || out.len() < (1 << 16) {
        f(0, out);
        return;
    }
    let band = rows.div_ceil(threads);
    out.par_chunks_mut(band * row_bytes)
        .enumerate()
        .for_each(|(i, chunk)| f(i * band, chunk));
}

/// Resamples the rows of `src` (`w` pixels wide) to `out_w` pixels into `out`.
fn horizontal(src: &[u8], w: usize, out_w: usize, flavour: Resampler, out: &mut [u8]) {
    let (taps, bits) = coefficients(w, out_w, flavour);
    parallel_rows(out, out_w * 3, |y0, band| {
        for (dy, orow) in band.chunks_mut(out_w * 3).enumerate() {
            let y = y0 + dy;
            let row = &src[y * w * 3..(y + 1) * w * 3];
            for (xx, t) in taps.iter().enumerate() {
                let mut ss = [1i32 << (bits - 1); 3];
                let span = &row[t.start * 3..(t.start + t.weights.len()) * 3];
                for (px, &k) in span.chunks_exact(3).zip(&t.weights) {
                    for c in 0..3 {
                        ss[c] += px[c] as i32 * k;
                    }
                }
                for c in 0..3 {
                    orow[xx * 3 + c] = clip8(ss[c], bits);
                }
            }
        }
    });
}

/// Whether every partial sum of a pass stays below 2^24 in magnitude, the
/// integers f32 holds exactly: the pass may then multiply in f32, which x86-64's
/// baseline vectorises natively (it has no 32-bit integer multiply), with the
/// integer result. True for upscales and mild downscales (PyTorch's weights
/// have ~14 fractional bits there); at most 15 bits keeps a clamped sum below
/// 2^23 for the conversion back.
fn exact_in_f32(taps: &[Taps], bits: u32) -> bool {
    taps.iter().all(|t| {
        let spread: i64 = t.weights.iter().map(|&k| i64::from(k).abs()).sum();
        (1i64 << (bits - 1)) + 255 * spread < 1 << 24
    }) && bits <= 15
}

/// Resamples the columns of `src` (`w` × `h` pixels) to `out_h` rows into `out`.
fn vertical(src: &[u8], w: usize, h: usize, out_h: usize, flavour: Resampler, out: &mut [u8]) {
    let (taps, bits) = coefficients(h, out_h, flavour);
    if exact_in_f32(&taps, bits) {
        vertical_f32(src, w, &taps, bits, out);
    } else {
        vertical_i32(src, w, &taps, bits, out);
    }
}

fn vertical_i32(src: &[u8], w: usize, taps: &[Taps], bits: u32, out: &mut [u8]) {
    parallel_rows(out, w * 3, |y0, band| {
        let mut acc = vec![0i32; w * 3];
        for (dy, orow) in band.chunks_mut(w * 3).enumerate() {
            let t = &taps[y0 + dy];
            acc.fill(1 << (bits - 1));
            for (i, &k) in t.weights.iter().enumerate() {
                let row = &src[(t.start + i) * w * 3..(t.start + i + 1) * w * 3];
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a += p as i32 * k;
                }
            }
            for (o, &a) in orow.iter_mut().zip(&acc) {
                *o = clip8(a, bits);
            }
        }
    });
}

/// [`vertical_i32`]'s result computed in f32, for taps that pass
/// [`exact_in_f32`].
fn vertical_f32(src: &[u8], w: usize, taps: &[Taps], bits: u32, out: &mut [u8]) {
    let top = ((256i32 << bits) - 1) as f32;
    parallel_rows(out, w * 3, |y0, band| {
        let mut acc = vec![0f32; w * 3];
        for (dy, orow) in band.chunks_mut(w * 3).enumerate() {
            let t = &taps[y0 + dy];
            acc.fill((1i32 << (bits - 1)) as f32);
            for (i, &k) in t.weights.iter().enumerate() {
                let row = &src[(t.start + i) * w * 3..(t.start + i + 1) * w * 3];
                let k = k as f32;
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a += f32::from(p) * k;
                }
            }
            // clip8 without a float-to-int cast (scalar on x86-64): the
            // clamped sum is an integer in [0, 2^23), and adding 2^23 leaves
            // it in the low mantissa bits.
            for (o, &a) in orow.iter_mut().zip(&acc) {
                let v = a.clamp(0.0, top) + 8_388_608.0;
                *o = ((v.to_bits() - 0x4B00_0000) >> bits) as u8;
            }
        }
    });
}

/// Resizes `src` to `out_w × out_h` into `out` (`out_w · out_h · 3` bytes, RGB
/// rows); a pass whose size does not change is skipped (an identity in both
/// implementations). Writing into the caller's memory lets the image land
/// straight in the buffer the GPU reads.
pub fn resize_bicubic_into(
    src: &RgbImage,
    out_w: u32,
    out_h: u32,
    flavour: Resampler,
    out: &mut [u8],
) {
    let (w, h) = (src.width as usize, src.height as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    assert_eq!(out.len(), ow * oh * 3, "resize_bicubic_into: output size");
    match (ow != w, oh != h) {
        (false, false) => parallel_rows(out, w * 3, |y0, band| {
            band.copy_from_slice(&src.pixels[y0 * w * 3..][..band.len()]);
        }),
        (true, false) => horizontal(&src.pixels, w, ow, flavour, out),
        (false, true) => vertical(&src.pixels, w, h, oh, flavour, out),
        (true, true) => {
            let mut rows = vec![0u8; ow * h * 3];
            horizontal(&src.pixels, w, ow, flavour, &mut rows);
            vertical(&rows, ow, h, oh, flavour, out);
        }
    }
}

/// Resizes to `out_w × out_h` into a new image ([`resize_bicubic_into`]).
pub fn resize_bicubic_with(src: &RgbImage, out_w: u32, out_h: u32, flavour: Resampler) -> RgbImage {
    let mut out = vec![0u8; out_w as usize * out_h as usize * 3];
    resize_bicubic_into(src, out_w, out_h, flavour, &mut out);
    RgbImage::new(out_w, out_h, out)
}

/// Resizes the way transformers' default processor does (PyTorch's kernel).
pub fn resize_bicubic(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    resize_bicubic_with(src, out_w, out_h, Resampler::Torch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_the_processor_table() {
        // `docs/qwen3-vl.md` §4.8: input W×H → resized W×H
        let cases = [
            ((224, 224), (256, 256)),
            ((336, 336), (320, 320)),
            ((448, 448), (448, 448)),
            ((512, 512), (512, 512)),
            ((672, 672), (672, 672)),
            ((768, 768), (768, 768)),
            ((896, 896), (896, 896)),
            ((1024, 1024), (1024, 1024)),
            ((1280, 720), (1280, 704)),
            ((1920, 1080), (1920, 1088)),
            ((200, 300), (224, 320)),
            ((640, 360), (640, 352)),
            ((96, 96), (256, 256)),
        ];
        for ((w, h), (ew, eh)) in cases {
            let (rh, rw) = smart_resize(h, w, 32, 65_536, 16_777_216).unwrap();
            assert_eq!((rw, rh), (ew, eh), "input {w}x{h}");
        }
    }

    #[test]
    fn smart_resize_caps_huge_images_and_rejects_extreme_ratios() {
        let (h, w) = smart_resize(8000, 8000, 32, 65_536, 16_777_216).unwrap();
        assert!(h as u64 * w as u64 <= 16_777_216 && h % 32 == 0 && w % 32 == 0);
        assert!(smart_resize(1, 300, 32, 65_536, 16_777_216).is_err());
        assert!(smart_resize(0, 30, 32, 65_536, 16_777_216).is_err());
    }

    #[test]
    fn same_size_is_identity_and_constant_stays_constant() {
        let img = RgbImage::new(5, 4, (0..60).map(|i| (i * 7 % 256) as u8).collect());
        assert_eq!(resize_bicubic(&img, 5, 4), img);
        let flat = RgbImage::new(7, 3, vec![200; 63]);
        let up = resize_bicubic(&flat, 20, 9);
        assert!(up.pixels.iter().all(|&p| p == 200));
        let down = resize_bicubic(&up, 3, 2);
        assert!(down.pixels.iter().all(|&p| p == 200));
    }

    #[test]
    fn the_f32_vertical_pass_gives_the_integer_result() {
        let noise = crate::synth_image(64, 1080, crate::Pattern::Noise, 5).unwrap();
        let (w, h) = (64usize, 1080usize);
        // Upscales and a mild downscale qualify; a 4x downscale does not.
        for out_h in [1088usize, 2160, 1024, 736] {
            let (taps, bits) = coefficients(h, out_h, Resampler::Torch);
            assert!(exact_in_f32(&taps, bits), "{h} -> {out_h}");
            let mut a = vec![0u8; w * out_h * 3];
            let mut b = vec![0u8; w * out_h * 3];
            vertical_i32(&noise.pixels, w, &taps, bits, &mut a);
            vertical_f32(&noise.pixels, w, &taps, bits, &mut b);
            assert_eq!(a, b, "{h} -> {out_h}");
        }
        let (taps, bits) = coefficients(h, 270, Resampler::Torch);
        assert!(!exact_in_f32(&taps, bits));
        let (taps, bits) = coefficients(h, 1088, Resampler::Pillow);
        assert!(!exact_in_f32(&taps, bits), "Pillow's 22 bits");
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for flavour in [Resampler::Torch, Resampler::Pillow] {
            for (i, o) in [
                (10, 3),
                (3, 10),
                (224, 256),
                (1080, 1088),
                (1000, 33),
                (4096, 7),
            ] {
                let (taps, bits) = coefficients(i, o, flavour);
                assert!(bits >= 12, "{bits} bits");
                for t in taps {
                    let sum: i64 = t.weights.iter().map(|&w| w as i64).sum();
                    assert!(
                        (sum - (1 << bits)).abs() <= t.weights.len() as i64,
                        "{i}->{o}"
                    );
                    assert!(
                        flavour == Resampler::Pillow
                            || t.weights.iter().all(|&w| w.abs() < 1 << 15)
                    );
                    // The passes accumulate in i32: the worst sum of 8-bit pixels fits.
                    let worst: i64 = t.weights.iter().map(|&w| 255 * (w as i64).abs()).sum();
                    assert!(worst + (1 << (bits - 1)) <= i32::MAX as i64, "{i}->{o}");
                }
            }
        }
    }
}
