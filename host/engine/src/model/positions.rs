//! 3-D position ids (`get_rope_index`, `docs/qwen3-vl.md` §3.4) and the rotary tables of
//! the text decoder (interleaved MRoPE, §3.3) and the vision tower (§2.4),
//! and the rotate-half rotation both apply with them.

use mlx::Array;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// `(t, h, w)` positions of every token of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub t: Vec<i32>,
    pub h: Vec<i32>,
    pub w: Vec<i32>,
}

impl Positions {
    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// The position the first generated token gets in all three streams.
    pub fn next_position(&self) -> i32 {
        let max = self.t.iter().chain(&self.h).chain(&self.w).copied().max();
        max.map_or(0, |m| m + 1)
    }

    /// `max position + 1 − length` (HF's `rope_deltas`).
    pub fn rope_delta(&self) -> i32 {
        self.next_position() - self.len() as i32
    }

    pub fn slice(&self, start: usize, end: usize) -> Positions {
        Positions {
            t: self.t[start..end].to_vec(),
            h: self.h[start..end].to_vec(),
            w: self.w[start..end].to_vec(),
        }
    }

    /// True when every token has the same position in all three streams,
    /// laid out consecutively from `start` (then plain RoPE applies).
    pub fn is_plain_from(&self) -> Option<i32> {
        let start = *self.t.first()?;
        let plain = (0..self.len()).all(|i| {
            let p = start + i as i32;
            self.t[i] == p && self.h[i] == p && self.w[i] == p
        });
        plain.then_some(start)
    }
}

/// Positions for `ids`, where each run of `image_token` belongs to the next
/// image grid `(t, h, w)` (in patches) and covers `t·h·w / merge²` tokens.
pub fn rope_positions(
    ids: &[u32],
    image_token: u32,
    grids: &[[usize; 3]],
    merge: usize,
) -> Result<Positions> {
    let n = ids.len();
    let mut pos = Positions {
        t: Vec::with_capacity(n),
        h: Vec::with_capacity(n),
        w: Vec::with_capacity(n),
    };
    let mut cur: i32 = 0;
    let mut i = 0;
    let mut grid_iter = grids.iter();
    while i < n {
        if ids[i] != image_token {
            pos.t.push(cur);
            pos.h.push(cur);
            pos.w.push(cur);
            cur += 1;
            i += 1;
            continue;
        }
        let [t, h, w] = *grid_iter
            .next()
            .ok_or_else(|| Error::request("the prompt has more image placeholders than images"))?;
        let (hm, wm) = (h / merge, w / merge);
        let count = t * hm * wm;
        if i + count > n || ids[i..i + count].iter().any(|&x| x != image_token) {
            return Err(Error::request(format!(
                "an image of grid {t}x{h}x{w} needs {count} consecutive placeholder tokens"
            )));
        }
        for tt in 0..t {
            for r in 0..hm {
                for c in 0..wm {
                    pos.t.push(cur + tt as i32);
                    pos.h.push(cur + r as i32);
                    pos.w.push(cur + c as i32);
                }
            }
        }
        cur += hm.max(wm).max(t) as i32;
        i += count;
    }
    if grid_iter.next().is_some() {
        return Err(Error::request(
            "there are more images than placeholders in the prompt",
        ));
    }
    Ok(pos)
}

/// `1 / θ^(2j/dim)` for `j < dim/2`, in f32 as transformers computes it.
pub fn inv_freq(theta: f32, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|j| 1.0 / theta.powf((2 * j) as f32 / dim as f32))
        .collect()
}

/// Which stream (0 = T, 1 = H, 2 = W) each frequency slot reads (`docs/qwen3-vl.md` §3.3).
pub fn mrope_streams(half_dim: usize, section: [usize; 3]) -> Vec<u8> {
    (0..half_dim)
        .map(|j| {
            if j % 3 == 1 && j < 3 * section[1] {
                1
            } else if j % 3 == 2 && j < 3 * section[2] {
                2
            } else {
                0
            }
        })
        .collect()
}

/// `(cos, sin)` tables of shape `(L, head_dim)` (row-major, f32) for the
/// text decoder: angle `p_stream(j)·inv_freq[j]`, duplicated over both halves.
pub fn mrope_tables(
    pos: &Positions,
    theta: f32,
    head_dim: usize,
    section: [usize; 3],
) -> (Vec<f32>, Vec<f32>) {
    let inv = inv_freq(theta, head_dim);
    let streams = mrope_streams(head_dim / 2, section);
    let half = head_dim / 2;
    let mut cos = vec![0f32; pos.len() * head_dim];
    let mut sin = vec![0f32; pos.len() * head_dim];
    // ~130k sin/cos pairs at 1920x1080, in the request's critical path: rows
    // in parallel.
    cos.par_chunks_mut(head_dim)
        .zip(sin.par_chunks_mut(head_dim))
        .enumerate()
        .for_each(|(i, (cos, sin))| {
            let p = [pos.t[i] as f32, pos.h[i] as f32, pos.w[i] as f32];
            for j in 0..half {
                let a = p[streams[j] as usize] * inv[j];
                let (s, c) = a.sin_cos();
                cos[j] = c;
                cos[half + j] = c;
                sin[j] = s;
                sin[half + j] = s;
            }
        });
    (cos, sin)
}

/// `(cos, sin)` tables `(t·h·w, head_dim)` for one image in the vision tower:
/// `[row·inv, col·inv, row·inv, col·inv]` with rows in merge-window order.
pub fn vision_rope_tables(grid: [usize; 3], merge: usize, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
    let [t, h, w] = grid;
    let inv = inv_freq(10_000.0, head_dim / 2);
    let q = inv.len(); // head_dim / 4
    // An angle is a row or column index times a frequency: one sin/cos per
    // (index, frequency) pair instead of per table entry (~590k at 1920x1080).
    let trig = |count: usize| -> Vec<(f32, f32)> {
        (0..count)
            .flat_map(|i| inv.iter().map(move |f| (i as f32 * f).sin_cos()))
            .collect()
    };
    let (rows, cols) = (trig(h), trig(w));
    let n = t * h * w;
    let mut cos = Vec::with_capacity(n * head_dim);
    let mut sin = Vec::with_capacity(n * head_dim);
    for _ in 0..t {
        for bi in 0..h / merge {
            for bj in 0..w / merge {
                for ii in 0..merge {
                    for jj in 0..merge {
                        let (row, col) = (bi * merge + ii, bj * merge + jj);
                        let r = &rows[row * q..(row + 1) * q];
                        let c = &cols[col * q..(col + 1) * q];
                        for _ in 0..2 {
                            for &(s, co) in r.iter().chain(c) {
                                cos.push(co);
                                sin.push(s);
                            }
                        }
                    }
                }
            }
        }
    }
    debug_assert_eq!(cos.len(), n * 4 * q);
    (cos, sin)
}

/// `x cos + rotate_half(x) sin` (HF's `apply_rotary_pos_emb`), in the
/// arrays' own dtypes; `cos` and `sin` broadcast against `x`.
pub fn rotate_half(x: &Array, cos: &Array, sin: &Array) -> Result<Array> {
    let d = x.dim(-1);
    let halves = x.split_at(&[d / 2], -1)?;
    let rotated = Array::concatenate(&[&halves[1].neg()?, &halves[0]], -1)?;
    Ok(x.mul(cos)?.add(&rotated.mul(sin)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_pattern_is_thw_triples_then_t() {
        let s = mrope_streams(64, [24, 20, 20]);
        assert_eq!(&s[..6], &[0, 1, 2, 0, 1, 2]);
        assert_eq!(&s[57..64], &[0, 1, 2, 0, 0, 0, 0]);
        assert_eq!(s.iter().filter(|&&x| x == 0).count(), 24);
        assert_eq!(s.iter().filter(|&&x| x == 1).count(), 20);
        let tiny = mrope_streams(16, [6, 5, 5]);
        assert_eq!(tiny.iter().filter(|&&x| x == 1).count(), 5);
        assert_eq!(tiny.iter().filter(|&&x| x == 2).count(), 5);
    }

    #[test]
    fn worked_example_of_the_spec() {
        // <|im_start|> user \n <|vision_start|> 196×pad <|vision_end|> k text, 448×448 image
        let (pad, k) = (151_655u32, 5);
        let mut ids = vec![151_644, 872, 198, 151_652];
        ids.extend(std::iter::repeat_n(pad, 196));
        ids.push(151_653);
        ids.extend(std::iter::repeat_n(100, k));
        let p = rope_positions(&ids, pad, &[[1, 28, 28]], 2).unwrap();
        assert_eq!((p.t[4], p.h[4], p.w[4]), (4, 4, 4));
        assert_eq!((p.t[4 + 195], p.h[4 + 195], p.w[4 + 195]), (4, 17, 17));
        assert_eq!(p.t[200], 18); // <|vision_end|>
        assert_eq!(p.rope_delta(), -182);
    }

    #[test]
    fn golden_rope_deltas() {
        let pad = 9;
        let ids: Vec<u32> = [vec![1, 2], vec![pad; 70], vec![3]].concat();
        assert_eq!(
            rope_positions(&ids, pad, &[[1, 20, 14]], 2)
                .unwrap()
                .rope_delta(),
            -60
        );
        let ids: Vec<u32> = [vec![1], vec![pad; 220], vec![2], vec![pad; 64], vec![3]].concat();
        let p = rope_positions(&ids, pad, &[[1, 22, 40], [1, 16, 16]], 2).unwrap();
        assert_eq!(p.rope_delta(), -256);
    }

    #[test]
    fn placeholder_count_must_match_the_grid() {
        let ids = [1u32, 9, 9, 9, 2];
        assert!(rope_positions(&ids, 9, &[[1, 4, 4]], 2).is_err());
        assert!(rope_positions(&ids, 9, &[], 2).is_err());
        assert!(rope_positions(&[1, 2], 9, &[[1, 2, 2]], 2).is_err());
    }

    #[test]
    fn vision_tables_are_the_formula_entry_by_entry() {
        // grid (t, h, w) with 2x2 merge windows, head dim 16 (q = 4 frequencies)
        let (grid, merge, hd) = ([2, 4, 6], 2, 16);
        let (cos, sin) = vision_rope_tables(grid, merge, hd);
        let inv = inv_freq(10_000.0, hd / 2);
        let mut i = 0;
        for _ in 0..grid[0] {
            for bi in 0..grid[1] / merge {
                for bj in 0..grid[2] / merge {
                    for ii in 0..merge {
                        for jj in 0..merge {
                            let (row, col) = ((bi * merge + ii) as f32, (bj * merge + jj) as f32);
                            for k in 0..hd {
                                let f = inv[k % inv.len()];
                                let a = if (k / inv.len()).is_multiple_of(2) {
                                    row * f
                                } else {
                                    col * f
                                };
                                assert_eq!((sin[i], cos[i]), a.sin_cos(), "entry {i}");
                                i += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(i, cos.len());
    }

    #[test]
    fn mrope_tables_are_the_formula_entry_by_entry() {
        let pos = Positions {
            t: vec![0, 1, 1, 5],
            h: vec![0, 2, 3, 5],
            w: vec![0, 4, 7, 5],
        };
        let (hd, section, theta) = (16, [3, 3, 2], 5e6f32);
        let (cos, sin) = mrope_tables(&pos, theta, hd, section);
        let inv = inv_freq(theta, hd);
        let streams = mrope_streams(hd / 2, section);
        for i in 0..pos.len() {
            let p = [pos.t[i], pos.h[i], pos.w[i]];
            for j in 0..hd {
                let a = p[streams[j % (hd / 2)] as usize] as f32 * inv[j % (hd / 2)];
                assert_eq!((sin[i * hd + j], cos[i * hd + j]), a.sin_cos());
            }
        }
    }
}
