//! MLX affine quantization: packed uint32 codes plus per-group scales and
//! biases, `w = scale * q + bias` (see `docs/qwen3-vl.md` §7).

use crate::array::{Array, Dtype};
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;
use crate::list::from_list;

/// A quantized matrix as stored by mlx-community checkpoints.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Packed codes, `(rows, cols * bits / 32)` uint32.
    pub weight: Array,
    /// `(rows, cols / group_size)`, in the float dtype.
    pub scales: Array,
    /// `(rows, cols / group_size)`, in the float dtype.
    pub biases: Array,
    pub group_size: i32,
    pub bits: i32,
}

/// Quantizes `w` along its last axis.
pub fn quantize(w: &Array, group_size: i32, bits: i32) -> Result<Quantized> {
    let mut parts = from_list("quantize", ffi::quantize(w.inner(), group_size, bits))?;
    if parts.len() != 3 {
        return Err(Error::new(
            "quantize",
            format!(
                "expected weight, scales and biases, got {} arrays",
                parts.len()
            ),
        ));
    }
    let biases = parts.pop().expect("three parts");
    let scales = parts.pop().expect("three parts");
    let weight = parts.pop().expect("three parts");
    Ok(Quantized {
        weight,
        scales,
        biases,
        group_size,
        bits,
    })
}

impl Quantized {
    /// The float matrix the codes stand for, in `dtype`.
    pub fn dequantize(&self, dtype: Dtype) -> Result<Array> {
        Array::wrap(
            "dequantize",
            ffi::dequantize(
                self.weight.inner(),
                self.scales.inner(),
                self.biases.inner(),
                self.group_size,
                self.bits,
                dtype,
            ),
        )
    }

    /// `x @ dequantize(w).T` without materialising the float matrix.
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        Array::wrap(
            "quantized_matmul",
            ffi::quantized_matmul(
                x.inner(),
                self.weight.inner(),
                self.scales.inner(),
                self.biases.inner(),
                true,
                self.group_size,
                self.bits,
            ),
        )
    }

    /// Logical (unpacked) shape of the matrix.
    pub fn logical_shape(&self) -> Vec<i32> {
        let mut s = self.weight.shape();
        if let Some(last) = s.last_mut() {
            *last = *last * 32 / self.bits;
        }
        s
    }
}
