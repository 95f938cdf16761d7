//! Per-layer key/value cache. Buffers grow in steps of `STEP` tokens and are
//! updated in place with `slice_update` (MLX reuses the buffer when nothing
//! else holds it), so decoding does not reallocate every token.

use mlx::{Array, Dtype};

use crate::error::Result;

const STEP: i32 = 256;

#[derive(Clone, Default)]
pub struct LayerCache {
    keys: Option<Array>,
    values: Option<Array>,
    len: i32,
}

impl LayerCache {
    /// Appends `k`, `v` `(1, H, L, D)` and returns the keys and values so far.
    pub fn update(&mut self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let (l, shape) = (k.dim(2), k.shape());
        let needed = self.len + l;
        let capacity = self.keys.as_ref().map_or(0, |a| a.dim(2));
        if needed > capacity {
            let grow = ((needed - capacity + STEP - 1) / STEP) * STEP;
            let new_shape = [shape[0], shape[1], grow, shape[3]];
            let (zk, zv) = (
                Array::zeros(&new_shape, k.dtype())?,
                Array::zeros(&new_shape, v.dtype())?,
            );
            let (keys, values) = match (self.keys.take(), self.values.take()) {
                (Some(ok), Some(ov)) => (
                    Array::concatenate(&[&ok.slice_axis(2, 0, self.len)?, &zk], 2)?,
                    Array::concatenate(&[&ov.slice_axis(2, 0, self.len)?, &zv], 2)?,
                ),
                _ => (zk, zv),
            };
            self.keys = Some(keys);
            self.values = Some(values);
        }
        let start = [0, 0, self.len, 0];
        let stop = [shape[0], shape[1], needed, shape[3]];
        let keys = self
            .keys
            .take()
            .expect("allocated above")
            .slice_update(k, &start, &stop)?;
        let values = self
            .values
            .take()
            .expect("allocated above")
            .slice_update(v, &start, &stop)?;
        self.len = needed;
        let out = (
            keys.slice_axis(2, 0, needed)?,
            values.slice_axis(2, 0, needed)?,
        );
        self.keys = Some(keys);
        self.values = Some(values);
        Ok(out)
    }

    pub fn len(&self) -> i32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` cached positions, as standalone arrays `(1, H, n, D)`.
    pub fn prefix(&self, n: i32) -> Result<Option<(Array, Array)>> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) if n <= self.len => Ok(Some((
                k.slice_axis(2, 0, n)?.contiguous()?,
                v.slice_axis(2, 0, n)?.contiguous()?,
            ))),
            _ => Ok(None),
        }
    }

    /// A cache that starts with the given keys and values.
    pub fn from_prefix(k: Array, v: Array) -> LayerCache {
        let len = k.dim(2);
        LayerCache {
            keys: Some(k),
            values: Some(v),
            len,
        }
    }

    pub fn nbytes(&self) -> usize {
        let per = |a: &Option<Array>| {
            a.as_ref().map_or(0, |a| {
                a.nbytes() / a.dim(2).max(1) as usize * self.len as usize
            })
        };
        per(&self.keys) + per(&self.values)
    }

    pub fn dtype(&self) -> Option<Dtype> {
        self.keys.as_ref().map(Array::dtype)
    }
}

/// The cache of every decoder layer for one sequence.
#[derive(Clone, Default)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> KvCache {
        KvCache {
            layers: vec![LayerCache::default(); num_layers],
        }
    }

    /// Tokens cached so far.
    pub fn len(&self) -> i32 {
        self.layers.first().map_or(0, LayerCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
