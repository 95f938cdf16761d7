//! Counter-based random numbers: the same key always gives the same values.

use crate::array::{Array, Dtype};
use crate::error::Result;
use crate::ffi::bridge as ffi;
use crate::list::from_list;

/// A PRNG key from a seed.
pub fn key(seed: u64) -> Result<Array> {
    Array::wrap("random::key", ffi::random_key(seed))
}

/// `num` independent keys derived from `key`.
pub fn split(key: &Array, num: i32) -> Result<Vec<Array>> {
    from_list("random::split", ffi::random_split(key.inner(), num))
}

pub fn normal(shape: &[i32], dtype: Dtype, loc: f32, scale: f32, key: &Array) -> Result<Array> {
    Array::wrap(
        "random::normal",
        ffi::random_normal(shape, dtype, loc, scale, key.inner()),
    )
}

pub fn uniform(shape: &[i32], dtype: Dtype, low: f32, high: f32, key: &Array) -> Result<Array> {
    Array::wrap(
        "random::uniform",
        ffi::random_uniform(shape, dtype, low, high, key.inner()),
    )
}

/// One sample per row from unnormalised log-probabilities along `axis`.
pub fn categorical(logits: &Array, axis: i32, key: &Array) -> Result<Array> {
    Array::wrap(
        "random::categorical",
        ffi::random_categorical(logits.inner(), axis, key.inner()),
    )
}
