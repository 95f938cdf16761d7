//! Per-layer key/value cache. Buffers grow in steps of `STEP` tokens and are
//! updated in place with `slice_update` (MLX reuses the buffer when nothing
//! else holds it), so decoding does not reallocate every token. A request
//! reserves room for its output up front ([`KvCache::reserve`]): growing in
//! the middle of decoding copies every layer's rows and, on the step runner,
//! waits for the queued steps and records a new CUDA graph (one step took
//! 4.5–8.3 ms instead of ~2.1 on the H100: `docs/experiments.md`, "A request's
//! first step and the cache's room for its output").
//!
//! The fused decoding kernel (`kernels::attention`) writes the new position
//! straight into the buffers. That is only sound for buffers this cache made
//! itself (`writable`): a cache started from a stored prefix holds arrays that
//! the prefix cache shares, so its first write copies them into its own
//! buffer. Caches are never cloned, for the same reason.

use mlx::{Array, Dtype};

use crate::error::Result;

const STEP: i32 = 256;

#[derive(Default)]
pub struct LayerCache {
    keys: Option<Array>,
    values: Option<Array>,
    len: i32,
    /// The buffers were allocated here and nothing else holds them.
    writable: bool,
    /// Positions the next new buffers hold at least ([`KvCache::reserve`]).
    reserved: i32,
}

impl LayerCache {
    /// Appends `k`, `v` `(1, H, L, D)` and returns the keys and values so far.
    pub fn update(&mut self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let (l, shape) = (k.dim(2), k.shape());
        let needed = self.len + l;
        if needed > self.capacity() {
            self.grow(needed, shape[1], shape[3], k.dtype())?;
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

    fn capacity(&self) -> i32 {
        self.keys.as_ref().map_or(0, |a| a.dim(2))
    }

    /// New buffers for at least `needed` (and the reserved) positions,
    /// holding the current ones.
    fn grow(&mut self, needed: i32, heads: i32, head_dim: i32, dtype: Dtype) -> Result<()> {
        let needed = needed.max(self.reserved);
        let grow = ((needed - self.len + STEP - 1) / STEP) * STEP;
        let new_shape = [1, heads, grow, head_dim];
        let (zk, zv) = (
            Array::zeros(&new_shape, dtype)?,
            Array::zeros(&new_shape, dtype)?,
        );
        let (keys, values) = match (self.keys.take(), self.values.take()) {
            (Some(ok), Some(ov)) if self.len > 0 => (
                Array::concatenate(&[&ok.slice_axis(2, 0, self.len)?, &zk], 2)?,
                Array::concatenate(&[&ov.slice_axis(2, 0, self.len)?, &zv], 2)?,
            ),
            _ => (zk, zv),
        };
        self.keys = Some(keys);
        self.values = Some(values);
        self.writable = true;
        Ok(())
    }

    /// Makes room for one more position that a kernel will write in place,
    /// and returns the buffers `(1, H, capacity, D)`. Needs a cache that holds
    /// at least one position.
    pub fn buffers_for_write(&mut self) -> Result<(&Array, &Array)> {
        let Some(k) = &self.keys else {
            return Err(crate::error::Error::Model(
                "in-place cache write on an empty cache".into(),
            ));
        };
        let (heads, head_dim, dtype) = (k.dim(1), k.dim(3), k.dtype());
        if self.write_needs_new_buffers() {
            self.grow(self.len + 1, heads, head_dim, dtype)?;
        }
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => unreachable!("grown above"),
        }
    }

    /// Whether the next [`LayerCache::buffers_for_write`] makes new buffers
    /// (copying the cached rows).
    pub fn write_needs_new_buffers(&self) -> bool {
        !self.writable || self.len + 1 > self.capacity()
    }

    /// Counts `n` positions written in place.
    pub fn advance(&mut self, n: i32) {
        self.len += n;
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

    /// The cached positions as views `(1, H, len, D)` of the buffers.
    pub fn filled(&self) -> Result<Option<(Array, Array)>> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) if self.len > 0 => Ok(Some((
                k.slice_axis(2, 0, self.len)?,
                v.slice_axis(2, 0, self.len)?,
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
            writable: false,
            reserved: 0,
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
#[derive(Default)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> KvCache {
        KvCache {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
        }
    }

    /// Makes the next new buffers of every layer hold at least `positions`
    /// (the prompt plus the tokens a request may add), so that decoding
    /// does not grow them. Buffers already made keep their size until they
    /// grow.
    pub fn reserve(&mut self, positions: i32) {
        for l in &mut self.layers {
            l.reserved = positions;
        }
    }

    /// Computes every layer's pending writes (a prefill piece's keys and
    /// values), so that the graph behind them is freed.
    pub fn eval(&self) -> Result<()> {
        let arrays: Vec<&Array> = self
            .layers
            .iter()
            .flat_map(|l| [&l.keys, &l.values])
            .flatten()
            .collect();
        if arrays.is_empty() {
            return Ok(());
        }
        Ok(mlx::eval(&arrays)?)
    }

    /// Adds every layer's buffers to `out` (to evaluate with other work).
    pub fn push_arrays(&self, out: &mut Vec<Array>) {
        for l in &self.layers {
            out.extend([&l.keys, &l.values].into_iter().flatten().cloned());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i32, first: f32) -> Array {
        let data: Vec<f32> = (0..n * 2 * 4).map(|i| first + i as f32).collect();
        Array::from_f32(&data, &[1, 2, n, 4]).unwrap()
    }

    #[test]
    fn update_appends_and_grows_in_steps() {
        let mut c = LayerCache::default();
        let (k, _) = c.update(&rows(3, 0.0), &rows(3, 100.0)).unwrap();
        assert_eq!((c.len(), k.dim(2), c.capacity()), (3, 3, STEP));
        let (k, v) = c.update(&rows(2, 50.0), &rows(2, 150.0)).unwrap();
        assert_eq!((c.len(), k.dim(2)), (5, 5));
        let got = v.slice_axis(2, 3, 5).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(got, rows(2, 150.0).to_vec::<f32>().unwrap());
    }

    #[test]
    fn write_buffers_have_room_and_keep_the_positions() {
        let mut c = LayerCache::default();
        c.update(&rows(STEP, 0.0), &rows(STEP, 0.0)).unwrap();
        assert_eq!(c.capacity(), STEP);
        // Full: the next in-place write needs a bigger buffer holding the same rows.
        let (k, _) = c.buffers_for_write().unwrap();
        assert_eq!(k.dim(2), 2 * STEP);
        let kept = k.slice_axis(2, 0, STEP).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(kept, rows(STEP, 0.0).to_vec::<f32>().unwrap());
        // With room, the same buffer serves the next position.
        c.advance(1);
        assert_eq!(c.len(), STEP + 1);
        assert_eq!(c.buffers_for_write().unwrap().0.dim(2), 2 * STEP);
    }

    #[test]
    fn a_cache_from_a_stored_prefix_is_copied_before_any_write() {
        let (k, v) = (rows(4, 0.0), rows(4, 10.0));
        let mut c = LayerCache::from_prefix(k.clone(), v.clone());
        let (wk, _) = c.buffers_for_write().unwrap();
        // A new buffer (the stored arrays are never written), same contents.
        assert_eq!(wk.dim(2), 4 + STEP);
        let kept = wk.slice_axis(2, 0, 4).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(kept, k.to_vec::<f32>().unwrap());
        assert_eq!(k.dim(2), 4);
    }

    #[test]
    fn a_reservation_sizes_the_first_buffers_and_later_writes_keep_them() {
        let mut kv = KvCache::new(1);
        kv.reserve(3 + STEP);
        let c = &mut kv.layers[0];
        c.update(&rows(3, 0.0), &rows(3, 100.0)).unwrap();
        // Room for the prompt and its reserved output, in whole steps.
        assert_eq!(c.capacity(), 2 * STEP);
        for _ in 0..STEP {
            assert!(!c.write_needs_new_buffers());
            c.advance(1);
        }
        assert_eq!(c.buffers_for_write().unwrap().0.dim(2), 2 * STEP);
        // Past the reservation it grows as before, keeping the rows.
        c.advance(STEP - 3);
        assert!(c.write_needs_new_buffers());
        let (k, _) = c.buffers_for_write().unwrap();
        assert_eq!(k.dim(2), 3 * STEP);
        let kept = k.slice_axis(2, 0, 3).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(kept, rows(3, 0.0).to_vec::<f32>().unwrap());
    }

    #[test]
    fn a_reservation_also_sizes_the_copy_of_a_stored_prefix() {
        let mut c = LayerCache::from_prefix(rows(4, 0.0), rows(4, 10.0));
        c.reserved = 4 + 2 * STEP + 1;
        assert_eq!(c.buffers_for_write().unwrap().0.dim(2), 4 + 3 * STEP);
    }

    #[test]
    fn writing_into_an_empty_cache_is_an_error() {
        assert!(LayerCache::default().buffers_for_write().is_err());
    }
}
