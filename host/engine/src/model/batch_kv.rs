//! The keys and values of sequences decoded together: one row per sequence
//! in buffers `(rows, kv_heads, capacity, head_dim)` per layer, aligned at
//! their ends. Every row's next position is written at the same index
//! (`end`), so a decoding step writes all rows with one update per layer and
//! attends with one call; a row shorter than the longest starts later, and
//! the positions before its start are masked out. (mlx-lm batches the same
//! way.) Rows join, leave and are trimmed between steps, each of which
//! copies the buffers once; a step itself copies nothing.

use mlx::{Array, Dtype};

use super::kv_cache::{KvCache, LayerCache};
use crate::error::{Error, Result};

/// Buffers grow by this many positions at a time.
const STEP: i32 = 256;

pub struct BatchLayer {
    keys: Array,
    values: Array,
}

#[derive(Default)]
pub struct BatchKv {
    layers: Vec<BatchLayer>,
    /// The index the next position of every row is written at.
    end: i32,
    /// Each row's first position.
    starts: Vec<i32>,
}

impl BatchKv {
    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    fn capacity(&self) -> i32 {
        self.layers.first().map_or(0, |l| l.keys.dim(2))
    }

    /// Adds a sequence's cache as the last row.
    pub fn join(&mut self, kv: &KvCache) -> Result<()> {
        let len = kv.len();
        if len == 0 {
            return Err(Error::Model("a batch row needs a prefilled cache".into()));
        }
        if self.is_empty() {
            self.layers.clear();
            self.end = len;
        } else if len > self.end {
            // Every row moves right so that all end at the new row's end.
            self.pad_front(len - self.end)?;
        }
        // The new row is as wide as the others (an empty batch: room for
        // the next step).
        let room = if self.layers.is_empty() {
            1
        } else {
            self.capacity() - self.end
        };
        let start = self.end - len;
        let mut layers = Vec::with_capacity(kv.layers.len());
        for (i, l) in kv.layers.iter().enumerate() {
            let (k, v) = l
                .filled()?
                .ok_or_else(|| Error::Model("a batch row's layer is empty".into()))?;
            let row = |a: &Array| -> Result<Array> {
                let (h, d, dt) = (a.dim(1), a.dim(3), a.dtype());
                let mut parts = vec![];
                if start > 0 {
                    parts.push(Array::zeros(&[1, h, start, d], dt)?);
                }
                parts.push(a.clone());
                if room > 0 {
                    parts.push(Array::zeros(&[1, h, room, d], dt)?);
                }
                let refs: Vec<&Array> = parts.iter().collect();
                Ok(Array::concatenate(&refs, 2)?)
            };
            let (rk, rv) = (row(&k)?, row(&v)?);
            layers.push(match self.layers.get(i) {
                Some(b) => BatchLayer {
                    keys: Array::concatenate(&[&b.keys, &rk], 0)?,
                    values: Array::concatenate(&[&b.values, &rv], 0)?,
                },
                None => BatchLayer {
                    keys: rk,
                    values: rv,
                },
            });
        }
        self.layers = layers;
        self.starts.push(start);
        self.eval()
    }

    /// Keeps the rows at `keep` (in that order), dropping the others, and
    /// trims positions no row needs any more.
    pub fn keep_rows(&mut self, keep: &[usize]) -> Result<()> {
        if keep.is_empty() {
            *self = BatchKv::default();
            return Ok(());
        }
        if keep.len() == self.rows() && keep.iter().enumerate().all(|(i, &k)| i == k) {
            return Ok(());
        }
        let idx: Vec<i32> = keep.iter().map(|&k| k as i32).collect();
        let idx = Array::from_i32(&idx, &[idx.len() as i32])?;
        let starts: Vec<i32> = keep.iter().map(|&k| self.starts[k]).collect();
        let first = starts.iter().copied().min().unwrap_or(0);
        for l in &mut self.layers {
            let (mut k, mut v) = (l.keys.take(&idx, 0)?, l.values.take(&idx, 0)?);
            if first > 0 {
                k = k.slice_axis(2, first, k.dim(2))?.contiguous()?;
                v = v.slice_axis(2, first, v.dim(2))?.contiguous()?;
            }
            l.keys = k;
            l.values = v;
        }
        self.starts = starts.iter().map(|s| s - first).collect();
        self.end -= first;
        self.eval()
    }

    /// The only row as a sequence's own cache, with room reserved for
    /// `more` positions (the batch is left empty).
    pub fn into_single(&mut self, more: i32) -> Result<KvCache> {
        if self.rows() != 1 {
            return Err(Error::Model(format!(
                "a batch of {} rows is not one sequence",
                self.rows()
            )));
        }
        let start = self.starts[0];
        let layers = std::mem::take(&mut self.layers)
            .into_iter()
            .map(|l| {
                let cut = |a: &Array| -> Result<Array> {
                    Ok(a.slice_axis(2, start, self.end)?.contiguous()?)
                };
                Ok(LayerCache::from_prefix(cut(&l.keys)?, cut(&l.values)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut kv = KvCache { layers };
        kv.reserve(self.end - start + more);
        *self = BatchKv::default();
        Ok(kv)
    }

    /// Makes room for one more position in every row, before a step.
    pub fn reserve_step(&mut self) -> Result<()> {
        if self.end < self.capacity() {
            return Ok(());
        }
        for l in &mut self.layers {
            let grow = |a: &Array| -> Result<Array> {
                let z = Array::zeros(&[a.dim(0), a.dim(1), STEP, a.dim(3)], a.dtype())?;
                Ok(Array::concatenate(&[a, &z], 2)?)
            };
            l.keys = grow(&l.keys)?;
            l.values = grow(&l.values)?;
        }
        Ok(())
    }

    /// The keep-mask `(rows, 1, 1, end + 1)` of the next step's attention,
    /// `None` when every row starts at 0.
    pub fn step_mask(&self) -> Result<Option<Array>> {
        if self.starts.iter().all(|&s| s == 0) {
            return Ok(None);
        }
        let n = self.end + 1;
        let mut keep = vec![0u8; self.rows() * n as usize];
        for (r, &s) in self.starts.iter().enumerate() {
            let row = &mut keep[r * n as usize..(r + 1) * n as usize];
            row[s as usize..].iter_mut().for_each(|k| *k = 1);
        }
        let rows = self.rows() as i32;
        Ok(Some(Array::from_bytes(
            &keep,
            &[rows, 1, 1, n],
            Dtype::Bool,
        )?))
    }

    /// Layer `i` and the index the step writes at, for the forward pass.
    pub fn layer_mut(&mut self, i: usize) -> (&mut BatchLayer, i32) {
        (&mut self.layers[i], self.end)
    }

    /// Counts the position a step wrote in every row.
    pub fn advance(&mut self) {
        self.end += 1;
    }

    /// Positions each row holds.
    pub fn lens(&self) -> Vec<i32> {
        self.starts.iter().map(|s| self.end - s).collect()
    }

    fn pad_front(&mut self, n: i32) -> Result<()> {
        for l in &mut self.layers {
            let pad = |a: &Array| -> Result<Array> {
                let z = Array::zeros(&[a.dim(0), a.dim(1), n, a.dim(3)], a.dtype())?;
                Ok(Array::concatenate(&[&z, a], 2)?)
            };
            l.keys = pad(&l.keys)?;
            l.values = pad(&l.values)?;
        }
        self.starts.iter_mut().for_each(|s| *s += n);
        self.end += n;
        Ok(())
    }

    /// Queues the buffers' computation (not waited for: the step queued
    /// before may still be running), so that the graphs behind a change
    /// are freed.
    fn eval(&self) -> Result<()> {
        let arrays: Vec<&Array> = self
            .layers
            .iter()
            .flat_map(|l| [&l.keys, &l.values])
            .collect();
        if !arrays.is_empty() {
            mlx::async_eval(&arrays)?;
        }
        Ok(())
    }
}

impl BatchLayer {
    /// Writes `k`, `v` `(rows, kv_heads, 1, head_dim)` at `at` and returns
    /// the keys and values up to it.
    pub fn update(&mut self, k: &Array, v: &Array, at: i32) -> Result<(Array, Array)> {
        let s = k.shape();
        let start = [0, 0, at, 0];
        let stop = [s[0], s[1], at + 1, s[3]];
        let keys = self.keys.slice_update(k, &start, &stop)?;
        let values = self.values.slice_update(v, &start, &stop)?;
        let out = (
            keys.slice_axis(2, 0, at + 1)?,
            values.slice_axis(2, 0, at + 1)?,
        );
        self.keys = keys;
        self.values = values;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-layer cache of `n` positions whose keys count up from `first`.
    fn sequence(n: i32, first: f32) -> KvCache {
        let data: Vec<f32> = (0..n).map(|i| first + i as f32).collect();
        let rows = Array::from_f32(&data, &[1, 1, n, 1]).unwrap();
        let mut kv = KvCache::new(1);
        kv.layers[0].update(&rows, &rows).unwrap();
        kv
    }

    /// Row `r`'s keys from its start to the end.
    fn row(b: &BatchKv, r: usize) -> Vec<f32> {
        let k = &b.layers[0].keys;
        let k = k.slice_axis(0, r as i32, r as i32 + 1).unwrap();
        k.slice_axis(2, b.starts[r], b.end)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn rows_join_aligned_at_their_ends_and_keep_their_positions() {
        let mut b = BatchKv::default();
        b.join(&sequence(3, 0.0)).unwrap();
        // Longer than the batch: the first row moves right.
        b.join(&sequence(5, 10.0)).unwrap();
        b.join(&sequence(2, 20.0)).unwrap();
        assert_eq!(b.lens(), vec![3, 5, 2]);
        assert_eq!(row(&b, 0), vec![0.0, 1.0, 2.0]);
        assert_eq!(row(&b, 1), vec![10.0, 11.0, 12.0, 13.0, 14.0]);
        assert_eq!(row(&b, 2), vec![20.0, 21.0]);
        // Masked before each row's start, the next step's position kept.
        let mask = b.step_mask().unwrap().unwrap();
        assert_eq!(mask.shape(), vec![3, 1, 1, 6]);
        let keep = mask.astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(&keep[..6], &[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(&keep[12..], &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn a_step_writes_every_row_at_the_shared_end() {
        let mut b = BatchKv::default();
        b.join(&sequence(2, 0.0)).unwrap();
        b.join(&sequence(4, 10.0)).unwrap();
        b.reserve_step().unwrap();
        let new = Array::from_f32(&[7.0, 8.0], &[2, 1, 1, 1]).unwrap();
        let (layer, at) = b.layer_mut(0);
        let (keys, _) = layer.update(&new, &new, at).unwrap();
        assert_eq!(keys.dim(2), 5);
        b.advance();
        assert_eq!(row(&b, 0), vec![0.0, 1.0, 7.0]);
        assert_eq!(row(&b, 1), vec![10.0, 11.0, 12.0, 13.0, 8.0]);
    }

    #[test]
    fn leaving_rows_trims_what_no_row_needs_and_one_row_becomes_a_cache() {
        let mut b = BatchKv::default();
        b.join(&sequence(6, 0.0)).unwrap();
        b.join(&sequence(2, 10.0)).unwrap();
        b.join(&sequence(3, 20.0)).unwrap();
        // The longest row leaves: the rest start later, so the front goes.
        b.keep_rows(&[2, 1]).unwrap();
        assert_eq!(b.lens(), vec![3, 2]);
        assert_eq!(b.starts, vec![0, 1]);
        assert_eq!(row(&b, 0), vec![20.0, 21.0, 22.0]);
        assert_eq!(row(&b, 1), vec![10.0, 11.0]);
        b.keep_rows(&[1]).unwrap();
        let kv = b.into_single(4).unwrap();
        assert!(b.is_empty());
        assert_eq!(kv.len(), 2);
        let (k, _) = kv.layers[0].filled().unwrap().unwrap();
        assert_eq!(k.to_vec::<f32>().unwrap(), vec![10.0, 11.0]);
    }
}
